//! `aipm-analyze slurm-comment` as the controller's epilog runs it: only this job's run,
//! only this job's user, only once every node of the job is there.

use std::path::Path;
use std::process::{Command, Output};

use aipm_recording::meta::Meta;

use crate::common::{package_sample, s, write_recording, BIN};

const START: u64 = 1_700_000_000_000;

/// A finished recording of job `id` on `node`, run `restart_count` of it: 100 W for 36 s.
fn recorded(spool: &Path, id: u32, node: &str, restart_count: Option<u32>) {
    let meta = Meta {
        job_id: id,
        user: "alice".into(),
        node: node.into(),
        cpus: Some(1),
        restart_count,
        start_unix_ms: START,
        end_unix_ms: Some(START + 36_000),
        ..Meta::default()
    };
    let rows = (0..=36).map(|k| package_sample(START + k * 1000, k * 100_000_000));
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

fn comment(spool: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "slurm-comment",
            "30",
            "--print",
            "--wait",
            "0s",
            "--spool",
            s(spool),
        ])
        .args(extra)
        .env("AIPM_TEST_PASSWD", crate::common::PASSWD)
        .output()
        .unwrap()
}

#[test]
fn only_this_run_of_a_requeued_job_is_summed() {
    let spool = tempfile::tempdir().unwrap();
    crate::common::test_user("alice");
    // The first run's recording, still in the store before the nodes publish the second.
    recorded(spool.path(), 30, "n1", Some(0));
    let out = comment(spool.path(), &["--restart-count", "1", "--nodes", "n1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = comment(spool.path(), &["--restart-count", "0", "--nodes", "n1"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("aipm:v1 energy_wh=1.000 "), "{text}");
}

#[test]
fn a_recording_of_another_user_is_not_this_jobs() {
    let spool = tempfile::tempdir().unwrap();
    let (bob, _) = crate::common::test_user("bob").unwrap();
    recorded(spool.path(), 30, "n1", None);
    let out = comment(spool.path(), &["--uid", &bob.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the job's uid"),
        "{out:?}"
    );
}

#[test]
fn a_node_of_the_job_still_missing_means_no_comment_yet() {
    let spool = tempfile::tempdir().unwrap();
    crate::common::test_user("alice");
    recorded(spool.path(), 30, "n1", None);
    let out = comment(spool.path(), &["--nodes", "n[1-2]"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no recording of node(s) n2"),
        "{out:?}"
    );
    recorded(spool.path(), 30, "n2", None);
    let out = comment(spool.path(), &["--nodes", "n[1-2]"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("energy_wh=2.000"),
        "{out:?}"
    );
}
