//! The one way to set a sampler up: the SPANK plugin (a Slurm step) and `aipm-analyze
//! record` (a command) differ only in who the job is and where its files go, so the sources,
//! the node's statistics and the metadata are opened and filled in here for both.

use std::path::PathBuf;
use std::time::Duration;

use aipm_recording::meta::Meta;

use crate::node::NodeStats;
use crate::sampler::{GpuPlan, Log, SamplerSetup};
use crate::sources::{self, Opened, PERF_POWER_PMU};
use crate::spool::{ElectionLock, JobFiles};
use crate::usage::JobUsage;

/// Where this node's sources and statistics are read: the real system's by default, a
/// simulated tree in tests and `aipm-analyze simulate`.
#[derive(Debug, Clone)]
pub struct Roots {
    pub powercap: PathBuf,
    pub perf_pmu: PathBuf,
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            powercap: "/sys/class/powercap".into(),
            perf_pmu: PERF_POWER_PMU.into(),
            proc: "/proc".into(),
        }
    }
}

/// What the caller knows of the job; the rest is found on the node.
pub struct Job {
    pub period: Duration,
    pub files: JobFiles,
    pub lock: ElectionLock,
    pub roots: Roots,
    pub gpus: GpuPlan,
    /// Known now (`aipm-analyze record`), or found once the task is forked (the plugin).
    pub usage: Option<JobUsage>,
    /// Who and what the job is; the period and the sources are filled in here.
    pub meta: Meta,
    pub log: Log,
}

/// A sampler ready to start, and what went wrong opening it (each line naming its source),
/// for the caller to log where its admin or user will see it.
pub struct Prepared {
    pub setup: SamplerSetup,
    pub problems: Vec<String>,
}

/// Every source opened before the sampler starts, in the order of their columns: a new
/// source (AMD SMI, a BMC) is one more line here and a module under `sources/`.
fn open_sources(roots: &Roots) -> Vec<Opened> {
    vec![sources::open_rapl(&roots.powercap, &roots.perf_pmu)]
}

/// Open every source that is opened before the sampler starts (NVML opens in the sampler's
/// thread: its start-up can take seconds), and the node's statistics.
pub fn prepare(job: Job) -> Prepared {
    let mut problems = Vec::new();
    let mut meta = job.meta;
    meta.period_ms = job.period.as_millis() as u64;
    let mut opened_sources = Vec::new();
    for opened in open_sources(&job.roots) {
        let Opened {
            source,
            status,
            problems: found,
        } = opened;
        problems.extend(found.into_iter().map(|p| format!("{}: {p}", status.name)));
        meta.sources.push(status);
        opened_sources.extend(source);
    }
    let node = NodeStats::open(&job.roots.proc)
        .map_err(|e| problems.push(format!("node usage not recorded: {e}")))
        .ok();
    Prepared {
        setup: SamplerSetup {
            period: job.period,
            files: job.files,
            lock: job.lock,
            sources: opened_sources,
            usage: job.usage,
            node,
            gpus: Some(job.gpus),
            meta,
            log: job.log,
        },
        problems,
    }
}
