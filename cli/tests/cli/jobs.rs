//! `aipm-analyze jobs`: a user's recorded jobs over a period, one line each, with a total.

use std::path::Path;

use aipm_recording::meta::Meta;

use crate::common::{aipm, json, package_sample, s, write_recording};

/// A recorded job alone on its node: `watts` on the package for `seconds` from `start_ms`.
fn job(spool: &Path, id: u32, user: &str, start_ms: u64, seconds: u64, watts: u64) {
    let meta = Meta {
        job_id: id,
        user: user.into(),
        job_name: Some(format!("train{id}")),
        node: "n1".into(),
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + seconds * 1000),
        ..Meta::default()
    };
    let rows = (0..=seconds).map(|k| package_sample(start_ms + k * 1000, k * watts * 1_000_000));
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

#[test]
fn a_users_jobs_in_a_period_sorted_with_a_total() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path();
    let day = 1_700_000_000_000u64; // 2023-11-14T22:13:20Z
    job(spool, 10, "alice", day + 3_600_000, 100, 50); // inside, second
    job(spool, 11, "alice", day + 60_000, 10, 100); // inside, first
    job(spool, 12, "bob", day + 120_000, 10, 100); // someone else
    job(spool, 13, "alice", day + 30 * 86_400_000, 10, 100); // a month later
    let r = json(&aipm(&[
        "jobs",
        "--user",
        "alice",
        "--from",
        "2023-11-14T22:00:00Z",
        "--to",
        "2023-11-16T00:00:00Z",
        "--format",
        "json",
        "--spool",
        s(spool),
    ]));
    let jobs: Vec<&str> = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["11", "10"], "alice's, in the period, by start");
    assert_eq!(r["jobs"][0]["total_j"], 1000.0);
    assert_eq!(r["jobs"][1]["total_j"], 5000.0);
    assert_eq!(r["total"]["total_j"], 6000.0);

    let none = aipm(&["jobs", "--user", "carol", "--spool", s(spool)]);
    assert_eq!(none.status.code(), Some(1));
}
