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
//!                  "power_instant_w": 130.0, "field_errors": { "186": "NOT_SUPPORTED" },
//!                  "energy_start_mj": 0, "start_unix_ms": 1700000000000,
//!                  "util_gpu": 50, "util_mem": 20, "sm_count": 98, "minor": 0,
//!                  "mem_total": 1000, "mem_used": 300, "mem_reserved": 100,
//!                  "error": "GPU_IS_LOST", "errors": { "nvmlDeviceGetPowerUsage": 3 },
//!                  "processes": [ { "pid": 42, "used_mem": 200, "sm_util": 70,
//!                                   "mem_util": 10, "enc_util": 0, "dec_util": 0,
//!                                   "ts_us": 1700000000000000 } ],
//!                  "mig": [ { "uuid": "MIG-0a1b", "sm_count": 14, "mem_total": 100,
//!                             "error": "UNKNOWN", "errors": {} },
//!                           { "uuid": "MIG-2c3d", "sm_count": 28 } ],
//!                  "max_mig_count": 7 } ] }
//! ```
//!
//! Energy is `energy_start_mj + power_w × (now_ms − start_unix_ms)` (W·ms = mJ; see
//! `"power_steps"` below);
//! `start_unix_ms` defaults to the file's mtime, so tests should always set it. Error codes
//! may be numbers or names, with or without the `NVML_ERROR_` prefix. A device's `"error"`
//! applies to every per-device call except `nvmlDeviceGetHandleByIndex_v2`; an `"errors"` map
//! (top level or per device) fails just the named functions.
//!
//! A device's `minor` (`nvmlDeviceGetMinorNumber`, the N of `/dev/nvidiaN`) defaults to its
//! index; real NVML's index is PCI bus order, which need not be minor order.
//!
//! `nvmlDeviceGetFieldValues` answers two fields, in mW as unsigned ints:
//! `NVML_FI_DEV_POWER_AVERAGE` (185) with `power_w`, the same as `nvmlDeviceGetPowerUsage`, and
//! `NVML_FI_DEV_POWER_INSTANT` (186) with `power_instant_w` (default: `power_w`). Both ids are
//! the same in the V12 and V13Update1 numberings, which nvml-wrapper picks from
//! `driver_version`. Any other field gets a per-field `NOT_SUPPORTED`, as does a field listed in
//! a device's `"field_errors"` map (keyed by the decimal field id) with its code; the call
//! itself still succeeds.
//!
//! A device with a `"mig"` array is in MIG mode; each entry is one MIG device (GPU instance),
//! capped at `MAX_MIG`. MIG devices are not enumerated by index, as in real NVML: they are
//! reached through `nvmlDeviceGetHandleByUUID` with their `uuid` or through
//! `nvmlDeviceGetMigDeviceHandleByIndex` on their GPU. On a MIG handle only the UUID, the
//! attributes (`sm_count`, default 0; `mem_total`), `nvmlDeviceIsMigDeviceHandle` and
//! `nvmlDeviceGetDeviceHandleFromMigDeviceHandle` answer; every other call, energy and power
//! included, returns `NOT_SUPPORTED`, as real NVML does for energy and power.
//! `nvmlDeviceGetFieldValues` succeeds on a MIG handle, with `NOT_SUPPORTED` in every field.
//! The GPU's `"error"` applies to its MIG handles too; a MIG entry may carry its own `"error"`
//! and `"errors"`. `sm_count` of a GPU defaults to 132 (H100 SXM); `max_mig_count` (what
//! `nvmlDeviceGetMaxMigDeviceCount` reports; real GPUs say 7) defaults to the number of entries,
//! and indices beyond the entries are `NOT_FOUND`, as for an unpopulated slot.
//!
//! `nvmlDeviceGetComputeRunningProcesses_v3` writes entries of `"process_entry_bytes"` (top
//! level, default 24) into the caller's buffer, as a driver does whatever the caller's idea of
//! the entry: 32 models R535 drivers before 535.98 (`nvmlProcessInfo_v3_t`), 16 the v1 layout.
//! `_v2` always writes 24-byte entries and the unversioned call 16-byte ones. A driver whose
//! NVML lacks a symbol is a copy of this library with it hidden: [`symbols::hide_symbols`].
//!
//! `"mig_rules": "nvml"` (top level) makes a GPU in MIG mode answer `NOT_SUPPORTED` to its
//! attributes, utilisation and process utilisation, as real NVML does; by default it answers.
//! `nvmlDeviceGetGpuInstanceProfileInfo` answers from a GPU's `"gpu_instance_profiles"`.
//!
//! Per-process utilisation: `"process_sample_period_ms"` (top level, default 0: a fresh sample
//! at every call) models the driver's sampling tick; a process with `"exited": true` has
//! utilisation samples but is no longer a compute process; junk is any `"sm_util"` (real
//! drivers have been seen to give values above 100).
//!
//! A device's `"energy_step_mj"` makes its energy counter move in steps of that many mJ (real
//! counters move in steps of about 10 ms of energy). Its true power may change over time:
//! `"power_steps": [[at_ms, watts], …]` (ms after `start_unix_ms`, ascending) follow
//! `power_w`, and the counter integrates them. `"power_average_ms"` (default 0: the true power
//! now) makes `nvmlDeviceGetPowerUsage` and the average power field the mean of the true power
//! over that window, as on Ampere and newer GPUs except GA100 (1 s); the instant field stays
//! the true power.
//!
//! `"delays_ms"` (top level, `{ "nvmlDeviceGetHandleByIndex_v2": 3000 }`) makes each named
//! call take that long (at most a minute), as slow GPU initialisation does.
//!
//! Struct layouts follow the bindings of nvml-wrapper-sys 0.10, not the newest `nvml.h`.
//! Nothing here may panic across `extern "C"`: handles are validated, arithmetic saturates,
//! and every entry point runs under `catch_unwind` as a last resort.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// The safety contract of every entry point is NVML's own (nvml.h): valid pointers, buffers as
// large as the length or count passed alongside them.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{
    c_char, c_int, c_longlong, c_uint, c_ulong, c_ulonglong, c_ushort, c_void, CStr, OsStr,
    OsString,
};
use std::fs::File;
use std::io::Read;
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod install;
pub mod symbols;

/// `nvmlReturn_t`.
type Ret = c_uint;
/// `nvmlDevice_t`: an opaque pointer; only ever compared, never dereferenced.
type Device = *mut c_void;

const SUCCESS: Ret = 0;
const UNINITIALIZED: Ret = 1;
const INVALID_ARGUMENT: Ret = 2;
const NOT_SUPPORTED: Ret = 3;
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

/// `nvmlDeviceAttributes_t`, what `nvmlDeviceGetAttributes_v2` fills in. `memory_size_mb` is
/// in MiB, which NVML calls MB.
#[repr(C)]
pub struct DeviceAttributes {
    pub multiprocessor_count: c_uint,
    pub shared_copy_engine_count: c_uint,
    pub shared_decoder_count: c_uint,
    pub shared_encoder_count: c_uint,
    pub shared_jpeg_count: c_uint,
    pub shared_ofa_count: c_uint,
    pub gpu_instance_slice_count: c_uint,
    pub compute_instance_slice_count: c_uint,
    pub memory_size_mb: c_ulonglong,
}

/// `nvmlValue_t`: the value of one field, tagged by `FieldValue::value_type`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union SampleValue {
    pub d_val: f64,
    pub si_val: c_int,
    pub ui_val: c_uint,
    pub ul_val: c_ulong,
    pub ull_val: c_ulonglong,
    pub sll_val: c_longlong,
    pub us_val: c_ushort,
}

/// `nvmlFieldValue_t`: the caller sets `field_id` and `scope_id`; the library fills the rest.
#[repr(C)]
pub struct FieldValue {
    pub field_id: c_uint,
    pub scope_id: c_uint,
    /// CPU timestamp, µs since the Unix epoch.
    pub timestamp: c_longlong,
    pub latency_usec: c_longlong,
    /// `nvmlValueType_t`.
    pub value_type: c_uint,
    pub nvml_return: Ret,
    pub value: SampleValue,
}

/// `nvmlGpuInstanceProfileInfo_t` (v1), what `nvmlDeviceGetGpuInstanceProfileInfo` fills.
#[repr(C)]
pub struct GpuInstanceProfileInfo {
    pub id: c_uint,
    pub is_p2p_supported: c_uint,
    pub slice_count: c_uint,
    pub instance_count: c_uint,
    pub multiprocessor_count: c_uint,
    pub copy_engine_count: c_uint,
    pub decoder_count: c_uint,
    pub encoder_count: c_uint,
    pub jpeg_count: c_uint,
    pub ofa_count: c_uint,
    pub memory_size_mb: c_ulonglong,
}

const _: () = assert!(size_of::<GpuInstanceProfileInfo>() == 48);
const _: () = assert!(size_of::<Utilization>() == 8);
const _: () = assert!(size_of::<MemoryV1>() == 24);
const _: () = assert!(size_of::<MemoryV2>() == 40);
const _: () = assert!(MEMORY_V2_VERSION == 33_554_472);
const _: () = assert!(size_of::<ProcessInfo>() == 24);
const _: () = assert!(size_of::<ProcessUtilizationSample>() == 32);
const _: () = assert!(size_of::<DeviceAttributes>() == 40);
const _: () = assert!(std::mem::offset_of!(DeviceAttributes, memory_size_mb) == 32);
const _: () = assert!(size_of::<SampleValue>() == 8);
const _: () = assert!(std::mem::align_of::<SampleValue>() == 8);
const _: () = assert!(size_of::<FieldValue>() == 40);
const _: () = assert!(std::mem::offset_of!(FieldValue, field_id) == 0);
const _: () = assert!(std::mem::offset_of!(FieldValue, scope_id) == 4);
const _: () = assert!(std::mem::offset_of!(FieldValue, timestamp) == 8);
const _: () = assert!(std::mem::offset_of!(FieldValue, latency_usec) == 16);
const _: () = assert!(std::mem::offset_of!(FieldValue, value_type) == 24);
const _: () = assert!(std::mem::offset_of!(FieldValue, nvml_return) == 28);
const _: () = assert!(std::mem::offset_of!(FieldValue, value) == 32);

/// `NVML_FI_DEV_POWER_AVERAGE`; below 251, so the same in the V12 and V13Update1 numberings.
const FI_DEV_POWER_AVERAGE: c_uint = 185;
/// `NVML_FI_DEV_POWER_INSTANT`; likewise the same in both numberings.
const FI_DEV_POWER_INSTANT: c_uint = 186;
/// `NVML_VALUE_TYPE_UNSIGNED_INT`, the type real NVML gives power fields.
const VALUE_TYPE_UNSIGNED_INT: c_uint = 1;

/// `NVML_VALUE_NOT_AVAILABLE` (-1) as the wrapper compares it against `usedGpuMemory`.
const VALUE_NOT_AVAILABLE: u64 = u64::MAX;
/// "Not a MIG instance"; the wrapper maps it to `None`.
const NO_INSTANCE: c_uint = 0xFFFF_FFFF;
/// Default for `driver_version`: below 580.82, so the wrapper picks the V12 field-ID scheme.
const DEFAULT_DRIVER_VERSION: &str = "550.54.15";
/// Default for a GPU's `sm_count`: an H100 SXM's streaming multiprocessors.
const DEFAULT_SM_COUNT: c_uint = 132;

/// The largest process entry `"process_entry_bytes"` may ask for.
const MAX_PROCESS_ENTRY: usize = 64;

/// GPUs the state file may describe; later entries are ignored.
const MAX_DEVICES: usize = 64;
/// MIG devices per GPU (real GPUs have at most 7); later entries are ignored.
const MAX_MIG: usize = 8;
/// Device handles are addresses inside this one array, so the two ranges cannot overlap:
/// offset `i < MAX_DEVICES` is GPU `i`, offset `MAX_DEVICES + parent × MAX_MIG + mig` is
/// MIG device `mig` of GPU `parent`.
static HANDLES: [u8; MAX_DEVICES * (1 + MAX_MIG)] = [0; MAX_DEVICES * (1 + MAX_MIG)];

fn handle_at(offset: usize) -> Device {
    HANDLES.as_ptr().wrapping_add(offset).cast_mut().cast()
}

fn handle(index: usize) -> Device {
    handle_at(index)
}

fn mig_handle(parent: usize, mig: usize) -> Device {
    handle_at(MAX_DEVICES + parent * MAX_MIG + mig)
}

/// What a handle decodes to, before checking that the state file still has that device.
enum Target {
    Gpu(usize),
    Mig { parent: usize, mig: usize },
}

fn decode(device: Device) -> Option<Target> {
    let offset = (device as usize).checked_sub(HANDLES.as_ptr() as usize)?;
    match offset.checked_sub(MAX_DEVICES) {
        None => Some(Target::Gpu(offset)),
        Some(i) if i < MAX_DEVICES * MAX_MIG => Some(Target::Mig {
            parent: i / MAX_MIG,
            mig: i % MAX_MIG,
        }),
        Some(_) => None,
    }
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

    /// Sleep as long as `"delays_ms"` (top level) says `func` takes, at most a minute: the
    /// first handle calls of GPUs without persistence mode take 1–3 s each, and a GPU that
    /// fell off the bus can block NVML.
    fn delay(&self, func: &str) {
        let ms = self
            .root
            .get("delays_ms")
            .and_then(|d| d.get(func))
            .map_or(0, as_u64);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
        }
    }

    /// `"mig_rules": "nvml"`: a MIG-mode GPU answers as real NVML does (see
    /// `NOT_ON_A_MIG_MODE_GPU`); by default it answers everything, as it always has here.
    fn nvml_mig_rules(&self) -> bool {
        self.root.get("mig_rules").and_then(Value::as_str) == Some("nvml")
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

    fn gpus(&self) -> impl Iterator<Item = Gpu<'_>> {
        (0..self.devices().len()).filter_map(|i| self.gpu(i))
    }

    /// The device a handle refers to, if the state file still has it.
    fn dev(&self, device: Device) -> Option<Dev<'_>> {
        match decode(device)? {
            Target::Gpu(index) => self.gpu(index).map(Dev::Gpu),
            Target::Mig { parent, mig } => self.gpu(parent)?.mig(mig).map(Dev::Mig),
        }
    }

    /// The GPU or MIG device with this UUID.
    fn dev_by_uuid(&self, uuid: &[u8]) -> Option<Dev<'_>> {
        self.gpus()
            .flat_map(|gpu| std::iter::once(Dev::Gpu(gpu)).chain(gpu.migs().map(Dev::Mig)))
            .find(|dev| dev.uuid().as_bytes() == uuid)
    }
}

/// One device entry of the state file.
#[derive(Clone, Copy)]
struct Gpu<'a> {
    v: &'a Value,
    index: usize,
    mtime_ms: u64,
}

impl<'a> Gpu<'a> {
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
        entry_error(self.v, func, blanket)
    }
    fn sm_count(&self) -> c_uint {
        self.v
            .get("sm_count")
            .map_or(DEFAULT_SM_COUNT, |_| self.u32("sm_count"))
    }
    /// The `"mig"` entries, or `None` when the GPU is not in MIG mode.
    fn mig_entries(&self) -> Option<&'a [Value]> {
        let all = self.v.get("mig")?.as_array()?;
        Some(all.get(..MAX_MIG).unwrap_or(all))
    }
    fn mig(self, index: usize) -> Option<Mig<'a>> {
        let v = self.mig_entries()?.get(index)?;
        Some(Mig {
            gpu: self,
            v,
            index,
        })
    }
    fn migs(self) -> impl Iterator<Item = Mig<'a>> {
        let count = self.mig_entries().map_or(0, <[Value]>::len);
        (0..count).filter_map(move |i| self.mig(i))
    }
    /// What `nvmlDeviceGetMaxMigDeviceCount` reports: 0 outside MIG mode, as in real NVML.
    fn max_mig_count(&self) -> c_uint {
        let entries = self.mig_entries().map(<[Value]>::len);
        entries.map_or(0, |n| (n as c_uint).max(self.u32("max_mig_count")))
    }
    /// Watts from `key`, in mW; float-to-int `as` saturates, so this cannot panic.
    fn mw(&self, key: &str) -> c_uint {
        (self.f64(key) * 1000.0).round() as c_uint
    }
    /// The value of one field of `nvmlDeviceGetFieldValues`, in mW, or its per-field error.
    fn field_value(&self, field_id: c_uint) -> Result<c_uint, Ret> {
        let errors = self.v.get("field_errors");
        let injected = errors.and_then(|m| m.get(field_id.to_string()));
        if let Some(code) = injected.and_then(code_of) {
            return Err(code);
        }
        match field_id {
            FI_DEV_POWER_AVERAGE => Ok(self.power_reading_mw()),
            FI_DEV_POWER_INSTANT => match self.v.get("power_instant_w").and_then(Value::as_f64) {
                Some(_) => Ok(self.mw("power_instant_w")),
                None => {
                    let now = now_ms().saturating_sub(self.start_ms()) as f64;
                    let timeline = self.power_timeline();
                    let watts = timeline
                        .iter()
                        .rev()
                        .find(|s| s.0 <= now)
                        .map_or(0.0, |s| s.1);
                    Ok((watts * 1000.0).round() as c_uint)
                }
            },
            _ => Err(NOT_SUPPORTED),
        }
    }
    fn start_ms(&self) -> u64 {
        self.v.get("start_unix_ms").map_or(self.mtime_ms, as_u64)
    }
    /// The true power's timeline, in ms since `start_unix_ms`: `power_w` from the start, then
    /// each `"power_steps"` entry `[at_ms, watts]` (ascending) from its time on.
    fn power_timeline(&self) -> Vec<(f64, f64)> {
        let mut timeline = vec![(f64::NEG_INFINITY, self.f64("power_w"))];
        let steps = self.v.get("power_steps").and_then(Value::as_array);
        for step in steps.into_iter().flatten() {
            let at = step.get(0).and_then(Value::as_f64);
            let watts = step.get(1).and_then(Value::as_f64);
            if let (Some(at), Some(watts)) = (at, watts) {
                timeline.push((at, watts));
            }
        }
        timeline
    }
    /// The true power's energy between `a` and `b` ms after the start, in mJ (W·ms).
    fn energy_between(&self, a: f64, b: f64) -> f64 {
        let timeline = self.power_timeline();
        let mut mj = 0.0;
        for (i, &(from, watts)) in timeline.iter().enumerate() {
            let to = timeline.get(i + 1).map_or(f64::INFINITY, |s| s.0);
            let (lo, hi) = (from.max(a), to.min(b));
            if hi > lo {
                mj += watts * (hi - lo);
            }
        }
        mj
    }
    /// What `nvmlDeviceGetPowerUsage` and the average power field read, in W: the true power,
    /// or with `"power_average_ms"` its mean over that window, as Ampere and newer GPUs except
    /// GA100 give a 1 s average.
    fn power_reading_w(&self) -> f64 {
        let window = self.f64("power_average_ms");
        let now = now_ms().saturating_sub(self.start_ms()) as f64;
        if window > 0.0 {
            return self.energy_between(now - window, now) / window;
        }
        let timeline = self.power_timeline();
        timeline
            .iter()
            .rev()
            .find(|s| s.0 <= now)
            .map_or(0.0, |s| s.1)
    }
    fn power_reading_mw(&self) -> c_uint {
        (self.power_reading_w() * 1000.0).round() as c_uint
    }
    fn energy_mj(&self) -> u64 {
        let elapsed_ms = now_ms().saturating_sub(self.start_ms()) as f64;
        // Float-to-int `as` saturates (and maps NaN to 0), so this cannot panic.
        let mj = (self.f64("energy_start_mj") + self.energy_between(0.0, elapsed_ms)) as u64;
        // `"energy_step_mj"`: the counter moves in steps (about 10 ms of energy on real GPUs).
        match self.u64("energy_step_mj") {
            0 => mj,
            step => mj - mj % step,
        }
    }
}

/// One MIG device (GPU instance) entry of a GPU in the state file.
struct Mig<'a> {
    gpu: Gpu<'a>,
    v: &'a Value,
    index: usize,
}

impl Mig<'_> {
    fn uuid(&self) -> &str {
        self.v.get("uuid").and_then(Value::as_str).unwrap_or("")
    }
    /// 0 when absent: unlike a whole GPU's, a slice's size has no sensible default.
    fn sm_count(&self) -> c_uint {
        let sm = self.v.get("sm_count").map_or(0, as_u64);
        c_uint::try_from(sm).unwrap_or(c_uint::MAX)
    }
    fn mem_total(&self) -> u64 {
        self.v.get("mem_total").map_or(0, as_u64)
    }
    fn handle(&self) -> Device {
        mig_handle(self.gpu.index, self.index)
    }
    /// Like `Gpu::error`, with the GPU's blanket `"error"` (a lost GPU loses its slices) first.
    fn error(&self, func: &str, blanket: bool) -> Option<Ret> {
        let parent = blanket
            .then(|| self.gpu.v.get("error").and_then(code_of))
            .flatten();
        parent.or_else(|| entry_error(self.v, func, blanket))
    }
}

/// What a valid handle refers to: a whole GPU or one of its MIG devices.
enum Dev<'a> {
    Gpu(Gpu<'a>),
    Mig(Mig<'a>),
}

impl Dev<'_> {
    fn uuid(&self) -> &str {
        match self {
            Dev::Gpu(gpu) => gpu.str("uuid"),
            Dev::Mig(mig) => mig.uuid(),
        }
    }
    fn handle(&self) -> Device {
        match self {
            Dev::Gpu(gpu) => handle(gpu.index),
            Dev::Mig(mig) => mig.handle(),
        }
    }
    fn error(&self, func: &str, blanket: bool) -> Option<Ret> {
        match self {
            Dev::Gpu(gpu) => gpu.error(func, blanket),
            Dev::Mig(mig) => mig.error(func, blanket),
        }
    }
}

/// The error injected for `func` into a device or MIG entry: its blanket `"error"` (if
/// `blanket`), else its `"errors"` map.
fn entry_error(entry: &Value, func: &str, blanket: bool) -> Option<Ret> {
    let blanket = blanket
        .then(|| entry.get("error").and_then(code_of))
        .flatten();
    blanket.or_else(|| injected(entry, func))
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
            Ok(state) => {
                state.delay(func);
                injected(&state.root, func).unwrap_or_else(|| body(&state))
            }
            Err(code) => code,
        }
    })
}

/// `call` for functions taking a GPU or MIG handle; also applies the device's injected errors.
fn any_device_call(func: &str, device: Device, body: impl FnOnce(&Dev) -> Ret) -> Ret {
    call(func, |state| any_device_call_in(state, func, device, body))
}

/// `any_device_call` inside a `call` that has loaded `state` already.
fn any_device_call_in(
    state: &State,
    func: &str,
    device: Device,
    body: impl FnOnce(&Dev) -> Ret,
) -> Ret {
    let Some(dev) = state.dev(device) else {
        return INVALID_ARGUMENT;
    };
    let mig_rule = match &dev {
        Dev::Gpu(gpu) => state.nvml_mig_rules() && gpu.mig_entries().is_some(),
        Dev::Mig(_) => false,
    };
    if mig_rule && NOT_ON_A_MIG_MODE_GPU.contains(&func) {
        return NOT_SUPPORTED;
    }
    dev.error(func, true).unwrap_or_else(|| body(&dev))
}

/// What a GPU in MIG mode answers `NOT_SUPPORTED` to under `"mig_rules": "nvml"`: its
/// attributes (nvml.h: "only supports MIG device handles"), its utilisation and its
/// per-process utilisation (nvidia-smi shows N/A for a MIG-mode GPU's utilisation).
const NOT_ON_A_MIG_MODE_GPU: [&str; 3] = [
    "nvmlDeviceGetAttributes_v2",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetProcessUtilization",
];

/// `any_device_call` for functions that only whole GPUs answer: `NOT_SUPPORTED` on a MIG
/// handle, as real NVML answers for energy and power.
fn device_call(func: &str, device: Device, body: impl FnOnce(&Gpu) -> Ret) -> Ret {
    any_device_call(func, device, |dev| match dev {
        Dev::Gpu(gpu) => body(gpu),
        Dev::Mig(_) => NOT_SUPPORTED,
    })
}

/// `device_call` inside a `call` that has loaded `state` already.
fn device_call_in(
    state: &State,
    func: &str,
    device: Device,
    body: impl FnOnce(&Gpu) -> Ret,
) -> Ret {
    any_device_call_in(state, func, device, |dev| match dev {
        Dev::Gpu(gpu) => body(gpu),
        Dev::Mig(_) => NOT_SUPPORTED,
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
            state.delay(func);
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
        // A `MIG-…` UUID gives a MIG handle, as in real NVML since R470.
        let Some(dev) = state.dev_by_uuid(uuid) else {
            return NOT_FOUND;
        };
        dev.error(FUNC, true).unwrap_or_else(|| {
            // SAFETY: NVML contract: `device` is null or a valid out-pointer.
            unsafe { put(device, dev.handle()) }
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

/// The N of `/dev/nvidiaN`, which Slurm's GPU ids name: `"minor"`, else the device's index.
/// Real NVML numbers devices in PCI bus order, which need not be minor order; a state file
/// gives `"minor"` to model a node where they differ.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: Device, minor: *mut c_uint) -> Ret {
    device_call("nvmlDeviceGetMinorNumber", device, |gpu| {
        let number = gpu
            .v
            .get("minor")
            .map_or(gpu.index as c_uint, |_| gpu.u32("minor"));
        // SAFETY: NVML contract: `minor` is null or a valid out-pointer.
        unsafe { put(minor, number) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: Device,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    any_device_call("nvmlDeviceGetUUID", device, |dev| {
        // SAFETY: NVML contract: `uuid` holds `length` bytes.
        unsafe { put_str(dev.uuid(), uuid, length) }
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
        // SAFETY: NVML contract: `power` is null or a valid out-pointer.
        unsafe { put(power, gpu.power_reading_mw()) }
    })
}

/// Fills each of the `values_count` entries for the `field_id` the caller set, keeping its
/// `scope_id`: a per-field `nvml_return`, with a value only on `SUCCESS`. Unknown fields, and
/// every field of a MIG handle, are `NOT_SUPPORTED` while the call itself succeeds.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: Device,
    values_count: c_int,
    values: *mut FieldValue,
) -> Ret {
    any_device_call("nvmlDeviceGetFieldValues", device, |dev| {
        let Ok(count) = usize::try_from(values_count) else {
            return INVALID_ARGUMENT;
        };
        if values.is_null() {
            return INVALID_ARGUMENT;
        }
        let timestamp = c_longlong::try_from(now_us()).unwrap_or(c_longlong::MAX);
        for i in 0..count {
            // SAFETY: i < count = `values_count`, the number of entries `values` holds per the
            // NVML contract, so the offset stays inside that allocation.
            let entry = unsafe { values.add(i) };
            // SAFETY: `entry` is valid for reads; only the two ids the caller set are read, so
            // a value union left uninitialised is never touched.
            let (field_id, scope_id) = unsafe { ((*entry).field_id, (*entry).scope_id) };
            let result = match dev {
                Dev::Gpu(gpu) => gpu.field_value(field_id),
                Dev::Mig(_) => Err(NOT_SUPPORTED),
            };
            let mut value = SampleValue { ull_val: 0 };
            let (nvml_return, value_type) = match result {
                Ok(mw) => {
                    value.ui_val = mw;
                    (SUCCESS, VALUE_TYPE_UNSIGNED_INT)
                }
                Err(code) => (code, 0),
            };
            let filled = FieldValue {
                field_id,
                scope_id,
                timestamp,
                latency_usec: 0,
                value_type,
                nvml_return,
                value,
            };
            // SAFETY: `entry` is in bounds as above and valid for writes per the NVML contract.
            unsafe { entry.write(filled) };
        }
        SUCCESS
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

/// The compute processes of `gpu` as a driver writes them: `entry_bytes` per entry, laid
/// out as `nvmlProcessInfo_v1_t` (16 bytes: pid, usedGpuMemory), `_v2_t` (24: and the MIG
/// instance ids) or `_v3_t` (32: and usedGpuCcProtectedMemory), whatever the caller's type.
/// Count protocol: `*count` is the capacity in entries, the number of processes out;
/// `INSUFFICIENT_SIZE` if they do not fit (a null buffer fits nothing).
///
/// # Safety
/// `count` is null or valid for reads and writes; `infos` is null or holds `*count` entries
/// of `entry_bytes` bytes each, 8-byte aligned: NVML's contract, with the driver's idea of
/// the entry, which is exactly what a caller with a smaller idea of it breaks.
unsafe fn write_processes(
    gpu: &Gpu,
    count: *mut c_uint,
    infos: *mut u8,
    entry_bytes: usize,
) -> Ret {
    if count.is_null() {
        return INVALID_ARGUMENT;
    }
    // An `"exited"` process has left utilisation samples behind, but no context.
    let exited = |p: &&Value| p.get("exited").and_then(Value::as_bool) == Some(true);
    let procs: Vec<&Value> = gpu.processes().iter().filter(|p| !exited(p)).collect();
    // SAFETY: non-null; NVML contract: valid for reads and writes.
    let capacity = unsafe { count.replace(procs.len() as c_uint) } as usize;
    if procs.is_empty() {
        return SUCCESS;
    }
    if infos.is_null() || capacity < procs.len() {
        return INSUFFICIENT_SIZE;
    }
    for (i, p) in procs.iter().enumerate() {
        let mut entry = [0u8; MAX_PROCESS_ENTRY];
        let pid = p.get("pid").map_or(0, as_u64) as c_uint;
        let used = p.get("used_mem").map_or(VALUE_NOT_AVAILABLE, as_u64);
        entry[0..4].copy_from_slice(&pid.to_ne_bytes());
        entry[8..16].copy_from_slice(&used.to_ne_bytes());
        entry[16..20].copy_from_slice(&NO_INSTANCE.to_ne_bytes());
        entry[20..24].copy_from_slice(&NO_INSTANCE.to_ne_bytes());
        // usedGpuCcProtectedMemory (bytes 24..32) and anything after: 0.
        let entry = &entry[..entry_bytes.min(MAX_PROCESS_ENTRY)];
        // SAFETY: i < procs.len() <= capacity, the number of `entry_bytes` entries `infos`
        // holds per the contract above; a stand-in entry cannot overlap the caller's buffer.
        unsafe {
            let at = infos.add(i * entry.len());
            std::ptr::copy_nonoverlapping(entry.as_ptr(), at, entry.len());
        }
    }
    SUCCESS
}

/// Writes entries of `"process_entry_bytes"` (top level; default 24, the `nvmlProcessInfo_v2_t`
/// that R510–R530 drivers and nvml-wrapper-sys 0.10 use): 32 models R535 drivers before
/// 535.98, which write `nvmlProcessInfo_v3_t` through this same symbol; 16 the v1 layout some
/// drivers have been reported to write here. Values are clamped to 16..=64.
/// `"process_count_extra"` (fault injection, not a behaviour seen) adds that many to the
/// count returned on success, without writing more: a caller's bound on the count is what it
/// tests.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: Device,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    const FUNC: &str = "nvmlDeviceGetComputeRunningProcesses_v3";
    call(FUNC, |state| {
        let knob = state.root.get("process_entry_bytes").map(as_u64);
        let entry_bytes = knob.map_or(size_of::<ProcessInfo>(), |b| b.clamp(16, 64) as usize);
        let extra = state.root.get("process_count_extra").map_or(0, as_u64);
        device_call_in(state, FUNC, device, |gpu| {
            // SAFETY: NVML contract, with this driver's entry size (see `write_processes`).
            let ret = unsafe { write_processes(gpu, count, infos.cast(), entry_bytes) };
            if ret == SUCCESS && extra > 0 && !count.is_null() {
                // SAFETY: non-null, valid for reads and writes per the NVML contract.
                unsafe {
                    *count = (*count).saturating_add(c_uint::try_from(extra).unwrap_or(c_uint::MAX))
                };
            }
            ret
        })
    })
}

/// `nvmlProcessInfo_v2_t` entries (24 bytes), in every driver since R450.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: Device,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    device_call("nvmlDeviceGetComputeRunningProcesses_v2", device, |gpu| {
        // SAFETY: NVML contract: `infos` holds `*count` v2 entries.
        unsafe { write_processes(gpu, count, infos.cast(), size_of::<ProcessInfo>()) }
    })
}

/// The first version: `nvmlProcessInfo_v1_t` entries (16 bytes).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses(
    device: Device,
    count: *mut c_uint,
    infos: *mut c_void,
) -> Ret {
    device_call("nvmlDeviceGetComputeRunningProcesses", device, |gpu| {
        // SAFETY: NVML contract: `infos` holds `*count` v1 entries.
        unsafe { write_processes(gpu, count, infos.cast(), 16) }
    })
}

/// One sample per process (an `"exited"` one included) whose `ts_us` is newer than
/// `last_seen`; `NOT_FOUND` when there is none, as real NVML does. Without `ts_us`, a
/// sample is taken at every call (`now`), or, with `"process_sample_period_ms"` (top
/// level), at the last tick of that period, as the driver samples every 1/6 to 1 s: calls
/// closer together than that find nothing newer. Count protocol as above.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: Device,
    samples: *mut ProcessUtilizationSample,
    count: *mut c_uint,
    last_seen: c_ulonglong,
) -> Ret {
    const FUNC: &str = "nvmlDeviceGetProcessUtilization";
    call(FUNC, |state| {
        device_call_in(state, FUNC, device, |gpu| {
            if count.is_null() {
                return INVALID_ARGUMENT;
            }
            let period_us = state
                .root
                .get("process_sample_period_ms")
                .map_or(0, as_u64)
                .saturating_mul(1000);
            let now = match now_us() {
                now if period_us > 0 => now - now % period_us,
                now => now,
            };
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
    })
}

/// Streaming multiprocessors and memory of a GPU or of one MIG device; the shared-engine and
/// slice counts are 0.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetAttributes_v2(
    device: Device,
    attributes: *mut DeviceAttributes,
) -> Ret {
    any_device_call("nvmlDeviceGetAttributes_v2", device, |dev| {
        let (sm_count, mem_total) = match dev {
            Dev::Gpu(gpu) => (gpu.sm_count(), gpu.u64("mem_total")),
            Dev::Mig(mig) => (mig.sm_count(), mig.mem_total()),
        };
        let attrs = DeviceAttributes {
            multiprocessor_count: sm_count,
            shared_copy_engine_count: 0,
            shared_decoder_count: 0,
            shared_encoder_count: 0,
            shared_jpeg_count: 0,
            shared_ofa_count: 0,
            gpu_instance_slice_count: 0,
            compute_instance_slice_count: 0,
            memory_size_mb: mem_total >> 20,
        };
        // SAFETY: NVML contract: `attributes` is null or a valid out-pointer.
        unsafe { put(attributes, attrs) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: Device,
    is_mig_device: *mut c_uint,
) -> Ret {
    any_device_call("nvmlDeviceIsMigDeviceHandle", device, |dev| {
        let is_mig = c_uint::from(matches!(dev, Dev::Mig(_)));
        // SAFETY: NVML contract: `is_mig_device` is null or a valid out-pointer.
        unsafe { put(is_mig_device, is_mig) }
    })
}

/// A whole GPU's handle is no MIG handle: `INVALID_ARGUMENT`, which nvml.h gives "if
/// migDevice or device is invalid".
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: Device,
    device: *mut Device,
) -> Ret {
    const FUNC: &str = "nvmlDeviceGetDeviceHandleFromMigDeviceHandle";
    any_device_call(FUNC, mig_device, |dev| match dev {
        // SAFETY: NVML contract: `device` is null or a valid out-pointer.
        Dev::Mig(mig) => unsafe { put(device, handle(mig.gpu.index)) },
        Dev::Gpu(_) => INVALID_ARGUMENT,
    })
}

/// The most MIG devices the GPU can hold, not how many exist; 0 outside MIG mode.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: Device, count: *mut c_uint) -> Ret {
    device_call("nvmlDeviceGetMaxMigDeviceCount", device, |gpu| {
        // SAFETY: NVML contract: `count` is null or a valid out-pointer.
        unsafe { put(count, gpu.max_mig_count()) }
    })
}

/// `NOT_SUPPORTED` outside MIG mode (and on a MIG handle), `NOT_FOUND` for an index with no
/// MIG device. Like `nvmlDeviceGetHandleByIndex_v2`, only the entry's `"errors"` map applies.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: Device,
    index: c_uint,
    mig_device: *mut Device,
) -> Ret {
    const FUNC: &str = "nvmlDeviceGetMigDeviceHandleByIndex";
    device_call(FUNC, device, |gpu| {
        if gpu.mig_entries().is_none() {
            return NOT_SUPPORTED;
        }
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        let Some(mig) = gpu.mig(index) else {
            return NOT_FOUND;
        };
        mig.error(FUNC, false).unwrap_or_else(|| {
            // SAFETY: NVML contract: `mig_device` is null or a valid out-pointer.
            unsafe { put(mig_device, mig.handle()) }
        })
    })
}

/// The GPU-instance profile `profile` (`NVML_GPU_INSTANCE_PROFILE_*`: 0 = 1 slice … 4 = 7
/// slices) of a MIG-capable GPU, from its `"gpu_instance_profiles"` entries (`{"id": 4,
/// "slices": 7, "sm_count": 98, "mem_mb": 40192, "instances": 1}`); `NOT_SUPPORTED` for a
/// profile it does not list, and for every profile of a GPU without the key.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    device: Device,
    profile: c_uint,
    info: *mut GpuInstanceProfileInfo,
) -> Ret {
    device_call("nvmlDeviceGetGpuInstanceProfileInfo", device, |gpu| {
        let profiles = gpu.v.get("gpu_instance_profiles").and_then(Value::as_array);
        let found = profiles
            .into_iter()
            .flatten()
            .find(|p| p.get("id").map(as_u64) == Some(u64::from(profile)));
        let Some(p) = found else {
            return NOT_SUPPORTED;
        };
        let u32_of =
            |key: &str| c_uint::try_from(p.get(key).map_or(0, as_u64)).unwrap_or(c_uint::MAX);
        let filled = GpuInstanceProfileInfo {
            id: profile,
            is_p2p_supported: 0,
            slice_count: u32_of("slices"),
            instance_count: u32_of("instances"),
            multiprocessor_count: u32_of("sm_count"),
            copy_engine_count: 0,
            decoder_count: 0,
            encoder_count: 0,
            jpeg_count: 0,
            ofa_count: 0,
            memory_size_mb: p.get("mem_mb").map_or(0, as_u64),
        };
        // SAFETY: NVML contract: `info` is null or a valid out-pointer.
        unsafe { put(info, filled) }
    })
}

/// MIG mode, current and pending: enabled (1) for a GPU with a `"mig"` array, else disabled.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: Device,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    device_call("nvmlDeviceGetMigMode", device, |gpu| {
        let mode = c_uint::from(gpu.mig_entries().is_some());
        // SAFETY: NVML contract: both are null or valid out-pointers.
        match unsafe { put(current, mode) } {
            // SAFETY: as above.
            SUCCESS => unsafe { put(pending, mode) },
            error => error,
        }
    })
}
