//! Grid'5000's wattmetre files, from the same Omegawatt boxes: one file per hour,
//! `power.csv.YYYY-MM-DDTHH` (`.gz` once the hour is past), a header line, then rows of two
//! debugging fields, the timestamp (`SECONDS.NANOS`), a status that must be `OK`, and one
//! power per port, 0-based, possibly empty (docs/background/aipowermeter-and-omegawatt.md §7).
//! Rows become the same frames as `wattmetre-read`'s, plug N being port N.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use aipm_recording::untrusted::cut;

use super::stream::{parse_milli, parse_time_ns, Frame, Header, StreamStats};

/// Whether a file name is a Grid'5000 hourly file.
pub fn is_g5k_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("power.csv."))
}

pub fn read_g5k(
    path: &Path,
    on_frame: &mut impl FnMut(&Header, &Frame),
) -> anyhow::Result<StreamStats> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let input: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut stats = StreamStats::default();
    let mut header: Option<Header> = None;
    let mut frame = Frame::default();
    for line in BufReader::with_capacity(1 << 20, input).split(b'\n') {
        let line = line.map_err(|e| match stats.lines {
            0 => anyhow::anyhow!(
                "{}: unreadable from its first byte (not gzip, or cut short?): {e}",
                path.display()
            ),
            n => anyhow::anyhow!(
                "{}: unreadable after line {n} (truncated?): {e}",
                path.display()
            ),
        })?;
        stats.lines += 1;
        let text = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = text.trim_end_matches('\r').split(',').collect();
        let Some(time_ns) = fields.get(2).and_then(|t| parse_time_ns(t)) else {
            // The header line, and anything that is not a row.
            if stats.lines > 1 {
                bad(
                    &mut stats,
                    format!(
                        "expected a timestamp like 1671527189.314471465 in the third field of {:?}",
                        cut(&text, 80)
                    ),
                );
            }
            continue;
        };
        // A row cut before its first power (the hour being written) has no ports at all.
        if fields.len() < 5 {
            bad(
                &mut stats,
                format!(
                    "expected a status and at least one power after the timestamp in {:?}",
                    cut(&text, 80)
                ),
            );
            continue;
        }
        let ports = fields.len() - 4;
        if header.as_ref().is_none_or(|h| h.columns.len() != ports + 2) {
            let mut columns = "#timestamp,#frame_is_ok".to_string();
            for p in 0..ports {
                columns.push_str(&format!(",#activepow{p}"));
            }
            header = Some(Header::parse(&columns).map_err(anyhow::Error::msg)?);
        }
        frame.time_ns = time_ns;
        frame.ok = fields.get(3) == Some(&"OK");
        frame.milli.clear();
        let mut parsed = true;
        for value in &fields[4..] {
            frame.milli.push(match *value {
                "" => None,
                v => match parse_milli(v) {
                    Some(m) => Some(m),
                    None => {
                        parsed = false;
                        None
                    }
                },
            });
        }
        if !parsed {
            bad(&mut stats, "expected powers like 129.688".to_string());
            continue;
        }
        if frame.ok {
            stats.valid_frames += 1;
        } else {
            stats.invalid_frames += 1;
        }
        if let Some(h) = &header {
            on_frame(h, &frame);
        }
    }
    Ok(stats)
}

fn bad(stats: &mut StreamStats, reason: String) {
    stats.bad_lines += 1;
    if stats.first_bad.len() < 5 {
        stats.first_bad.push((stats.lines, reason));
    }
}
