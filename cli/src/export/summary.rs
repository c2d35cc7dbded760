//! One line of figures per job, all its nodes together: what `export`, `slurm-comment` and the
//! monthly `report` write. Built from the same per-node reports as `job`.

use aipm_recording::attribution::Tag;
use aipm_recording::samples::MEM_COLUMN;
use serde::Serialize;

use crate::report::NodeReport;
use crate::spool::NodeRecording;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobSummary {
    /// `1234`, or `1234_5` for an array task.
    pub job: String,
    pub job_id: u32,
    pub name: Option<String>,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub nodes: Vec<String>,
    pub start_ms: u64,
    /// `None` while a node's recording has no end (job running, or sampler killed).
    pub end_ms: Option<u64>,
    /// From the first node's start to the last node's end (up to its last sample where a
    /// node has no end yet).
    pub duration_s: f64,
    pub cpus: Option<u32>,
    pub cpu_time_s: f64,
    /// CPU time over allocated CPUs × duration, in percent.
    pub cpu_usage_pct: Option<f64>,
    /// Sum over nodes of the job's peak memory, and of its mean memory.
    pub mem_peak_bytes: Option<u64>,
    /// Memory allocated to the job over its nodes, when Slurm tracked it.
    pub mem_alloc_bytes: Option<u64>,
    pub mem_mean_bytes: Option<f64>,
    pub cpu_j: f64,
    pub dram_j: f64,
    pub gpu_j: f64,
    pub gpus: usize,
    /// Mean over the job's GPUs of their mean utilisation.
    pub gpu_util_pct: Option<f64>,
    /// Sum over the job's GPUs of each one's peak memory.
    pub gpu_mem_peak_bytes: Option<u64>,
    /// `exclusive` when every node was the job's alone, else `shared`.
    pub attribution: Tag,
    /// Wall energy of the job's nodes, when asked for and complete on every node.
    pub wall_j: Option<f64>,
    pub notes: Vec<String>,
}

impl JobSummary {
    /// The summary of one job's recordings (one per node) and their reports, in the same order.
    pub fn new(recordings: &[NodeRecording], reports: &[NodeReport]) -> Option<JobSummary> {
        let first = recordings.first()?;
        let meta = &first.meta;
        let sum = |f: fn(&NodeReport) -> f64| reports.iter().map(f).fold(0.0, |a, b| a + b);
        let start_ms = recordings.iter().map(|r| r.meta.start_unix_ms).min()?;
        let end_ms = recordings
            .iter()
            .map(|r| r.meta.end_unix_ms)
            .collect::<Option<Vec<u64>>>()
            .and_then(|ends| ends.into_iter().max());
        // From the first node's start to the last node's end (its last sample where a node
        // has no end yet).
        let reach_ms = recordings
            .iter()
            .zip(reports)
            .map(|(r, report)| r.meta.start_unix_ms as f64 + report.duration_s * 1000.0)
            .fold(start_ms as f64, f64::max);
        let duration_s = (reach_ms - start_ms as f64) / 1000.0;
        let cpus = reports.iter().map(|r| r.cpus).sum::<Option<u32>>();
        let cpu_time_s = sum(|r| r.cpu_time_s.unwrap_or(0.0));
        let cpu_usage_pct = match cpus {
            Some(n) if n > 0 && duration_s > 0.0 => {
                Some(100.0 * cpu_time_s / (f64::from(n) * duration_s))
            }
            _ => None,
        };
        let mem_means: Vec<f64> = recordings
            .iter()
            .filter_map(|r| {
                let v: Vec<u64> = r.samples.values(MEM_COLUMN).collect();
                (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64)
            })
            .collect();
        let gpus: Vec<_> = reports.iter().flat_map(|r| &r.gpus).collect();
        let utils: Vec<f64> = gpus.iter().filter_map(|g| g.mean_util_pct).collect();
        let gpu_peaks: Vec<u64> = gpus.iter().filter_map(|g| g.peak_mem_bytes).collect();
        let walls: Option<Vec<f64>> = reports
            .iter()
            .map(|r| {
                r.wall
                    .as_ref()
                    .filter(|w| w.archives_missing.is_empty() && w.covered_s >= 0.99 * w.window_s)
                    .map(|w| w.energy_j)
            })
            .collect();
        Some(JobSummary {
            job: meta.display_id(),
            job_id: meta.job_id,
            name: meta.job_name.clone(),
            user: meta.user.clone(),
            uid: meta.uid,
            gid: meta.gid,
            nodes: recordings.iter().map(|r| r.meta.node.clone()).collect(),
            start_ms,
            end_ms,
            duration_s,
            cpus,
            cpu_time_s,
            cpu_usage_pct,
            mem_peak_bytes: reports.iter().map(|r| r.peak_mem_bytes).sum(),
            mem_alloc_bytes: reports.iter().map(|r| r.mem_alloc_bytes).sum(),
            mem_mean_bytes: (!mem_means.is_empty()).then(|| mem_means.iter().sum()),
            cpu_j: sum(|r| r.job_cpu_j),
            dram_j: sum(|r| r.job_dram_j),
            gpu_j: sum(|r| r.job_gpu_j),
            gpus: gpus.len(),
            gpu_util_pct: (!utils.is_empty())
                .then(|| utils.iter().sum::<f64>() / utils.len() as f64),
            gpu_mem_peak_bytes: (!gpu_peaks.is_empty()).then(|| gpu_peaks.iter().sum()),
            attribution: if reports.iter().all(|r| r.attribution == Tag::Exclusive) {
                Tag::Exclusive
            } else {
                Tag::Shared
            },
            wall_j: walls.map(|w| w.iter().sum()),
            notes: reports.iter().flat_map(|r| r.notes.clone()).collect(),
        })
    }

    /// CPU packages + DRAM + GPUs: the job's energy as aipm measures it.
    pub fn total_j(&self) -> f64 {
        self.cpu_j + self.dram_j + self.gpu_j
    }
}
