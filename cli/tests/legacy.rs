//! `aipm-analyze job --legacy`: AIPowerMeter recordings (real ones, tests/fixtures/aipowermeter) in a
//! tree laid out as the Lab IA's prolog writes it (`<YYYY_MM>/<user>/<jobid>/`).

mod common;
use common::{aipm, json, s};

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
