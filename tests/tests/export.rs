//! End-to-end: `aipm-analyze export` and the AdminComment against the real Slurm with
//! slurmdbd, for jobs of two users, checked as the admin and the users would check them:
//! each user's file, its owner and mode, Slurm's state, no row twice after a second run or
//! a killed one, and `sacct -o AdminComment`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aipm_e2e::*;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const SECOND_USER: &str = "aipmtest2";

/// `aipm-analyze export` into `dir`, jobs ended since `since` (Unix s), as root (cron).
fn export(cluster: &Cluster, dir: &Path, since: u64, env: &[(&str, &str)]) -> Output {
    let dir = dir.to_str().unwrap();
    let since = since.to_string();
    let started = Instant::now();
    let out = Command::new(cluster.bin_dir.join("aipm-analyze"))
        .args([
            "export",
            "--dir",
            dir,
            "--since",
            &since,
            "--jobs-from",
            "sacct",
        ])
        .env("AIPM_SPOOL", &cluster.spool)
        .envs(env.iter().copied())
        .output()
        .expect("running aipm-analyze export");
    eprintln!(
        "export took {:?}: {}{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every row of a user's file, by job id; asserts that no job is there twice.
fn rows_by_job(path: &Path) -> HashMap<String, HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let header = reader.headers().unwrap().clone();
    let mut rows = HashMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        let row: HashMap<String, String> = header
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect();
        let job = row["job"].clone();
        assert!(
            rows.insert(job.clone(), row).is_none(),
            "job {job} twice in {path:?}"
        );
    }
    rows
}

#[test]
fn nightly_export_of_two_users_jobs_with_sacct_state_and_admin_comment() {
    let _g = shared();
    let cluster = cluster();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let a1 = sbatch(
        Some(TEST_USER),
        &["--energy-profile=250ms", "-J", "exp-a1"],
        "sleep 2",
    )
    .unwrap();
    let a2 = sbatch(
        Some(TEST_USER),
        &["--energy-profile=250ms"],
        "sleep 1; exit 3",
    )
    .unwrap();
    let b1 = sbatch(Some(SECOND_USER), &["--energy-profile=250ms"], "sleep 1").unwrap();
    let unrecorded = sbatch(Some(SECOND_USER), &[], "true").unwrap();
    for job in [a1, a2, b1, unrecorded] {
        wait_job(job, JOB_TIMEOUT);
    }
    for job in [a1, a2, b1] {
        finished_meta(cluster, job, Duration::from_secs(5));
    }
    // slurmctld hands the job's end to slurmdbd asynchronously, and a query by time window
    // (what export asks) may see a job later than a query by its id: wait until the
    // window's query lists the three jobs in their final states.
    let since_utc = chrono::DateTime::from_timestamp(since as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("sacct")
            .args([
                "-a",
                "-X",
                "-n",
                "-P",
                "-o",
                "JobID,State",
                "-S",
                &since_utc,
                "-E",
                "now",
            ])
            .env("TZ", "UTC")
            .output()
            .expect("sacct");
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let done = [a1, a2, b1].iter().all(|j| {
            listed.lines().any(|l| {
                l.split_once('|').is_some_and(|(id, state)| {
                    id == j.to_string() && !matches!(state, "RUNNING" | "COMPLETING" | "PENDING")
                })
            })
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slurmdbd never listed the jobs' ends: {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A run's window is [since, now): let the second in which the jobs ended pass.
    std::thread::sleep(Duration::from_millis(1100));
    let tmp = tempfile::Builder::new()
        .prefix("aipm-export-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let dir = tmp.path().join("per-user");
    let first = export(cluster, &dir, since, &[]);
    assert!(first.status.success(), "{first:?}");
    let (a_file, b_file) = (
        dir.join(format!("{TEST_USER}.csv")),
        dir.join(format!("{SECOND_USER}.csv")),
    );
    let a_rows = rows_by_job(&a_file);
    let b_rows = rows_by_job(&b_file);
    assert_eq!(
        a_rows["{a1}".replace("{a1}", &a1.to_string()).as_str()]["state"],
        "COMPLETED"
    );
    assert_eq!(
        a_rows[&a2.to_string()]["state"],
        "FAILED",
        "Slurm's state, from sacct"
    );
    assert_eq!(a_rows[&a1.to_string()]["job_name"], "exp-a1");
    assert!(b_rows.contains_key(&b1.to_string()));
    assert!(
        !b_rows.contains_key(&unrecorded.to_string()),
        "a job without recording has no row"
    );
    assert!(!a_rows.contains_key(&b1.to_string()) && !b_rows.contains_key(&a1.to_string()));
    // The row's energy is the job report's (which other tests check against the simulated
    // node's known power), in Wh.
    let wh: f64 = a_rows[&a1.to_string()]["energy_Wh"].parse().unwrap();
    let report = cluster.analyze(&["job", &a1.to_string(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let job_j: f64 = ["job_cpu_j", "job_dram_j", "job_gpu_j"]
        .iter()
        .map(|k| report[0][k].as_f64().unwrap())
        .sum();
    assert!(
        (wh - job_j / 3600.0).abs() < 1e-4,
        "{wh} Wh in the CSV, {job_j} J in the report"
    );
    assert_eq!(
        a_rows[&a1.to_string()]["attribution"],
        report[0]["attribution"].as_str().unwrap()
    );

    for (file, user) in [(&a_file, TEST_USER), (&b_file, SECOND_USER)] {
        let m = std::fs::metadata(file).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o777),
            (uid_of(user), 0o600),
            "{file:?}"
        );
        // The user can read it; the other test user cannot.
        let other = if user == TEST_USER {
            SECOND_USER
        } else {
            TEST_USER
        };
        let can_read = |u: &str| {
            Command::new("runuser")
                .args(["-u", u, "--", "cat"])
                .arg(file)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(can_read(user) && !can_read(other), "{file:?}");
    }

    // A second run adds nothing for these jobs.
    let before = (
        std::fs::read(&a_file).unwrap(),
        std::fs::read(&b_file).unwrap(),
    );
    assert!(export(cluster, &dir, since, &[]).status.success());
    assert_eq!(rows_by_job(&a_file), a_rows);
    assert_eq!(rows_by_job(&b_file), b_rows);
    assert!(std::fs::read(&a_file).unwrap().starts_with(&before.0));

    // A run killed in the middle of a row, then a normal run: every job once, same rows.
    let dir2 = tmp.path().join("killed");
    let killed = export(
        cluster,
        &dir2,
        since,
        &[("AIPM_TEST_KILL_AFTER_BYTES", "400")],
    );
    assert!(
        !killed.status.success(),
        "the stand-in crash did not happen: {killed:?}"
    );
    assert!(export(cluster, &dir2, since, &[]).status.success());
    let (a2_rows, b2_rows) = (
        rows_by_job(&dir2.join(format!("{TEST_USER}.csv"))),
        rows_by_job(&dir2.join(format!("{SECOND_USER}.csv"))),
    );
    for job in [a1, a2] {
        assert_eq!(a2_rows[&job.to_string()], a_rows[&job.to_string()]);
    }
    assert_eq!(b2_rows[&b1.to_string()], b_rows[&b1.to_string()]);

    // The controller's epilog put the job's energy where sacct shows it, matching the CSV.
    let deadline = Instant::now() + Duration::from_secs(30);
    let comment = loop {
        let c = sacct_field(a1, "AdminComment");
        if c.starts_with("aipm:v1") || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let tag = format!("tag={}", a_rows[&a1.to_string()]["attribution"]);
    assert!(comment.contains(&tag), "AdminComment: {comment:?}");
    let energy: f64 = comment
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("energy_wh="))
        .expect("energy_wh in the comment")
        .parse()
        .unwrap();
    assert!(
        (energy - wh).abs() < 0.001,
        "sacct says {energy} Wh, the CSV {wh} Wh"
    );
    assert_eq!(
        sacct_field(unrecorded, "AdminComment"),
        "",
        "no recording, no comment"
    );
}

/// Start and end of a finished job in Unix seconds, once slurmdbd has them.
fn accounted_window(job: u32) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("sacct")
            .args(["-X", "-n", "-P", "-j", &job.to_string(), "-o", "Start,End"])
            .env("SLURM_TIME_FORMAT", "%s")
            .output()
            .expect("sacct");
        let text = String::from_utf8_lossy(&out.stdout);
        let times: Vec<i64> = text
            .trim()
            .split('|')
            .filter_map(|t| t.parse().ok())
            .collect();
        if let [start, end] = times[..] {
            return (start, end);
        }
        assert!(
            Instant::now() < deadline,
            "sacct never gave job {job}'s end: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_job_without_a_recording_is_reported_from_accounting_with_its_wall_energy() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch(None, &[], "sleep 2").unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let (start, end) = accounted_window(job);
    assert!(!cluster.job_dir(job).exists(), "not recorded");

    let tmp = tempfile::tempdir().unwrap();
    wall_archives(
        cluster,
        tmp.path(),
        start - 10,
        end + 10,
        &["1=200", "2=100"],
    );
    let map = tmp.path().join("channels.toml");
    std::fs::write(
        &map,
        format!(
            "[nodes.{}]\nport = \"USB0\"\nchannels = [1, 2]\n",
            node_name()
        ),
    )
    .unwrap();
    let id = job.to_string();
    let args = [
        "job",
        &id,
        "--wall-map",
        map.to_str().unwrap(),
        "--wall-archives",
        tmp.path().to_str().unwrap(),
    ];
    let out = cluster.analyze_with_env(
        &[&args[..], &["--format", "json"]].concat(),
        &[("TZ", "UTC")],
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"], "COMPLETED");
    assert_eq!(report["user"], "root");
    let node = &report["nodes"][0];
    assert_eq!(node["node"], node_name());
    let expected_j = 300.0 * (end - start) as f64;
    let wall_j = node["wall_energy_j"].as_f64().unwrap();
    assert!(
        (wall_j - expected_j).abs() < 0.001 * expected_j,
        "{wall_j} J, expected {expected_j} J"
    );
    assert!(report["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("no aipm recording of this job"));

    let table = cluster.analyze_with_env(&args, &[("TZ", "UTC")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("not recorded by aipm") && text.contains("Wh over"),
        "{text}"
    );
}

#[test]
fn jobs_filters_by_the_state_slurm_gave() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch(None, &["--energy-profile=500ms"], "sleep 1; exit 3").unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "FAILED");
    let (start, _) = accounted_window(job);
    let from = (start - 1).to_string();
    let listed = |state: &str| -> Vec<serde_json::Value> {
        let out = cluster.analyze(&[
            "jobs", "--user", "root", "--from", &from, "--state", state, "--format", "json",
        ]);
        if out.status.code() == Some(1) {
            eprintln!("{state}: {}", String::from_utf8_lossy(&out.stderr));
            return Vec::new(); // nothing matches
        }
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["jobs"].as_array().unwrap().clone()
    };
    let failed = listed("failed,timeout");
    let line = failed
        .iter()
        .find(|l| l["job_id"] == job)
        .unwrap_or_else(|| panic!("job {job} not listed: {failed:?}"));
    assert_eq!(line["state"], "FAILED");
    assert!(!listed("COMPLETED").iter().any(|l| l["job_id"] == job));
}
