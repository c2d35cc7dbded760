//! A stand-in for NVIDIA's `libnvidia-ml.so`, for tests on machines without a GPU.
//!
//! Built as a `cdylib`, it exports the handful of NVML entry points that aipm uses, so that
//! the real `nvml-wrapper` code path (dlopen, dlsym, struct layouts, count protocols, error
//! codes) runs unmodified: a test points `Nvml::builder().lib_path(..)` at this library, or
//! copies it to `DIR/libnvidia-ml.so.1` and runs a child with `LD_LIBRARY_PATH=DIR`.
//!
//! The fake GPUs are described by a JSON state file: the path in `$AIPM_FAKE_NVML`, or else
//! `<path this library was loaded from>.json`. The file is re-read on every call, so a test
//! can change power, add processes or inject errors while the library is loaded.
//!
//! ```json
//! { "driver_version": "550.54.15",
//!   "errors": { "nvmlDeviceGetCount_v2": "UNKNOWN" },
//!   "devices": [ { "uuid": "GPU-0000", "name": "Fake H100", "power_w": 100.0,
//!                  "energy_start_mj": 0, "start_unix_ms": 1700000000000,
//!                  "util_gpu": 50, "util_mem": 20,
//!                  "mem_total": 1000, "mem_used": 300, "mem_reserved": 100,
//!                  "error": "GPU_IS_LOST", "errors": { "nvmlDeviceGetPowerUsage": 3 },
//!                  "processes": [ { "pid": 42, "used_mem": 200, "sm_util": 70,
//!                                   "mem_util": 10, "enc_util": 0, "dec_util": 0,
//!                                   "ts_us": 1700000000000000 } ] } ] }
//! ```
//!
//! Energy is `energy_start_mj + power_w × (now_ms − start_unix_ms)` (W·ms = mJ);
//! `start_unix_ms` defaults to the file's mtime, so tests should always set it. Error codes
//! may be numbers or names, with or without the `NVML_ERROR_` prefix. A device's `"error"`
//! applies to every per-device call except `nvmlDeviceGetHandleByIndex_v2`; an `"errors"` map
//! (top level or per device) fails just the named functions.
//!
//! Struct layouts follow the bindings of nvml-wrapper-sys 0.10, not the newest `nvml.h`.
//! Nothing here may panic across `extern "C"`: handles are validated, arithmetic saturates,
//! and every entry point runs under `catch_unwind` as a last resort.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// The safety contract of every entry point is NVML's own (nvml.h): valid pointers, buffers as
// large as the length or count passed alongside them.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_uint, c_ulonglong, c_void, CStr, OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// `nvmlReturn_t`.
type Ret = c_uint;
/// `nvmlDevice_t`: an opaque pointer; only ever compared, never dereferenced.
type Device = *mut c_void;

const SUCCESS: Ret = 0;
const UNINITIALIZED: Ret = 1;
const INVALID_ARGUMENT: Ret = 2;
const NOT_FOUND: Ret = 6;
const INSUFFICIENT_SIZE: Ret = 7;
const DRIVER_NOT_LOADED: Ret = 9;
const ARGUMENT_VERSION_MISMATCH: Ret = 25;
const UNKNOWN: Ret = 999;

/// Return codes and their names; `nvmlErrorString` returns these (the symbolic names, not
/// NVIDIA's prose) and the state file may name errors with them.
const CODES: &[(Ret, &CStr)] = &[
    (0, c"SUCCESS"),
    (1, c"UNINITIALIZED"),
    (2, c"INVALID_ARGUMENT"),
    (3, c"NOT_SUPPORTED"),
    (4, c"NO_PERMISSION"),
    (5, c"ALREADY_INITIALIZED"),
    (6, c"NOT_FOUND"),
    (7, c"INSUFFICIENT_SIZE"),
    (8, c"INSUFFICIENT_POWER"),
    (9, c"DRIVER_NOT_LOADED"),
    (10, c"TIMEOUT"),
    (11, c"IRQ_ISSUE"),
    (12, c"LIBRARY_NOT_FOUND"),
    (13, c"FUNCTION_NOT_FOUND"),
    (14, c"CORRUPTED_INFOROM"),
    (15, c"GPU_IS_LOST"),
    (16, c"RESET_REQUIRED"),
    (17, c"OPERATING_SYSTEM"),
    (18, c"LIB_RM_VERSION_MISMATCH"),
    (19, c"IN_USE"),
    (20, c"MEMORY"),
    (21, c"NO_DATA"),
    (22, c"VGPU_ECC_NOT_SUPPORTED"),
    (23, c"INSUFFICIENT_RESOURCES"),
    (24, c"FREQ_NOT_SUPPORTED"),
    (25, c"ARGUMENT_VERSION_MISMATCH"),
    (26, c"DEPRECATED"),
    (27, c"NOT_READY"),
    (28, c"GPU_NOT_FOUND"),
    (29, c"INVALID_STATE"),
    (30, c"RESET_TYPE_NOT_SUPPORTED"),
    (999, c"UNKNOWN"),
];

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    pub gpu: c_uint,
    pub memory: c_uint,
}

/// `nvmlMemory_t` (v1): `used` includes reserved memory.
#[repr(C)]
pub struct MemoryV1 {
    pub total: c_ulonglong,
    pub free: c_ulonglong,
    pub used: c_ulonglong,
}

/// `nvmlMemory_v2_t`: `used` excludes reserved memory.
#[repr(C)]
pub struct MemoryV2 {
    pub version: c_uint,
    pub total: c_ulonglong,
    pub reserved: c_ulonglong,
    pub free: c_ulonglong,
    pub used: c_ulonglong,
}

/// `NVML_STRUCT_VERSION(Memory, 2)`, the only version `nvmlDeviceGetMemoryInfo_v2` accepts.
const MEMORY_V2_VERSION: c_uint = size_of::<MemoryV2>() as c_uint | 2 << 24;

/// `nvmlProcessInfo_t` as nvml-wrapper-sys 0.10 defines it (`nvmlProcessInfo_v2_st`, 24 bytes),
/// even though it calls `..._v3`; see the notes on R535 drivers writing 32-byte entries.
#[repr(C)]
pub struct ProcessInfo {
    pub pid: c_uint,
    pub used_gpu_memory: c_ulonglong,
    pub gpu_instance_id: c_uint,
    pub compute_instance_id: c_uint,
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
pub struct ProcessUtilizationSample {
    pub pid: c_uint,
    pub time_stamp: c_ulonglong,
    pub sm_util: c_uint,
    pub mem_util: c_uint,
    pub enc_util: c_uint,
    pub dec_util: c_uint,
}

const _: () = assert!(size_of::<Utilization>() == 8);
const _: () = assert!(size_of::<MemoryV1>() == 24);
const _: () = assert!(size_of::<MemoryV2>() == 40);
const _: () = assert!(MEMORY_V2_VERSION == 33_554_472);
const _: () = assert!(size_of::<ProcessInfo>() == 24);
const _: () = assert!(size_of::<ProcessUtilizationSample>() == 32);

/// `NVML_VALUE_NOT_AVAILABLE` (-1) as the wrapper compares it against `usedGpuMemory`.
const VALUE_NOT_AVAILABLE: u64 = u64::MAX;
/// "Not a MIG instance"; the wrapper maps it to `None`.
const NO_INSTANCE: c_uint = 0xFFFF_FFFF;
/// Default for `driver_version`: below 580.82, so the wrapper picks the V12 field-ID scheme.
const DEFAULT_DRIVER_VERSION: &str = "550.54.15";

/// Device handles are addresses inside this array; the offset is the device index.
const MAX_DEVICES: usize = 64;
static HANDLES: [u8; MAX_DEVICES] = [0; MAX_DEVICES];

fn handle(index: usize) -> Device {
    HANDLES.as_ptr().wrapping_add(index).cast_mut().cast()
}

fn handle_index(device: Device) -> Option<usize> {
    (device as usize)
        .checked_sub(HANDLES.as_ptr() as usize)
        .filter(|&i| i < MAX_DEVICES)
}

/// Reference count of successful inits minus shutdowns, as in real NVML.
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// Path of the loaded library itself, from `dladdr` on one of its own functions.
fn own_path() -> Option<PathBuf> {
    let this: fn() -> Option<PathBuf> = own_path;
    // SAFETY: `Dl_info` is plain pointers, for which all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `this` is an address inside this object and `info` is a valid out-pointer.
    if unsafe { libc::dladdr(this as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr succeeded, so `dli_fname` is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

fn state_path() -> Option<PathBuf> {
    match std::env::var_os("AIPM_FAKE_NVML") {
        Some(path) if !path.is_empty() => Some(path.into()),
        _ => {
            let mut sidecar = OsString::from(own_path()?);
            sidecar.push(".json");
            Some(sidecar.into())
        }
    }
}

/// One reading of the state file.
struct State {
    root: Value,
    mtime_ms: u64,
}

impl State {
    /// No state file means "no driver"; an unreadable or malformed one is `UNKNOWN`.
    fn load() -> Result<State, Ret> {
        let path = state_path().ok_or(DRIVER_NOT_LOADED)?;
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DRIVER_NOT_LOADED,
            _ => UNKNOWN,
        })?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(|_| UNKNOWN)?;
        let root = serde_json::from_slice(&text).map_err(|_| UNKNOWN)?;
        let mtime_ms = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(now_ms, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        Ok(State { root, mtime_ms })
    }

    fn devices(&self) -> &[Value] {
        let all = self.root.get("devices").and_then(Value::as_array);
        let all = all.map_or(&[][..], Vec::as_slice);
        all.get(..MAX_DEVICES).unwrap_or(all)
    }

    fn gpu(&self, index: usize) -> Option<Gpu<'_>> {
        let v = self.devices().get(index)?;
        Some(Gpu {
            v,
            index,
            mtime_ms: self.mtime_ms,
        })
    }
}

/// One device entry of the state file.
struct Gpu<'a> {
    v: &'a Value,
    index: usize,
    mtime_ms: u64,
}

impl Gpu<'_> {
    fn str(&self, key: &str) -> &str {
        self.v.get(key).and_then(Value::as_str).unwrap_or("")
    }
    fn f64(&self, key: &str) -> f64 {
        self.v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }
    fn u64(&self, key: &str) -> u64 {
        self.v.get(key).map_or(0, as_u64)
    }
    fn u32(&self, key: &str) -> c_uint {
        c_uint::try_from(self.u64(key)).unwrap_or(c_uint::MAX)
    }
    fn processes(&self) -> &[Value] {
        let all = self.v.get("processes").and_then(Value::as_array);
        all.map_or(&[], Vec::as_slice)
    }
    /// The injected error for `func`, if any: the device's blanket `"error"`, else its map.
    fn error(&self, func: &str, blanket: bool) -> Option<Ret> {
        let blanket = blanket
            .then(|| self.v.get("error").and_then(code_of))
            .flatten();
        blanket.or_else(|| injected(self.v, func))
    }
    fn energy_mj(&self) -> u64 {
        let start = self.v.get("start_unix_ms").map_or(self.mtime_ms, as_u64);
        let elapsed_ms = now_ms().saturating_sub(start) as f64;
        // Float-to-int `as` saturates (and maps NaN to 0), so this cannot panic.
        (self.f64("energy_start_mj") + self.f64("power_w") * elapsed_ms) as u64
    }
}

/// A JSON number as u64, accepting floats; anything else is 0.
fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .unwrap_or(0)
}

/// An error code from JSON: a number, or a name with or without `NVML_ERROR_`.
/// Unrecognised names are `UNKNOWN`; `SUCCESS` means "no error".
fn code_of(v: &Value) -> Option<Ret> {
    let code = match v {
        Value::Number(_) => c_uint::try_from(as_u64(v)).unwrap_or(UNKNOWN),
        Value::String(s) => {
            let name = s
                .strip_prefix("NVML_ERROR_")
                .or_else(|| s.strip_prefix("NVML_"));
            let name = name.unwrap_or(s).as_bytes();
            let found = CODES.iter().find(|(_, n)| n.to_bytes() == name);
            found.map_or(UNKNOWN, |&(code, _)| code)
        }
        _ => return None,
    };
    (code != SUCCESS).then_some(code)
}

/// The error injected for `func` by `obj["errors"]`, if any.
fn injected(obj: &Value, func: &str) -> Option<Ret> {
    obj.get("errors")?.get(func).and_then(code_of)
}

/// Last line of defence: a panic must not unwind into C.
fn guard(body: impl FnOnce() -> Ret) -> Ret {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(UNKNOWN)
}

/// Common prologue of every call after init: init check, fresh state, top-level injection.
fn call(func: &str, body: impl FnOnce(&State) -> Ret) -> Ret {
    guard(|| {
        if INIT_COUNT.load(Ordering::SeqCst) == 0 {
            return UNINITIALIZED;
        }
        match State::load() {
            Ok(state) => injected(&state.root, func).unwrap_or_else(|| body(&state)),
            Err(code) => code,
        }
    })
}

/// `call` for functions taking a device handle; also applies the device's injected errors.
fn device_call(func: &str, device: Device, body: impl FnOnce(&Gpu) -> Ret) -> Ret {
    call(func, |state| {
        let Some(gpu) = handle_index(device).and_then(|i| state.gpu(i)) else {
            return INVALID_ARGUMENT;
        };
        gpu.error(func, true).unwrap_or_else(|| body(&gpu))
    })
}

/// Stores `value` through an out-pointer.
///
/// # Safety
/// `out` must be null or valid for writing a `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Ret {
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null, and the caller guarantees it is valid for writes.
    unsafe { out.write(value) };
    SUCCESS
}

/// Copies `s` with a NUL terminator into a caller buffer of `length` bytes.
///
/// # Safety
/// `buf` must be null or valid for writing `length` bytes.
unsafe fn put_str(s: &str, buf: *mut c_char, length: c_uint) -> Ret {
    if buf.is_null() {
        return INVALID_ARGUMENT;
    }
    let length = usize::try_from(length).unwrap_or(0);
    let bytes = s.as_bytes();
    if bytes.len() >= length {
        if length > 0 {
            // SAFETY: `buf` has at least one writable byte; leave it an empty string.
            unsafe { buf.write(0) };
        }
        return INSUFFICIENT_SIZE;
    }
    // SAFETY: bytes.len() + 1 <= length, the buffer's size; `s` cannot overlap a caller buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    SUCCESS
}

fn init(func: &str) -> Ret {
    guard(|| match State::load() {
        Ok(state) => injected(&state.root, func).unwrap_or_else(|| {
            INIT_COUNT.fetch_add(1, Ordering::SeqCst);
            SUCCESS
        }),
        Err(code) => code,
    })
}

#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> Ret {
    init("nvmlInit_v2")
}

#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    init("nvmlInitWithFlags")
}

/// Must exist: nvml-wrapper's `Drop for Nvml` calls it unchecked and panics if it is missing.
#[no_mangle]
pub extern "C" fn nvmlShutdown() -> Ret {
    let dec = INIT_COUNT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if dec.is_ok() {
        SUCCESS
    } else {
        UNINITIALIZED
    }
}

#[no_mangle]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    let found = CODES.iter().find(|&&(code, _)| code == result);
    found
        .map_or(c"UNRECOGNIZED_ERROR_CODE", |&(_, name)| name)
        .as_ptr()
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    call("nvmlSystemGetDriverVersion", |state| {
        let v = state.root.get("driver_version").and_then(Value::as_str);
        // SAFETY: NVML contract: `version` holds `length` bytes.
        unsafe { put_str(v.unwrap_or(DEFAULT_DRIVER_VERSION), version, length) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    call("nvmlDeviceGetCount_v2", |state| {
        // SAFETY: NVML contract: `count` is null or a valid out-pointer.
        unsafe { put(count, state.devices().len() as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut Device) -> Ret {
    const FUNC: &str = "nvmlDeviceGetHandleByIndex_v2";
    call(FUNC, |state| {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        let Some(gpu) = state.gpu(index) else {
            return INVALID_ARGUMENT;
        };
        // A lost GPU still has a handle; the per-device calls report the loss.
        gpu.error(FUNC, false).unwrap_or_else(|| {
            // SAFETY: NVML contract: `device` is null or a valid out-pointer.
            unsafe { put(device, handle(gpu.index)) }
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut Device,
) -> Ret {
    const FUNC: &str = "nvmlDeviceGetHandleByUUID";
    call(FUNC, |state| {
        if uuid.is_null() {
            return INVALID_ARGUMENT;
        }
        // SAFETY: NVML contract: `uuid` is a NUL-terminated string.
        let uuid = unsafe { CStr::from_ptr(uuid) }.to_bytes();
        let found = (0..state.devices().len())
            .filter_map(|i| state.gpu(i))
            .find(|gpu| gpu.str("uuid").as_bytes() == uuid);
        let Some(gpu) = found else {
            return NOT_FOUND;
        };
        gpu.error(FUNC, true).unwrap_or_else(|| {
            // SAFETY: NVML contract: `device` is null or a valid out-pointer.
            unsafe { put(device, handle(gpu.index)) }
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: Device, index: *mut c_uint) -> Ret {
    device_call("nvmlDeviceGetIndex", device, |gpu| {
        // SAFETY: NVML contract: `index` is null or a valid out-pointer.
        unsafe { put(index, gpu.index as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: Device,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    device_call("nvmlDeviceGetUUID", device, |gpu| {
        // SAFETY: NVML contract: `uuid` holds `length` bytes.
        unsafe { put_str(gpu.str("uuid"), uuid, length) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: Device,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    device_call("nvmlDeviceGetName", device, |gpu| {
        // SAFETY: NVML contract: `name` holds `length` bytes.
        unsafe { put_str(gpu.str("name"), name, length) }
    })
}

/// Millijoules since "driver reload": here, `energy_start_mj` at `start_unix_ms`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: Device,
    energy: *mut c_ulonglong,
) -> Ret {
    device_call("nvmlDeviceGetTotalEnergyConsumption", device, |gpu| {
        // SAFETY: NVML contract: `energy` is null or a valid out-pointer.
        unsafe { put(energy, gpu.energy_mj()) }
    })
}

/// Milliwatts.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: Device, power: *mut c_uint) -> Ret {
    device_call("nvmlDeviceGetPowerUsage", device, |gpu| {
        let mw = (gpu.f64("power_w") * 1000.0).round() as c_uint;
        // SAFETY: NVML contract: `power` is null or a valid out-pointer.
        unsafe { put(power, mw) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: Device,
    utilization: *mut Utilization,
) -> Ret {
    device_call("nvmlDeviceGetUtilizationRates", device, |gpu| {
        let rates = Utilization {
            gpu: gpu.u32("util_gpu"),
            memory: gpu.u32("util_mem"),
        };
        // SAFETY: NVML contract: `utilization` is null or a valid out-pointer.
        unsafe { put(utilization, rates) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: Device, memory: *mut MemoryV1) -> Ret {
    device_call("nvmlDeviceGetMemoryInfo", device, |gpu| {
        let total = gpu.u64("mem_total");
        let used = gpu.u64("mem_used").saturating_add(gpu.u64("mem_reserved"));
        let info = MemoryV1 {
            total,
            free: total.saturating_sub(used),
            used,
        };
        // SAFETY: NVML contract: `memory` is null or a valid out-pointer.
        unsafe { put(memory, info) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(device: Device, memory: *mut MemoryV2) -> Ret {
    device_call("nvmlDeviceGetMemoryInfo_v2", device, |gpu| {
        if memory.is_null() {
            return INVALID_ARGUMENT;
        }
        // SAFETY: non-null; NVML contract: points to a `nvmlMemory_v2_t` with `version` set.
        if unsafe { (*memory).version } != MEMORY_V2_VERSION {
            return ARGUMENT_VERSION_MISMATCH;
        }
        let (total, used, reserved) = (
            gpu.u64("mem_total"),
            gpu.u64("mem_used"),
            gpu.u64("mem_reserved"),
        );
        let free = total.saturating_sub(used).saturating_sub(reserved);
        let info = MemoryV2 {
            version: MEMORY_V2_VERSION,
            total,
            reserved,
            free,
            used,
        };
        // SAFETY: non-null, valid for writes per the NVML contract.
        unsafe { put(memory, info) }
    })
}

/// Count protocol: `*count` is the capacity in, the number of processes out;
/// `INSUFFICIENT_SIZE` if they do not fit (a null buffer fits nothing).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: Device,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    device_call("nvmlDeviceGetComputeRunningProcesses_v3", device, |gpu| {
        if count.is_null() {
            return INVALID_ARGUMENT;
        }
        let procs = gpu.processes();
        // SAFETY: non-null; NVML contract: valid for reads and writes.
        let capacity = unsafe { count.replace(procs.len() as c_uint) } as usize;
        if procs.is_empty() {
            return SUCCESS;
        }
        if infos.is_null() || capacity < procs.len() {
            return INSUFFICIENT_SIZE;
        }
        for (i, p) in procs.iter().enumerate() {
            let info = ProcessInfo {
                pid: p.get("pid").map_or(0, as_u64) as c_uint,
                used_gpu_memory: p.get("used_mem").map_or(VALUE_NOT_AVAILABLE, as_u64),
                gpu_instance_id: NO_INSTANCE,
                compute_instance_id: NO_INSTANCE,
            };
            // SAFETY: i < procs.len() <= capacity, the number of entries `infos` holds.
            unsafe { infos.add(i).write(info) };
        }
        SUCCESS
    })
}

/// One sample per process whose `ts_us` (default: now) is newer than `last_seen`;
/// `NOT_FOUND` when there is none, as real NVML does. Count protocol as above.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: Device,
    samples: *mut ProcessUtilizationSample,
    count: *mut c_uint,
    last_seen: c_ulonglong,
) -> Ret {
    device_call("nvmlDeviceGetProcessUtilization", device, |gpu| {
        if count.is_null() {
            return INVALID_ARGUMENT;
        }
        let now = now_us();
        let u32_of = |p: &Value, key: &str| p.get(key).map_or(0, as_u64) as c_uint;
        let fresh: Vec<ProcessUtilizationSample> = gpu
            .processes()
            .iter()
            .map(|p| ProcessUtilizationSample {
                pid: u32_of(p, "pid"),
                time_stamp: p.get("ts_us").map_or(now, as_u64),
                sm_util: u32_of(p, "sm_util"),
                mem_util: u32_of(p, "mem_util"),
                enc_util: u32_of(p, "enc_util"),
                dec_util: u32_of(p, "dec_util"),
            })
            .filter(|s| s.time_stamp > last_seen)
            .collect();
        // SAFETY: non-null; NVML contract: valid for reads and writes.
        let capacity = unsafe { count.replace(fresh.len() as c_uint) } as usize;
        if fresh.is_empty() {
            return NOT_FOUND;
        }
        if samples.is_null() || capacity < fresh.len() {
            return INSUFFICIENT_SIZE;
        }
        for (i, sample) in fresh.into_iter().enumerate() {
            // SAFETY: i < fresh.len() <= capacity, the number of entries `samples` holds.
            unsafe { samples.add(i).write(sample) };
        }
        SUCCESS
    })
}
