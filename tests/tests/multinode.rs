//! End-to-end on a cluster of three nodes (three slurmd on this host, `n1`..`n3`, each with
//! its own simulated RAPL node and GPUs: node K's package draws (30+10K) W, its GPU 0
//! (200+100K) W), issue #8: each node of a job records under its Slurm name, with its own
//! energy, whatever the job's environment says.

use std::process::Command;
use std::time::{Duration, Instant};

use aipm_e2e::*;
use aipm_recording::meta::Meta;
use serde_json::Value;

const NODES: usize = 3;
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn package_w(node: &str) -> f64 {
    let k: f64 = node.trim_start_matches('n').parse().unwrap();
    30.0 + 10.0 * k
}

fn gpu0_w(node: &str) -> f64 {
    let k: f64 = node.trim_start_matches('n').parse().unwrap();
    200.0 + 100.0 * k
}

/// The finished metadata of each node's recording of a job, keyed by the file's node.
fn node_metas(cluster: &Cluster, job: u32, nodes: &[&str]) -> Vec<Meta> {
    nodes
        .iter()
        .map(|node| {
            let path = cluster.job_dir(job).join(format!("{node}.meta.json"));
            let start = Instant::now();
            loop {
                if let Some(meta) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| Meta::from_json(&t).ok())
                    .filter(|m| m.end_unix_ms.is_some())
                {
                    return meta;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{} is missing or unfinished",
                    path.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .collect()
}

/// The nodes Slurm ran the job on, from `scontrol show hostnames` of its `NodeList`.
fn slurm_nodes(job: u32) -> Vec<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let list = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("NodeList="))
        .unwrap()
        .to_string();
    let out = Command::new("scontrol")
        .args(["show", "hostnames", &list])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn report_json(cluster: &Cluster, job: &str) -> Vec<Value> {
    let out = cluster.analyze(&["job", job, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn channel_mean_w(node_report: &Value, channel: &str) -> f64 {
    node_report["energy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} in {node_report}"))["node_mean_power_w"]
        .as_f64()
        .unwrap()
}

#[test]
fn a_three_node_job_is_recorded_once_per_node_under_each_nodes_slurm_name() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    // The job's environment names another node: the plugin must not believe it.
    let job = sbatch(
        Some(TEST_USER),
        &[
            "-N3",
            "--gres=gpu:1",
            "--energy-profile=250ms",
            "--export=ALL,SLURMD_NODENAME=n9",
        ],
        "srun -N3 sh -c 'timeout 2 sh -c \"while :; do :; done\"; exit 0'",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let nodes = slurm_nodes(job);
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let metas = node_metas(cluster, job, &names);
    let mut files: Vec<String> = std::fs::read_dir(cluster.job_dir(job))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".meta.json"))
        .collect();
    files.sort();
    assert_eq!(files, ["n1.meta.json", "n2.meta.json", "n3.meta.json"]);
    for (meta, node) in metas.iter().zip(&names) {
        assert_eq!(meta.node, *node);
        // The batch script runs on the job's first node; the srun step on all three.
        let steps: &[&str] = if *node == "n1" {
            &["batch", "0"]
        } else {
            &["0"]
        };
        assert_eq!(meta.steps, steps, "{node}");
    }

    // Each node's energy is its own: node K's simulated package and GPU 0.
    let report = report_json(cluster, &job.to_string());
    assert_eq!(report.len(), NODES);
    let mut job_j = 0.0;
    for node_report in &report {
        let node = node_report["node"].as_str().unwrap();
        let package = channel_mean_w(node_report, "rapl:package-0");
        assert!(
            (package - package_w(node)).abs() < 0.05 * package_w(node),
            "{node}: package {package} W"
        );
        let k = node.trim_start_matches('n');
        let gpu = channel_mean_w(
            node_report,
            &format!("nvml:GPU-5a1e0000-0000-0000-0000-00000000000{k}"),
        );
        assert!(
            (gpu - gpu0_w(node)).abs() < 0.05 * gpu0_w(node),
            "{node}: GPU {gpu} W"
        );
        job_j += ["job_cpu_j", "job_dram_j", "job_gpu_j"]
            .iter()
            .map(|f| node_report[f].as_f64().unwrap())
            .sum::<f64>();
    }
    // The job's total, as the table says it, is the sum of its nodes'.
    let table = cluster.analyze(&["job", &job.to_string()]);
    let text = String::from_utf8_lossy(&table.stdout);
    let total_wh: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Total over 3 nodes: job energy "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no total line in {text}"))
        .parse()
        .unwrap();
    assert!(
        (total_wh - job_j / 3600.0).abs() < 0.0011,
        "total {total_wh} Wh, nodes sum to {} Wh",
        job_j / 3600.0
    );
}

/// Plants an older recording of `job` on node `node` in `spool`, as the test user's.
fn plant_older_recording(spool: &std::path::Path, job: u32, node: &str, start_ms: u64) {
    let dir = spool.join(job.to_string());
    let older = Meta {
        job_id: job,
        node: node.into(),
        user: TEST_USER.into(),
        start_unix_ms: start_ms,
        end_unix_ms: Some(start_ms + 60_000),
        ..Default::default()
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{node}.meta.json")), older.to_json()).unwrap();
    std::fs::write(
        dir.join(format!("{node}.samples.csv")),
        "time_unix_ms\n1600000000000\n",
    )
    .unwrap();
    std::fs::write(dir.join(format!("{node}.steps")), "batch\n").unwrap();
    let uid = uid_of(TEST_USER);
    for entry in std::iter::once(dir.clone())
        .chain(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()))
    {
        std::os::unix::fs::chown(&entry, Some(uid), Some(uid)).unwrap();
    }
}

fn set_aside(dir: &std::path::Path) -> Vec<String> {
    let mut aside: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".previous-"))
        .collect();
    aside.sort();
    aside
}

#[test]
fn a_reused_id_moves_aside_only_that_nodes_older_recording_on_the_node_and_in_the_store() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-N3", "--hold", "--energy-profile=200ms"],
        "srun -N3 true",
    )
    .unwrap();
    // An older recording with this id, of n2 only: in n2's own spool, where n2's prolog
    // finds it, and published in the store, where n2's epilog finds it.
    let older_ms = 1_600_000_000_000u64;
    let local = cluster.slurm_dir.join("spool-n2");
    plant_older_recording(&local, job, "n2", older_ms);
    plant_older_recording(&cluster.spool, job, "n2", older_ms);
    let released = Command::new("scontrol")
        .args(["release", &job.to_string()])
        .status()
        .unwrap();
    assert!(released.success());
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let metas = node_metas(cluster, job, &["n1", "n2", "n3"]);
    assert!(metas.iter().all(|m| m.start_unix_ms > older_ms));
    let expected = [
        format!("n2.meta.json.previous-{older_ms}"),
        format!("n2.samples.csv.previous-{older_ms}"),
        format!("n2.steps.previous-{older_ms}"),
    ];
    assert_eq!(set_aside(&local.join(job.to_string())), expected);
    assert_eq!(set_aside(&cluster.job_dir(job)), expected);
    let log = cluster.node_log("n2");
    assert!(
        log.contains(&format!(
            "job {job}: an older recording with this id was found"
        )),
        "n2's prolog logged the move"
    );
    assert!(
        log.contains("an older one with this id moved aside"),
        "n2's epilog logged the move in the store"
    );
}

#[test]
fn each_component_of_a_heterogeneous_job_is_recorded_under_its_own_id() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-n1", "--energy-profile", ":", "-n1"],
        "srun --het-group=0,1 true",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    assert_eq!(wait_job(job + 1, JOB_TIMEOUT), "COMPLETED");
    for (component, steps) in [(job, &["batch", "0"][..]), (job + 1, &["0"][..])] {
        let nodes = slurm_nodes(component);
        let metas = node_metas(cluster, component, &[nodes[0].as_str()]);
        assert_eq!(metas[0].steps, steps, "component {component}");
        assert_eq!(metas[0].job_id, component);
    }
}

#[test]
fn a_two_node_array_task_is_recorded_on_both_its_nodes() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let array = sbatch(
        Some(TEST_USER),
        &["-N2", "--array=1-2", "--energy-profile"],
        "srun -N2 true",
    )
    .unwrap();
    let start = Instant::now();
    for task in 1..=2 {
        let name = format!("{array}_{task}");
        let report = loop {
            let out = cluster.analyze(&["job", &name, "--format", "json"]);
            let nodes = serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default();
            if nodes.len() == 2 && nodes.iter().all(|n| !n["end_utc"].is_null()) {
                break nodes;
            }
            assert!(
                start.elapsed() < JOB_TIMEOUT,
                "{name} not recorded on 2 nodes"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        for node in &report {
            assert_eq!(node["job"], name.as_str());
        }
        let job: u32 = report[0]["job_id"].as_u64().unwrap() as u32;
        let mut recorded: Vec<&str> = report.iter().map(|n| n["node"].as_str().unwrap()).collect();
        recorded.sort();
        assert_eq!(recorded, slurm_nodes(job), "task {task}");
    }
}

#[test]
fn each_node_publishes_its_own_part_and_only_that_to_the_store() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-N3", "--energy-profile=200ms"],
        "srun -N3 true",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    node_metas(cluster, job, &["n1", "n2", "n3"]);
    for node in ["n1", "n2", "n3"] {
        // The node-local spool holds that node's files alone; the store holds all three.
        let local = cluster.slurm_dir.join(format!("spool-{node}/{job}"));
        let mut names: Vec<String> = std::fs::read_dir(&local)
            .unwrap_or_else(|e| panic!("{}: {e}", local.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("{node}.meta.json"),
                format!("{node}.samples.csv"),
                format!("{node}.steps")
            ]
        );
        for name in &names {
            assert_eq!(
                std::fs::read(local.join(name)).unwrap(),
                std::fs::read(cluster.job_dir(job).join(name)).unwrap(),
                "{node}: {name} differs in the store"
            );
        }
        assert!(
            cluster
                .node_log(node)
                .contains(&format!("job {job}: published this node's recording")),
            "{node}'s epilog logged the publication"
        );
    }
}

#[test]
fn the_controllers_epilog_as_slurmuser_stores_a_multi_node_jobs_energy_and_skips_others() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let config = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&config.stdout);
    assert!(
        config
            .lines()
            .any(|l| l.starts_with("SlurmUser") && l.contains("= slurm(")),
        "the controller does not run as slurm"
    );
    let recorded = sbatch(
        Some(TEST_USER),
        &["-N3", "--energy-profile=250ms"],
        "srun -N3 sleep 1",
    )
    .unwrap();
    let unrecorded = sbatch(Some(TEST_USER), &["-N2"], "srun -N2 true").unwrap();
    for job in [recorded, unrecorded] {
        assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    }
    let start = Instant::now();
    let comment = loop {
        let comment = sacct_field(recorded, "AdminComment");
        if comment.starts_with("aipm:v1") {
            break comment;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no AdminComment for job {recorded}: {comment:?}; epilog log:\n{}",
            std::fs::read_to_string(cluster.slurm_dir.join("log/epilog-slurmctld.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // The comment sums the three nodes, as the report does.
    let stored_wh: f64 = comment
        .split_whitespace()
        .find_map(|f| f.strip_prefix("energy_wh="))
        .unwrap()
        .parse()
        .unwrap();
    let report = report_json(cluster, &recorded.to_string());
    assert_eq!(report.len(), NODES, "{comment}");
    let total_wh: f64 = report
        .iter()
        .map(|n| {
            ["job_cpu_j", "job_dram_j", "job_gpu_j"]
                .iter()
                .map(|f| n[f].as_f64().unwrap())
                .sum::<f64>()
        })
        .sum::<f64>()
        / 3600.0;
    assert!(
        (stored_wh - total_wh).abs() < 0.0011,
        "AdminComment {comment:?}, report {total_wh} Wh"
    );
    // The unrecorded job cost the epilog nothing: no comment, not a line in its log.
    assert_eq!(sacct_field(unrecorded, "AdminComment"), "");
    let log = std::fs::read_to_string(cluster.slurm_dir.join("log/epilog-slurmctld.log"))
        .unwrap_or_default();
    assert!(
        !log.contains(&format!("job {unrecorded}")),
        "the epilog looked for job {unrecorded}: {log}"
    );
}

#[test]
fn the_wall_join_and_compare_tell_two_nodes_apart() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-N2", "--energy-profile=250ms"],
        "srun -N2 sleep 3",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let metas = node_metas(cluster, job, &["n1", "n2"]);
    let from = metas.iter().map(|m| m.start_unix_ms).min().unwrap() as i64 / 1000;
    let to = metas.iter().filter_map(|m| m.end_unix_ms).max().unwrap() as i64 / 1000 + 1;
    // One meter, two nodes: n1 on plugs 1 and 2 (300 W), n2 on plugs 3 and 4 (400 W).
    let tmp = tempfile::tempdir().unwrap();
    wall_archives(
        cluster,
        tmp.path(),
        from - 10,
        to + 10,
        &["1=200", "2=100", "3=150", "4=250"],
    );
    let map = tmp.path().join("channels.toml");
    std::fs::write(
        &map,
        "[nodes.n1]\nport = \"USB0\"\nchannels = [1, 2]\n[nodes.n2]\nport = \"USB0\"\nchannels = [3, 4]\n",
    )
    .unwrap();
    let wall = [
        "--wall-map",
        map.to_str().unwrap(),
        "--wall-archives",
        tmp.path().to_str().unwrap(),
    ];
    let out =
        cluster.analyze(&[&["job", &job.to_string(), "--format", "json"][..], &wall].concat());
    assert!(out.status.success(), "{out:?}");
    let report: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (node, watts) in [("n1", 300.0), ("n2", 400.0)] {
        let r = report.iter().find(|r| r["node"] == node).unwrap();
        let (energy, window) = (
            r["wall"]["energy_j"].as_f64().unwrap(),
            r["wall"]["window_s"].as_f64().unwrap(),
        );
        assert!(
            (energy - watts * window).abs() < 0.01 * watts * window,
            "{node}: {energy} J at the wall over {window} s"
        );
    }

    let out = cluster.analyze_with_env(
        &[
            &[
                "compare",
                "--nodes",
                "n1,n2",
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
            ][..],
            &["--every", &format!("{}s", to - from), "--format", "json"],
            &wall,
        ]
        .concat(),
        &[("TZ", "UTC")],
    );
    assert!(out.status.code() == Some(0), "{out:?}");
    let nodes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes.len(), 2);
    for node in &nodes {
        let name = node["node"].as_str().unwrap();
        let bin = &node["bins"][0];
        let cpu = bin["cpu_w"].as_f64().unwrap();
        assert!(
            (cpu - package_w(name)).abs() < 0.05 * package_w(name),
            "{name}: {bin}"
        );
        let wall_w = bin["wall_w"].as_f64().unwrap();
        let expected = if name == "n1" { 300.0 } else { 400.0 };
        assert!((wall_w - expected).abs() < 1.0, "{name}: {bin}");
    }
}

#[test]
fn a_node_shared_with_another_job_is_attributed_as_shared_there_only() {
    // The two jobs must be alone on their nodes.
    let _g = exclusive();
    let cluster = cluster_of(NODES);
    let burn = "sh -c 'timeout 3 sh -c \"while :; do :; done\"; exit 0'";
    let wide = sbatch(
        Some(TEST_USER),
        &["-H", "-N3", "--energy-profile=250ms"],
        &format!("srun -N3 {burn}"),
    )
    .unwrap();
    let narrow = sbatch(
        Some(TEST_USER),
        &["-H", "-N1", "-w", "n2", "--energy-profile=250ms"],
        burn,
    )
    .unwrap();
    let released = Command::new("scontrol")
        .args(["release", &format!("{wide},{narrow}")])
        .status()
        .unwrap();
    assert!(released.success());
    for job in [wide, narrow] {
        assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    }
    node_metas(cluster, wide, &["n1", "n2", "n3"]);
    node_metas(cluster, narrow, &["n2"]);
    let tags = |job: u32| -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = report_json(cluster, &job.to_string())
            .iter()
            .map(|n| {
                // Conservation within each node's report: the job's part plus the rest.
                let (job_j, rest) = (
                    ["job_cpu_j", "job_dram_j"]
                        .iter()
                        .map(|f| n[f].as_f64().unwrap())
                        .sum::<f64>(),
                    n["unattributed_j"].as_f64().unwrap(),
                );
                let node_j: f64 = n["energy"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["channel"].as_str().unwrap().starts_with("rapl:"))
                    .map(|e| e["node_energy_j"].as_f64().unwrap())
                    .sum();
                assert!(
                    (job_j + rest - node_j).abs() < 1e-3 * node_j.max(1.0),
                    "{n}"
                );
                (
                    n["node"].as_str().unwrap().to_string(),
                    n["attribution"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        tags.sort();
        tags
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        tags(wide),
        owned(&[("n1", "exclusive"), ("n2", "shared"), ("n3", "exclusive")])
    );
    assert_eq!(tags(narrow), owned(&[("n2", "shared")]));
}

/// Processes of a job's step daemons that hold a file of node `node`'s spool open.
fn stepds_of_node(cluster: &Cluster, job: u32, node: &str) -> Vec<u32> {
    let spool = cluster.slurm_dir.join(format!("spool-{node}/{job}"));
    let out = Command::new("pgrep")
        .args(["-f", &format!(r"slurmstepd: \[{job}\.")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| pid.trim().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| target.starts_with(&spool))
        })
        .collect()
}

#[test]
fn a_node_lost_in_the_middle_of_a_job_is_reported_unfinished_and_the_others_complete() {
    // Kills a node's slurmd: no other test may use the cluster meanwhile.
    let _g = exclusive();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-N3", "--energy-profile=250ms"],
        "srun -N3 sleep 60",
    )
    .unwrap();
    let local_samples = cluster
        .slurm_dir
        .join(format!("spool-n3/{job}/n3.samples.csv"));
    let start = Instant::now();
    while std::fs::read_to_string(&local_samples).map_or(0, |t| t.lines().count()) < 5 {
        assert!(start.elapsed() < JOB_TIMEOUT, "n3 never sampled job {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // n3 fails: its slurmd and the job's step daemon there die at once, as in a crash.
    let slurmd = std::fs::read_to_string(cluster.slurm_dir.join("slurmd-n3.pid")).unwrap();
    let mut victims = stepds_of_node(cluster, job, "n3");
    assert!(!victims.is_empty(), "no step daemon of job {job} on n3");
    victims.push(slurmd.trim().parse().unwrap());
    for pid in victims {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    // The node comes back; the job is cancelled by its user.
    assert!(Command::new("slurmd")
        .args(["-N", "n3"])
        .status()
        .unwrap()
        .success());
    let cancelled = Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap();
    assert!(cancelled.success());
    assert_eq!(wait_job(job, JOB_TIMEOUT), "CANCELLED");
    let complete = node_metas(cluster, job, &["n1", "n2"]);
    assert!(complete.iter().all(|m| m.end_unix_ms.is_some()));
    // n3's part reaches the store when its epilog runs on the returned node: unfinished.
    let n3 = cluster.job_dir(job).join("n3.meta.json");
    let start = Instant::now();
    while !n3.exists() {
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "n3's recording never published"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = report_json(cluster, &job.to_string());
    let n3 = report.iter().find(|n| n["node"] == "n3").unwrap();
    assert!(n3["end_utc"].is_null(), "{n3}");
    assert!(
        n3["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("has no end")),
        "{n3}"
    );
    for node in report.iter().filter(|n| n["node"] != "n3") {
        assert!(!node["end_utc"].is_null(), "{node}");
    }
    // A crashed node reboots: the lost step's tasks (orphaned when their step daemon was
    // killed) and its cgroups are gone, or they would count as another job on n3.
    let cgroups = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat /sys/fs/cgroup/*/slurm_n3/uid_*/job_{job}/*/tasks 2>/dev/null | sort -u | xargs -r kill -9; \
             sleep 0.5; find /sys/fs/cgroup/*/slurm_n3/uid_*/job_{job} -depth -type d -exec rmdir {{}} + 2>/dev/null; true"
        ))
        .status()
        .unwrap();
    assert!(cgroups.success());
    // The node is back for the tests that follow.
    let start = Instant::now();
    while !String::from_utf8_lossy(
        &Command::new("sinfo")
            .args(["-h", "-N", "-n", "n3", "-o", "%T"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .starts_with("idle")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "n3 did not come back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
