//! Days and times: which daily archive covers a moment, and the times users type.
//!
//! The Lab IA cron closes a day at 07:00 local time: `MM_DD_YYYY_USBn.zip` covers 07:00 of
//! the day before to 07:00 of the named day (docs/background/aipowermeter-and-omegawatt.md §3.3).

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, NaiveDateTime, TimeZone};

/// The date in the name of the archive that holds Unix second `t`.
pub fn archive_date(t: i64, rotation_hour: u32) -> Option<NaiveDate> {
    let local = Local.timestamp_opt(t, 0).single()?;
    let shifted = local.naive_local() - Duration::hours(i64::from(rotation_hour));
    shifted.date().succ_opt()
}

/// The archives' dates for the seconds `[from, to)`, in order.
pub fn archive_dates(from: i64, to: i64, rotation_hour: u32) -> Vec<NaiveDate> {
    let (Some(first), Some(last)) = (
        archive_date(from, rotation_hour),
        archive_date(to.max(from + 1) - 1, rotation_hour),
    ) else {
        return Vec::new();
    };
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// `11_16_2023_USB0.zip`
pub fn archive_name(date: NaiveDate, port: &str) -> String {
    format!(
        "{:02}_{:02}_{:04}_{port}.zip",
        date.month(),
        date.day(),
        date.year()
    )
}

/// The date and port of an archive's file name (`11_16_2023_USB0.zip`); `None` for any other
/// name (the `.1.zip` copies `ingest` makes when a day's archive already exists included).
pub fn parse_archive_name(name: &str) -> Option<(NaiveDate, String)> {
    let stem = name.strip_suffix(".zip")?;
    let (date, port) = stem.get(..10).zip(stem.get(10..))?;
    let port = port.strip_prefix('_')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((
        NaiveDate::parse_from_str(date, "%m_%d_%Y").ok()?,
        port.to_string(),
    ))
}

/// A time as users write it: Unix seconds, RFC 3339 (`2023-11-16T08:00:00+01:00`), or a local
/// `2023-11-16 08:00[:00]` / `2023-11-16T08:00` / `2023-11-16` (midnight).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<i64>() {
        return Ok(t);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests read local time; they hold for any zone because they convert both ways.
    #[test]
    fn archives_close_at_the_rotation_hour() {
        let t = |s: &str| parse_time(s).unwrap();
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(
            archive_date(t("2023-11-16 06:59:59"), 7),
            Some(d(2023, 11, 16))
        );
        assert_eq!(
            archive_date(t("2023-11-16 07:00:00"), 7),
            Some(d(2023, 11, 17))
        );
        assert_eq!(
            archive_dates(t("2023-11-16 06:00"), t("2023-11-17 08:00"), 7),
            [d(2023, 11, 16), d(2023, 11, 17), d(2023, 11, 18)]
        );
        assert_eq!(
            archive_dates(t("2023-11-16 08:00"), t("2023-11-17 07:00"), 7),
            [d(2023, 11, 17)]
        );
        assert_eq!(archive_name(d(2023, 11, 6), "USB0"), "11_06_2023_USB0.zip");
        assert_eq!(
            parse_archive_name("11_06_2023_USB0.zip"),
            Some((d(2023, 11, 6), "USB0".to_string()))
        );
        for other in [
            "11_06_2023_USB0.1.zip",
            "13_06_2023_USB0.zip",
            "11_06_2023_.zip",
            "11_06_2023_USB0.csv",
            "log_omegawatt_USB0",
        ] {
            assert_eq!(parse_archive_name(other), None, "{other}");
        }
    }

    #[test]
    fn times_as_users_write_them() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-16"), parse_time("2023-11-16 00:00:00"));
        assert!(parse_time("yesterday")
            .unwrap_err()
            .contains("expected a time such as"));
    }
}
