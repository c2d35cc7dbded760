//! A job over two nodes: a report per node, their total, and the wall meter on both.

use aipm_recording::meta::Meta;

use crate::common::{aipm, generate_archive, json, package_sample, s, write_recording};

const T: u64 = 1_700_118_000; // 2023-11-16 07:00 UTC: in the archive of 11_17_2023.

/// Job 9's recording on `node`: 61 samples a second apart, the package at `watts`, alone.
fn node_recording(spool: &std::path::Path, node: &str, watts: u64) {
    let meta = Meta {
        job_id: 9,
        user: "alice".into(),
        node: node.into(),
        period_ms: 1000,
        start_unix_ms: T * 1000,
        end_unix_ms: Some((T + 60) * 1000),
        ..Meta::default()
    };
    let rows = (0..=60u64).map(|k| package_sample((T + k) * 1000, k * watts * 1_000_000));
    write_recording(spool, &meta, &["rapl:package-0"], &[], rows);
}

#[test]
fn a_two_node_job_has_a_report_per_node_and_a_total() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, archives) = (tmp.path().join("spool"), tmp.path().join("wall"));
    node_recording(&spool, "n1", 100);
    node_recording(&spool, "n2", 50);
    std::fs::create_dir_all(&archives).unwrap();
    let powers = [
        "--power", "1=80", "--power", "2=70", "--power", "3=40", "--power", "4=45",
    ];
    generate_archive(
        &archives.join("11_17_2023_USB0.zip"),
        6,
        10,
        120,
        T,
        &powers,
    );
    let map = tmp.path().join("channels.toml");
    std::fs::write(
        &map,
        "[nodes.n1]\nport = \"USB0\"\nchannels = [1, 2]\n\n[nodes.n2]\nport = \"USB0\"\nchannels = [3, 4]\n",
    )
    .unwrap();
    let job = |extra: &[&str]| {
        let mut args = vec![
            "job",
            "9",
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
    let report = json(&job(&["--format", "json"]));
    let nodes = report.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let figure = |i: usize, key: &str| nodes[i][key].as_f64().unwrap();
    assert_eq!(nodes[0]["node"], "n1");
    assert!((figure(0, "job_cpu_j") - 6000.0).abs() < 1e-6);
    assert!((figure(1, "job_cpu_j") - 3000.0).abs() < 1e-6);
    assert!((nodes[1]["wall"]["energy_j"].as_f64().unwrap() - 85.0 * 60.0).abs() < 0.001 * 5100.0);
    assert_eq!(figure(0, "sample_coverage"), 1.0);

    let table = String::from_utf8(job(&[]).stdout).unwrap();
    assert!(table.starts_with("Job 9, user alice, 2 node(s)"), "{table}");
    assert!(
        table.contains(
            "Total over 2 nodes: job energy 2.500 Wh (CPU 2.500 Wh + DRAM 0.000 Wh + GPU 0.000 Wh)"
        ),
        "{table}"
    );
    // 150 W + 85 W at the wall for 60 s: 3.917 Wh.
    assert!(
        table.contains("Wall          3.917 Wh on 2 of 2 nodes"),
        "{table}"
    );
    assert!(table.contains("covering 100% of the window"), "{table}");
}
