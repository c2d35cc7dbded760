//! A node's wall power over a time window, from the daily archives of its port: the part of
//! `omegawatt node` and of `job`'s wall-meter figures that reads the data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use chrono::NaiveDate;

use super::archive::read_log;
use super::cache;
use super::channels::{check_header, NodeChannels};
use super::days::{archive_date_span, archive_name, missing_runs, parse_archive_name};
use super::seconds::{plug_seconds, sum_whole_seconds, whole_node_seconds, PerSecond, SecondRow};

/// Where a node's wall data comes from: the per-second cache first, the daily archives for
/// days the cache does not hold.
#[derive(Debug, Clone, Default)]
pub struct WallSource {
    pub cache: Option<PathBuf>,
    pub archives: Option<PathBuf>,
}

impl WallSource {
    /// A mistyped directory would read as "no data": say so instead.
    pub fn check(&self) -> anyhow::Result<()> {
        for (flag, dir) in [("cache", &self.cache), ("archives", &self.archives)] {
            if let Some(dir) = dir.as_ref().filter(|d| !d.is_dir()) {
                anyhow::bail!(
                    "the wall meters' {flag} {} is not a directory",
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// Per-second statistics of a node's plugs over `[from, to)` seconds, and what was read.
#[derive(Debug, Default)]
pub struct NodeSeconds {
    pub rows: Vec<SecondRow>,
    /// Days read from the cache (`port=…/date=…` files).
    pub days_cached: Vec<String>,
    pub archives_read: Vec<String>,
    pub archives_missing: Vec<String>,
    pub valid_frames: u64,
    pub skipped_frames: u64,
    pub unreadable_lines: u64,
    /// Times the meter's clock stepped back in the days read.
    pub clock_steps_back: u64,
    /// Seconds of the window found in two days' files (a clock step back across the
    /// rotation), their frames merged.
    pub merged_seconds: u64,
}

/// Every second of the node's plugs over `[from, to)`.
pub fn node_seconds(
    node: &str,
    entry: &NodeChannels,
    source: &WallSource,
    from: i64,
    to: i64,
    rotation_hour: u32,
) -> anyhow::Result<NodeSeconds> {
    let mut out = NodeSeconds::default();
    let days = plan_days(node, entry, source, from, to, rotation_hour, &mut out)?;
    if let Some(cache_dir) = &source.cache {
        out.rows = cache::read_seconds(
            cache_dir,
            &entry.port,
            &days.cached,
            &entry.channels,
            from,
            to,
        )?;
    }
    for path in &days.archives {
        read_archive(path, node, entry, from, to, &mut out)?;
    }
    // The cache's order (a day's rows by plug, then time): already sorted unless days came
    // from both the cache and archives.
    out.merged_seconds = seconds_in_two_files(&mut out.rows);
    Ok(out)
}

/// The node's power each second over `[from, to)` (`whole_node_seconds`), and what was read
/// (its `rows` left empty): what a job's report needs, from two columns of the cached days.
pub fn node_power_seconds(
    node: &str,
    entry: &NodeChannels,
    source: &WallSource,
    from: i64,
    to: i64,
    rotation_hour: u32,
) -> anyhow::Result<(Vec<(i64, f64)>, NodeSeconds)> {
    let mut read = NodeSeconds::default();
    let days = plan_days(node, entry, source, from, to, rotation_hour, &mut read)?;
    let cached = match &source.cache {
        Some(cache_dir) => cache::read_plug_seconds(
            cache_dir,
            &entry.port,
            &days.cached,
            &entry.channels,
            from,
            to,
        )?,
        None => Vec::new(),
    };
    let mut spans = days.spans.clone();
    for path in &days.archives {
        spans.extend(read_archive(path, node, entry, from, to, &mut read)?);
    }
    // Where two days' files overlap (a clock step back across the rotation, a late
    // rotation), a plug's second may be in both: those few seconds are read again as whole
    // rows and merged (`whole_node_seconds`); the two columns cannot tell plugs apart.
    let archived = std::mem::take(&mut read.rows);
    let mut all = cached;
    all.extend(plug_seconds(&archived, &entry.channels));
    let (mut seconds, _) = sum_whole_seconds(all, entry.channels.len());
    for (first, last) in overlaps(spans) {
        // A cached day's span is the whole day's: only the window's part is read.
        let (first, last) = (first.max(from), last.min(to - 1));
        if first > last {
            continue;
        }
        let mut rows = match &source.cache {
            Some(cache_dir) => cache::read_seconds(
                cache_dir,
                &entry.port,
                &days.cached,
                &entry.channels,
                first,
                last + 1,
            )?,
            None => Vec::new(),
        };
        rows.extend(
            archived
                .iter()
                .filter(|r| (first..=last).contains(&r.second))
                .cloned(),
        );
        read.merged_seconds += seconds_in_two_files(&mut rows);
        seconds.retain(|(second, _)| !(first..=last).contains(second));
        seconds.extend(whole_node_seconds(&rows, &entry.channels));
    }
    seconds.sort_by_key(|(second, _)| *second);
    Ok((seconds, read))
}

/// Sort `rows` by plug then second, and count the seconds where a plug has two rows (from
/// two days' files).
fn seconds_in_two_files(rows: &mut [SecondRow]) -> u64 {
    rows.sort_by_key(|r| (r.plug, r.second));
    let seconds: BTreeSet<i64> = rows
        .windows(2)
        .filter(|w| (w[0].plug, w[0].second) == (w[1].plug, w[1].second))
        .map(|w| w[0].second)
        .collect();
    seconds.len() as u64
}

/// The ranges of seconds (inclusive) that more than one of the files' spans cover.
fn overlaps(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut reach: Option<i64> = None;
    for (first, last) in spans {
        if let Some(end) = reach.filter(|end| first <= *end) {
            let range = (first, last.min(end));
            match out.last_mut() {
                Some(prev) if range.0 <= prev.1 + 1 => prev.1 = prev.1.max(range.1),
                _ => out.push(range),
            }
        }
        reach = Some(reach.map_or(last, |end| end.max(last)));
    }
    out
}

/// Where each day of a window is read from.
struct Days {
    /// Days the cache holds (file and index entry).
    cached: Vec<NaiveDate>,
    /// Archives of the other days that exist.
    archives: Vec<PathBuf>,
    /// The first and last second of each cached day.
    spans: Vec<(i64, i64)>,
}

/// Which days of `[from, to)` the cache holds and which archives hold the others; the cache's
/// figures and the days missing everywhere go to `out`.
fn plan_days(
    node: &str,
    entry: &NodeChannels,
    source: &WallSource,
    from: i64,
    to: i64,
    rotation_hour: u32,
    out: &mut NodeSeconds,
) -> anyhow::Result<Days> {
    source.check()?;
    let mut days = Days {
        cached: Vec::new(),
        archives: Vec::new(),
        spans: Vec::new(),
    };
    let Some((first, last)) = archive_date_span(from, to, rotation_hour) else {
        return Ok(days);
    };
    // Only the days that have files are looked at, so a window longer than the data costs
    // what the data costs; the others are reported as runs of missing days.
    let mut found = BTreeSet::new();
    if let Some(cache_dir) = &source.cache {
        // A day is cached when its file and its index entry (of this schema) are there; the
        // entry is checked before its data is read, and anything else is read from its archive.
        for date in cache::days_present(cache_dir, &entry.port, first, last) {
            let Some(day) = cache::entry(cache_dir, &entry.port, date) else {
                continue;
            };
            check_cached_channels(cache_dir, &day, node, entry)?;
            out.valid_frames += day.valid_frames;
            out.skipped_frames += day.invalid_frames;
            out.unreadable_lines += day.unreadable_lines;
            out.clock_steps_back += day.clock_steps_back;
            out.days_cached.push(
                cache::day_file(cache_dir, &entry.port, date)
                    .display()
                    .to_string(),
            );
            days.cached.push(date);
            days.spans.extend(day.first_second.zip(day.last_second));
            found.insert(date);
        }
    }
    if let Some(archives) = &source.archives {
        for (date, path) in archives_present(archives, &entry.port, first, last)? {
            if found.insert(date) {
                days.archives.push(path);
            }
        }
    }
    let name = |date| match &source.archives {
        Some(dir) => dir
            .join(archive_name(date, &entry.port))
            .display()
            .to_string(),
        None => archive_name(date, &entry.port),
    };
    for (start, end) in missing_runs(first, last, &found) {
        let count = (end - start).num_days() + 1;
        if count <= MISSING_LISTED {
            out.archives_missing
                .extend(start.iter_days().take(count as usize).map(name));
        } else {
            out.archives_missing
                .push(format!("{} to {} ({count} days)", name(start), name(end)));
        }
    }
    Ok(days)
}

/// Runs of missing days up to this long are named day by day, longer ones by their ends.
const MISSING_LISTED: i64 = 3;

/// The daily archives of `port` in `dir` dated `first..=last`, by date.
fn archives_present(
    dir: &Path,
    port: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<Vec<(NaiveDate, PathBuf)>> {
    let listing = std::fs::read_dir(dir)
        .with_context(|| format!("listing the wall meters' archives {}", dir.display()))?;
    let mut found = Vec::new();
    for item in listing {
        let item = item.with_context(|| format!("listing {}", dir.display()))?;
        let name = item.file_name();
        let Some((date, p)) = name.to_str().and_then(parse_archive_name) else {
            continue;
        };
        if p == port && (first..=last).contains(&date) {
            found.push((date, item.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// A cached day lacking one of the node's channels means a map that does not fit the data.
fn check_cached_channels(
    cache_dir: &Path,
    day: &cache::DayEntry,
    node: &str,
    entry: &NodeChannels,
) -> anyhow::Result<()> {
    match entry.channels.iter().find(|c| !day.channels.contains(c)) {
        Some(c) => anyhow::bail!(
            "{}: node {node} is mapped to channel {c} of {}, which the day cached from {} does not have",
            cache_dir.display(),
            entry.port,
            day.archive
        ),
        None => Ok(()),
    }
}

fn read_archive(
    path: &Path,
    node: &str,
    entry: &NodeChannels,
    from: i64,
    to: i64,
    out: &mut NodeSeconds,
) -> anyhow::Result<Option<(i64, i64)>> {
    let name = path.display().to_string();
    let mut per_second: Option<PerSecond> = None;
    let mut header_error: Option<String> = None;
    let stats = read_log(path, |header, frame| {
        if per_second.is_none() && header_error.is_none() {
            match check_header(&name, header, node, entry) {
                Ok(()) => per_second = Some(PerSecond::for_plugs(header, &entry.channels)),
                Err(e) => header_error = Some(e),
            }
        }
        if let Some(p) = per_second.as_mut() {
            let second = frame.time_ns.div_euclid(1_000_000_000);
            if second >= from && second < to {
                p.add(frame);
            }
        }
    })?;
    if let Some(e) = header_error {
        anyhow::bail!(e);
    }
    out.valid_frames += stats.valid_frames;
    out.skipped_frames += stats.invalid_frames;
    out.unreadable_lines += stats.bad_lines;
    out.clock_steps_back += stats.clock_steps_back;
    let before = out.rows.len();
    out.rows.extend(per_second.iter().flat_map(PerSecond::rows));
    out.archives_read.push(name);
    let added = &out.rows[before..];
    let first = added.iter().map(|r| r.second).min();
    Ok(first.zip(added.iter().map(|r| r.second).max()))
}

/// Energy in J over `[from_ms, to_ms)`: each second's node power (`whole_node_seconds`: its
/// plugs' means summed) times the part of that second inside the window, so a job's edges
/// count to the millisecond. Returns the energy and the seconds of the window that had data.
pub fn energy_in_window(node_seconds: &[(i64, f64)], from_ms: u64, to_ms: u64) -> (f64, f64) {
    let (mut energy_j, mut covered_s) = (0.0, 0.0);
    for &(second, watts) in node_seconds {
        let start = (second as f64 * 1000.0).max(from_ms as f64);
        let end = ((second + 1) as f64 * 1000.0).min(to_ms as f64);
        if end > start {
            let overlap_s = (end - start) / 1000.0;
            energy_j += watts * overlap_s;
            covered_s += overlap_s;
        }
    }
    (energy_j, covered_s)
}

/// The node's wall power each second (its PSUs summed, only seconds where all have data), at
/// the middle of the second.
pub fn node_power(rows: &[SecondRow], plugs: &[u32]) -> Vec<(f64, f64)> {
    mid_second_points(&whole_node_seconds(rows, plugs))
}

/// Per-second powers as points at the middle of their second, for plots.
pub fn mid_second_points(node_seconds: &[(i64, f64)]) -> Vec<(f64, f64)> {
    node_seconds
        .iter()
        .map(|&(s, w)| (s as f64 + 0.5, w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::days::archive_dates;

    /// A day's archive of plugs 1 and 2 from `start_s`, `seconds` long, at constant powers.
    fn write_archive(path: &Path, start_s: i64, seconds: u64) {
        use crate::generate::{write, Faults, Profile, Spec};
        let spec = Spec {
            plugs: 2,
            rate_hz: 10,
            seconds,
            start_s,
            profiles: vec![
                Profile {
                    plug: 1,
                    from_w: 100.0,
                    to_w: 100.0,
                },
                Profile {
                    plug: 2,
                    from_w: 50.0,
                    to_w: 80.0,
                },
            ],
            noise_w: 0.0,
            faults: Faults::default(),
        };
        let mut zip = crate::archive::day_zip_writer(std::fs::File::create(path).unwrap()).unwrap();
        write(&spec, &mut zip).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn a_window_over_a_cached_day_and_an_archived_one_reads_both() {
        use chrono::TimeZone as _;
        let tmp = tempfile::tempdir().unwrap();
        let (archives, cache) = (tmp.path().join("archives"), tmp.path().join("cache"));
        std::fs::create_dir_all(&archives).unwrap();
        // A minute each side of the 07:00 rotation: two days, the second cached.
        let rotation = chrono::Local
            .with_ymd_and_hms(2023, 11, 16, 7, 0, 0)
            .single()
            .unwrap()
            .timestamp();
        let (from, to) = (rotation - 60, rotation + 60);
        let dates = archive_dates(from, to, 7);
        assert_eq!(dates.len(), 2);
        let paths: Vec<PathBuf> = dates
            .iter()
            .map(|d| archives.join(archive_name(*d, "USB0")))
            .collect();
        // The closing day's archive has the rotation's first second too (a late rotation, a
        // clock step back): a second in two days' files, its frames merged.
        write_archive(&paths[0], from, 61);
        write_archive(&paths[1], rotation, 60);
        cache::index_archive(&paths[1], &cache, "USB0", dates[1]).unwrap();
        let entry = NodeChannels {
            port: "USB0".into(),
            channels: vec![1, 2],
            phases: Vec::new(),
        };
        let both = WallSource {
            cache: Some(cache),
            archives: Some(archives.clone()),
        };
        let (seconds, read) = node_power_seconds("n1", &entry, &both, from, to, 7).unwrap();
        assert_eq!(read.days_cached.len(), 1);
        assert_eq!(read.archives_read, [paths[0].display().to_string()]);
        assert_eq!(seconds.len(), 120);
        assert_eq!(read.merged_seconds, 1);
        let at_rotation = seconds.iter().find(|(s, _)| *s == rotation).unwrap().1;
        // Plug 2 ends one file near 80 W and starts the other at 50 W: the merged second is
        // between the two files' (180 W and 150 W for both plugs), not either alone.
        assert!((155.0..175.0).contains(&at_rotation), "{at_rotation}");
        // The same seconds and powers as from the archives alone, row by row.
        let archives_only = WallSource {
            cache: None,
            archives: Some(archives),
        };
        let rows = node_seconds("n1", &entry, &archives_only, from, to, 7).unwrap();
        assert_eq!(seconds, whole_node_seconds(&rows.rows, &entry.channels));
        assert!(seconds.windows(2).all(|w| w[0].0 < w[1].0));
    }

    fn row(second: i64, plug: u32, mean_w: f64) -> SecondRow {
        SecondRow {
            second,
            plug,
            mean_w,
            min_w: mean_w,
            max_w: mean_w,
            valid_frames: 100,
            invalid_frames: 0,
        }
    }

    #[test]
    fn a_window_counts_its_edges_to_the_millisecond() {
        let rows: Vec<SecondRow> = (10..20)
            .flat_map(|s| [row(s, 1, 100.0), row(s, 2, 50.0)])
            .collect();
        // 12.250 s to 15.500 s: 3.25 s at 150 W.
        let (j, covered) = energy_in_window(&whole_node_seconds(&rows, &[1, 2]), 12_250, 15_500);
        assert!((j - 150.0 * 3.25).abs() < 1e-9, "{j}");
        assert!((covered - 3.25).abs() < 1e-9);
        // A second where one PSU has no data is not covered.
        let mut gap = rows.clone();
        gap.retain(|r| !(r.second == 13 && r.plug == 2));
        let (j, covered) = energy_in_window(&whole_node_seconds(&gap, &[1, 2]), 12_000, 15_000);
        assert_eq!((j, covered), (300.0, 2.0));
    }

    #[test]
    fn overlapping_spans() {
        assert_eq!(overlaps(vec![(0, 10), (20, 30)]), []);
        assert_eq!(overlaps(vec![(20, 30), (0, 20)]), [(20, 20)]);
        assert_eq!(overlaps(vec![(0, 10), (5, 30), (8, 40)]), [(5, 30)]);
    }

    /// Plug 1's second in two days' files and plug 2's in neither: not a whole second, where
    /// the two columns alone counted two entries for two plugs as one.
    #[test]
    fn a_plug_twice_and_another_missing_is_not_whole() {
        let rows = vec![
            row(7, 1, 100.0),
            row(7, 1, 110.0),
            row(8, 1, 100.0),
            row(8, 2, 50.0),
        ];
        assert_eq!(whole_node_seconds(&rows, &[1, 2]), [(8, 150.0)]);
    }
}
