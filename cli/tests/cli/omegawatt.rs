//! `aipm-analyze omegawatt` on generated `wattmetre-read` archives with every kind of bad
//! input the real logs have, and on the real header of a Lab IA log.

use std::path::Path;
use std::process::Command;

// Every run reads local time as UTC (common::aipm), as the archives' names assume here.
use crate::common::{aipm as run, json, s, BIN};

fn generate(dir: &Path, extra: &[&str]) -> String {
    let zip = dir.join("11_16_2023_USB0.zip");
    crate::common::generate_archive(&zip, 24, 100, 120, 1_700_000_000, extra);
    zip.display().to_string()
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
            "--noise",
            "5",
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
        "/../tests/fixtures/aipowermeter/omegawatt_wattmetre-read_head_24plugs_from_labia_README.txt"
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

/// `node` across the 07:00 rotation: the window takes the end of one daily archive and the
/// start of the next, sums the node's two PSUs, and reports a missing day.
#[test]
fn a_node_over_two_daily_archives_and_a_missing_day() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let map = dir.join("channels.toml");
    std::fs::write(&map, "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\n\n[nodes.n52]\nport = \"USB0\"\nchannels = [15, 21]\n").unwrap();
    // 2023-11-16 06:58 UTC and 07:00 UTC: the end of the 16th's archive, the start of the 17th's.
    for (name, start) in [
        ("11_16_2023_USB0.zip", "1700117880"),
        ("11_17_2023_USB0.zip", "1700118000"),
    ] {
        let start: u64 = start.parse().unwrap();
        crate::common::generate_archive(
            &dir.join(name),
            24,
            100,
            120,
            start,
            &["--power", "13=210", "--power", "19=190"],
        );
    }
    let node_args = |extra: &[&'static str]| {
        let mut args = vec![
            "omegawatt",
            "node",
            "n51",
            "--map",
            s(&map),
            "--archives",
            s(dir),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let node = |from: &'static str, to: &'static str| {
        json(&node_args(&[
            "--from", from, "--to", to, "--format", "json",
        ]))
    };
    let r = node("2023-11-16 06:59", "2023-11-16 07:01");
    assert_eq!(r["archives_read"].as_array().unwrap().len(), 2);
    assert_eq!(r["seconds_covered"], 120);
    assert_eq!(r["seconds_uncovered"], 0);
    let wh = r["energy_wh"].as_f64().unwrap();
    assert!(
        (wh - 400.0 * 120.0 / 3600.0).abs() < 0.001 * 400.0 * 120.0 / 3600.0,
        "{wh}"
    );
    assert_eq!(r["mean_w"], 400.0);

    // Into the next day, whose archive is missing: named, and its time counted as uncovered.
    let r = node("2023-11-16 06:59", "2023-11-17 07:30");
    let missing = r["archives_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert!(missing[0]
        .as_str()
        .unwrap()
        .ends_with("11_18_2023_USB0.zip"));
    // 60 s of the 16th's archive after 06:59, and the 120 s of the 17th's.
    assert_eq!(r["seconds_covered"], 180);
    assert!(r["seconds_uncovered"].as_u64().unwrap() > 86_000);

    // A node whose channel is not in the files' header.
    std::fs::write(&map, "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 29]\n").unwrap();
    let out = node_args(&["--from", "1700117900", "--to", "1700118100"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("11_16_2023_USB0.zip: node n51's channel 29 is not in the header"),
        "{err}"
    );
}

fn generated_stream(start: &str, seconds: &str) -> Vec<u8> {
    let out = run(&[
        "omegawatt",
        "generate",
        "--plugs",
        "6",
        "--seconds",
        seconds,
        "--start",
        start,
        "--power",
        "1=100",
        "--glued-header",
        "--log-every",
        "700",
    ]);
    assert!(out.status.success());
    out.stdout
}

fn ingest(dir: &Path, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["omegawatt", "ingest", "--port", "USB0", "--dir"])
        .arg(dir)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `omegawatt summary FILE ARGS --format json`, which must succeed.
fn summary_json(file: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "omegawatt",
        "summary",
        file.to_str().unwrap(),
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    json(&run(&all))
}

fn frames_in(file: &Path) -> (u64, u64) {
    let r = summary_json(file, &[]);
    (
        r["valid_frames"].as_u64().unwrap(),
        r["unreadable_lines"].as_u64().unwrap(),
    )
}

/// The stream crosses 07:00: the day before is closed into the archive the Lab IA's tools
/// read, the next day starts with the header, no frame is lost; a restart after an unclean
/// stop resumes the day with only the cut line unreadable.
#[test]
fn ingest_rotates_at_seven_without_losing_a_frame_and_resumes_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 2023-11-16 06:59:00 UTC, two minutes at 100 Hz.
    let shown = ingest(dir, &generated_stream("1700117940", "120"));
    let archive = dir.join("11_16_2023_USB0.zip");
    assert!(shown.contains("closed") && archive.exists(), "{shown}");
    let raw = dir.join("log_omegawatt_USB0");
    assert_eq!(
        frames_in(&archive),
        (6000, 0),
        "06:59:00 to 07:00:00 in the closed day"
    );
    assert_eq!(
        frames_in(&raw),
        (6000, 0),
        "07:00:00 on in the new day, readable alone"
    );
    let zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    assert_eq!(
        zip.file_names().filter_map(Result::ok).collect::<Vec<_>>(),
        ["log_omegawatt_of_the_day"]
    );

    // An unclean stop in the middle of a line, then a restart of the whole pipeline.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&raw)
        .unwrap()
        .write_all(b"1700118060.12345")
        .unwrap();
    ingest(dir, &generated_stream("1700118070", "30"));
    assert_eq!(
        frames_in(&raw),
        (6000 + 3000, 1),
        "resumed; only the cut line is lost"
    );
}

/// A Grid'5000 hourly file (same boxes, another format): plain and gzipped, read through the
/// same commands, ports numbered from 0, sub-watt values kept exactly.
#[test]
fn grid5000_hourly_files_plain_and_gzipped() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::from("debug1,debug2,timestamp,status,port0,port1,port2\n");
    for k in 0..3000u64 {
        // 50 Hz for 60 s; every 100th row not OK, port 2 never measured.
        let t = 1_700_000_000_000_000_000u64 + k * 20_000_000;
        let status = if k % 100 == 99 { "KO" } else { "OK" };
        text.push_str(&format!(
            "x,y,{}.{:09},{status},129.688,12.125,\n",
            t / 1_000_000_000,
            t % 1_000_000_000
        ));
    }
    // The hour still being written: its last row cut after the status.
    text.push_str("x,y,1700000060.000000000,OK");
    let plain = tmp.path().join("power.csv.2023-11-14T22");
    std::fs::write(&plain, &text).unwrap();
    let gz = tmp.path().join("power.csv.2023-11-14T21.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
    for file in [&plain, &gz] {
        let r = summary_json(file, &["--plugs", "0,1"]);
        assert_eq!(
            (r["valid_frames"].as_u64(), r["invalid_frames"].as_u64()),
            (Some(2970), Some(30))
        );
        assert_eq!(
            r["unreadable_lines"], 1,
            "the cut row is counted, not a panic"
        );
        let s = &r["summaries"][0];
        assert_eq!(s["seconds_covered"], 60);
        let mean = s["mean_w"].as_f64().unwrap();
        assert!(
            (mean - 141.813).abs() < 1e-9,
            "129.688 W + 12.125 W, to the milliwatt: {mean}"
        );
        let wh = s["energy_wh"].as_f64().unwrap();
        assert!((wh - 141.813 * 60.0 / 3600.0).abs() < 1e-9, "{wh}");
    }
}

/// Issue 16, item 6: `ingest` stopped while it closed a day (the raw text moved aside as
/// `.closing_…`, a broken `.partial`): the restart finishes that archive; a stop after the
/// archive was written and before the raw copy was removed leaves no duplicate.
#[test]
fn a_restart_finishes_the_day_a_stop_left_half_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let closing = dir.join(".closing_11_16_2023_USB0.zip");
    // 2023-11-16 06:58 UTC, a minute at 100 Hz: the end of the 16th's archive.
    std::fs::write(&closing, generated_stream("1700117880", "60")).unwrap();
    let partial = dir.join("11_16_2023_USB0.zip.partial");
    std::fs::write(&partial, b"PK\x03\x04 cut short").unwrap();
    let shown = ingest(dir, b"");
    let archive = dir.join("11_16_2023_USB0.zip");
    assert!(shown.contains("closed"), "{shown}");
    assert_eq!(frames_in(&archive), (6000, 0));
    assert!(!closing.exists() && !partial.exists());

    // The same raw text again, as if the removal had been missed: the archive holds it.
    let member = {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut zip.by_name("log_omegawatt_of_the_day").unwrap(),
            &mut text,
        )
        .unwrap();
        text
    };
    std::fs::write(&closing, member).unwrap();
    ingest(dir, b"");
    assert!(!closing.exists());
    assert!(!dir.join("11_16_2023_USB0.1.zip").exists());
}

/// SIGTERM (systemd's stop) ends the reading but not the day being closed: the process
/// finishes the archive and exits 0, instead of dying with the day half compressed.
#[test]
fn sigterm_lets_the_closing_day_finish() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut child = Command::new(BIN)
        .args(["omegawatt", "ingest", "--port", "USB0", "--dir"])
        .arg(dir)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 06:59:00 to 07:01:00 UTC: the 16th is closed at 07:00.
    stdin
        .write_all(&generated_stream("1700117940", "120"))
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{:?}: {err}", out.status);
    assert!(
        err.contains("stopping: finishing the days being closed first"),
        "{err}"
    );
    let archive = dir.join("11_16_2023_USB0.zip");
    assert_eq!(frames_in(&archive), (6000, 0));
    assert!(!dir.join(".closing_11_16_2023_USB0.zip").exists());
}
