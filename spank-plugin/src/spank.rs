//! The safe edge over Slurm's SPANK API: a handle valid for one hook call, typed getters
//! named after the `S_*` items, option registration and logging through Slurm's log.
//! All `unsafe` of the plugin that is not an exported symbol lives here.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CStr, CString};

use crate::error::HookError;
use crate::sys;

/// Where the plugin is running (`spank_context()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// srun, before the step is launched.
    Local,
    /// slurmstepd: one per step on each node.
    Remote,
    /// sbatch or salloc.
    Allocator,
    /// slurmd itself.
    Slurmd,
    /// The job prolog and epilog, run as root by slurmd.
    JobScript,
    Unknown,
}

/// The context of this process, as the first hook that asked saw it: a process is one
/// context for its whole life, and outside a hook (the sampler thread) Slurm no longer says.
static CONTEXT: std::sync::OnceLock<Context> = std::sync::OnceLock::new();

pub fn context() -> Context {
    if let Some(known) = CONTEXT.get() {
        return *known;
    }
    let ctx = spank_context_now();
    if ctx != Context::Unknown {
        let _ = CONTEXT.set(ctx);
    }
    ctx
}

fn spank_context_now() -> Context {
    // SAFETY: spank_context takes no arguments and only reads Slurm's global state; the
    // result is a newtype over the C enum, so an unknown value is representable.
    let ctx = unsafe { sys::spank_context() };
    match ctx {
        sys::spank_context_S_CTX_LOCAL => Context::Local,
        sys::spank_context_S_CTX_REMOTE => Context::Remote,
        sys::spank_context_S_CTX_ALLOCATOR => Context::Allocator,
        sys::spank_context_S_CTX_SLURMD => Context::Slurmd,
        sys::spank_context_S_CTX_JOB_SCRIPT => Context::JobScript,
        _ => Context::Unknown,
    }
}

/// A SPANK handle, valid only during the hook call that received it: it is neither `Send`
/// nor `Clone`, so it cannot outlive the hook or reach the sampler thread.
pub struct Spank {
    raw: sys::spank_t,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Spank {
    /// # Safety
    /// `raw` must be the handle Slurm passed to the hook being run, and the result must not
    /// outlive that call.
    pub unsafe fn from_raw(raw: sys::spank_t) -> Spank {
        Spank {
            raw,
            _not_send: std::marker::PhantomData,
        }
    }

    /// A 32-bit item, `None` when Slurm has none or answers with one of its sentinels
    /// (NO_VAL, INFINITE), which never stand for a real id or count.
    fn item_u32(&self, item: sys::spank_item) -> Option<u32> {
        let mut value: u32 = 0;
        // SAFETY: every item read through here takes one `uint32_t *` (or `uid_t *`/`gid_t *`,
        // also 32 bits) per spank.h; `value` lives across the call and the handle is valid.
        let rc = unsafe { sys::spank_get_item(self.raw, item, &mut value as *mut u32) };
        (rc == sys::ESPANK_SUCCESS && !is_sentinel_u32(value)).then_some(value)
    }

    /// Memory allocated to the job on this node, in MB (Slurm's MiB), when Slurm tracks it.
    pub fn job_alloc_mem_mb(&self) -> Option<u64> {
        let mut value: u64 = 0;
        // SAFETY: S_JOB_ALLOC_MEM takes one `uint64_t *` per spank.h; `value` lives across the
        // call and the handle is valid during the hook.
        let rc = unsafe {
            sys::spank_get_item(
                self.raw,
                sys::spank_item::S_JOB_ALLOC_MEM,
                &mut value as *mut u64,
            )
        };
        (rc == sys::ESPANK_SUCCESS && value > 0 && !is_sentinel_u64(value)).then_some(value)
    }

    pub fn job_id(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_JOB_ID)
    }

    pub fn job_stepid(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_JOB_STEPID)
    }

    pub fn job_uid(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_JOB_UID)
    }

    pub fn job_gid(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_JOB_GID)
    }

    /// How many times the job was requeued before this run.
    pub fn job_restart_count(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_SLURM_RESTART_COUNT)
    }

    pub fn job_local_task_count(&self) -> Option<u32> {
        self.item_u32(sys::spank_item::S_JOB_LOCAL_TASK_COUNT)
    }

    /// The array job id and task id, or `None` when the job is not an array task: Slurm
    /// gives an array id of 0, or a task id of NO_VAL (jobs started by srun or salloc).
    pub fn job_array(&self) -> Option<(u32, u32)> {
        let array_id = self
            .item_u32(sys::spank_item::S_JOB_ARRAY_ID)
            .filter(|&id| id != 0)?;
        let task_id = self.item_u32(sys::spank_item::S_JOB_ARRAY_TASK_ID)?;
        Some((array_id, task_id))
    }

    /// The cores allocated to the job on this node, in Slurm's list format (`0-3,8`).
    pub fn job_alloc_cores(&self) -> Option<String> {
        let mut list: *mut c_char = std::ptr::null_mut();
        // SAFETY: S_JOB_ALLOC_CORES takes one `char **`; Slurm stores a pointer to a string it
        // owns, valid during this hook, which is copied before returning.
        let rc = unsafe {
            sys::spank_get_item(
                self.raw,
                sys::spank_item::S_JOB_ALLOC_CORES,
                &mut list as *mut *mut c_char,
            )
        };
        if rc != sys::ESPANK_SUCCESS {
            return None;
        }
        // SAFETY: NULL or a NUL-terminated string owned by Slurm, valid during this hook.
        unsafe { c_str_arg(list) }
    }

    pub fn task_pid(&self) -> Option<u32> {
        let mut pid: c_int = 0;
        // SAFETY: S_TASK_PID takes one `pid_t *` (a C int); `pid` outlives the call.
        let rc = unsafe {
            sys::spank_get_item(
                self.raw,
                sys::spank_item::S_TASK_PID,
                &mut pid as *mut c_int,
            )
        };
        (rc == sys::ESPANK_SUCCESS && pid > 0).then_some(pid as u32)
    }

    /// A variable of the job's environment (remote context only).
    pub fn getenv(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for `len` bytes and spank_getenv writes at most that many,
        // NUL included; `name` is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            sys::spank_getenv(
                self.raw,
                name.as_ptr(),
                buf.as_mut_ptr() as *mut c_char,
                buf.len() as c_int,
            )
        };
        if rc != sys::ESPANK_SUCCESS {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0)?;
        String::from_utf8(buf[..end].to_vec()).ok()
    }

    /// Set `SPANK_<name>=value` in the environment of the job's prologs and epilogs, the
    /// controller's included (sbatch, salloc and an allocating srun only: the job is made
    /// from it). Slurm, not the job's environment, carries it there.
    pub fn job_control_setenv(&self, name: &str, value: &str) -> Result<(), HookError> {
        let name = CString::new(name)?;
        let value = CString::new(value)?;
        // SAFETY: both strings are NUL-terminated and outlive the call, which copies them;
        // the handle is valid during this hook.
        let rc =
            unsafe { sys::spank_job_control_setenv(self.raw, name.as_ptr(), value.as_ptr(), 1) };
        if rc == sys::ESPANK_SUCCESS {
            Ok(())
        } else {
            Err(HookError::Spank {
                call: "spank_job_control_setenv",
                why: strerror(rc),
            })
        }
    }

    /// Register an option so that sbatch, salloc and srun accept it. Must be called from
    /// `slurm_spank_init`: a static `spank_options` table reaches srun only.
    pub fn register_option(&self, option: &'static SpankOption) -> Result<(), HookError> {
        // SAFETY: the option lives in a static for the life of the process, as Slurm keeps
        // the pointer; its strings are static C literals; the handle is valid in this hook.
        let rc = unsafe { sys::spank_option_register(self.raw, option.0.get()) };
        if rc == sys::ESPANK_SUCCESS {
            Ok(())
        } else {
            Err(HookError::Spank {
                call: "spank_option_register",
                why: strerror(rc),
            })
        }
    }
}

/// Slurm's NO_VAL and INFINITE (slurm.h): "not set" and "unlimited", never a value.
const NO_VAL: u32 = 0xffff_fffe;
const INFINITE: u32 = 0xffff_ffff;
const NO_VAL64: u64 = 0xffff_ffff_ffff_fffe;
const INFINITE64: u64 = 0xffff_ffff_ffff_ffff;

fn is_sentinel_u32(value: u32) -> bool {
    value == NO_VAL || value == INFINITE
}

fn is_sentinel_u64(value: u64) -> bool {
    value == NO_VAL64 || value == INFINITE64
}

/// The login name of `uid` through the system's name service (files, LDAP, ...).
pub fn user_name(uid: u32) -> Option<String> {
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes the entry into `pwd`, its strings into `buf` (of the length
    // given) and sets `result` to `pwd` on success or NULL; all outlive the call.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success `pwd` is initialised and `pw_name` points into `buf`, NUL-terminated.
    let name = unsafe { CStr::from_ptr((*result).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The id of group `name` through the system's name service.
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // A group of thousands of members (LDAP) needs more than the usual buffer: ERANGE says
    // so, and the call is made again with more, up to 16 MiB.
    let mut len = 64 * 1024;
    loop {
        let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut buf = vec![0 as c_char; len];
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: getgrnam_r writes the entry into `grp`, its strings into `buf` (of the
        // length given) and sets `result` to `grp` on success or NULL; all outlive the call.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                grp.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && len < 16 << 20 {
            len *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success `result` points to the initialised `grp`.
        return Some(unsafe { (*result).gr_gid });
    }
}

fn strerror(rc: sys::spank_err_t) -> String {
    // SAFETY: spank_strerror returns a pointer to a static message for any error code.
    let msg = unsafe { sys::spank_strerror(rc) };
    if msg.is_null() {
        return format!("error {rc}");
    }
    // SAFETY: non-NULL, NUL-terminated, static (see above).
    unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned()
}

/// Option callback as Slurm calls it: `(val, optarg, remote)`.
pub type OptionCallback = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;

/// A SPANK option with static strings, shareable between threads because Slurm only
/// reads it.
pub struct SpankOption(UnsafeCell<sys::spank_option>);

// SAFETY: the option is written once at compile time and never mutated afterwards, neither
// by us nor by Slurm, which only reads the fields it was registered with.
unsafe impl Sync for SpankOption {}

impl SpankOption {
    /// `has_arg`: 0 none, 1 required, 2 optional (`--energy-profile[=PERIOD]`).
    pub const fn new(
        name: &'static CStr,
        arginfo: &'static CStr,
        usage: &'static CStr,
        has_arg: c_int,
        callback: OptionCallback,
    ) -> SpankOption {
        SpankOption(UnsafeCell::new(sys::spank_option {
            name: name.as_ptr() as *mut c_char,
            arginfo: arginfo.as_ptr() as *mut c_char,
            usage: usage.as_ptr() as *mut c_char,
            has_arg,
            val: 0,
            cb: Some(callback),
        }))
    }
}

/// The text of a C string passed by Slurm, `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or a NUL-terminated string valid for the duration of the call.
pub unsafe fn c_str_arg(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and NUL-terminated and valid per the caller's guarantee.
    let text = unsafe { CStr::from_ptr(ptr) };
    Some(text.to_string_lossy().into_owned())
}

/// The plugstack arguments of a hook (`argc`, `argv`).
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings, as Slurm passes them.
pub unsafe fn args(argc: c_int, argv: *mut *mut c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        // SAFETY: index within argc, per the caller's guarantee; each entry is a C string.
        .filter_map(|i| unsafe { c_str_arg(*argv.add(i)) })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Info,
    Verbose,
    Debug,
}

/// Log through Slurm: slurmd's log in remote context, the user's terminal for `Info` and
/// `Error` in sbatch and srun. The message is passed as an argument to `"%s"`, never as a
/// format, with interior NULs replaced.
pub fn log(level: LogLevel, message: &str) {
    // In slurmstepd, Slurm copies errors into the job's own output file: infrastructure
    // trouble (a full spool) does not belong in a user's results. There an error is logged
    // at info level, which reaches slurmd's log only, marked as an error.
    let (level, message) = match (level, context()) {
        (LogLevel::Error, Context::Remote) => (LogLevel::Info, format!("error: {message}")),
        (level, _) => (level, message.to_string()),
    };
    let text = CString::new(format!("aipm: {message}").replace('\0', "\\0"))
        .unwrap_or_else(|_| CString::from(c"aipm: (unprintable message)"));
    let fmt = c"%s".as_ptr();
    // SAFETY: a "%s" format with exactly one NUL-terminated string argument; Slurm's log
    // functions are thread-safe (they serialise on their own lock).
    unsafe {
        match level {
            LogLevel::Error => sys::slurm_error(fmt, text.as_ptr()),
            LogLevel::Info => sys::slurm_info(fmt, text.as_ptr()),
            LogLevel::Verbose => sys::slurm_verbose(fmt, text.as_ptr()),
            LogLevel::Debug => sys::slurm_debug(fmt, text.as_ptr()),
        }
    }
}
