//! Publishing a node's finished recording from its node-local spool into the cluster's
//! shared store (`store=`), where the controller and the login hosts read it
//! (docs/storage.md). Run once per job and node, as root, by the job's epilog on the node,
//! after every step there has ended.
//!
//! The spool's job directory is the user's: its files are read without following links or
//! waiting, and only if regular with one link and within the recording's size bounds.
//! Identity is the directory's owner, never the files' contents. In the store, each file
//! is written under a temporary name, synced and renamed, the metadata last: a reader sees
//! a node's recording whole or not at all.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use aipm_recording::layout::{self, NodeName};
use aipm_recording::untrusted::{self, JobDir, META_MAX_BYTES, STEPS_MAX_BYTES};
use rustix::fs::{self as rfs, OFlags};

use crate::spool::{err, give_to_user, open_job_dir, retire_previous, ReaderGroup, SpoolError};

/// What a publication did.
#[derive(Debug, PartialEq, Eq)]
pub struct Published {
    pub bytes: u64,
    /// An older recording of this id and node in the store (a reused id) was moved aside.
    pub moved_aside_older: bool,
}

/// Copy `spool/<job>/<node>.*` into `store/<job>/`; `Ok(None)` when this node has no
/// recording of the job.
pub fn publish(
    spool: &Path,
    store: &Path,
    job_id: u32,
    node: &NodeName,
    readers: ReaderGroup,
) -> Result<Option<Published>, SpoolError> {
    let source = match JobDir::open(spool, job_id) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(None),
        Err(e) => return Err(err("opening", spool, e.source)),
    };
    let meta_name = layout::meta_file_name(node);
    let meta = match source.read_meta(node) {
        Ok(meta) => meta,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(err("reading", &source.path().join(&meta_name), e.source)),
    };
    let uid = source.owner_uid();
    let (gid, dir_mode, file_mode) = match readers.0 {
        Some(group) => (group, 0o750, 0o640),
        None => (source.owner_gid(), 0o700, 0o600),
    };

    // The store may hold an older job's recording with this id (ids restart when Slurm's
    // state is wiped; a requeued job runs again): kept aside, never replaced, and so is
    // anything there that cannot be shown to be this very recording (unreadable, or
    // another user's directory, moved aside whole). Only the same recording published
    // again (a retry) is replaced by itself.
    let same_recording = JobDir::open(store, job_id)
        .ok()
        .flatten()
        .filter(|dir| dir.owner_uid() == uid)
        .and_then(|dir| dir.read_meta(node).ok())
        .is_some_and(|old| old.start_unix_ms == meta.start_unix_ms);
    let moved_aside_older = !same_recording && retire_previous(store, job_id, node, uid)?.is_some();
    let (target, target_path) = open_job_dir(store, job_id, uid, gid, dir_mode)?;

    let now_ms = aipm_recording::time::now_unix_ms();
    let files = [
        (
            layout::samples_file_name(node),
            untrusted::samples_limit(&meta, now_ms),
        ),
        (layout::steps_file_name(node), STEPS_MAX_BYTES),
        (meta_name, META_MAX_BYTES),
    ];
    let mut bytes = 0;
    for (name, limit) in files {
        let from = source.path().join(&name);
        let (fd, st) = match untrusted::open_regular(source.fd(), &name, OFlags::RDONLY, 0) {
            Ok(opened) => opened,
            // A node that never wrote a steps file (an older aipm) still publishes the rest.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("opening", &from, e)),
        };
        let size = st.st_size.max(0) as u64;
        if size > limit {
            return Err(err(
                "refusing",
                &from,
                format!("{size} bytes, more than this recording may hold ({limit})"),
            ));
        }
        untrusted::check_not_sparse(size, st.st_blocks.max(0) as u64 * 512)
            .map_err(|e| err("refusing", &from, e))?;
        bytes += copy_into(fd, size, &target, &name, uid, gid, file_mode)
            .map_err(|e| err("publishing", &target_path.join(&name), e))?;
    }
    Ok(Some(Published {
        bytes,
        moved_aside_older,
    }))
}

/// Copy the first `size` bytes of `from` to `dir/name` through a synced temporary file.
fn copy_into(
    from: OwnedFd,
    size: u64,
    dir: &OwnedFd,
    name: &str,
    uid: u32,
    gid: u32,
    mode: u32,
) -> io::Result<u64> {
    let tmp = format!(".{name}.{}.publish", std::process::id());
    // A leftover of an interrupted copy is ours to replace; anything else there is refused.
    let _ = rfs::unlinkat(dir, tmp.as_str(), rfs::AtFlags::empty());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    let (fd, _) = untrusted::open_regular(dir, &tmp, flags, 0o600)?;
    give_to_user(&fd, uid, gid, mode)?;
    let mut out = File::from(fd);
    let copied = io::copy(&mut File::from(from).take(size), &mut out)?;
    rfs::fdatasync(&out)?;
    rfs::renameat(dir, tmp.as_str(), dir, name)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::JobFiles;
    use aipm_recording::meta::Meta;

    fn node() -> NodeName {
        NodeName::new("n2").unwrap()
    }

    /// A finished recording of job 7 on n2 in a spool of our own.
    fn recorded(spool: &Path, start_ms: u64) {
        let mut files = JobFiles::open(spool, 7, &node(), 0, 0).unwrap();
        files.add_step("batch").unwrap();
        files.append_sample("time_unix_ms\n").unwrap();
        files.append_sample(&format!("{start_ms}\n")).unwrap();
        let meta = Meta {
            job_id: 7,
            node: "n2".into(),
            start_unix_ms: start_ms,
            end_unix_ms: Some(start_ms + 1000),
            period_ms: 1000,
            ..Meta::default()
        };
        files.write_meta(&meta).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_nodes_recording_is_copied_whole_and_again_in_place() {
        let (spool, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let start = aipm_recording::time::now_unix_ms() - 2000;
        recorded(spool.path(), start);
        let published = publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None))
            .unwrap()
            .unwrap();
        assert!(!published.moved_aside_older);
        let dir = store.path().join("7");
        assert_eq!(names(&dir), ["n2.meta.json", "n2.samples.csv", "n2.steps"]);
        for name in names(&dir) {
            assert_eq!(
                std::fs::read(dir.join(&name)).unwrap(),
                std::fs::read(spool.path().join("7").join(&name)).unwrap(),
                "{name}"
            );
        }
        // A retry replaces the same recording by itself; nothing is moved aside.
        let again = publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None)).unwrap();
        assert_eq!(again.unwrap().bytes, published.bytes);
        assert_eq!(names(&dir).len(), 3);
    }

    #[test]
    fn an_older_recording_of_a_reused_id_in_the_store_is_kept_aside() {
        let (spool, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let now = aipm_recording::time::now_unix_ms();
        recorded(store.path(), 1_600_000_000_000);
        recorded(spool.path(), now - 2000);
        let published = publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None))
            .unwrap()
            .unwrap();
        assert!(published.moved_aside_older);
        let names = names(&store.path().join("7"));
        assert_eq!(
            names.iter().filter(|n| n.contains(".previous-")).count(),
            3,
            "{names:?}"
        );
    }

    #[test]
    fn another_users_directory_of_a_reused_id_in_the_store_is_moved_aside_whole() {
        let (spool, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Mallory's job 7, its metadata removed: nothing says which recording it was.
        let older = store.path().join("7");
        std::fs::create_dir(&older).unwrap();
        std::fs::write(older.join("n1.samples.csv"), "time_unix_ms\n").unwrap();
        std::os::unix::fs::chown(&older, Some(12345), Some(12345)).unwrap();
        recorded(spool.path(), aipm_recording::time::now_unix_ms() - 2000);
        let published = publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None))
            .unwrap()
            .unwrap();
        assert!(published.moved_aside_older);
        assert_eq!(
            names(&store.path().join("7")),
            ["n2.meta.json", "n2.samples.csv", "n2.steps"]
        );
        let aside: Vec<String> = names(store.path())
            .into_iter()
            .filter(|n| n.starts_with("7.previous-"))
            .collect();
        assert_eq!(aside.len(), 1, "{:?}", names(store.path()));
    }

    #[test]
    fn a_node_without_a_recording_publishes_nothing_and_links_are_refused() {
        let (spool, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(
            publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None)).unwrap(),
            None
        );
        recorded(spool.path(), aipm_recording::time::now_unix_ms() - 2000);
        let steps = spool.path().join("7/n2.steps");
        std::fs::remove_file(&steps).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", &steps).unwrap();
        let e = publish(spool.path(), store.path(), 7, &node(), ReaderGroup(None)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!store.path().join("7/n2.steps").exists());
        assert!(
            !store.path().join("7/n2.meta.json").exists(),
            "published in part"
        );
    }
}
