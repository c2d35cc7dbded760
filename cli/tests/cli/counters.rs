//! Issue 16, item 3: a samples counter that jumps to 2^64 - 1 (or 2^64 - 2) for one row is
//! an error counted in the report, and the job's energy is the same as without it.

use aipm_recording::meta::Meta;

use crate::common::{aipm, json, package_sample, s, write_recording};

const START_MS: u64 = 1_700_000_000_000;

/// Job 7 on node vm: 40 W for 20 s, one sample a second; `spike` replaces one reading.
fn job(dir: &std::path::Path, spike: Option<(u64, &str)>) -> serde_json::Value {
    let meta = Meta {
        job_id: 7,
        node: "vm".into(),
        period_ms: 1000,
        start_unix_ms: START_MS,
        end_unix_ms: Some(START_MS + 20_000),
        ..Meta::default()
    };
    let rows = (0..=20).map(|k: u64| package_sample(START_MS + k * 1000, k * 40_000_000));
    write_recording(dir, &meta, &["rapl:package-0"], &[], rows);
    if let Some((k, value)) = spike {
        let path = dir.join("7/vm.samples.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let energy = (k * 40_000_000).to_string();
        let time = (START_MS + k * 1000).to_string();
        let text: String = text
            .lines()
            .map(|line| {
                let mut fields: Vec<&str> = line.split(',').collect();
                if fields[0] == time {
                    let at = fields.iter().position(|f| *f == energy).unwrap();
                    fields[at] = value;
                }
                fields.join(",") + "\n"
            })
            .collect();
        std::fs::write(&path, text).unwrap();
    }
    json(&aipm(&["job", "7", "--spool", s(dir), "--format", "json"]))[0].clone()
}

#[test]
fn a_reading_no_counter_can_make_is_counted_not_taken_as_a_wrap() {
    let clean = job(tempfile::tempdir().unwrap().path(), None);
    assert_eq!(clean["job_cpu_j"], 800.0);
    for value in ["18446744073709551614", "9223372036854775808"] {
        let tmp = tempfile::tempdir().unwrap();
        let r = job(tmp.path(), Some((10, value)));
        assert_eq!(r["job_cpu_j"], 800.0, "{value}: {r}");
        let notes: Vec<&str> = r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(
            notes.contains(&"rapl:package-0: 1 reading(s) that no counter can make (going back, or faster than 100 kW), first at 2023-11-14T22:13:30.000Z: left out, the energy counted across them"),
            "{value}: {notes:?}"
        );
        let peak = r["energy"][0]["node_peak_power_w"].as_f64().unwrap();
        assert!(peak < 41.0, "{value}: {r}");
    }
    // The largest u64 is the in-memory mark of an absent value: the line is refused and
    // counted, and the energy still the same.
    let tmp = tempfile::tempdir().unwrap();
    let r = job(tmp.path(), Some((10, "18446744073709551615")));
    assert_eq!(r["job_cpu_j"], 800.0, "{r}");
    assert_eq!(r["bad_lines"], 1, "{r}");
}
