//! The `wattmetre-read` CSV stream, as the Lab IA stores it (stdout and stderr in one file):
//! a header `#timestamp,#frame_is_ok,#U1,#U2,#U3,#current1,#activepow1,…`, then one row per
//! frame, `SECONDS.NANOSECONDS,true|false,` then every value as `%.1f`.
//!
//! What the reader survives (docs/background/aipowermeter-and-omegawatt.md §3.2): the header
//! glued to a stderr log line; stderr log lines anywhere, even inside a row (stdout is
//! block-buffered, stderr is not); `false` frames with empty fields; `nan`, `-nan`, `-0.0`;
//! a truncated last line; a clock that steps back. Values are parsed as integer milli of
//! their unit, never as general floats.

use std::collections::HashMap;

use aipm_recording::untrusted::cut;

/// The columns of a stream, resolved by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub columns: Vec<String>,
    /// Plug (channel) number -> index of its `#activepowN` column.
    pub power_columns: HashMap<u32, usize>,
}

impl Header {
    pub fn parse(text: &str) -> Result<Header, String> {
        let columns: Vec<String> = text.trim_end().split(',').map(str::to_string).collect();
        if columns.first().map(String::as_str) != Some("#timestamp")
            || columns.get(1).map(String::as_str) != Some("#frame_is_ok")
        {
            return Err(format!(
                "expected a header starting with #timestamp,#frame_is_ok, found {:?}",
                text.chars().take(60).collect::<String>()
            ));
        }
        let power_columns = columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((c.strip_prefix("#activepow")?.parse().ok()?, i)))
            .collect();
        Ok(Header {
            columns,
            power_columns,
        })
    }

    /// The plug numbers of the stream, in order.
    pub fn plugs(&self) -> Vec<u32> {
        let mut plugs: Vec<u32> = self.power_columns.keys().copied().collect();
        plugs.sort_unstable();
        plugs
    }
}

/// One frame of the meter: its time and, for a valid frame, every value in milli.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
    pub ok: bool,
    /// One per column after `#frame_is_ok`, in thousandths (mW for power); `None` when
    /// empty or `nan`.
    pub milli: Vec<Option<i32>>,
}

/// What was skipped, counted so that every report can say it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub lines: u64,
    pub valid_frames: u64,
    pub invalid_frames: u64,
    pub log_lines: u64,
    /// Values reported as `nan` / `-nan` in valid frames.
    pub nan_values: u64,
    pub clock_steps_back: u64,
    pub bad_lines: u64,
    /// The first bad lines: (line number, what was wrong).
    pub first_bad: Vec<(u64, String)>,
    pub truncated_last_line: bool,
    /// The plugs of the last header read, frames or not.
    pub header_plugs: Option<Vec<u32>>,
}

const KEEP_BAD: usize = 5;

impl StreamStats {
    /// What was skipped, on one line: `3 invalid frame(s), 2 unreadable line(s) (first at
    /// line 2: …)`.
    pub fn skipped(&self) -> String {
        let mut parts = vec![format!("{} invalid frame(s)", self.invalid_frames)];
        if self.bad_lines > 0 {
            let first = self
                .first_bad
                .first()
                .map(|(l, r)| format!(" (first at line {l}: {r})"))
                .unwrap_or_default();
            parts.push(format!("{} unreadable line(s){first}", self.bad_lines));
        }
        if self.nan_values > 0 {
            parts.push(format!("{} nan value(s)", self.nan_values));
        }
        if self.log_lines > 0 {
            parts.push(format!("{} log line(s)", self.log_lines));
        }
        if self.clock_steps_back > 0 {
            parts.push(format!("{} clock step(s) back", self.clock_steps_back));
        }
        if self.truncated_last_line {
            parts.push("last line cut short".into());
        }
        parts.join(", ")
    }

    /// Why a file gave no frame, for the message that says so.
    pub fn why_no_frame(&self) -> String {
        let header = match &self.header_plugs {
            Some(plugs) => format!("a header of {} plug(s) but no frame", plugs.len()),
            None => "no #timestamp,#frame_is_ok header".to_string(),
        };
        match self.first_bad.first() {
            Some((line, reason)) => format!(
                "{} line(s) read, {header}; {} unreadable line(s), first at line {line}: {reason}",
                self.lines, self.bad_lines
            ),
            None => format!("{} line(s) read, {header}", self.lines),
        }
    }
}

/// Reads a stream line by line; frames go to a callback.
#[derive(Debug, Default)]
pub struct StreamReader {
    header: Option<Header>,
    /// The start of a row cut by a stderr line, waiting for the rest on the next line.
    pending: String,
    last_time_ns: Option<i64>,
    /// The frame being parsed, reused from line to line (no allocation per frame).
    frame: Frame,
    pub stats: StreamStats,
}

impl StreamReader {
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Feed one physical line as bytes: a well-formed row is parsed in one pass over its
    /// bytes (the hot path of a day's archive); anything else goes through [`Self::line`].
    pub fn line_bytes(&mut self, line: &[u8], frames: &mut impl FnMut(&Header, &Frame)) {
        let candidate = self.pending.is_empty()
            && line.first().is_some_and(u8::is_ascii_digit)
            && memchr::memchr(b'/', line).is_none();
        if candidate {
            if let Some(header) = &self.header {
                if let Some(nans) = parse_row_fast(line, header.columns.len() - 2, &mut self.frame)
                {
                    self.stats.lines += 1;
                    self.accept(nans, frames);
                    return;
                }
            }
        }
        match std::str::from_utf8(line) {
            Ok(text) => self.line(text, frames),
            Err(_) => self.line(&String::from_utf8_lossy(line), frames),
        }
    }

    /// Count a parsed frame in `self.frame` and hand it on.
    fn accept(&mut self, nans: u64, frames: &mut impl FnMut(&Header, &Frame)) {
        let time_ns = self.frame.time_ns;
        if self.last_time_ns.is_some_and(|last| time_ns < last) {
            self.stats.clock_steps_back += 1;
        }
        self.last_time_ns = Some(time_ns);
        if self.frame.ok {
            self.stats.valid_frames += 1;
            self.stats.nan_values += nans;
        } else {
            self.stats.invalid_frames += 1;
        }
        if let Some(header) = &self.header {
            frames(header, &self.frame);
        }
    }

    /// Feed one physical line (without its newline).
    pub fn line(&mut self, line: &str, frames: &mut impl FnMut(&Header, &Frame)) {
        self.stats.lines += 1;
        let line_no = self.stats.lines;
        // A stderr record inside the line: keep what precedes it, which is a row's start.
        let (data, has_log) = match find_log_record(line) {
            Some(at) => (&line[..at], true),
            None => (line, false),
        };
        if has_log {
            self.stats.log_lines += 1;
            // The header may follow a log record that had no newline (`detect '24' plugs.`).
            if let Some(at) = line.find("#timestamp") {
                self.set_header(line_no, &line[at..]);
                return;
            }
            if !data.is_empty() {
                self.pending.push_str(data);
            }
            return;
        }
        let owned;
        let text = if self.pending.is_empty() {
            data
        } else {
            owned = std::mem::take(&mut self.pending) + data;
            owned.as_str()
        };
        if text.starts_with("#timestamp") {
            self.set_header(line_no, text);
            return;
        }
        if text.is_empty() {
            return;
        }
        match self.parse_row(text) {
            Ok(nans) => self.accept(nans, frames),
            Err(reason) => self.bad(line_no, reason),
        }
    }

    /// The stream ended; `partial` is what followed its last newline (a line cut short by
    /// an unclean stop), which is reported, not read.
    pub fn finish(&mut self, partial: &str) {
        if !partial.is_empty() {
            self.stats.truncated_last_line = true;
        }
        if !self.pending.is_empty() {
            self.pending.clear();
            let line = self.stats.lines;
            self.bad(line, "a row cut by a log line never continued".into());
        }
    }

    fn set_header(&mut self, line_no: u64, text: &str) {
        match Header::parse(text) {
            Ok(header) => {
                self.stats.header_plugs = Some(header.plugs());
                self.header = Some(header);
            }
            Err(e) => self.bad(line_no, e),
        }
    }

    fn bad(&mut self, line_no: u64, reason: String) {
        self.stats.bad_lines += 1;
        if self.stats.first_bad.len() < KEEP_BAD {
            self.stats.first_bad.push((line_no, reason));
        }
    }

    /// Parse a row into `self.frame`; returns its count of `nan` values.
    fn parse_row(&mut self, text: &str) -> Result<u64, String> {
        let Some(header) = &self.header else {
            return Err("a row before any header".into());
        };
        let mut fields = text.split(',');
        let time = fields.next().unwrap_or("");
        let time_ns = parse_time_ns(time).ok_or_else(|| {
            format!(
                "expected a timestamp like 1671527189.314471465, found {:?}",
                cut(time, 80)
            )
        })?;
        let ok = match fields.next() {
            Some("true") => true,
            Some("false") => false,
            other => {
                return Err(format!(
                    "expected true or false in the second field, found {:?}",
                    other.map(|o| cut(o, 80))
                ))
            }
        };
        let frame = &mut self.frame;
        frame.time_ns = time_ns;
        frame.ok = ok;
        frame.milli.clear();
        let mut nans = 0;
        for field in fields {
            frame.milli.push(match field {
                "" => None,
                "nan" | "-nan" => {
                    nans += 1;
                    None
                }
                v => Some(parse_milli(v).ok_or_else(|| {
                    format!("expected a value like 232.3, found {:?}", cut(v, 80))
                })?),
            });
        }
        if frame.milli.len() + 2 != header.columns.len() {
            return Err(format!(
                "expected {} fields, found {}",
                header.columns.len(),
                frame.milli.len() + 2
            ));
        }
        Ok(nans)
    }
}

/// One pass over a row's bytes: `SECONDS.NANOS,true|false,` then `values` fields of `%.1f`,
/// empty, `nan` or `-nan`. `None` for anything else (the slow path then says what is wrong).
/// Returns the number of `nan` values.
fn parse_row_fast(line: &[u8], values: usize, frame: &mut Frame) -> Option<u64> {
    let mut i = 0;
    let mut secs: i64 = 0;
    while i < line.len() && line[i].is_ascii_digit() {
        secs = secs
            .checked_mul(10)?
            .checked_add(i64::from(line[i] - b'0'))?;
        i += 1;
    }
    if line.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let mut nanos: i64 = 0;
    for _ in 0..9 {
        let d = *line.get(i)?;
        if !d.is_ascii_digit() {
            return None;
        }
        nanos = nanos * 10 + i64::from(d - b'0');
        i += 1;
    }
    let rest = &line[i..];
    let (ok, mut i) = if rest.starts_with(b",true") {
        (true, i + 5)
    } else if rest.starts_with(b",false") {
        (false, i + 6)
    } else {
        return None;
    };
    frame.time_ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    frame.ok = ok;
    frame.milli.clear();
    let mut nans = 0;
    while i < line.len() {
        if line[i] != b',' {
            return None;
        }
        i += 1;
        let start = i;
        while i < line.len() && line[i] != b',' {
            i += 1;
        }
        let field = &line[start..i];
        frame.milli.push(match field {
            b"" => None,
            b"nan" | b"-nan" => {
                nans += 1;
                None
            }
            _ => Some(parse_milli_bytes(field)?),
        });
    }
    (frame.milli.len() == values).then_some(nans)
}

/// [`parse_milli`] on bytes.
fn parse_milli_bytes(field: &[u8]) -> Option<i32> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let (whole, frac) = match memchr::memchr(b'.', digits) {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &b""[..]),
    };
    if whole.is_empty()
        || whole.len() > 6
        || frac.len() > 3
        || (frac.is_empty() && digits.len() != whole.len())
    {
        return None;
    }
    let mut value: i32 = 0;
    for &d in whole {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i32::from(d - b'0');
    }
    let mut scale = 100;
    value *= 1000;
    for &d in frac {
        if !d.is_ascii_digit() {
            return None;
        }
        value += i32::from(d - b'0') * scale;
        scale /= 10;
    }
    Some(if negative { -value } else { value })
}

/// Where a stderr record (`2023/12/15-07:07:49;…`) starts in a line. Rows never contain '/',
/// so the first '/' is the only candidate.
pub fn find_log_record(line: &str) -> Option<usize> {
    let slash = line.find('/')?;
    let start = slash.checked_sub(4)?;
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(start + i) == Some(&c);
    let is_record = digits(start..start + 4)
        && at(4, b'/')
        && digits(start + 5..start + 7)
        && at(7, b'/')
        && digits(start + 8..start + 10)
        && at(10, b'-')
        && digits(start + 11..start + 13)
        && at(13, b':')
        && digits(start + 14..start + 16)
        && at(16, b':')
        && digits(start + 17..start + 19)
        && at(19, b';');
    is_record.then_some(start)
}

/// `1671527189.314471465` -> nanoseconds (`%lld.%.9ld`).
pub fn parse_time_ns(text: &str) -> Option<i64> {
    let (secs, frac) = text.split_once('.')?;
    if frac.len() != 9
        || secs.is_empty()
        || !secs.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    secs.parse::<i64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac.parse().ok()?)
}

/// A decimal value in thousandths: `232.3` -> 232300, `-0.0` -> 0, `12` -> 12000,
/// `12.125` -> 12125. At most three decimals.
pub fn parse_milli(text: &str) -> Option<i32> {
    parse_milli_bytes(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "#timestamp,#frame_is_ok,#U1,#U2,#U3,#current1,#activepow1,#current2,#activepow2";

    fn read(text: &str) -> (Vec<Frame>, StreamStats) {
        let mut reader = StreamReader::default();
        let mut frames = Vec::new();
        let (complete, partial) = text.rsplit_once('\n').map_or(("", text), |(c, p)| (c, p));
        for line in complete.split('\n').filter(|_| !complete.is_empty()) {
            reader.line(line, &mut |_, f| frames.push(f.clone()));
        }
        reader.finish(partial);
        (frames, reader.stats)
    }

    /// The byte path and the text path read the same frames and count the same things.
    #[test]
    fn the_fast_path_agrees_with_the_careful_one() {
        let log = "2023/12/15-07:07:50;Fri Dec 15 07:07:50 2023;ERROR;BAD FRAME CRC";
        let text = format!(
            "{HEADER}\n1671527189.294241015,false,,,,,,,\n1671527189.304214184,true,232.3,0.0,0.0,0.1,20.9,0.2,-0.0\n\
             1671527189.314471465,true,233.0,nan,-nan,0.1,21.0,0.2,40.1\n1671527189.324214184,true,232.3,0.0{log}\n,0.0,0.1,20.9,0.2,40.0\n\
             garbage\n1671527189.334471465,true,233.0,0.0,0.0,0.1,21.0,0.2,4x\n1671527189.344471465,true,1,2\n99.000000000,true,1.0,2.0,3.0,4.0,5.0,6.0,7.0\n"
        );
        let (slow_frames, slow_stats) = read(&text);
        let mut reader = StreamReader::default();
        let mut fast_frames = Vec::new();
        for line in text.lines() {
            reader.line_bytes(line.as_bytes(), &mut |_, f| fast_frames.push(f.clone()));
        }
        reader.finish("");
        assert_eq!(fast_frames, slow_frames);
        assert_eq!(reader.stats, slow_stats);
        assert_eq!(slow_stats.valid_frames, 4);
        assert_eq!(slow_stats.clock_steps_back, 1);
        for (bytes, value) in [
            ("232.3", Some(232_300)),
            ("-0.0", Some(0)),
            ("20", Some(20_000)),
            ("1.23", Some(1_230)),
            ("12.125", Some(12_125)),
            ("1.2345", None),
            ("1.", None),
            (".5", None),
            ("", None),
        ] {
            assert_eq!(parse_milli_bytes(bytes.as_bytes()), value, "{bytes}");
            assert_eq!(parse_milli(bytes), value, "{bytes}");
        }
    }

    #[test]
    fn numbers_as_the_meter_prints_them() {
        assert_eq!(parse_milli("232.3"), Some(232_300));
        assert_eq!(parse_milli("-0.0"), Some(0));
        assert_eq!(parse_milli("-1.5"), Some(-1_500));
        assert_eq!(parse_milli("20"), Some(20_000));
        for bad in ["", "1.2345", "a.1", "1.", ".5", "1e3"] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
        assert_eq!(
            parse_time_ns("1671527189.314471465"),
            Some(1_671_527_189_314_471_465)
        );
        assert_eq!(parse_time_ns("1671527189.31"), None);
    }

    /// The first two lines of a real Lab IA log (tests/fixtures/aipowermeter): the header is glued to
    /// the `detect '24' plugs.` log line.
    #[test]
    fn reads_the_glued_header_of_a_real_log() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/aipowermeter/omegawatt_wattmetre-read_head_24plugs_from_labia_README.txt"
        ))
        .unwrap();
        let mut reader = StreamReader::default();
        for line in text.lines() {
            reader.line(line, &mut |_, _| panic!("no frame in a header"));
        }
        let header = reader.header().expect("header found");
        assert_eq!(header.plugs(), (1..=24).collect::<Vec<_>>());
        assert_eq!(header.power_columns[&1], 6);
        assert_eq!(header.power_columns[&24], 52);
        assert_eq!(reader.stats.log_lines, 2);
        assert_eq!(reader.stats.bad_lines, 0);
    }

    #[test]
    fn frames_invalid_frames_and_nans() {
        let text = format!(
            "{HEADER}\n1671527189.294241015,false,,,,,,,\n1671527189.304214184,true,232.3,0.0,0.0,0.1,20.9,0.2,-0.0\n\
             1671527189.314471465,true,233.0,nan,-nan,0.1,21.0,0.2,40.1\n"
        );
        let (frames, stats) = read(&text);
        assert_eq!(
            (stats.valid_frames, stats.invalid_frames, stats.nan_values),
            (2, 1, 2)
        );
        assert_eq!(
            frames[1].milli,
            [
                Some(232_300),
                Some(0),
                Some(0),
                Some(100),
                Some(20_900),
                Some(200),
                Some(0)
            ]
        );
        assert_eq!(frames[2].milli[1], None);
        assert!(!frames[0].ok && frames[0].milli.iter().all(Option::is_none));
    }

    #[test]
    fn a_log_line_inside_a_row_is_removed_and_the_row_rejoined() {
        let log = "2023/12/15-07:07:50;Fri Dec 15 07:07:50 2023;ERROR;BAD FRAME CRC";
        let text = format!(
            "{HEADER}\n1671527189.304214184,true,232.3,0.0{log}\n,0.0,0.1,20.9,0.2,40.0\n{log}\n1671527189.314471465,true,233.0,0.0,0.0,0.1,21.0,0.2,40.1\n"
        );
        let (frames, stats) = read(&text);
        assert_eq!(frames.len(), 2, "{stats:?}");
        assert_eq!(frames[0].milli[4], Some(20_900));
        assert_eq!((stats.log_lines, stats.bad_lines), (2, 0));
    }

    #[test]
    fn bad_rows_are_counted_with_their_line_and_the_rest_kept() {
        let text = format!(
            "{HEADER}\n1671527189.304214184,true,232.3\ngarbage\n1671527189.314471465,true,233.0,0.0,0.0,0.1,21.0,0.2,4x\n\
             1671527189.324471465,true,233.0,0.0,0.0,0.1,21.0,0.2,40.1\n1671527189.3344"
        );
        let (frames, stats) = read(&text);
        assert_eq!(frames.len(), 1);
        assert_eq!(stats.bad_lines, 3, "the cut last line is reported apart");
        assert_eq!(
            stats.first_bad[0],
            (2, "expected 9 fields, found 3".to_string())
        );
        assert!(stats.first_bad[1].1.contains("expected a timestamp"));
        assert!(stats.first_bad[2]
            .1
            .contains("expected a value like 232.3, found \"4x\""));
        assert!(stats.truncated_last_line);
    }

    #[test]
    fn a_clock_step_back_is_counted_and_its_frames_kept() {
        let row = |t: &str| format!("{t},true,230.0,0.0,0.0,0.1,20.0,0.1,10.0\n");
        let text = format!(
            "{HEADER}\n{}{}{}",
            row("100.000000000"),
            row("99.500000000"),
            row("99.510000000")
        );
        let (frames, stats) = read(&text);
        assert_eq!(frames.len(), 3);
        assert_eq!(stats.clock_steps_back, 1);
    }

    #[test]
    fn rows_before_a_header_are_bad() {
        let (_, stats) = read("1671527189.304214184,true,1.0\n");
        assert_eq!(stats.first_bad[0].1, "a row before any header");
    }
}
