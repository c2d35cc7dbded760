//! The times and spans users type, checked once: every `--from/--to/--since/--until`, every
//! `--last/--every/--grace`, a report's `--month` and `generate --start` go through here.
//!
//! A time outside 1970-01-01 .. 2200-01-01 (UTC) is refused: nothing aipm reads is dated
//! outside it, and the arithmetic on windows (milliseconds, nanoseconds, days) stays far
//! from overflow inside it.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};

/// 1970-01-01T00:00:00Z: the earliest time accepted.
pub const EARLIEST_S: i64 = 0;
/// 2200-01-01T00:00:00Z: the first time refused.
pub const LATEST_S: i64 = 7_258_118_400;
/// The accepted range, as messages name it.
pub const RANGE: &str = "1970-01-01 to 2200-01-01 (UTC)";
/// The longest span: the whole accepted range.
pub const LONGEST_SPAN_S: i64 = LATEST_S - EARLIEST_S;

/// A time as users write it: Unix seconds, RFC 3339 (`2023-11-16T08:00:00+01:00`), or a local
/// `2023-11-16 08:00[:00]` / `2023-11-16T08:00` / `2023-11-16` (midnight), within `RANGE`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = parse_unchecked(text.trim())?;
    if (EARLIEST_S..LATEST_S).contains(&t) {
        Ok(t)
    } else {
        Err(format!(
            "{:?} is outside the accepted range, {RANGE}",
            text.trim()
        ))
    }
}

fn parse_unchecked(text: &str) -> Result<i64, String> {
    if let Some(t) = text.parse::<i128>().ok().filter(|_| is_integer(text)) {
        // An i128 so that a huge number is refused as out of range, not as unreadable.
        return Ok(t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
    }
    if is_integer(text) {
        // More digits than an i128 holds: out of range all the same.
        return Ok(if text.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)
    });
    let naive = naive.ok_or_else(|| {
        format!("expected a time such as 2023-11-16 08:00, 2023-11-16T08:00:00+01:00 or 1700121600, got {text:?}")
    })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("{text:?} does not exist in the local time zone (a DST gap)"))
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A span of time as admins write it in a cron line: `90s`, `30m`, `12h`, `1d`, `2w`; at most
/// the accepted range's length.
pub fn parse_span(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let unit_s = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    let expected = || format!("expected a span such as 90s, 30m, 12h, 1d or 2w, got {text:?}");
    if unit_s == 0 || n.is_empty() {
        return Err(expected());
    }
    let too_long = || {
        format!(
            "{t:?} is longer than the accepted range, {RANGE}, of {} days",
            LONGEST_SPAN_S / 86_400
        )
    };
    // Digits only: a parse failure is an overflow.
    let n = n.parse::<i64>().map_err(|_| too_long())?;
    match n.checked_mul(unit_s) {
        Some(s) if s <= LONGEST_SPAN_S => Ok(s),
        _ => Err(too_long()),
    }
}

/// A month as `YYYY-MM`, within the accepted range.
pub fn parse_month(text: &str) -> Result<NaiveDate, String> {
    let month = NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
        .map_err(|_| format!("expected a month as YYYY-MM, such as 2026-10, got {text:?}"))?;
    let first = month.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    match first {
        Some(t) if (EARLIEST_S..LATEST_S).contains(&t) => Ok(month),
        _ => Err(format!(
            "{:?} is outside the accepted range, {RANGE}",
            text.trim()
        )),
    }
}

/// `[from, to)` in Unix seconds, both already checked by `parse_time`: refused when empty.
pub fn check_window(from: i64, to: i64, from_flag: &str, to_flag: &str) -> anyhow::Result<()> {
    if to <= from {
        anyhow::bail!(
            "{to_flag} ({}) must be after {from_flag} ({})",
            aipm_recording::time::format_utc_s(to),
            aipm_recording::time::format_utc_s(from)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_users_write_them() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time(" 0 "), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-16"), parse_time("2023-11-16 00:00:00"));
        assert!(parse_time("yesterday")
            .unwrap_err()
            .contains("expected a time such as"));
    }

    #[test]
    fn times_outside_the_range_are_refused() {
        for bad in [
            "-1",
            "-8000000000000",
            "8000000000000",
            "9223372036854775807",
            "-9223372036854775808",
            "99999999999999999999999999999999999999999999",
            "7258118400",
            "2200-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
        ] {
            let why = parse_time(bad).unwrap_err();
            assert!(
                why.contains("outside the accepted range, 1970-01-01 to 2200-01-01"),
                "{bad}: {why}"
            );
        }
        assert_eq!(parse_time("2199-12-31T23:59:59Z"), Ok(LATEST_S - 1));
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("1d"), Ok(86_400));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span("0s"), Ok(0));
        for bad in ["", "d", "1", "1y", "-1d", "1.5h"] {
            assert!(
                parse_span(bad).unwrap_err().contains("expected a span"),
                "{bad}"
            );
        }
        for long in ["99999999999999999999w", "1000000000000000000w", "100000d"] {
            assert!(
                parse_span(long)
                    .unwrap_err()
                    .contains("longer than the accepted range"),
                "{long}"
            );
        }
        assert_eq!(parse_span("84006d"), Ok(84_006 * 86_400));
    }

    #[test]
    fn months() {
        assert_eq!(
            parse_month("2026-10"),
            NaiveDate::from_ymd_opt(2026, 10, 1).ok_or(String::new())
        );
        assert!(parse_month("1969-12").unwrap_err().contains("outside"));
        assert!(parse_month("2200-01").unwrap_err().contains("outside"));
        assert!(parse_month("2026-13")
            .unwrap_err()
            .contains("expected a month"));
    }
}
