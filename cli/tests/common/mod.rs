//! Helpers shared by the command-line tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_aipm-analyze");

/// `aipm-analyze ARGS`, with local time set to UTC so that the tests' times read the same
/// everywhere.
pub fn aipm(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

/// The JSON a run printed; the run must have succeeded.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the stand-in NVML library in `dir`, as `libnvidia-ml.so`, with `state` as its
/// sidecar JSON: each copy is loaded on its own, so tests can run in parallel.
pub fn standin_nvml(dir: &Path, state: &serde_json::Value) -> std::path::PathBuf {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let built = [bin_dir.to_path_buf(), bin_dir.join("deps")]
        .iter()
        .map(|d| d.join("libaipm_nvml_standin.so"))
        .find(|p| p.exists())
        .expect("libaipm_nvml_standin.so is built with the workspace");
    let lib = dir.join("libnvidia-ml.so");
    std::fs::copy(built, &lib).unwrap();
    std::fs::write(dir.join("libnvidia-ml.so.json"), state.to_string()).unwrap();
    lib
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
