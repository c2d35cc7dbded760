//! AIPowerMeter recordings (`power_metrics.json`, JSON Lines), so that years of earlier
//! measurements read with the same tool: samples `{"date": "YYYY-MM-DD HH:MM:SS[.ffffff]",
//! "metrics": {"cpu": {...}, "gpu": {...}}}` in local naive time, and
//! `"END OF RECORDING SEGMENT"` lines between runs (docs/background/aipowermeter-and-omegawatt.md §2).
//!
//! Energies are trapezoid integrals within segments (the gaps between runs are not
//! integrated), `psys_power = -1` is AIPowerMeter's "not measured", never a power, and the
//! GPUs are counted once: their total (`nvidia_draw_absolute`) or else the sum per GPU.
//! A sample whose time goes back, or with a negative or impossible power, is left out and
//! counted with its line (as the Omegawatt reader counts its bad rows); Python's `NaN` and
//! `Infinity` make one value missing.

mod python_json;

use std::collections::BTreeMap;
use std::path::Path;

use aipm_recording::untrusted::cut;
use chrono::{FixedOffset, Local, NaiveDateTime, Offset, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;

const SEGMENT_END: &str = "END OF RECORDING SEGMENT";
/// More than any one machine draws (eight 700 W GPUs and their CPUs are under 10 kW): a
/// reading above it is a corrupt sample, not a power.
const MAX_W: f64 = 100_000.0;
/// Years of samples at one a second are a few GB: more is not a recording.
const LEGACY_MAX_BYTES: u64 = 16 << 30;
/// Lines kept as examples of each kind of problem; the rest are only counted.
const EXAMPLES: usize = 10;

/// How to read the naive timestamps: the machine's zone, UTC, or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Fixed(FixedOffset),
}

impl std::str::FromStr for Zone {
    type Err = String;

    fn from_str(text: &str) -> Result<Zone, String> {
        match text {
            "local" => Ok(Zone::Local),
            "UTC" | "utc" | "Z" => Ok(Zone::Fixed(Utc.fix())),
            _ => {
                let bad =
                    || format!("expected local, UTC or an offset such as +01:00, got {text:?}");
                let (sign, rest) = match text.split_at_checked(1).ok_or_else(bad)? {
                    ("+", rest) => (1, rest),
                    ("-", rest) => (-1, rest),
                    _ => return Err(bad()),
                };
                let (h, m) = rest.split_once(':').ok_or_else(bad)?;
                let secs = h.parse::<i32>().map_err(|_| bad())? * 3600
                    + m.parse::<i32>().map_err(|_| bad())? * 60;
                FixedOffset::east_opt(sign * secs)
                    .map(Zone::Fixed)
                    .ok_or_else(bad)
            }
        }
    }
}

impl Zone {
    fn unix_s(self, naive: NaiveDateTime) -> Option<f64> {
        let t = match self {
            Zone::Local => Local
                .from_local_datetime(&naive)
                .earliest()?
                .timestamp_micros(),
            Zone::Fixed(offset) => offset
                .from_local_datetime(&naive)
                .single()?
                .timestamp_micros(),
        };
        Some(t as f64 / 1e6)
    }
}

/// One sample: its time and the powers it carries (W).
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    t: f64,
    powers: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LegacyReport {
    pub file: String,
    pub start_unix_s: Option<f64>,
    pub end_unix_s: Option<f64>,
    /// Sum of the segments' spans: the gaps between runs are not counted.
    pub duration_s: f64,
    pub segments: usize,
    pub samples: usize,
    /// Energy in J of each series present: `cpu_package` (intel_power), `dram`, `psys`,
    /// `cpu_attributed` (the processes' share AIPowerMeter computed), `gpu` (all GPUs once),
    /// `gpu:<id>` per GPU.
    pub energy_j: BTreeMap<String, f64>,
    /// `psys_power = -1` samples: not measured, left out.
    pub psys_not_measured: usize,
    pub unreadable_lines: Vec<(usize, String)>,
    /// Samples read but left out (time going back, a negative or impossible power, a date
    /// outside 1970..2200): how many, and the first few (line, why).
    pub skipped_samples: usize,
    pub first_skipped: Vec<(usize, String)>,
    /// Python's `NaN`/`Infinity` values, each read as a missing value, and the first line.
    pub non_finite_values: usize,
    pub first_non_finite_line: Option<usize>,
}

impl LegacyReport {
    /// What a reader of the figures should know about the file, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((line, reason)) = self.unreadable_lines.first() {
            out.push(format!(
                "{}: {} unreadable line(s); first at line {line}: {reason}",
                self.file,
                self.unreadable_lines.len()
            ));
        }
        if let Some((line, reason)) = self.first_skipped.first() {
            out.push(format!(
                "{}: {} sample(s) left out; first at line {line}: {reason}",
                self.file, self.skipped_samples
            ));
        }
        if let Some(line) = self.first_non_finite_line {
            out.push(format!(
                "{}: {} NaN/Infinity value(s) read as missing; first at line {line}",
                self.file, self.non_finite_values
            ));
        }
        out
    }

    fn skip(&mut self, line: usize, why: String) {
        self.skipped_samples += 1;
        if self.first_skipped.len() < EXAMPLES {
            self.first_skipped.push((line, why));
        }
    }
}

/// Why a sample's powers cannot be taken: a negative or impossible reading.
fn bad_power(powers: &BTreeMap<String, f64>) -> Option<String> {
    let (name, w) = powers.iter().find(|(_, w)| !(0.0..=MAX_W).contains(*w))?;
    Some(format!(
        "{name} power {w} W is not a power (expected 0 to {MAX_W} W)"
    ))
}

/// The powers a sample carries, under aipm's names.
fn powers(metrics: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let cpu = &metrics["cpu"];
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        // `uncore_power` was once written as a one-element list (an AIPowerMeter bug).
        Value::Array(a) if a.len() == 1 => a[0].as_f64(),
        _ => None,
    };
    for (key, name) in [
        ("intel_power", "cpu_package"),
        ("total_dram_power", "dram"),
        ("total_cpu_power", "cpu_attributed"),
        ("psys_power", "psys"),
    ] {
        if let Some(w) = number(&cpu[key]) {
            out.insert(name.to_string(), w);
        }
    }
    let gpu = &metrics["gpu"];
    let per_gpu: Vec<(String, f64)> = gpu["per_gpu_power_draw"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(id, w)| Some((format!("gpu:{id}"), w.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let total = number(&gpu["nvidia_draw_absolute"])
        .or_else(|| (!per_gpu.is_empty()).then(|| per_gpu.iter().map(|(_, w)| w).sum()));
    if let Some(w) = total {
        out.insert("gpu".to_string(), w);
    }
    out.extend(per_gpu);
    out
}

/// The AIPowerMeter recordings at `path`: the file itself, a folder with
/// `power_metrics.json`, or such folders anywhere in a tree (six levels down), in path order.
pub fn find(path: &Path) -> Vec<std::path::PathBuf> {
    fn walk(path: &Path, depth: usize, found: &mut Vec<std::path::PathBuf>) {
        if path.is_file() {
            found.push(path.to_path_buf());
        } else if path.join("power_metrics.json").is_file() {
            found.push(path.join("power_metrics.json"));
        } else if depth > 0 {
            let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(path, 6, &mut found);
    found
}

pub fn read(path: &Path, zone: Zone) -> anyhow::Result<LegacyReport> {
    let file = if path.is_dir() {
        path.join("power_metrics.json")
    } else {
        path.to_path_buf()
    };
    let text = aipm_recording::text_file::read_text(&file, LEGACY_MAX_BYTES)
        .map_err(anyhow::Error::msg)?;
    let mut segments: Vec<Vec<Sample>> = vec![Vec::new()];
    let mut report = LegacyReport {
        file: file.display().to_string(),
        start_unix_s: None,
        end_unix_s: None,
        duration_s: 0.0,
        segments: 0,
        samples: 0,
        energy_j: BTreeMap::new(),
        psys_not_measured: 0,
        unreadable_lines: Vec::new(),
        skipped_samples: 0,
        first_skipped: Vec::new(),
        non_finite_values: 0,
        first_non_finite_line: None,
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (line, non_finite) = python_json::non_finite_as_null(line);
        if non_finite > 0 {
            report.non_finite_values += non_finite;
            report.first_non_finite_line.get_or_insert(i + 1);
        }
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                report
                    .unreadable_lines
                    .push((i + 1, format!("not JSON: {e}")));
                continue;
            }
        };
        if value.as_str() == Some(SEGMENT_END) {
            segments.push(Vec::new());
            continue;
        }
        let date = value["date"].as_str().unwrap_or("");
        let naive = NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S%.f");
        let Some(t) = naive.ok().and_then(|n| zone.unix_s(n)) else {
            report.unreadable_lines.push((
                i + 1,
                format!(
                    "expected a date like 2023-07-27 17:21:57.146517, found {:?}",
                    cut(date, 80)
                ),
            ));
            continue;
        };
        if !(crate::window::EARLIEST_S as f64..crate::window::LATEST_S as f64).contains(&t) {
            report.skip(
                i + 1,
                format!(
                    "date {date:?} is outside the accepted range, {}",
                    crate::window::RANGE
                ),
            );
            continue;
        }
        let mut p = powers(&value["metrics"]);
        // -1 exactly: AIPowerMeter's own "not measured"; any other negative is corrupt.
        if p.get("psys") == Some(&-1.0) {
            p.remove("psys");
            report.psys_not_measured += 1;
        }
        if let Some(why) = bad_power(&p) {
            report.skip(i + 1, why);
            continue;
        }
        let segment = segments.last_mut().expect("one segment at least");
        if let Some(previous) = segment.last().filter(|prev| t < prev.t) {
            let why = format!(
                "time goes back {:.6} s (to {date:?}), before the previous sample",
                previous.t - t
            );
            report.skip(i + 1, why);
            continue;
        }
        segment.push(Sample { t, powers: p });
    }
    segments.retain(|s| !s.is_empty());
    report.segments = segments.len();
    report.samples = segments.iter().map(Vec::len).sum();
    report.start_unix_s = segments.first().and_then(|s| s.first()).map(|s| s.t);
    report.end_unix_s = segments.last().and_then(|s| s.last()).map(|s| s.t);
    for segment in &segments {
        report.duration_s += segment.last().map_or(0.0, |l| l.t) - segment[0].t;
        for pair in segment.windows(2) {
            let dt = pair[1].t - pair[0].t;
            for (name, w1) in &pair[1].powers {
                if let Some(w0) = pair[0].powers.get(name) {
                    *report.energy_j.entry(name.clone()).or_insert(0.0) += (w0 + w1) / 2.0 * dt;
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/aipowermeter")
            .join(name)
    }

    #[test]
    fn zones() {
        assert_eq!("UTC".parse::<Zone>(), Ok(Zone::Fixed(Utc.fix())));
        assert_eq!(
            "+01:00".parse::<Zone>(),
            Ok(Zone::Fixed(FixedOffset::east_opt(3600).unwrap()))
        );
        assert!("Europe/Paris"
            .parse::<Zone>()
            .unwrap_err()
            .contains("expected local, UTC"));
    }

    /// Two runs appended to one file: the 36 s between them is neither time nor energy.
    #[test]
    fn segments_are_integrated_apart() {
        let r = read(
            &fixture("power_metrics_2023_test_cpu_segment_end.json"),
            Zone::Fixed(Utc.fix()),
        )
        .unwrap();
        assert_eq!((r.segments, r.samples), (2, 44));
        let span = r.end_unix_s.unwrap() - r.start_unix_s.unwrap();
        assert!(
            span - r.duration_s > 35.0,
            "the gap is excluded: span {span}, duration {}",
            r.duration_s
        );
        assert!(r.unreadable_lines.is_empty(), "{:?}", r.unreadable_lines);
        let package = r.energy_j["cpu_package"];
        assert!(
            package > 0.0 && package / r.duration_s < 500.0,
            "{package} J"
        );
    }

    /// The 2023 GPU recording: psys is the -1 sentinel in every sample, two GPUs.
    #[test]
    fn the_psys_sentinel_is_not_a_power_and_gpus_count_once() {
        let r = read(
            &fixture("power_metrics_2023_cpu_gpu_nvidiasmi.json"),
            Zone::Fixed(Utc.fix()),
        )
        .unwrap();
        assert_eq!(r.samples, 30);
        assert_eq!(r.psys_not_measured, 30);
        assert!(!r.energy_j.contains_key("psys"));
        let per_gpu = r.energy_j["gpu:0"] + r.energy_j["gpu:1"];
        let total = r.energy_j["gpu"];
        assert!(
            (total - per_gpu).abs() < 0.02 * total,
            "total {total} J, per GPU {per_gpu} J: one count"
        );
    }

    #[test]
    fn the_2021_list_valued_uncore_and_naive_dates() {
        let r = read(
            &fixture("power_metrics_2021_cpu_only.json"),
            Zone::Fixed(Utc.fix()),
        )
        .unwrap();
        // 13 samples about 2.01 s apart, from 13:55:49.307695 to 13:56:13.435162.
        assert_eq!((r.segments, r.samples), (1, 13));
        assert!((r.duration_s - 24.127467).abs() < 1e-6, "{}", r.duration_s);
        assert!(r.energy_j.contains_key("psys") && r.energy_j.contains_key("cpu_attributed"));
        // A UTC+1 reading of the same naive dates is an hour earlier.
        let paris = read(
            &fixture("power_metrics_2021_cpu_only.json"),
            "+01:00".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            r.start_unix_s.unwrap() - paris.start_unix_s.unwrap(),
            3600.0
        );
    }
}
