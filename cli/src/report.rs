//! The figures of a job on one node, computed from its recording.

use aipm_recording::attribution::{attribute, ChannelKind, Tag};
use aipm_recording::gpu_gauges;
use aipm_recording::samples::{CPU_COLUMN, MEM_COLUMN, MEM_PEAK_COLUMN, TIME_COLUMN};
use aipm_sampler::sources::nvml::{noted_gpus, GRACE_HOPPER_NOTE, MIG_SHARE_UNKNOWN_NOTE};
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
    /// Share of the window between the first and the last sample (0 to 1).
    pub sample_coverage: f64,
    pub cpus: Option<u32>,
    pub cpu_time_s: Option<f64>,
    /// CPU time over allocated CPUs × duration.
    pub cpu_efficiency: Option<f64>,
    pub peak_mem_bytes: Option<u64>,
    /// Memory allocated to the job on the node (what it asked for), when Slurm tracks it.
    pub mem_alloc_bytes: Option<u64>,
    /// `exclusive` (the node's energy is the job's) or `shared` (the job's share of it).
    pub attribution: Tag,
    /// The job's CPU package and DRAM energy, nested zones never counted twice; 0 beside a
    /// Grace Hopper module, whose GPU counter already holds them (named in the notes).
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
    /// The wall meter's view of the node over the job's window, when asked for.
    pub wall: Option<WallReport>,
    /// The job's energy (CPU + DRAM + GPU) × PUE × the grid's carbon intensity.
    pub emissions_g_co2e: Option<f64>,
    /// Plain-language notes on what makes a figure less sure.
    pub notes: Vec<String>,
}

/// The node's energy at the wall (Omegawatt, both PSUs) over the job's window, against what
/// RAPL and NVML saw of the whole node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WallReport {
    pub energy_j: f64,
    /// Seconds of the window with wall data on every PSU, and the window's length.
    pub covered_s: f64,
    pub window_s: f64,
    /// RAPL packages + DRAM + GPUs over the same window (whole node, not attributed).
    pub rapl_nvml_j: f64,
    /// Wall − (RAPL + NVML): power supplies, fans, disks, network, and what RAPL misses.
    pub unseen_j: f64,
    pub archives_missing: Vec<String>,
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
    /// The highest power between two samples.
    pub node_peak_power_w: f64,
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
        let mut times = s.values(TIME_COLUMN);
        let first_ms = times.next();
        let last_ms = times.last().or(first_ms);
        let end_ms = meta.end_unix_ms.or(last_ms).unwrap_or(meta.start_unix_ms);
        let duration_s = end_ms.saturating_sub(meta.start_unix_ms) as f64 / 1000.0;
        let sampled_s = match (first_ms, last_ms) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1000.0,
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
                node_peak_power_w: crate::power::channel_peak_power(s, &c.channel),
            })
            .collect();
        let gpus = attribution
            .channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Gpu)
            .map(|c| {
                let uuid = c.channel.trim_start_matches("nvml:").to_string();
                let util: Vec<u64> = s
                    .values(&gpu_gauges::column(&c.channel, gpu_gauges::UTIL_PCT))
                    .collect();
                GpuReport {
                    energy_j: c.job_uj / 1e6,
                    mean_power_w: if sampled_s > 0.0 {
                        c.job_uj / 1e6 / sampled_s
                    } else {
                        0.0
                    },
                    mean_util_pct: (!util.is_empty())
                        .then(|| util.iter().sum::<u64>() as f64 / util.len() as f64),
                    peak_mem_bytes: s
                        .values(&gpu_gauges::column(&c.channel, gpu_gauges::MEM_USED_BYTES))
                        .max(),
                    shared_with_other_processes: s
                        .values(&gpu_gauges::column(&c.channel, gpu_gauges::OTHER_PROCS))
                        .any(|n| n > 0),
                    uuid,
                }
            })
            .collect();
        let mut notes = notes(rec, &attribution, peak_mem_bytes);
        let (mut job_cpu_j, mut job_dram_j) = (
            attribution.job_total_uj(ChannelKind::Package) / 1e6,
            attribution.job_total_uj(ChannelKind::Dram) / 1e6,
        );
        // A Grace Hopper module's counter holds its Grace CPU and memory: a CPU or DRAM
        // channel beside it is not added to the job's energy again.
        let modules = noted_gpu_channels(rec, &attribution, GRACE_HOPPER_NOTE);
        let cpu_channels = attribution
            .channels
            .iter()
            .any(|c| matches!(c.kind, ChannelKind::Package | ChannelKind::Dram));
        if !modules.is_empty() && cpu_channels {
            notes.push(format!(
                "{}: Grace Hopper module(s), whose energy counter includes the Grace CPU and its memory: the CPU ({job_cpu_j:.1} J) and DRAM ({job_dram_j:.1} J) channels are not added to the job's energy again",
                modules.join(", ")
            ));
            (job_cpu_j, job_dram_j) = (0.0, 0.0);
        }
        for gpu in noted_gpu_channels(rec, &attribution, MIG_SHARE_UNKNOWN_NOTE) {
            notes.push(format!(
                "{gpu}: whole GPU, MIG mode: share unknown: the job ran on a MIG slice of it that the sampler could not name, and its energy here is the whole GPU's, every slice's: an upper bound"
            ));
        }
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
            sample_coverage: if duration_s > 0.0 {
                (sampled_s / duration_s).min(1.0)
            } else {
                0.0
            },
            cpus: meta.cpus,
            cpu_time_s,
            cpu_efficiency,
            peak_mem_bytes,
            mem_alloc_bytes: meta.mem_alloc_bytes,
            attribution: attribution.tag,
            job_cpu_j,
            job_dram_j,
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
            notes,
            wall: None,
            emissions_g_co2e: None,
        }
    }
}

/// Far less memory used than allocated (under a quarter, and at least 1 GiB left unused):
/// memory others could have had.
pub fn memory_mostly_unused(peak_bytes: u64, alloc_bytes: u64) -> bool {
    peak_bytes.saturating_mul(4) < alloc_bytes && alloc_bytes - peak_bytes >= 1 << 30
}

/// The GPUs recorded on the node (`GPU-…`) that the nvml source's metadata names with
/// `note`.
fn noted_gpu_channels(
    rec: &NodeRecording,
    attribution: &aipm_recording::attribution::Attribution,
    note: &str,
) -> Vec<String> {
    let sources = rec
        .meta
        .sources
        .iter()
        .filter(|src| src.name == aipm_recording::source::NVML);
    let noted = sources.flat_map(|src| noted_gpus(&src.detail, note));
    let recorded = |uuid: &String| {
        let channel = format!("nvml:{uuid}");
        attribution.channels.iter().any(|c| c.channel == channel)
    };
    noted.filter(recorded).collect()
}

/// How far apart a GPU's counter and its integrated power may be, as a share of the larger,
/// before the report doubts one of them.
const COUNTER_POWER_TOLERANCE: f64 = 0.1;
/// Seconds of peak power by which they may differ whatever the job's length: NVML's power is
/// a 1 s average on Ampere and newer GPUs except GA100, and the counter moves in steps of
/// about 10 ms (one lost at each end). See docs/nvml-real-drivers.md, row 8.
const POWER_LAG_S: f64 = 1.02;

/// What the sampler says about itself, and cross-checks, as notes a person can act on.
fn notes(
    rec: &NodeRecording,
    attribution: &aipm_recording::attribution::Attribution,
    peak: Option<u64>,
) -> Vec<String> {
    let m = &rec.meta;
    let st = &m.sampler;
    // What the metadata file claimed against the file system: a forged or copied file.
    let mut notes = rec.claims.clone();
    // Far less memory used than allocated: memory others could have had.
    if let (Some(alloc), Some(peak)) = (m.mem_alloc_bytes, peak) {
        if memory_mostly_unused(peak, alloc) {
            notes.push(format!(
                "the job used at most {} of the {} it was allocated on this node ({:.0}%): ask for less (--mem) so that others can use it",
                crate::output::bytes(peak),
                crate::output::bytes(alloc),
                100.0 * peak as f64 / alloc as f64
            ));
        }
    }
    // Gaps: periods with no sample at all (the node stalled, the sampler was stopped).
    let (gaps, gap_ms) = rec
        .samples
        .values(TIME_COLUMN)
        .zip(rec.samples.values(TIME_COLUMN).skip(1))
        .map(|(a, b)| b.saturating_sub(a))
        .filter(|d| m.period_ms > 0 && *d > m.period_ms.saturating_mul(3))
        .fold((0, 0u64), |(n, ms), d| {
            (n + 1, ms.saturating_add(d - m.period_ms))
        });
    if gaps > 0 {
        notes.push(format!(
            "{gaps} gap(s) in the samples, {:.1} s in all: energy is counted across them, but the power curve is not known there",
            gap_ms as f64 / 1000.0
        ));
    }
    if m.end_unix_ms.is_none() {
        notes.push("the recording has no end: the job still runs, or its sampler was killed (figures stop at the last sample)".into());
    }
    if st.missed_deadlines > 0 {
        notes.push(format!(
            "{} sampling period(s) were missed (node overloaded?)",
            st.missed_deadlines
        ));
    }
    if st.read_errors > 0 {
        notes.push(format!(
            "{} sample(s) had unreadable values (see slurmd's log)",
            st.read_errors
        ));
    }
    if st.write_errors > 0 {
        notes.push(
            "the spool could not be written to (disk full?): the recording stops early".into(),
        );
    }
    for c in &attribution.channels {
        if c.impossible_readings > 0 {
            let first = c
                .first_impossible_ms
                .map(aipm_recording::time::format_utc)
                .unwrap_or_default();
            notes.push(format!(
                "{}: {} reading(s) that no counter can make (going back, or faster than {} kW), first at {first}: left out, the energy counted across them",
                c.channel,
                c.impossible_readings,
                aipm_recording::counter::MAX_CHANNEL_W / 1000
            ));
        }
        if c.periods_without_share > 0 {
            notes.push(format!(
                "{}: {} period(s) without the inputs of the attribution; their energy is left unattributed",
                c.channel, c.periods_without_share
            ));
        }
    }
    // A GPU held but idle most of the job: energy spent for nothing, and a GPU others waited for.
    for c in attribution
        .channels
        .iter()
        .filter(|c| c.channel.starts_with("nvml:"))
    {
        let util: Vec<u64> = rec
            .samples
            .values(&gpu_gauges::column(&c.channel, gpu_gauges::UTIL_PCT))
            .collect();
        if util.len() >= 3 {
            let mean = util.iter().sum::<u64>() as f64 / util.len() as f64;
            if mean < 10.0 {
                notes.push(format!(
                    "{}: idle most of the job (mean utilisation {mean:.0}%): does the job need this GPU?",
                    c.channel.trim_start_matches("nvml:")
                ));
            }
        }
    }
    // NVML's energy counter against its power readings integrated over time: they can
    // disagree (Zeus #181); a large gap points at a counter or a power sensor to doubt.
    for c in attribution
        .channels
        .iter()
        .filter(|c| c.channel.starts_with("nvml:GPU-"))
    {
        let s = &rec.samples;
        let (Some(t), Some(p)) = (
            s.column(TIME_COLUMN),
            s.column(&gpu_gauges::column(&c.channel, gpu_gauges::POWER_MW)),
        ) else {
            continue;
        };
        let (mut integrated_j, mut peak_w) = (0.0, 0.0f64);
        for (a, b) in s.rows.pairs() {
            if let (Some(t0), Some(t1), Some(p0), Some(p1)) =
                (a.get(t), b.get(t), a.get(p), b.get(p))
            {
                // A clock stepped back gives a period of none, not of 584 million years.
                let period_s = t1.saturating_sub(t0) as f64 / 1000.0;
                integrated_j += (p0 as f64 + p1 as f64) / 2.0 / 1000.0 * period_s;
                peak_w = peak_w.max(p0.max(p1) as f64 / 1000.0);
            }
        }
        let counter_j = c.node_uj / 1e6;
        // Power is a 1 s average on Ampere and newer (GA100 aside): integrated, it lags the
        // counter by up to a second of power. The counter moves in steps of about 10 ms of
        // energy, one lost at each end. Neither is a disagreement; a counter that stands still
        // while power is drawn is.
        let allowed_j =
            (COUNTER_POWER_TOLERANCE * counter_j.max(integrated_j)).max(POWER_LAG_S * peak_w);
        if counter_j.max(integrated_j) > 1.0 && (integrated_j - counter_j).abs() > allowed_j {
            notes.push(format!(
                "{}: the energy counter says {counter_j:.1} J, its power readings integrate to {integrated_j:.1} J (more than 10% apart)",
                c.channel
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use aipm_recording::meta::Meta;
    use aipm_recording::samples::{header_line, EnergyValue, SampleRow, Samples};

    /// A GPU whose counter advances `counter_w` while its power sensor reads `sensor_w`,
    /// for 10 s.
    fn gpu_recording(counter_w: u64, sensor_w: u64) -> NodeRecording {
        let rows: Vec<(u64, u64, u64)> = (0..=10u64)
            .map(|t| (t * 1000, counter_w * t, sensor_w))
            .collect();
        gpu_rows(&rows)
    }

    #[test]
    fn a_gpu_counter_that_disagrees_with_its_power_is_noted() {
        let report = NodeReport::from_recording(&gpu_recording(300, 200));
        assert_eq!(report.job_gpu_j, 3000.0);
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(report.notes[0].contains("3000.0 J, its power readings integrate to 2000.0 J"));
        assert!(NodeReport::from_recording(&gpu_recording(300, 290))
            .notes
            .is_empty());
    }

    /// A GPU counter and power readings of `(time ms, counter J, power W)` rows.
    fn gpu_rows(rows: &[(u64, u64, u64)]) -> NodeRecording {
        let mut text = header_line(&["nvml:GPU-1".into()], &["nvml:GPU-1:power_mw".into()]);
        for &(t, j, w) in rows {
            SampleRow {
                time_unix_ms: t,
                energy: vec![Some(EnergyValue {
                    energy_uj: j * 1_000_000,
                    raw: 0,
                })],
                gauges: vec![Some(w * 1000)],
                ..SampleRow::default()
            }
            .format_into(&mut text);
        }
        let end = rows.last().map_or(0, |r| r.0);
        NodeRecording {
            meta: Meta {
                end_unix_ms: Some(end),
                ..Meta::default()
            },
            samples: Samples::parse(&text).unwrap(),
            samples_path: "n.samples.csv".into(),
            claims: Vec::new(),
            samples_missing: false,
        }
    }

    /// Row 8: a 3 s job that goes from idle to 300 W at once. The counter follows; power, a
    /// 1 s average, takes a second to get there: not a disagreement. A counter that stands
    /// still (or moves in steps larger than the job) while power is drawn is one.
    #[test]
    fn power_averaged_over_a_second_is_not_a_counter_disagreement_a_still_counter_is() {
        let averaged = gpu_rows(&[
            (0, 0, 60),
            (500, 150, 180),
            (1000, 300, 300),
            (3000, 900, 300),
        ]);
        let notes = NodeReport::from_recording(&averaged).notes;
        assert!(notes.is_empty(), "{notes:?}");
        let still = gpu_rows(&[(0, 0, 300), (1000, 0, 300), (2000, 0, 300), (3000, 0, 300)]);
        let notes = NodeReport::from_recording(&still).notes;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("says 0.0 J, its power readings integrate to 900.0 J"));
    }

    #[test]
    fn a_gpu_idle_most_of_the_job_is_noted() {
        let mut text = header_line(&["nvml:GPU-1".into()], &["nvml:GPU-1:util_pct".into()]);
        for (t, util) in [3u64, 0, 5, 2].iter().enumerate() {
            SampleRow {
                time_unix_ms: t as u64 * 1000,
                energy: vec![Some(EnergyValue {
                    energy_uj: t as u64 * 1_000_000,
                    raw: 0,
                })],
                gauges: vec![Some(*util)],
                ..SampleRow::default()
            }
            .format_into(&mut text);
        }
        let rec = NodeRecording {
            meta: Meta {
                end_unix_ms: Some(3000),
                ..Meta::default()
            },
            samples: Samples::parse(&text).unwrap(),
            samples_path: "n.samples.csv".into(),
            claims: Vec::new(),
            samples_missing: false,
        };
        let notes = NodeReport::from_recording(&rec).notes;
        assert_eq!(
            notes,
            ["GPU-1: idle most of the job (mean utilisation 2%): does the job need this GPU?"]
        );
    }

    #[test]
    fn a_clock_stepped_back_or_absurd_values_do_not_overflow() {
        // Time goes back 5 s between two samples (NTP stepping the clock); a user's
        // samples file with the largest values and a metadata period of u64::MAX.
        let mut text = header_line(&["nvml:GPU-1".into()], &["nvml:GPU-1:power_mw".into()]);
        for (t, p) in [
            (10_000, 1000),
            (5_000, 1000),
            (6_000, u64::MAX - 1),
            (7_000, u64::MAX - 1),
        ] {
            SampleRow {
                time_unix_ms: t,
                energy: vec![Some(EnergyValue {
                    energy_uj: t,
                    raw: 0,
                })],
                gauges: vec![Some(p)],
                ..SampleRow::default()
            }
            .format_into(&mut text);
        }
        let mut rec = NodeRecording {
            meta: Meta {
                end_unix_ms: Some(7_000),
                start_unix_ms: 10_000,
                ..Meta::default()
            },
            samples: Samples::parse(&text).unwrap(),
            samples_path: "n.samples.csv".into(),
            claims: Vec::new(),
            samples_missing: false,
        };
        let report = NodeReport::from_recording(&rec);
        assert_eq!(report.duration_s, 0.0);
        rec.meta.period_ms = u64::MAX;
        NodeReport::from_recording(&rec);
        rec.meta.period_ms = 100;
        let report = NodeReport::from_recording(&rec);
        // The step back is no gap; the two 1 s periods are, of 0.9 s each.
        assert!(report.notes[0].starts_with("2 gap(s) in the samples, 1.8 s"));
    }

    #[test]
    fn what_a_metadata_file_claimed_is_noted() {
        let mut rec = gpu_recording(300, 300);
        rec.claims = vec!["/s/7/n1.meta.json: claims user \"bob\"".into()];
        let report = NodeReport::from_recording(&rec);
        assert!(report.notes.contains(&rec.claims[0]), "{:?}", report.notes);
    }

    #[test]
    fn an_unfinished_recording_is_noted() {
        let mut rec = gpu_recording(300, 300);
        rec.meta.end_unix_ms = None;
        let report = NodeReport::from_recording(&rec);
        assert!(report.notes[0].contains("has no end"), "{:?}", report.notes);
    }
}
