//! Energy sources. Each is found or not found when the sampler is set up, never fatally:
//! [`Found::Absent`] is a node without that hardware, an `Err` a source present but broken.

pub mod nvml;
pub mod nvml_error;
mod nvml_ffi;
pub mod nvml_probe;
mod nvml_processes;
pub mod nvml_status;
pub mod powercap;
pub mod rapl_perf;

/// A cumulative energy counter source with fixed channels.
pub trait EnergySource: Send {
    /// Short stable name used in recordings and logs: `rapl`.
    fn name(&self) -> &'static str;
    /// Channel names (`package-0`, `package-0/dram`), fixed when the source is opened.
    fn channels(&self) -> &[String];
    /// The wrap-around value of each channel's counter, if it wraps.
    fn ranges(&self) -> Vec<Option<u64>>;
    /// Whether a counter found lower than its last reading, without a wrap, was reset to
    /// zero and has counted since (NVML's at a driver reload): its value is then counted.
    fn restarts_at_zero(&self) -> bool {
        false
    }
    /// Read every channel's raw counter in µJ; `None` for a channel that failed this time.
    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>);
    /// Instantaneous values besides energy (`CHANNEL:power_mw`), fixed when opened.
    fn gauges(&self) -> &[String] {
        &[]
    }
    /// Every gauge, in the order of [`EnergySource::gauges`]. Called right after
    /// [`EnergySource::read`] in each sample, so a source may take its gauges there.
    /// `job_pids` gives the job's processes to a source that splits readings by process.
    fn read_gauges(
        &mut self,
        _out: &mut Vec<Option<u64>>,
        _errors: &mut Vec<String>,
        _job_pids: &mut JobPids,
    ) {
    }

    /// Go on from the last row of the recording that this source's sampler takes over: its
    /// time, and `value` of one of this source's columns, named without the source
    /// (`GPU-…:raw`). The sampler resumes the counters; this is for a source's own state.
    fn resume(&mut self, _time_unix_ms: u64, _value: &dyn Fn(&str) -> Option<u64>) {}
}

/// The job's processes for one sample, looked for only when a source has processes to
/// split (reading every `cgroup.procs` of a job at every sample would be wasted on a GPU
/// that runs none).
pub struct JobPids<'a> {
    find: Option<&'a dyn Fn() -> Option<Vec<u32>>>,
    found: Option<Option<Vec<u32>>>,
}

impl<'a> JobPids<'a> {
    /// The processes as `find` lists them, called at most once.
    pub fn new(find: &'a dyn Fn() -> Option<Vec<u32>>) -> JobPids<'a> {
        JobPids {
            find: Some(find),
            found: None,
        }
    }

    /// A job whose processes cannot be known.
    pub fn unknown() -> JobPids<'static> {
        JobPids {
            find: None,
            found: None,
        }
    }

    /// Whether the job's processes can be known, without looking for them.
    pub fn known(&self) -> bool {
        self.find.is_some()
    }

    /// The job's pids, sorted; looked for at the first call.
    pub fn get(&mut self) -> Option<&[u32]> {
        let find = self.find?;
        let found = self.found.get_or_insert_with(|| {
            find().map(|mut pids| {
                pids.sort_unstable();
                pids
            })
        });
        found.as_deref()
    }
}

use std::path::Path;

use aipm_recording::meta::SourceStatus;
use aipm_recording::source::{self, State};

/// Where the kernel describes the perf `power` PMU.
pub const PERF_POWER_PMU: &str = "/sys/bus/event_source/devices/power";

/// A source looked for on this node, every kind the same way: what the sampler reads (if
/// anything), what the metadata says of it, and problems worth logging.
pub struct Opened {
    pub source: Option<Box<dyn EnergySource>>,
    pub status: SourceStatus,
    pub problems: Vec<String>,
}

/// Find RAPL: the powercap tree first, the perf `power` PMU where powercap is absent or
/// unreadable.
pub fn open_rapl(powercap_root: &Path, perf_pmu: &Path) -> Opened {
    let mut problems = Vec::new();
    let status = |status: State, detail: String, channels: &[String]| SourceStatus {
        name: source::RAPL.into(),
        status,
        detail,
        channels: channels.to_vec(),
    };
    let powercap_why = match powercap::PowercapSource::open(powercap_root, &mut problems) {
        Found::Present(source) => {
            let status = status(
                State::Found,
                format!("powercap at {}", powercap_root.display()),
                source.channels(),
            );
            return Opened {
                source: Some(Box::new(source)),
                status,
                problems,
            };
        }
        Found::Absent(why) => problems.first().cloned().unwrap_or(why),
    };
    let (source, status): (Option<Box<dyn EnergySource>>, _) =
        match rapl_perf::PerfRaplSource::open(perf_pmu) {
            Ok(Found::Present(source)) => {
                let status = status(
                    State::Found,
                    format!("perf power PMU ({powercap_why})"),
                    source.channels(),
                );
                (Some(Box::new(source)), status)
            }
            Ok(Found::Absent(why)) => (
                None,
                status(State::Absent, format!("{powercap_why}; {why}"), &[]),
            ),
            Err(e) => {
                problems.push(e.to_string());
                (
                    None,
                    status(State::Failed, format!("{powercap_why}; {e}"), &[]),
                )
            }
        };
    Opened {
        source,
        status,
        problems,
    }
}

/// The outcome of looking for a source on this node.
pub enum Found<T> {
    Present(T),
    Absent(String),
}
