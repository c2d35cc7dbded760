//! The `--spool` option of every command that reads recordings.

use std::path::PathBuf;

use crate::spool::resolve_spool;

#[derive(Debug, Clone, clap::Args)]
pub struct SpoolArg {
    /// Spool directory of the recordings [default: from /etc/slurm/plugstack.conf.d, else
    /// /var/spool/aipm]. Also read from $AIPM_SPOOL.
    #[arg(id = "spool", long = "spool", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl SpoolArg {
    /// The spool to read: this option, else `$AIPM_SPOOL`, else the admin's configuration.
    pub fn resolve(&self) -> PathBuf {
        resolve_spool(self.dir.clone())
    }
}
