//! Tick positions and labels: round numbers of watts, round steps of local time.

use chrono::{Local, TimeZone};

/// Ticks from 0 (or below, for negative data) to at least `max`, at a step of 1, 2 or 5
/// times a power of ten, about `target` of them. Returns (top of the axis, ticks).
pub fn value_ticks(min: f64, max: f64, target: usize) -> (f64, f64, Vec<f64>) {
    let low = min.min(0.0);
    let high = if max > low { max } else { low + 1.0 };
    let raw = (high - low) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let bottom = (low / step).floor() * step;
    let top = (high / step).ceil() * step;
    let count = ((top - bottom) / step).round() as usize;
    let ticks = (0..=count).map(|i| bottom + i as f64 * step).collect();
    (bottom, top, ticks)
}

/// Steps a time axis may use, in seconds.
const TIME_STEPS: [i64; 20] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800,
];

/// Ticks on whole local steps between `from` and `to` (Unix seconds), about `target` of them,
/// with their labels (`14:05`, `14:05:30`, or `11-16 14:00` when the axis spans days).
pub fn time_ticks(from: f64, to: f64, target: usize) -> Vec<(f64, String)> {
    let span = (to - from).max(1.0);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= target as f64)
        .unwrap_or(TIME_STEPS[TIME_STEPS.len() - 1]);
    let format = if step < 60 {
        "%H:%M:%S"
    } else if span > 86_400.0 {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    // Steps align on local time: a tick at 14:00 local, not at a multiple of UTC seconds.
    let offset = local_offset(from);
    let first = (((from.ceil() as i64 + offset) + step - 1).div_euclid(step)) * step - offset;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| (*t as f64) <= to)
        .map(|t| (t as f64, local(t).format(format).to_string()))
        .collect()
}

fn local(t: i64) -> chrono::DateTime<Local> {
    Local
        .timestamp_opt(t, 0)
        .single()
        .unwrap_or_else(|| Local.timestamp_opt(0, 0).unwrap())
}

fn local_offset(t: f64) -> i64 {
    i64::from(local(t as i64).offset().local_minus_utc())
}

/// `2023-11-16 14:05` in local time, for titles.
pub fn local_label(t: i64) -> String {
    local(t).format("%Y-%m-%d %H:%M").to_string()
}

/// `local time, 2023-11-16 (UTC+01:00)`: what the time axis shows.
pub fn time_caption(from: f64, to: f64) -> String {
    let (a, b) = (local(from as i64), local(to as i64));
    let dates = if a.date_naive() == b.date_naive() {
        a.format("%Y-%m-%d").to_string()
    } else {
        format!("{} to {}", a.format("%Y-%m-%d"), b.format("%Y-%m-%d"))
    };
    format!("local time, {dates} (UTC{})", a.format("%:z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watts_get_round_ticks_from_zero() {
        let (bottom, top, ticks) = value_ticks(37.0, 412.0, 5);
        assert_eq!((bottom, top), (0.0, 500.0));
        assert_eq!(ticks, [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        let (_, top, ticks) = value_ticks(0.0, 0.0, 5);
        assert!(top > 0.0 && ticks.len() >= 2);
    }

    #[test]
    fn time_ticks_fall_on_round_local_steps() {
        // TZ is not set here: check the properties that hold in every zone.
        let ticks = time_ticks(1_700_000_030.0, 1_700_003_630.0, 8);
        assert!(ticks.len() >= 4 && ticks.len() <= 9, "{ticks:?}");
        let step = ticks[1].0 - ticks[0].0;
        assert_eq!(step, 600.0);
        assert!(ticks.iter().all(|(_, label)| label.ends_with('0')));
        let late = time_ticks(1_700_000_000.4, 1_700_000_040.0, 8);
        assert!(
            late[0].0 >= 1_700_000_000.4,
            "no tick before the axis starts"
        );
        let seconds = time_ticks(1_700_000_000.0, 1_700_000_040.0, 8);
        assert_eq!(seconds[1].0 - seconds[0].0, 5.0);
        assert_eq!(seconds[0].1.len(), "14:05:30".len());
    }
}
