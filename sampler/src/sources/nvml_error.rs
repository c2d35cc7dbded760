//! Why NVML, or one of the job's GPUs, could not be opened. The messages are those the
//! metadata's `nvml` status and the logs have always shown.

use std::time::Duration;

use nvml_wrapper::error::NvmlError;

/// NVML present but not opened: the `nvml` source `failed`.
#[derive(Debug, thiserror::Error)]
pub enum NvmlFailed {
    #[error("nvmlInit: {0}")]
    Init(NvmlError),
    #[error("nvmlDeviceGetCount: {0}")]
    Count(NvmlError),
    /// Not one of the GPUs asked for could be opened: why, for each.
    #[error("{}", join(.0))]
    NoGpu(Vec<GpuError>),
    #[error("cannot start a thread to open NVML: {0}")]
    NoThread(std::io::Error),
    #[error("opening NVML failed (its thread ended without an answer)")]
    NoAnswer,
    /// Given up on (`when`): a job ending, or NVML blocked past the sampler's patience.
    #[error(
        "NVML not open after {:.1} s, {when} (GPUs initialising without persistence mode, or \
         one blocking NVML)",
        waited.as_secs_f64()
    )]
    NotInTime {
        waited: Duration,
        when: &'static str,
    },
}

/// One GPU not opened: the others are recorded without it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// An NVML call on the GPU (`GPU 0`, `MIG MIG-…: parent GPU`) and its answer.
    #[error("{what}: {error}")]
    Call { what: String, error: NvmlError },
    #[error("MIG {uuid}: {slice_sms} SMs of a GPU with {gpu_sms}")]
    MigLargerThanGpu {
        uuid: String,
        slice_sms: u32,
        gpu_sms: u32,
    },
    /// A Slurm GPU id that no GPU's device file has, and the minor numbers that are there.
    #[error(
        "GPU {minor}: no GPU has minor number {minor} (/dev/nvidia{minor}); minor numbers \
         found: {found}"
    )]
    NoSuchMinor { minor: u32, found: String },
}

impl GpuError {
    /// `what` answered `error`.
    pub fn call(what: impl Into<String>) -> impl FnOnce(NvmlError) -> GpuError {
        let what = what.into();
        move |error| GpuError::Call { what, error }
    }
}

fn join(errors: &[GpuError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    list.join("; ")
}
