//! End-to-end, issue #9: an ordinary user of the test cluster attacks root's tools through
//! the files of their own job directories (which they may write while and after their jobs
//! run) and through their own export file. Each attack is done as the unprivileged test
//! user against real recordings and the real accounting, and asserts the safe outcome: the
//! victim's rows and AdminComment unchanged, root's commands back within seconds with an
//! error naming the file, nothing of another user's data in any output.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aipm_e2e::*;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const VICTIM: &str = "aipmtest2";
/// Far more than any of root's commands needs on these few small jobs.
const PROMPT: Duration = Duration::from_secs(10);

/// `sh -c SCRIPT` as the attacker (the test user).
fn as_attacker(script: &str) {
    let out = Command::new("runuser")
        .args(["-u", TEST_USER, "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A recorded job of `user`, finished.
fn recorded_job(cluster: &Cluster, user: &str, name: &str) -> u32 {
    let job = sbatch(
        Some(user),
        &["--energy-profile=250ms", "-J", name],
        "sleep 1",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    finished_meta(cluster, job, Duration::from_secs(10));
    job
}

/// `aipm-analyze ARGS` as root, timed.
fn root_runs(cluster: &Cluster, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = cluster.analyze(args);
    (out, started.elapsed())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The export of every job that ended since `since`, into `dir`, as root's cron runs it.
fn export(cluster: &Cluster, dir: &Path, since: u64) -> (Output, Duration) {
    root_runs(
        cluster,
        &[
            "export",
            "--dir",
            dir.to_str().unwrap(),
            "--since",
            &since.to_string(),
            "--jobs-from",
            "spool",
            "--grace",
            "0s",
        ],
    )
}

fn now_s() -> u64 {
    aipm_recording::time::now_unix_ms() / 1000
}

#[test]
fn a_users_forged_and_hostile_files_reach_no_one_elses_rows_or_comment_and_stall_nothing() {
    let _g = shared();
    let cluster = cluster();
    let since = now_s() - 1;
    let victim = recorded_job(cluster, VICTIM, "victim");
    let forged = recorded_job(cluster, TEST_USER, "forger");
    let fifo = recorded_job(cluster, TEST_USER, "fifo");
    let linked = recorded_job(cluster, TEST_USER, "linked");
    let node = node_name();
    let dir = |job: u32| cluster.job_dir(job).to_string_lossy().into_owned();
    // The victim's comment, set by the controller's epilog as SlurmUser.
    let start = Instant::now();
    let victims_comment = loop {
        let c = sacct_field(victim, "AdminComment");
        if c.starts_with("aipm:v1") {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no comment for the victim"
        );
        std::thread::sleep(Duration::from_millis(300));
    };

    // 1. Metadata for a node "0" claiming the victim's job, user and uid, with a formula as
    //    its name, beside the attacker's own samples.
    let victim_uid = uid_of(VICTIM);
    as_attacker(&format!(
        "cd {d} && sed -e 's/\"job_id\": {forged}/\"job_id\": {victim}/' \
            -e 's/\"user\": \"{TEST_USER}\"/\"user\": \"{VICTIM}\"/' \
            -e 's/\"uid\": [0-9]*/\"uid\": {victim_uid}/' \
            -e 's/\"job_name\": \"forger\"/\"job_name\": \"=1+1\"/' \
            -e 's/\"node\": \"{node}\"/\"node\": \"0\"/' {node}.meta.json > 0.meta.json \
         && cp {node}.samples.csv 0.samples.csv",
        d = dir(forged)
    ));
    // 2. A FIFO where the samples were: any blocking open would hang root's command.
    as_attacker(&format!(
        "cd {} && rm {node}.samples.csv && mkfifo {node}.samples.csv",
        dir(fifo)
    ));
    // 3. A link to the victim's samples (which the attacker cannot read) and, for the
    //    error messages, to /etc/shadow.
    as_attacker(&format!(
        "cd {d} && rm {node}.samples.csv && ln -s {v}/{node}.samples.csv {node}.samples.csv \
         && rm {node}.steps && ln -s /etc/shadow {node}.steps",
        d = dir(linked),
        v = dir(victim)
    ));

    // Root's commands come back at once, naming the file and quoting nothing of it.
    let (out, took) = root_runs(cluster, &["job", &fifo.to_string()]);
    assert!(took < PROMPT, "job {fifo} took {took:?}");
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{fifo}/{node}.samples.csv")),
        "{}",
        text(&out)
    );
    let (out, took) = root_runs(cluster, &["job", &linked.to_string(), "--format", "json"]);
    assert!(took < PROMPT, "job {linked} took {took:?}");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert!(
        !text(&out).contains("root:"),
        "a line of /etc/shadow: {}",
        text(&out)
    );

    // The comment of the forger's job is the forger's directory's; the victim's stays.
    let (out, took) = root_runs(
        cluster,
        &["slurm-comment", &forged.to_string(), "--wait", "1s"],
    );
    assert!(took < PROMPT, "slurm-comment took {took:?}");
    assert_eq!(
        sacct_field(victim, "AdminComment"),
        victims_comment,
        "{}",
        text(&out)
    );

    // The nightly export: the victim's file holds the victim's job alone, with its own
    // figures; the forger's row is the forger's, its formula neutralised; the files
    // that cannot be read are named and everyone else's rows written.
    let tmp = tempfile::Builder::new()
        .prefix("aipm-hostile-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out_dir = tmp.path().join("per-user");
    std::thread::sleep(Duration::from_millis(1100));
    let (out, took) = export(cluster, &out_dir, since);
    assert!(took < PROMPT, "export took {took:?}");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for job in [fifo, linked] {
        assert!(
            text(&out).contains(&format!("{}", cluster.job_dir(job).display())),
            "export does not name job {job}: {}",
            text(&out)
        );
    }
    let victims_file = std::fs::read_to_string(out_dir.join(format!("{VICTIM}.csv"))).unwrap();
    let attackers_file = std::fs::read_to_string(out_dir.join(format!("{TEST_USER}.csv"))).unwrap();
    // Every row of the victim's file is one of the victim's jobs, the victim's among them.
    assert!(
        victims_file
            .lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some(VICTIM)),
        "{victims_file}"
    );
    assert!(
        victims_file
            .lines()
            .any(|l| l.starts_with(&format!("{victim},victim,{VICTIM},"))),
        "{victims_file}"
    );
    assert!(!victims_file.contains("=1+1"), "{victims_file}");
    assert!(
        attackers_file
            .lines()
            .any(|l| l.starts_with(&format!("{forged},")) && l.contains("'=1+1")),
        "{attackers_file}"
    );
    assert!(
        !attackers_file
            .lines()
            .any(|l| l.starts_with(&format!("{victim},"))),
        "{attackers_file}"
    );
    let owner = |user: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(out_dir.join(format!("{user}.csv")))
            .unwrap()
            .uid()
    };
    assert_eq!(owner(VICTIM), victim_uid);
}

#[test]
fn a_lock_held_on_ones_own_export_file_delays_no_one_else() {
    let _g = shared();
    let cluster = cluster();
    let since = now_s() - 1;
    recorded_job(cluster, TEST_USER, "locker");
    let tmp = tempfile::Builder::new()
        .prefix("aipm-hostile-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out_dir = tmp.path().join("per-user");
    std::thread::sleep(Duration::from_millis(1100));
    let (first, _) = export(cluster, &out_dir, since);
    assert!(first.status.success(), "{}", text(&first));
    // The attacker holds their own file's lock for as long as they like.
    let attackers_file = out_dir.join(format!("{TEST_USER}.csv"));
    let mut holder: Child = Command::new("runuser")
        .args(["-u", TEST_USER, "--", "flock", "-x"])
        .arg(&attackers_file)
        .args(["sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let victim = recorded_job(cluster, VICTIM, "after-lock");
    recorded_job(cluster, TEST_USER, "locked-out");
    std::thread::sleep(Duration::from_millis(1100));
    let (out, took) = export(cluster, &out_dir, since);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < PROMPT, "export waited {took:?} for the lock");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}", attackers_file.display())),
        "the locked file is not named: {}",
        text(&out)
    );
    let victims_file = std::fs::read_to_string(out_dir.join(format!("{VICTIM}.csv"))).unwrap();
    assert!(
        victims_file
            .lines()
            .any(|l| l.starts_with(&format!("{victim},"))),
        "{victims_file}"
    );
}
