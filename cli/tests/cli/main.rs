//! The command-line tests, one binary with a module per subject (as ripgrep does): one link
//! of polars instead of eighteen, and helpers shared without copies.

mod common;
mod compare;
mod counters;
mod doctor;
mod export;
mod hostile;
mod jobs;
mod legacy;
mod messages;
mod multinode;
mod mutated_inputs;
mod notes;
mod omegawatt;
mod omegawatt_cache;
mod record;
mod report;
mod slurm_comment;
mod wall;
mod windows;
