//! A GPU's compute processes, read whatever size of entry the driver writes.
//!
//! Every layout of NVML's process entry begins with `pid` (u32, offset 0) and
//! `usedGpuMemory` (u64, offset 8); they differ in length: 16 bytes (`nvmlProcessInfo_v1_t`),
//! 24 (`_v2_t`: MIG instance ids), 32 (`_v3_t`: confidential-computing memory). Which one a
//! driver writes through `nvmlDeviceGetComputeRunningProcesses_v3` depends on its version,
//! not on the symbol (R535 before 535.98 writes 32, others 24, one report says 16), so it
//! is measured, never assumed: the driver writes the same list twice, into a buffer filled
//! with 0x00 and one filled with 0xFF; no byte it writes can equal both fills, so the last
//! byte that differs from its fill in either buffer ends the last entry, and that end over
//! the count is the entry's size. Only the three sizes nvml.h has had are accepted; any
//! other, or entries that cannot be processes, and the GPU's process list is refused.
//! Once measured, every later list is checked against it: a byte written past `count ×
//! size` refuses the list too. The buffers themselves come from [`nvml_ffi`], with room
//! for entries twice the largest size, so that a wrong guess can never write memory the
//! sampler does not own.

use std::ffi::CStr;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Device;

use super::nvml_ffi::{self, ProcessesError, RawProcesses};

/// Entry sizes nvml.h has defined: v1, v2, v3.
pub const KNOWN_ENTRY_BYTES: [usize; 3] = [16, 24, 32];
/// `NVML_VALUE_NOT_AVAILABLE` in `usedGpuMemory`: the driver does not know (WDDM, some
/// containers, MIG without privileges).
const NOT_AVAILABLE: u64 = u64::MAX;
/// Linux's `PID_MAX_LIMIT` on 64-bit: no pid is larger.
const PID_MAX: u32 = 4_194_304;
/// No GPU has a pebibyte: a larger usedGpuMemory is no entry.
const MEMORY_MAX: u64 = 1 << 50;
/// The fill of the buffer once the entry size is known.
const CHECK_FILL: u8 = 0xA5;

/// One GPU's process list: its entry point and the entry size measured.
#[derive(Debug, Clone)]
pub struct ProcessList {
    symbol: &'static CStr,
    entry_bytes: Option<usize>,
}

/// Pid and memory used (`None`: not available) of each compute process.
pub type Processes = Vec<(u32, Option<u64>)>;

/// What a read of the list gave.
#[derive(Debug)]
pub enum Read {
    Listed(Processes),
    /// The list changed between the two calls that measure the entry size: nothing this
    /// time, measured at the next read.
    Unsettled,
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The driver's answer: counted as a read error, and read again next time.
    Nvml(NvmlError),
    /// The list cannot be read safely or its entries make no sense: it is not read again.
    Refused(String),
}

impl ProcessList {
    /// The newest process-list entry point of `device`'s NVML that answers, or the error of
    /// the newest one present (`NotSupported`: no list; `FailedToLoadSymbol`: none present).
    pub fn find(device: &Device) -> Result<ProcessList, (ProcessList, ReadError)> {
        let mut last = None;
        for symbol in nvml_ffi::PROCESS_SYMBOLS {
            let mut list = ProcessList {
                symbol,
                entry_bytes: None,
            };
            match list.read(device) {
                // Not exported, or exported but not implemented: the next older one.
                Err(ReadError::Nvml(NvmlError::FailedToLoadSymbol(e))) => {
                    last = Some((list, ReadError::Nvml(NvmlError::FailedToLoadSymbol(e))));
                }
                Err(ReadError::Nvml(NvmlError::FunctionNotFound)) => {
                    let e = NvmlError::FailedToLoadSymbol(format!("{}: not found", list.symbol()));
                    last = Some((list, ReadError::Nvml(e)));
                }
                Ok(_) => return Ok(list),
                Err(e) => return Err((list, e)),
            }
        }
        Err(last.expect("PROCESS_SYMBOLS is not empty"))
    }

    /// The entry point read.
    pub fn symbol(&self) -> &'static str {
        self.symbol.to_str().unwrap_or("?")
    }

    /// The entry size measured, once some list had a process.
    pub fn entry_bytes(&self) -> Option<usize> {
        self.entry_bytes
    }

    /// The processes now.
    pub fn read(&mut self, device: &Device) -> Result<Read, ReadError> {
        let call = |fill| nvml_ffi::processes(device, self.symbol, fill).map_err(ReadError::from);
        let Some(size) = self.entry_bytes else {
            let zeros = call(0x00)?;
            if zeros.count == 0 {
                return Ok(Read::Listed(Vec::new()));
            }
            let ones = call(0xFF)?;
            return match measure(&zeros, &ones)? {
                Some(size) => {
                    self.entry_bytes = Some(size);
                    decode(&ones, size).map(Read::Listed)
                }
                None => Ok(Read::Unsettled),
            };
        };
        let raw = call(CHECK_FILL)?;
        let end = raw.count * size;
        if let Some(at) = raw.bytes[end..].iter().position(|&b| b != CHECK_FILL) {
            return Err(ReadError::Refused(format!(
                "{} wrote byte {} of {} processes of {size} bytes: the entry size changed",
                self.symbol(),
                end + at,
                raw.count
            )));
        }
        decode(&raw, size).map(Read::Listed)
    }
}

impl From<ProcessesError> for ReadError {
    fn from(e: ProcessesError) -> ReadError {
        match e {
            ProcessesError::Nvml(e) => ReadError::Nvml(e),
            ProcessesError::Bounds(why) => ReadError::Refused(why),
        }
    }
}

/// The entry size of the same list written into a buffer of 0x00 and one of 0xFF; `None`
/// when the two lists differ (processes came or went between the calls).
fn measure(zeros: &RawProcesses, ones: &RawProcesses) -> Result<Option<usize>, ReadError> {
    if zeros.count != ones.count {
        return Ok(None);
    }
    let count = zeros.count;
    let written = |bytes: &[u8], fill: u8| bytes.iter().rposition(|&b| b != fill).map(|i| i + 1);
    let end = written(&zeros.bytes, 0x00)
        .max(written(&ones.bytes, 0xFF))
        .unwrap_or(0);
    let size = end / count;
    if end % count != 0 || !KNOWN_ENTRY_BYTES.contains(&size) {
        return Err(ReadError::Refused(format!(
            "{count} processes filled {end} bytes: not entries of {KNOWN_ENTRY_BYTES:?} bytes"
        )));
    }
    // The same pids and memory in both: the same list.
    let fields = |bytes: &[u8], k: usize| {
        let entry = &bytes[k * size..k * size + 16];
        (entry[0..4].to_vec(), entry[8..16].to_vec())
    };
    let same = (0..count).all(|k| fields(&zeros.bytes, k) == fields(&ones.bytes, k));
    Ok(same.then_some(size))
}

/// The `count` entries of `size` bytes of `raw`; refused if one cannot be a process.
fn decode(raw: &RawProcesses, size: usize) -> Result<Processes, ReadError> {
    let mut list = Vec::with_capacity(raw.count);
    for k in 0..raw.count {
        let entry = &raw.bytes[k * size..(k + 1) * size];
        let pid = u32::from_ne_bytes(entry[0..4].try_into().expect("4 bytes"));
        let used = u64::from_ne_bytes(entry[8..16].try_into().expect("8 bytes"));
        let used = (used != NOT_AVAILABLE).then_some(used);
        if pid == 0 || pid > PID_MAX || used.is_some_and(|b| b > MEMORY_MAX) {
            return Err(ReadError::Refused(format!(
                "entry {k} of {size} bytes is no process (pid {pid}, {used:?} bytes)"
            )));
        }
        list.push((pid, used));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `entries` (pid, memory) as a driver writes them at `size` bytes each into a buffer of
    /// `capacity` slots filled with `fill`.
    fn written(entries: &[(u32, u64)], size: usize, fill: u8, capacity: usize) -> RawProcesses {
        let mut bytes = vec![fill; capacity * nvml_ffi::SLOT_BYTES];
        for (k, &(pid, used)) in entries.iter().enumerate() {
            let mut entry = vec![0u8; size];
            entry[0..4].copy_from_slice(&pid.to_ne_bytes());
            entry[8..16].copy_from_slice(&used.to_ne_bytes());
            if size >= 24 {
                entry[16..24].fill(0xFF);
            }
            bytes[k * size..(k + 1) * size].copy_from_slice(&entry);
        }
        RawProcesses {
            count: entries.len(),
            bytes,
        }
    }

    #[test]
    fn every_known_entry_size_is_measured_and_decoded() {
        let entries = [(4242, 1 << 30), (777, NOT_AVAILABLE)];
        for size in KNOWN_ENTRY_BYTES {
            let zeros = written(&entries, size, 0x00, 4);
            let ones = written(&entries, size, 0xFF, 4);
            assert_eq!(measure(&zeros, &ones).unwrap(), Some(size));
            let list = decode(&ones, size).unwrap();
            assert_eq!(list, [(4242, Some(1 << 30)), (777, None)]);
        }
    }

    #[test]
    fn a_list_that_changed_between_the_calls_is_measured_later() {
        let zeros = written(&[(1, 0), (2, 0)], 24, 0x00, 4);
        let ones = written(&[(1, 0), (3, 0)], 24, 0xFF, 4);
        assert_eq!(measure(&zeros, &ones).unwrap(), None);
        let ones = written(&[(1, 0)], 24, 0xFF, 4);
        assert_eq!(measure(&zeros, &ones).unwrap(), None);
    }

    #[test]
    fn an_unknown_entry_size_is_refused() {
        let entries = [(1, 0), (2, 0)];
        let zeros = written(&entries, 40, 0x00, 4);
        let ones = written(&entries, 40, 0xFF, 4);
        assert!(matches!(
            measure(&zeros, &ones),
            Err(ReadError::Refused(why)) if why.contains("80 bytes")
        ));
    }

    #[test]
    fn entries_that_cannot_be_processes_are_refused() {
        for entry in [(0, 0), (PID_MAX + 1, 0), (5, MEMORY_MAX + 1)] {
            let raw = written(&[entry], 24, 0xFF, 1);
            assert!(matches!(decode(&raw, 24), Err(ReadError::Refused(_))));
        }
    }
}
