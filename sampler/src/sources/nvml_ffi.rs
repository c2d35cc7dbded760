//! The sampler's one FFI edge with NVML: the calls nvml-wrapper 0.13 cannot make safely on
//! every driver, made here on buffers this module owns.
//!
//! - The compute-process list. nvml-wrapper gives `nvmlDeviceGetComputeRunningProcesses_v3`
//!   24 bytes per entry (`nvmlProcessInfo_v2_t`), but R535 drivers before 535.98 write 32
//!   (`nvmlProcessInfo_v3_t`) through the same symbol: pids scrambled from two processes on,
//!   and past about 15 processes a write beyond the wrapper's buffer, inside slurmstepd, as
//!   root (docs/nvml-real-drivers.md). Here the driver gets [`SLOT_BYTES`] per entry it may
//!   write (twice the largest entry nvml.h has had), a capacity of at most
//!   [`MAX_PROCESSES`] entries, and the buffer comes back as bytes, with the count the
//!   driver gave checked against the capacity; what the entries are is decided elsewhere
//!   (`nvml_processes`), in safe code, from what the driver wrote.
//! - `nvmlDeviceGetMemoryInfo` (v1), for drivers without `nvmlDeviceGetMemoryInfo_v2`, which
//!   nvml-wrapper alone calls.
//!
//! - `nvmlDeviceGetGpuInstanceProfileInfo`, which nvml-wrapper lacks: the SMs MIG gives a
//!   whole GPU, since `nvmlDeviceGetAttributes_v2` answers only for MIG handles.
//!
//! Symbols are looked up in the library of the `Device` at each call, never kept: a function
//! pointer cannot outlive the library it came from.
#![allow(unsafe_code)]

use std::ffi::{c_uint, c_void, CStr};

use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::Device;

/// `nvmlDeviceGetComputeRunningProcesses{,_v2,_v3}(device, infoCount, infos)`, whatever the
/// entry type: the buffer is passed as bytes.
type ProcessesFn = unsafe extern "C" fn(*mut c_void, *mut c_uint, *mut c_void) -> c_uint;
/// `nvmlDeviceGetMemoryInfo(device, memory)`.
type MemoryFn = unsafe extern "C" fn(*mut c_void, *mut MemoryV1) -> c_uint;

const SUCCESS: c_uint = 0;
const INSUFFICIENT_SIZE: c_uint = 7;

/// Bytes of buffer per entry the driver may write: twice `nvmlProcessInfo_v3_t` (32), the
/// largest entry these calls have ever written.
pub const SLOT_BYTES: usize = 64;
/// The most entries a list is asked for (256 KiB of buffer): more processes than this on one
/// GPU is no list this sampler reads.
pub const MAX_PROCESSES: usize = 4096;
/// The capacity of the first call: most GPUs run a handful of processes.
const FIRST_CAPACITY: usize = 32;

/// `nvmlMemory_t`, which the v1 call fills: `used` includes the driver's reserved memory.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryV1 {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// The process-list entry points, newest first.
pub const PROCESS_SYMBOLS: [&CStr; 3] = [
    c"nvmlDeviceGetComputeRunningProcesses_v3",
    c"nvmlDeviceGetComputeRunningProcesses_v2",
    c"nvmlDeviceGetComputeRunningProcesses",
];

/// What one call of a process-list entry point gave: `count` entries, somewhere in `bytes`.
pub struct RawProcesses {
    /// The number of processes the driver said it wrote, never more than the capacity.
    pub count: usize,
    /// The whole buffer given to the driver (`SLOT_BYTES` per entry of capacity), with the
    /// fill byte wherever the driver wrote nothing.
    pub bytes: Vec<u8>,
}

/// Why a process list could not be had.
#[derive(Debug)]
pub enum ProcessesError {
    /// The driver's answer (`FailedToLoadSymbol` for an entry point it lacks).
    Nvml(NvmlError),
    /// A count out of bounds: more processes than [`MAX_PROCESSES`], a count above the
    /// capacity given, or a list that kept growing.
    Bounds(String),
}

/// The processes of `device` through the entry point `symbol` (one of [`PROCESS_SYMBOLS`]),
/// on a buffer of [`SLOT_BYTES`] per entry filled with `fill`: grown while the driver
/// answers `INSUFFICIENT_SIZE`, to at most [`MAX_PROCESSES`] entries.
pub fn processes(device: &Device, symbol: &CStr, fill: u8) -> Result<RawProcesses, ProcessesError> {
    let library = &device.nvml().lib().__library;
    // SAFETY: `ProcessesFn` is the C signature of each of the three entry points, the entry
    // pointer passed as `void *` (any pointer has that ABI). The function is only called
    // below, while `device` borrows the `Nvml` that keeps the library loaded.
    let func: ProcessesFn = *unsafe { library.get::<ProcessesFn>(symbol.to_bytes_with_nul()) }
        .map_err(|e| ProcessesError::Nvml(NvmlError::FailedToLoadSymbol(e.to_string())))?;
    // SAFETY: a handle of a live `Device`, passed back to the library it came from.
    let handle = unsafe { device.handle() }.cast::<c_void>();
    let mut capacity = FIRST_CAPACITY;
    // A list growing between calls is retried a few times, not forever.
    for _ in 0..4 {
        let mut words = vec![u64::from_ne_bytes([fill; 8]); capacity * SLOT_BYTES / 8];
        let mut count = c_uint::try_from(capacity).unwrap_or(c_uint::MAX);
        // SAFETY: `words` holds `capacity × SLOT_BYTES` bytes, 8-byte aligned, and the driver
        // is told `capacity` entries: it may write `capacity × (its entry size)` bytes, which
        // fit while its entry is at most `SLOT_BYTES`, twice the largest there has been.
        // `count` is a valid in/out pointer for the call.
        let code = unsafe { func(handle, &mut count, words.as_mut_ptr().cast()) };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        match code {
            SUCCESS if count <= capacity => {
                let bytes = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
                return Ok(RawProcesses { count, bytes });
            }
            SUCCESS => {
                return Err(ProcessesError::Bounds(format!(
                    "{} said it wrote {count} processes into room for {capacity}",
                    symbol.to_string_lossy()
                )))
            }
            INSUFFICIENT_SIZE if count > MAX_PROCESSES => {
                return Err(ProcessesError::Bounds(format!(
                    "{count} processes, more than the {MAX_PROCESSES} read"
                )))
            }
            // Room for a few more than asked: processes start between calls.
            INSUFFICIENT_SIZE => capacity = (count.max(capacity) + 8).min(MAX_PROCESSES),
            other => {
                let e = nvml_try(other).err().unwrap_or(NvmlError::Unknown);
                return Err(ProcessesError::Nvml(e));
            }
        }
    }
    Err(ProcessesError::Bounds(
        "the process list kept growing between calls".into(),
    ))
}

/// `nvmlDeviceGetMemoryInfo` (v1): for drivers without the v2 call.
pub fn memory_v1(device: &Device) -> Result<MemoryV1, NvmlError> {
    let library = &device.nvml().lib().__library;
    // SAFETY: `MemoryFn` is the C signature of `nvmlDeviceGetMemoryInfo`; the function is
    // called below only, while `device` keeps the library loaded.
    let func: MemoryFn = *unsafe { library.get::<MemoryFn>(b"nvmlDeviceGetMemoryInfo\0") }
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut memory = MemoryV1::default();
    // SAFETY: a live handle, and `memory` is a valid `nvmlMemory_t` for the call to fill.
    let code = unsafe { func(device.handle().cast(), &mut memory) };
    nvml_try(code).map(|()| memory)
}

/// `nvmlDeviceGetGpuInstanceProfileInfo(device, profile, info)`.
type ProfileInfoFn = unsafe extern "C" fn(*mut c_void, c_uint, *mut c_void) -> c_uint;

/// `NVML_GPU_INSTANCE_PROFILE_*` ids tried: nvml.h has 15 so far.
const GPU_INSTANCE_PROFILES: c_uint = 32;

/// The streaming multiprocessors of the GPU-instance profile of `device` with the most slices
/// (7g on an A100 or H100, 4g on an A30): all the SMs MIG gives the GPU's slices, so that
/// the shares of a fully partitioned GPU add up to 1. `Ok(None)` when no profile answers
/// (no MIG, or an NVML without profiles).
pub fn largest_gpu_instance_sms(device: &Device) -> Result<Option<u32>, NvmlError> {
    let library = &device.nvml().lib().__library;
    let name = b"nvmlDeviceGetGpuInstanceProfileInfo\0";
    // SAFETY: `ProfileInfoFn` is the C signature, the info pointer passed as `void *`; the
    // function is called below only, while `device` keeps the library loaded.
    let func: ProfileInfoFn = *unsafe { library.get::<ProfileInfoFn>(name) }
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut largest: Option<(u32, u32)> = None;
    for profile in 0..GPU_INSTANCE_PROFILES {
        // `nvmlGpuInstanceProfileInfo_t` is 48 bytes; 256 leave room for a driver that
        // writes a larger one through the unversioned call.
        let mut info = [0u64; 32];
        // SAFETY: a live handle; `info` is 256 bytes, 8-byte aligned, valid for writes.
        let code = unsafe { func(device.handle().cast(), profile, info.as_mut_ptr().cast()) };
        if code != SUCCESS {
            continue;
        }
        let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        // sliceCount at byte 8, multiprocessorCount at byte 16.
        let (slices, sms) = (word(8), word(16));
        // Only a plausible profile: a driver writing another layout here would shift them.
        let plausible = (1..=8).contains(&slices) && (1..=1024).contains(&sms);
        if plausible && largest.is_none_or(|(s, _)| slices > s) {
            largest = Some((slices, sms));
        }
    }
    Ok(largest.map(|(_, sms)| sms))
}
