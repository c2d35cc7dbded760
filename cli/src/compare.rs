//! RAPL + NVML against the wall meter, per node over time: the sensors' per-second power
//! from every recording of the node, the wall's per-second power, both binned.
//!
//! Two jobs on one node record the same node counters: where recordings overlap, each second
//! is taken from the one recording that covers most of it, never summed.

use std::collections::BTreeMap;

use aipm_recording::attribution::{channel_kind, ChannelKind};
use aipm_recording::samples::{channels_of_header, energy_column, TIME_COLUMN};
use serde::Serialize;

use crate::spool::NodeRecording;

/// Energy the sensors saw in one second, and how much of the second they covered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SensorSecond {
    pub cpu_j: f64,
    pub dram_j: f64,
    pub gpu_j: f64,
    pub covered_ms: f64,
}

impl SensorSecond {
    fn total_w(&self) -> f64 {
        self.watts(self.cpu_j + self.dram_j + self.gpu_j)
    }

    /// Energy of this second as a mean power over the part of it the samples covered.
    pub fn watts(&self, joules: f64) -> f64 {
        joules / (self.covered_ms / 1000.0)
    }

    /// Whether samples cover enough of the second for it to count as seen.
    pub fn seen(&self) -> bool {
        self.covered_ms >= SEEN_MS
    }
}

/// A second counts as seen by the sensors when samples cover at least half of it.
const SEEN_MS: f64 = 500.0;

/// The sensors' energy per second over `[from, to)` (Unix s), from a node's recordings.
pub fn sensor_seconds(
    recordings: &[NodeRecording],
    from: i64,
    to: i64,
) -> BTreeMap<i64, SensorSecond> {
    let mut best: BTreeMap<i64, SensorSecond> = BTreeMap::new();
    for rec in recordings {
        for (second, value) in one_recording(rec, from, to) {
            let slot = best.entry(second).or_default();
            if value.covered_ms > slot.covered_ms {
                *slot = value;
            }
        }
    }
    best
}

fn one_recording(rec: &NodeRecording, from: i64, to: i64) -> BTreeMap<i64, SensorSecond> {
    let s = &rec.samples;
    let mut out: BTreeMap<i64, SensorSecond> = BTreeMap::new();
    let Some(time) = s.column(TIME_COLUMN) else {
        return out;
    };
    // Package parts (core, uncore) are inside their package; psys includes the packages.
    let channels: Vec<(ChannelKind, usize)> = channels_of_header(&s.columns)
        .iter()
        .filter_map(|c| {
            let kind = channel_kind(c);
            let wanted = matches!(
                kind,
                ChannelKind::Package | ChannelKind::Dram | ChannelKind::Gpu
            );
            wanted.then(|| Some((kind, s.column(&energy_column(c))?)))?
        })
        .collect();
    // A reading no counter can make (`counter::periods`) gives its two periods no energy,
    // rather than a second of any power.
    let impossible: Vec<std::collections::BTreeSet<usize>> = channels
        .iter()
        .map(|(_, column)| {
            aipm_recording::counter::periods(&s.rows, time, *column)
                .impossible
                .into_iter()
                .collect()
        })
        .collect();
    for (i, (a, b)) in s.rows.pairs().enumerate() {
        let (Some(t0), Some(t1)) = (a.get(time), b.get(time)) else {
            continue;
        };
        if t1 <= t0 {
            continue;
        }
        let mut joules = [0.0f64; 3];
        for ((kind, column), impossible) in channels.iter().zip(&impossible) {
            if impossible.contains(&i) || impossible.contains(&(i + 1)) {
                continue;
            }
            let Some(d) = b
                .get(*column)
                .zip(a.get(*column))
                .and_then(|(b, a)| b.checked_sub(a))
            else {
                continue;
            };
            let slot = match kind {
                ChannelKind::Package => 0,
                ChannelKind::Dram => 1,
                _ => 2,
            };
            joules[slot] += d as f64 / 1e6;
        }
        let span_ms = (t1 - t0) as f64;
        let first = (t0 / 1000) as i64;
        let last = (t1.div_ceil(1000) as i64).max(first + 1);
        for second in first.max(from)..last.min(to) {
            let start = (second * 1000).max(t0 as i64) as f64;
            let end = ((second + 1) * 1000).min(t1 as i64) as f64;
            if end <= start {
                continue;
            }
            let share = (end - start) / span_ms;
            let slot = out.entry(second).or_default();
            slot.cpu_j += joules[0] * share;
            slot.dram_j += joules[1] * share;
            slot.gpu_j += joules[2] * share;
            slot.covered_ms += end - start;
        }
    }
    out
}

/// One bin of the comparison. Powers are means over the seconds that had data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bin {
    pub start_unix_s: i64,
    pub end_unix_s: i64,
    /// Share of the bin seen by the sensors (recordings), and by the wall meter.
    pub sensor_coverage: f64,
    pub wall_coverage: f64,
    pub cpu_w: Option<f64>,
    pub dram_w: Option<f64>,
    pub gpu_w: Option<f64>,
    /// CPU packages + DRAM + GPUs.
    pub sensors_w: Option<f64>,
    pub wall_w: Option<f64>,
    /// Wall over sensors, on the seconds both saw (at least a minute of them, or the whole bin).
    pub ratio: Option<f64>,
    /// `wall-below-sensors` (impossible: a mis-wired channel or a wrong map), `drift` (the
    /// ratio strays from the node's usual one: a sensor or a channel to check),
    /// `psu-share` (a PSU's share of the wall power strays from its usual one), or empty.
    pub flag: String,
    /// Each PSU's share of the node's wall power over the bin, in the channel map's order
    /// (empty without wall data).
    pub psu_shares: Vec<f64>,
}

/// How far a bin's ratio may stray from the node's median before it is flagged.
pub const DRIFT: f64 = 0.15;

pub fn bins(
    sensors: &BTreeMap<i64, SensorSecond>,
    wall: &BTreeMap<i64, f64>,
    from: i64,
    to: i64,
    every: i64,
) -> Vec<Bin> {
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        // Bins without any data are left out (the caller counts them), so that a window of
        // years over a day of data costs a day's bins.
        let next_data = [
            sensors.range(start..).next().map(|(s, _)| *s),
            wall.range(start..).next().map(|(s, _)| *s),
        ]
        .into_iter()
        .flatten()
        .min();
        match next_data {
            Some(second) if second < to => start += (second - start) / every * every,
            _ => break,
        }
        let end = (start + every).min(to);
        let length = (end - start) as f64;
        let seen: Vec<(&i64, &SensorSecond)> = sensors
            .range(start..end)
            .filter(|(_, v)| v.seen())
            .collect();
        let walled: Vec<(&i64, &f64)> = wall.range(start..end).collect();
        let covered_s: f64 = seen.iter().map(|(_, v)| v.covered_ms / 1000.0).sum();
        let mean = |f: fn(&SensorSecond) -> f64| {
            (covered_s > 0.0).then(|| seen.iter().map(|(_, v)| f(v)).sum::<f64>() / covered_s)
        };
        let (cpu_w, dram_w, gpu_w) = (mean(|v| v.cpu_j), mean(|v| v.dram_j), mean(|v| v.gpu_j));
        let sensors_w = mean(|v| v.cpu_j + v.dram_j + v.gpu_j);
        let wall_w = (!walled.is_empty())
            .then(|| walled.iter().map(|(_, w)| **w).sum::<f64>() / walled.len() as f64);
        let both: Vec<(f64, f64)> = seen
            .iter()
            .filter_map(|(s, v)| Some((*wall.get(s)?, v.total_w())))
            .collect();
        let enough = both.len() >= 60 || both.len() as f64 >= length;
        let ratio = (enough && !both.is_empty()).then(|| {
            let sensors: f64 = both.iter().map(|(_, s)| s).sum();
            both.iter().map(|(w, _)| w).sum::<f64>() / sensors
        });
        out.push(Bin {
            start_unix_s: start,
            end_unix_s: end,
            sensor_coverage: seen.len() as f64 / length,
            wall_coverage: walled.len() as f64 / length,
            cpu_w,
            dram_w,
            gpu_w,
            sensors_w,
            wall_w,
            ratio: ratio.filter(|r| r.is_finite()),
            flag: String::new(),
            psu_shares: Vec::new(),
        });
        start = end;
    }
    flag(&mut out);
    out
}

/// How many bins of `every` seconds `[from, to)` makes: the bins `bins` left out are the
/// others.
pub fn bin_count(from: i64, to: i64, every: i64) -> u64 {
    ((to - from).max(0) as u64).div_ceil(every.max(1) as u64)
}

/// The node's usual wall / sensors ratio: the median over the bins that have one.
pub fn median_ratio(bins: &[Bin]) -> Option<f64> {
    let mut ratios: Vec<f64> = bins.iter().filter_map(|b| b.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied()
}

/// Each PSU's share of the wall power per bin (on the seconds every PSU has), and a
/// `psu-share` flag on a bin not flagged otherwise where a share strays more than [`DRIFT`]
/// from that PSU's median: a channel reading 30% high on a PSU that carries a third of the
/// node moves the node's ratio by less than the drift rule sees, its share by more.
pub fn flag_psu_shares(bins: &mut [Bin], psus: &[BTreeMap<i64, f64>]) {
    if psus.len() < 2 {
        return;
    }
    for b in bins.iter_mut() {
        let mut sums = vec![0.0; psus.len()];
        for (second, first) in psus[0].range(b.start_unix_s..b.end_unix_s) {
            let rest: Option<Vec<f64>> = psus[1..].iter().map(|p| p.get(second).copied()).collect();
            if let Some(rest) = rest {
                for (sum, w) in sums.iter_mut().zip(std::iter::once(*first).chain(rest)) {
                    *sum += w;
                }
            }
        }
        let total: f64 = sums.iter().sum();
        if total > 0.0 {
            b.psu_shares = sums.iter().map(|w| w / total).collect();
        }
    }
    let medians: Vec<Option<f64>> = (0..psus.len())
        .map(|i| {
            let mut shares: Vec<f64> = bins
                .iter()
                .filter_map(|b| b.psu_shares.get(i).copied())
                .collect();
            shares.sort_by(f64::total_cmp);
            shares.get(shares.len() / 2).copied()
        })
        .collect();
    for b in bins.iter_mut().filter(|b| b.flag.is_empty()) {
        let strays = b.psu_shares.iter().zip(&medians).any(|(share, median)| {
            median.is_some_and(|m| m > 0.0 && (share / m - 1.0).abs() > DRIFT)
        });
        if strays {
            b.flag = "psu-share".into();
        }
    }
}

/// Flag each bin against the node's median ratio.
fn flag(bins: &mut [Bin]) {
    let Some(median) = median_ratio(bins) else {
        return;
    };
    for b in bins.iter_mut() {
        if let Some(r) = b.ratio {
            if r < 1.0 {
                b.flag = "wall-below-sensors".into();
            } else if (r / median - 1.0).abs() > DRIFT {
                b.flag = "drift".into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensors(seconds: std::ops::Range<i64>, watts: f64) -> BTreeMap<i64, SensorSecond> {
        seconds
            .map(|s| {
                (
                    s,
                    SensorSecond {
                        cpu_j: watts,
                        covered_ms: 1000.0,
                        ..SensorSecond::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_bin_whose_ratio_strays_is_flagged() {
        let s = sensors(0..400, 100.0);
        let mut wall: BTreeMap<i64, f64> = (0..400).map(|s| (s, 130.0)).collect();
        // The third 100 s: the wall reads 200 W (a channel moved to another node's PSU).
        for second in 200..300 {
            wall.insert(second, 200.0);
        }
        // The last: below the sensors, impossible.
        for second in 300..400 {
            wall.insert(second, 90.0);
        }
        let b = bins(&s, &wall, 0, 400, 100);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0].ratio, Some(1.3));
        assert_eq!(b[0].flag, "");
        assert_eq!(b[2].flag, "drift");
        assert_eq!(b[3].flag, "wall-below-sensors");
        assert_eq!((b[0].sensor_coverage, b[0].wall_coverage), (1.0, 1.0));
    }

    #[test]
    fn a_bin_without_enough_common_seconds_has_no_ratio() {
        let s = sensors(0..30, 100.0);
        let wall: BTreeMap<i64, f64> = (0..100).map(|s| (s, 130.0)).collect();
        let b = bins(&s, &wall, 0, 100, 100);
        assert_eq!(b[0].ratio, None);
        assert_eq!(b[0].sensor_coverage, 0.3);
        assert_eq!(b[0].sensors_w, Some(100.0));
    }

    /// Centuries in one-second bins over two minutes of data: the data's bins, in order, and
    /// the empty ones counted, not built.
    #[test]
    fn empty_bins_cost_nothing() {
        let t = 1_700_000_000;
        let sensors = sensors(t..t + 60, 100.0);
        let wall: BTreeMap<i64, f64> = (t + 30..t + 120).map(|s| (s, 150.0)).collect();
        let (from, to) = (0, crate::window::LATEST_S);
        let out = bins(&sensors, &wall, from, to, 1);
        assert_eq!(out.len(), 120);
        assert_eq!(out[0].start_unix_s, t);
        assert_eq!(out[119].end_unix_s, t + 120);
        assert_eq!(
            bin_count(from, to, 1) - out.len() as u64,
            7_258_118_400 - 120
        );
        // Bins stay aligned on --from.
        let out = bins(&sensors, &wall, 7, to, 3600);
        assert_eq!(out[0].start_unix_s, 7 + (t - 7) / 3600 * 3600);
    }

    /// Two PSUs carrying 30% and 70% of a node; in the third bin the first reads 30% high:
    /// the node's ratio moves by 9% (under the drift rule), the PSU's share by 19%.
    #[test]
    fn a_psu_reading_high_is_flagged_by_its_share() {
        let s = sensors(0..400, 100.0);
        let low: BTreeMap<i64, f64> = (0..400)
            .map(|t| (t, if (200..300).contains(&t) { 39.0 } else { 30.0 }))
            .collect();
        let high: BTreeMap<i64, f64> = (0..400).map(|t| (t, 70.0)).collect();
        let wall: BTreeMap<i64, f64> = (0..400).map(|t| (t, low[&t] + high[&t])).collect();
        let mut out = bins(&s, &wall, 0, 400, 100);
        assert!(out.iter().all(|b| b.flag.is_empty()), "{out:?}");
        flag_psu_shares(&mut out, &[low, high]);
        let flags: Vec<&str> = out.iter().map(|b| b.flag.as_str()).collect();
        assert_eq!(flags, ["", "", "psu-share", ""]);
        assert!((out[0].psu_shares[0] - 0.3).abs() < 1e-9);
    }

    /// A package counter that reads 2^64 - 2 for one sample: no second of exawatts.
    #[test]
    fn a_reading_no_counter_can_make_gives_no_power() {
        let mut text = "time_unix_ms,rapl:package-0:energy_uj,rapl:package-0:raw\n".to_string();
        for k in 0..10u64 {
            let energy = if k == 5 { u64::MAX - 1 } else { k * 40_000_000 };
            text.push_str(&format!("{},{energy},0\n", 1_000_000 + k * 1000));
        }
        let rec = crate::spool::NodeRecording {
            meta: aipm_recording::meta::Meta::default(),
            samples: aipm_recording::samples::Samples::parse(&text).unwrap(),
            samples_path: std::path::PathBuf::new(),
            claims: Vec::new(),
            samples_missing: false,
        };
        let seconds = sensor_seconds(&[rec], 0, 2000);
        assert!(
            seconds.values().all(|v| v.cpu_j <= 40.0 + 1e-9),
            "{seconds:?}"
        );
        assert!(seconds.values().filter(|v| v.cpu_j > 0.0).count() >= 7);
    }
}
