//! `aipm-analyze doctor`: what aipm finds on this node, and what to fix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aipm_recording::config::{PluginConfig, DEFAULT_PLUGSTACK_DIR};
use aipm_sampler::sources::nvml::NvmlSource;
use aipm_sampler::sources::nvml_probe::{gpu_probe, ProbeTimes};
use aipm_sampler::sources::{open_rapl, EnergySource, Found, Opened, PERF_POWER_PMU};
use serde::Serialize;

use crate::output::{write_json, Format};

/// Check this node for aipm: the plugin's configuration, RAPL, NVML and its GPUs, the
/// cgroup layout, and the spool. Run it as root on a compute node, as the plugin runs.
///
/// With `--gpu-probe`, also the first checks to run on a real GPU node, a line each: the
/// process list's entry size and pids, the energy counter's step against integrated power,
/// the per-process utilisation cadence, open latency and permissions, MIG handles (see
/// docs/nvml-real-drivers.md). Run it as root, as a user and inside a job.
///
/// Example: `sudo aipm-analyze doctor`, `aipm-analyze doctor --gpu-probe`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Probe NVML and each GPU as well (about 8 s per GPU).
    #[arg(long)]
    pub gpu_probe: bool,
    /// How long the probe's timed checks run per GPU, in seconds.
    #[arg(long, value_name = "S", default_value_t = 8.0, requires = "gpu_probe")]
    pub probe_seconds: f64,
    /// Where the admin's plugstack files are.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PLUGSTACK_DIR)]
    pub plugstack_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct Check {
    what: &'static str,
    ok: bool,
    found: String,
    /// What to do when not ok.
    fix: Option<String>,
}

fn check(what: &'static str, ok: bool, found: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        what,
        ok,
        found: found.into(),
        fix: if ok { None } else { fix.map(str::to_string) },
    }
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    let config = match PluginConfig::from_plugstack_dir(&args.plugstack_dir) {
        Some(config) => {
            checks.push(check(
                "plugstack",
                true,
                format!("aipm line in {}", args.plugstack_dir.display()),
                None,
            ));
            config
        }
        None => {
            checks.push(check(
                "plugstack",
                false,
                format!("no aipm line in {}", args.plugstack_dir.display()),
                Some("copy plugstack.conf.d/aipm.conf into it and restart slurmd"),
            ));
            PluginConfig::default()
        }
    };
    let Opened {
        source: rapl,
        status,
        problems,
    } = open_rapl(&config.powercap_root, Path::new(PERF_POWER_PMU));
    let mut found = format!("{} ({})", status.status, status.detail);
    if let Some(source) = &rapl {
        found = format!("{}: {}", found, source.channels().join(", "));
    }
    if !problems.is_empty() {
        found.push_str(&format!("; problems: {}", problems.join("; ")));
    }
    checks.push(check("rapl", rapl.is_some(), found, Some("without RAPL, CPU and DRAM energy are not recorded: check the intel_rapl_msr module, or run as root")));
    let nvml = NvmlSource::open(config.nvml_lib.as_deref(), None);
    checks.push(match nvml {
        Ok(Found::Present(source)) => {
            let mut found = format!(
                "{} GPU(s): {}",
                source.channels().len(),
                source.channels().join(", ")
            );
            let degraded = source.degraded();
            if !degraded.is_empty() {
                found.push_str(&format!("; read otherwise: {}", degraded.join("; ")));
            }
            let lost = source.lost();
            if !lost.is_empty() {
                found.push_str(&format!("; not opened: {}", lost.join("; ")));
            }
            check(
                "nvml",
                lost.is_empty(),
                found,
                Some("a GPU is lost or not permitted: check nvidia-smi and the node's GPUs"),
            )
        }
        // No GPU here is fine for a CPU node.
        Ok(Found::Absent(why)) => check("nvml", true, format!("absent ({why})"), None),
        Err(e) => check(
            "nvml",
            false,
            format!("failed: {e}"),
            Some("check the NVIDIA driver (nvidia-smi) or nvml_lib= in plugstack"),
        ),
    });
    let cgroup = cgroup_layout(&config.cgroup_root);
    checks.push(check("cgroup", cgroup.is_some(), cgroup.unwrap_or_else(|| format!("none under {}", config.cgroup_root.display())), Some("set ProctrackType=proctrack/cgroup in slurm.conf: without job cgroups aipm follows process trees")));
    let spool = spool_state(&config.spool);
    checks.push(check(
        "spool",
        spool.is_ok(),
        spool.clone().unwrap_or_else(|e| e),
        Some("install -d -o root -g root -m 0755 the spool, or fix spool= in plugstack"),
    ));

    if args.gpu_probe {
        let seconds = args.probe_seconds.clamp(0.01, 600.0);
        let times = ProbeTimes {
            counter: std::time::Duration::from_secs_f64(seconds * 3.0 / 8.0),
            utilisation: std::time::Duration::from_secs_f64(seconds * 5.0 / 8.0),
        };
        for line in gpu_probe(config.nvml_lib.as_deref(), times).lines() {
            checks.push(check("gpu-probe", true, line, None));
        }
    }

    let all_ok = checks.iter().all(|c| c.ok);
    match args.format {
        Format::Json => write_json(out, &checks)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["what", "ok", "found", "fix"])?;
            for c in &checks {
                w.write_record([
                    c.what,
                    if c.ok { "yes" } else { "no" },
                    &c.found,
                    c.fix.as_deref().unwrap_or(""),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            for c in &checks {
                writeln!(
                    out,
                    "{:<10} {:<4} {}",
                    c.what,
                    if c.ok { "ok" } else { "FIX" },
                    c.found
                )?;
                if let Some(fix) = &c.fix {
                    writeln!(out, "{:<15} -> {fix}", "")?;
                }
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `cgroup v2`, `cgroup v1 (hybrid)`, or `None`.
fn cgroup_layout(root: &Path) -> Option<String> {
    if root.join("cgroup.controllers").exists() {
        return Some(format!("cgroup v2 at {}", root.display()));
    }
    let v1 = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .any(|c| root.join(c).is_dir());
    v1.then(|| {
        let hybrid = root.join("unified").is_dir();
        format!(
            "cgroup v1{} at {}",
            if hybrid { " (hybrid)" } else { "" },
            root.display()
        )
    })
}

fn spool_state(spool: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(spool).map_err(|e| format!("{}: {e}", spool.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", spool.display()));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: owner uid {}, mode {:o}: the plugin refuses a spool others can write to",
            spool.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(format!(
        "{} (root, {:o})",
        spool.display(),
        meta.mode() & 0o7777
    ))
}
