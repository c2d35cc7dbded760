//! The checks to run first on a real GPU node (issue 17): what this node's driver does where
//! drivers differ, printed in one go, so that the first real GPU run answers them in one
//! command (`cargo run -p aipm-sampler --example gpu_probe`, or `bench/gpu-probe.sh` as
//! root, as a user and inside a job).
//!
//! 1. Open: who asks, how long `nvmlInit` and each GPU's first calls take (1–3 s per GPU
//!    without persistence mode), which GPUs answer and with what (`NO_PERMISSION` outside
//!    the job's device cgroup).
//! 2. Process list: the entry point, the entry size the driver writes (24 or 32 bytes: R535),
//!    the pids and whether each is a live process here, memory not available.
//! 3. Energy counter: its smallest step, how often it moves, and its energy against
//!    integrated power over the same time.
//! 4. Process utilisation: how often new samples come, junk among them.
//! 5. MIG: mode, slices and their SMs, the largest GPU-instance profile's SMs, and whether
//!    the whole GPU answers attributes and utilisation.
//!
//! Nothing here writes memory it does not own: the process list goes through
//! `nvml_ffi` like the sampler's.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::nvml_ffi;
use super::nvml_processes::{ProcessList, Read, ReadError};

/// How long the timed checks run.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTimes {
    /// Energy counter and power, read every 5 ms.
    pub counter: Duration,
    /// Process utilisation, asked every 50 ms.
    pub utilisation: Duration,
}

impl Default for ProbeTimes {
    fn default() -> ProbeTimes {
        ProbeTimes {
            counter: Duration::from_secs(3),
            utilisation: Duration::from_secs(5),
        }
    }
}

/// Run every check on NVML from `lib` (or the system's) and return the report, a line per
/// finding.
pub fn gpu_probe(lib: Option<&Path>, times: ProbeTimes) -> String {
    let mut out = String::new();
    let uid = rustix::process::getuid().as_raw();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup = cgroup.lines().last().unwrap_or("?").to_string();
    line(&mut out, format!("who: uid {uid}, cgroup {cgroup}"));
    let mut builder = Nvml::builder();
    if let Some(lib) = lib {
        builder.lib_path(lib.as_os_str());
    }
    let started = Instant::now();
    let nvml = match builder.init() {
        Ok(nvml) => nvml,
        Err(e) => {
            line(&mut out, format!("open: nvmlInit failed: {e}"));
            return out;
        }
    };
    line(
        &mut out,
        format!(
            "open: nvmlInit {:.0} ms; driver {}, NVML {}",
            ms(started.elapsed()),
            answer(nvml.sys_driver_version()),
            answer(nvml.sys_nvml_version())
        ),
    );
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => {
            line(&mut out, format!("open: nvmlDeviceGetCount failed: {e}"));
            return out;
        }
    };
    line(&mut out, format!("open: {count} GPU(s) counted"));
    for index in 0..count {
        let started = Instant::now();
        let device = nvml.device_by_index(index);
        let handle_ms = ms(started.elapsed());
        let device = match device {
            Ok(device) => device,
            Err(e) => {
                line(
                    &mut out,
                    format!("open: GPU {index}: no handle ({e}) after {handle_ms:.0} ms"),
                );
                continue;
            }
        };
        let started = Instant::now();
        let uuid = answer(device.uuid());
        let first_ms = ms(started.elapsed());
        line(
            &mut out,
            format!(
                "open: GPU {index} {uuid} ({}): handle {handle_ms:.0} ms, first query {first_ms:.0} ms, minor {}, persistence mode {}",
                answer(device.name()),
                answer(device.minor_number()),
                answer(device.is_in_persistent_mode()),
            ),
        );
        processes(&mut out, index, &device);
        counter(&mut out, index, &device, times.counter);
        utilisation(&mut out, index, &device, times.utilisation);
        mig(&mut out, index, &device);
    }
    out
}

fn line(out: &mut String, text: String) {
    let _ = writeln!(out, "{text}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn answer<T: std::fmt::Display>(result: Result<T, NvmlError>) -> String {
    match result {
        Ok(v) => v.to_string(),
        Err(e) => format!("({e})"),
    }
}

fn processes(out: &mut String, index: u32, device: &Device) {
    let tag = format!("processes: GPU {index}");
    let mut list = match ProcessList::find(device) {
        Ok(list) => list,
        Err((list, ReadError::Nvml(e))) => {
            line(out, format!("{tag}: {} answers {e}", list.symbol()));
            return;
        }
        Err((list, ReadError::Refused(why))) => {
            line(out, format!("{tag}: {} refused: {why}", list.symbol()));
            return;
        }
    };
    // Asked again: the first answer at open may have had none, or changed between calls.
    let mut read = list.read(device);
    for _ in 0..3 {
        if !matches!(read, Ok(Read::Unsettled)) {
            break;
        }
        read = list.read(device);
    }
    let size = list
        .entry_bytes()
        .map_or("entry size not measured (no process)".into(), |b| {
            format!("entries of {b} bytes")
        });
    let listed = match read {
        Ok(Read::Listed(list)) => list,
        Ok(Read::Unsettled) => {
            line(out, format!("{tag}: {}: list kept changing", list.symbol()));
            return;
        }
        Err(ReadError::Nvml(e)) => {
            line(out, format!("{tag}: {}: {e}", list.symbol()));
            return;
        }
        Err(ReadError::Refused(why)) => {
            line(out, format!("{tag}: {}: refused: {why}", list.symbol()));
            return;
        }
    };
    let live = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let shown: Vec<String> = listed
        .iter()
        .take(16)
        .map(|&(pid, mem)| {
            let mem = mem.map_or("memory n/a".into(), |b| format!("{} MiB", b >> 20));
            let live = if live(pid) {
                ""
            } else {
                ", not a process here"
            };
            format!("{pid} ({mem}{live})")
        })
        .collect();
    line(
        out,
        format!(
            "{tag}: {} {size}, {} process(es): {}",
            list.symbol(),
            listed.len(),
            if shown.is_empty() {
                "none".into()
            } else {
                shown.join(", ")
            }
        ),
    );
}

fn counter(out: &mut String, index: u32, device: &Device, run: Duration) {
    let tag = format!("energy: GPU {index}");
    let started = Instant::now();
    let (mut readings, mut errors) = (Vec::new(), 0);
    while started.elapsed() < run {
        let at = started.elapsed().as_secs_f64();
        match (device.total_energy_consumption(), device.power_usage()) {
            (Ok(mj), Ok(mw)) => readings.push((at, mj, mw)),
            (Err(e), _) | (_, Err(e)) => {
                errors += 1;
                if errors == 1 {
                    line(out, format!("{tag}: {e}"));
                }
                if matches!(
                    e,
                    NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)
                ) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        line(out, format!("{tag}: no reading"));
        return;
    };
    let steps: Vec<u64> = readings
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .filter(|&d| d > 0)
        .collect();
    let counter_j = last.1.saturating_sub(first.1) as f64 / 1000.0;
    let integrated_j: f64 = readings
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].2 + w[1].2) as f64 / 2000.0)
        .sum();
    let span = last.0 - first.0;
    line(
        out,
        format!(
            "{tag}: {} readings over {span:.2} s: counter moved {} times (smallest step {} mJ, every {:.1} ms on average), {counter_j:.2} J; power integrated {integrated_j:.2} J (ratio {:.3}); {errors} error(s)",
            readings.len(),
            steps.len(),
            steps.iter().min().map_or("-".into(), u64::to_string),
            if steps.is_empty() { 0.0 } else { span * 1000.0 / steps.len() as f64 },
            if integrated_j > 0.0 { counter_j / integrated_j } else { 0.0 },
        ),
    );
}

fn utilisation(out: &mut String, index: u32, device: &Device, run: Duration) {
    let tag = format!("utilisation: GPU {index}");
    let started = Instant::now();
    let (mut last_seen, mut calls, mut fresh_calls, mut not_found) = (None, 0, 0, 0);
    let (mut stamps, mut junk, mut samples) = (Vec::new(), 0, 0);
    while started.elapsed() < run {
        calls += 1;
        match device.process_utilization_stats(last_seen) {
            Ok(list) => {
                fresh_calls += 1;
                for s in &list {
                    samples += 1;
                    if s.pid == 0 || s.timestamp == 0 || s.sm_util > 100 {
                        junk += 1;
                    }
                    stamps.push(s.timestamp);
                }
                last_seen = list.iter().map(|s| s.timestamp).max().max(last_seen);
            }
            Err(NvmlError::NotFound) => not_found += 1,
            Err(e) => {
                line(out, format!("{tag}: {e}"));
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stamps.sort_unstable();
    stamps.dedup();
    let gaps: Vec<u64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    let gap = |g: Option<&u64>| g.map_or("-".into(), |us| format!("{:.0} ms", *us as f64 / 1000.0));
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    line(
        out,
        format!(
            "{tag}: {calls} calls every 50 ms: {fresh_calls} with new samples, {not_found} NOT_FOUND; {samples} samples, {junk} junk; {} distinct times, gaps min {} median {} max {}",
            stamps.len(),
            gap(sorted.first()),
            gap(sorted.get(sorted.len() / 2)),
            gap(sorted.last()),
        ),
    );
}

fn mig(out: &mut String, index: u32, device: &Device) {
    let tag = format!("mig: GPU {index}");
    let mode = match device.mig_mode() {
        Ok(mode) => mode,
        Err(e) => {
            line(out, format!("{tag}: mode {e}"));
            return;
        }
    };
    let attributes = device
        .attributes()
        .map(|a| format!("{} SMs", a.multiprocessor_count));
    let utilisation = device.utilization_rates().map(|u| format!("{}%", u.gpu));
    line(
        out,
        format!(
            "{tag}: mode {} (pending {}); whole GPU: attributes {}, utilisation {}, largest GPU-instance profile {}",
            mode.current,
            mode.pending,
            answer(attributes),
            answer(utilisation),
            match nvml_ffi::largest_gpu_instance_sms(device) {
                Ok(Some(sms)) => format!("{sms} SMs"),
                Ok(None) => "(none)".into(),
                Err(e) => format!("({e})"),
            }
        ),
    );
    let slots = device.mig_device_count().unwrap_or(0);
    for slot in 0..slots {
        let Ok(slice) = device.mig_device_by_index(slot) else {
            continue;
        };
        let sms = slice.attributes().map(|a| {
            format!(
                "{} SMs, {} GPU-instance slice(s)",
                a.multiprocessor_count, a.gpu_instance_slice_count
            )
        });
        line(
            out,
            format!(
                "{tag}: slice {slot} {}: {}; energy {}",
                answer(slice.uuid()),
                answer(sms),
                answer(slice.total_energy_consumption()),
            ),
        );
    }
}
