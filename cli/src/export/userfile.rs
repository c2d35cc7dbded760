//! A user's CSV in the export directory: opened by root without following links, given to
//! the user (0600), repaired if a killed export left half a line, and appended to whole
//! lines at a time so that a crash never leaves a row that reads as complete.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use aipm_recording::untrusted;
use anyhow::{bail, Context as _};
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::process::{Gid, Uid};

use super::columns::Layout;

/// The export directory, held open: every file is opened relative to it.
pub struct ExportDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl ExportDir {
    /// Open (creating it root-only if missing) the export directory. As root, it must be
    /// root's and not writable by others: a user who can write in it could plant links.
    pub fn open(path: &Path) -> anyhow::Result<ExportDir> {
        if !path.exists() {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        let fd = rfs::openat(
            rfs::CWD,
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", path.display()))?;
        let st = rfs::fstat(&fd)?;
        let euid = rustix::process::geteuid().as_raw();
        if st.st_uid != euid || st.st_mode & 0o022 != 0 {
            bail!(
                "{}: must belong to the user running the export (uid {euid}) and not be writable by group or others (it is uid {}, mode {:o})",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            );
        }
        Ok(ExportDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<user>.csv`, locked, owned by the user and closed to others, checked against
    /// `layout`. `uid` and `gid` are the system's for `user` (a job directory's owner),
    /// never a recording's word. The file is taken only if it is root's (new, or made by an
    /// admin) or already that user's; a lock held on it (the user's `flock`, another export)
    /// is not waited for: the file is skipped with an error, and the next run retries it.
    pub fn user_file(
        &self,
        user: &str,
        uid: u32,
        gid: u32,
        layout: Layout,
    ) -> anyhow::Result<UserFile> {
        if user.is_empty()
            || user.starts_with('.')
            || user.chars().any(|c| c == '/' || c.is_control())
        {
            bail!("{user:?} cannot be a file name: not a user name");
        }
        let name = format!("{user}.csv");
        let path = self.path.join(&name);
        // The name the file carries must be that uid's on this system: a file is never
        // handed to a uid under another user's name.
        let system_uid = match user.parse::<u32>() {
            Ok(number) => Some(number),
            Err(_) => crate::system_user::by_name(user).map(|u| u.uid),
        };
        if system_uid != Some(uid) {
            bail!(
                "{}: {user} is not uid {uid} on this system ({}): refused",
                path.display(),
                system_uid.map_or("no such user".to_string(), |u| format!("it is uid {u}"))
            );
        }
        let flags = OFlags::RDWR | OFlags::CREATE;
        let (fd, st) = untrusted::open_regular(&self.fd, &name, flags, 0o600)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let euid = rustix::process::geteuid().as_raw();
        if st.st_uid != uid && st.st_uid != euid {
            bail!(
                "{}: belongs to uid {}, not to {user} (uid {uid}) nor to the export: refused",
                path.display(),
                st.st_uid
            );
        }
        let size = st.st_size.max(0) as u64;
        if size > USER_FILE_MAX_BYTES {
            bail!(
                "{}: {size} bytes, more than the {USER_FILE_MAX_BYTES} a user's file may hold: refused",
                path.display()
            );
        }
        untrusted::check_not_sparse(size, st.st_blocks.max(0) as u64 * 512)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Never waited for: a user holding a lock on their file would hold up everyone's.
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                "{}: locked by another process (its user, or another export): skipped, retried on the next run",
                path.display()
            ),
            Err(e) => bail!("{}: locking: {e}", path.display()),
        }
        if euid == 0 {
            rfs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        } else if uid != euid {
            bail!("only root can write {user}'s file {}", path.display());
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
        if size == 0 {
            // A new file: make its name durable with its first rows.
            let _ = rfs::fsync(&self.fd);
        }
        let mut file = File::from(fd);
        let mut data = Vec::with_capacity(size as usize);
        // What fstat saw, not what the user may append meanwhile.
        (&mut file)
            .take(size)
            .read_to_end(&mut data)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut repaired = 0;
        if !data.is_empty() && !data.ends_with(b"\n") {
            // A killed export's half line: drop it; its job is not in the file, so it is
            // written again below.
            let cut = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            repaired = data.len() - cut;
            file.set_len(cut as u64)?;
            file.sync_data()?;
            data.truncate(cut);
        }
        let exported = read_rows(&data, &path, layout)?;
        Ok(UserFile {
            file,
            path,
            layout,
            empty: data.is_empty(),
            exported,
            repaired_bytes: repaired,
        })
    }
}

/// A user's file is a few hundred bytes a job: a gigabyte is a million jobs, or a file
/// that is not one (a sparse file of terabytes the user made of their own).
const USER_FILE_MAX_BYTES: u64 = 1 << 30;

/// The job ids already in a user's file; every line checked against the layout.
fn read_rows(data: &[u8], path: &Path, layout: Layout) -> anyhow::Result<HashSet<String>> {
    let header = layout.header();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut ids = HashSet::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 1;
        let record =
            record.map_err(|e| anyhow::anyhow!("{} line {line}: not CSV: {e}", path.display()))?;
        if index == 0 {
            if record.iter().ne(header.iter().copied()) {
                bail!(
                    "{} line 1: expected the {layout:?} header `{}`, found `{}` (a file of the other --layout?)",
                    path.display(),
                    header.join(","),
                    untrusted::cut(&record.iter().collect::<Vec<_>>().join(","), 80)
                );
            }
            continue;
        }
        if record.len() != header.len() {
            bail!(
                "{} line {line}: expected {} columns ({layout:?} layout), found {}",
                path.display(),
                header.len(),
                record.len()
            );
        }
        ids.insert(record[layout.job_column()].to_string());
    }
    Ok(ids)
}

pub struct UserFile {
    file: File,
    pub path: PathBuf,
    layout: Layout,
    empty: bool,
    /// Jobs already in the file.
    pub exported: HashSet<String>,
    /// Bytes of a cut last line that opening removed.
    pub repaired_bytes: usize,
}

impl UserFile {
    /// Append rows (the header first in a new file) in one write, then flush them to disk.
    /// `kill_after`: a test's stand-in for a crash, as many bytes as may still be written.
    pub fn append(
        &mut self,
        rows: &[Vec<String>],
        kill_after: &mut Option<usize>,
    ) -> anyhow::Result<()> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        if self.empty {
            w.write_record(self.layout.header())?;
        }
        for row in rows {
            w.write_record(row)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.file.seek(SeekFrom::End(0))?;
        if let Some(budget) = kill_after {
            if *budget < bytes.len() {
                self.file.write_all(&bytes[..*budget])?;
                self.file.sync_data()?;
                eprintln!("aipm-analyze: killed mid-write (AIPM_TEST_KILL_AFTER_BYTES)");
                std::process::abort();
            }
            *budget -= bytes.len();
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.empty = false;
        for row in rows {
            self.exported.insert(row[self.layout.job_column()].clone());
        }
        Ok(())
    }
}
