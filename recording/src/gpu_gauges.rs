//! The gauges recorded for each GPU, after its channel: `nvml:<UUID>:<gauge>` columns of the
//! samples file. The sampler writes them and the attribution and the reports read them: one
//! name each, here, so that renaming one cannot silently leave a reader looking for the
//! old name (every GPU would then read as unshared).

/// NVML's power reading, mW (a 1 s average on Ampere and newer, instant before).
pub const POWER_MW: &str = "power_mw";
/// GPU utilisation, percent.
pub const UTIL_PCT: &str = "util_pct";
/// Memory used on the GPU, bytes.
pub const MEM_USED_BYTES: &str = "mem_used_bytes";
/// Compute processes of the job, and of everyone else, on the GPU.
pub const JOB_PROCS: &str = "job_procs";
pub const OTHER_PROCS: &str = "other_procs";
/// GPU memory of the job's compute processes, and of the others', bytes.
pub const JOB_MEM_BYTES: &str = "job_mem_bytes";
pub const OTHER_MEM_BYTES: &str = "other_mem_bytes";
/// SM utilisation of the job's processes, and of the others', since the last sample.
pub const JOB_SM_PCT: &str = "job_sm_pct";
pub const OTHER_SM_PCT: &str = "other_sm_pct";
/// The instant power field, where the driver has it, mW.
pub const POWER_INSTANT_MW: &str = "power_instant_mw";

/// Every gauge of a GPU, in the order the sampler writes them.
pub const ALL: [&str; 10] = [
    POWER_MW,
    UTIL_PCT,
    MEM_USED_BYTES,
    JOB_PROCS,
    OTHER_PROCS,
    JOB_MEM_BYTES,
    OTHER_MEM_BYTES,
    JOB_SM_PCT,
    OTHER_SM_PCT,
    POWER_INSTANT_MW,
];

/// The samples file's column of `gauge` for GPU channel `channel`.
pub fn column(channel: &str, gauge: &str) -> String {
    format!("{channel}:{gauge}")
}
