//! RAPL through the perf `power` PMU, for nodes where the powercap tree is absent or
//! unreadable. One system-wide counter per package and event (`energy-pkg`, `energy-ram`,
//! `energy-psys`), opened on the first CPU of each package (the PMU's `cpumask`), read as a
//! 64-bit count the kernel keeps wrap-free, scaled by the event's `.scale` file to joules.
//! See: kernel arch/x86/events/rapl.c; perf_event_open(2).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use perf_event_open_sys::bindings::{perf_event_attr, PERF_FLAG_FD_CLOEXEC};

use super::{EnergySource, Found};
use crate::sysfs::{parse_cpu_list, read_to_string, ReadError};

/// Events recorded, and the channel name of each (package index `{}`).
const EVENTS: [(&str, &str); 3] = [
    ("energy-pkg", "package-{}"),
    ("energy-ram", "package-{}/dram"),
    ("energy-psys", "psys"),
];

pub struct PerfRaplSource {
    counters: Vec<PerfCounter>,
    channels: Vec<String>,
}

struct PerfCounter {
    file: File,
    /// Joules per count, times 1e6: µJ per count.
    uj_per_count: f64,
}

/// An event as the PMU describes it in sysfs.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub name: String,
    pub config: u64,
    pub scale: f64,
}

/// Why a perf `power` PMU on this node could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PmuError {
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    #[error("{}: expected {expected}", path.display())]
    Unexpected {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{}: expected {expected}, found {found:?}", path.display())]
    UnexpectedText {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("perf_event_open({event} on CPU {cpu}): {source}")]
    Counter {
        event: String,
        cpu: i32,
        source: std::io::Error,
    },
}

impl PerfRaplSource {
    /// Open the PMU described under `pmu_dir` (`/sys/bus/event_source/devices/power`).
    pub fn open(pmu_dir: &Path) -> Result<Found<PerfRaplSource>, PmuError> {
        if !pmu_dir.exists() {
            return Ok(Found::Absent(format!(
                "no perf power PMU at {}",
                pmu_dir.display()
            )));
        }
        let pmu_type: u32 = read_to_string(&pmu_dir.join("type"))?
            .trim()
            .parse()
            .map_err(|_| PmuError::Unexpected {
                path: pmu_dir.join("type"),
                expected: "an integer",
            })?;
        let cpus: Vec<i32> = parse_cpu_list(&read_to_string(&pmu_dir.join("cpumask"))?)
            .and_then(|ranges| {
                let cpus = ranges.into_iter().flatten();
                cpus.map(|cpu| i32::try_from(cpu).ok()).collect()
            })
            .ok_or_else(|| PmuError::Unexpected {
                path: pmu_dir.join("cpumask"),
                expected: "a CPU list",
            })?;
        let mut source = PerfRaplSource {
            counters: Vec::new(),
            channels: Vec::new(),
        };
        for (event, channel) in EVENTS {
            let Some(spec) = read_event(pmu_dir, event)? else {
                continue;
            };
            // psys is one counter for the whole platform.
            let cpus = if event == "energy-psys" {
                &cpus[..1]
            } else {
                &cpus[..]
            };
            for (package, &cpu) in cpus.iter().enumerate() {
                let file = open_counter(pmu_type, spec.config, cpu).map_err(|source| {
                    PmuError::Counter {
                        event: event.to_string(),
                        cpu,
                        source,
                    }
                })?;
                source.counters.push(PerfCounter {
                    file,
                    uj_per_count: spec.scale * 1e6,
                });
                source
                    .channels
                    .push(channel.replace("{}", &package.to_string()));
            }
        }
        if source.counters.is_empty() {
            return Ok(Found::Absent(format!(
                "no energy event under {}/events",
                pmu_dir.display()
            )));
        }
        Ok(Found::Present(source))
    }
}

/// `event=0x02` and the scale of one event, or `None` when the PMU lacks it.
pub fn read_event(pmu_dir: &Path, event: &str) -> Result<Option<EventSpec>, PmuError> {
    let events = pmu_dir.join("events");
    let Ok(text) = std::fs::read_to_string(events.join(event)) else {
        return Ok(None);
    };
    let config = parse_event_config(&text).ok_or_else(|| PmuError::UnexpectedText {
        path: events.join(event),
        expected: "event=0xNN",
        found: text.clone(),
    })?;
    let scale_path = events.join(format!("{event}.scale"));
    let scale_text = read_to_string(&scale_path)?;
    let scale: f64 = scale_text
        .trim()
        .parse()
        .map_err(|_| PmuError::UnexpectedText {
            path: scale_path,
            expected: "a number",
            found: scale_text.clone(),
        })?;
    Ok(Some(EventSpec {
        name: event.to_string(),
        config,
        scale,
    }))
}

/// `event=0x02` -> 2.
pub fn parse_event_config(text: &str) -> Option<u64> {
    let value = text
        .trim()
        .split(',')
        .find_map(|kv| kv.strip_prefix("event="))?;
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn open_counter(pmu_type: u32, config: u64, cpu: i32) -> std::io::Result<File> {
    let mut attr = perf_event_attr {
        type_: pmu_type,
        size: std::mem::size_of::<perf_event_attr>() as u32,
        config,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, zero-initialised perf_event_attr of the size given, alive
    // for the call; pid -1 with a CPU asks for a system-wide counter, as RAPL requires.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(&mut attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC as _)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a new file descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

impl EnergySource for PerfRaplSource {
    fn name(&self) -> &'static str {
        aipm_recording::source::RAPL
    }

    fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The kernel accumulates the 32-bit MSR into a 64-bit count: no wrap to correct.
    fn ranges(&self) -> Vec<Option<u64>> {
        vec![None; self.counters.len()]
    }

    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>) {
        for (counter, channel) in self.counters.iter_mut().zip(&self.channels) {
            let mut buf = [0u8; 8];
            match counter.file.read_exact(&mut buf) {
                Ok(()) => out.push(Some(
                    (u64::from_ne_bytes(buf) as f64 * counter.uj_per_count) as u64,
                )),
                Err(e) => {
                    errors.push(format!("perf rapl {channel}: {e}"));
                    out.push(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pmu_description() {
        assert_eq!(parse_event_config("event=0x02\n"), Some(2));
        assert_eq!(parse_event_config("event=0x0d,umask=0x00"), Some(13));
        assert_eq!(parse_event_config("umask=1"), None);
    }

    /// A PMU tree as the kernel writes it (Skylake server); the events are read from it, and
    /// opening them on this machine, which has no such PMU, fails with a named error.
    #[test]
    fn reads_events_from_a_pmu_tree_and_names_the_failing_open() {
        let tmp = tempfile::tempdir().unwrap();
        let pmu = tmp.path();
        std::fs::create_dir_all(pmu.join("events")).unwrap();
        std::fs::write(pmu.join("type"), "4242\n").unwrap();
        std::fs::write(pmu.join("cpumask"), "0\n").unwrap();
        std::fs::write(pmu.join("events/energy-pkg"), "event=0x02\n").unwrap();
        std::fs::write(
            pmu.join("events/energy-pkg.scale"),
            "2.3283064365386962890625e-10\n",
        )
        .unwrap();
        std::fs::write(pmu.join("events/energy-pkg.unit"), "Joules\n").unwrap();
        let spec = read_event(pmu, "energy-pkg").unwrap().unwrap();
        assert_eq!(spec.config, 2);
        assert!((spec.scale - 2.3283064365386963e-10).abs() < 1e-20);
        assert_eq!(read_event(pmu, "energy-ram").unwrap(), None);

        let err = PerfRaplSource::open(pmu).err().unwrap().to_string();
        assert!(
            err.starts_with("perf_event_open(energy-pkg on CPU 0): "),
            "{err}"
        );
    }

    #[test]
    fn a_cpumask_that_is_no_cpu_list_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("type"), "4242\n").unwrap();
        std::fs::write(tmp.path().join("cpumask"), "0-\n").unwrap();
        let err = PerfRaplSource::open(tmp.path()).err().unwrap().to_string();
        assert!(err.ends_with("/cpumask: expected a CPU list"), "{err}");
    }

    #[test]
    fn no_pmu_is_absent() {
        let found = PerfRaplSource::open(Path::new("/nonexistent/power")).unwrap();
        assert!(matches!(found, Found::Absent(why) if why.contains("no perf power PMU")));
    }
}
