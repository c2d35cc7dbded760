//! Where recordings live in the spool. Every name is built from numeric Slurm ids and the
//! node name (checked here), so nothing a user passes can choose or escape a path.
//!
//! ```text
//! SPOOL/                      root:root 0755, made by the admin
//!   <job_id>/                 the job's user, 0700
//!     <node>.meta.json        metadata, rewritten atomically by the sampler
//!     <node>.samples.csv      one line per sample, append-only
//!     <node>.steps            one line per step that ran on the node, append-only
//! ```

use std::path::{Path, PathBuf};

/// Slurm's job id of a job directory.
pub fn job_dir_name(job_id: u32) -> String {
    job_id.to_string()
}

pub fn job_dir(spool: &Path, job_id: u32) -> PathBuf {
    spool.join(job_dir_name(job_id))
}

pub fn meta_file_name(node: &NodeName) -> String {
    format!("{}.meta.json", node.as_str())
}

pub fn samples_file_name(node: &NodeName) -> String {
    format!("{}.samples.csv", node.as_str())
}

pub fn steps_file_name(node: &NodeName) -> String {
    format!("{}.steps", node.as_str())
}

/// The node name of a recording's node, from a file name made by [`meta_file_name`].
pub fn node_of_meta_file(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(".meta.json")
}

/// A name refused by [`NodeName::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node name {0:?} is not usable as a file name (letters, digits, '-', '_', '.')")]
pub struct BadNodeName(pub String);

/// A Slurm node name that is safe as a file name component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName(String);

impl NodeName {
    /// Accepts what Slurm accepts in practice: letters, digits, `-`, `_`, `.`, not starting
    /// with a dot, at most 64 bytes.
    pub fn new(name: &str) -> Result<NodeName, BadNodeName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(NodeName(name.to_string()))
        } else {
            Err(BadNodeName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The lock file that elects one sampler per job on this node.
pub fn lock_file_name(job_id: u32) -> String {
    format!("job_{job_id}.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_cannot_escape() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a b", "x\0y"] {
            assert!(NodeName::new(bad).is_err(), "{bad:?}");
        }
        for good in ["vm", "node-01", "gpu_3.cluster"] {
            assert!(NodeName::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn file_names_round_trip() {
        let node = NodeName::new("n1").unwrap();
        assert_eq!(node_of_meta_file(&meta_file_name(&node)), Some("n1"));
        assert_eq!(job_dir(Path::new("/s"), 42), PathBuf::from("/s/42"));
    }
}
