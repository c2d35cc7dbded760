//! Ingest the live `wattmetre-read` stream (stdout and stderr together, on stdin) into the
//! current day's raw file, and close each day at the rotation hour into the daily archive the
//! Lab IA's tools read (`MM_DD_YYYY_<port>.zip`, member `log_omegawatt_of_the_day`).
//!
//! Unlike the cron it replaces, the reader is never stopped: the first frame past the
//! rotation boundary opens the next day, so no row is lost. The raw file is only appended
//! to; a restart resumes it, and a line cut by an unclean stop is closed off with a newline
//! so that it is the only unreadable one. Archives are compressed on a thread of their own,
//! so reading never stalls behind the compression of a day.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::Context as _;
use chrono::{Local, NaiveDate, TimeZone};

use super::days::{archive_date, archive_name, parse_archive_name};
use super::stream::find_log_record;

pub struct Ingest {
    dir: PathBuf,
    port: String,
    rotation_hour: u32,
    raw_path: PathBuf,
    raw: File,
    /// The archive date of the day being written and the Unix second it ends at, from the
    /// frames' own timestamps (so a replay or a restart after the rotation hour closes the
    /// right day); `None` until the first frame.
    day: Option<(NaiveDate, i64)>,
    /// The last header seen, written at the top of each new day so every file reads alone.
    header: Option<String>,
    compressing: Vec<JoinHandle<anyhow::Result<PathBuf>>>,
    /// The per-second cache each closed day is also written to.
    cache: Option<PathBuf>,
    pub lines: u64,
}

/// The Unix second at which the archive named `date` closes: `date` at the rotation hour.
fn day_end(date: NaiveDate, rotation_hour: u32) -> Option<i64> {
    let end = date.and_hms_opt(rotation_hour, 0, 0)?;
    Local
        .from_local_datetime(&end)
        .earliest()
        .map(|t| t.timestamp())
}

/// The Unix second of a frame line (`1671527189.314471465,…`), if it is one.
fn frame_second(line: &str) -> Option<i64> {
    let secs = line.split_once('.')?.0;
    if secs.is_empty() || secs.len() > 12 || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse().ok()
}

impl Ingest {
    /// Open, or resume, the raw file of the current day.
    pub fn open(
        dir: &Path,
        port: &str,
        rotation_hour: u32,
        cache: Option<PathBuf>,
    ) -> anyhow::Result<Ingest> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let raw_path = dir.join(format!("log_omegawatt_{port}"));
        let (first_second, header) = if raw_path.exists() {
            scan_raw(&raw_path)?
        } else {
            (None, None)
        };
        let mut ingest = Ingest {
            dir: dir.to_path_buf(),
            port: port.to_string(),
            rotation_hour,
            raw: open_raw(&raw_path)?,
            raw_path,
            day: None,
            header,
            compressing: Vec::new(),
            cache,
            lines: 0,
        };
        if let Some(first) = first_second {
            ingest.day = Some(ingest.day_of(first)?);
        }
        ingest.finish_stranded_closings()?;
        Ok(ingest)
    }

    /// Days a stop left half closed (killed while compressing: the raw text moved aside as
    /// `.closing_<archive>`, a broken `.partial` beside it): compress them again, or, when
    /// their archive was written and only the raw copy's removal was missed, remove it.
    fn finish_stranded_closings(&mut self) -> anyhow::Result<()> {
        let listing = std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing {}", self.dir.display()))?;
        let mut stranded = Vec::new();
        for item in listing {
            let item = item.with_context(|| format!("listing {}", self.dir.display()))?;
            let name = item.file_name();
            let Some(archive) = name.to_str().and_then(|n| n.strip_prefix(".closing_")) else {
                continue;
            };
            if let Some((date, port)) = parse_archive_name(archive) {
                if port == self.port {
                    stranded.push((date, item.path()));
                }
            }
        }
        stranded.sort();
        for (date, closing) in stranded {
            let archive = self.dir.join(archive_name(date, &self.port));
            if let Some(done) = archived_already(&closing, &archive)? {
                eprintln!(
                    "aipm-analyze: {} was archived as {} before a stop: removing the raw copy",
                    closing.display(),
                    done.display()
                );
                std::fs::remove_file(&closing)
                    .with_context(|| format!("removing {}", closing.display()))?;
                continue;
            }
            eprintln!(
                "aipm-analyze: finishing the archive of {} that a stop left half closed",
                closing.display()
            );
            self.spawn_compression(date, closing, archive);
        }
        Ok(())
    }

    fn day_of(&self, second: i64) -> anyhow::Result<(NaiveDate, i64)> {
        let date =
            archive_date(second, self.rotation_hour).context("a frame without a local date")?;
        Ok((
            date,
            day_end(date, self.rotation_hour).context("no rotation time that day")?,
        ))
    }

    /// Take one line of the stream (without its newline).
    pub fn line(&mut self, line: &str) -> anyhow::Result<()> {
        self.lines += 1;
        match classify(line) {
            RawLine::Header(header) => self.header = Some(header.to_string()),
            RawLine::Frame(second) => match self.day {
                None => self.day = Some(self.day_of(second)?),
                Some((closing, end)) if second >= end => {
                    self.close_day(closing)?;
                    self.day = Some(self.day_of(second)?);
                }
                Some(_) => {}
            },
            RawLine::Other => {}
        }
        self.raw.write_all(line.as_bytes())?;
        self.raw.write_all(b"\n")?;
        Ok(())
    }

    /// Move the raw file aside, start a fresh one (with the header), and compress the old
    /// one into the day's archive on another thread.
    fn close_day(&mut self, date: NaiveDate) -> anyhow::Result<()> {
        self.raw.sync_all()?;
        let closing = self
            .dir
            .join(format!(".closing_{}", archive_name(date, &self.port)));
        std::fs::rename(&self.raw_path, &closing)
            .with_context(|| format!("moving {} aside", self.raw_path.display()))?;
        self.raw = open_raw(&self.raw_path)?;
        if let Some(header) = &self.header {
            self.raw.write_all(header.as_bytes())?;
            self.raw.write_all(b"\n")?;
        }
        let archive = self.dir.join(archive_name(date, &self.port));
        self.spawn_compression(date, closing, archive);
        Ok(())
    }

    /// Compress `closing` into `archive` (and the cache) on a thread of its own.
    fn spawn_compression(&mut self, date: NaiveDate, closing: PathBuf, archive: PathBuf) {
        let (cache, port) = (self.cache.clone(), self.port.clone());
        self.compressing.push(std::thread::spawn(move || {
            let written = compress(&closing, &archive)?;
            // The archive is safe on disk: a cache failure is reported, not fatal (`omegawatt
            // index` can build the day later). A `.N.zip` copy is not cached over the day.
            if let (Some(cache), true) = (cache, written == archive) {
                if let Err(e) = super::cache::index_archive(&written, &cache, &port, date) {
                    eprintln!("aipm-analyze: caching {}: {e:#}", written.display());
                }
            }
            Ok(written)
        }));
    }

    /// Flush, and wait for the archives being compressed.
    pub fn finish(mut self) -> anyhow::Result<Vec<PathBuf>> {
        self.raw.sync_all()?;
        let mut archives = Vec::new();
        for handle in self.compressing.drain(..) {
            archives.push(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("the compression thread panicked"))??,
            );
        }
        Ok(archives)
    }
}

/// Open the raw file for appending; if it ends inside a line (an unclean stop), end that
/// line so only it is unreadable.
fn open_raw(path: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.seek(SeekFrom::End(0))?;
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

/// The first frame's second and the last header of an existing raw file.
fn scan_raw(path: &Path) -> anyhow::Result<(Option<i64>, Option<String>)> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut first, mut header) = (None, None);
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).into_owned();
        match classify(&line) {
            RawLine::Header(text) => header = Some(text.to_string()),
            RawLine::Frame(second) if first.is_none() => first = Some(second),
            _ => {}
        }
    }
    Ok((first, header))
}

/// What a line of the stream is to `ingest`: the header (from `#timestamp` on, a log record
/// may precede it on the line), a frame and its second, or anything else (log records,
/// lines without a time).
enum RawLine<'a> {
    Header(&'a str),
    Frame(i64),
    Other,
}

/// One rule for the live stream and for a raw file read back after a crash.
fn classify(line: &str) -> RawLine<'_> {
    if let Some(at) = line.find("#timestamp") {
        return RawLine::Header(&line[at..]);
    }
    if find_log_record(line).is_some() {
        return RawLine::Other;
    }
    frame_second(line).map_or(RawLine::Other, RawLine::Frame)
}

/// The archive of the day (`archive` or a `.N.zip` copy) that already holds all of
/// `closing`: its member as long as the raw file. A stop between the archive's rename and the
/// raw copy's removal leaves exactly that.
fn archived_already(closing: &Path, archive: &Path) -> anyhow::Result<Option<PathBuf>> {
    let raw_len = std::fs::metadata(closing)
        .with_context(|| format!("reading {}", closing.display()))?
        .len();
    let stem = archive.with_extension("");
    let candidates = std::iter::once(archive.to_path_buf())
        .chain((1..).map(|n| stem.with_extension(format!("{n}.zip"))));
    for candidate in candidates {
        let Ok(file) = File::open(&candidate) else {
            return Ok(None);
        };
        let member_len = zip::ZipArchive::new(file)
            .ok()
            .and_then(|mut z| z.by_name(super::archive::DAY_MEMBER).ok().map(|m| m.size()));
        if member_len == Some(raw_len) {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// Zip a closed day the way the Lab IA cron does (one member, `log_omegawatt_of_the_day`),
/// then remove the raw copy. An existing archive of that day is not overwritten.
fn compress(raw: &Path, archive: &Path) -> anyhow::Result<PathBuf> {
    let target = if archive.exists() {
        let stem = archive.with_extension("");
        let mut n = 1;
        while stem.with_extension(format!("{n}.zip")).exists() {
            n += 1;
        }
        stem.with_extension(format!("{n}.zip"))
    } else {
        archive.to_path_buf()
    };
    let partial = target.with_extension("zip.partial");
    let mut zip = super::archive::day_zip_writer(
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
    )?;
    std::io::copy(&mut File::open(raw)?, &mut zip)?;
    zip.finish()?.sync_all()?;
    std::fs::rename(&partial, &target)?;
    std::fs::remove_file(raw)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_seconds() {
        assert_eq!(
            frame_second("1671527189.314471465,true,1.0"),
            Some(1_671_527_189)
        );
        assert_eq!(frame_second("#timestamp,#frame_is_ok"), None);
        assert_eq!(frame_second(",0.0,1.0"), None);
    }
}
