//! `aipm-analyze job --legacy`: AIPowerMeter recordings (real ones, tests/fixtures/aipowermeter) in a
//! tree laid out as the Lab IA's prolog writes it (`<YYYY_MM>/<user>/<jobid>/`).

use crate::common::{aipm, json, s};

#[test]
fn a_tree_of_aipowermeter_recordings_is_reported_one_by_one() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aipowermeter");
    let tmp = tempfile::tempdir().unwrap();
    for (dir, file) in [
        (
            "2023_07/alice/42",
            "power_metrics_2023_cpu_gpu_nvidiasmi.json",
        ),
        (
            "2023_07/bob/43",
            "power_metrics_2023_test_cpu_segment_end.json",
        ),
    ] {
        let job = tmp.path().join(dir);
        std::fs::create_dir_all(&job).unwrap();
        std::fs::copy(fixtures.join(file), job.join("power_metrics.json")).unwrap();
    }
    std::fs::create_dir_all(tmp.path().join("2023_07/carol/44")).unwrap();
    let reports = json(&aipm(&[
        "job",
        "--legacy",
        s(tmp.path()),
        "--tz",
        "UTC",
        "--format",
        "json",
    ]));
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "the empty job folder has no recording");
    assert!(reports[0]["file"].as_str().unwrap().contains("alice/42"));
    assert_eq!(reports[0]["psys_not_measured"], 30);
    assert!(reports[0]["energy_j"]["gpu"].as_f64().unwrap() > 0.0);
    assert!(reports[0]["energy_j"].get("psys").is_none());
    assert_eq!(reports[1]["segments"], 2);

    // `jobs --legacy`: a line per recording, the user and job from the Lab IA's folders,
    // the whole machine's CPU package, DRAM and GPU energy.
    let listed = json(&aipm(&[
        "jobs",
        "--legacy",
        s(tmp.path()),
        "--tz",
        "UTC",
        "--format",
        "json",
    ]));
    let lines = listed["jobs"].as_array().unwrap();
    let mut seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["user"].as_str().unwrap(), l["job"].as_str().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, [("alice", "42"), ("bob", "43")]);
    let starts: Vec<u64> = lines
        .iter()
        .map(|l| l["start_unix_ms"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by start time");
    let alice = lines.iter().find(|l| l["user"] == "alice").unwrap();
    let series = |name: &str| reports[0]["energy_j"][name].as_f64().unwrap_or(0.0);
    let expected = series("cpu_package") + series("dram") + series("gpu");
    assert!(expected > 0.0);
    assert!((alice["total_j"].as_f64().unwrap() - expected).abs() < 1e-6);
    let total: f64 = lines.iter().map(|l| l["total_j"].as_f64().unwrap()).sum();
    assert!((listed["total"]["total_j"].as_f64().unwrap() - total).abs() < 1e-6);
    let only_bob = json(&aipm(&[
        "jobs",
        "--legacy",
        s(tmp.path()),
        "--user",
        "bob",
        "--format",
        "json",
    ]));
    assert_eq!(only_bob["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(only_bob["jobs"][0]["job"], "43");

    let none = aipm(&["job", "--legacy", s(&tmp.path().join("2023_07/carol"))]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no power_metrics.json"));
}

/// Issue 16, item 2: time going back, negative and absurd powers are left out and counted
/// with their line; Python's NaN and Infinity make one value missing, not the whole sample.
#[test]
fn samples_that_would_make_negative_energy_are_left_out_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("power_metrics.json");
    let sample = |time: &str, package: &str, dram: &str| {
        format!(
            "{{\"date\": \"2023-07-27 17:21:{time}\", \"metrics\": {{\"cpu\": {{\"intel_power\": {package}, \"total_dram_power\": {dram}, \"psys_power\": -1}}}}}}\n"
        )
    };
    let text = [
        sample("50.000000", "100", "10"),
        sample("51.000000", "100", "10"),
        sample("40.000000", "100", "10"),
        sample("52.000000", "-300", "10"),
        sample("53.000000", "-1e300", "10"),
        sample("54.000000", "NaN", "10"),
        sample("55.000000", "100", "Infinity"),
    ]
    .concat();
    std::fs::write(&file, text).unwrap();
    let out = aipm(&[
        "job",
        "--legacy",
        s(&file),
        "--tz",
        "UTC",
        "--format",
        "json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let r = &json(&out)[0];
    assert_eq!(r["samples"], 4, "{r}");
    assert_eq!(r["duration_s"], 5.0);
    assert_eq!(r["skipped_samples"], 3);
    let skipped = r["first_skipped"].as_array().unwrap();
    assert_eq!(skipped[0][0], 3);
    assert!(
        skipped[0][1]
            .as_str()
            .unwrap()
            .contains("time goes back 11.000000 s"),
        "{r}"
    );
    assert_eq!(skipped[1][0], 4);
    assert_eq!(
        skipped[1][1],
        "cpu_package power -300 W is not a power (expected 0 to 100000 W)"
    );
    assert_eq!(skipped[2][0], 5);
    assert_eq!(r["non_finite_values"], 2);
    assert_eq!(r["first_non_finite_line"], 6);
    assert!(r["unreadable_lines"].as_array().unwrap().is_empty());
    // The package between 50 and 51 s only (54 s has no package power, 55 s no DRAM).
    assert_eq!(r["energy_j"]["cpu_package"], 100.0);
    assert_eq!(r["energy_j"]["dram"], 40.0);
    assert!(
        err.contains("3 sample(s) left out; first at line 3: time goes back"),
        "{err}"
    );
    assert!(
        err.contains("2 NaN/Infinity value(s) read as missing; first at line 6"),
        "{err}"
    );
    let table = aipm(&["job", "--legacy", s(&file), "--tz", "UTC"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Note          3 sample(s) left out, first at line 3: time goes back"),
        "{text}"
    );
}
