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

#[test]
fn the_prolog_of_each_node_moves_aside_only_that_nodes_older_recording() {
    let _g = shared();
    let cluster = cluster_of(NODES);
    let job = sbatch(
        Some(TEST_USER),
        &["-N3", "--hold", "--energy-profile=200ms"],
        "srun -N3 true",
    )
    .unwrap();
    // An older recording with this id, on n2 only.
    let dir = cluster.job_dir(job);
    let older_start_ms = 1_600_000_000_000u64;
    let older = Meta {
        job_id: job,
        node: "n2".into(),
        user: TEST_USER.into(),
        start_unix_ms: older_start_ms,
        end_unix_ms: Some(older_start_ms + 60_000),
        ..Default::default()
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("n2.meta.json"), older.to_json()).unwrap();
    std::fs::write(dir.join("n2.samples.csv"), "time_unix_ms\n1600000000000\n").unwrap();
    std::fs::write(dir.join("n2.steps"), "batch\n").unwrap();
    let uid = uid_of(TEST_USER);
    for entry in std::iter::once(dir.clone())
        .chain(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()))
    {
        std::os::unix::fs::chown(&entry, Some(uid), Some(uid)).unwrap();
    }
    let released = Command::new("scontrol")
        .args(["release", &job.to_string()])
        .status()
        .unwrap();
    assert!(released.success());
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    node_metas(cluster, job, &["n1", "n2", "n3"]);
    let mut aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".previous-"))
        .collect();
    aside.sort();
    assert_eq!(
        aside,
        [
            format!("n2.meta.json.previous-{older_start_ms}"),
            format!("n2.samples.csv.previous-{older_start_ms}"),
            format!("n2.steps.previous-{older_start_ms}"),
        ]
    );
    assert!(
        cluster.node_log("n2").contains(&format!(
            "job {job}: an older recording with this id was found"
        )),
        "n2's prolog logged the move"
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
