//! Days and times: which daily archive covers a moment, and the times users type.
//!
//! The Lab IA cron closes a day at 07:00 local time: `MM_DD_YYYY_USBn.zip` covers 07:00 of
//! the day before to 07:00 of the named day (docs/background/aipowermeter-and-omegawatt.md §3.3).

use chrono::{Datelike, Duration, Local, NaiveDate, TimeZone};

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

/// The first and last archive dates of the seconds `[from, to)`, without listing the days
/// between: a window of centuries costs no more than one of a day.
pub fn archive_date_span(from: i64, to: i64, rotation_hour: u32) -> Option<(NaiveDate, NaiveDate)> {
    Some((
        archive_date(from, rotation_hour)?,
        archive_date(to.max(from + 1) - 1, rotation_hour)?,
    ))
}

/// The runs of days of `first..=last` that `present` (sorted) lacks, as (first, last) pairs:
/// as many as there are present days plus one, however long the window.
pub fn missing_runs(
    first: NaiveDate,
    last: NaiveDate,
    present: &std::collections::BTreeSet<NaiveDate>,
) -> Vec<(NaiveDate, NaiveDate)> {
    let mut runs = Vec::new();
    let mut next = Some(first);
    for day in present.range(first..=last) {
        if let Some(start) = next.filter(|n| n < day) {
            runs.extend(day.pred_opt().map(|end| (start, end)));
        }
        next = day.succ_opt();
    }
    if let Some(start) = next.filter(|n| *n <= last) {
        runs.push((start, last));
    }
    runs
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

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests read local time; they hold for any zone because they convert both ways.
    #[test]
    fn archives_close_at_the_rotation_hour() {
        let t = |s: &str| {
            let s = if s.len() == 16 {
                format!("{s}:00")
            } else {
                s.to_string()
            };
            let naive = chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S").unwrap();
            Local.from_local_datetime(&naive).unwrap().timestamp()
        };
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
    fn missing_days_are_runs_not_a_list() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let present: std::collections::BTreeSet<NaiveDate> =
            [d(2023, 11, 16), d(2023, 11, 17), d(2023, 11, 20)].into();
        assert_eq!(
            missing_runs(d(1970, 1, 2), d(2199, 12, 31), &present),
            [
                (d(1970, 1, 2), d(2023, 11, 15)),
                (d(2023, 11, 18), d(2023, 11, 19)),
                (d(2023, 11, 21), d(2199, 12, 31))
            ]
        );
        assert_eq!(missing_runs(d(2023, 11, 16), d(2023, 11, 17), &present), []);
        assert_eq!(
            missing_runs(d(2023, 11, 17), d(2023, 11, 18), &present),
            [(d(2023, 11, 18), d(2023, 11, 18))]
        );
    }
}
