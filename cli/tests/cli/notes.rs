//! The plain-language notes of `aipm-analyze job`: memory asked for and not used, gaps in
//! the samples.

use aipm_recording::meta::Meta;
use aipm_recording::samples::SampleRow;

use crate::common::{aipm, json, package_sample, s, write_recording};

/// Job 5 on node vm: samples a second apart, none from 20 s to 29 s, 100 MiB used of `alloc`.
fn spool_with_job(dir: &std::path::Path, alloc: Option<u64>) {
    let start_ms = 1_700_000_000_000u64;
    let meta = Meta {
        job_id: 5,
        node: "vm".into(),
        period_ms: 1000,
        mem_alloc_bytes: alloc,
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + 39_000),
        ..Meta::default()
    };
    let rows = (0..20).chain(30..40).map(|k: u64| SampleRow {
        job_cpu_ns: Some(k * 1_000_000_000),
        job_mem_bytes: Some(100 << 20),
        node_cpu_busy_ns: Some(k * 1_000_000_000),
        ..package_sample(start_ms + k * 1000, k * 50_000_000)
    });
    write_recording(dir, &meta, &["rapl:package-0"], &[], rows);
}

fn notes(spool: &std::path::Path) -> (serde_json::Value, Vec<String>) {
    let report = json(&aipm(&[
        "job",
        "5",
        "--spool",
        s(spool),
        "--format",
        "json",
    ]));
    let notes = report[0]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (report, notes)
}

#[test]
fn memory_allocated_and_not_used_and_a_gap_are_noted() {
    let tmp = tempfile::tempdir().unwrap();
    spool_with_job(tmp.path(), Some(8 << 30));
    let (report, notes) = notes(tmp.path());
    assert_eq!(report[0]["mem_alloc_bytes"], 8u64 << 30);
    assert!(
        notes.iter().any(|n| n.starts_with(
            "the job used at most 100.0 MiB of the 8.0 GiB it was allocated on this node (1%)"
        )),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("1 gap(s) in the samples, 10.0 s in all")),
        "{notes:?}"
    );
    // Energy still counts across the gap: 50 W for 39 s.
    assert!((report[0]["job_cpu_j"].as_f64().unwrap() - 50.0 * 39.0).abs() < 1e-6);
    let table = aipm(&["job", "5", "--spool", s(tmp.path())]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("100.0 MiB of 8.0 GiB allocated"));
}

#[test]
fn memory_well_used_or_unknown_is_not_noted() {
    for alloc in [Some(256 << 20), None] {
        let tmp = tempfile::tempdir().unwrap();
        spool_with_job(tmp.path(), alloc);
        let (_, notes) = notes(tmp.path());
        assert!(
            !notes.iter().any(|n| n.contains("allocated")),
            "{alloc:?}: {notes:?}"
        );
    }
}
