//! NVIDIA GPUs through NVML (`nvml-wrapper`), loaded by path when the admin configures one.
//!
//! Per GPU of the job: the total-energy counter (Volta and newer, mJ since the driver was
//! loaded) is the energy of record; power, utilisation and memory are gauges. On GPUs
//! without the counter, energy is integrated from power and the source says so.
//!
//! Each query is tried once per GPU when the source opens; one the GPU answers NotSupported
//! to is never made again, its column stays empty and the metadata says so, rather than
//! counting a read error at every sample.
//!
//! A MIG slice (`MIG-…` in the job's CUDA_VISIBLE_DEVICES) has no energy or power of its own
//! in NVML; it is given its parent GPU's energy times its share of the GPU's streaming
//! multiprocessors (a 1g slice of an A100 gets 14/98), as CEEMS does.
//! See: docs.nvidia.com/deploy/nvml-api (nvmlDeviceGetTotalEnergyConsumption).

use std::path::Path;
use std::time::Instant;

use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;
use nvml_wrapper::Nvml;

use super::{EnergySource, Found};

pub struct NvmlSource {
    nvml: Nvml,
    /// The job's processes, refreshed before each sample; `None` when unknown.
    job_pids: Option<Vec<u32>>,
    gpus: Vec<Gpu>,
    channels: Vec<String>,
    gauges: Vec<String>,
}

struct Gpu {
    /// The physical GPU's index (the parent's, for a MIG slice).
    index: u32,
    mig: Option<MigSlice>,
    /// Timestamp (µs) of the newest per-process utilisation sample already counted.
    last_seen_us: Option<u64>,
    /// Energy integrated from power, for GPUs without the energy counter.
    integrated: Option<Integrated>,
    /// Queries the GPU answered NotSupported when the source opened: never made again.
    unsupported: Vec<Query>,
}

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
    last: Option<(Instant, u32)>,
}

/// The gauges recorded for each GPU, after its UUID. The `job_`/`other_` pairs split the
/// GPU's compute processes between the job's and everyone else's, for GPUs that several
/// jobs share (MPS, sharding): SM utilisation from NVML's per-process samples since the last
/// sample, memory from the running compute processes. `power_mw` is NVML's power reading
/// (a 1 s average on Ampere and newer, instant before); `power_instant_mw` the instant power
/// field where the driver has it: the cross-checks of the energy counter.
pub const GAUGES: [&str; 10] = [
    "power_mw",
    "util_pct",
    "mem_used_bytes",
    "job_procs",
    "other_procs",
    "job_mem_bytes",
    "other_mem_bytes",
    "job_sm_pct",
    "other_sm_pct",
    "power_instant_mw",
];

impl NvmlSource {
    /// Open NVML (from `lib` or the system's `libnvidia-ml.so.1`) and the GPUs named by
    /// `selectors`: indices (`SLURM_JOB_GPUS`: `0,2`) or UUIDs (`GPU-…`, `MIG-…`); every GPU
    /// of the node when `selectors` is `None`.
    pub fn open(
        lib: Option<&Path>,
        selectors: Option<&[String]>,
    ) -> Result<Found<NvmlSource>, String> {
        let mut builder = Nvml::builder();
        if let Some(lib) = lib {
            builder.lib_path(lib.as_os_str());
        }
        let nvml = match builder.init() {
            Ok(nvml) => nvml,
            Err(NvmlError::LibloadingError(e)) => {
                return Ok(Found::Absent(format!("no NVML library ({e})")))
            }
            Err(NvmlError::DriverNotLoaded) => {
                return Ok(Found::Absent("NVIDIA driver not loaded".into()))
            }
            Err(e) => return Err(format!("nvmlInit: {e}")),
        };
        let selectors: Vec<String> = match selectors {
            Some(list) => list.to_vec(),
            None => {
                let count = nvml
                    .device_count()
                    .map_err(|e| format!("nvmlDeviceGetCount: {e}"))?;
                (0..count).map(|i| i.to_string()).collect()
            }
        };
        if selectors.is_empty() {
            return Ok(Found::Absent("no GPU on this node".into()));
        }
        let mut source = NvmlSource {
            nvml,
            job_pids: None,
            gpus: Vec::new(),
            channels: Vec::new(),
            gauges: Vec::new(),
        };
        for selector in selectors {
            let (gpu, uuid) = source.open_one(&selector)?;
            source
                .gauges
                .extend(GAUGES.iter().map(|g| format!("{uuid}:{g}")));
            source.channels.push(uuid);
            source.gpus.push(gpu);
        }
        Ok(Found::Present(source))
    }

    /// A GPU by index (`SLURM_JOB_GPUS`) or UUID (`GPU-…`, `MIG-…`), and its channel name.
    fn open_one(&self, selector: &str) -> Result<(Gpu, String), String> {
        let device = match selector.parse::<u32>() {
            Ok(index) => self.nvml.device_by_index(index),
            Err(_) => self.nvml.device_by_uuid(selector),
        }
        .map_err(|e| format!("GPU {selector}: {e}"))?;
        let uuid = device
            .uuid()
            .map_err(|e| format!("GPU {selector}: uuid: {e}"))?;
        // Drivers without MIG answer NotSupported: a full GPU.
        let (index, mig) = if device.mig_is_mig_device_handle().unwrap_or(false) {
            let parent = device
                .mig_parent_device()
                .map_err(|e| format!("MIG {uuid}: parent GPU: {e}"))?;
            let sms = |d: &nvml_wrapper::Device, what: &str| {
                d.attributes()
                    .map(|a| a.multiprocessor_count)
                    .map_err(|e| format!("MIG {uuid}: {what} attributes: {e}"))
            };
            let (slice_sms, gpu_sms) = (sms(&device, "slice")?, sms(&parent, "GPU")?);
            if gpu_sms == 0 || slice_sms > gpu_sms {
                return Err(format!(
                    "MIG {uuid}: {slice_sms} SMs of a GPU with {gpu_sms}"
                ));
            }
            let index = parent
                .index()
                .map_err(|e| format!("MIG {uuid}: parent index: {e}"))?;
            let parent_uuid = parent
                .uuid()
                .map_err(|e| format!("MIG {uuid}: parent uuid: {e}"))?;
            let mig = MigSlice {
                parent_uuid,
                fraction: f64::from(slice_sms) / f64::from(gpu_sms),
            };
            (index, Some(mig))
        } else {
            let index = device
                .index()
                .map_err(|e| format!("GPU {uuid}: index: {e}"))?;
            (index, None)
        };
        // What is read at each sample is read from the physical GPU (a slice's parent).
        let gpu_device = self
            .nvml
            .device_by_index(index)
            .map_err(|e| format!("GPU {uuid}: {e}"))?;
        let mut unsupported = probe(&gpu_device, mig.is_some());
        let integrated = match gpu_device.total_energy_consumption() {
            Ok(_) => None,
            Err(NvmlError::NotSupported) if unsupported.contains(&Query::Power) => {
                unsupported.insert(0, Query::Energy);
                None
            }
            Err(NvmlError::NotSupported) => Some(Integrated {
                energy_uj: 0.0,
                last: None,
            }),
            Err(e) => return Err(format!("GPU {uuid}: energy counter: {e}")),
        };
        let gpu = Gpu {
            index,
            mig,
            last_seen_us: None,
            integrated,
            unsupported,
        };
        Ok((gpu, uuid))
    }

    /// MIG slices and the share of their GPU each is given, for the metadata.
    pub fn mig_slices(&self) -> Vec<String> {
        self.gpus
            .iter()
            .zip(&self.channels)
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
        self.gpus
            .iter()
            .zip(&self.channels)
            .filter(|(g, _)| g.integrated.is_some())
            .map(|(_, c)| c.as_str())
            .collect()
    }

    /// What each GPU does not support and is therefore never read (`GPU-…: utilisation`),
    /// for the metadata.
    pub fn unsupported(&self) -> Vec<String> {
        self.gpus
            .iter()
            .zip(&self.channels)
            .filter(|(g, _)| !g.unsupported.is_empty())
            .map(|(g, uuid)| {
                let names: Vec<&str> = g.unsupported.iter().map(|q| q.name()).collect();
                format!("{uuid}: {}", names.join(", "))
            })
            .collect()
    }
}

/// The queries `device` answers NotSupported to, of those a sample makes (only power for a
/// MIG slice's GPU). Other errors are left to the samples, which count them.
fn probe(device: &nvml_wrapper::Device, slice: bool) -> Vec<Query> {
    let mut unsupported = Vec::new();
    let mut check = |query: Query, result: Result<(), NvmlError>| {
        if matches!(result, Err(NvmlError::NotSupported)) {
            unsupported.push(query);
        }
    };
    check(Query::Power, device.power_usage().map(drop));
    if slice {
        return unsupported;
    }
    check(Query::Utilisation, device.utilization_rates().map(drop));
    check(Query::Memory, device.memory_info().map(drop));
    check(
        Query::Processes,
        device.running_compute_processes().map(drop),
    );
    // NotFound: no sample yet, which a GPU that keeps them answers.
    check(
        Query::ProcessUtilisation,
        device.process_utilization_stats(None).map(drop),
    );
    check(Query::InstantPower, instant_power_mw(device).map(drop));
    unsupported
}

impl Gpu {
    fn supports(&self, query: Query) -> bool {
        !self.unsupported.contains(&query)
    }
}

impl EnergySource for NvmlSource {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The counter is 64-bit and never wraps; a lower value means a driver reload.
    fn ranges(&self) -> Vec<Option<u64>> {
        vec![None; self.gpus.len()]
    }

    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>) {
        for (gpu, uuid) in self.gpus.iter_mut().zip(&self.channels) {
            if !gpu.supports(Query::Energy) {
                out.push(None);
                continue;
            }
            let value =
                self.nvml
                    .device_by_index(gpu.index)
                    .and_then(|device| match &mut gpu.integrated {
                        None => device.total_energy_consumption().map(|mj| mj * 1000),
                        Some(integrated) => device.power_usage().map(|mw| integrated.add(mw)),
                    });
            // A MIG slice gets its share of the GPU's counter.
            let value = value.map(|uj| match &gpu.mig {
                Some(mig) => (uj as f64 * mig.fraction) as u64,
                None => uj,
            });
            match value {
                Ok(uj) => out.push(Some(uj)),
                Err(e) => {
                    errors.push(format!("GPU {uuid}: energy: {e}"));
                    out.push(None);
                }
            }
        }
    }

    fn gauges(&self) -> &[String] {
        &self.gauges
    }

    fn wants_job_pids(&self) -> bool {
        true
    }

    fn set_job_pids(&mut self, pids: Option<Vec<u32>>) {
        self.job_pids = pids.map(|mut p| {
            p.sort_unstable();
            p
        });
    }

    fn read_gauges(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>) {
        let job_pids = self.job_pids.as_deref();
        for (gpu, uuid) in self.gpus.iter_mut().zip(&self.channels) {
            let device = match self.nvml.device_by_index(gpu.index) {
                Ok(device) => device,
                Err(e) => {
                    errors.push(format!("GPU {uuid}: {e}"));
                    out.extend([None; GAUGES.len()]);
                    continue;
                }
            };
            // A query the GPU does not support leaves its column empty, silently.
            let supports = |query| !gpu.unsupported.contains(&query);
            let mut gauge = |query: Query, read: &dyn Fn() -> Result<u64, NvmlError>| {
                if !supports(query) {
                    out.push(None);
                    return;
                }
                match read() {
                    Ok(v) => out.push(Some(v)),
                    Err(e) => {
                        errors.push(format!("GPU {uuid}: {}: {e}", query.name()));
                        out.push(None);
                    }
                }
            };
            if let Some(mig) = &gpu.mig {
                // NVML has no power, utilisation or per-process view of a slice here: the
                // slice's share of the GPU's power, and the rest unknown.
                gauge(Query::Power, &|| {
                    device
                        .power_usage()
                        .map(|mw| (f64::from(mw) * mig.fraction) as u64)
                });
                out.extend([None; GAUGES.len() - 1]);
                continue;
            }
            gauge(Query::Power, &|| device.power_usage().map(u64::from));
            gauge(Query::Utilisation, &|| {
                device.utilization_rates().map(|u| u64::from(u.gpu))
            });
            gauge(Query::Memory, &|| device.memory_info().map(|m| m.used));

            let is_job = |pid: u32| job_pids.map(|p| p.binary_search(&pid).is_ok());
            let mut split = [None; 4];
            let processes = supports(Query::Processes).then(|| device.running_compute_processes());
            match processes {
                None => {}
                Some(Ok(processes)) => {
                    let (mut job, mut other) = ((0, 0), (0, 0));
                    for p in &processes {
                        let mem = match p.used_gpu_memory {
                            UsedGpuMemory::Used(bytes) => bytes,
                            UsedGpuMemory::Unavailable => 0,
                        };
                        let side = if is_job(p.pid).unwrap_or(false) {
                            &mut job
                        } else {
                            &mut other
                        };
                        *side = (side.0 + 1, side.1 + mem);
                    }
                    if job_pids.is_some() {
                        split = [Some(job.0), Some(other.0), Some(job.1), Some(other.1)];
                    }
                }
                Some(Err(e)) => errors.push(format!("GPU {uuid}: processes: {e}")),
            }
            out.extend(split);
            let mut sm = [None; 2];
            let samples = supports(Query::ProcessUtilisation)
                .then(|| device.process_utilization_stats(gpu.last_seen_us));
            match samples {
                None => {}
                Some(Ok(samples)) => {
                    let (mut job, mut other) = (0u64, 0u64);
                    for s in &samples {
                        gpu.last_seen_us =
                            Some(gpu.last_seen_us.map_or(s.timestamp, |t| t.max(s.timestamp)));
                        let side = if is_job(s.pid).unwrap_or(false) {
                            &mut job
                        } else {
                            &mut other
                        };
                        *side += u64::from(s.sm_util);
                    }
                    if job_pids.is_some() {
                        sm = [Some(job), Some(other)];
                    }
                }
                // NVML's answer when no sample is newer than the last one seen: no kernel ran.
                Some(Err(NvmlError::NotFound)) if job_pids.is_some() => sm = [Some(0), Some(0)],
                Some(Err(NvmlError::NotFound)) => {}
                Some(Err(e)) => errors.push(format!("GPU {uuid}: process utilisation: {e}")),
            }
            out.extend(sm);
            // Not counted as an error when it fails: the counter's cross-check only.
            let instant = supports(Query::InstantPower)
                .then(|| instant_power_mw(&device).ok().flatten())
                .flatten();
            out.push(instant);
        }
    }
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
    fn add(&mut self, power_mw: u32) -> u64 {
        let now = Instant::now();
        if let Some((then, last_mw)) = self.last {
            let seconds = now.duration_since(then).as_secs_f64();
            self.energy_uj += (f64::from(power_mw) + f64::from(last_mw)) / 2.0 * 1000.0 * seconds;
        }
        self.last = Some((now, power_mw));
        self.energy_uj as u64
    }
}
