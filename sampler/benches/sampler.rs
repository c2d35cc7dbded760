//! What the sampler costs: CPU time per sample (its thread's own CPU clock) and resident
//! memory, for 1, 64 and 1024 job processes and 0, 4 and 8 (stand-in) GPUs, in the two ways
//! it finds a job's usage: a cgroup (Slurm jobs) and a process tree (`aipm-analyze record`).
//! Also: drift at a 100 ms period, and the cost of spawning one process per sample, as
//! AIPowerMeter does with nvidia-smi.
//!
//! Run: `cargo bench -p aipm-sampler --bench sampler` (as root, for the cgroup), or
//! `bench/sampler.sh`. The last line is the default case: 1 s period in production, 64
//! processes, no GPU.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aipm_recording::layout::NodeName;
use aipm_recording::meta::Meta;
use aipm_recording::samples::{Samples, TIME_COLUMN};
use aipm_sampler::node::NodeStats;
use aipm_sampler::sampler::{GpuPlan, Log, Sampler, SamplerSetup};
use aipm_sampler::sources::powercap::PowercapSource;
use aipm_sampler::sources::{EnergySource, Found};
use aipm_sampler::spool::{ElectionLock, JobFiles};
use aipm_sampler::usage::{JobUsage, ProcessTree};

const BENCH_JOB: u32 = 999_999;
const CGROUP_V1: &str = "/sys/fs/cgroup";

struct Result {
    cpu_us_per_sample: f64,
    rss_kib: u64,
    samples: u64,
}

fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn powercap(root: &Path) -> Vec<Box<dyn EnergySource>> {
    for (id, name) in [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:0", "dram"),
        ("intel-rapl:1", "package-1"),
    ] {
        let dir = root.join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("energy_uj"), "123456789\n").unwrap();
        fs::write(dir.join("max_energy_range_uj"), "262143328850\n").unwrap();
    }
    match PowercapSource::open(root, &mut Vec::new()) {
        Found::Present(s) => vec![Box::new(s)],
        Found::Absent(why) => panic!("{why}"),
    }
}

fn standin(dir: &Path, gpus: usize) -> PathBuf {
    let devices: Vec<_> = (0..gpus)
        .map(|i| {
            serde_json::json!({ "uuid": format!("GPU-{i:04}"), "name": "Bench", "power_w": 300.0,
                "energy_start_mj": 0, "start_unix_ms": 1_700_000_000_000u64, "util_gpu": 50,
                "util_mem": 5, "mem_total": 1u64 << 35, "mem_used": 1u64 << 33, "mem_reserved": 0 })
        })
        .collect();
    aipm_nvml_standin::install::install(dir, &serde_json::json!({ "devices": devices }))
}

/// A job of `n` sleeping processes, in a cgroup v1 job cgroup when `cgroup` is true.
struct Job {
    children: Vec<Child>,
    cgroup_dirs: Vec<PathBuf>,
}

impl Job {
    fn start(n: usize, cgroup: bool) -> Job {
        let dirs: Vec<PathBuf> = if cgroup {
            ["cpuacct", "memory"]
                .iter()
                .map(|c| {
                    Path::new(CGROUP_V1)
                        .join(c)
                        .join(format!("aipm-bench/job_{BENCH_JOB}"))
                })
                .collect()
        } else {
            Vec::new()
        };
        for dir in &dirs {
            fs::create_dir_all(dir).unwrap();
        }
        // One parent shell so that the tree hangs under one pid, like a job's task.
        let leader = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for i in $(seq {}); do sleep 1000 & done; exec sleep 1000",
                n.saturating_sub(1)
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + n as u64));
        let job = Job {
            children: vec![leader],
            cgroup_dirs: dirs,
        };
        for dir in &job.cgroup_dirs {
            for pid in job.pids() {
                if let Err(e) = fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                    eprintln!("moving {pid} into {}: {e}", dir.display());
                }
            }
        }
        job
    }

    fn leader(&self) -> u32 {
        self.children[0].id()
    }

    fn pids(&self) -> Vec<u32> {
        let leader = self.leader();
        let mut pids = vec![leader];
        let children = fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
            .unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        pids
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
        for dir in &self.cgroup_dirs {
            let _ = fs::remove_dir(dir);
            let _ = fs::remove_dir(dir.parent().unwrap());
        }
    }
}

fn meta(period: Duration) -> Meta {
    Meta {
        job_id: BENCH_JOB,
        user: "root".into(),
        node: "bench".into(),
        period_ms: period.as_millis() as u64,
        ..Meta::default()
    }
}

fn run(
    processes: usize,
    gpus: usize,
    cgroup: bool,
    period: Duration,
    duration: Duration,
) -> (Result, Samples) {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let job = Job::start(processes, cgroup);
    let usage = if cgroup {
        JobUsage::discover(
            Path::new("/proc"),
            Path::new(CGROUP_V1),
            job.leader(),
            BENCH_JOB,
        )
        .unwrap()
    } else {
        JobUsage::ProcessTree(ProcessTree::new(Path::new("/proc"), job.leader(), None))
    };
    let log: Log = Arc::new(|_, msg: &str| eprintln!("sampler: {msg}"));
    let node = NodeName::new("bench").unwrap();
    let setup = SamplerSetup {
        period,
        files: JobFiles::open(&spool, BENCH_JOB, &node, 0, 0).unwrap(),
        lock: ElectionLock::open(&tmp.path().join("locks"), BENCH_JOB).unwrap(),
        sources: powercap(&tmp.path().join("powercap")),
        usage: Some(usage),
        node: NodeStats::open(Path::new("/proc")).ok(),
        gpus: (gpus > 0).then(|| GpuPlan {
            lib: Some(standin(tmp.path(), gpus)),
            selectors: None,
        }),
        meta: meta(period),
        log,
    };
    let rss_before = rss_kib();
    let sampler = Sampler::start(setup).unwrap();
    std::thread::sleep(duration);
    let rss_during = rss_kib();
    sampler.stop();
    let dir = spool.join(BENCH_JOB.to_string());
    let meta = Meta::from_json(&fs::read_to_string(dir.join("bench.meta.json")).unwrap()).unwrap();
    let samples = Samples::read(&dir.join("bench.samples.csv")).unwrap();
    drop(job);
    let s = meta.sampler;
    (
        Result {
            cpu_us_per_sample: s.busy_us as f64 / s.samples.max(1) as f64,
            rss_kib: rss_during.max(rss_before),
            samples: s.samples,
        },
        samples,
    )
}

/// CPU time of spawning and waiting for one short process per sample (the shape of
/// AIPowerMeter's nvidia-smi calls; nvidia-smi itself needs a driver, so `true` stands in:
/// a lower bound).
fn spawn_per_sample(program: &str, n: u32) -> f64 {
    let before = cpu_us_self_and_children();
    for _ in 0..n {
        Command::new(program)
            .stdout(Stdio::null())
            .status()
            .unwrap();
    }
    (cpu_us_self_and_children() - before) as f64 / f64::from(n)
}

fn cpu_us_self_and_children() -> u64 {
    let text = fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<u64> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect();
    let ticks: u64 = fields.iter().sum();
    ticks * 1_000_000 / rustix::param::clock_ticks_per_second()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cgroup =
        Path::new(CGROUP_V1).join("cpuacct").is_dir() && rustix::process::geteuid().is_root();
    let period = Duration::from_millis(20);
    let duration = Duration::from_secs(2);
    println!(
        "aipm sampler cost, {} ms period for {} s per case",
        period.as_millis(),
        duration.as_secs()
    );
    println!(
        "{:>14} {:>9} {:>5} {:>8} {:>18} {:>8}",
        "usage from", "processes", "GPUs", "samples", "cpu µs per sample", "rss KiB"
    );
    // AIPM_BENCH_QUICK=1: only the default case (and the comparison lines).
    let quick = std::env::var_os("AIPM_BENCH_QUICK").is_some();
    let modes: &[bool] = match (cgroup, quick) {
        (true, false) => &[true, false],
        (true, true) => &[true],
        (false, _) => &[false],
    };
    let mut default_case = None;
    for &mode in modes {
        let process_counts: &[usize] = if quick { &[64] } else { &[1, 64, 1024] };
        let gpu_counts: &[usize] = if quick { &[0] } else { &[0, 4, 8] };
        for &processes in process_counts {
            for &gpus in gpu_counts {
                let (r, _) = run(processes, gpus, mode, period, duration);
                let name = if mode { "cgroup v1" } else { "process tree" };
                println!(
                    "{name:>14} {processes:>9} {gpus:>5} {:>8} {:>18.1} {:>8}",
                    r.samples, r.cpu_us_per_sample, r.rss_kib
                );
                if mode == cgroup && processes == 64 && gpus == 0 {
                    default_case = Some(r);
                }
            }
        }
    }

    // 100 ms periods sustained: the samples stay on their grid.
    let (r, samples) = run(
        64,
        0,
        cgroup,
        Duration::from_millis(100),
        Duration::from_secs(10),
    );
    let t: Vec<u64> = samples.values(TIME_COLUMN).collect();
    let grid_ms = 100 * (t.len() as u64 - 2);
    let drift_ms = (t[t.len() - 2] - t[0]) as i64 - grid_ms as i64;
    println!(
        "100 ms period for 10 s: {} samples, drift {drift_ms} ms over the run, {:.1} cpu µs per sample",
        r.samples, r.cpu_us_per_sample
    );

    let spawn_us = spawn_per_sample("true", 200);
    println!(
        "one process spawned per sample (AIPowerMeter's nvidia-smi pattern; nvidia-smi needs a driver, \
         /bin/true stands in, a lower bound): {spawn_us:.0} cpu µs per sample"
    );
    let r = default_case.expect("default case measured");
    println!(
        "sampler: cpu_us_per_sample={:.0} rss_kib={}",
        r.cpu_us_per_sample, r.rss_kib
    );
}
