//! Issue 16, item 4: messages that name the cause (the file, the line, what was expected).

use aipm_recording::meta::Meta;

mod common;
use common::{aipm, package_sample, s, write_recording};

/// A node whose samples file is missing is named, and `job` exits 2, where it reported
/// "Samples 0" and exited 0.
#[test]
fn a_missing_samples_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = Meta {
        job_id: 9,
        node: "vm".into(),
        period_ms: 1000,
        start_unix_ms: 1_700_000_000_000,
        end_unix_ms: Some(1_700_000_010_000),
        ..Meta::default()
    };
    let rows = (0..=10).map(|k: u64| package_sample(1_700_000_000_000 + k * 1000, k));
    write_recording(tmp.path(), &meta, &["rapl:package-0"], &[], rows);
    let samples = tmp.path().join("9/vm.samples.csv");
    std::fs::remove_file(&samples).unwrap();
    let out = aipm(&["job", "9", "--spool", s(tmp.path())]);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: missing: node vm of job 9 has metadata but no samples",
            samples.display()
        )),
        "{err}"
    );
    assert!(
        text.contains(&format!(
            "{}: missing: the node's samples were never written",
            samples.display()
        )),
        "{text}"
    );
}
