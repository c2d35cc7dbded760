//! One module per subcommand, each owning its arguments.

pub mod compare;
pub mod doctor;
pub mod emission_args;
pub mod export;
pub mod job;
pub mod jobs;
pub mod omegawatt;
pub mod record;
pub mod report;
pub mod simulate;
pub mod slurm_comment;
pub mod spool_arg;
pub mod unrecorded;
pub mod wall_args;
