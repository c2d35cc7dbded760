//! Why a hook did not do its work. Each is logged where the admin sees it and the job runs
//! on; only a malformed `--energy-profile=` typed at submission is refused.

use aipm_sampler::spool::SpoolError;

use crate::node::NodeUnknown;
use crate::options::BadRequest;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A SPANK item Slurm did not give (`S_JOB_ID`, `S_JOB_UID`…).
    #[error("{0} unavailable")]
    Item(&'static str),
    #[error("{call} failed: {why}")]
    Spank { call: &'static str, why: String },
    #[error(transparent)]
    NulInString(#[from] std::ffi::NulError),
    #[error(transparent)]
    Option(#[from] BadRequest),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Node(#[from] NodeUnknown),
    /// What was being done, and the system's answer.
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
    /// A spool operation that failed, and for which job.
    #[error("{doing}: {source}")]
    SpoolAt {
        doing: String,
        #[source]
        source: SpoolError,
    },
    #[error("panicked; the job is not affected")]
    Panicked,
}
