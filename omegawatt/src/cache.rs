//! The per-second cache: one Parquet file per port and archive day, Hive-partitioned so that
//! polars, DuckDB or Spark read the whole history directly:
//!
//! ```text
//! CACHE/port=USB0/date=2023-11-16/seconds.parquet
//! CACHE/_index/USB0/2023-11-16.json        what was indexed, from which archive
//! ```
//!
//! `date` is the archive's date (the day closed at the rotation hour). Columns, one row per
//! second per channel, sorted by channel then time (so a node's channels are whole row
//! groups that a reader can pick by their statistics):
//!
//! | column           | type    | meaning                                              |
//! |------------------|---------|------------------------------------------------------|
//! | `time`           | Int64   | Unix second (UTC) the frames fall in                 |
//! | `channel`        | UInt32  | the plug, N of `#activepowN`                          |
//! | `mean_w`         | Float64 | mean of the second's valid frames (null: none)       |
//! | `min_w`, `max_w` | Float64 | extremes of the valid frames (null: none)            |
//! | `valid_frames`   | UInt32  | frames with a value for this channel                 |
//! | `invalid_frames` | UInt32  | frames of the second marked `false` (all channels)   |
//!
//! Files are written beside their final name and renamed into place, the `_index` entry
//! last, so a crash leaves either the previous state or a day that is indexed again.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use polars::prelude::{
    col, lit, ChunkFillNullValue, Column, DataFrame, HiveOptions, LazyFrame, ParquetWriter,
    PlRefPath, PolarsResult, ScanArgsParquet,
};
use serde::{Deserialize, Serialize};

use super::archive::read_log;
use super::seconds::{PerSecond, SecondRow};
use super::stream::StreamStats;

pub const SCHEMA_VERSION: u32 = 1;
const FILE_NAME: &str = "seconds.parquet";
/// A day of one channel per row group: a node's query reads only its channels' groups.
const ROW_GROUP: usize = 86_400;

/// What `_index/PORT/DATE.json` says about a cached day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayEntry {
    pub schema_version: u32,
    pub archive: String,
    pub archive_bytes: u64,
    pub archive_mtime_ns: i128,
    pub rows: u64,
    pub channels: Vec<u32>,
    pub first_second: Option<i64>,
    pub last_second: Option<i64>,
    pub valid_frames: u64,
    pub invalid_frames: u64,
    pub unreadable_lines: u64,
    pub nan_values: u64,
    pub log_lines: u64,
    pub clock_steps_back: u64,
    pub truncated_last_line: bool,
    /// The first unreadable lines: (line number, what was wrong).
    pub first_bad: Vec<(u64, String)>,
}

pub fn day_file(cache: &Path, port: &str, date: NaiveDate) -> PathBuf {
    cache
        .join(format!("port={port}"))
        .join(format!("date={date}"))
        .join(FILE_NAME)
}

fn entry_file(cache: &Path, port: &str, date: NaiveDate) -> PathBuf {
    cache.join("_index").join(port).join(format!("{date}.json"))
}

/// Size and modification time: what tells an archive changed since it was indexed.
fn fingerprint(path: &Path) -> anyhow::Result<(u64, i128)> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Ok((meta.len(), mtime))
}

/// The days of `port` the cache has a directory for, dated `first..=last`, in order: listed,
/// not probed day by day, so that a long window costs what the cache holds.
pub fn days_present(cache: &Path, port: &str, first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    let Ok(listing) = std::fs::read_dir(cache.join(format!("port={port}"))) else {
        return Vec::new();
    };
    let mut days: Vec<NaiveDate> = listing
        .filter_map(|item| {
            let name = item.ok()?.file_name();
            let date = name.to_str()?.strip_prefix("date=")?;
            NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
        })
        .filter(|d| (first..=last).contains(d))
        .collect();
    days.sort();
    days
}

/// The cached day's entry, if the day is in the cache.
pub fn entry(cache: &Path, port: &str, date: NaiveDate) -> Option<DayEntry> {
    if !day_file(cache, port, date).is_file() {
        return None;
    }
    let text = std::fs::read_to_string(entry_file(cache, port, date)).ok()?;
    serde_json::from_str::<DayEntry>(&text)
        .ok()
        .filter(|e| e.schema_version == SCHEMA_VERSION)
}

/// Whether the day is cached from this very archive (same size and modification time).
pub fn is_current(cache: &Path, port: &str, date: NaiveDate, archive: &Path) -> bool {
    let (Some(e), Ok((bytes, mtime))) = (entry(cache, port, date), fingerprint(archive)) else {
        return false;
    };
    e.archive_bytes == bytes && e.archive_mtime_ns == mtime
}

/// Read a daily archive and write its day into the cache.
pub fn index_archive(
    archive: &Path,
    cache: &Path,
    port: &str,
    date: NaiveDate,
) -> anyhow::Result<DayEntry> {
    let (archive_bytes, archive_mtime_ns) = fingerprint(archive)?;
    let mut per_second: Option<PerSecond> = None;
    let stats = read_log(archive, |header, frame| {
        per_second
            .get_or_insert_with(|| PerSecond::new(header))
            .add(frame);
    })?;
    let per_second = per_second.with_context(|| {
        format!(
            "{}: no frame found: {}",
            archive.display(),
            stats.why_no_frame()
        )
    })?;
    write_day(cache, port, date, &per_second)?;
    let (first_second, last_second) = per_second.span().unzip();
    let entry = DayEntry {
        schema_version: SCHEMA_VERSION,
        archive: archive.display().to_string(),
        archive_bytes,
        archive_mtime_ns,
        rows: per_second.row_count() as u64,
        channels: per_second.plugs(),
        first_second,
        last_second,
        valid_frames: stats.valid_frames,
        invalid_frames: stats.invalid_frames,
        unreadable_lines: stats.bad_lines,
        nan_values: stats.nan_values,
        log_lines: stats.log_lines,
        clock_steps_back: stats.clock_steps_back,
        truncated_last_line: stats.truncated_last_line,
        first_bad: stats.first_bad,
    };
    write_entry(cache, port, date, &entry)?;
    Ok(entry)
}

/// The summary line of what reading the archive skipped, for reports.
pub fn skipped_of(entry: &DayEntry) -> StreamStats {
    StreamStats {
        valid_frames: entry.valid_frames,
        invalid_frames: entry.invalid_frames,
        bad_lines: entry.unreadable_lines,
        nan_values: entry.nan_values,
        log_lines: entry.log_lines,
        clock_steps_back: entry.clock_steps_back,
        truncated_last_line: entry.truncated_last_line,
        first_bad: entry.first_bad.clone(),
        ..StreamStats::default()
    }
}

fn write_day(cache: &Path, port: &str, date: NaiveDate, seconds: &PerSecond) -> anyhow::Result<()> {
    let path = day_file(cache, port, date);
    let dir = path.parent().expect("a partition directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!(".{FILE_NAME}.partial"));
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let context = || format!("writing {}", partial.display());
    // One plug at a time, one row group each: memory stays at the day's statistics plus a
    // plug's columns, whatever the number of plugs.
    let mut writer = None;
    for plug in seconds.plugs() {
        let mut batch = plug_frame(seconds, plug)?;
        let writer = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                ParquetWriter::new(&file)
                    .with_row_group_size(Some(ROW_GROUP))
                    .batched(batch.schema())
                    .with_context(context)?,
            ),
        };
        batch.rechunk_mut();
        writer.write_batch(&batch).with_context(context)?;
    }
    if let Some(w) = writer {
        w.finish().with_context(context)?;
    }
    file.sync_all()?;
    std::fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// One plug's rows as the cache's columns.
fn plug_frame(seconds: &PerSecond, plug: u32) -> anyhow::Result<DataFrame> {
    let rows: Vec<SecondRow> = seconds.rows_of(plug).collect();
    let watts = |f: fn(&SecondRow) -> f64| -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| (r.valid_frames > 0).then(|| f(r)))
            .collect()
    };
    Ok(DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "time".into(),
                rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            ),
            Column::new("channel".into(), vec![plug; rows.len()]),
            Column::new("mean_w".into(), watts(|r| r.mean_w)),
            Column::new("min_w".into(), watts(|r| r.min_w)),
            Column::new("max_w".into(), watts(|r| r.max_w)),
            Column::new(
                "valid_frames".into(),
                rows.iter().map(|r| r.valid_frames).collect::<Vec<_>>(),
            ),
            Column::new(
                "invalid_frames".into(),
                rows.iter().map(|r| r.invalid_frames).collect::<Vec<_>>(),
            ),
        ],
    )?)
}

fn write_entry(cache: &Path, port: &str, date: NaiveDate, entry: &DayEntry) -> anyhow::Result<()> {
    let path = entry_file(cache, port, date);
    let dir = path.parent().expect("an index directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(entry)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The per-second rows of `channels` over `[from, to)` from the cached days `dates` (the
/// caller checked their entries).
pub fn read_seconds(
    cache: &Path,
    port: &str,
    dates: &[NaiveDate],
    channels: &[u32],
    from: i64,
    to: i64,
) -> anyhow::Result<Vec<SecondRow>> {
    if dates.is_empty() || channels.is_empty() {
        return Ok(Vec::new());
    }
    let frame = scan_days(cache, port, dates, channels, from, to)?
        .collect()
        .with_context(|| format!("reading the cache {} for port {port}", cache.display()))?;
    rows_of_frame(&frame)
}

/// `(second, mean watts)` of each of `channels` that has frames, over `[from, to)`, from the
/// cached days `dates`: what `sum_whole_seconds` makes a node's power of. Only the two
/// columns it needs are decoded, and no rows are built: a day of a node is 86 400 seconds
/// per PSU.
pub fn read_plug_seconds(
    cache: &Path,
    port: &str,
    dates: &[NaiveDate],
    channels: &[u32],
    from: i64,
    to: i64,
) -> anyhow::Result<Vec<(i64, f64)>> {
    if dates.is_empty() || channels.is_empty() {
        return Ok(Vec::new());
    }
    let context = || format!("reading the cache {} for port {port}", cache.display());
    let frame = scan_days(cache, port, dates, channels, from, to)?
        .filter(col("valid_frames").gt(lit(0u32)))
        .select([col("time"), col("mean_w")])
        .collect()
        .with_context(context)?;
    let time = frame.column("time")?.i64()?;
    let watts = frame.column("mean_w")?.f64()?;
    if time.null_count() + watts.null_count() > 0 {
        anyhow::bail!("{}: a second with frames but no time or power", context());
    }
    Ok(time
        .into_no_null_iter()
        .zip(watts.into_no_null_iter())
        .collect())
}

/// The rows of `channels` over `[from, to)` of the cached days `dates`, lazily.
fn scan_days(
    cache: &Path,
    port: &str,
    dates: &[NaiveDate],
    channels: &[u32],
    from: i64,
    to: i64,
) -> anyhow::Result<LazyFrame> {
    let paths: Vec<PlRefPath> = dates
        .iter()
        .map(|d| PlRefPath::try_from_path(&day_file(cache, port, *d)))
        .collect::<PolarsResult<_>>()?;
    let wanted = channels
        .iter()
        .map(|c| col("channel").eq(lit(*c)))
        .reduce(|a, b| a.or(b))
        .expect("at least one channel");
    // The files are picked by day here, so polars need not (and, built without its date
    // types, cannot) read the partition values from the paths.
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_disabled(),
        glob: false,
        ..ScanArgsParquet::default()
    };
    Ok(
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)?.filter(
            wanted
                .and(col("time").gt_eq(lit(from)))
                .and(col("time").lt(lit(to))),
        ),
    )
}

fn rows_of_frame(frame: &DataFrame) -> anyhow::Result<Vec<SecondRow>> {
    let time = frame.column("time")?.i64()?;
    let channel = frame.column("channel")?.u32()?;
    if time.null_count() + channel.null_count() > 0 {
        anyhow::bail!("a null time or channel in the cache");
    }
    // A second without a valid frame has null powers: NaN here, as `PerSecond` gives.
    let watts = |name: &str| -> anyhow::Result<_> {
        Ok(frame.column(name)?.f64()?.fill_null_with_values(f64::NAN)?)
    };
    let frames = |name: &str| -> anyhow::Result<_> {
        Ok(frame.column(name)?.u32()?.fill_null_with_values(0)?)
    };
    let (mean, min, max) = (watts("mean_w")?, watts("min_w")?, watts("max_w")?);
    let (valid, invalid) = (frames("valid_frames")?, frames("invalid_frames")?);
    // Iterators over the arrays' values, zipped: `iter()` would make a virtual call per
    // value, and a day of a port is millions of them.
    let rows = time
        .into_no_null_iter()
        .zip(channel.into_no_null_iter())
        .zip(mean.into_no_null_iter().zip(min.into_no_null_iter()))
        .zip(max.into_no_null_iter())
        .zip(valid.into_no_null_iter().zip(invalid.into_no_null_iter()))
        .map(
            |((((second, plug), (mean_w, min_w)), max_w), (valid_frames, invalid_frames))| {
                SecondRow {
                    second,
                    plug,
                    mean_w,
                    min_w,
                    max_w,
                    valid_frames,
                    invalid_frames,
                }
            },
        )
        .collect();
    Ok(rows)
}
