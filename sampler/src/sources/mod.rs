//! Energy sources. Each is found or not found when the sampler is set up, never fatally:
//! [`Found::Absent`] is a node without that hardware, an `Err` a source present but broken.

pub mod nvml;
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
    /// Read every channel's raw counter in µJ; `None` for a channel that failed this time.
    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>);
    /// Instantaneous values besides energy (`CHANNEL:power_mw`), fixed when opened.
    fn gauges(&self) -> &[String] {
        &[]
    }
    /// Every gauge, in the order of [`EnergySource::gauges`]. Called right after
    /// [`EnergySource::read`] in each sample, so a source may take its gauges there.
    fn read_gauges(&mut self, _out: &mut Vec<Option<u64>>, _errors: &mut Vec<String>) {}
    /// Whether the source splits its readings by process and needs the job's pids.
    fn wants_job_pids(&self) -> bool {
        false
    }
    /// The job's processes for the coming sample (`None`: unknown).
    fn set_job_pids(&mut self, _pids: Option<Vec<u32>>) {}
}

use std::path::Path;

use aipm_recording::meta::SourceStatus;

/// Where the kernel describes the perf `power` PMU.
pub const PERF_POWER_PMU: &str = "/sys/bus/event_source/devices/power";

/// Find RAPL: the powercap tree first, the perf `power` PMU where powercap is absent or
/// unreadable. Returns the source, its status for the metadata, and problems to log.
pub fn open_rapl(
    powercap_root: &Path,
    perf_pmu: &Path,
) -> (Option<Box<dyn EnergySource>>, SourceStatus, Vec<String>) {
    let mut problems = Vec::new();
    let status = |status: &str, detail: String, channels: &[String]| SourceStatus {
        name: "rapl".into(),
        status: status.into(),
        detail,
        channels: channels.to_vec(),
    };
    let powercap_why = match powercap::PowercapSource::open(powercap_root, &mut problems) {
        Found::Present(source) => {
            let st = status(
                "found",
                format!("powercap at {}", powercap_root.display()),
                source.channels(),
            );
            return (Some(Box::new(source)), st, problems);
        }
        Found::Absent(why) => problems.first().cloned().unwrap_or(why),
    };
    match rapl_perf::PerfRaplSource::open(perf_pmu) {
        Ok(Found::Present(source)) => {
            let st = status(
                "found",
                format!("perf power PMU ({powercap_why})"),
                source.channels(),
            );
            (Some(Box::new(source)), st, problems)
        }
        Ok(Found::Absent(why)) => (
            None,
            status("absent", format!("{powercap_why}; {why}"), &[]),
            problems,
        ),
        Err(e) => {
            problems.push(e.clone());
            (
                None,
                status("failed", format!("{powercap_why}; {e}"), &[]),
                problems,
            )
        }
    }
}

/// The outcome of looking for a source on this node.
pub enum Found<T> {
    Present(T),
    Absent(String),
}
