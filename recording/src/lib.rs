//! aipm's on-disk format: where recordings live, the metadata file, the samples file, and
//! the plugin configuration that names the spool. The plugin writes through this crate and
//! `aipm-analyze` reads through it, so the format is defined in one place.
#![forbid(unsafe_code)]

pub mod attribution;
pub mod config;
pub mod counter;
mod fast_row;
pub mod gpu_gauges;
pub mod layout;
pub mod meta;
pub mod period;
pub mod samples;
pub mod source;
pub mod text_file;
pub mod time;
pub mod untrusted;
