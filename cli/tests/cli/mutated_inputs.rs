//! Issue 16: every file parser the CLI exposes, run on mutated seeds (bytes flipped,
//! inserted, deleted, lines cut, hostile tokens such as `NaN`, `-1e300`, 2^64 - 1, CRLF),
//! briefly, so that what fuzzing found stays fixed: no panic, and no negative, infinite or
//! impossible energy from any of them.

use std::path::Path;

use aipm_analyze::legacy::{self, Zone};
use aipm_omegawatt::channels::ChannelMap;
use aipm_omegawatt::generate::{self, Faults, Profile, Spec};
use aipm_omegawatt::seconds::{summarize, PerSecond};
use aipm_omegawatt::stream::StreamReader;
use aipm_recording::attribution::attribute;
use aipm_recording::counter::MAX_CHANNEL_W;
use aipm_recording::samples::{header_line, EnergyValue, SampleRow, Samples};
use proptest::prelude::*;

const TOKENS: [&str; 10] = [
    "NaN",
    "-Infinity",
    "-1e300",
    "18446744073709551615",
    "18446744073709551614",
    "-",
    "\r",
    "\n",
    ",",
    "\u{feff}",
];

/// One edit of a seed: where (any usize, taken modulo the length), what, and with which byte.
type Edit = (usize, u8, u8);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((any::<usize>(), 0u8..5, any::<u8>()), 1..8)
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for &(at, kind, byte) in edits {
        let at = at % (data.len() + 1);
        match kind {
            0 if at < data.len() => data[at] ^= byte | 1,
            1 => data.insert(at, byte),
            2 if at < data.len() => {
                data.remove(at);
            }
            3 => {
                let token = TOKENS[usize::from(byte) % TOKENS.len()];
                data.splice(at..at, token.bytes());
            }
            _ => data.truncate(at),
        }
    }
    data
}

fn omegawatt_seed() -> Vec<u8> {
    let spec = Spec {
        plugs: 6,
        rate_hz: 5,
        seconds: 4,
        start_s: 1_700_000_000,
        profiles: vec![Profile {
            plug: 1,
            from_w: 100.0,
            to_w: 200.0,
        }],
        noise_w: 0.0,
        faults: Faults::default(),
    };
    let mut out = Vec::new();
    generate::write(&spec, &mut out).unwrap();
    out
}

fn legacy_seed() -> Vec<u8> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/aipowermeter/power_metrics_2021_cpu_only.json");
    let text = std::fs::read_to_string(fixture).unwrap();
    text.lines()
        .take(4)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

fn samples_seed() -> Vec<u8> {
    let mut text = header_line(&["rapl:package-0".into()], &[]);
    for k in 0..6u64 {
        SampleRow {
            time_unix_ms: 1_700_000_000_000 + k * 1000,
            node_jobs: Some(1),
            energy: vec![Some(EnergyValue {
                energy_uj: k * 40_000_000,
                raw: k * 40_000_000,
            })],
            ..SampleRow::default()
        }
        .format_into(&mut text);
    }
    text.into_bytes()
}

const MAP_SEED: &str =
    "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\n\n[nodes.n52]\nport = \"USB1\"\nchannels = [1]\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn omegawatt_stream(edits in edits()) {
        let data = mutate(&omegawatt_seed(), &edits);
        let mut reader = StreamReader::default();
        let mut per_second: Option<PerSecond> = None;
        let (lines, last) = match data.iter().rposition(|&b| b == b'\n') {
            Some(end) => (&data[..end], &data[end + 1..]),
            None => (&data[..0], &data[..]),
        };
        for line in lines.split(|&b| b == b'\n') {
            reader.line_bytes(line, &mut |header, frame| {
                per_second.get_or_insert_with(|| PerSecond::new(header)).add(frame);
            });
        }
        reader.finish(&String::from_utf8_lossy(last));
        for reason in reader.stats.first_bad.iter().map(|(_, r)| r) {
            prop_assert!(reason.len() < 400, "{reason}");
        }
        if let Some(p) = per_second {
            let s = summarize(p.rows(), &p.plugs(), None, None);
            prop_assert!(s.energy_wh.is_finite());
        }
    }

    #[test]
    fn aipowermeter_json(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("power_metrics.json");
        std::fs::write(&file, mutate(&legacy_seed(), &edits)).unwrap();
        if let Ok(r) = legacy::read(&file, Zone::Fixed(chrono_utc())) {
            prop_assert!(r.duration_s >= 0.0, "{r:?}");
            for (name, j) in &r.energy_j {
                prop_assert!(j.is_finite() && *j >= 0.0, "{name}: {j} J");
            }
        }
    }

    #[test]
    fn samples_file(edits in edits()) {
        let data = mutate(&samples_seed(), &edits);
        if let Ok(s) = Samples::parse(&String::from_utf8_lossy(&data)) {
            let times: Vec<u64> = s.values(aipm_recording::samples::TIME_COLUMN).collect();
            let span_ms = times.iter().max().zip(times.iter().min()).map_or(0, |(a, b)| a - b);
            for c in attribute(&s).channels {
                prop_assert!(c.node_uj >= 0.0 && c.job_uj >= 0.0, "{c:?}");
                // No more than the fastest a counter may go, over the recording's span.
                let most = (MAX_CHANNEL_W as f64) * (span_ms.max(1) as f64) * 1000.0;
                prop_assert!(c.node_uj <= most, "{c:?} over {span_ms} ms");
            }
        }
    }

    #[test]
    fn channel_map(edits in edits()) {
        let data = mutate(MAP_SEED.as_bytes(), &edits);
        if let Ok(map) = ChannelMap::parse(&String::from_utf8_lossy(&data)) {
            for node in map.nodes.keys() {
                prop_assert!(map.node(node).is_ok());
            }
        }
    }
}

fn chrono_utc() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(0).unwrap()
}
