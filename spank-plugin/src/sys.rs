//! The bindings bindgen generated from `slurm/spank.h`, nothing else.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/spank_sys.rs"));
