//! Omegawatt wall-meter data: the `wattmetre-read` stream, per-second statistics, the
//! Lab IA's daily archives. A library of its own: it depends on no part of the CLI, and the
//! CLI reaches it only through these modules.

pub mod archive;
pub mod cache;
pub mod channels;
pub mod days;
pub mod g5k;
pub mod generate;
pub mod index;
pub mod ingest;
pub mod seconds;
pub mod stream;
pub mod wall;
