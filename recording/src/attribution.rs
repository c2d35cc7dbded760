//! How a node's energy is attributed to a job, computed from the inputs the recording keeps,
//! so that anyone can recompute it.
//!
//! Per sampling period:
//! - if the job was the only Slurm job on the node during the whole recording, the node's
//!   energy is the job's (`exclusive`);
//! - otherwise (`shared`) CPU package, core, uncore and psys energy is split by the job's
//!   share of the node's busy CPU time (job CPU time / node busy CPU time), and DRAM energy
//!   by the job's share of the node's used memory;
//! - a GPU's energy is the job's whole counter delta (Slurm allocates GPUs to one job),
//!   unless other processes ran on it (MPS, sharding): then it is split by the job's share
//!   of the per-process SM utilisation, or of the GPU memory when no SM sample came.
//!
//! What is not the job's is kept as `unattributed`: idle power, other jobs, the system.
//! For every channel, job + unattributed = node, to rounding.

use crate::counter;
use crate::samples::{
    self, Row, Samples, CPU_COLUMN, MEM_COLUMN, NODE_BUSY_COLUMN, NODE_JOBS_COLUMN,
    NODE_MEM_COLUMN, TIME_COLUMN,
};

/// Which rule attributed a node's energy: reports show it and exports write it, spelt
/// `exclusive` or `shared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    /// The job was alone on the node: all of the node's energy is the job's.
    Exclusive,
    /// Other jobs (or an unknown number of them) shared the node: the job gets its share.
    Shared,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Exclusive => "exclusive",
            Tag::Shared => "shared",
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a channel measures, from its RAPL zone name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A CPU package (`rapl:package-0`): counts toward the CPU total.
    Package,
    /// DRAM, top-level or in a package (`rapl:package-0/dram`): the DRAM total.
    Dram,
    /// A part of a package already counted in it (`core`, `uncore`): shown, never summed.
    PackagePart,
    /// The whole platform (`psys`): includes the packages, shown apart.
    Platform,
    /// A GPU (`nvml:GPU-…`) that Slurm allocated to the job: its energy is the job's.
    Gpu,
    Other,
}

pub fn channel_kind(channel: &str) -> ChannelKind {
    if channel.starts_with("nvml:") {
        return ChannelKind::Gpu;
    }
    let zone = channel.split_once(':').map_or(channel, |(_, zone)| zone);
    let leaf = zone.rsplit('/').next().unwrap_or(zone);
    match (zone.contains('/'), leaf) {
        (_, "dram") => ChannelKind::Dram,
        (true, _) => ChannelKind::PackagePart,
        (false, l) if l.starts_with("package") => ChannelKind::Package,
        (false, "psys") => ChannelKind::Platform,
        _ => ChannelKind::Other,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelShare {
    pub channel: String,
    pub kind: ChannelKind,
    pub node_uj: f64,
    pub job_uj: f64,
    pub unattributed_uj: f64,
    /// Periods whose share could not be computed (an input missing): their energy is
    /// unattributed.
    pub periods_without_share: usize,
    /// Readings of the counter that no counter can make (`counter::periods`): left out,
    /// the energy taken across them; the first one's time.
    pub impossible_readings: usize,
    pub first_impossible_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub tag: Tag,
    pub channels: Vec<ChannelShare>,
}

impl Attribution {
    /// Job energy of every channel of one kind, in µJ.
    pub fn job_total_uj(&self, kind: ChannelKind) -> f64 {
        // Folded from +0.0: an empty float sum is -0.0, which prints as "-0.0".
        self.channels
            .iter()
            .filter(|c| c.kind == kind)
            .fold(0.0, |sum, c| sum + c.job_uj)
    }

    pub fn node_total_uj(&self, kind: ChannelKind) -> f64 {
        self.channels
            .iter()
            .filter(|c| c.kind == kind)
            .fold(0.0, |sum, c| sum + c.node_uj)
    }
}

/// The columns of a GPU's per-process gauges, looked up once per channel.
struct GpuColumns {
    other_procs: Option<usize>,
    job_sm: Option<usize>,
    other_sm: Option<usize>,
    job_mem: Option<usize>,
    other_mem: Option<usize>,
}

impl GpuColumns {
    fn of(s: &Samples, channel: &str) -> GpuColumns {
        use crate::gpu_gauges::{self as g, column as named};
        let column = |gauge: &str| s.column(&named(channel, gauge));
        GpuColumns {
            other_procs: column(g::OTHER_PROCS),
            job_sm: column(g::JOB_SM_PCT),
            other_sm: column(g::OTHER_SM_PCT),
            job_mem: column(g::JOB_MEM_BYTES),
            other_mem: column(g::OTHER_MEM_BYTES),
        }
    }

    /// The job's share of the GPU in the period ending at `row`: 1 when no other process
    /// used it.
    fn share(&self, row: Row<'_>) -> Option<f64> {
        let gauge = |c: Option<usize>| c.and_then(|c| row.get(c));
        if gauge(self.other_procs).unwrap_or(0) == 0 {
            return Some(1.0);
        }
        let split = |job: Option<u64>, other: Option<u64>| {
            let (job, other) = (job? as f64, other? as f64);
            (job + other > 0.0).then(|| job / (job + other))
        };
        split(gauge(self.job_sm), gauge(self.other_sm))
            .or_else(|| split(gauge(self.job_mem), gauge(self.other_mem)))
    }
}

pub fn attribute(s: &Samples) -> Attribution {
    let col = |name: &str| s.column(name);
    let time = col(TIME_COLUMN);
    let (job_cpu, busy, job_mem, node_mem, jobs) = (
        col(CPU_COLUMN),
        col(NODE_BUSY_COLUMN),
        col(MEM_COLUMN),
        col(NODE_MEM_COLUMN),
        col(NODE_JOBS_COLUMN),
    );
    let value = |row: Row<'_>, c: Option<usize>| c.and_then(|c| row.get(c));
    let exclusive = !s.rows.is_empty()
        && s.rows
            .iter()
            .all(|r| value(r, jobs).is_some_and(|n| n <= 1));
    let tag = if exclusive {
        Tag::Exclusive
    } else {
        Tag::Shared
    };

    let cpu_share = |a: Row<'_>, b: Row<'_>| -> Option<f64> {
        let d_job = value(b, job_cpu)?.checked_sub(value(a, job_cpu)?)? as f64;
        let d_busy = value(b, busy)?.checked_sub(value(a, busy)?)? as f64;
        Some(if d_busy > 0.0 {
            (d_job / d_busy).min(1.0)
        } else {
            0.0
        })
    };
    let mem_share = |b: Row<'_>| -> Option<f64> {
        let used = value(b, node_mem)? as f64;
        Some(if used > 0.0 {
            (value(b, job_mem)? as f64 / used).min(1.0)
        } else {
            0.0
        })
    };

    let channels = samples::channels_of_header(&s.columns)
        .into_iter()
        .map(|channel| {
            let kind = channel_kind(&channel);
            let energy = s.column(&samples::energy_column(&channel));
            let gpu = (kind == ChannelKind::Gpu).then(|| GpuColumns::of(s, &channel));
            let periods = match (time, energy) {
                (Some(time), Some(energy)) => counter::periods(&s.rows, time, energy),
                _ => counter::CounterPeriods::default(),
            };
            let mut share = ChannelShare {
                channel,
                kind,
                node_uj: 0.0,
                job_uj: 0.0,
                unattributed_uj: 0.0,
                periods_without_share: 0,
                impossible_readings: periods.impossible.len(),
                first_impossible_ms: periods
                    .impossible
                    .first()
                    .and_then(|&i| value(s.rows.get(i)?, time)),
            };
            for &(a, b) in &periods.pairs {
                let (Some(a), Some(b)) = (s.rows.get(a), s.rows.get(b)) else {
                    continue;
                };
                let Some(d_energy) = value(b, energy)
                    .zip(value(a, energy))
                    .and_then(|(b, a)| b.checked_sub(a))
                else {
                    continue;
                };
                let d_energy = d_energy as f64;
                let fraction = match (tag, kind) {
                    (_, ChannelKind::Gpu) => gpu.as_ref().and_then(|g| g.share(b)),
                    (Tag::Exclusive, _) => Some(1.0),
                    (Tag::Shared, ChannelKind::Dram) => mem_share(b),
                    (Tag::Shared, _) => cpu_share(a, b),
                };
                if fraction.is_none() {
                    share.periods_without_share += 1;
                }
                let job = d_energy * fraction.unwrap_or(0.0);
                share.node_uj += d_energy;
                share.job_uj += job;
                share.unattributed_uj += d_energy - job;
            }
            share
        })
        .collect();
    Attribution { tag, channels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{header_line, EnergyValue, SampleRow};

    /// A recording of `n` one-second periods at `watts` on the package and `dram_watts` on
    /// DRAM, with the job using `job_cpus` of `busy_cpus` busy CPUs and a fixed memory share.
    fn recording(
        n: u64,
        watts: u64,
        dram_watts: u64,
        job_cpus: u64,
        busy_cpus: u64,
        jobs: u64,
    ) -> Samples {
        let channels = vec![
            "rapl:package-0".to_string(),
            "rapl:package-0/dram".to_string(),
        ];
        let mut text = header_line(&channels, &[]);
        for t in 0..=n {
            SampleRow {
                time_unix_ms: 1_000 * t,
                job_cpu_ns: Some(job_cpus * t * 1_000_000_000),
                job_mem_bytes: Some(1 << 30),
                job_mem_peak_bytes: Some(1 << 30),
                node_cpu_busy_ns: Some(busy_cpus * t * 1_000_000_000 + 7),
                node_cpu_total_ns: Some(8 * t * 1_000_000_000),
                node_mem_used_bytes: Some(4 << 30),
                node_jobs: Some(jobs),
                energy: vec![
                    Some(EnergyValue {
                        energy_uj: watts * t * 1_000_000,
                        raw: 0,
                    }),
                    Some(EnergyValue {
                        energy_uj: dram_watts * t * 1_000_000,
                        raw: 0,
                    }),
                ],
                gauges: vec![],
            }
            .format_into(&mut text);
        }
        Samples::parse(&text).unwrap()
    }

    #[test]
    fn a_job_alone_on_its_node_gets_all_of_it() {
        let a = attribute(&recording(10, 40, 6, 1, 3, 1));
        assert_eq!(a.tag, Tag::Exclusive);
        assert_eq!(a.job_total_uj(ChannelKind::Package), 400e6);
        assert_eq!(a.job_total_uj(ChannelKind::Dram), 60e6);
        // No GPU: a plain zero, not the -0.0 of an empty float sum.
        assert_eq!(format!("{:.1}", a.job_total_uj(ChannelKind::Gpu)), "0.0");
    }

    #[test]
    fn a_shared_node_is_split_by_cpu_and_memory_share_and_conserved() {
        let a = attribute(&recording(10, 40, 6, 2, 3, 2));
        assert_eq!(a.tag, Tag::Shared);
        let package = &a.channels[0];
        assert!(
            (package.job_uj - 400e6 * 2.0 / 3.0).abs() < 1.0,
            "{package:?}"
        );
        let dram = &a.channels[1];
        assert!((dram.job_uj - 60e6 / 4.0).abs() < 1.0, "{dram:?}");
        for c in &a.channels {
            assert!((c.job_uj + c.unattributed_uj - c.node_uj).abs() < 1e-6);
        }
    }

    #[test]
    fn an_unknown_job_count_is_not_called_exclusive() {
        let mut s = recording(3, 40, 6, 1, 1, 1);
        let jobs = s.column(NODE_JOBS_COLUMN).unwrap();
        s.rows.set(1, jobs, None);
        assert_eq!(attribute(&s).tag, Tag::Shared);
    }

    #[test]
    fn periods_without_inputs_stay_unattributed_and_are_counted() {
        let mut s = recording(4, 40, 6, 1, 1, 2);
        let busy = s.column(NODE_BUSY_COLUMN).unwrap();
        s.rows.set(2, busy, None);
        let package = &attribute(&s).channels[0];
        assert_eq!(package.periods_without_share, 2);
        assert!(
            (package.job_uj - 80e6).abs() < 1.0 && (package.unattributed_uj - 80e6).abs() < 1.0
        );
    }

    #[test]
    fn a_gpu_is_the_jobs_unless_others_used_it_then_split_by_sm_share() {
        let channels = vec!["nvml:GPU-1".to_string()];
        let names = [
            "other_procs",
            "job_sm_pct",
            "other_sm_pct",
            "job_mem_bytes",
            "other_mem_bytes",
        ];
        let gauges: Vec<String> = names.iter().map(|n| format!("nvml:GPU-1:{n}")).collect();
        let mut text = header_line(&channels, &gauges);
        // Period 1: alone. Period 2: shared, SM 30 vs 10. Period 3: shared, no SM sample,
        // memory 1 vs 3.
        let rows: [[Option<u64>; 5]; 4] = [
            [Some(0), None, None, None, None],
            [Some(0), Some(50), Some(0), Some(1), Some(0)],
            [Some(1), Some(30), Some(10), Some(1), Some(1)],
            [Some(1), Some(0), Some(0), Some(1), Some(3)],
        ];
        for (t, g) in rows.iter().enumerate() {
            SampleRow {
                time_unix_ms: t as u64 * 1000,
                energy: vec![Some(EnergyValue {
                    energy_uj: t as u64 * 1_000_000,
                    raw: 0,
                })],
                gauges: g.to_vec(),
                ..SampleRow::default()
            }
            .format_into(&mut text);
        }
        let a = attribute(&Samples::parse(&text).unwrap());
        let gpu = &a.channels[0];
        assert_eq!(gpu.kind, ChannelKind::Gpu);
        assert!(
            (gpu.job_uj - (1e6 + 0.75e6 + 0.25e6)).abs() < 1e-3,
            "{gpu:?}"
        );
        assert!((gpu.job_uj + gpu.unattributed_uj - gpu.node_uj).abs() < 1e-6);
    }

    proptest::proptest! {
        /// Whatever the inputs, per channel: 0 <= job <= node and job + unattributed = node.
        #[test]
        fn attribution_conserves_energy(
            steps in proptest::collection::vec((0u64..5_000_000, 0u64..4_000_000_000, 0u64..4_000_000_000, 0u64..1 << 32, 1u64..1 << 34, 0u64..4), 2..60),
        ) {
            let channels = vec!["rapl:package-0".to_string(), "rapl:dram".to_string()];
            let mut text = header_line(&channels, &[]);
            let (mut e, mut job, mut busy) = (0u64, 0u64, 0u64);
            let first_e = steps[0].0;
            for (t, (d_e, d_job, d_busy, mem, node_mem, jobs)) in steps.into_iter().enumerate() {
                e += d_e;
                job += d_job;
                busy += d_busy;
                SampleRow {
                    time_unix_ms: t as u64 * 1000,
                    job_cpu_ns: Some(job),
                    job_mem_bytes: Some(mem),
                    node_cpu_busy_ns: Some(busy),
                    node_mem_used_bytes: Some(node_mem),
                    node_jobs: Some(jobs),
                    energy: vec![Some(EnergyValue { energy_uj: e, raw: e }); 2],
                    ..SampleRow::default()
                }
                .format_into(&mut text);
            }
            let a = attribute(&Samples::parse(&text).unwrap());
            for c in &a.channels {
                proptest::prop_assert!(c.job_uj >= 0.0 && c.job_uj <= c.node_uj + 1e-6, "{c:?}");
                proptest::prop_assert!((c.job_uj + c.unattributed_uj - c.node_uj).abs() <= 1e-6 * c.node_uj.max(1.0));
                // The node's energy between the first and the last sample.
                proptest::prop_assert_eq!(c.node_uj, (e - first_e) as f64);
            }
        }
    }

    #[test]
    fn kinds_of_rapl_zones() {
        assert_eq!(channel_kind("rapl:package-0"), ChannelKind::Package);
        assert_eq!(channel_kind("rapl:package-1/dram"), ChannelKind::Dram);
        assert_eq!(channel_kind("rapl:dram"), ChannelKind::Dram);
        assert_eq!(
            channel_kind("rapl:package-0/core"),
            ChannelKind::PackagePart
        );
        assert_eq!(channel_kind("rapl:psys"), ChannelKind::Platform);
        assert_eq!(channel_kind("nvml:GPU-9d3f"), ChannelKind::Gpu);
    }
}
