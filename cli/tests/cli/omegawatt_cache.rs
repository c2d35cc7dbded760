//! `aipm-analyze omegawatt index` and the per-second cache: real zip archives in, real
//! Parquet files out (read back here with polars), and `node` giving from the cache what it
//! gives from the archives.

use std::path::Path;

use polars::prelude::{DataType, ParquetReader, SerReader};

use crate::common::{aipm as run, json, s};

/// A day's archive of 24 plugs for two minutes from `start`: n51 on plugs 13 and 19, one
/// PSU ramping, with invalid frames and `nan` values.
fn archive(dir: &Path, name: &str, start: &str, psu: &str) {
    let faults = ["--invalid-every", "53", "--nan-every", "211"];
    let profiles = ["--power", "13=210", "--power", psu];
    let start: u64 = start.parse().unwrap();
    crate::common::generate_archive(
        &dir.join(name),
        24,
        100,
        120,
        start,
        &[&profiles[..], &faults[..]].concat(),
    );
}

fn index(archives: &Path, cache: &Path) -> std::process::Output {
    run(&[
        "omegawatt",
        "index",
        "--archives",
        s(archives),
        "--cache",
        s(cache),
    ])
}

fn node(map: &Path, source: &[&str], from: &str, to: &str) -> serde_json::Value {
    let mut args = vec![
        "omegawatt",
        "node",
        "n51",
        "--map",
        s(map),
        "--from",
        from,
        "--to",
        to,
        "--format",
        "json",
    ];
    args.extend_from_slice(source);
    json(&run(&args))
}

const FIGURES: [&str; 7] = [
    "energy_wh",
    "mean_w",
    "median_w",
    "min_w",
    "max_w",
    "seconds_covered",
    "seconds_uncovered",
];

#[test]
fn index_writes_a_hive_partitioned_cache_that_node_reads_like_the_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let (archives, cache) = (tmp.path().join("archives"), tmp.path().join("cache"));
    std::fs::create_dir_all(&archives).unwrap();
    // 2023-11-16 06:58 and 07:00 UTC: the end of the 16th's archive, the start of the 17th's.
    archive(
        &archives,
        "11_16_2023_USB0.zip",
        "1700117880",
        "19=120..360",
    );
    archive(
        &archives,
        "11_17_2023_USB0.zip",
        "1700118000",
        "19=120..360",
    );
    std::fs::write(archives.join("README.txt"), "not an archive").unwrap();
    let map = tmp.path().join("channels.toml");
    std::fs::write(&map, "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\n").unwrap();

    let out = index(&archives, &cache);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("2 archive(s) indexed, 0 unchanged, 0 failed"),
        "{shown}"
    );
    assert!(shown.contains("1 other file(s) left"), "{shown}");

    // The Parquet file of a day: the documented columns, one row per second per plug, a
    // node's channel in order of time.
    let day = cache.join("port=USB0/date=2023-11-17/seconds.parquet");
    let frame = ParquetReader::new(std::fs::File::open(&day).unwrap())
        .finish()
        .unwrap();
    let schema: Vec<(String, DataType)> = frame
        .schema()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    assert_eq!(
        schema,
        [
            ("time".to_string(), DataType::Int64),
            ("channel".to_string(), DataType::UInt32),
            ("mean_w".to_string(), DataType::Float64),
            ("min_w".to_string(), DataType::Float64),
            ("max_w".to_string(), DataType::Float64),
            ("valid_frames".to_string(), DataType::UInt32),
            ("invalid_frames".to_string(), DataType::UInt32),
        ]
    );
    assert_eq!(frame.height(), 120 * 24);
    let channel = frame.column("channel").unwrap().u32().unwrap();
    let time = frame.column("time").unwrap().i64().unwrap();
    let mean = frame.column("mean_w").unwrap().f64().unwrap();
    let valid = frame.column("valid_frames").unwrap().u32().unwrap();
    let invalid = frame.column("invalid_frames").unwrap().u32().unwrap();
    let plug13: Vec<usize> = (0..frame.height())
        .filter(|&i| channel.get(i) == Some(13))
        .collect();
    assert_eq!(plug13.len(), 120);
    assert_eq!(time.get(plug13[0]), Some(1_700_118_000));
    assert_eq!(time.get(plug13[119]), Some(1_700_118_119));
    for &i in &plug13 {
        assert_eq!(mean.get(i), Some(210.0), "row {i}");
        // 100 frames a second, every 53rd invalid.
        assert_eq!(valid.get(i).unwrap() + invalid.get(i).unwrap(), 100);
    }

    // `node` from the cache alone gives what it gives from the archives alone.
    let (from, to) = ("2023-11-16 06:59", "2023-11-16 07:01");
    let from_cache = node(&map, &["--cache", s(&cache)], from, to);
    let from_archives = node(&map, &["--archives", s(&archives)], from, to);
    assert_eq!(from_cache["days_cached"].as_array().unwrap().len(), 2);
    assert!(from_cache["archives_read"].as_array().unwrap().is_empty());
    for figure in FIGURES {
        assert_eq!(from_cache[figure], from_archives[figure], "{figure}");
    }
    // Within 0.1% of the exact integral: plug 13 at 210 W, plug 19 ramping 120 to 360 W over
    // each two-minute file (06:59 to 07:00 is the second half of the first ramp, 07:00 to
    // 07:01 the first half of the second).
    let exact_wh =
        (210.0 * 120.0 + (240.0 + 360.0) / 2.0 * 60.0 + (120.0 + 240.0) / 2.0 * 60.0) / 3600.0;
    let wh = from_cache["energy_wh"].as_f64().unwrap();
    assert!(
        (wh - exact_wh).abs() < 0.001 * exact_wh,
        "{wh} vs {exact_wh}"
    );

    // Its plot, from the cache: a PNG and an SVG of the size asked for, with the legend.
    for name in ["n51.png", "n51.svg"] {
        let image = tmp.path().join(name);
        let out = run(&[
            "omegawatt",
            "plot",
            "n51",
            "--map",
            s(&map),
            "--cache",
            s(&cache),
            "--from",
            from,
            "--to",
            to,
            "--size",
            "900x420",
            "-o",
            s(&image),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(crate::common::image_size(&image), (900, 420), "{name}");
    }
    let svg = std::fs::read_to_string(tmp.path().join("n51.svg")).unwrap();
    for text in [
        "Wall power of n51",
        "PSU 2 (plug 19)",
        "node (all PSUs)",
        "power (W)",
        "local time, 2023-11-16 (UTC+00:00)",
    ] {
        assert!(svg.contains(text), "{text} missing from the SVG");
    }

    // Indexed again: nothing to do.
    let shown = String::from_utf8_lossy(&index(&archives, &cache).stdout).into_owned();
    assert!(
        shown.contains("0 archive(s) indexed, 2 unchanged"),
        "{shown}"
    );

    // An archive replaced (a day re-zipped with other data) is indexed again; a corrupt one is
    // named, the run fails, and the others stay cached.
    archive(&archives, "11_17_2023_USB0.zip", "1700118000", "19=400");
    std::fs::write(
        archives.join("11_18_2023_USB0.zip"),
        b"PK\x03\x04 cut short",
    )
    .unwrap();
    let out = index(&archives, &cache);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("1 archive(s) indexed, 1 unchanged, 1 failed"),
        "{shown}"
    );
    assert!(
        shown.contains("FAILED") && shown.contains("11_18_2023_USB0.zip"),
        "{shown}"
    );
    let later = node(
        &map,
        &["--cache", s(&cache)],
        "2023-11-16 07:00",
        "2023-11-16 07:01",
    );
    assert_eq!(later["mean_w"], 610.0);

    // A day missing from the cache is read from its archive when --archives is given too.
    std::fs::remove_dir_all(cache.join("port=USB0/date=2023-11-16")).unwrap();
    let mixed = node(
        &map,
        &["--cache", s(&cache), "--archives", s(&archives)],
        from,
        to,
    );
    assert_eq!(mixed["days_cached"].as_array().unwrap().len(), 1);
    assert_eq!(mixed["archives_read"].as_array().unwrap().len(), 1);
    assert_eq!(mixed["seconds_covered"], 120);
    let cache_only = node(&map, &["--cache", s(&cache)], from, to);
    assert_eq!(cache_only["seconds_covered"], 60);
    assert_eq!(cache_only["archives_missing"][0], "11_16_2023_USB0.zip");

    // A mistyped cache directory, or a rotation hour that is not one, is an error, not 0 Wh.
    let typo = tmp.path().join("cahce");
    for (flag, value, expected) in [
        ("--cache", s(&typo), "the wall meters' cache"),
        ("--rotation-hour", "30", "--rotation-hour"),
    ] {
        let mut args = vec![
            "omegawatt",
            "node",
            "n51",
            "--map",
            s(&map),
            "--from",
            from,
            "--to",
            to,
        ];
        if flag != "--cache" {
            args.extend(["--cache", s(&cache)]);
        }
        args.extend([flag, value]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
}

/// `ingest --cache`: the day closed at 07:00 is in the cache as soon as it is archived.
#[test]
fn ingest_caches_the_day_it_closes() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cache) = (tmp.path().join("raw"), tmp.path().join("cache"));
    // 2023-11-16 06:59:00 UTC, two minutes of 6 plugs.
    let stream = run(&[
        "omegawatt",
        "generate",
        "--plugs",
        "6",
        "--seconds",
        "120",
        "--start",
        "1700117940",
        "--power",
        "1=100",
    ]);
    assert!(stream.status.success());
    let mut child = std::process::Command::new(crate::common::BIN)
        .args(["omegawatt", "ingest", "--port", "USB0", "--dir"])
        .arg(&dir)
        .arg("--cache")
        .arg(&cache)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&stream.stdout)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let day = cache.join("port=USB0/date=2023-11-16/seconds.parquet");
    let frame = ParquetReader::new(std::fs::File::open(&day).unwrap())
        .finish()
        .unwrap();
    assert_eq!(frame.height(), 60 * 6, "06:59:00 to 07:00:00, six plugs");
    assert!(
        !cache.join("port=USB0/date=2023-11-17").exists(),
        "the open day is not cached yet"
    );
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("_index/USB0/2023-11-16.json")).unwrap())
            .unwrap();
    assert_eq!(entry["valid_frames"], 6000);
    assert!(entry["archive"]
        .as_str()
        .unwrap()
        .ends_with("11_16_2023_USB0.zip"));
}
