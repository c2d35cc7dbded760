//! The first checks on a real GPU node (issue 17): `gpu_probe [--lib PATH]`, a line per
//! finding. See `aipm_sampler::sources::nvml_probe` and bench/gpu-probe.sh.

use std::path::PathBuf;

use aipm_sampler::sources::nvml_probe::{gpu_probe, ProbeTimes};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut lib = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--lib" => lib = args.next().map(PathBuf::from),
            _ => {
                eprintln!("usage: gpu_probe [--lib PATH/libnvidia-ml.so.1]");
                std::process::exit(2);
            }
        }
    }
    print!("{}", gpu_probe(lib.as_deref(), ProbeTimes::default()));
}
