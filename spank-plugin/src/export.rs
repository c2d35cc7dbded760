//! The symbols Slurm looks up in the plugin: its identity and one `extern "C"` function per
//! hook, each a single call into [`hooks`] behind [`guard`].
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::HookError;
use crate::hooks;
use crate::spank::{args, c_str_arg, Spank, SpankOption};
use crate::sys;

/// Slurm reads these four symbols before anything else and refuses the plugin without them.
#[no_mangle]
pub static plugin_name: [u8; 5] = *b"aipm\0";
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// Must equal the running Slurm's major.minor, so it comes from the headers at build time.
#[no_mangle]
pub static plugin_version: u32 = sys::SLURM_VERSION_NUMBER;
#[no_mangle]
pub static spank_plugin_version: u32 = 1;

pub static ENERGY_PROFILE: SpankOption = SpankOption::new(
    c"energy-profile",
    c"PERIOD|off",
    c"Record the job's energy (CPU, DRAM, GPU) every PERIOD (500ms, 2s; default set by the admin); off to opt out. Report: aipm-analyze job JOBID",
    2,
    energy_profile_option,
);

/// Run a hook body: a panic or an error is logged and the hook returns success, so a
/// measurement problem never fails a job.
fn guard(hook: &str, body: impl FnOnce() -> Result<(), HookError>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => hooks::report(hook, result),
        Err(_) => hooks::report(hook, Err(HookError::Panicked)),
    }
    0
}

unsafe extern "C" fn energy_profile_option(
    _val: c_int,
    optarg: *const c_char,
    remote: c_int,
) -> c_int {
    // SAFETY: Slurm passes NULL or a NUL-terminated value valid during the callback.
    let value = unsafe { c_str_arg(optarg) };
    match catch_unwind(AssertUnwindSafe(|| {
        hooks::on_option(value.as_deref(), remote != 0)
    })) {
        Ok(Ok(())) => 0,
        // Refuse a bad value at submission: sbatch/srun print the error and stop.
        Ok(Err(_)) => -1,
        Err(_) => 0,
    }
}

macro_rules! hook {
    ($name:ident, |$sp:ident, $args:ident| $body:expr) => {
        /// # Safety
        /// Called by Slurm with a valid handle and `argc` valid argument strings.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            sp: sys::spank_t,
            argc: c_int,
            argv: *mut *mut c_char,
        ) -> c_int {
            // SAFETY: `sp` is the handle of this call and is used only within it; `argv`
            // holds `argc` NUL-terminated strings (plugstack arguments).
            let ($sp, $args) = unsafe { (Spank::from_raw(sp), args(argc, argv)) };
            let _ = (&$sp, &$args);
            guard(stringify!($name), || $body)
        }
    };
}

hook!(slurm_spank_init, |sp, args| hooks::init(&sp, &args));
hook!(slurm_spank_init_post_opt, |sp, args| hooks::init_post_opt(
    &sp
));
hook!(
    slurm_spank_task_post_fork,
    |sp, args| hooks::task_post_fork(&sp)
);
hook!(slurm_spank_task_exit, |sp, args| hooks::task_exit());
hook!(slurm_spank_exit, |sp, args| hooks::exit());
hook!(slurm_spank_job_prolog, |sp, args| hooks::job_prolog(
    &sp, &args
));
hook!(slurm_spank_job_epilog, |sp, args| hooks::job_epilog(
    &sp, &args
));
