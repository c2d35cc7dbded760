//! Helpers for the end-to-end tests: a real single-node Slurm started once per test run
//! (`tests/slurm/cluster.sh`), job submission, and `aipm-analyze` runs.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use aipm_recording::meta::Meta;

/// The unprivileged user the tests submit jobs as (created by cluster.sh).
pub const TEST_USER: &str = "aipmtest";
/// Constant powers of the simulated RAPL node (cluster.sh's default).
pub const SIM_PACKAGE_W: f64 = 40.0;
pub const SIM_DRAM_W: f64 = 6.0;
/// The first simulated GPU (cluster.sh's stand-in NVML state) and its constant power.
pub const SIM_GPU0_UUID: &str = "GPU-5a1e0000-0000-0000-0000-000000000000";
pub const SIM_GPU0_W: f64 = 300.0;

pub struct Cluster {
    pub bin_dir: PathBuf,
    pub spool: PathBuf,
    pub slurm_dir: PathBuf,
    pub plugstack_line: String,
    /// Slurm's names of the nodes.
    pub nodes: Vec<String>,
}

/// Tests that change the cluster's configuration take this for writing; all others for
/// reading, so they never see a configuration they did not expect.
static CONFIG_LOCK: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    CONFIG_LOCK.read().unwrap_or_else(|p| p.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CONFIG_LOCK.write().unwrap_or_else(|p| p.into_inner())
}

const PLUGSTACK: &str = "/etc/slurm/plugstack.conf.d/aipm.conf";

/// The single-node cluster, started on first use with the plugin and `aipm-analyze` of
/// this build.
pub fn cluster() -> &'static Cluster {
    cluster_of(1)
}

/// The cluster of `nodes` nodes (`n1`..`nN` when more than one: several slurmd on this
/// host), started on first use. A test binary uses one size: its tests share the cluster.
pub fn cluster_of(nodes: usize) -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/debug/deps/e2e-HASH -> target/debug
        let bin_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/cluster.sh");
        let spool = PathBuf::from("/var/spool/aipm-test");
        let slurm_dir = PathBuf::from("/var/tmp/aipm-slurm");
        let out = Command::new(&script)
            .args(["start", "--nodes", &nodes.to_string()])
            .env("AIPM_PLUGIN", bin_dir.join("libaipm_spank.so"))
            .env("AIPM_ANALYZE", bin_dir.join("aipm-analyze"))
            .env("AIPM_SPOOL", &spool)
            .env("AIPM_SLURM_DIR", &slurm_dir)
            .output()
            .expect("running cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let plugstack_line = std::fs::read_to_string(PLUGSTACK)
            .expect("plugstack written")
            .trim()
            .to_string();
        let nodes = if nodes == 1 {
            vec![node_name()]
        } else {
            (1..=nodes).map(|k| format!("n{k}")).collect()
        };
        Cluster {
            bin_dir,
            spool,
            slurm_dir,
            plugstack_line,
            nodes,
        }
    });
    assert_eq!(
        cluster.nodes.len(),
        nodes,
        "one test binary, one size of cluster"
    );
    cluster
}

impl Cluster {
    pub fn slurmd_log(&self) -> String {
        std::fs::read_to_string(self.slurm_dir.join("log/slurmd.log")).unwrap_or_default()
    }

    /// The log of node `node`'s slurmd on a cluster of several nodes.
    pub fn node_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.slurm_dir.join(format!("log/slurmd-{node}.log")))
            .unwrap_or_default()
    }

    /// Run with extra plugstack arguments (hold [`exclusive`]); restored on drop.
    pub fn with_plugin_args(&self, extra: &str) -> PlugstackGuard<'_> {
        std::fs::write(PLUGSTACK, format!("{} {extra}\n", self.plugstack_line))
            .expect("writing plugstack");
        PlugstackGuard { cluster: self }
    }

    pub fn job_dir(&self, job_id: u32) -> PathBuf {
        self.spool.join(job_id.to_string())
    }

    /// `aipm-analyze ARGS` against the test spool.
    pub fn analyze(&self, args: &[&str]) -> Output {
        self.analyze_with_env(args, &[])
    }

    /// `aipm-analyze ARGS` against the test spool, with more environment (`TZ`).
    pub fn analyze_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(self.bin_dir.join("aipm-analyze"))
            .args(args)
            .env("AIPM_SPOOL", &self.spool)
            .envs(env.iter().copied())
            .output()
            .expect("running aipm-analyze")
    }
}

pub struct PlugstackGuard<'a> {
    cluster: &'a Cluster,
}

impl Drop for PlugstackGuard<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(PLUGSTACK, format!("{}\n", self.cluster.plugstack_line));
    }
}

/// Submit a batch script, as `user` when given; returns the job id or sbatch's stderr.
pub fn sbatch(user: Option<&str>, args: &[&str], script: &str) -> Result<u32, String> {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "sbatch"]);
            c
        }
        None => Command::new("sbatch"),
    };
    let out = cmd
        .current_dir("/tmp")
        .args(["--parsable", "-o", "/dev/null", "-e", "/dev/null"])
        .args(args)
        .arg("--wrap")
        .arg(script)
        .output()
        .expect("running sbatch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    stdout
        .trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("sbatch printed {stdout:?}"))
}

/// Slurm's state of a job (`COMPLETED`, `RUNNING`, ...), from `scontrol`.
pub fn job_state(job_id: u32) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job_id.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|field| field.strip_prefix("JobState="))
        .map(str::to_string)
}

/// Wait until the job has ended; returns its final state.
pub fn wait_job(job_id: u32, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let state = job_state(job_id).unwrap_or_default();
        if !matches!(
            state.as_str(),
            "" | "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED"
        ) {
            return state;
        }
        assert!(
            start.elapsed() < timeout,
            "job {job_id} still {state} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until Slurm says the job runs.
pub fn wait_running(job_id: u32, timeout: Duration) {
    let start = Instant::now();
    while job_state(job_id).as_deref() != Some("RUNNING") {
        assert!(
            start.elapsed() < timeout,
            "job {job_id} not running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metadata of a job on this node once its sampler has finished (end time written).
pub fn finished_meta(cluster: &Cluster, job_id: u32, timeout: Duration) -> Meta {
    let path = cluster
        .job_dir(job_id)
        .join(format!("{}.meta.json", node_name()));
    let start = Instant::now();
    loop {
        if let Some(meta) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Meta::from_json(&t).ok())
        {
            if meta.end_unix_ms.is_some() {
                return meta;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{} has no end time after {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// This node's Slurm name (`hostname -s`, as cluster.sh configures it).
pub fn node_name() -> String {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Processes whose command line mentions this job's step daemons.
pub fn stepd_processes(job_id: u32) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", &format!(r"slurmstepd: \[{job_id}\.")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

/// The primary group id of `user` (`id -g`).
pub fn gid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-g", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("gid")
}

/// Wall-meter archives of 6 plugs at constant powers (`"1=200"`: plug 1 at 200 W) over
/// `[from, to)`, named after the day (UTC, closed at 07:00) each belongs to; split at 07:00
/// where the span crosses it.
pub fn wall_archives(cluster: &Cluster, dir: &Path, from: i64, to: i64, powers: &[&str]) {
    use chrono::{Duration as Days, TimeZone, Utc};
    let archive_date =
        |t: i64| (Utc.timestamp_opt(t, 0).unwrap() - Days::hours(7)).date_naive() + Days::days(1);
    let boundary = |t: i64| {
        archive_date(t)
            .and_hms_opt(7, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let mut start = from;
    while start < to {
        let end = boundary(start).min(to);
        let name = archive_date(start).format("%m_%d_%Y_USB0.zip").to_string();
        let (first, seconds, zip) = (
            start.to_string(),
            (end - start).to_string(),
            dir.join(name).to_string_lossy().into_owned(),
        );
        let mut args = vec![
            "omegawatt",
            "generate",
            "--plugs",
            "6",
            "--rate",
            "20",
            "--start",
            &first,
            "--seconds",
            &seconds,
            "--zip",
            &zip,
        ];
        for power in powers {
            args.extend(["--power", power]);
        }
        let out = cluster.analyze(&args);
        assert!(out.status.success(), "{out:?}");
        start = end;
    }
}

/// One field of a job in Slurm's accounting (`sacct -X -n -P -j JOB -o FIELD`).
pub fn sacct_field(job: u32, field: &str) -> String {
    let out = Command::new("sacct")
        .args(["-X", "-n", "-P", "-j", &job.to_string(), "-o", field])
        .output()
        .expect("sacct");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
