//! Time windows as fuzzing typed them (issue 16, item 1): every time option of every command
//! is checked against one range, and a window longer than the data costs what the data costs.

use std::time::Instant;

use crate::common::{aipm, json, s};

/// Every time option refuses a time outside 1970-01-01 .. 2200-01-01, naming the option.
#[test]
fn times_outside_the_range_are_refused_by_every_option() {
    let tmp = tempfile::tempdir().unwrap();
    let d = s(tmp.path());
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "--from",
            vec![
                "omegawatt",
                "node",
                "n51",
                "--map",
                "m.toml",
                "--archives",
                d,
                "--from=-8000000000000",
                "--to=8000000000000",
            ],
        ),
        (
            "--to",
            vec![
                "omegawatt",
                "node",
                "n51",
                "--map",
                "m.toml",
                "--archives",
                d,
                "--from",
                "1700000000",
                "--to=9223372036854775807",
            ],
        ),
        (
            "--from",
            vec![
                "omegawatt",
                "summary",
                "f.log",
                "--from=-9223372036854775808",
            ],
        ),
        (
            "--to",
            vec!["omegawatt", "summary", "f.log", "--to", "9999-12-31"],
        ),
        ("--to", vec!["jobs", "--to", "2200-01-01T00:00:00Z"]),
        ("--from", vec!["jobs", "--from", "1969-12-31T23:59:59Z"]),
        (
            "--from",
            vec![
                "compare",
                "--nodes",
                "n51",
                "--from=-1",
                "--to",
                "1700000000",
            ],
        ),
        (
            "--since",
            vec!["export", "--dir", d, "--since", "99999999999"],
        ),
        ("--until", vec!["export", "--dir", d, "--until=-5"]),
        (
            "--start",
            vec!["omegawatt", "generate", "--start", "8000000000000"],
        ),
    ];
    for (flag, args) in cases {
        let out = aipm(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("for '{flag} <"))
                && err.contains("outside the accepted range, 1970-01-01 to 2200-01-01 (UTC)"),
            "{args:?}: {err}"
        );
    }
    for (flag, args) in [
        (
            "--last",
            vec!["export", "--dir", d, "--last", "1000000000000000000w"],
        ),
        (
            "--every",
            vec![
                "compare",
                "--nodes",
                "n",
                "--from",
                "0",
                "--to",
                "1",
                "--every",
                "99999999999999999999s",
            ],
        ),
        (
            "--month",
            vec!["report", "--user", "u", "--month", "9999-01"],
        ),
    ] {
        let out = aipm(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("for '{flag} <"))
                && (err.contains("longer than the accepted range")
                    || err.contains("outside the accepted range")),
            "{args:?}: {err}"
        );
    }
    // An empty window names both ends.
    let out = aipm(&["jobs", "--from", "2023-11-02", "--to", "2023-11-01"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--to (2023-11-01T00:00:00.000Z) must be after --from (2023-11-02T00:00:00.000Z)"
        ),
        "{err}"
    );
}

/// `node` over the whole range, one day of data: the day's figures, a few lines of missing
/// days (runs, not 84,000 names), in well under the seconds and megabytes it took.
#[test]
fn a_window_of_centuries_over_a_day_costs_a_day() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let map = dir.join("channels.toml");
    std::fs::write(&map, "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\n").unwrap();
    crate::common::generate_archive(
        &dir.join("11_17_2023_USB0.zip"),
        24,
        10,
        120,
        1_700_118_000,
        &["--power", "13=210", "--power", "19=190"],
    );
    let started = Instant::now();
    let out = aipm(&[
        "omegawatt",
        "node",
        "n51",
        "--map",
        s(&map),
        "--archives",
        s(dir),
        "--from",
        "0",
        "--to",
        "2199-12-31T23:59:59Z",
        "--format",
        "json",
    ]);
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert!(out.stdout.len() < 10_000, "{} bytes", out.stdout.len());
    let r = json(&out);
    assert_eq!(r["archives_read"].as_array().unwrap().len(), 1);
    assert_eq!(r["seconds_covered"], 120);
    let missing: Vec<&str> = r["archives_missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        missing[0].ends_with("01_01_1970_USB0.zip")
            || missing[0].contains("01_01_1970_USB0.zip to "),
        "{missing:?}"
    );
    assert!(
        missing[0].ends_with("11_16_2023_USB0.zip (19678 days)"),
        "{missing:?}"
    );
    assert!(
        missing[1].contains("11_18_2023_USB0.zip to "),
        "{missing:?}"
    );
    let uncovered = r["seconds_uncovered"].as_u64().unwrap();
    assert_eq!(uncovered, 7_258_118_399 - 120);
}

/// `--tz -01:00` reads as an offset, not as an unknown flag.
#[test]
fn a_negative_offset_needs_no_equals_sign() {
    let out = aipm(&["jobs", "--legacy", "/nonexistent", "--tz", "-01:00"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("unexpected argument"), "{err}");
}
