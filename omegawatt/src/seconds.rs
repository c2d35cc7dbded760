//! Per-second statistics of each plug: the mean of every valid frame in the second (not
//! one instantaneous frame, as the Lab IA's every-100th-line copy gives), min, max, and how
//! many frames were valid or invalid. One row per second per plug.

use std::collections::BTreeMap;

use super::stream::{Frame, Header};

#[derive(Debug, Clone, PartialEq)]
pub struct SecondRow {
    /// Seconds since the epoch (the second the frames fall in).
    pub second: i64,
    pub plug: u32,
    pub mean_w: f64,
    pub min_w: f64,
    pub max_w: f64,
    pub valid_frames: u32,
    pub invalid_frames: u32,
}

#[derive(Debug, Clone, Copy)]
struct PlugAcc {
    sum_milli: i64,
    n: u32,
    min: i32,
    max: i32,
}

impl Default for PlugAcc {
    fn default() -> Self {
        PlugAcc {
            sum_milli: 0,
            n: 0,
            min: i32::MAX,
            max: i32::MIN,
        }
    }
}

#[derive(Debug, Clone)]
struct SecondAcc {
    invalid: u32,
    plugs: Vec<PlugAcc>,
}

/// Accumulates frames by second. Kept in a map, so frames after a clock step back land in
/// their own second.
#[derive(Debug)]
pub struct PerSecond {
    /// (plug, index of its value in `Frame::milli`).
    plugs: Vec<(u32, usize)>,
    seconds: BTreeMap<i64, SecondAcc>,
}

impl PerSecond {
    pub fn new(header: &Header) -> PerSecond {
        PerSecond::for_plugs(header, &header.plugs())
    }

    /// Only some plugs (a node's): less memory over a long log. Plugs not in the header
    /// are left out; check them first with `channels::check_header`.
    pub fn for_plugs(header: &Header, plugs: &[u32]) -> PerSecond {
        let plugs = plugs
            .iter()
            .filter_map(|p| Some((*p, header.power_columns.get(p)? - 2)))
            .collect();
        PerSecond {
            plugs,
            seconds: BTreeMap::new(),
        }
    }

    /// The plugs accumulated, in order.
    pub fn plugs(&self) -> Vec<u32> {
        self.plugs.iter().map(|(p, _)| *p).collect()
    }

    pub fn add(&mut self, frame: &Frame) {
        let second = frame.time_ns.div_euclid(1_000_000_000);
        let width = self.plugs.len();
        let acc = self.seconds.entry(second).or_insert_with(|| SecondAcc {
            invalid: 0,
            plugs: vec![PlugAcc::default(); width],
        });
        if !frame.ok {
            acc.invalid += 1;
            return;
        }
        for (slot, &(_, index)) in acc.plugs.iter_mut().zip(&self.plugs) {
            if let Some(Some(v)) = frame.milli.get(index) {
                slot.sum_milli += i64::from(*v);
                slot.n += 1;
                slot.min = slot.min.min(*v);
                slot.max = slot.max.max(*v);
            }
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = SecondRow> + '_ {
        self.seconds.iter().flat_map(move |(&second, acc)| {
            acc.plugs
                .iter()
                .zip(&self.plugs)
                .map(move |(p, &(plug, _))| row(second, plug, p, acc.invalid))
        })
    }

    /// One plug's rows, in time order.
    pub fn rows_of(&self, plug: u32) -> impl Iterator<Item = SecondRow> + '_ {
        let slot = self.plugs.iter().position(|(p, _)| *p == plug);
        self.seconds.iter().filter_map(move |(&second, acc)| {
            let slot = slot?;
            Some(row(second, plug, &acc.plugs[slot], acc.invalid))
        })
    }

    /// Rows `rows()` gives: seconds times plugs.
    pub fn row_count(&self) -> usize {
        self.seconds.len() * self.plugs.len()
    }

    /// The first and last second with a frame.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((
            *self.seconds.keys().next()?,
            *self.seconds.keys().next_back()?,
        ))
    }
}

fn row(second: i64, plug: u32, p: &PlugAcc, invalid: u32) -> SecondRow {
    let valid = p.n > 0;
    let watts = |milli: f64| if valid { milli / 1000.0 } else { f64::NAN };
    SecondRow {
        second,
        plug,
        mean_w: watts(p.sum_milli as f64 / f64::from(p.n.max(1))),
        min_w: watts(f64::from(p.min)),
        max_w: watts(f64::from(p.max)),
        valid_frames: p.n,
        invalid_frames: invalid,
    }
}

/// `(second, watts)` for the seconds in which every one of `plugs` (a node's PSUs) has
/// frames, their means summed, in order. A plug's rows of the same second (a second in two
/// days' files, when the meter's clock stepped back across the rotation) are merged first:
/// their means weighted by their frames.
pub fn whole_node_seconds<R: std::borrow::Borrow<SecondRow>>(
    rows: impl IntoIterator<Item = R>,
    plugs: &[u32],
) -> Vec<(i64, f64)> {
    let mut entries: Vec<(i64, u32, f64, f64)> = rows
        .into_iter()
        .filter_map(|r| {
            let r = r.borrow();
            (plugs.contains(&r.plug) && r.valid_frames > 0).then_some((
                r.second,
                r.plug,
                r.mean_w,
                f64::from(r.valid_frames),
            ))
        })
        .collect();
    entries.sort_by_key(|&(second, plug, _, _)| (second, plug));
    let merged: Vec<(i64, f64)> = entries
        .chunk_by(|a, b| (a.0, a.1) == (b.0, b.1))
        .map(|group| {
            let frames: f64 = group.iter().map(|e| e.3).sum();
            let weighted: f64 = group.iter().map(|e| e.2 * e.3).sum();
            (
                group[0].0,
                if group.len() == 1 {
                    group[0].2
                } else {
                    weighted / frames
                },
            )
        })
        .collect();
    sum_whole_seconds(merged, plugs.len()).0
}

/// `(second, mean watts)` of each of `plugs`' rows that has frames.
pub fn plug_seconds<R: std::borrow::Borrow<SecondRow>>(
    rows: impl IntoIterator<Item = R>,
    plugs: &[u32],
) -> Vec<(i64, f64)> {
    rows.into_iter()
        .filter_map(|r| {
            let r = r.borrow();
            (plugs.contains(&r.plug) && r.valid_frames > 0).then_some((r.second, r.mean_w))
        })
        .collect()
}

/// From each plug's `(second, mean watts)` for the seconds it has frames (one per plug and
/// second), the seconds that all `plugs` have, their powers summed, in order; and the
/// seconds with more entries than plugs (a second in two days' files), left out here: which
/// entry is which plug's is not known from these pairs, so the caller merges them from
/// whole rows (`whole_node_seconds`).
pub fn sum_whole_seconds(
    mut plug_seconds: Vec<(i64, f64)>,
    plugs: usize,
) -> (Vec<(i64, f64)>, Vec<i64>) {
    // Stable, so that equal seconds keep the plugs' order and sum the same way each time;
    // rows sorted by plug then time are a few runs, merged in linear time.
    plug_seconds.sort_by_key(|(second, _)| *second);
    let mut duplicated = Vec::new();
    let seconds = plug_seconds
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|group| {
            if group.len() > plugs {
                duplicated.push(group[0].0);
            }
            group.len() == plugs
        })
        .map(|group| (group[0].0, group.iter().map(|(_, w)| w).sum()))
        .collect();
    (seconds, duplicated)
}

/// Energy and coverage of one plug (or the sum of several, a node's PSUs) over the seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub seconds_covered: u64,
    /// Seconds between the first and the last covered second that have no valid frame.
    pub seconds_missing: u64,
    pub energy_wh: f64,
    pub mean_w: f64,
    pub median_w: f64,
    pub min_w: f64,
    pub max_w: f64,
    pub first_second: Option<i64>,
    pub last_second: Option<i64>,
}

/// Sum the plugs' per-second means (a node's PSUs), over seconds in `[from, to)`.
pub fn summarize(
    rows: impl IntoIterator<Item = SecondRow>,
    plugs: &[u32],
    from: Option<i64>,
    to: Option<i64>,
) -> Summary {
    let inside =
        |r: &SecondRow| from.is_none_or(|f| r.second >= f) && to.is_none_or(|t| r.second < t);
    let seconds = whole_node_seconds(rows.into_iter().filter(inside), plugs);
    let covered: Vec<i64> = seconds.iter().map(|(s, _)| *s).collect();
    let mut powers: Vec<f64> = seconds.iter().map(|(_, w)| *w).collect();
    let mut summary = Summary::default();
    if powers.is_empty() {
        return summary;
    }
    summary.seconds_covered = powers.len() as u64;
    summary.first_second = covered.first().copied();
    summary.last_second = covered.last().copied();
    let span = (covered[covered.len() - 1] - covered[0] + 1) as u64;
    summary.seconds_missing = span - summary.seconds_covered;
    let total: f64 = powers.iter().sum();
    summary.energy_wh = total / 3600.0;
    summary.mean_w = total / powers.len() as f64;
    powers.sort_by(f64::total_cmp);
    summary.min_w = powers[0];
    summary.max_w = powers[powers.len() - 1];
    let mid = powers.len() / 2;
    summary.median_w = if powers.len().is_multiple_of(2) {
        (powers[mid - 1] + powers[mid]) / 2.0
    } else {
        powers[mid]
    };
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Header;

    fn header() -> Header {
        Header::parse("#timestamp,#frame_is_ok,#U1,#current1,#activepow1,#current2,#activepow2")
            .unwrap()
    }

    /// A frame with the two plugs' powers in tenths of a watt, as the meter prints them.
    fn frame(ns: i64, ok: bool, p1: i32, p2: i32) -> Frame {
        Frame {
            time_ns: ns,
            ok,
            milli: if ok {
                vec![
                    Some(230_000),
                    Some(100),
                    Some(p1 * 100),
                    Some(100),
                    Some(p2 * 100),
                ]
            } else {
                vec![None; 5]
            },
        }
    }

    #[test]
    fn means_min_max_and_counts_per_second() {
        let mut s = PerSecond::new(&header());
        s.add(&frame(10_000_000_000, true, 1000, 50));
        s.add(&frame(10_500_000_000, true, 2000, 70));
        s.add(&frame(10_900_000_000, false, 0, 0));
        s.add(&frame(11_000_000_000, true, 300, 10));
        let rows: Vec<SecondRow> = s.rows().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            (
                rows[0].second,
                rows[0].plug,
                rows[0].mean_w,
                rows[0].min_w,
                rows[0].max_w
            ),
            (10, 1, 150.0, 100.0, 200.0)
        );
        assert_eq!((rows[0].valid_frames, rows[0].invalid_frames), (2, 1));
        assert_eq!((rows[3].second, rows[3].plug, rows[3].mean_w), (11, 2, 1.0));
    }

    #[test]
    fn a_node_sums_its_psus_and_reports_missing_seconds() {
        let mut s = PerSecond::new(&header());
        for sec in [0i64, 1, 2, 5] {
            s.add(&frame(sec * 1_000_000_000, true, 1000, 500));
        }
        let rows: Vec<SecondRow> = s.rows().collect();
        let sum = summarize(rows.clone(), &[1, 2], None, None);
        assert_eq!((sum.seconds_covered, sum.seconds_missing), (4, 2));
        assert!((sum.energy_wh - 4.0 * 150.0 / 3600.0).abs() < 1e-12);
        assert_eq!(
            (sum.mean_w, sum.median_w, sum.min_w, sum.max_w),
            (150.0, 150.0, 150.0, 150.0)
        );
        let window = summarize(rows, &[1, 2], Some(1), Some(3));
        assert_eq!(window.seconds_covered, 2);
    }
}
