//! `aipm-analyze record -- CMD ARGS…`: run a command and record it the way the plugin records
//! a job (its process tree instead of a job cgroup), then print the same report.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use aipm_recording::layout::NodeName;
use aipm_recording::meta::Meta;
use aipm_recording::period::{parse_bounded_period, PERIOD_FORMS};
use aipm_recording::source;
use aipm_sampler::sampler::{GpuPlan, Level, Log, Sampler};
use aipm_sampler::setup;
use aipm_sampler::spool::{ElectionLock, JobFiles};
use aipm_sampler::usage::{JobUsage, ProcessTree};
use anyhow::Context as _;

use crate::output::Format;
use crate::spool::{find_job, JobRef, Lookup};

/// Run a command and record its energy, then print its report.
///
/// The command's process tree is sampled every PERIOD: its CPU time and memory, the node's
/// RAPL counters (readable by root only on most kernels) and the GPUs it may use
/// (CUDA_VISIBLE_DEVICES, else all). The recording goes to DIR/<pid>/ in the same format as
/// a Slurm job's, and `aipm-analyze job <pid> --spool DIR` shows it again later.
///
/// Example: `aipm-analyze record --period 500ms -- python train.py --epochs 3`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sampling period: 500ms, 2s, 1 (seconds); at least 10ms.
    #[arg(long, value_name = "PERIOD", default_value = "1s", value_parser = parse_period_arg)]
    pub period: Duration,

    /// Directory of the recordings (created if missing).
    #[arg(long, value_name = "DIR", default_value = "aipm-records")]
    pub out: PathBuf,

    /// RAPL powercap tree.
    #[arg(long, value_name = "DIR", default_value = "/sys/class/powercap")]
    pub powercap_root: PathBuf,

    /// NVML library to load instead of the system's libnvidia-ml.so.1.
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// The command to run, after `--`.
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

fn parse_period_arg(text: &str) -> Result<Duration, String> {
    parse_bounded_period(text, Duration::from_millis(10)).map_err(|e| {
        let e = e.to_string();
        if e.contains(PERIOD_FORMS) {
            format!("expected {PERIOD_FORMS}")
        } else {
            e
        }
    })
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .spawn()
        .with_context(|| format!("running {}", args.command[0].to_string_lossy()))?;
    let pid = child.id();
    let sampler = match start_sampler(&args, pid) {
        Ok(sampler) => Some(sampler),
        Err(e) => {
            // The command runs on: a measurement problem never stops it.
            eprintln!("aipm-analyze: not recording: {e:#}");
            None
        }
    };
    let status = child.wait().context("waiting for the command")?;
    let Some(sampler) = sampler else {
        return Ok(exit_code_of(status));
    };
    sampler.stop();
    match find_job(&args.out, JobRef::Job(pid))? {
        Lookup::Found(recordings) => super::job::print_report(&recordings, args.format, out)?,
        Lookup::NotFound(message) => eprintln!("aipm-analyze: {message}"),
    }
    Ok(exit_code_of(status))
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn start_sampler(args: &Args, pid: u32) -> anyhow::Result<Sampler> {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let node =
        NodeName::new(host.split('.').next().unwrap_or(&host)).map_err(anyhow::Error::msg)?;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let mut files = JobFiles::open(&args.out, pid, &node, uid, gid)?;
    files.add_step("command")?;
    let lock = ElectionLock::open(&args.out.join(".locks"), pid)?;

    let selectors = std::env::var("CUDA_VISIBLE_DEVICES").ok().map(|list| {
        list.split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect()
    });
    let proc_root = std::path::Path::new("/proc");
    let meta = Meta {
        job_id: pid,
        user: std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
        uid,
        gid,
        job_name: Some(
            args.command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        node: node.as_str().into(),
        cpus: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32),
        ..Meta::default()
    };
    let log: Log = std::sync::Arc::new(|level, message: &str| {
        if level == Level::Error {
            eprintln!("aipm-analyze: {message}");
        }
    });
    let mut prepared = setup::prepare(setup::Job {
        period: args.period,
        files,
        lock,
        roots: setup::Roots {
            powercap: args.powercap_root.clone(),
            ..setup::Roots::default()
        },
        gpus: GpuPlan {
            lib: args.nvml_lib.clone(),
            selectors,
        },
        usage: Some(JobUsage::ProcessTree(ProcessTree::new(
            proc_root,
            pid,
            Some(std::process::id()),
        ))),
        meta,
        log,
    });
    // Each problem is in its source's status already: the command's terminal is spared
    // them. A user's command, not root's: the likely reason RAPL is missing is worth saying.
    let sources = &mut prepared.setup.meta.sources;
    if let Some(rapl) = sources
        .iter_mut()
        .find(|s| s.name == source::RAPL && s.status != source::State::Found)
    {
        rapl.detail
            .push_str(" (RAPL counters are root-only on most kernels)");
    }
    Ok(Sampler::start(prepared.setup)?)
}
