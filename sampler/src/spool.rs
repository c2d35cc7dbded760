//! The writing side of the spool: the job's directory and files, created as root inside
//! slurmstepd without following symlinks and handed to the job's user.
//!
//! Everything is opened relative to directory handles with `O_NOFOLLOW`, so a user who
//! can write somewhere on the path cannot redirect a root-owned write.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use aipm_recording::layout::{self, NodeName};
use aipm_recording::meta::Meta;
use aipm_recording::untrusted;
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::process::{Gid, Uid};

/// What went wrong, with the path, for Slurm's log.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {reason}")]
pub struct SpoolError {
    pub what: &'static str,
    pub path: String,
    pub reason: String,
}

pub(crate) fn err(what: &'static str, path: &Path, reason: impl ToString) -> SpoolError {
    SpoolError {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

/// The job's directory on this node and its append-only files, open for the sampler.
#[derive(Debug)]
pub struct JobFiles {
    dir: OwnedFd,
    dir_path: std::path::PathBuf,
    node: NodeName,
    uid: u32,
    gid: u32,
    /// Modes of the files: the job's user's alone, or also readable by the reader group.
    file_mode: u32,
    samples: File,
    steps: File,
}

/// The group that may read every recording besides its user (the admin's `reader_group=`,
/// e.g. SlurmUser's group, so that the controller's epilog can read them): directories
/// `user:group 0750`, files `0640`. Without it, the job's own group and no access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderGroup(pub Option<u32>);

impl JobFiles {
    /// Open (creating if needed) `spool/<job_id>/` and this node's files, owned by the job's
    /// user with no access for others. In the plugin this runs as root, before slurmstepd
    /// drops privileges; `aipm-analyze record` runs it as the user, in a spool of their own.
    pub fn open(
        spool: &Path,
        job_id: u32,
        node: &NodeName,
        uid: u32,
        gid: u32,
    ) -> Result<JobFiles, SpoolError> {
        Self::open_with_readers(spool, job_id, node, uid, gid, ReaderGroup::default())
    }

    /// [`JobFiles::open`], readable by `readers` too when it names a group.
    pub fn open_with_readers(
        spool: &Path,
        job_id: u32,
        node: &NodeName,
        uid: u32,
        job_gid: u32,
        readers: ReaderGroup,
    ) -> Result<JobFiles, SpoolError> {
        let (gid, dir_mode, file_mode) = match readers.0 {
            Some(group) => (group, 0o750, 0o640),
            None => (job_gid, 0o700, 0o600),
        };
        let (dir, dir_path) = open_job_dir(spool, job_id, uid, gid, dir_mode)?;
        let append = |file: String| -> Result<File, SpoolError> {
            let path = dir_path.join(&file);
            let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE;
            let fd =
                open_regular(&dir, &file, flags, 0o600).map_err(|e| err("opening", &path, e))?;
            give_to_user(&fd, uid, gid, file_mode).map_err(|e| err("handing over", &path, e))?;
            Ok(File::from(fd))
        };
        Ok(JobFiles {
            samples: append(layout::samples_file_name(node))?,
            steps: append(layout::steps_file_name(node))?,
            dir,
            dir_path,
            node: node.clone(),
            uid,
            gid,
            file_mode,
        })
    }

    pub fn dir_path(&self) -> &Path {
        &self.dir_path
    }

    /// Note a step that ran on this node; one `write` of one line, so concurrent steps
    /// never interleave.
    pub fn add_step(&mut self, step: &str) -> io::Result<()> {
        self.steps.write_all(format!("{step}\n").as_bytes())
    }

    /// The steps noted so far, in order, without repeats.
    pub fn steps(&self) -> Vec<String> {
        let mut steps: Vec<String> = Vec::new();
        if let Ok(text) = self.read_file(&layout::steps_file_name(&self.node)) {
            for step in text.lines().filter(|l| !l.is_empty()) {
                if !steps.iter().any(|s| s == step) {
                    steps.push(step.to_string());
                }
            }
        }
        steps
    }

    /// Append one complete line to the samples file and push it to disk, so that a crash
    /// of the node loses at most the sample being written.
    pub fn append_sample(&mut self, line: &str) -> io::Result<()> {
        self.samples.write_all(line.as_bytes())?;
        rfs::fdatasync(&self.samples)?;
        Ok(())
    }

    /// The header and the last complete line of the samples file, after cutting off a
    /// partial line left by a killed sampler. Only the leader calls this.
    pub fn samples_tail(&mut self) -> io::Result<(String, Option<String>)> {
        let name = layout::samples_file_name(&self.node);
        let fd = open_regular(&self.dir, &name, OFlags::RDONLY, 0)?;
        let mut file = File::from(fd);
        let len = file.seek(SeekFrom::End(0))?;
        let mut head = vec![0u8; len.min(8192) as usize];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut head)?;
        let header = match head.iter().position(|&b| b == b'\n') {
            Some(end) => String::from_utf8_lossy(&head[..end]).into_owned(),
            None => String::new(),
        };
        let tail_start = len.saturating_sub(64 * 1024);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(tail_start))?;
        file.read_to_end(&mut tail)?;
        let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
            // Not one complete line: a header cut short, or a line longer than the window.
            if tail_start == 0 {
                rfs::ftruncate(&self.samples, 0)?;
                return Ok((String::new(), None));
            }
            return Ok((header, None));
        };
        let complete_end = tail_start + last_newline as u64 + 1;
        if complete_end < len {
            rfs::ftruncate(&self.samples, complete_end)?;
        }
        let last_start = tail[..last_newline]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| tail_start + i as u64 + 1);
        // No newline before the last one: the only complete line is the header.
        let last = last_start.map(|start| {
            String::from_utf8_lossy(&tail[(start - tail_start) as usize..last_newline]).into_owned()
        });
        Ok((header, last))
    }

    pub fn read_meta(&self) -> Option<Meta> {
        let text = self.read_file(&layout::meta_file_name(&self.node)).ok()?;
        Meta::from_json(&text).ok()
    }

    /// Replace the metadata file atomically (write a temporary file, sync, rename).
    pub fn write_meta(&self, meta: &Meta) -> io::Result<()> {
        let name = layout::meta_file_name(&self.node);
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        // Emptied after the checks, not by O_TRUNC: a hard link would be cut before them.
        let fd = open_regular(&self.dir, &tmp, OFlags::WRONLY | OFlags::CREATE, 0o600)?;
        let written = (|| -> io::Result<()> {
            rfs::ftruncate(&fd, 0)?;
            give_to_user(&fd, self.uid, self.gid, self.file_mode)?;
            let mut file = File::from(fd);
            file.write_all(meta.to_json().as_bytes())?;
            rfs::fdatasync(&file)?;
            rfs::renameat(&self.dir, tmp.as_str(), &self.dir, name.as_str())?;
            Ok(())
        })();
        if written.is_err() {
            // A full spool: no empty temporary file left behind in the user's directory.
            let _ = rfs::unlinkat(&self.dir, tmp.as_str(), rfs::AtFlags::empty());
        }
        written
    }

    fn read_file(&self, name: &str) -> io::Result<String> {
        read_small_file(&self.dir, name)
    }
}

/// What `retire_previous` moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    /// This node's files, renamed `<file>.<suffix>` in the job directory.
    NodeFiles { suffix: String },
    /// The whole job directory, another user's, renamed `<id>.<suffix>` in the spool.
    Directory { suffix: String },
}

/// Move aside this node's recording of an earlier job that had the same id (Slurm's ids
/// restart when its state is wiped). Called from the job's prolog on the node, before any
/// of its steps runs there, so that nothing of the new job is open yet. This node's files
/// become `<node>.meta.json.previous-<start ms>` and so on; a directory that belongs to
/// another user than the job's (`uid`) becomes `<id>.previous-<now ms>` as a whole, or the
/// new job could not be recorded there. Readers ignore both. Nothing is ever replaced: a
/// name already taken gets `-2`, `-3`, … appended.
pub fn retire_previous(
    spool: &Path,
    job_id: u32,
    node: &NodeName,
    uid: u32,
) -> Result<Option<Retired>, SpoolError> {
    let spool_fd = match rfs::openat(rfs::CWD, spool, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(err("opening spool", spool, e)),
    };
    let name = layout::job_dir_name(job_id);
    let dir_path = spool.join(&name);
    let dir = match rfs::openat(&spool_fd, name.as_str(), DIR_FLAGS, Mode::empty()) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(err("opening job directory", &dir_path, e)),
    };
    let owner = rfs::fstat(&dir)
        .map_err(|e| err("checking", &dir_path, e))?
        .st_uid;
    if owner != uid && owner != 0 {
        let start = aipm_recording::time::now_unix_ms();
        return move_aside(&spool_fd, &[name.as_str()], start)
            .map(|suffix| Some(Retired::Directory { suffix }))
            .map_err(|e| err("moving aside", &dir_path, e));
    }
    let meta_name = layout::meta_file_name(node);
    let samples_name = layout::samples_file_name(node);
    let steps_name = layout::steps_file_name(node);
    let meta = read_small_file(&dir, &meta_name)
        .ok()
        .and_then(|text| Meta::from_json(&text).ok());
    let start = match meta {
        Some(meta) => meta.start_unix_ms,
        // No metadata: a recording cut before it was written, if its samples have anything.
        None => match rfs::statat(&dir, samples_name.as_str(), rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_size > 0 => 0,
            _ => return Ok(None),
        },
    };
    let names = [
        meta_name.as_str(),
        samples_name.as_str(),
        steps_name.as_str(),
    ];
    move_aside(&dir, &names, start)
        .map(|suffix| Some(Retired::NodeFiles { suffix }))
        .map_err(|e| err("moving aside", &dir_path, e))
}

/// Rename `from` to `to` in `dir` unless `to` exists. NFS and some other shared file
/// systems refuse rename flags (EINVAL): there the check is made first, then a plain rename
/// (the directories renamed in are root's or the job user's own, where only they create).
fn rename_no_replace(dir: &OwnedFd, from: &str, to: &str) -> rustix::io::Result<()> {
    use rustix::fs::RenameFlags;
    match rfs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Err(rustix::io::Errno::INVAL) => {
            match rfs::statat(dir, to, rfs::AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => return Err(rustix::io::Errno::EXIST),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
            rfs::renameat(dir, from, dir, to)
        }
        other => other,
    }
}

/// Rename each of `names` (those that exist) in `dir` to `<name>.previous-<start>`, all or
/// none, never over an existing name: `-2`, `-3`, … are tried after. Returns the suffix.
fn move_aside(dir: &OwnedFd, names: &[&str], start: u64) -> rustix::io::Result<String> {
    for attempt in 1..=100 {
        let suffix = match attempt {
            1 => format!("previous-{start}"),
            n => format!("previous-{start}-{n}"),
        };
        let mut moved: Vec<(&str, String)> = Vec::new();
        let mut taken = None;
        for &name in names {
            let aside = format!("{name}.{suffix}");
            match rename_no_replace(dir, name, &aside) {
                Ok(()) => moved.push((name, aside)),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    taken = Some(e);
                    break;
                }
            }
        }
        match taken {
            None => return Ok(suffix),
            Some(e) => {
                // Put back what was moved: a recording is moved whole or not at all.
                for (name, aside) in moved.iter().rev() {
                    let _ = rename_no_replace(dir, aside, name);
                }
                if e != rustix::io::Errno::EXIST {
                    return Err(e);
                }
            }
        }
    }
    Err(rustix::io::Errno::EXIST)
}

/// Open `name` as root in a directory its user can write: never through a symlink, never
/// waiting (a FIFO put there would hang the open, and the job with it), and only a regular
/// file with one link (a hard link to a file elsewhere would be read or handed over).
fn open_regular(dir: &OwnedFd, name: &str, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
    untrusted::open_regular(dir, name, flags, mode)
        .map(|(fd, _)| fd)
        .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))
}

/// A metadata or steps file, read as root from a directory its user can write: at most
/// 1 MiB (real ones are a few hundred bytes).
fn read_small_file(dir: &OwnedFd, name: &str) -> io::Result<String> {
    let data = untrusted::read_small(dir, name, untrusted::STEPS_MAX_BYTES)?;
    String::from_utf8(data).map_err(|_| io::Error::other(format!("{name}: not UTF-8 text")))
}

/// Make a file the job user's, readable by nobody else. When slurmstepd runs with the
/// user's effective uid the file is already theirs and `fchown` to oneself is allowed.
pub(crate) fn give_to_user(fd: impl AsFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let st = rfs::fstat(&fd)?;
    if st.st_uid != uid || st.st_gid != gid {
        rfs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Open (creating if needed) `spool/<job_id>/` in a checked spool (root's, or the caller's,
/// not writable by others), as the job's user's: `uid:gid`, `dir_mode`. A directory of
/// another user is refused.
pub(crate) fn open_job_dir(
    spool: &Path,
    job_id: u32,
    uid: u32,
    gid: u32,
    dir_mode: u32,
) -> Result<(OwnedFd, std::path::PathBuf), SpoolError> {
    let spool_fd = rfs::openat(rfs::CWD, spool, DIR_FLAGS, Mode::empty()).map_err(|e| {
        let hint = "; create it (install -d -o root -g root -m 0755 DIR) or set spool= in plugstack.conf.d/aipm.conf";
        err("opening spool", spool, format!("{e}{hint}"))
    })?;
    let st = rfs::fstat(&spool_fd).map_err(|e| err("checking spool", spool, e))?;
    let euid = rustix::process::geteuid().as_raw();
    if (st.st_uid != 0 && st.st_uid != euid) || st.st_mode & 0o022 != 0 {
        return Err(err(
            "refusing spool",
            spool,
            "it must belong to root (or to you) and be writable by its owner only (chmod 755)",
        ));
    }
    let name = layout::job_dir_name(job_id);
    let dir_path = spool.join(&name);
    match rfs::mkdirat(&spool_fd, name.as_str(), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(err("creating job directory", &dir_path, e)),
    }
    let dir = rfs::openat(&spool_fd, name.as_str(), DIR_FLAGS, Mode::empty())
        .map_err(|e| err("opening job directory", &dir_path, e))?;
    let st = rfs::fstat(&dir).map_err(|e| err("checking", &dir_path, e))?;
    if st.st_uid != uid && st.st_uid != 0 {
        return Err(err(
            "refusing job directory",
            &dir_path,
            format!("it belongs to uid {}, not the job's uid {uid}", st.st_uid),
        ));
    }
    give_to_user(&dir, uid, gid, dir_mode).map_err(|e| err("handing over", &dir_path, e))?;
    Ok((dir, dir_path))
}

/// The node-local lock that elects one sampler per job per node.
#[derive(Debug)]
pub struct ElectionLock {
    file: File,
}

impl ElectionLock {
    /// Open (creating if needed) `lockdir/job_<id>.lock`. Runs as root.
    pub fn open(lockdir: &Path, job_id: u32) -> Result<ElectionLock, SpoolError> {
        // With `%n` the lock directory is a subdirectory of one in /run, which a reboot
        // empties: its parents are made too, root's, 0755.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(lockdir)
            .map_err(|e| err("creating lock directory", lockdir, e))?;
        let dir = rfs::openat(rfs::CWD, lockdir, DIR_FLAGS, Mode::empty())
            .map_err(|e| err("opening lock directory", lockdir, e))?;
        let name = layout::lock_file_name(job_id);
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| err("opening lock", &lockdir.join(&name), e))?;
        Ok(ElectionLock {
            file: File::from(fd),
        })
    }

    /// Become the leader if no other sampler of this job on this node is.
    pub fn try_lead(&self) -> bool {
        rfs::flock(&self.file, rfs::FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    /// Whether a step of the job has recorded on this node: the lock file is made by the
    /// first recorded step and removed by the job's epilog.
    pub fn exists(lockdir: &Path, job_id: u32) -> bool {
        std::fs::symlink_metadata(lockdir.join(layout::lock_file_name(job_id)))
            .is_ok_and(|m| m.file_type().is_file())
    }

    /// Keep the GPUs this recording's first sampler decided on in the lock file, root's in
    /// root's lock directory: the job's user can write the metadata, not this.
    pub fn keep_gpus(&self, gpus: &RecordedGpus) -> io::Result<()> {
        let mut text = String::from(RecordedGpus::MAGIC);
        for id in &gpus.ids {
            text.push_str(&format!("id {id}\n"));
        }
        for channel in &gpus.channels {
            text.push_str(&format!("channel {channel}\n"));
        }
        rfs::ftruncate(&self.file, 0)?;
        rustix::io::pwrite(&self.file, text.as_bytes(), 0)?;
        Ok(())
    }

    /// The GPUs kept by [`ElectionLock::keep_gpus`], if any were: what a sampler taking
    /// over reopens.
    pub fn kept_gpus(&self) -> Option<RecordedGpus> {
        let mut buf = vec![0u8; RecordedGpus::MAX_BYTES];
        let n = rustix::io::pread(&self.file, &mut buf, 0).ok()?;
        RecordedGpus::parse(std::str::from_utf8(&buf[..n]).ok()?)
    }

    /// Remove the lock file once every step of the job has ended on the node (epilog).
    pub fn remove(lockdir: &Path, job_id: u32) -> io::Result<()> {
        match std::fs::remove_file(lockdir.join(layout::lock_file_name(job_id))) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A recording's GPUs as its first sampler opened them: Slurm's ids (the metadata's `gpus`)
/// and NVML's channels (UUIDs), without repeats, at most [`RecordedGpus::MAX`] of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedGpus {
    pub ids: Vec<String>,
    pub channels: Vec<String>,
}

impl RecordedGpus {
    const MAGIC: &'static str = "aipm recorded gpus v1\n";
    /// More GPUs (or MIG slices) than any node has.
    pub const MAX: usize = 64;
    const MAX_BYTES: usize = 16 * 1024;

    /// `ids` and `channels`, repeats removed, cut to [`RecordedGpus::MAX`] each.
    pub fn new(ids: &[String], channels: &[String]) -> RecordedGpus {
        let distinct = |items: &[String]| {
            let mut kept: Vec<String> = Vec::new();
            for item in items {
                if kept.len() < Self::MAX && !kept.contains(item) {
                    kept.push(item.clone());
                }
            }
            kept
        };
        RecordedGpus {
            ids: distinct(ids),
            channels: distinct(channels),
        }
    }

    fn parse(text: &str) -> Option<RecordedGpus> {
        let body = text.strip_prefix(Self::MAGIC)?;
        let (mut ids, mut channels) = (Vec::new(), Vec::new());
        for line in body.lines() {
            let (kind, value) = line.split_once(' ')?;
            match kind {
                "id" => ids.push(value.to_string()),
                "channel" => channels.push(value.to_string()),
                _ => return None,
            }
        }
        Some(RecordedGpus::new(&ids, &channels))
    }
}
