//! `aipm-analyze job --wall-map --wall-archives|--wall-cache`: a job's recording joined with the wall
//! meter's archive of its node, to the millisecond of the job's window.

use aipm_recording::meta::Meta;
use aipm_recording::samples::SampleRow;

use crate::common::{aipm, generate_archive, json, package_sample, s, write_recording};

#[test]
fn the_wall_energy_over_the_jobs_window_and_what_rapl_did_not_see() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, archives) = (tmp.path().join("spool"), tmp.path().join("omegawatt"));
    // Job 77 on node vm: 60 samples a second apart from 2023-11-16 07:00:00.250 UTC, the
    // package at 40 W.
    let start_ms = 1_700_118_000_250u64;
    let meta = Meta {
        job_id: 77,
        node: "vm".into(),
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + 59_000),
        ..Meta::default()
    };
    // The job keeps one CPU busy on a node whose CPUs are busy for two, beside another job:
    // half of the package is the job's.
    let rows = (0..60u64).map(|k| SampleRow {
        job_cpu_ns: Some(k * 1_000_000_000),
        node_cpu_busy_ns: Some(k * 2_000_000_000),
        node_jobs: Some(2),
        ..package_sample(start_ms + k * 1000, k * 40_000_000)
    });
    write_recording(&spool, &meta, &["rapl:package-0"], &[], rows);
    // The node's two PSUs on plugs 1 and 2 at 100 W and 50 W, in the day's archive.
    std::fs::create_dir_all(&archives).unwrap();
    let zip = archives.join("11_17_2023_USB0.zip");
    generate_archive(
        &zip,
        6,
        100,
        120,
        1_700_118_000,
        &["--power", "1=100", "--power", "2=50"],
    );
    let map = tmp.path().join("channels.toml");
    std::fs::write(&map, "[nodes.vm]\nport = \"USB0\"\nchannels = [1, 2]\n").unwrap();

    let job = |extra: &[&str]| {
        let mut args = vec![
            "job",
            "77",
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
    let report = json(&job(&[
        "--format",
        "json",
        "--intensity",
        "100",
        "--pue",
        "2",
    ]));
    let wall = &report[0]["wall"];
    let energy = wall["energy_j"].as_f64().unwrap();
    assert!(
        (energy - 150.0 * 59.0).abs() < 0.001 * 150.0 * 59.0,
        "{energy} J"
    );
    assert_eq!(wall["window_s"], 59.0);
    assert!((wall["covered_s"].as_f64().unwrap() - 59.0).abs() < 1e-9);
    assert!((wall["unseen_j"].as_f64().unwrap() - (energy - 40.0 * 59.0)).abs() < 1e-6);
    let notes: Vec<&str> = report[0]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("RAPL + NVML saw 27% of the wall energy")),
        "{notes:?}"
    );
    // Emissions: the job's energy in kWh × PUE × intensity.
    let job_j: f64 = ["job_cpu_j", "job_dram_j", "job_gpu_j"]
        .iter()
        .map(|k| report[0][k].as_f64().unwrap())
        .sum();
    assert!(
        (job_j - 20.0 * 59.0).abs() < 1e-6,
        "half of 40 W for 59 s: {job_j} J"
    );
    let grams = report[0]["emissions_g_co2e"].as_f64().unwrap();
    assert!(
        (grams - job_j / 3.6e6 * 2.0 * 100.0).abs() < 1e-12,
        "{grams} g for {job_j} J"
    );

    // From the per-second cache alone (`omegawatt index`), the same figures.
    let cache = tmp.path().join("cache");
    let indexed = aipm(&[
        "omegawatt",
        "index",
        "--archives",
        s(&archives),
        "--cache",
        s(&cache),
    ]);
    assert!(indexed.status.success());
    let from_cache = json(&aipm(&[
        "job",
        "77",
        "--spool",
        s(&spool),
        "--wall-map",
        s(&map),
        "--wall-cache",
        s(&cache),
        "--format",
        "json",
    ]));
    assert_eq!(from_cache[0]["wall"], report[0]["wall"]);

    // The table in Wh (the default) or J; and the plot: the package's power and the wall's,
    // one panel, at the size asked for.
    let table = |units: &str| {
        let out = job(&["--units", units]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (wh, j) = (table("wh"), table("j"));
    assert!(wh.contains("Job energy    0.328 Wh"), "{wh}");
    assert!(
        wh.contains("Attribution   shared (CPU energy by the job's share of busy CPU time (50%), DRAM by its share of used memory)"),
        "{wh}"
    );
    assert!(j.contains("Job energy    1180.0 J"), "{j}");
    assert!(j.contains("40.00 W") && j.contains("node peak"), "{j}");
    for name in ["job.png", "job.svg"] {
        let image = tmp.path().join(name);
        let out = job(&["--plot", s(&image), "--plot-size", "1000x400"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(crate::common::image_size(&image), (1000, 400), "{name}");
    }
    let svg = std::fs::read_to_string(tmp.path().join("job.svg")).unwrap();
    for text in [
        "Job 77 of",
        "job 77 on vm (shared",
        "CPU packages (node)",
        "wall (Omegawatt)",
        "power (W)",
    ] {
        assert!(svg.contains(text), "{text} missing from the plot");
    }
    let out = job(&["--plot", s(&tmp.path().join("job.gif"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("job.gif: a plot is written as .png or .svg")
    );

    // Without the archive, the report says the wall meter has no data for the window.
    std::fs::remove_file(&zip).unwrap();
    let out = job(&[]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("wall archive missing:") && shown.contains("11_17_2023_USB0.zip"),
        "{shown}"
    );
    assert!(
        shown.contains("the wall meter has data for 0 s of the 59 s window"),
        "{shown}"
    );
}
