//! `aipm-analyze omegawatt` on generated `wattmetre-read` archives with every kind of bad
//! input the real logs have, and on the real header of a Lab IA log.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_aipm-analyze");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn generate(dir: &Path, extra: &[&str]) -> String {
    let zip = dir.join("11_16_2023_USB0.zip").display().to_string();
    let mut args = vec![
        "omegawatt",
        "generate",
        "--plugs",
        "24",
        "--rate",
        "100",
        "--seconds",
        "120",
        "--zip",
        &zip,
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    zip
}

#[test]
fn energy_from_per_second_means_matches_the_exact_integral_despite_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    // Node n51: two PSUs on plugs 13 and 19, one ramping.
    let zip = generate(
        tmp.path(),
        &[
            "--power",
            "13=180",
            "--power",
            "19=120..360",
            "--power",
            "1=55",
            "--invalid-every",
            "37",
            "--log-every",
            "101",
            "--nan-every",
            "211",
            "--glued-header",
            "--truncate",
        ],
    );
    let out = run(&[
        "omegawatt",
        "summary",
        &zip,
        "--plugs",
        "13,19",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = &report["summaries"][0];
    let exact_wh = (180.0 + (120.0 + 360.0) / 2.0) * 120.0 / 3600.0;
    let wh = node["energy_wh"].as_f64().unwrap();
    assert!(
        (wh - exact_wh).abs() < 0.001 * exact_wh,
        "{wh} Wh, exact {exact_wh} Wh"
    );
    assert_eq!(node["seconds_covered"], 120);
    assert_eq!(node["seconds_missing"], 0);
    // Every skipped frame is counted: 12000 frames, every 37th invalid, the last one cut.
    let invalid = report["invalid_frames"].as_u64().unwrap();
    assert_eq!(invalid, 12_000 / 37);
    assert_eq!(report["valid_frames"].as_u64().unwrap() + invalid, 11_999);
    assert_eq!(report["truncated_last_line"], true);
    assert_eq!(
        report["unreadable_lines"], 0,
        "rows cut by log lines are rejoined, not lost"
    );
    assert!(report["nan_values"].as_u64().unwrap() > 0);
}

#[test]
fn a_clock_step_back_is_counted_and_no_frame_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    // The clock steps back 5 s at frame 6000: seconds 55..60 get frames twice; none is lost.
    let zip = generate(tmp.path(), &["--power", "2=100", "--step-back", "6000:5"]);
    let out = run(&[
        "omegawatt",
        "summary",
        &zip,
        "--plugs",
        "2",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clock_steps_back"], 1);
    assert_eq!(report["summaries"][0]["seconds_covered"], 115);
    // A window that only covers seconds before the log starts: nothing covered.
    let out = run(&[
        "omegawatt",
        "summary",
        &zip,
        "--plugs",
        "2",
        "--to",
        "1600000000",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summaries"][0]["seconds_covered"], 0);
}

#[test]
fn a_truncated_or_corrupt_archive_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = generate(tmp.path(), &["--power", "1=100"]);
    let bytes = std::fs::read(&zip).unwrap();
    let cut = tmp.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&["omegawatt", "head", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.zip: not a readable zip archive (truncated or corrupt?)"),
        "{err}"
    );
}

#[test]
fn head_of_the_real_lab_ia_header_and_a_missing_plug() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/aipowermeter/omegawatt_wattmetre-read_head_24plugs_from_labia_README.txt"
    );
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log_omegawatt_USB0");
    let mut text = std::fs::read_to_string(fixture).unwrap();
    text.push_str(&format!(
        "1702620470.010000000,true,230.0,0.0,0.0{}\n",
        ",0.5,115.0".repeat(24)
    ));
    std::fs::write(&log, text).unwrap();
    let out = run(&["omegawatt", "head", log.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("plugs: 24 (1,2,3"), "{shown}");
    assert!(shown.contains("2 log line(s)"), "{shown}");
    assert!(shown.contains("115.0 115.0"), "{shown}");

    let out = run(&[
        "omegawatt",
        "summary",
        log.to_str().unwrap(),
        "--plugs",
        "25",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no #activepow25 column"));
}
