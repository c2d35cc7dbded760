//! Issue 16, item 4: messages that name the cause (the file, the line, what was expected).

use aipm_recording::meta::Meta;

use crate::common::{aipm, package_sample, s, write_recording};

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

/// `summary` says why a file gave no frame, as `head` does; `head` shows the header's plugs.
#[test]
fn no_frame_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("noframe.log");
    std::fs::write(
        &log,
        "#timestamp,#frame_is_ok,#U1,#current1,#activepow1\n1671527189.31,true,230,1,100\n",
    )
    .unwrap();
    let out = aipm(&["omegawatt", "summary", s(&log)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("noframe.log: no frame found (is it a wattmetre-read log?): 2 line(s) read, a header of 1 plug(s) but no frame; 1 unreadable line(s), first at line 2: expected a timestamp like 1671527189.314471465, found \"1671527189.31\""),
        "{err}"
    );
    let out = aipm(&["omegawatt", "head", s(&log)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("  plugs: 1 (1)\n"), "{text}");
    assert!(text.contains("  no frame: 2 line(s) read"), "{text}");
}

/// A 2 MB unreadable line is quoted 80 characters at most.
#[test]
fn a_long_unreadable_line_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("long.log");
    let long = format!(
        "#timestamp,#frame_is_ok,#activepow1\n{}\n",
        "7".repeat(2 << 20)
    );
    std::fs::write(&log, long).unwrap();
    let g5k = tmp.path().join("power.csv.2023-11-16T08");
    std::fs::write(&g5k, format!("a,b,c\nx,y,{}\n", "z".repeat(2 << 20))).unwrap();
    for file in [&log, &g5k] {
        for command in ["summary", "head"] {
            let out = aipm(&["omegawatt", command, s(file)]);
            let all = out.stdout.len() + out.stderr.len();
            assert!(all < 2000, "{command} {}: {all} bytes", file.display());
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(text.contains("…"), "{text}");
        }
    }
}

/// Invalid UTF-8 is located (byte, line, column) in a channel map and an AIPowerMeter file;
/// a channel map too large is refused before it is parsed.
#[test]
fn invalid_utf8_is_located_and_a_huge_map_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("channels.toml");
    std::fs::write(&map, b"[nodes.n51]\nport = \"USB0\xff\"\n").unwrap();
    let node = |map: &std::path::Path| {
        aipm(&[
            "omegawatt",
            "node",
            "n51",
            "--map",
            s(map),
            "--archives",
            s(tmp.path()),
            "--from",
            "1700000000",
            "--to",
            "1700000060",
        ])
    };
    let err = String::from_utf8_lossy(&node(&map).stderr).into_owned();
    assert!(
        err.contains(
            "channels.toml: not UTF-8 text: invalid byte 0xff at byte 24 (line 2, column 13)"
        ),
        "{err}"
    );
    let huge = tmp.path().join("huge.toml");
    let entry = "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\n";
    std::fs::write(&huge, entry.repeat((5 << 20) / entry.len())).unwrap();
    let err = String::from_utf8_lossy(&node(&huge).stderr).into_owned();
    assert!(
        err.contains("huge.toml: larger than 4194304 bytes"),
        "{err}"
    );

    let legacy = tmp.path().join("power_metrics.json");
    std::fs::write(
        &legacy,
        b"{\"date\": \"2023-07-27 17:21:57\"}\n{\"date\": \"\xe9\"}\n",
    )
    .unwrap();
    let out = aipm(&["job", "--legacy", s(&legacy)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "power_metrics.json: not UTF-8 text: invalid byte 0xe9 at byte 42 (line 2, column 11)"
        ),
        "{err}"
    );
}

/// A gzipped Grid'5000 file unreadable from its start says so, not "after line 0".
#[test]
fn a_broken_gzip_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let gz = tmp.path().join("power.csv.2023-11-16T08.gz");
    std::fs::write(&gz, "not gzip\n").unwrap();
    let out = aipm(&["omegawatt", "summary", s(&gz)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unreadable from its first byte (not gzip, or cut short?)"),
        "{err}"
    );
    assert!(!err.contains("after line 0"), "{err}");
}
