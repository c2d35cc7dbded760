//! `aipm-analyze job --legacy`: AIPowerMeter recordings (real ones, shared/fixtures) in a
//! tree laid out as the Lab IA's prolog writes it (`<YYYY_MM>/<user>/<jobid>/`).

mod common;
use common::{aipm, json, s};

#[test]
fn a_tree_of_aipowermeter_recordings_is_reported_one_by_one() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/aipowermeter");
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

    let none = aipm(&["job", "--legacy", s(&tmp.path().join("2023_07/carol"))]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no power_metrics.json"));
}
