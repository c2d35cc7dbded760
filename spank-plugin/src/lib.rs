//! aipm's SPANK plugin. It adds `--energy-profile[=PERIOD|off]` to sbatch, salloc and srun
//! and, on every node of a recorded job, runs one sampler thread inside slurmstepd that
//! writes the job's recording into the spool. It never fails, slows or kills a job.

mod error;
pub mod export;
mod hooks;
mod node;
mod options;
mod spank;
mod sys;
