//! `aipm-analyze export`: per-user CSV files, written once per job, safe against a killed
//! run and against links planted in the export directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use aipm_recording::meta::Meta;

use crate::common::{package_sample, s, write_recording, BIN};

/// A recorded job alone on its node: `watts` on the package for `seconds` from `start_ms`.
fn job(spool: &Path, id: u32, user: &str, uid: u32, start_ms: u64, seconds: u64, watts: u64) {
    let meta = Meta {
        job_id: id,
        user: user.into(),
        uid,
        gid: uid,
        job_name: Some(format!("train{id}")),
        node: "n1".into(),
        cpus: Some(1),
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + seconds * 1000),
        ..Meta::default()
    };
    let rows = (0..=seconds).map(|k| package_sample(start_ms + k * 1000, k * watts * 1_000_000));
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

const DAY: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

/// alice: jobs 10 (3600 s at 100 W = 100 Wh) and 11; bob: job 12; job 13 outside the window.
fn spool_of_two_users(spool: &Path) {
    job(spool, 10, "alice", 4201, DAY, 3600, 100);
    job(spool, 11, "alice", 4201, DAY + 7_200_000, 36, 50);
    job(spool, 12, "bob", 4202, DAY + 60_000, 360, 10);
    job(spool, 13, "alice", 4201, DAY + 40 * 86_400_000, 10, 10);
}

fn export(spool: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args([
            "export",
            "--jobs-from",
            "spool",
            "--spool",
            s(spool),
            "--dir",
            s(dir),
        ])
        .args(["--since", "2023-11-14", "--until", "2023-11-16"])
        .args(extra)
        .envs(env.iter().copied())
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records().map(Result::unwrap).collect()
}

#[test]
fn one_row_per_finished_job_in_each_users_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir) = (tmp.path().join("spool"), tmp.path().join("out"));
    spool_of_two_users(&spool);
    ok(&export(&spool, &dir, &[], &[]));

    let alice = dir.join("alice.csv");
    let mut reader = csv::Reader::from_path(&alice).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for unit in ["energy_Wh", "gpu_util_%", "mem_peak_GiB", "attribution"] {
        assert!(header.iter().any(|h| h == unit), "{unit} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let r = rows(&alice);
    let jobs: Vec<&str> = r.iter().map(|r| &r[0]).collect();
    assert_eq!(jobs, ["10", "11"], "alice's jobs of the window, by end");
    assert_eq!(&r[0][col("energy_Wh")], "100.0000");
    assert_eq!(&r[0][col("cpu_Wh")], "100.0000");
    assert_eq!(&r[1][col("energy_Wh")], "0.5000");
    assert_eq!(&r[0][col("attribution")], "exclusive");
    assert_eq!(&r[0][col("start_utc")], "2023-11-14T22:13:20.000Z");
    assert_eq!(&r[0][col("duration_s")], "3600.0");
    assert_eq!(&r[0][col("cpu_usage_%")], "0.0");
    assert_eq!(rows(&dir.join("bob.csv")).len(), 1);

    // Each file is its user's, closed to everyone else.
    for (file, uid) in [("alice.csv", 4201), ("bob.csv", 4202)] {
        let m = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (uid, uid, 0o600),
            "{file}"
        );
    }

    // A second run over an overlapping window adds nothing.
    let before = std::fs::read(&alice).unwrap();
    let again = export(&spool, &dir, &["--format", "json"], &[]);
    ok(&again);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["users"]["alice"]["already"], 2);
    assert_eq!(report["users"]["alice"]["written"], serde_json::json!([]));
    assert_eq!(std::fs::read(&alice).unwrap(), before);
}

#[test]
fn a_run_killed_mid_write_is_completed_by_the_next_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir, clean) = (
        tmp.path().join("spool"),
        tmp.path().join("out"),
        tmp.path().join("clean"),
    );
    spool_of_two_users(&spool);
    ok(&export(&spool, &clean, &[], &[]));
    let header_len = std::fs::read_to_string(clean.join("alice.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .len();

    // Killed after the header and part of alice's first row (alice is written first).
    let budget = (header_len + 1 + 20).to_string();
    let killed = export(
        &spool,
        &dir,
        &[],
        &[("AIPM_TEST_KILL_AFTER_BYTES", &budget)],
    );
    assert!(!killed.status.success());
    let cut = std::fs::read_to_string(dir.join("alice.csv")).unwrap();
    assert!(!cut.ends_with('\n'), "the kill left half a row: {cut:?}");
    assert!(!dir.join("bob.csv").exists());

    let next = export(&spool, &dir, &[], &[]);
    ok(&next);
    assert!(String::from_utf8_lossy(&next.stdout).contains("cut last line of 20 bytes removed"));
    for user in ["alice.csv", "bob.csv"] {
        assert_eq!(
            std::fs::read(dir.join(user)).unwrap(),
            std::fs::read(clean.join(user)).unwrap(),
            "{user}: same as a run that was never killed"
        );
    }

    // A file cut by hand at any point of its last row is repaired the same way.
    let full = std::fs::read(dir.join("alice.csv")).unwrap();
    for cut_at in [full.len() - 1, full.len() - 30] {
        std::fs::write(dir.join("alice.csv"), &full[..cut_at]).unwrap();
        ok(&export(&spool, &dir, &[], &[]));
        assert_eq!(std::fs::read(dir.join("alice.csv")).unwrap(), full);
    }
}

#[test]
fn the_labia_layout_has_the_lab_ias_exact_header_and_units() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir) = (tmp.path().join("spool"), tmp.path().join("out"));
    spool_of_two_users(&spool);
    ok(&export(&spool, &dir, &["--layout", "labia"], &[]));
    let text = std::fs::read_to_string(dir.join("alice.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "node name,job_id,start date,Total Duration (sec),GPU Consumption  (kWH),Avg. GPU RAM USAGE (Gb),GPU SM Usage (%),CPU Consumption (kWH),Avg. CPU RAM USAGE (Gb),CPU usage (%)"
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[..4], ["n1", "10", "2023-11-14T22:13:20", "3600.0"]);
    assert_eq!(first[4], "0.000000", "no GPU");
    assert_eq!(first[7], "0.100000", "100 Wh of CPU in kWh");

    // An aipm-layout run into a labia file is refused, naming the file and line.
    let mixed = export(&spool, &dir, &[], &[]);
    assert_eq!(mixed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        err.contains("alice.csv line 1: expected the Aipm header"),
        "{err}"
    );
}

#[test]
fn a_bad_row_is_named_by_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir) = (tmp.path().join("spool"), tmp.path().join("out"));
    spool_of_two_users(&spool);
    ok(&export(&spool, &dir, &["--user", "alice"], &[]));
    let mut text = std::fs::read_to_string(dir.join("alice.csv")).unwrap();
    text.push_str("99,short,row\n");
    std::fs::write(dir.join("alice.csv"), &text).unwrap();
    let out = export(&spool, &dir, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alice.csv line 4: expected 23 columns (Aipm layout), found 3"),
        "{err}"
    );
    // The other user is exported all the same, and alice's file is left as it was.
    assert_eq!(rows(&dir.join("bob.csv")).len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("alice.csv")).unwrap(),
        text
    );
}

#[test]
fn a_link_planted_in_the_export_directory_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir) = (tmp.path().join("spool"), tmp.path().join("out"));
    spool_of_two_users(&spool);
    std::fs::create_dir(&dir).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("alice.csv")).unwrap();
    std::fs::hard_link(&victim, dir.join("bob.csv")).unwrap();
    let out = export(&spool, &dir, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alice.csv: a symbolic link (links are not followed): refused"),
        "{err}"
    );
    assert!(err.contains("bob.csv: 2 hard links, not one"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);
}

#[test]
fn a_job_waits_for_its_wall_data_then_is_written_with_it_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dir) = (tmp.path().join("spool"), tmp.path().join("out"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    job(&spool, 20, "carol", 4203, now_ms - 120_000, 60, 100);
    let map = tmp.path().join("channels.toml");
    std::fs::write(&map, "[nodes.n1]\nport = \"USB0\"\nchannels = [1, 2]\n").unwrap();
    let archives = tmp.path().join("archives");
    std::fs::create_dir(&archives).unwrap();
    let run = |grace: &str| {
        let out = Command::new(BIN)
            .args(["export", "--jobs-from", "spool", "--spool", s(&spool)])
            .args(["--dir", s(&dir), "--last", "1h", "--format", "json"])
            .args(["--wall-map", s(&map), "--wall-archives", s(&archives)])
            .args(["--grace", grace])
            .output()
            .unwrap();
        ok(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let waiting = run("1d");
    assert_eq!(
        waiting["users"]["carol"]["waiting"],
        serde_json::json!(["20"])
    );
    assert!(!dir.join("carol.csv").exists() || rows(&dir.join("carol.csv")).is_empty());

    let late = run("1m");
    assert_eq!(late["users"]["carol"]["written"], serde_json::json!(["20"]));
    let mut reader = csv::Reader::from_path(dir.join("carol.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!((&row[col("wall")], &row[col("wall_Wh")]), ("missing", ""));
    assert_eq!(&row[col("energy_Wh")], "1.6667");
}
