//! `aipm-analyze compare`: whole-node RAPL against the wall meter, bin by bin, with two
//! jobs' recordings of the same node counted once and a strayed bin flagged.

use aipm_recording::meta::Meta;
use aipm_recording::samples::SampleRow;

use crate::common::{aipm, generate_archive, package_sample, s, write_recording};

const T: u64 = 1_700_118_000; // 2023-11-16 07:00 UTC: in the archive of 11_17_2023.

/// The node's package power in second `k` of the test: 100 W, but 60 W from 200 s to 300 s
/// and 160 W from 500 s.
fn package_w(k: u64) -> u64 {
    match k {
        200..300 => 60,
        500.. => 160,
        _ => 100,
    }
}

/// Job `id` on node vm, sampled every second over `[from, to)` s of the test; every job on
/// the node sees the same node counter.
fn recording(spool: &std::path::Path, id: u32, from: u64, to: u64) {
    let meta = Meta {
        job_id: id,
        node: "vm".into(),
        period_ms: 1000,
        start_unix_ms: (T + from) * 1000,
        end_unix_ms: Some((T + to) * 1000),
        ..Meta::default()
    };
    let rows = (from..=to).map(|k| {
        let energy_j: u64 = (0..k).map(package_w).sum();
        SampleRow {
            node_jobs: Some(2),
            ..package_sample((T + k) * 1000, energy_j * 1_000_000)
        }
    });
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

#[test]
fn the_wall_against_the_sensors_per_bin_with_strays_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, archives) = (tmp.path().join("spool"), tmp.path().join("wall"));
    recording(&spool, 1, 0, 600);
    recording(&spool, 2, 100, 300);
    std::fs::create_dir_all(&archives).unwrap();
    let zip = archives.join("11_17_2023_USB0.zip");
    generate_archive(
        &zip,
        6,
        20,
        600,
        T,
        &["--power", "1=100", "--power", "2=50"],
    );
    let map = tmp.path().join("channels.toml");
    std::fs::write(&map, "[nodes.vm]\nport = \"USB0\"\nchannels = [1, 2]\n").unwrap();
    let (from, to) = (T.to_string(), (T + 600).to_string());
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--nodes",
            "vm",
            "--from",
            &from,
            "--to",
            &to,
            "--every",
            "100s",
            "--spool",
            s(&spool),
            "--wall-map",
            s(&map),
            "--wall-archives",
            s(&archives),
        ];
        args.extend_from_slice(extra);
        aipm(&args)
    };
    let out = compare(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "flagged bins exit 1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = &report[0];
    assert_eq!(node["recordings"], 2);
    assert_eq!(node["median_ratio"], 1.5);
    let bins = node["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 6);
    let figure = |i: usize, key: &str| bins[i][key].as_f64().unwrap();
    // Two recordings over 100..300 s: the node counted once, not twice.
    assert!((figure(1, "sensors_w") - 100.0).abs() < 1e-9, "{}", bins[1]);
    assert!((figure(1, "wall_w") - 150.0).abs() < 1e-9);
    let flags: Vec<&str> = bins.iter().map(|b| b["flag"].as_str().unwrap()).collect();
    assert_eq!(flags, ["", "", "drift", "", "", "wall-below-sensors"]);
    assert!((figure(2, "ratio") - 2.5).abs() < 1e-9);
    assert!((figure(5, "ratio") - 150.0 / 160.0).abs() < 1e-9);
    assert_eq!(figure(0, "sensor_coverage"), 1.0);

    let table = compare(&[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "Node vm: 2 recording(s); wall / (RAPL + NVML) usually 1.50; 2 bin(s) flagged"
        ),
        "{text}"
    );

    let svg = tmp.path().join("compare.svg");
    let out = compare(&["--plot", s(&svg), "--plot-size", "900x360"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(crate::common::image_size(&svg), (900, 360));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("RAPL + NVML") && text.contains("wall (Omegawatt)"));
}
