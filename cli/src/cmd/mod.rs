//! One module per subcommand, each owning its arguments.

pub mod doctor;
pub mod job;
pub mod jobs;
pub mod omegawatt;
pub mod record;
pub mod simulate;
