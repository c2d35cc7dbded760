//! The samples file (`<node>.samples.csv`): a CSV header, then one line per sample, appended
//! and flushed one line at a time. Plain CSV, so polars and pandas read it directly.
//!
//! Columns: `time_unix_ms`, `job_cpu_ns` (the job's cumulative CPU time), `job_mem_bytes`,
//! `job_mem_peak_bytes`, the node's `node_cpu_busy_ns`, `node_cpu_total_ns`,
//! `node_mem_used_bytes` and `node_jobs` (the inputs of the attribution), then for each
//! energy channel `SOURCE:CHANNEL:energy_uj` (energy
//! since the recording began, wrap-corrected) and `SOURCE:CHANNEL:raw` (the raw counter, so
//! a sampler that takes over can continue the count), then gauges, instantaneous values
//! named `SOURCE:CHANNEL:NAME` (`nvml:GPU-…:power_mw`). An empty field is a value that
//! could not be read in that sample.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::fast_row::{self, ABSENT};

pub const TIME_COLUMN: &str = "time_unix_ms";
pub const CPU_COLUMN: &str = "job_cpu_ns";
pub const MEM_COLUMN: &str = "job_mem_bytes";
pub const MEM_PEAK_COLUMN: &str = "job_mem_peak_bytes";
pub const NODE_BUSY_COLUMN: &str = "node_cpu_busy_ns";
pub const NODE_TOTAL_COLUMN: &str = "node_cpu_total_ns";
pub const NODE_MEM_COLUMN: &str = "node_mem_used_bytes";
pub const NODE_JOBS_COLUMN: &str = "node_jobs";
const FIXED_COLUMNS: [&str; 8] = [
    TIME_COLUMN,
    CPU_COLUMN,
    MEM_COLUMN,
    MEM_PEAK_COLUMN,
    NODE_BUSY_COLUMN,
    NODE_TOTAL_COLUMN,
    NODE_MEM_COLUMN,
    NODE_JOBS_COLUMN,
];

pub fn energy_column(channel: &str) -> String {
    format!("{channel}:energy_uj")
}

pub fn raw_column(channel: &str) -> String {
    format!("{channel}:raw")
}

/// The energy channels of a header, in order (`rapl:package-0`, ...).
pub fn channels_of_header(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter_map(|c| c.strip_suffix(":energy_uj"))
        .map(str::to_string)
        .collect()
}

/// The header line for energy channels (`rapl:package-0`, ...) and gauges
/// (`nvml:GPU-…:power_mw`), newline included.
pub fn header_line(channels: &[String], gauges: &[String]) -> String {
    let mut line = FIXED_COLUMNS.join(",");
    for channel in channels {
        let _ = write!(line, ",{},{}", energy_column(channel), raw_column(channel));
    }
    for gauge in gauges {
        let _ = write!(line, ",{gauge}");
    }
    line.push('\n');
    line
}

/// One reading of an energy channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyValue {
    pub energy_uj: u64,
    pub raw: u64,
}

/// One sample, in the order of the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleRow {
    pub time_unix_ms: u64,
    pub job_cpu_ns: Option<u64>,
    pub job_mem_bytes: Option<u64>,
    pub job_mem_peak_bytes: Option<u64>,
    pub node_cpu_busy_ns: Option<u64>,
    pub node_cpu_total_ns: Option<u64>,
    pub node_mem_used_bytes: Option<u64>,
    pub node_jobs: Option<u64>,
    pub energy: Vec<Option<EnergyValue>>,
    pub gauges: Vec<Option<u64>>,
}

impl SampleRow {
    /// Append this row as one CSV line to `out`, reusing its allocation.
    pub fn format_into(&self, out: &mut String) {
        fn field(out: &mut String, value: Option<u64>) {
            out.push(',');
            if let Some(v) = value {
                let _ = write!(out, "{v}");
            }
        }
        let _ = write!(out, "{}", self.time_unix_ms);
        field(out, self.job_cpu_ns);
        field(out, self.job_mem_bytes);
        field(out, self.job_mem_peak_bytes);
        field(out, self.node_cpu_busy_ns);
        field(out, self.node_cpu_total_ns);
        field(out, self.node_mem_used_bytes);
        field(out, self.node_jobs);
        for value in &self.energy {
            field(out, value.map(|v| v.energy_uj));
            field(out, value.map(|v| v.raw));
        }
        for value in &self.gauges {
            field(out, *value);
        }
        out.push('\n');
    }
}

/// A line that could not be read, named by its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// The rows of a samples file, stored a column at a time, 8 bytes a value: a day of samples
/// on a big node is millions of values, and a report reads a few columns at a time (a
/// column of a day is under a megabyte and stays in the CPU's cache; a row-ordered buffer
/// would be streamed whole from memory for each column read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    columns: Vec<Vec<u64>>,
}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    rows: &'a Rows,
    index: usize,
}

impl Row<'_> {
    /// The value in column `column`, if the sampler read one.
    #[inline]
    pub fn get(&self, column: usize) -> Option<u64> {
        present(*self.rows.columns.get(column)?.get(self.index)?)
    }

    pub fn to_vec(&self) -> Vec<Option<u64>> {
        (0..self.rows.columns.len()).map(|c| self.get(c)).collect()
    }
}

#[inline]
fn present(value: u64) -> Option<u64> {
    (value != ABSENT).then_some(value)
}

impl Rows {
    pub fn new(width: usize) -> Rows {
        Rows {
            columns: vec![Vec::new(); width],
        }
    }

    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Option<Row<'_>> {
        (index < self.len()).then_some(Row { rows: self, index })
    }

    pub fn last(&self) -> Option<Row<'_>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        (0..self.len()).map(move |index| Row { rows: self, index })
    }

    /// Consecutive rows, as `(earlier, later)`: the periods between samples.
    pub fn pairs(&self) -> impl Iterator<Item = (Row<'_>, Row<'_>)> + '_ {
        self.iter().zip(self.iter().skip(1))
    }

    /// The values of one column that are present, in order.
    pub fn column(&self, column: usize) -> impl Iterator<Item = u64> + '_ {
        self.columns
            .get(column)
            .into_iter()
            .flatten()
            .filter_map(|v| present(*v))
    }

    /// Append a row of `width` values (`None` for absent; a value of `u64::MAX` reads as
    /// absent).
    pub fn push(&mut self, row: &[Option<u64>]) {
        debug_assert_eq!(row.len(), self.columns.len());
        for (column, value) in self.columns.iter_mut().zip(row) {
            column.push(value.unwrap_or(ABSENT));
        }
    }

    /// Room for about `rows` rows, so that reading a file rarely grows the columns.
    fn reserve(&mut self, rows: usize) {
        for column in &mut self.columns {
            column.reserve(rows);
        }
    }

    /// Change one value (tests build odd recordings this way).
    #[cfg(test)]
    pub(crate) fn set(&mut self, index: usize, column: usize, value: Option<u64>) {
        self.columns[column][index] = value.unwrap_or(ABSENT);
    }
}

/// A whole samples file as read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub columns: Vec<String>,
    pub rows: Rows,
    /// The file ended inside a line: the sampler was killed while writing it.
    pub truncated_tail: bool,
    pub bad_lines: Vec<BadLine>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line 1: expected a CSV header starting with {TIME_COLUMN}, found {found:?}")]
    BadHeader { path: String, found: String },
}

/// The first line of a text that is not a samples file's header (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a CSV header starting with {TIME_COLUMN}, found {0:?}")]
pub struct NotAHeader(pub String);

impl Samples {
    /// Read a samples file a block at a time: the text is never held whole (a day of a
    /// big node's samples is tens of megabytes), and lines are parsed as they arrive. The
    /// file is opened as in a user's directory ([`crate::untrusted`]) and read only up to
    /// [`crate::untrusted::SAMPLES_MAX_BYTES`].
    pub fn read(path: &Path) -> Result<Samples, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.display().to_string(),
            source,
        };
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Err(io_error(std::io::ErrorKind::NotFound.into())),
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let flags = rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::CLOEXEC;
        let dir_fd = rustix::fs::openat(rustix::fs::CWD, dir, flags, rustix::fs::Mode::empty())
            .map_err(|e| io_error(e.into()))?;
        crate::untrusted::read_samples_in(&dir_fd, path, name, crate::untrusted::SAMPLES_MAX_BYTES)
    }

    /// Read `size` bytes of an open samples file (what `fstat` saw: a file that grows
    /// while read is read up to there).
    pub(crate) fn read_file(file: File, size: u64, path: &Path) -> Result<Samples, ReadError> {
        Samples::read_in_blocks(file.take(size), size, path, READ_BLOCK)
    }

    fn read_in_blocks(
        mut file: impl Read,
        size: u64,
        path: &Path,
        largest_block: usize,
    ) -> Result<Samples, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.display().to_string(),
            source,
        };
        // The rows' buffer is sized from the file, up to a bound: past it, it grows.
        let hint = usize::try_from(size.min(RESERVE_MAX_BYTES)).unwrap_or(0);
        let mut parser = Parser::new(hint);
        // A small file in one block of its size (zeroing a whole block per file costs more
        // than reading a month of small files); a page at least, for a file that grows.
        let block_size = usize::try_from(size)
            .map_or(largest_block, |n| n.max(4096))
            .min(largest_block);
        let mut block = vec![0u8; block_size];
        // Bytes of a line that a block cut, moved to the front before the next read.
        let mut kept = 0;
        let bad_header = |NotAHeader(found)| ReadError::BadHeader {
            path: path.display().to_string(),
            found,
        };
        // Inside a line longer than LINE_MAX_BYTES: its bytes are dropped up to its end.
        let mut skipping = false;
        loop {
            if kept == block.len() {
                if block.len() >= LINE_MAX_BYTES {
                    // A line no sampler writes (a file of zeros, a user's junk): it is
                    // named as a bad line and skipped, never held whole.
                    skipping = true;
                    kept = 0;
                } else {
                    // A line longer than the block: grow it rather than cut the line.
                    block.resize((block.len() * 2).min(LINE_MAX_BYTES), 0);
                }
            }
            let read = match file.read(&mut block[kept..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            let mut start = 0;
            if skipping {
                match block[kept..kept + read].iter().position(|&b| b == b'\n') {
                    None => continue,
                    Some(end) => {
                        parser.too_long_line().map_err(bad_header)?;
                        skipping = false;
                        start = kept + end + 1;
                    }
                }
            }
            let filled = kept + read;
            let complete = match memchr_last_newline(&block[start..filled]) {
                Some(end) => start + end + 1,
                None => start,
            };
            parser.lines(&block[start..complete]).map_err(bad_header)?;
            block.copy_within(complete..filled, 0);
            kept = filled - complete;
        }
        if skipping && parser.lines_seen == 0 {
            // Not even a header: no samples file.
            parser.too_long_line().map_err(bad_header)?;
        }
        Ok(parser.finish(kept > 0 || skipping))
    }

    /// Parse the text of a samples file; `Err` when its first line is not a header.
    pub fn parse(text: &str) -> Result<Samples, NotAHeader> {
        let bytes = text.as_bytes();
        let complete = memchr_last_newline(bytes).map_or(0, |end| end + 1);
        let mut parser = Parser::new(bytes.len());
        parser.lines(&bytes[..complete])?;
        Ok(parser.finish(complete < bytes.len()))
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The values of a column that are present, in file order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = u64> + 'a {
        let index = self.column(name).unwrap_or(usize::MAX);
        self.rows.column(index)
    }

    /// The last complete row, for a sampler that continues this file.
    pub fn last_row(&self) -> Option<Vec<Option<u64>>> {
        self.rows.last().map(|r| r.to_vec())
    }
}

/// How much of a samples file is read at once: large enough that system calls cost
/// nothing, small enough to stay in the CPU's cache while its lines are parsed.
const READ_BLOCK: usize = 256 * 1024;

/// The longest line read as a line; longer ones are skipped as bad lines. A sampler's
/// lines are a few hundred bytes, a few kilobytes with many GPUs.
const LINE_MAX_BYTES: usize = 1 << 20;

/// The most the rows' buffer is sized up front from a file's size.
const RESERVE_MAX_BYTES: u64 = 256 << 20;

fn memchr_last_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}

/// Reads complete lines, header first, into [`Samples`].
struct Parser {
    samples: Samples,
    /// Lines seen, the header included (1-based numbers for bad lines).
    lines_seen: usize,
    /// Bytes of the file, to size the rows' buffer once.
    size_hint: usize,
}

impl Parser {
    fn new(size_hint: usize) -> Parser {
        Parser {
            samples: Samples::default(),
            lines_seen: 0,
            size_hint,
        }
    }

    /// Parse whole lines (`bytes` is empty or ends with a newline); `Err` when the header
    /// line is not one.
    fn lines(&mut self, bytes: &[u8]) -> Result<(), NotAHeader> {
        let mut rest = bytes;
        if self.lines_seen == 0 {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Ok(());
            };
            self.header(&rest[..end])?;
            self.lines_seen = 1;
            rest = &rest[end + 1..];
        }
        while !rest.is_empty() {
            self.lines_seen += 1;
            // The byte loop reads well-formed rows and finds their end in the same pass;
            // anything else takes the careful path, which says what is wrong.
            let end = match fast_row::parse_row(rest, &mut self.samples.rows.columns) {
                Some(end) => end,
                None => {
                    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                    self.careful_row(&rest[..end]);
                    end
                }
            };
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        Ok(())
    }

    /// A line longer than [`LINE_MAX_BYTES`] was skipped: a bad line, or a header that
    /// is not one.
    fn too_long_line(&mut self) -> Result<(), NotAHeader> {
        self.lines_seen += 1;
        if self.lines_seen == 1 {
            return Err(NotAHeader(format!(
                "a line of more than {LINE_MAX_BYTES} bytes"
            )));
        }
        self.samples.bad_lines.push(BadLine {
            line: self.lines_seen,
            reason: format!("more than {LINE_MAX_BYTES} bytes: skipped"),
        });
        Ok(())
    }

    fn header(&mut self, line: &[u8]) -> Result<(), NotAHeader> {
        // A file saved by a spreadsheet or an editor on Windows: a UTF-8 BOM, CRLF lines.
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let header = String::from_utf8_lossy(without_cr(line));
        if !header.starts_with(TIME_COLUMN) {
            return Err(NotAHeader(header.chars().take(80).collect()));
        }
        self.samples.columns = header.split(',').map(str::to_string).collect();
        self.samples.rows = Rows::new(self.samples.columns.len());
        // A value and its comma take at least eight bytes of text in a real recording
        // (times and counters are long), so this rarely grows.
        let width = self.samples.columns.len();
        self.samples.rows.reserve(self.size_hint / 8 / width);
        Ok(())
    }

    fn careful_row(&mut self, line: &[u8]) {
        let width = self.samples.columns.len();
        match parse_row(&String::from_utf8_lossy(without_cr(line)), width) {
            Ok(row) => self.samples.rows.push(&row),
            Err(reason) => self.samples.bad_lines.push(BadLine {
                line: self.lines_seen,
                reason: reason.to_string(),
            }),
        }
    }

    /// The samples read; `cut_line` when the file ended inside a line.
    fn finish(mut self, cut_line: bool) -> Samples {
        self.samples.truncated_tail = cut_line;
        self.samples
    }
}

/// A line without the carriage return of a CRLF ending.
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Why a row was skipped, as its [`BadLine`] says.
#[derive(Debug, thiserror::Error)]
enum BadRow {
    #[error("expected {expected} fields, found {found}: {line:?}")]
    FieldCount {
        expected: usize,
        found: usize,
        line: String,
    },
    #[error("field {field}: {value} is no reading (expected an integer below 2^64 - 1)")]
    NoReading { field: usize, value: String },
    #[error("field {field}: expected an integer, found {found:?}")]
    NotAnInteger { field: usize, found: String },
}

fn parse_row(line: &str, width: usize) -> Result<Vec<Option<u64>>, BadRow> {
    // The field count first (a cut or foreign line says so), then one allocation: a day of
    // samples on a big node is millions of fields.
    if line.bytes().filter(|&b| b == b',').count() + 1 != width {
        return Err(BadRow::FieldCount {
            expected: width,
            found: line.split(',').count(),
            line: line.chars().take(80).collect(),
        });
    }
    let mut row = Vec::with_capacity(width);
    for (i, field) in line.split(',').enumerate() {
        row.push(match field {
            "" if i > 0 => None,
            f => Some(match parse_u64(f) {
                // The largest u64 marks an absent value in memory: no sampler writes it.
                Some(u64::MAX) => {
                    return Err(BadRow::NoReading {
                        field: i + 1,
                        value: f.to_string(),
                    })
                }
                Some(v) => v,
                None => {
                    return Err(BadRow::NotAnInteger {
                        field: i + 1,
                        found: crate::untrusted::cut(f, 80),
                    })
                }
            }),
        });
    }
    Ok(row)
}

/// Decimal digits only (no sign, no spaces), as the sampler writes them.
fn parse_u64(field: &str) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    field.bytes().try_fold(0u64, |n, b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Vec<String> {
        vec!["rapl:package-0".into(), "rapl:package-0/dram".into()]
    }

    fn gauges() -> Vec<String> {
        vec!["nvml:GPU-1:power_mw".into()]
    }

    fn row(t: u64) -> SampleRow {
        SampleRow {
            time_unix_ms: t,
            job_cpu_ns: Some(t * 10),
            job_mem_bytes: None,
            job_mem_peak_bytes: Some(4096),
            node_cpu_busy_ns: Some(t * 20),
            node_cpu_total_ns: Some(t * 40),
            node_mem_used_bytes: Some(1 << 30),
            node_jobs: Some(2),
            energy: vec![
                Some(EnergyValue {
                    energy_uj: t,
                    raw: t + 1,
                }),
                None,
            ],
            gauges: vec![Some(250_000)],
        }
    }

    #[test]
    fn written_rows_read_back() {
        let mut text = header_line(&channels(), &gauges());
        for t in [1000, 2000] {
            row(t).format_into(&mut text);
        }
        let samples = Samples::parse(&text).unwrap();
        assert_eq!(samples.columns.len(), 13);
        assert_eq!(samples.values("nvml:GPU-1:power_mw").last(), Some(250_000));
        assert_eq!(channels_of_header(&samples.columns), channels());
        assert_eq!(samples.rows.len(), 2);
        assert!(!samples.truncated_tail && samples.bad_lines.is_empty());
        assert_eq!(
            samples
                .values(&energy_column("rapl:package-0"))
                .collect::<Vec<_>>(),
            [1000, 2000]
        );
        assert_eq!(samples.values(MEM_COLUMN).count(), 0);
        assert_eq!(samples.values(CPU_COLUMN).last(), Some(20_000));
    }

    #[test]
    fn a_truncated_last_line_is_flagged_not_fatal() {
        let mut text = header_line(&channels(), &gauges());
        row(1000).format_into(&mut text);
        text.push_str("2000,20");
        let samples = Samples::parse(&text).unwrap();
        assert_eq!(samples.rows.len(), 1);
        assert!(samples.truncated_tail);
        assert!(samples.bad_lines.is_empty());
    }

    #[test]
    fn a_bad_line_is_named_and_the_rest_kept() {
        let mut text = header_line(&channels(), &gauges());
        row(1000).format_into(&mut text);
        text.push_str("oops\n");
        row(3000).format_into(&mut text);
        text.push_str("4000,x,,,,,,,,,,,\n");
        let samples = Samples::parse(&text).unwrap();
        assert_eq!(samples.rows.len(), 2);
        assert_eq!(samples.bad_lines.len(), 2);
        assert_eq!(samples.bad_lines[0].line, 3);
        assert!(samples.bad_lines[0].reason.contains("expected 13 fields"));
        assert_eq!(samples.bad_lines[1].line, 5);
        assert!(samples.bad_lines[1]
            .reason
            .contains("field 2: expected an integer"));
    }

    #[test]
    fn a_bad_field_is_quoted_80_characters_at_most() {
        let mut text = header_line(&channels(), &gauges());
        text.push_str(&format!("1000,{},,,,,,,,,,,\n", "x".repeat(100_000)));
        let samples = Samples::parse(&text).unwrap();
        let reason = &samples.bad_lines[0].reason;
        assert!(reason.starts_with("field 2: expected an integer") && reason.len() < 150);
    }

    /// A samples file saved on Windows (a UTF-8 BOM, CRLF lines) reads as the original.
    #[test]
    fn a_bom_and_crlf_lines_are_accepted() {
        let mut text = header_line(&channels(), &gauges());
        for t in [1000, 2000, 3000] {
            row(t).format_into(&mut text);
        }
        let windows = format!("\u{feff}{}", text.replace('\n', "\r\n"));
        let read = Samples::parse(&windows).unwrap();
        assert!(read.bad_lines.is_empty(), "{:?}", read.bad_lines);
        assert_eq!(read, Samples::parse(&text).unwrap());
    }

    #[test]
    fn a_file_that_is_not_a_samples_file_is_refused() {
        assert!(Samples::parse("name,age\n1,2\n").is_err());
        assert_eq!(Samples::parse("").unwrap().rows.len(), 0);
    }

    #[test]
    fn a_line_longer_than_any_sampler_writes_is_skipped_not_held() {
        let mut text = header_line(&channels(), &gauges());
        row(1000).format_into(&mut text);
        text.push_str(&"\0".repeat(3 * LINE_MAX_BYTES));
        text.push('\n');
        row(2000).format_into(&mut text);
        text.push_str(&"9".repeat(2 * LINE_MAX_BYTES));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.samples.csv");
        std::fs::write(&path, &text).unwrap();
        let read = Samples::read(&path).unwrap();
        assert_eq!(read.rows.len(), 2);
        assert_eq!(read.bad_lines.len(), 1);
        assert_eq!(read.bad_lines[0].line, 3);
        assert!(read.bad_lines[0].reason.contains("more than 1048576 bytes"));
        assert!(read.truncated_tail);
        std::fs::write(&path, "\0".repeat(2 * LINE_MAX_BYTES)).unwrap();
        let err = Samples::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("n1.samples.csv: line 1") && err.len() < 300,
            "{err}"
        );
    }

    #[test]
    fn a_file_read_in_blocks_is_read_as_a_whole() {
        // Lines cut by the reading blocks at every offset, a line longer than a block, a bad
        // line and a cut last line: reading the file gives what parsing its text gives.
        let mut text = header_line(&channels(), &gauges());
        let mut t = 1_000;
        while text.len() < 3 * READ_BLOCK {
            row(t).format_into(&mut text);
            t += 1_000;
        }
        text.push_str(&format!("{},{}\n", t, "9".repeat(READ_BLOCK + 10)));
        row(t + 1_000).format_into(&mut text);
        text.push_str("1700000000000,12");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.samples.csv");
        std::fs::write(&path, &text).unwrap();
        let read = Samples::read(&path).unwrap();
        assert_eq!(read, Samples::parse(&text).unwrap());
        // Every cut of a small file's lines: blocks of 1 to 64 bytes.
        let small = &text[..text.char_indices().nth(700).unwrap().0];
        let path_small = dir.path().join("n2.samples.csv");
        std::fs::write(&path_small, small).unwrap();
        let whole = Samples::parse(small).unwrap();
        assert!(whole.rows.len() >= 2 && whole.truncated_tail);
        for block in 1..=64 {
            let file = File::open(&path_small).unwrap();
            let size = small.len() as u64;
            let read = Samples::read_in_blocks(file, size, &path_small, block).unwrap();
            assert_eq!(read, whole, "blocks of {block} bytes");
        }
        assert_eq!(read.rows.len() as u64, t / 1_000);
        assert_eq!(read.bad_lines.len(), 1);
        assert_eq!(read.bad_lines[0].line, t as usize / 1_000 + 1);
        assert!(read.truncated_tail);
    }
}
