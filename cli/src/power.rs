//! Power over time from a recording's energy counters: what the plots draw and where peak
//! powers come from.

use aipm_recording::attribution::{channel_kind, ChannelKind};
use aipm_recording::samples::{channels_of_header, energy_column, Samples, TIME_COLUMN};

/// One channel's power between consecutive samples: `(mid-point in Unix s, W)`. An interval
/// whose counter is missing or went backwards (a reset) is left out.
pub fn channel_power(s: &Samples, channel: &str) -> Vec<(f64, f64)> {
    channels_power(s, &[channel]).collect()
}

/// One channel's highest power over intervals of at least `min_interval_ms` (0 without
/// any). Samples a few milliseconds apart (two samplers at a handover, a last sample just
/// after the one before) give a power that is mostly the counter's rounding (seen: 340 W
/// on a 60 W node over 5 ms): such intervals are joined to the next until long enough.
pub fn channel_peak_power(s: &Samples, channel: &str, min_interval_ms: u64) -> f64 {
    let (Some(time), Some(energy)) = (s.column(TIME_COLUMN), s.column(&energy_column(channel)))
    else {
        return 0.0;
    };
    let mut peak = 0.0_f64;
    let mut anchor: Option<(u64, u64)> = None;
    for row in s.rows.iter() {
        let (Some(t), Some(e)) = (row.get(time), row.get(energy)) else {
            continue;
        };
        match anchor {
            // A counter that went backwards (a reset) starts again from here.
            Some((t0, e0)) if e >= e0 && t > t0 => {
                if t - t0 >= min_interval_ms.max(1) {
                    peak = peak.max((e - e0) as f64 / (t - t0) as f64 / 1000.0);
                    anchor = Some((t, e));
                }
            }
            Some((t0, _)) if t <= t0 => {}
            _ => anchor = Some((t, e)),
        }
    }
    peak
}

/// The summed power of `channels` between consecutive samples, in one pass; an interval
/// where any of them is missing or went backwards is left out.
fn channels_power<'a>(s: &'a Samples, channels: &[&str]) -> impl Iterator<Item = (f64, f64)> + 'a {
    let time = s.column(TIME_COLUMN);
    let columns: Option<Vec<usize>> = channels
        .iter()
        .map(|c| s.column(&energy_column(c)))
        .collect();
    let readable = time.zip(columns);
    readable.into_iter().flat_map(move |(time, columns)| {
        s.rows.pairs().filter_map(move |(a, b)| {
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
        assert_eq!(channel_peak_power(&s, "rapl:package-0", 500), 30.0);
        let parts = components(&s);
        assert_eq!(parts.len(), 1, "core is inside package-0: {parts:?}");
        assert_eq!(parts[0].0, "CPU packages");
        assert_eq!(parts[0].1, [(1.5, 40.0), (3.0, 40.0)]);
    }

    #[test]
    fn a_peak_is_never_taken_over_a_few_milliseconds() {
        // 60 W, sampled every second; at 2.000 s a handover takes a second sample 5 ms
        // later, when the counter has just caught up by 1.7 J: 340 W over those 5 ms.
        let text = "time_unix_ms,rapl:package-0:energy_uj,rapl:package-0:raw\n\
                    1000,0,0\n\
                    2000,60000000,0\n\
                    2005,61700000,0\n\
                    3000,120000000,0\n";
        let s = Samples::parse(text).unwrap();
        let naive = channel_power(&s, "rapl:package-0")
            .into_iter()
            .map(|(_, w)| w)
            .fold(0.0, f64::max);
        assert!(naive > 300.0, "{naive}");
        let peak = channel_peak_power(&s, "rapl:package-0", 500);
        assert!((peak - 60.0).abs() < 0.01, "{peak}");
    }
}
