//! Which Slurm node this process serves, from the system and never from the job's
//! environment (which the user writes: every `srun` step inherits the batch script's
//! `SLURMD_NODENAME`, the first node's).
//!
//! - In a step's slurmstepd: SPANK 22.05 has no node-name item, and slurmstepd's own
//!   environment is cleared. But every slurmstepd listens on a Unix socket that it creates in
//!   slurmd's spool directory, named `<NodeName>_<job id>.<step id>` (with `.<component>` for
//!   a heterogeneous job's component), before any plugin hook runs: `scontrol listpids` and
//!   `sattach` find steps by that name. The kernel lists the socket's path with its inode in
//!   `/proc/net/unix`; the inode is one of this process's open descriptors.
//! - In the job prolog and epilog: slurmd builds their environment, and its
//!   `SLURMD_NODENAME` is slurmd's own node.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use aipm_recording::layout::{BadNodeName, NodeName};

/// The node of the step `job_id`.`step_id` whose slurmstepd this process is, from its
/// listening socket (see the module's comment); `proc_root` is `/proc` outside tests.
pub fn of_slurmstepd(proc_root: &Path, job_id: u32, step_id: u32) -> Result<NodeName, NodeUnknown> {
    let fd_dir = proc_root.join("self/fd");
    let entries = fs::read_dir(&fd_dir).map_err(|source| NodeUnknown::Listing {
        path: fd_dir.clone(),
        source,
    })?;
    let inodes: HashSet<u64> = entries
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .filter_map(|target| socket_inode(&target.to_string_lossy()))
        .collect();
    let table_path = proc_root.join("net/unix");
    let table = fs::read_to_string(&table_path).map_err(|source| NodeUnknown::Reading {
        path: table_path.clone(),
        source,
    })?;
    let suffix = format!("_{job_id}.{step_id}");
    let ours: Vec<(u64, &str)> = table
        .lines()
        .skip(1)
        .filter_map(parse_unix_line)
        .filter(|(inode, _)| inodes.contains(inode))
        .collect();
    // The kernel prints socket names raw: an abstract name holding a newline could forge a
    // line that gives one of our inodes another path. Such an inode then has two lines.
    if let Some((inode, _)) = ours
        .iter()
        .find(|(inode, _)| ours.iter().filter(|(other, _)| other == inode).count() > 1)
    {
        return Err(NodeUnknown::ForgedTable {
            inode: *inode,
            path: table_path,
        });
    }
    ours.iter()
        .filter(|(_, path)| path.starts_with('/') && is_roots_socket(path))
        .find_map(|(_, path)| node_of_socket(path, &suffix))
        .ok_or(NodeUnknown::NoSocket { suffix })?
        .map_err(NodeUnknown::from)
}

/// The node named by a slurmd's prolog or epilog environment.
pub fn of_script_environment() -> Result<NodeName, NodeUnknown> {
    let name = std::env::var("SLURMD_NODENAME").map_err(|_| NodeUnknown::NotInEnvironment)?;
    Ok(NodeName::new(&name)?)
}

/// Why this process's node could not be named.
#[derive(Debug, thiserror::Error)]
pub enum NodeUnknown {
    #[error("listing {}: {source}", path.display())]
    Listing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Reading {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line forged by an abstract socket's name (see [`of_slurmstepd`]).
    #[error("socket inode {inode} is listed twice in {}: not trusted", path.display())]
    ForgedTable { inode: u64, path: PathBuf },
    #[error("no socket *{suffix} of slurmstepd among this process's descriptors")]
    NoSocket { suffix: String },
    #[error("SLURMD_NODENAME is not set by slurmd")]
    NotInEnvironment,
    #[error(transparent)]
    BadName(#[from] BadNodeName),
}

/// This host's name, short (as `hostname -s`): the node name where Slurm's is unknown.
pub fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    match name.split_once('.') {
        Some((short, _)) => short.to_string(),
        None => name,
    }
}

/// Whether `path` is a socket file of root's, as slurmstepd's own is (a forged table line
/// could name any path). Tests run as root with their own socket files.
fn is_roots_socket(path: &str) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && m.uid() == 0)
}

/// `socket:[12345]`, as `/proc/self/fd` links show a socket, to its inode.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A line of `/proc/net/unix` (`Num RefCount Protocol Flags Type St Inode Path`) to its inode
/// and path; unnamed sockets have no path.
fn parse_unix_line(line: &str) -> Option<(u64, &str)> {
    let mut fields = line.split_whitespace();
    let inode = fields.nth(6)?.parse().ok()?;
    Some((inode, fields.next()?))
}

/// The node name of slurmstepd's socket path `<dir>/<node>_<job>.<step>[.<component>]`.
fn node_of_socket(path: &str, suffix: &str) -> Option<Result<NodeName, BadNodeName>> {
    let file = path.rsplit('/').next()?;
    let at = file.rfind(suffix)?;
    let rest = &file[at + suffix.len()..];
    let component_ok = rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty());
    component_ok.then(|| NodeName::new(&file[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake `/proc` with this process's descriptors and the kernel's socket table.
    fn fake_proc(fds: &[&str], table: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let fd_dir = root.path().join("self/fd");
        fs::create_dir_all(&fd_dir).unwrap();
        for (i, target) in fds.iter().enumerate() {
            symlink(target, fd_dir.join(i.to_string())).unwrap();
        }
        fs::create_dir_all(root.path().join("net")).unwrap();
        // `SPOOL/` in a line stands for a directory of real socket files (bound here, owned
        // by root as the tests run), as slurmd's spool holds slurmstepd's.
        let spool = root.path().join("spool");
        fs::create_dir_all(&spool).unwrap();
        let mut text = String::from("Num       RefCount Protocol Flags    Type St Inode Path\n");
        for line in table {
            let in_spool = line.contains("SPOOL/");
            let line = line.replace("SPOOL/", &format!("{}/", spool.display()));
            if let Some(path) = line.split_whitespace().nth(7).filter(|_| in_spool) {
                std::os::unix::net::UnixListener::bind(path).unwrap();
            }
            text.push_str(&line);
            text.push('\n');
        }
        fs::write(root.path().join("net/unix"), text).unwrap();
        root
    }

    const BATCH: u32 = 4294967291;

    #[test]
    fn the_node_is_read_from_this_stepds_own_socket() {
        let proc = fake_proc(
            &["/dev/null", "socket:[31801]", "pipe:[31800]", "socket:[40]"],
            &[
                // Another step's socket, not ours, and an unnamed one of ours.
                "0000: 00000002 00000000 00010000 0001 01 31790 SPOOL/n3_7.0",
                "0000: 00000002 00000000 00010000 0001 01 40",
                "0000: 00000002 00000000 00010000 0001 01 31801 SPOOL/n2_7.4294967291",
            ],
        );
        let node = of_slurmstepd(proc.path(), 7, BATCH).unwrap();
        assert_eq!(node.as_str(), "n2");
    }

    #[test]
    fn names_with_underscores_and_a_heterogeneous_component_are_kept_whole() {
        let proc = fake_proc(
            &["socket:[9]"],
            &["0000: 00000002 00000000 00010000 0001 01 9 SPOOL/gpu_node_12_1234.0.1"],
        );
        let node = of_slurmstepd(proc.path(), 1234, 0).unwrap();
        assert_eq!(node.as_str(), "gpu_node_12");
    }

    #[test]
    fn a_line_forged_by_a_socket_name_with_a_newline_is_not_trusted() {
        // A user's abstract socket named "x\n0: ... 31801 evil_7.0" prints as a second line
        // for our socket's inode.
        let proc = fake_proc(
            &["socket:[31801]"],
            &[
                "0000: 00000002 00000000 00010000 0001 01 555 @x",
                "0: 0 0 0 0 0 31801 evil_7.0",
                "0000: 00000002 00000000 00010000 0001 01 31801 SPOOL/n2_7.0",
            ],
        );
        let err = of_slurmstepd(proc.path(), 7, 0).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn a_path_that_is_no_socket_file_is_not_trusted() {
        let proc = fake_proc(
            &["socket:[8]"],
            &["0000: 00000002 00000000 00010000 0001 01 8 /nonexistent/evil_7.0"],
        );
        assert!(of_slurmstepd(proc.path(), 7, 0).is_err());
    }

    #[test]
    fn without_its_socket_the_node_is_unknown_not_guessed() {
        // The socket exists, but it is another process's: not among our descriptors.
        let proc = fake_proc(
            &["socket:[5]"],
            &["0000: 00000002 00000000 00010000 0001 01 6 SPOOL/n1_7.0"],
        );
        let err = of_slurmstepd(proc.path(), 7, 0).unwrap_err().to_string();
        assert!(err.contains("no socket *_7.0"), "{err}");
        // A longer job id that ends like ours is not ours.
        let proc = fake_proc(
            &["socket:[6]"],
            &["0000: 00000002 00000000 00010000 0001 01 6 SPOOL/n1_7.01"],
        );
        assert!(of_slurmstepd(proc.path(), 7, 0).is_err());
    }
}
