//! Power over time from a recording's energy counters: what the plots draw and where peak
//! powers come from.

use aipm_recording::attribution::{channel_kind, ChannelKind};
use aipm_recording::counter;
use aipm_recording::samples::{channels_of_header, energy_column, Samples, TIME_COLUMN};

/// One channel's power between consecutive samples: `(mid-point in Unix s, W)`. An interval
/// whose counter is missing, went backwards (a reset) or touches a reading no counter can
/// make is left out.
pub fn channel_power(s: &Samples, channel: &str) -> Vec<(f64, f64)> {
    channels_power(s, &[channel]).collect()
}

/// One channel's highest power between consecutive samples (0 without any).
pub fn channel_peak_power(s: &Samples, channel: &str) -> f64 {
    channels_power(s, &[channel])
        .map(|(_, w)| w)
        .fold(0.0, f64::max)
}

/// The summed power of `channels` between consecutive samples, in one pass; an interval
/// where any of them is missing or went backwards is left out, and one much shorter than the
/// recording's usual interval is merged into the one before it (`boundaries`).
fn channels_power<'a>(s: &'a Samples, channels: &[&str]) -> impl Iterator<Item = (f64, f64)> + 'a {
    let time = s.column(TIME_COLUMN);
    let columns: Option<Vec<usize>> = channels
        .iter()
        .map(|c| s.column(&energy_column(c)))
        .collect();
    let readable = time.zip(columns);
    readable.into_iter().flat_map(move |(time, columns)| {
        // A reading no counter can make would draw a spike (or a hole) of any height.
        let impossible: std::collections::BTreeSet<usize> = columns
            .iter()
            .flat_map(|&c| counter::periods(&s.rows, time, c).impossible)
            .collect();
        let rows = boundaries(s, time);
        let pairs: Vec<(usize, usize)> = rows.windows(2).map(|w| (w[0], w[1])).collect();
        pairs.into_iter().filter_map(move |(i, j)| {
            if impossible.contains(&i) || impossible.contains(&j) {
                return None;
            }
            let (a, b) = (s.rows.get(i)?, s.rows.get(j)?);
            let (t0, t1) = (a.get(time)?, b.get(time)?);
            let d_uj = columns
                .iter()
                .map(|&c| b.get(c)?.checked_sub(a.get(c)?))
                .sum::<Option<u64>>()?;
            (t1 > t0).then(|| {
                let mid_s = (t0 + t1) as f64 / 2000.0;
                (mid_s, d_uj as f64 / (t1 - t0) as f64 / 1000.0)
            })
        })
    })
}

/// The rows that bound the power intervals: every row, except that an interval shorter than
/// half the recording's median interval (a last sample taken 4 ms after the one before)
/// ends the interval before it instead. Over so short a time the counter's update
/// granularity, not the power, makes the figure: a steady 40 W read as 101 W.
fn boundaries(s: &Samples, time: usize) -> Vec<usize> {
    let times: Vec<(usize, u64)> = s
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.get(time)?)))
        .collect();
    let mut steps: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .collect();
    steps.sort_unstable();
    let shortest = steps.get(steps.len() / 2).map_or(0, |median| median / 2);
    let mut kept: Vec<(usize, u64)> = Vec::with_capacity(times.len());
    for (i, t) in times {
        match kept.last() {
            Some(&(_, last)) if t.saturating_sub(last) < shortest && kept.len() > 1 => {
                *kept.last_mut().expect("a row kept") = (i, t);
            }
            _ => kept.push((i, t)),
        }
    }
    kept.into_iter().map(|(i, _)| i).collect()
}

/// The node's power per component, as people group it: CPU packages (summed), DRAM
/// (summed), the platform (psys) and each GPU. Parts of a package (`core`, `uncore`) are in
/// the package already and left out.
pub fn components(s: &Samples) -> Vec<(String, Vec<(f64, f64)>)> {
    let channels = channels_of_header(&s.columns);
    let of_kind = |kind: ChannelKind| -> Vec<&str> {
        channels
            .iter()
            .filter(|c| channel_kind(c) == kind)
            .map(String::as_str)
            .collect()
    };
    let mut out = Vec::new();
    for (name, kind) in [
        ("CPU packages", ChannelKind::Package),
        ("DRAM", ChannelKind::Dram),
        ("platform (psys)", ChannelKind::Platform),
    ] {
        let members = of_kind(kind);
        if !members.is_empty() {
            out.push((name.to_string(), channels_power(s, &members).collect()));
        }
    }
    for gpu in of_kind(ChannelKind::Gpu) {
        let short: String = gpu.trim_start_matches("nvml:").chars().take(12).collect();
        out.push((format!("GPU {short}"), channel_power(s, gpu)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_from_counter_deltas_and_components_summed() {
        let text = "time_unix_ms,rapl:package-0:energy_uj,rapl:package-0:raw,rapl:package-1:energy_uj,rapl:package-1:raw,rapl:package-0/core:energy_uj,rapl:package-0/core:raw\n\
                    1000,0,0,0,0,0,0\n\
                    2000,30000000,0,10000000,0,5000000,0\n\
                    4000,90000000,0,30000000,0,9000000,0\n";
        let s = Samples::parse(text).unwrap();
        assert_eq!(
            channel_power(&s, "rapl:package-0"),
            [(1.5, 30.0), (3.0, 30.0)]
        );
        let parts = components(&s);
        assert_eq!(parts.len(), 1, "core is inside package-0: {parts:?}");
        assert_eq!(parts[0].0, "CPU packages");
        assert_eq!(parts[0].1, [(1.5, 40.0), (3.0, 40.0)]);
    }

    /// A steady 40 W sampled every 500 ms with a last sample 4 ms after the one before,
    /// whose counter moved by one 1 ms update of 101 W: no 101 W peak.
    #[test]
    fn an_interval_far_shorter_than_the_others_is_merged() {
        let mut text = "time_unix_ms,rapl:package-0:energy_uj,rapl:package-0:raw\n".to_string();
        for k in 0..=12u64 {
            text.push_str(&format!("{},{},0\n", k * 500, k * 20_000_000));
        }
        text.push_str(&format!("{},{},0\n", 6004, 12 * 20_000_000 + 404_000));
        let s = Samples::parse(&text).unwrap();
        let peak = channel_peak_power(&s, "rapl:package-0");
        assert!((40.0..41.0).contains(&peak), "{peak}");
        let points = channel_power(&s, "rapl:package-0");
        assert_eq!(points.len(), 12);
        assert_eq!(points[11].0, (5500.0 + 6004.0) / 2000.0);
    }
}
