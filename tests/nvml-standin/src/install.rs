//! Where a test finds the built stand-in and how it installs a copy: one place, used by every
//! test and bench that loads it (the sampler's, the CLI's, nvml-wrapper's own).

use std::fs;
use std::path::{Path, PathBuf};

const BUILT_NAME: &str = "libaipm_nvml_standin.so";

/// The stand-in as cargo built it: `cargo test` puts the cdylib in `target/<profile>/deps/`,
/// beside the test binary; `cargo build` one level up.
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(BUILT_NAME))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{BUILT_NAME} not found next to {}", exe.display()))
}

/// A copy of the stand-in at `dir/libnvidia-ml.so`, with `state` as its sidecar
/// `libnvidia-ml.so.json`; returns the copy's path. Each copy is loaded on its own, so tests
/// run in parallel. The state is written whole (a rename), as a test changing it mid-run needs.
pub fn install(dir: &Path, state: &serde_json::Value) -> PathBuf {
    let lib = dir.join("libnvidia-ml.so");
    fs::copy(built_library(), &lib).expect("copying the stand-in");
    write_state(&lib, state);
    lib
}

/// Replaces the state of the copy at `lib` in one step: the library re-reads it on every call
/// and must never see half a file.
pub fn write_state(lib: &Path, state: &serde_json::Value) {
    let mut sidecar = lib.as_os_str().to_owned();
    sidecar.push(".json");
    let tmp = lib.with_extension("json.tmp");
    fs::write(&tmp, state.to_string()).expect("writing the stand-in's state");
    fs::rename(&tmp, PathBuf::from(sidecar)).expect("writing the stand-in's state");
}
