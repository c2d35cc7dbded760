//! The nightly per-user export and the job summaries it shares with `slurm-comment` and the
//! monthly `report`.

pub mod columns;
pub mod comment;
pub mod sacct;
pub mod summary;
pub mod userfile;

/// Spans are parsed (and bounded) in one place, `crate::window`.
pub use crate::window::parse_span;
