//! `aipm-analyze report --user U --month YYYY-MM`: a user's month in Markdown and HTML.

use aipm_recording::meta::Meta;
use aipm_recording::samples::SampleRow;

use crate::common::{aipm, package_sample, s, write_recording};

/// A job alone on node n1: sampled every 60 s, the package at `watts`, using `busy` of its
/// 4 CPUs.
struct Job {
    id: u32,
    user: &'static str,
    name: &'static str,
    start: u64,
    seconds: u64,
    watts: u64,
    busy: f64,
}

fn job(spool: &std::path::Path, j: Job) {
    let Job {
        id,
        user,
        name,
        start,
        seconds,
        watts,
        busy,
    } = j;
    let meta = Meta {
        job_id: id,
        user: user.into(),
        job_name: Some(name.into()),
        node: "n1".into(),
        cpus: Some(4),
        period_ms: 60_000,
        start_unix_ms: start * 1000,
        end_unix_ms: Some((start + seconds) * 1000),
        ..Meta::default()
    };
    let rows = (0..=seconds).step_by(60).map(|k| {
        let cpu_ns = (k as f64 * 4.0 * busy * 1e9) as u64;
        SampleRow {
            job_cpu_ns: Some(cpu_ns),
            node_cpu_busy_ns: Some(cpu_ns),
            ..package_sample((start + k) * 1000, k * watts * 1_000_000)
        }
    });
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

const OCT_2: u64 = 1_759_363_200; // 2025-10-02 00:00 UTC

#[test]
fn a_users_month_in_markdown_and_html() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path();
    job(
        spool,
        Job {
            id: 11,
            user: "alice",
            name: "train <big>",
            start: OCT_2,
            seconds: 3600,
            watts: 200,
            busy: 0.9,
        },
    );
    job(
        spool,
        Job {
            id: 12,
            user: "alice",
            name: "eval",
            start: OCT_2 + 86_400,
            seconds: 1800,
            watts: 100,
            busy: 0.2,
        },
    );
    job(
        spool,
        Job {
            id: 13,
            user: "alice",
            name: "tiny",
            start: OCT_2 + 2 * 86_400,
            seconds: 600,
            watts: 50,
            busy: 0.9,
        },
    );
    job(
        spool,
        Job {
            id: 14,
            user: "bob",
            name: "other",
            start: OCT_2,
            seconds: 3600,
            watts: 300,
            busy: 0.9,
        },
    );
    job(
        spool,
        Job {
            id: 15,
            user: "alice",
            name: "november",
            start: OCT_2 + 31 * 86_400,
            seconds: 600,
            watts: 50,
            busy: 0.9,
        },
    );
    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--user",
            "alice",
            "--month",
            "2025-10",
            "--spool",
            s(spool),
        ];
        args.extend_from_slice(extra);
        let out = aipm(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let md = report(&[]);
    assert!(
        md.starts_with("# Energy of alice's jobs, October 2025"),
        "{md}"
    );
    assert!(md.contains("3 job(s), 1.7 node-hours"), "{md}");
    // 200 W × 1 h + 100 W × 0.5 h + 50 W × 10 min = 258.3 Wh, all CPU packages.
    assert!(
        md.contains("| **total** | **258.3 Wh** | **100%** |"),
        "{md}"
    );
    // Largest first.
    let order: Vec<usize> = ["| 11 |", "| 12 |", "| 13 |"]
        .iter()
        .map(|j| md.find(j).unwrap_or_else(|| panic!("{j} missing: {md}")))
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{md}");
    assert!(!md.contains("| 14 |") && !md.contains("| 15 |"), "{md}");
    assert!(
        md.contains(
            "1 job(s) of 10 minutes or more used less than half of their CPUs (such as 12)"
        ),
        "{md}"
    );
    // Emissions at 100 g/kWh and a PUE of 1.5: 258.3 Wh → 38.75 g.
    assert!(report(&["--intensity", "100", "--pue", "1.5"]).contains("about 39 gCO2e"));

    let html_path = tmp.path().join("alice.html");
    report(&["-o", s(&html_path), "--top", "2"]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("train &lt;big&gt;"), "names are escaped");
    assert!(html.contains("<h2>The 2 jobs that used the most energy</h2>"));
    assert!(!html.contains("<td>13</td>"), "--top 2");

    let none = aipm(&[
        "report",
        "--user",
        "carol",
        "--month",
        "2025-10",
        "--spool",
        s(spool),
    ]);
    assert_eq!(none.status.code(), Some(1));
    let bad = aipm(&["report", "--user", "alice", "--month", "October"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected a month as YYYY-MM"));
}
