//! The figures of a job on one node, computed from its recording.

use aipm_recording::attribution::{attribute, ChannelKind};
use aipm_recording::samples::{CPU_COLUMN, MEM_COLUMN, MEM_PEAK_COLUMN, TIME_COLUMN};
use serde::Serialize;

use crate::spool::NodeRecording;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeReport {
    pub job: String,
    pub job_id: u32,
    pub user: String,
    pub job_name: Option<String>,
    pub node: String,
    pub steps: Vec<String>,
    pub start_utc: String,
    /// `None` while the job runs or when the sampler never finished (node crash).
    pub end_utc: Option<String>,
    pub duration_s: f64,
    pub samples: usize,
    pub period_ms: u64,
    pub cpus: Option<u32>,
    pub cpu_time_s: Option<f64>,
    /// CPU time over allocated CPUs × duration.
    pub cpu_efficiency: Option<f64>,
    pub peak_mem_bytes: Option<u64>,
    /// `exclusive` (the node's energy is the job's) or `shared` (the job's share of it).
    pub attribution: &'static str,
    /// The job's CPU package and DRAM energy, nested zones never counted twice.
    pub job_cpu_j: f64,
    pub job_dram_j: f64,
    /// Energy of the GPUs allocated to the job (their whole counter delta).
    pub job_gpu_j: f64,
    /// Package and DRAM energy of the node not attributed to the job (idle, other jobs).
    pub unattributed_j: f64,
    pub gpus: Vec<GpuReport>,
    pub energy: Vec<ChannelEnergy>,
    pub sources: Vec<String>,
    pub bad_lines: usize,
    pub truncated_tail: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelEnergy {
    /// `rapl:package-0`, `rapl:package-0/dram`.
    pub channel: String,
    /// The job's part of the channel's energy.
    pub job_energy_j: f64,
    /// The node's energy on the channel over the job's samples.
    pub node_energy_j: f64,
    pub unattributed_j: f64,
    /// The node's mean power on the channel.
    pub node_mean_power_w: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuReport {
    pub uuid: String,
    pub energy_j: f64,
    pub mean_power_w: f64,
    /// Mean of NVML's utilisation (share of time a kernel ran), in percent.
    pub mean_util_pct: Option<f64>,
    pub peak_mem_bytes: Option<u64>,
    /// Processes of other jobs ran on the GPU: its energy was split by SM (or memory) share.
    pub shared_with_other_processes: bool,
}

impl NodeReport {
    pub fn from_recording(rec: &NodeRecording) -> NodeReport {
        let meta = &rec.meta;
        let s = &rec.samples;
        let times: Vec<u64> = s.values(TIME_COLUMN).collect();
        let end_ms = meta
            .end_unix_ms
            .or_else(|| times.last().copied())
            .unwrap_or(meta.start_unix_ms);
        let duration_s = end_ms.saturating_sub(meta.start_unix_ms) as f64 / 1000.0;
        let sampled_s = match (times.first(), times.last()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        // The job cgroup's counter starts with the job: its last value is the job's total.
        let cpu_time_s = s.values(CPU_COLUMN).last().map(|ns| ns as f64 / 1e9);
        let cpu_efficiency = match (cpu_time_s, meta.cpus) {
            (Some(cpu), Some(n)) if n > 0 && duration_s > 0.0 => {
                Some(cpu / (f64::from(n) * duration_s))
            }
            _ => None,
        };
        let peak_mem_bytes = s.values(MEM_PEAK_COLUMN).chain(s.values(MEM_COLUMN)).max();
        let attribution = attribute(s);
        let energy = attribution
            .channels
            .iter()
            .map(|c| ChannelEnergy {
                channel: c.channel.clone(),
                job_energy_j: c.job_uj / 1e6,
                node_energy_j: c.node_uj / 1e6,
                unattributed_j: c.unattributed_uj / 1e6,
                node_mean_power_w: if sampled_s > 0.0 {
                    c.node_uj / 1e6 / sampled_s
                } else {
                    0.0
                },
            })
            .collect();
        let gpus = attribution
            .channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Gpu)
            .map(|c| {
                let uuid = c.channel.trim_start_matches("nvml:").to_string();
                let util: Vec<u64> = s.values(&format!("{}:util_pct", c.channel)).collect();
                GpuReport {
                    energy_j: c.job_uj / 1e6,
                    mean_power_w: if sampled_s > 0.0 {
                        c.job_uj / 1e6 / sampled_s
                    } else {
                        0.0
                    },
                    mean_util_pct: (!util.is_empty())
                        .then(|| util.iter().sum::<u64>() as f64 / util.len() as f64),
                    peak_mem_bytes: s.values(&format!("{}:mem_used_bytes", c.channel)).max(),
                    shared_with_other_processes: s
                        .values(&format!("{}:other_procs", c.channel))
                        .any(|n| n > 0),
                    uuid,
                }
            })
            .collect();
        let counted = |kind| attribution.channels.iter().filter(move |c| c.kind == kind);
        let unattributed_uj: f64 = counted(ChannelKind::Package)
            .chain(counted(ChannelKind::Dram))
            .map(|c| c.unattributed_uj)
            .sum();
        NodeReport {
            job: meta.display_id(),
            job_id: meta.job_id,
            user: meta.user.clone(),
            job_name: meta.job_name.clone(),
            node: meta.node.clone(),
            steps: meta.steps.clone(),
            start_utc: meta.start_utc.clone(),
            end_utc: meta.end_utc.clone(),
            duration_s,
            samples: s.rows.len(),
            period_ms: meta.period_ms,
            cpus: meta.cpus,
            cpu_time_s,
            cpu_efficiency,
            peak_mem_bytes,
            attribution: attribution.tag.as_str(),
            job_cpu_j: attribution.job_total_uj(ChannelKind::Package) / 1e6,
            job_dram_j: attribution.job_total_uj(ChannelKind::Dram) / 1e6,
            job_gpu_j: attribution.job_total_uj(ChannelKind::Gpu) / 1e6,
            unattributed_j: unattributed_uj / 1e6,
            gpus,
            energy,
            sources: meta
                .sources
                .iter()
                .map(|src| format!("{} {} ({})", src.name, src.status, src.detail))
                .collect(),
            bad_lines: s.bad_lines.len(),
            truncated_tail: s.truncated_tail,
        }
    }
}
