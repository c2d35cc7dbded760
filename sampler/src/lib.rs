//! aipm's sampler: energy sources, counter arithmetic, the job's cgroup usage, the spool's
//! writing side, and the sampling thread that ties them together. Free of Slurm: the SPANK
//! plugin and `aipm-analyze record` both drive it.
// Denied everywhere but the perf_event_open call in sources/rapl_perf.rs.
#![deny(unsafe_code)]

pub mod counter;
mod gpus;
pub mod node;
pub mod publish;
pub mod sampler;
pub mod setup;
pub mod sources;
pub mod spool;
pub mod sysfs;
pub mod usage;
