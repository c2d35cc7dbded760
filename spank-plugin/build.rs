//! Generates the SPANK bindings from the system's `slurm/spank.h` (Debian: libslurm-dev)
//! and takes the plugin version from `SLURM_VERSION_NUMBER`: Slurm refuses a plugin whose
//! major.minor differs from its own.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let include_dir = env::var("SLURM_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let wrapper = manifest.join("../include/wrapper.h");
    println!("cargo:rerun-if-changed={}", wrapper.display());
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    let spank_h = Path::new(&include_dir).join("slurm/spank.h");
    println!("cargo:rerun-if-changed={}", spank_h.display());
    if !spank_h.exists() {
        panic!(
            "\n\naipm-spank: {} not found.\nInstall Slurm's headers: apt-get install libslurm-dev \
             (or set SLURM_INCLUDE_DIR to the directory that holds slurm/spank.h).\n\n",
            spank_h.display()
        );
    }

    let builder = bindgen::Builder::default()
        .header(wrapper.display().to_string())
        .clang_arg(format!("-I{include_dir}"))
        .allowlist_function("spank_.*")
        .allowlist_function("slurm_(info|error|verbose|debug|debug2)")
        .allowlist_type("spank_.*")
        .allowlist_type("spank_t")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("ESPANK_.*")
        .allowlist_var("SPANK_.*")
        .rustified_enum("spank_item")
        .constified_enum("spank_context")
        .layout_tests(false)
        .generate_comments(false);
    // bindgen panics when it cannot load libclang; say which package provides it.
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()))
            .unwrap_or_else(|_| {
                panic!(
            "\n\naipm-spank: bindgen could not load libclang.\nInstall it: apt-get install \
             libclang-dev (or set LIBCLANG_PATH).\n\n"
        )
            });
    let bindings = generated.unwrap_or_else(|e| {
        panic!(
            "\n\naipm-spank: bindgen failed on {}: {e}\n\n",
            spank_h.display()
        )
    });
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("spank_sys.rs"))
        .expect("writing spank_sys.rs");
}
