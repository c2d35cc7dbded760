//! NVIDIA GPUs through NVML (`nvml-wrapper`), loaded by path when the admin configures one.
//!
//! Per GPU of the job: the total-energy counter (Volta and newer, mJ since the driver was
//! loaded) is the energy of record; power, utilisation and memory are gauges. On GPUs
//! without the counter, energy is integrated from power and the source says so.
//!
//! Each query is tried once per GPU when the source opens; one the GPU answers NotSupported
//! to is never made again, its column stays empty and the metadata says so, rather than
//! counting a read error at every sample. An entry point this driver's NVML lacks is done
//! without, or through an older one (`nvmlDeviceGetMemoryInfo` for `_v2`), named once.
//! A GPU that cannot be opened costs only itself: it is named ([`NvmlSource::lost`]), the
//! others are recorded.
//!
//! The compute-process list never goes through nvml-wrapper, whose buffer is smaller than
//! what R535 drivers write (a heap overflow in slurmstepd): see `sources::nvml_processes`
//! and the FFI edge `sources::nvml_ffi`. Real drivers' differences from the stand-in, and
//! what each fix rests on: docs/nvml-real-drivers.md.
//!
//! A MIG slice (`MIG-…` in the job's CUDA_VISIBLE_DEVICES) has no energy or power of its own
//! in NVML; it is given its parent GPU's energy times its share of the streaming
//! multiprocessors MIG gives the GPU (those of its largest GPU-instance profile: a 1g slice
//! of an A100 gets 14/98), as CEEMS does.
//! See: docs.nvidia.com/deploy/nvml-api (nvmlDeviceGetTotalEnergyConsumption).
//!
//! A sampler that takes over a recording reopens the recording's GPUs by the UUIDs it
//! recorded ([`NvmlSource::reopen`]): a GPU that cannot be opened then (fallen off the bus)
//! keeps its columns, empty, since the recording's columns cannot change.

use std::path::Path;
use std::time::{Duration, Instant};

use aipm_recording::samples;
use aipm_recording::time::now_unix_ms;

use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;
use nvml_wrapper::Nvml;

use super::nvml_error::{GpuError, NvmlFailed};
use super::nvml_ffi;
use super::nvml_processes::{self, ProcessList, Processes};
use super::{EnergySource, Found, JobPids};

pub struct NvmlSource {
    /// `None` only for a recording continued while NVML cannot be loaded: every GPU is then
    /// a placeholder.
    nvml: Option<Nvml>,
    gpus: Vec<Slot>,
    channels: Vec<String>,
    gauges: Vec<String>,
    /// The GPUs that could not be opened when the source opened, each with why: not
    /// recorded, so that the others are.
    lost: Vec<String>,
}

/// One GPU of the source, by channel.
enum Slot {
    Open(Box<Gpu>),
    /// A GPU of a continued recording that could not be opened: why, naming it. It reads
    /// nothing, and counts a read error at each sample, as a GPU lost later does.
    Unopened(String),
}

struct Gpu {
    /// The physical GPU's NVML index (the parent's, for a MIG slice), by which it is looked
    /// up at each sample.
    index: u32,
    /// Named by a Slurm id but found by NVML index: NVML gives no minor number for it.
    by_index: bool,
    mig: Option<MigSlice>,
    /// Timestamp (µs) of the newest per-process utilisation sample already counted.
    last_seen_us: Option<u64>,
    /// The last per-process SM list that had new samples, and when it was read: it stands
    /// for the samples that find nothing newer within the driver's sampling period.
    last_sm: Option<(Instant, Vec<(u32, u64)>)>,
    /// Energy integrated from power, for GPUs without the energy counter.
    integrated: Option<Integrated>,
    /// Queries the GPU answered NotSupported when the source opened: never made again.
    unsupported: Vec<Query>,
    /// Queries whose entry point this NVML lacks (`FailedToLoadSymbol`), with no other to
    /// make them through: never made.
    missing: Vec<Query>,
    /// The compute-process list, unless not supported, missing or refused.
    processes: Option<ProcessList>,
    /// Memory through `nvmlDeviceGetMemoryInfo` (v1), for an NVML without the v2 call.
    memory_v1: bool,
    /// Readings made another way than usual, or given up, each named once for the
    /// metadata (`memory: …`).
    notes: Vec<String>,
    /// The gauges of the last `read`, for `read_gauges`.
    taken: Taken,
}

/// One sample's gauges of a GPU; `None` where unknown.
#[derive(Default)]
struct Taken {
    power_mw: Option<u64>,
    util_pct: Option<u64>,
    mem_used_bytes: Option<u64>,
    /// Pid and bytes used (`None`: not available) of each compute process.
    processes: Option<Processes>,
    /// Pid and SM % of each utilisation sample newer than the last sample's.
    sm: Option<Vec<(u32, u64)>>,
    power_instant_mw: Option<u64>,
}

/// The gauges of a GPU that is not read.
const NOTHING_TAKEN: Taken = Taken {
    power_mw: None,
    util_pct: None,
    mem_used_bytes: None,
    processes: None,
    sm: None,
    power_instant_mw: None,
};

/// What a sample asks NVML of each GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    /// Neither the counter nor power: the GPU's energy cannot be known.
    Energy,
    Power,
    Utilisation,
    Memory,
    Processes,
    ProcessUtilisation,
    InstantPower,
}

impl Query {
    fn name(self) -> &'static str {
        match self {
            Query::Energy => "energy",
            Query::Power => "power",
            Query::Utilisation => "utilisation",
            Query::Memory => "memory",
            Query::Processes => "processes",
            Query::ProcessUtilisation => "process utilisation",
            Query::InstantPower => "instant power",
        }
    }
}

struct MigSlice {
    parent_uuid: String,
    /// The slice's SMs over the GPU's.
    fraction: f64,
}

struct Integrated {
    energy_uj: f64,
    last: Option<(Instant, u64)>,
}

/// The metadata's note on a Grace Hopper module (GH200): its counter is the module's, Grace
/// CPU and memory included (Zeus PR #172), so a CPU channel of the same node covers part of
/// the same energy. Reports look for it with [`noted_gpus`].
pub const GRACE_HOPPER_NOTE: &str = "a Grace Hopper module: its energy counter includes the \
     Grace CPU and its memory, not the GPU's alone";

/// The metadata's note on a GPU in MIG mode opened whole (by a Slurm id): the job runs on a
/// slice of it that NVML cannot name from here, so its energy is every slice's. Reports look
/// for it with [`noted_gpus`].
pub const MIG_SHARE_UNKNOWN_NOTE: &str = "whole GPU, MIG mode: share unknown (in MIG mode but \
     opened whole: its energy is the whole GPU's, of every slice's jobs)";

/// The GPUs (`GPU-…`) that the nvml source's metadata `detail` names with `note` among its
/// readings made otherwise (`read otherwise: GPU-a: note, other; GPU-b: …`).
pub fn noted_gpus(detail: &str, note: &str) -> Vec<String> {
    let Some((_, otherwise)) = detail.split_once("read otherwise: ") else {
        return Vec::new();
    };
    // The list ends where the next part of the detail begins (`; not opened, …`).
    let mut found = Vec::new();
    for part in otherwise.split("; ") {
        let Some((uuid, notes)) = part.split_once(": ") else {
            break;
        };
        let named = uuid.starts_with("GPU-") || uuid.starts_with("MIG-");
        if !named || uuid.contains(' ') {
            break;
        }
        if notes.contains(note) {
            found.push(uuid.to_string());
        }
    }
    found
}

/// The gauges recorded for each GPU, after its UUID. The `job_`/`other_` pairs split the
/// GPU's compute processes between the job's and everyone else's, for GPUs that several
/// jobs share (MPS, sharding): SM utilisation from NVML's per-process samples since the last
/// sample, memory from the running compute processes. `power_mw` is NVML's power reading
/// (a 1 s average on Ampere and newer, instant before); `power_instant_mw` the instant power
/// field where the driver has it: the cross-checks of the energy counter.
pub const GAUGES: [&str; 10] = aipm_recording::gpu_gauges::ALL;

impl NvmlSource {
    /// Open NVML (from `lib` or the system's `libnvidia-ml.so.1`) and the GPUs named by
    /// `selectors`: Slurm's GPU ids (`SLURM_JOB_GPUS`: `0,2`), which are device minor
    /// numbers (`/dev/nvidia0`, `/dev/nvidia2`), or UUIDs (`GPU-…`, `MIG-…`); every GPU of
    /// the node when `selectors` is `None`.
    pub fn open(
        lib: Option<&Path>,
        selectors: Option<&[String]>,
    ) -> Result<Found<NvmlSource>, NvmlFailed> {
        let nvml = match init(lib)? {
            Found::Present(nvml) => nvml,
            Found::Absent(why) => return Ok(Found::Absent(why)),
        };
        let selectors: Vec<Selector> = match selectors {
            Some(list) => list.iter().map(|s| Selector::parse(s)).collect(),
            None => (0..device_count(&nvml)?).map(Selector::Index).collect(),
        };
        if selectors.is_empty() {
            return Ok(Found::Absent("no GPU on this node".into()));
        }
        let device_files = if selectors.iter().any(|s| matches!(s, Selector::Minor(_))) {
            device_files(&nvml)?
        } else {
            Vec::new()
        };
        // One GPU lost, or answering UNKNOWN, costs only itself its recording.
        let (mut gpus, mut uuids, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for selector in selectors {
            match Self::open_one(&nvml, &selector, &device_files) {
                Ok((gpu, uuid)) => {
                    gpus.push(Slot::Open(Box::new(gpu)));
                    uuids.push(uuid);
                }
                Err(why) => lost.push(why),
            }
        }
        if gpus.is_empty() {
            return Err(NvmlFailed::NoGpu(lost));
        }
        let mut source = NvmlSource::new(Some(nvml), gpus, uuids);
        source.lost = lost.iter().map(ToString::to_string).collect();
        Ok(Found::Present(source))
    }

    /// Reopen the GPUs of a recording that another sampler began, by the UUIDs (`GPU-…`,
    /// `MIG-…`) it recorded as channels, in its order. A GPU that cannot be opened now, or
    /// every GPU when NVML cannot be loaded, becomes a placeholder with the same columns:
    /// the recording's columns cannot change, and the other sources and GPUs go on.
    pub fn reopen(lib: Option<&Path>, uuids: &[String]) -> NvmlSource {
        let nvml = match init(lib) {
            Ok(Found::Present(nvml)) => Ok(nvml),
            Ok(Found::Absent(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        };
        let gpus = uuids
            .iter()
            .map(|uuid| match &nvml {
                Ok(nvml) => match Self::open_one(nvml, &Selector::Uuid(uuid.clone()), &[]) {
                    Ok((gpu, _)) => Slot::Open(Box::new(gpu)),
                    Err(why) => Slot::Unopened(why.to_string()),
                },
                Err(why) => Slot::Unopened(format!("GPU {uuid}: {why}")),
            })
            .collect();
        NvmlSource::new(nvml.ok(), gpus, uuids.to_vec())
    }

    /// A recording's GPUs, none of them opened, each with `why`: the columns of a recording
    /// continued when NVML could not be opened in time.
    pub fn unopened_all(uuids: &[String], why: &str) -> NvmlSource {
        let gpus = uuids
            .iter()
            .map(|uuid| Slot::Unopened(format!("GPU {uuid}: {why}")))
            .collect();
        NvmlSource::new(None, gpus, uuids.to_vec())
    }

    fn new(nvml: Option<Nvml>, gpus: Vec<Slot>, channels: Vec<String>) -> NvmlSource {
        let gauges = channels
            .iter()
            .flat_map(|uuid| GAUGES.iter().map(move |g| format!("{uuid}:{g}")))
            .collect();
        NvmlSource {
            nvml,
            gpus,
            channels,
            gauges,
            lost: Vec::new(),
        }
    }

    /// The GPUs opened, with their channels.
    fn opened(&self) -> impl Iterator<Item = (&Gpu, &String)> {
        let gpus = self.gpus.iter().zip(&self.channels);
        gpus.filter_map(|(slot, uuid)| match slot {
            Slot::Open(gpu) => Some((&**gpu, uuid)),
            Slot::Unopened(_) => None,
        })
    }

    /// Why each GPU of a continued recording that could not be reopened was not (each
    /// naming its GPU), for the metadata.
    pub fn unopened(&self) -> Vec<&str> {
        let gpus = self.gpus.iter();
        gpus.filter_map(|slot| match slot {
            Slot::Open(_) => None,
            Slot::Unopened(why) => Some(why.as_str()),
        })
        .collect()
    }

    /// The GPUs that could not be opened when the source opened, each naming the GPU and
    /// why: they have no columns, the others are recorded.
    pub fn lost(&self) -> &[String] {
        &self.lost
    }

    /// Readings made another way than usual or given up, once per GPU (`GPU-…: memory from
    /// nvmlDeviceGetMemoryInfo …`), for the metadata.
    pub fn degraded(&self) -> Vec<String> {
        self.opened()
            .filter(|(g, _)| !g.notes.is_empty())
            .map(|(g, uuid)| format!("{uuid}: {}", g.notes.join(", ")))
            .collect()
    }

    /// A GPU by `selector`, and its channel name.
    fn open_one(
        nvml: &Nvml,
        selector: &Selector,
        device_files: &[DeviceFile],
    ) -> Result<(Gpu, String), GpuError> {
        let (device, by_index) = match selector {
            Selector::Index(index) => (nvml.device_by_index(*index), false),
            Selector::Minor(minor) => {
                let (index, by_index) = by_minor(device_files, *minor)?;
                (nvml.device_by_index(index), by_index)
            }
            Selector::Uuid(uuid) => (nvml.device_by_uuid(uuid.as_str()), false),
        };
        let device = device.map_err(GpuError::call(format!("GPU {selector}")))?;
        let uuid = device
            .uuid()
            .map_err(GpuError::call(format!("GPU {selector}: uuid")))?;
        // Drivers without MIG answer NotSupported: a full GPU.
        let (index, mig) = if device.mig_is_mig_device_handle().unwrap_or(false) {
            let parent = device
                .mig_parent_device()
                .map_err(GpuError::call(format!("MIG {uuid}: parent GPU")))?;
            let sms = |d: &nvml_wrapper::Device, what: &str| {
                d.attributes()
                    .map(|a| a.multiprocessor_count)
                    .map_err(GpuError::call(format!("MIG {uuid}: {what} attributes")))
            };
            // nvmlDeviceGetAttributes_v2 answers only for MIG handles on real NVML: the GPU's
            // SMs are those of its largest GPU-instance profile (98 of an A100's 108), its
            // own attributes only where they answer.
            let slice_sms = sms(&device, "slice")?;
            let gpu_sms = match nvml_ffi::largest_gpu_instance_sms(&parent) {
                Ok(Some(sms)) => sms,
                _ => sms(&parent, "GPU")?,
            };
            if gpu_sms == 0 || slice_sms > gpu_sms {
                return Err(GpuError::MigLargerThanGpu {
                    uuid,
                    slice_sms,
                    gpu_sms,
                });
            }
            let index = parent
                .index()
                .map_err(GpuError::call(format!("MIG {uuid}: parent index")))?;
            let parent_uuid = parent
                .uuid()
                .map_err(GpuError::call(format!("MIG {uuid}: parent uuid")))?;
            let mig = MigSlice {
                parent_uuid,
                fraction: f64::from(slice_sms) / f64::from(gpu_sms),
            };
            (index, Some(mig))
        } else {
            let index = device
                .index()
                .map_err(GpuError::call(format!("GPU {uuid}: index")))?;
            (index, None)
        };
        // What is read at each sample is read from the physical GPU (a slice's parent).
        let gpu_device = nvml
            .device_by_index(index)
            .map_err(GpuError::call(format!("GPU {uuid}")))?;
        let mut found = probe(&gpu_device, mig.is_some());
        // On a Grace Hopper module the counter and power are the module's: Grace CPU, its
        // memory and the GPU (Zeus PR #172).
        if gpu_device
            .name()
            .is_ok_and(|n| n.contains("GH200") || n.contains("Grace Hopper"))
        {
            found.notes.push(GRACE_HOPPER_NOTE.into());
        }
        // A whole GPU in MIG mode, named by its Slurm id or UUID: the job runs on a slice of
        // it, and NVML cannot say which from here (docs/nvml-real-drivers.md, row 10).
        if mig.is_none() && gpu_device.mig_mode().is_ok_and(|m| m.current == 1) {
            found.notes.push(MIG_SHARE_UNKNOWN_NOTE.into());
        }
        let no_power =
            found.unsupported.contains(&Query::Power) || found.missing.contains(&Query::Power);
        // Other errors are the samples' to count: a GPU answering UNKNOWN once at open is
        // still read.
        let counter = gpu_device.total_energy_consumption();
        if let (Err(NvmlError::FailedToLoadSymbol(_)), false) = (&counter, no_power) {
            found.notes.push(
                "energy integrated from power (no nvmlDeviceGetTotalEnergyConsumption in this NVML)"
                    .into(),
            );
        }
        let integrated = match counter {
            Err(NvmlError::NotSupported) if no_power => {
                found.unsupported.insert(0, Query::Energy);
                None
            }
            Err(NvmlError::FailedToLoadSymbol(_)) if no_power => {
                found.missing.insert(0, Query::Energy);
                None
            }
            Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => Some(Integrated {
                energy_uj: 0.0,
                last: None,
            }),
            _ => None,
        };
        let gpu = Gpu {
            index,
            by_index,
            mig,
            last_seen_us: None,
            last_sm: None,
            integrated,
            unsupported: found.unsupported,
            missing: found.missing,
            processes: found.processes,
            memory_v1: found.memory_v1,
            notes: found.notes,
            taken: Taken::default(),
        };
        Ok((gpu, uuid))
    }

    /// MIG slices and the share of their GPU each is given, for the metadata.
    pub fn mig_slices(&self) -> Vec<String> {
        self.opened()
            .filter_map(|(g, uuid)| {
                let mig = g.mig.as_ref()?;
                Some(format!(
                    "{uuid}: {:.3} of {}",
                    mig.fraction, mig.parent_uuid
                ))
            })
            .collect()
    }

    /// GPUs whose energy is integrated from power because they lack the counter.
    pub fn integrated_channels(&self) -> Vec<&str> {
        self.opened()
            .filter(|(g, _)| g.integrated.is_some())
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// GPUs named by a Slurm id that were taken by NVML index for want of a minor number.
    pub fn taken_by_index(&self) -> Vec<&str> {
        self.opened()
            .filter(|(g, _)| g.by_index)
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// What each GPU does not support and is therefore never read (`GPU-…: utilisation`),
    /// for the metadata.
    pub fn unsupported(&self) -> Vec<String> {
        self.opened()
            .filter(|(g, _)| !g.unsupported.is_empty())
            .map(|(g, uuid)| {
                let names: Vec<&str> = g.unsupported.iter().map(|q| q.name()).collect();
                format!("{uuid}: {}", names.join(", "))
            })
            .collect()
    }
}

/// NVML, loaded from `lib` or the system's `libnvidia-ml.so.1`; absent where there is no
/// library or no driver.
fn init(lib: Option<&Path>) -> Result<Found<Nvml>, NvmlFailed> {
    let mut builder = Nvml::builder();
    if let Some(lib) = lib {
        builder.lib_path(lib.as_os_str());
    }
    match builder.init() {
        Ok(nvml) => Ok(Found::Present(nvml)),
        Err(NvmlError::LibloadingError(e)) => Ok(Found::Absent(format!("no NVML library ({e})"))),
        Err(NvmlError::DriverNotLoaded) => Ok(Found::Absent("NVIDIA driver not loaded".into())),
        Err(e) => Err(NvmlFailed::Init(e)),
    }
}

/// How the job names a GPU.
enum Selector {
    /// NVML's index: every GPU of the node, enumerated.
    Index(u32),
    /// A Slurm GPU id: the minor number of the GPU's device file, `/dev/nvidia<minor>`, which
    /// is what Slurm's gres files name (its AutoDetect=nvml writes them from
    /// `nvmlDeviceGetMinorNumber`). NVML's index is PCI bus order and may differ.
    Minor(u32),
    /// `GPU-…` or `MIG-…`.
    Uuid(String),
}

impl Selector {
    fn parse(selector: &str) -> Selector {
        match selector.parse() {
            Ok(minor) => Selector::Minor(minor),
            Err(_) => Selector::Uuid(selector.to_string()),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Index(n) | Selector::Minor(n) => write!(f, "{n}"),
            Selector::Uuid(uuid) => f.write_str(uuid),
        }
    }
}

fn device_count(nvml: &Nvml) -> Result<u32, NvmlFailed> {
    nvml.device_count().map_err(NvmlFailed::Count)
}

/// One GPU of the node: its NVML index and the minor number of its device file.
struct DeviceFile {
    index: u32,
    minor: Result<u32, NvmlError>,
}

fn device_files(nvml: &Nvml) -> Result<Vec<DeviceFile>, NvmlFailed> {
    let files = (0..device_count(nvml)?).map(|index| DeviceFile {
        index,
        minor: nvml.device_by_index(index).and_then(|d| d.minor_number()),
    });
    Ok(files.collect())
}

/// The NVML index of the GPU whose device file is `/dev/nvidia<minor>`, and whether it was
/// taken by index instead: a GPU without a minor number is taken as numbered by its index,
/// as Slurm's ids were read before. Minor numbers are unique, so a GPU whose minor cannot
/// be read is not the one when another has it.
fn by_minor(files: &[DeviceFile], minor: u32) -> Result<(u32, bool), GpuError> {
    if let Some(file) = files
        .iter()
        .find(|f| matches!(f.minor, Ok(m) if m == minor))
    {
        return Ok((file.index, false));
    }
    let no_minor = |f: &&DeviceFile| matches!(f.minor, Err(NvmlError::NotSupported));
    if let Some(file) = files.iter().filter(no_minor).find(|f| f.index == minor) {
        return Ok((file.index, true));
    }
    let found: Vec<String> = files
        .iter()
        .map(|f| match &f.minor {
            Ok(m) => format!("{m} (NVML index {})", f.index),
            Err(e) => format!("none at NVML index {} ({e})", f.index),
        })
        .collect();
    Err(GpuError::NoSuchMinor {
        minor,
        found: match found.is_empty() {
            true => "none".to_string(),
            false => found.join(", "),
        },
    })
}

/// What a GPU answers when the source opens.
#[derive(Default)]
struct Probe {
    unsupported: Vec<Query>,
    missing: Vec<Query>,
    processes: Option<ProcessList>,
    memory_v1: bool,
    notes: Vec<String>,
}

/// The queries `device` answers NotSupported to, or whose entry point this NVML lacks, of
/// those a sample makes (only power for a MIG slice's GPU); the process list's entry point
/// and the memory call to make. Other errors are left to the samples, which count them.
fn probe(device: &nvml_wrapper::Device, slice: bool) -> Probe {
    let mut found = Probe::default();
    let check = |found: &mut Probe, query: Query, result: Result<(), NvmlError>| match result {
        Err(NvmlError::NotSupported) => found.unsupported.push(query),
        Err(NvmlError::FailedToLoadSymbol(_)) => {
            found.missing.push(query);
            found
                .notes
                .push(format!("no {} in this NVML", query.name()));
        }
        _ => {}
    };
    check(&mut found, Query::Power, device.power_usage().map(drop));
    if slice {
        return found;
    }
    check(
        &mut found,
        Query::Utilisation,
        device.utilization_rates().map(drop),
    );
    // Drivers without `nvmlDeviceGetMemoryInfo_v2` have the v1 call, whose `used` includes
    // the memory the driver reserves.
    match device.memory_info() {
        // FunctionNotFound: exported but not implemented, as 510.39's _v2 answered some.
        Err(NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound) => {
            found.memory_v1 = true;
            found.notes.push(
                "memory from nvmlDeviceGetMemoryInfo (no _v2 in this NVML: used includes reserved)"
                    .into(),
            );
            check(
                &mut found,
                Query::Memory,
                nvml_ffi::memory_v1(device).map(drop),
            );
        }
        result => check(&mut found, Query::Memory, result.map(drop)),
    }
    match ProcessList::find(device) {
        Ok(list) => {
            if list.symbol() != "nvmlDeviceGetComputeRunningProcesses_v3" {
                found
                    .notes
                    .push(format!("processes from {}", list.symbol()));
            }
            if let Some(bytes) = list.entry_bytes().filter(|&b| b != 24) {
                found
                    .notes
                    .push(format!("process entries of {bytes} bytes"));
            }
            found.processes = Some(list);
        }
        Err((_, nvml_processes::ReadError::Nvml(NvmlError::NotSupported))) => {
            found.unsupported.push(Query::Processes)
        }
        Err((_, nvml_processes::ReadError::Nvml(NvmlError::FailedToLoadSymbol(_)))) => {
            found.missing.push(Query::Processes);
            found.notes.push("no process list in this NVML".into());
        }
        Err((_, nvml_processes::ReadError::Refused(why))) => {
            found.missing.push(Query::Processes);
            found.notes.push(format!("process list not read ({why})"));
        }
        Err((list, nvml_processes::ReadError::Nvml(_))) => found.processes = Some(list),
    }
    // NotFound: no sample yet, which a GPU that keeps them answers.
    check(
        &mut found,
        Query::ProcessUtilisation,
        device.process_utilization_stats(None).map(drop),
    );
    check(
        &mut found,
        Query::InstantPower,
        instant_power_mw(device).map(drop),
    );
    found
}

impl Gpu {
    /// One sample of this GPU from `device` (its own, or a slice's parent): the energy in
    /// µJ, returned; the gauges, kept in `taken` for `read_gauges`.
    fn take(
        &mut self,
        device: &nvml_wrapper::Device,
        uuid: &str,
        errors: &mut Vec<String>,
    ) -> Option<u64> {
        let supports = |query| !self.unsupported.contains(&query) && !self.missing.contains(&query);
        let mut ask = |query: Query, value: Result<u64, NvmlError>| match value {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("GPU {uuid}: {}: {e}", query.name()));
                None
            }
        };
        // A slice's share of the GPU's energy and power.
        let share = |v: u64| match &self.mig {
            Some(mig) => (v as f64 * mig.fraction) as u64,
            None => v,
        };
        let taken = &mut self.taken;
        *taken = Taken::default();
        let counter_uj = (self.integrated.is_none() && supports(Query::Energy))
            .then(|| {
                let mj = device.total_energy_consumption();
                ask(Query::Energy, mj.map(|mj| mj * 1000))
            })
            .flatten();
        // One power reading serves the gauge and, without the counter, the energy.
        let power_mw = supports(Query::Power)
            .then(|| ask(Query::Power, device.power_usage().map(u64::from)))
            .flatten();
        taken.power_mw = power_mw.map(share);
        let energy_uj = match &mut self.integrated {
            None => counter_uj,
            Some(integrated) => power_mw.map(|mw| integrated.add(mw)),
        };
        if self.mig.is_some() {
            // NVML has no utilisation or per-process view of a slice here.
            return energy_uj.map(share);
        }
        if supports(Query::Utilisation) {
            let util = device.utilization_rates().map(|u| u64::from(u.gpu));
            taken.util_pct = ask(Query::Utilisation, util);
        }
        if supports(Query::Memory) {
            let used = match self.memory_v1 {
                true => nvml_ffi::memory_v1(device).map(|m| m.used),
                false => device.memory_info().map(|m| m.used),
            };
            taken.mem_used_bytes = ask(Query::Memory, used);
        }
        if let Some(list) = &mut self.processes {
            match list.read(device) {
                Ok(nvml_processes::Read::Listed(processes)) => taken.processes = Some(processes),
                Ok(nvml_processes::Read::Unsettled) => {}
                Err(nvml_processes::ReadError::Nvml(e)) => {
                    errors.push(format!("GPU {uuid}: processes: {e}"))
                }
                // Named once, and never read again.
                Err(nvml_processes::ReadError::Refused(why)) => {
                    errors.push(format!("GPU {uuid}: processes: not read any more: {why}"));
                    self.notes.push(format!("process list not read ({why})"));
                    self.processes = None;
                }
            }
        }
        if supports(Query::ProcessUtilisation) {
            // Only the compute processes listed now: samples of exited pids are left out.
            let running = |pid: &u32| {
                let list = taken.processes.as_ref();
                list.is_none_or(|list| list.iter().any(|(p, _)| p == pid))
            };
            match device.process_utilization_stats(self.last_seen_us) {
                Ok(samples) => {
                    let fresh = fresh_sm(&samples, self.last_seen_us);
                    let newest = samples.iter().map(|s| s.timestamp).max();
                    self.last_seen_us = self.last_seen_us.max(newest);
                    let list: Vec<_> = fresh.into_iter().filter(|(p, _)| running(p)).collect();
                    self.last_sm = Some((Instant::now(), list.clone()));
                    taken.sm = Some(list);
                }
                // No sample newer than the last one seen. The driver samples every 1/6 to
                // 1 s: within that of the last new samples, they still stand; later, no
                // kernel ran.
                Err(NvmlError::NotFound) => {
                    let recent = self
                        .last_sm
                        .as_ref()
                        .filter(|(at, _)| at.elapsed() < SM_SAMPLES_STAND);
                    let list =
                        recent.map(|(_, list)| list.iter().copied().filter(|(p, _)| running(p)));
                    taken.sm = Some(list.map(Iterator::collect).unwrap_or_default());
                }
                Err(e) => errors.push(format!("GPU {uuid}: process utilisation: {e}")),
            }
        }
        // Not counted as an error when it fails: the counter's cross-check only.
        if supports(Query::InstantPower) {
            taken.power_instant_mw = instant_power_mw(device).ok().flatten();
        }
        energy_uj
    }
}

impl EnergySource for NvmlSource {
    fn name(&self) -> &'static str {
        aipm_recording::source::NVML
    }

    fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The counter is 64-bit and never wraps; a lower value means a driver reload.
    fn ranges(&self) -> Vec<Option<u64>> {
        vec![None; self.gpus.len()]
    }

    /// NVML's counter is the energy "since the driver was last reloaded": after a reload its
    /// value is energy since then.
    fn restarts_at_zero(&self) -> bool {
        true
    }

    /// Energy and every gauge at once: one device lookup per GPU and sample, and gauges
    /// of the same moment as the energy.
    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>) {
        for (slot, uuid) in self.gpus.iter_mut().zip(&self.channels) {
            let gpu = match slot {
                Slot::Open(gpu) => gpu,
                Slot::Unopened(why) => {
                    errors.push(format!("{why} (not opened when this sampler took over)"));
                    out.push(None);
                    continue;
                }
            };
            // Without NVML every slot is a placeholder: never `Uninitialized` here.
            let device = self.nvml.as_ref().ok_or(NvmlError::Uninitialized);
            let energy_uj = match device.and_then(|nvml| nvml.device_by_index(gpu.index)) {
                Ok(device) => gpu.take(&device, uuid, errors),
                Err(e) => {
                    errors.push(format!("GPU {uuid}: {e}"));
                    gpu.taken = Taken::default();
                    None
                }
            };
            out.push(energy_uj);
        }
    }

    fn gauges(&self) -> &[String] {
        &self.gauges
    }

    /// Energy integrated from power goes on from the last row: its raw value, and its power
    /// and time as the last reading, so that the time between the two samplers is counted
    /// as a counter would count it. A slice's row holds its share, not its GPU's energy: a
    /// slice's integration starts afresh (one period is lost).
    fn resume(&mut self, time_unix_ms: u64, value: &dyn Fn(&str) -> Option<u64>) {
        let age = Duration::from_millis(now_unix_ms().saturating_sub(time_unix_ms));
        let then = Instant::now().checked_sub(age);
        for (slot, uuid) in self.gpus.iter_mut().zip(&self.channels) {
            let Slot::Open(gpu) = slot else { continue };
            let (None, Some(integrated)) = (&gpu.mig, &mut gpu.integrated) else {
                continue;
            };
            let Some(raw) = value(&samples::raw_column(uuid)) else {
                continue;
            };
            integrated.energy_uj = raw as f64;
            integrated.last = then.zip(value(&aipm_recording::gpu_gauges::column(
                uuid,
                aipm_recording::gpu_gauges::POWER_MW,
            )));
        }
    }

    /// The gauges taken by the last `read`; the compute processes split by the job's pids,
    /// which are looked for only if some GPU lists a process.
    fn read_gauges(
        &mut self,
        out: &mut Vec<Option<u64>>,
        _errors: &mut Vec<String>,
        job_pids: &mut JobPids,
    ) {
        for slot in &self.gpus {
            let taken = match slot {
                Slot::Open(gpu) => &gpu.taken,
                Slot::Unopened(_) => &NOTHING_TAKEN,
            };
            out.extend([taken.power_mw, taken.util_pct, taken.mem_used_bytes]);
            // A process whose memory the driver does not know leaves its side's sum unknown,
            // never 0.
            match split(taken.processes.as_deref(), job_pids) {
                Some((job, other)) => out.extend([Some(job.0), Some(other.0), job.1, other.1]),
                None => out.extend([None; 4]),
            }
            let sm = taken.sm.as_ref().map(|list| {
                let known = list.iter().map(|&(pid, sm)| (pid, Some(sm)));
                known.collect::<Vec<_>>()
            });
            match split(sm.as_deref(), job_pids) {
                Some((job, other)) => out.extend([job.1, other.1]),
                None => out.extend([None; 2]),
            }
            out.push(taken.power_instant_mw);
        }
    }
}

/// One side of a split: how many, and the sum of their values, `None` if one is unknown.
type Side = (u64, Option<u64>);

/// How long per-process SM samples stand for the samples after them that find nothing
/// newer: twice the slowest sampling period of the driver (1 s, `man nvidia-smi`).
const SM_SAMPLES_STAND: Duration = Duration::from_secs(2);

/// The SM % of each process from NVML's samples: the newest per pid, leaving out junk that
/// drivers have been seen to return (pid 0, a zero or already seen timestamp, more than
/// 100 %: nvtop #110, go-nvml #11, DCGM #83).
fn fresh_sm(
    samples: &[nvml_wrapper::struct_wrappers::device::ProcessUtilizationSample],
    last_seen_us: Option<u64>,
) -> Vec<(u32, u64)> {
    let mut newest: Vec<(u32, u64, u64)> = Vec::new();
    for s in samples {
        let seen = last_seen_us.is_some_and(|t| s.timestamp <= t);
        if s.pid == 0 || s.timestamp == 0 || seen || s.sm_util > 100 {
            continue;
        }
        match newest.iter_mut().find(|(pid, _, _)| *pid == s.pid) {
            Some(entry) if entry.1 >= s.timestamp => {}
            Some(entry) => *entry = (s.pid, s.timestamp, u64::from(s.sm_util)),
            None => newest.push((s.pid, s.timestamp, u64::from(s.sm_util))),
        }
    }
    newest.into_iter().map(|(pid, _, sm)| (pid, sm)).collect()
}

/// `(pid, value)` pairs split into the job's and the others' `(count, sum of values)`;
/// `None` when the list or, for a list that is not empty, the job's pids are unknown.
fn split(list: Option<&[(u32, Option<u64>)]>, job_pids: &mut JobPids) -> Option<(Side, Side)> {
    let list = list?;
    if list.is_empty() {
        return job_pids.known().then_some(((0, Some(0)), (0, Some(0))));
    }
    let pids = job_pids.get()?;
    let (mut job, mut other) = ((0, Some(0)), (0, Some(0)));
    for &(pid, value) in list {
        let side: &mut Side = match pids.binary_search(&pid) {
            Ok(_) => &mut job,
            Err(_) => &mut other,
        };
        side.0 += 1;
        side.1 = side.1.zip(value).map(|(sum, v)| sum.saturating_add(v));
    }
    Some((job, other))
}

/// NVML's instant power field; `None` for a value of an unexpected type.
fn instant_power_mw(device: &nvml_wrapper::Device) -> Result<Option<u64>, NvmlError> {
    let samples = device.field_values_for(&[FieldId(NVML_FI_DEV_POWER_INSTANT)])?;
    match samples.into_iter().next() {
        Some(Ok(FieldValueSample { value, .. })) => match value? {
            SampleValue::U32(mw) => Ok(Some(u64::from(mw))),
            SampleValue::U64(mw) => Ok(Some(mw)),
            _ => Ok(None),
        },
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

impl Integrated {
    /// Add the trapezoid since the last power reading; returns the energy so far in µJ.
    fn add(&mut self, power_mw: u64) -> u64 {
        let now = Instant::now();
        if let Some((then, last_mw)) = self.last {
            let seconds = now.duration_since(then).as_secs_f64();
            self.energy_uj += (power_mw as f64 + last_mw as f64) / 2.0 * 1000.0 * seconds;
        }
        self.last = Some((now, power_mw));
        self.energy_uj as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_gpus_are_found_in_the_sources_detail_and_only_there() {
        let detail = format!(
            "NVML from /x; not supported, left empty: GPU-c: utilisation; read otherwise: \
             GPU-a: process entries of 32 bytes, {GRACE_HOPPER_NOTE}; MIG-d: no power in this \
             NVML; GPU-b: {MIG_SHARE_UNKNOWN_NOTE}; \
             not opened, not recorded: GPU 3: {GRACE_HOPPER_NOTE}"
        );
        assert_eq!(noted_gpus(&detail, GRACE_HOPPER_NOTE), ["GPU-a"]);
        assert_eq!(noted_gpus(&detail, MIG_SHARE_UNKNOWN_NOTE), ["GPU-b"]);
        assert!(noted_gpus("NVML", GRACE_HOPPER_NOTE).is_empty());
    }
}
