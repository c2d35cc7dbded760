//! Reading a recording from a job directory that its user can write, safely as root.
//!
//! The job's user owns `SPOOL/<job_id>/` and can put anything there: a FIFO (an open or a
//! read would wait forever), a symbolic or hard link to another user's recording or to
//! `/etc/shadow`, a sparse file of terabytes, a metadata file that speaks for another job
//! or user. Every reader goes through [`JobDir`] (or [`open_regular`] for the plugin's
//! own files): the directory is opened without following links, each file under it
//! without following links and without waiting, and used only if it is a regular file
//! with one link and no larger than its kind may be, checked from `fstat` before anything
//! is allocated. Who a recording belongs to and which job and node it is come from the
//! file system, never from the contents ([`Identity`], [`vouch_for`]).

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat};

use crate::layout::{self, NodeName};
use crate::meta::Meta;
use crate::samples::{ReadError, Samples};

/// A metadata file is a few kilobytes.
pub const META_MAX_BYTES: u64 = 64 * 1024;
/// A steps file holds one short line per step.
pub const STEPS_MAX_BYTES: u64 = 1 << 20;
/// No node's samples file is read past this, whatever its metadata says: 2 GiB is weeks
/// of samples every 100 ms with GPUs; it is also what reading one may cost in memory.
pub const SAMPLES_MAX_BYTES: u64 = 2 << 30;
/// More nodes than any job has; a spool shared by a cluster holds one metadata file per
/// node of a job.
pub const MAX_NODES: usize = 65_536;
/// Bytes allowed per expected sample in [`samples_limit`]: a line with 50 GPUs' columns.
const ROW_BYTES_BOUND: u64 = 32 * 1024;
/// Samples allowed beyond those the job's span and period give (clock steps, handovers).
const ROWS_SLACK: u64 = 1000;

/// Open `name` in `dir`, a directory that a user can write: never through a symbolic
/// link, never waiting (a FIFO would hang the open and every read), and only a regular
/// file with exactly one link (a hard link could be another user's file). The error says
/// which of these it is, without the path: callers name the file.
pub fn open_regular(
    dir: impl AsFd,
    name: &str,
    flags: OFlags,
    mode: u32,
) -> io::Result<(OwnedFd, Stat)> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(mode)).map_err(|e| match e {
        rustix::io::Errno::LOOP => refused("a symbolic link (links are not followed)"),
        e => io::Error::from(e),
    })?;
    let st = rfs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(refused(&format!("{}, not a regular file", kind_name(kind))));
    }
    if st.st_nlink != 1 {
        return Err(refused(&format!(
            "{} hard links, not one (it could be another file)",
            st.st_nlink
        )));
    }
    Ok((fd, st))
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{why}: refused"))
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "a FIFO",
        FileType::Directory => "a directory",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        _ => "not a plain file",
    }
}

/// Refuse a file of `size` bytes that may hold at most `limit` (`what` names its kind).
fn check_size(size: u64, limit: u64, what: &str) -> io::Result<()> {
    if size > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{size} bytes, more than the {limit} {what} may hold: refused"),
        ));
    }
    Ok(())
}

/// A small file (metadata, steps) read whole from a user's directory, at most `limit`
/// bytes: larger is refused, not cut.
pub fn read_small(dir: impl AsFd, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    let (fd, st) = open_regular(dir, name, OFlags::RDONLY, 0)?;
    let size = st.st_size.max(0) as u64;
    check_size(size, limit, "this file")?;
    let mut data = Vec::with_capacity(size as usize);
    // The file may grow while read: what fstat saw is what is read.
    File::from(fd).take(size).read_to_end(&mut data)?;
    Ok(data)
}

/// How many bytes of samples a recording of this span and period can hold, bounded by
/// [`SAMPLES_MAX_BYTES`]: a 10-minute job's file of gigabytes is refused at once. The
/// metadata can lie about its span; the hard bound holds whatever it says.
pub fn samples_limit(meta: &Meta, now_unix_ms: u64) -> u64 {
    // A running job's file grows until now.
    let end = meta.end_unix_ms.unwrap_or(now_unix_ms);
    let span_ms = end.saturating_sub(meta.start_unix_ms);
    let rows = (span_ms / meta.period_ms.max(1)).saturating_add(ROWS_SLACK);
    rows.saturating_mul(ROW_BYTES_BOUND).min(SAMPLES_MAX_BYTES)
}

/// Why a file of a recording could not be used, naming it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn new(path: &Path, source: io::Error) -> FileError {
        FileError {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn is_permission_denied(&self) -> bool {
        self.source.kind() == io::ErrorKind::PermissionDenied
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

/// A job's directory in the spool, held open: every file is opened relative to it.
#[derive(Debug)]
pub struct JobDir {
    fd: OwnedFd,
    path: PathBuf,
    job_id: u32,
    owner_uid: u32,
    owner_gid: u32,
}

impl JobDir {
    /// `spool/<job_id>/`, not through a symbolic link; `Ok(None)` when there is none.
    pub fn open(spool: &Path, job_id: u32) -> Result<Option<JobDir>, FileError> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let spool_fd = match rfs::openat(rfs::CWD, spool, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(FileError::new(spool, e.into())),
        };
        let name = layout::job_dir_name(job_id);
        let path = spool.join(&name);
        let fd = match rfs::openat(
            &spool_fd,
            name.as_str(),
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(FileError::new(
                    &path,
                    refused("not a directory (a job directory is never a link)"),
                ))
            }
            Err(e) => return Err(FileError::new(&path, e.into())),
        };
        let st = rfs::fstat(&fd).map_err(|e| FileError::new(&path, e.into()))?;
        Ok(Some(JobDir {
            fd,
            path,
            job_id,
            owner_uid: st.st_uid,
            owner_gid: st.st_gid,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory, to open its files with [`open_regular`].
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The job id, from the directory's name.
    pub fn job_id(&self) -> u32 {
        self.job_id
    }

    /// The directory's owner: the job's user (the plugin gives it to them).
    pub fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    pub fn owner_gid(&self) -> u32 {
        self.owner_gid
    }

    /// The nodes that have a metadata file here (`<node>.meta.json`), sorted; names that
    /// are not node names (hidden temporary files, odd characters) are not nodes. More
    /// than [`MAX_NODES`] is refused: no job runs on so many, and each costs a read.
    pub fn nodes(&self) -> Result<Vec<NodeName>, FileError> {
        let dir =
            rfs::Dir::read_from(&self.fd).map_err(|e| FileError::new(&self.path, e.into()))?;
        let mut nodes = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| FileError::new(&self.path, e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if let Some(node) = layout::node_of_meta_file(name).and_then(|n| NodeName::new(n).ok())
            {
                nodes.push(node);
            }
            if nodes.len() > MAX_NODES {
                let why = format!("more than {MAX_NODES} metadata files, so many nodes");
                return Err(FileError::new(&self.path, refused(&why)));
            }
        }
        nodes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(nodes)
    }

    /// Nodes with a samples file but no metadata: a recording that failed as it began
    /// (a full spool: the sampler could not write its metadata).
    pub fn nodes_without_metadata(&self) -> Result<Vec<NodeName>, FileError> {
        let with_meta = self.nodes()?;
        let dir =
            rfs::Dir::read_from(&self.fd).map_err(|e| FileError::new(&self.path, e.into()))?;
        let mut nodes = Vec::new();
        for entry in dir.take(MAX_NODES) {
            let entry = entry.map_err(|e| FileError::new(&self.path, e.into()))?;
            let Some(node) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|name| name.strip_suffix(".samples.csv"))
                .and_then(|n| NodeName::new(n).ok())
            else {
                continue;
            };
            if !with_meta.contains(&node) {
                nodes.push(node);
            }
        }
        nodes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(nodes)
    }

    /// A node's metadata as the file says it, unchecked: see [`vouch_for`]. Errors never
    /// quote the file (it could be anything).
    pub fn read_meta(&self, node: &NodeName) -> Result<Meta, FileError> {
        let name = layout::meta_file_name(node);
        let path = self.path.join(&name);
        let data =
            read_small(&self.fd, &name, META_MAX_BYTES).map_err(|e| FileError::new(&path, e))?;
        let text = std::str::from_utf8(&data).map_err(|_| {
            FileError::new(
                &path,
                refused("not UTF-8 text, so not an aipm metadata file"),
            )
        })?;
        Meta::from_json(text).map_err(|e| {
            let why = format!(
                "not an aipm metadata file ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            )
            .to_lowercase();
            FileError::new(&path, io::Error::new(io::ErrorKind::InvalidData, why))
        })
    }

    /// A node's samples, if its file is no larger than `limit` bytes ([`samples_limit`]).
    pub fn read_samples(&self, node: &NodeName, limit: u64) -> Result<Samples, ReadError> {
        let name = layout::samples_file_name(node);
        read_samples_in(&self.fd, &self.path.join(&name), &name, limit)
    }
}

/// The samples file `name` in the directory `dir` (at `path`, for messages).
pub(crate) fn read_samples_in(
    dir: impl AsFd,
    path: &Path,
    name: &str,
    limit: u64,
) -> Result<Samples, ReadError> {
    let io_error = |source| ReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let (fd, st) = open_regular(dir, name, OFlags::RDONLY, 0).map_err(io_error)?;
    let size = st.st_size.max(0) as u64;
    check_size(size, limit, "a samples file of this recording").map_err(io_error)?;
    check_not_sparse(size, st.st_blocks.max(0) as u64 * 512).map_err(io_error)?;
    Samples::read_file(File::from(fd), size, path)
}

/// A file written a line at a time (samples, an export's CSV) is never sparse: one of
/// gigabytes with next to nothing on disk (`truncate -s`) would cost its reader the time
/// to read its zeros, for free. The bound leaves room for a file system's compression
/// (CSV digits shrink about tenfold at most).
pub fn check_not_sparse(size: u64, on_disk: u64) -> io::Result<()> {
    if size > 1 << 20 && on_disk.saturating_mul(100) < size {
        return Err(refused(&format!(
            "a sparse file ({size} bytes, {on_disk} on disk), which aipm never writes"
        )));
    }
    Ok(())
}

/// Who and what a node's recording is, from the file system: the job from the
/// directory's name, the node from the file's name, the uid from the directory's owner,
/// the user name and group from the system's user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub job_id: u32,
    pub node: NodeName,
    pub uid: u32,
    pub gid: u32,
    /// The system's name for `uid`; its number when the system has none.
    pub user: String,
}

/// Put `identity` in place of what a metadata file claims, and say, naming the file, each
/// thing it claimed otherwise. Quoted values are cut to 80 characters.
pub fn vouch_for(meta: &mut Meta, identity: &Identity, file: &Path) -> Vec<String> {
    let mut claims = Vec::new();
    let mut differ = |field: &str, claimed: String, actual: String| {
        if claimed != actual {
            claims.push(format!(
                "{}: claims {field} {:?}, but it is {actual:?} (from the file system): its claim is ignored",
                file.display(),
                cut(&claimed, 80)
            ));
        }
    };
    differ(
        "job_id",
        meta.job_id.to_string(),
        identity.job_id.to_string(),
    );
    differ(
        "node",
        meta.node.clone(),
        identity.node.as_str().to_string(),
    );
    differ("uid", meta.uid.to_string(), identity.uid.to_string());
    differ("user", meta.user.clone(), identity.user.clone());
    meta.job_id = identity.job_id;
    meta.node = identity.node.as_str().to_string();
    meta.uid = identity.uid;
    meta.gid = identity.gid;
    meta.user = identity.user.clone();
    claims
}

/// At most `max` characters of `text`, with `…` where it was cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn spool_with_job(job: u32) -> (tempfile::TempDir, PathBuf) {
        let spool = tempfile::tempdir().unwrap();
        let dir = spool.path().join(job.to_string());
        std::fs::create_dir(&dir).unwrap();
        (spool, dir)
    }

    fn meta(job_id: u32, node: &str, user: &str, uid: u32) -> Meta {
        Meta {
            job_id,
            node: node.into(),
            user: user.into(),
            uid,
            start_unix_ms: 1_700_000_000_000,
            end_unix_ms: Some(1_700_000_060_000),
            period_ms: 1000,
            ..Meta::default()
        }
    }

    fn node(name: &str) -> NodeName {
        NodeName::new(name).unwrap()
    }

    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let (spool, dir) = spool_with_job(7);
        rustix::fs::mknodat(
            rfs::CWD,
            dir.join("n1.meta.json"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let job = JobDir::open(spool.path(), 7).unwrap().unwrap();
        let err = job.read_meta(&node("n1")).unwrap_err().to_string();
        assert!(
            err.contains("n1.meta.json") && err.contains("a FIFO"),
            "{err}"
        );
    }

    #[test]
    fn links_are_refused_and_their_target_never_quoted() {
        let (spool, dir) = spool_with_job(7);
        let secret = spool.path().join("secret");
        std::fs::write(&secret, "root:$6$hash:19000:0:99999:7:::\n").unwrap();
        symlink(&secret, dir.join("n1.meta.json")).unwrap();
        std::fs::hard_link(&secret, dir.join("n2.meta.json")).unwrap();
        let job = JobDir::open(spool.path(), 7).unwrap().unwrap();
        let soft = job.read_meta(&node("n1")).unwrap_err().to_string();
        assert!(soft.contains("symbolic link"), "{soft}");
        let hard = job.read_meta(&node("n2")).unwrap_err().to_string();
        assert!(hard.contains("2 hard links"), "{hard}");
        // A plain file with those contents: not quoted either.
        std::fs::remove_file(dir.join("n2.meta.json")).unwrap();
        std::fs::copy(&secret, dir.join("n2.meta.json")).unwrap();
        let plain = job.read_meta(&node("n2")).unwrap_err().to_string();
        assert!(plain.contains("not an aipm metadata file"), "{plain}");
        for err in [soft, hard, plain] {
            assert!(!err.contains("root:") && !err.contains("$6$"), "{err}");
        }
    }

    #[test]
    fn a_job_directory_that_is_a_link_is_refused() {
        let (spool, dir) = spool_with_job(7);
        symlink(&dir, spool.path().join("8")).unwrap();
        let err = JobDir::open(spool.path(), 8).unwrap_err().to_string();
        assert!(err.contains("/8: not a directory"), "{err}");
        assert!(JobDir::open(spool.path(), 9).unwrap().is_none());
    }

    #[test]
    fn large_files_are_refused_before_reading() {
        let (spool, dir) = spool_with_job(7);
        let big = File::create(dir.join("n1.meta.json")).unwrap();
        big.set_len(META_MAX_BYTES + 1).unwrap();
        // A sparse samples file of 4 TiB: refused from its size, nothing allocated.
        let sparse = File::create(dir.join("n1.samples.csv")).unwrap();
        sparse.set_len(4 << 40).unwrap();
        let job = JobDir::open(spool.path(), 7).unwrap().unwrap();
        let err = job.read_meta(&node("n1")).unwrap_err().to_string();
        assert!(
            err.contains("n1.meta.json: 65537 bytes, more than the 65536"),
            "{err}"
        );
        let err = job
            .read_samples(&node("n1"), SAMPLES_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("n1.samples.csv: 4398046511104 bytes"), "{err}");
    }

    #[test]
    fn a_sparse_samples_file_under_the_bound_is_refused_too() {
        let (spool, dir) = spool_with_job(7);
        std::fs::write(dir.join("n1.samples.csv"), "time_unix_ms\n").unwrap();
        let sparse = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("n1.samples.csv"))
            .unwrap();
        sparse.set_len(1 << 30).unwrap();
        let job = JobDir::open(spool.path(), 7).unwrap().unwrap();
        let err = job
            .read_samples(&node("n1"), SAMPLES_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n1.samples.csv: a sparse file (1073741824 bytes"),
            "{err}"
        );
        assert!(
            check_not_sparse(2 << 20, (2 << 20) / 20).is_ok(),
            "compressed"
        );
        assert!(check_not_sparse(1000, 0).is_ok(), "small");
    }

    #[test]
    fn the_samples_limit_follows_the_span_and_stops_at_the_hard_bound() {
        let m = meta(7, "n1", "alice", 1000);
        // A minute at 1 s: 1060 rows.
        assert_eq!(samples_limit(&m, 0), 1060 * ROW_BYTES_BOUND);
        let forged = Meta {
            start_unix_ms: 0,
            period_ms: 1,
            ..m.clone()
        };
        assert_eq!(samples_limit(&forged, 0), SAMPLES_MAX_BYTES);
        let forever = Meta {
            end_unix_ms: Some(u64::MAX),
            ..forged
        };
        assert_eq!(samples_limit(&forever, 0), SAMPLES_MAX_BYTES);
        // A clock stepped back: the slack only.
        let back = Meta {
            end_unix_ms: Some(1),
            ..m
        };
        assert_eq!(samples_limit(&back, 0), ROWS_SLACK * ROW_BYTES_BOUND);
    }

    #[test]
    fn identity_comes_from_the_file_system_and_claims_are_reported() {
        let (spool, dir) = spool_with_job(7);
        std::fs::write(
            dir.join("n1.meta.json"),
            meta(99, "other", &"x".repeat(200), 0).to_json(),
        )
        .unwrap();
        std::fs::write(dir.join(".n1.meta.json.123.tmp"), "").unwrap();
        std::fs::write(dir.join("a b.meta.json"), "").unwrap();
        let job = JobDir::open(spool.path(), 7).unwrap().unwrap();
        assert_eq!(job.nodes().unwrap(), [node("n1")]);
        let mut m = job.read_meta(&node("n1")).unwrap();
        let identity = Identity {
            job_id: job.job_id(),
            node: node("n1"),
            uid: job.owner_uid(),
            gid: job.owner_gid(),
            user: "alice".into(),
        };
        let path = dir.join("n1.meta.json");
        let claims = vouch_for(&mut m, &identity, &path);
        assert_eq!(
            (m.job_id, m.node.as_str(), m.user.as_str()),
            (7, "n1", "alice")
        );
        assert_eq!(claims.len(), 3 + usize::from(job.owner_uid() != 0));
        assert!(claims[0].contains("n1.meta.json: claims job_id \"99\", but it is \"7\""));
        assert!(claims.iter().all(|c| c.len() < 300), "{claims:?}");
        assert!(vouch_for(&mut m, &identity, &path).is_empty());
    }

    #[test]
    fn cut_counts_characters() {
        assert_eq!(cut("abc", 2), "ab…");
        assert_eq!(cut("été", 5), "été");
    }
}
