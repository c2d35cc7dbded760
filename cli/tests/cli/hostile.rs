//! A hostile user against root's commands. The job directory belongs to its user, who can
//! put anything in it; these tests do, as mallory (uid 12345), what the attacker did
//! on the test cluster, and run `aipm-analyze` as root (as the export timer and the
//! controller's epilog do) against the spool: every command must come back within seconds,
//! name the file and what was wrong, quote nothing of it, and give mallory's files no say
//! over anyone else's rows, files or AdminComment.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aipm_recording::meta::Meta;

use crate::common::{package_sample, s, test_user, write_recording, BIN};

const DAY: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

/// A finished job of `user` on node n1: 100 W on the package for a minute.
fn job(spool: &Path, id: u32, user: &str, start_ms: u64) {
    let meta = Meta {
        job_id: id,
        user: user.into(),
        job_name: Some(format!("train{id}")),
        node: "n1".into(),
        cpus: Some(1),
        period_ms: 1000,
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + 60_000),
        ..Meta::default()
    };
    let rows = (0..=60).map(|k| package_sample(start_ms + k * 1000, k * 100_000_000));
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

/// The spool of the tests: alice's job 10, bob's job 11, mallory's job 20.
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let scene = Scene {
            tmp: tempfile::tempdir().unwrap(),
        };
        job(&scene.spool(), 10, "alice", DAY);
        job(&scene.spool(), 11, "bob", DAY + 1000);
        job(&scene.spool(), 20, "mallory", DAY + 2000);
        // A fake Slurm: no accounting, and a sacctmgr that notes what it was asked.
        let bin = scene.tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = scene.tmp.path().join("sacctmgr.log");
        write_script(
            &bin.join("sacct"),
            "echo 'sacct: no accounting here' >&2; exit 1",
        );
        write_script(
            &bin.join("sacctmgr"),
            &format!("echo \"$*\" >> {}", log.display()),
        );
        scene
    }

    fn spool(&self) -> PathBuf {
        self.tmp.path().join("spool")
    }

    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    /// A file in mallory's job directory, hers as if she had made it.
    fn plant(&self, name: &str) -> PathBuf {
        self.spool().join("20").join(name)
    }

    fn give_to_mallory(&self, path: &Path) {
        let (uid, gid) = test_user("mallory").unwrap();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    }

    /// `aipm-analyze ARGS` as root, killed after 20 s; how long it took.
    fn run(&self, args: &[&str]) -> (Output, Duration) {
        let path = format!(
            "{}:{}",
            self.tmp.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Instant::now();
        let out = Command::new("timeout")
            .arg("20")
            .arg(BIN)
            .args(args)
            .env("PATH", path)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        (out, started.elapsed())
    }

    fn export(&self) -> (Output, Duration) {
        let (spool, out) = (self.spool(), self.out());
        self.run(&[
            "export",
            "--jobs-from",
            "spool",
            "--spool",
            s(&spool),
            "--dir",
            s(&out),
            "--since",
            "2023-11-14",
            "--until",
            "2023-11-16",
        ])
    }

    fn job_report(&self, job: &str) -> (Output, Duration) {
        let spool = self.spool();
        self.run(&["job", job, "--spool", s(&spool)])
    }

    fn comment(&self, job: &str) -> (Output, Duration) {
        let spool = self.spool();
        self.run(&["slurm-comment", job, "--wait", "0s", "--spool", s(&spool)])
    }

    fn sacctmgr_calls(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("sacctmgr.log")).unwrap_or_default()
    }

    /// The job ids in a user's CSV.
    fn exported(&self, user: &str) -> Vec<String> {
        let path = self.out().join(format!("{user}.csv"));
        if !path.exists() {
            return Vec::new();
        }
        csv::Reader::from_path(path)
            .unwrap()
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect()
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Came back in seconds with exit 2 (an error), not killed, not aborted, not hung.
fn failed_quickly(run: &(Output, Duration)) -> String {
    let (out, took) = run;
    assert!(*took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
    stderr(out)
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn a_fifo_for_metadata_or_samples_is_named_and_holds_up_no_one() {
    for name in ["x.meta.json", "n1.samples.csv"] {
        let scene = Scene::new();
        std::fs::remove_file(scene.plant(name)).ok();
        mkfifo(&scene.plant(name));
        scene.give_to_mallory(&scene.plant(name));

        let err = failed_quickly(&scene.export());
        assert!(
            err.contains(&format!("20/{name}: a FIFO, not a regular file")),
            "{err}"
        );
        // Everyone else's rows are written.
        assert_eq!(scene.exported("alice"), ["10"]);
        assert_eq!(scene.exported("bob"), ["11"]);

        let err = failed_quickly(&scene.job_report("20"));
        assert!(err.contains(&format!("20/{name}: a FIFO")), "{err}");
        let err = failed_quickly(&scene.comment("20"));
        assert!(err.contains(&format!("20/{name}: a FIFO")), "{err}");
        assert_eq!(scene.sacctmgr_calls(), "");
        // A listing of another user's jobs is not held up either.
        let spool = scene.spool();
        let (out, took) = scene.run(&["jobs", "--user", "alice", "--spool", s(&spool)]);
        assert!(
            took < Duration::from_secs(10) && out.status.success(),
            "{out:?}"
        );
        // Her metadata is read to see whose job it is (her samples are not: not alice's).
        let warned = stderr(&out).contains(&format!("20/{name}: a FIFO"));
        assert_eq!(warned, name.ends_with(".meta.json"), "{out:?}");
    }
}

#[test]
fn a_sparse_samples_file_of_terabytes_is_refused_without_allocating() {
    let scene = Scene::new();
    let header = std::fs::read_to_string(scene.plant("n1.samples.csv")).unwrap();
    let header = header.lines().next().unwrap().to_string() + "\n";
    std::fs::write(scene.plant("n1.samples.csv"), header).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(scene.plant("n1.samples.csv"))
        .unwrap();
    file.set_len(4 << 40).unwrap(); // `truncate -s 4T`
    scene.give_to_mallory(&scene.plant("n1.samples.csv"));

    let err = failed_quickly(&scene.export());
    assert!(
        err.contains("20/n1.samples.csv: 4398046511104 bytes, more than the"),
        "{err}"
    );
    assert!(!err.contains("memory allocation"), "{err}");
    assert_eq!(scene.exported("alice"), ["10"]);
    let err = failed_quickly(&scene.job_report("20"));
    assert!(
        err.contains("20/n1.samples.csv: 4398046511104 bytes"),
        "{err}"
    );
}

#[test]
fn links_to_another_users_recording_or_to_etc_shadow_are_refused_unquoted() {
    let scene = Scene::new();
    let secret = scene.tmp.path().join("shadow");
    std::fs::write(&secret, "root:$6$secrethash:19000:0:99999:7:::\n").unwrap();
    let alices = scene.spool().join("10").join("n1.samples.csv");
    let links: [(&str, &Path, bool); 3] = [
        ("n1.samples.csv", &alices, false),
        ("n1.meta.json", &secret, false),
        ("n1.samples.csv", &alices, true),
    ];
    for (name, target, hard) in links {
        std::fs::remove_file(scene.plant(name)).unwrap();
        if hard {
            std::fs::hard_link(target, scene.plant(name)).unwrap();
        } else {
            std::os::unix::fs::symlink(target, scene.plant(name)).unwrap();
            scene.give_to_mallory(&scene.plant(name));
        }
        let expected = match hard {
            true => format!("20/{name}: 2 hard links, not one"),
            false => format!("20/{name}: a symbolic link (links are not followed): refused"),
        };
        for run in [scene.export(), scene.job_report("20"), scene.comment("20")] {
            let err = failed_quickly(&run);
            assert!(err.contains(&expected), "{err}");
            let all = stdout(&run.0) + &err;
            assert!(
                !all.contains("secrethash") && !all.contains("root:"),
                "{all}"
            );
        }
        // Alice's energy never lands in mallory's file, nor anywhere but alice's.
        assert!(scene.exported("mallory").is_empty());
        assert_eq!(scene.exported("alice"), ["10"]);
        std::fs::remove_file(scene.plant(name)).unwrap();
        std::fs::copy(scene.spool().join("11").join(name), scene.plant(name)).unwrap();
        scene.give_to_mallory(&scene.plant(name));
    }
}

#[test]
fn a_forged_metadata_file_speaks_only_for_its_own_directory_and_owner() {
    let scene = Scene::new();
    // An admin's own file in the export directory, as root.csv was in the issue.
    std::fs::create_dir(scene.out()).unwrap();
    let roots = scene.out().join("root.csv");
    std::fs::write(&roots, "").unwrap();
    // Mallory's job 20 claims to be alice's job 10, then root's, with a formula for a name.
    for (user, uid) in [("alice", 4201), ("root", 12345)] {
        let forged = Meta {
            job_id: 10,
            user: user.into(),
            uid,
            gid: uid,
            job_name: Some("=HYPERLINK(\"http://x\",\"1+1\")".into()),
            node: "n9".into(),
            cpus: Some(1),
            period_ms: 1000,
            start_unix_ms: DAY,
            end_unix_ms: Some(DAY + 60_000),
            ..Meta::default()
        };
        std::fs::write(scene.plant("n1.meta.json"), forged.to_json()).unwrap();
        scene.give_to_mallory(&scene.plant("n1.meta.json"));

        let (out, took) = scene.export();
        assert!(
            took < Duration::from_secs(10) && out.status.success(),
            "{out:?}"
        );
        // The row is job 20's, in mallory's own file, with what it claimed in its notes.
        assert_eq!(scene.exported("alice"), ["10"]);
        assert_eq!(scene.exported("mallory"), ["20"]);
        let mut reader = csv::Reader::from_path(scene.out().join("mallory.csv")).unwrap();
        let row = reader.records().next().unwrap().unwrap();
        let (name, owner, notes) = (&row[1], &row[2], &row[22]);
        assert!(name.starts_with("'=HYPERLINK("), "{row:?}");
        assert_eq!(owner, "mallory");
        assert!(notes.contains("n1.meta.json: claims job_id \"10\", but it is \"20\""));
        assert!(notes.contains(&format!("claims user \"{user}\", but it is \"mallory\"")));
        // root.csv is root's still, and empty; mallory's file is hers.
        let meta = std::fs::metadata(&roots).unwrap();
        assert_eq!((meta.uid(), meta.len()), (0, 0));
        let mallorys = std::fs::metadata(scene.out().join("mallory.csv")).unwrap();
        assert_eq!((mallorys.uid(), mallorys.mode() & 0o777), (12345, 0o600));
        std::fs::remove_file(scene.out().join("mallory.csv")).unwrap();

        // The controller's epilog for job 20 sets job 20's AdminComment, nobody else's.
        let (out, _) = scene.comment("20");
        assert!(out.status.success(), "{}", stderr(&out));
        let calls = scene.sacctmgr_calls();
        assert!(calls.lines().all(|l| l.contains("jobid=20 ")), "{calls}");
        // Alice's report is alice's.
        let (out, _) = scene.job_report("10");
        assert!(
            stdout(&out).starts_with("Job 10 (train10), user alice"),
            "{}",
            stdout(&out)
        );
    }
    let (out, _) = scene.job_report("20");
    let report = stdout(&out);
    assert!(report.starts_with("Job 20 (=HYPERLINK"), "{report}");
    assert!(
        report.contains("user mallory") && report.contains("Node n1 "),
        "{report}"
    );
}

#[test]
fn metadata_claiming_a_task_of_another_users_array_is_not_one() {
    let scene = Scene::new();
    // Alice's job 10 heads array 10; mallory's job 20 claims to be its task 1.
    let path = scene.spool().join("10").join("n1.meta.json");
    let mut alices: Meta = Meta::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (alices.array_job_id, alices.array_task_id) = (Some(10), Some(0));
    std::fs::write(&path, alices.to_json()).unwrap();
    let mut forged = alices.clone();
    (forged.job_id, forged.array_task_id) = (20, Some(1));
    std::fs::write(scene.plant("n1.meta.json"), forged.to_json()).unwrap();
    scene.give_to_mallory(&scene.plant("n1.meta.json"));
    let spool = scene.spool();
    let (out, _) = scene.run(&["job", "10", "--format", "json", "--spool", s(&spool)]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["job_id"]
                .as_u64()
                .map(|_| n["user"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(jobs, ["alice"], "{report}");
}

#[test]
fn a_lock_held_on_a_users_export_file_skips_that_user_alone() {
    let scene = Scene::new();
    let (out, _) = scene.export();
    assert!(out.status.success(), "{}", stderr(&out));
    // Mallory holds a lock on her own file (0600, hers: she can open it).
    let mallorys = scene.out().join("mallory.csv");
    let held = std::fs::File::open(&mallorys).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    job(&scene.spool(), 12, "alice", DAY + 3000);
    job(&scene.spool(), 21, "mallory", DAY + 4000);

    let err = failed_quickly(&scene.export());
    assert!(
        err.contains("mallory.csv: locked by another process (its user, or another export): skipped, retried on the next run"),
        "{err}"
    );
    assert_eq!(scene.exported("alice"), ["10", "12"]);
    assert_eq!(scene.exported("mallory"), ["20"]);

    drop(held);
    let (out, _) = scene.export();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(scene.exported("mallory"), ["20", "21"]);
}

#[test]
fn a_sparse_export_file_of_ones_own_is_refused_and_holds_up_no_one() {
    let scene = Scene::new();
    let (out, _) = scene.export();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(scene.out().join("mallory.csv"))
        .unwrap();
    file.set_len(900 << 20).unwrap();
    job(&scene.spool(), 12, "alice", DAY + 3000);
    let err = failed_quickly(&scene.export());
    assert!(
        err.contains("mallory.csv: a sparse file (943718400 bytes"),
        "{err}"
    );
    assert_eq!(scene.exported("alice"), ["10", "12"]);
}

#[test]
fn a_users_file_owned_by_someone_else_is_refused_not_taken() {
    let scene = Scene::new();
    std::fs::create_dir(scene.out()).unwrap();
    let bobs = scene.out().join("bob.csv");
    std::fs::write(&bobs, "").unwrap();
    scene.give_to_mallory(&bobs);
    let err = failed_quickly(&scene.export());
    assert!(
        err.contains("bob.csv: belongs to uid 12345, not to bob (uid 4202)"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&bobs).unwrap().uid(), 12345);
    assert_eq!(scene.exported("alice"), ["10"]);
}

#[test]
fn formulas_in_job_names_are_neutralised_in_every_csv() {
    let scene = Scene::new();
    let path = scene.plant("n1.meta.json");
    let mut meta: Meta = Meta::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for name in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx"] {
        meta.job_name = Some(name.into());
        std::fs::write(&path, meta.to_json()).unwrap();
        let spool = scene.spool();
        let (out, _) = scene.run(&["jobs", "--format", "csv", "--spool", s(&spool)]);
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let names: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[1].to_string())
            .collect();
        assert!(names.contains(&format!("'{name}")), "{names:?}");
        let (out, _) = scene.export();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut reader = csv::Reader::from_path(scene.out().join("mallory.csv")).unwrap();
        let row = reader.records().next().unwrap().unwrap();
        assert!(row[1].starts_with('\''), "{row:?}");
        std::fs::remove_file(scene.out().join("mallory.csv")).unwrap();
    }
}
