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
use std::path::Path;

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

/// The rows of a samples file in one flat buffer, 8 bytes a value: a day of samples on a
/// big node is millions of values, and a `Vec` per row of `Option`s costs three times the
/// memory and an allocation per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    width: usize,
    values: Vec<u64>,
}

/// Marks a value the sampler could not read (never a real counter, time or gauge).
const ABSENT: u64 = u64::MAX;

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a>(&'a [u64]);

impl Row<'_> {
    /// The value in column `column`, if the sampler read one.
    #[inline]
    pub fn get(&self, column: usize) -> Option<u64> {
        self.0.get(column).copied().filter(|v| *v != ABSENT)
    }

    pub fn to_vec(&self) -> Vec<Option<u64>> {
        (0..self.0.len()).map(|c| self.get(c)).collect()
    }
}

impl Rows {
    pub fn new(width: usize) -> Rows {
        Rows {
            width,
            values: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Row<'_>> {
        let start = index.checked_mul(self.width)?;
        self.values.get(start..start + self.width).map(Row)
    }

    pub fn last(&self) -> Option<Row<'_>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        self.values.chunks_exact(self.width.max(1)).map(Row)
    }

    /// Consecutive rows, as `(earlier, later)`: the periods between samples.
    pub fn pairs(&self) -> impl Iterator<Item = (Row<'_>, Row<'_>)> + '_ {
        self.iter().zip(self.iter().skip(1))
    }

    /// Append a row of `width` values (`None` for absent; a value of `u64::MAX` reads as
    /// absent).
    pub fn push(&mut self, row: &[Option<u64>]) {
        debug_assert_eq!(row.len(), self.width);
        self.values.extend(row.iter().map(|v| v.unwrap_or(ABSENT)));
    }

    /// Change one value (tests build odd recordings this way).
    #[cfg(test)]
    pub(crate) fn set(&mut self, index: usize, column: usize, value: Option<u64>) {
        self.values[index * self.width + column] = value.unwrap_or(ABSENT);
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

impl Samples {
    pub fn read(path: &Path) -> Result<Samples, ReadError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Samples::parse(&text).map_err(|found| ReadError::BadHeader {
            path: path.display().to_string(),
            found,
        })
    }

    /// Parse the text of a samples file; `Err` carries the header line when it is not one.
    pub fn parse(text: &str) -> Result<Samples, String> {
        let mut samples = Samples::default();
        let complete = match text.rfind('\n') {
            Some(end) => {
                samples.truncated_tail = end + 1 < text.len();
                &text[..end]
            }
            None => {
                samples.truncated_tail = !text.is_empty();
                ""
            }
        };
        let mut lines = complete.split('\n');
        let header = lines.next().unwrap_or("");
        if !header.starts_with(TIME_COLUMN) {
            if header.is_empty() {
                return Ok(samples);
            }
            return Err(header.chars().take(80).collect());
        }
        samples.columns = header.split(',').map(str::to_string).collect();
        let width = samples.columns.len();
        samples.rows = Rows::new(width);
        samples.rows.values.reserve(complete.len() / 8);
        for (index, line) in lines.enumerate() {
            // The byte loop reads well-formed rows; anything else takes the careful path,
            // which says what is wrong.
            if parse_row_fast(line.as_bytes(), width, &mut samples.rows.values) {
                continue;
            }
            match parse_row(line, width) {
                Ok(row) => samples.rows.push(&row),
                Err(reason) => samples.bad_lines.push(BadLine {
                    line: index + 2,
                    reason,
                }),
            }
        }
        Ok(samples)
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The values of a column that are present, in file order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = u64> + 'a {
        let index = self.column(name);
        self.rows
            .iter()
            .filter_map(move |row| index.and_then(|i| row.get(i)))
    }

    /// The last complete row, for a sampler that continues this file.
    pub fn last_row(&self) -> Option<Vec<Option<u64>>> {
        self.rows.last().map(|r| r.to_vec())
    }
}

fn parse_row(line: &str, width: usize) -> Result<Vec<Option<u64>>, String> {
    let count_error = || {
        format!(
            "expected {width} fields, found {}: {:?}",
            line.split(',').count(),
            line.chars().take(80).collect::<String>()
        )
    };
    // The field count first (a cut or foreign line says so), then one allocation: a day of
    // samples on a big node is millions of fields.
    if line.bytes().filter(|&b| b == b',').count() + 1 != width {
        return Err(count_error());
    }
    let mut row = Vec::with_capacity(width);
    for (i, field) in line.split(',').enumerate() {
        row.push(match field {
            "" if i > 0 => None,
            f => Some(
                parse_u64(f)
                    .ok_or_else(|| format!("field {}: expected an integer, found {f:?}", i + 1))?,
            ),
        });
    }
    Ok(row)
}

/// A well-formed row in one pass over its bytes, appended to `out`: `width` fields of
/// decimal digits, empty (absent) except the first. For anything else `out` is left as it
/// was and `false` returned.
fn parse_row_fast(line: &[u8], width: usize, out: &mut Vec<u64>) -> bool {
    let start = out.len();
    let (mut value, mut digits) = (0u64, 0u32);
    let mut fields = 0;
    for &b in line {
        if b == b',' {
            out.push(if digits > 0 { value } else { ABSENT });
            fields += 1;
            (value, digits) = (0, 0);
        } else {
            let digit = b.wrapping_sub(b'0');
            if digit >= 10 || digits >= 19 {
                // Not a digit, or a number that may not fit: the careful path decides.
                out.truncate(start);
                return false;
            }
            value = value * 10 + u64::from(digit);
            digits += 1;
        }
    }
    out.push(if digits > 0 { value } else { ABSENT });
    fields += 1;
    if fields != width || out[start] == ABSENT {
        out.truncate(start);
        return false;
    }
    true
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
    fn the_fast_row_parser_agrees_with_the_careful_one() {
        for line in [
            "1,2,,4",
            "0,,,",
            "18446744073709551615,1,2,3",
            "1,2,3",
            "1,2,3,4,5",
            ",1,2,3",
            "1,x,2,3",
            "1,-2,3,4",
        ] {
            let careful = parse_row(line, 4).ok();
            let mut rows = Rows::new(4);
            let fast = parse_row_fast(line.as_bytes(), 4, &mut rows.values)
                .then(|| rows.get(0).unwrap().to_vec());
            // The fast path may decline where the careful one accepts: never disagree.
            assert!(
                fast.is_none() || fast == careful,
                "{line}: {fast:?} vs {careful:?}"
            );
        }
        let mut rows = Rows::new(4);
        assert!(parse_row_fast(b"1,2,,4", 4, &mut rows.values));
        assert!(!parse_row_fast(b"1,2,4", 4, &mut rows.values));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows.get(0).unwrap().to_vec(),
            [Some(1), Some(2), None, Some(4)]
        );
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
    fn a_file_that_is_not_a_samples_file_is_refused() {
        assert!(Samples::parse("name,age\n1,2\n").is_err());
        assert_eq!(Samples::parse("").unwrap().rows.len(), 0);
    }
}
