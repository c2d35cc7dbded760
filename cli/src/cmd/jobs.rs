//! `aipm-analyze jobs`: one line per recorded job of a user over a period, with totals.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::export::summary::JobSummary;
use crate::output::{joules, write_json, Format};
use crate::report::NodeReport;
use crate::spool::{job_metas, job_recordings};
use crate::window::parse_time;

/// List a user's recorded jobs over a period, one line each, with their energy and a total.
///
/// Jobs are taken from the spool (the ones that were recorded), by the time they started;
/// with `--legacy DIR`, the AIPowerMeter recordings of a tree instead (their CPU package,
/// DRAM and GPU energy: the whole machine, as AIPowerMeter measured it).
///
/// Example: `aipm-analyze jobs --user alice --from 2023-11-01 --to 2023-12-01 --format csv`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// User name, as in the recordings [default: everyone you can read].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Jobs that started at or after this time: 2023-11-01, 2023-11-01 08:00, RFC 3339 or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Jobs that started before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,
    /// List the AIPowerMeter recordings under DIR (folders with power_metrics.json) instead
    /// of the spool's jobs; in the Lab IA's layout (`<YYYY_MM>/<user>/<jobid>/`) the folders
    /// name the user and the job.
    #[arg(long, value_name = "DIR", conflicts_with = "state")]
    pub legacy: Option<std::path::PathBuf>,
    /// Time zone of AIPowerMeter's naive dates: local, UTC or an offset such as +01:00.
    #[arg(long, value_name = "ZONE", default_value = "local", value_parser = super::job::parse_zone, allow_hyphen_values = true)]
    pub tz: crate::legacy::Zone,
    /// Only jobs in these Slurm states (COMPLETED, FAILED, TIMEOUT, CANCELLED,
    /// OUT_OF_MEMORY…; comma-separated), as Slurm's accounting (`sacct`) gives them.
    #[arg(long, value_name = "STATE,STATE", value_delimiter = ',')]
    pub state: Vec<String>,
    #[command(flatten)]
    pub emissions: super::emission_args::EmissionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct JobLine {
    pub job: String,
    pub job_id: u32,
    pub name: Option<String>,
    pub user: String,
    /// Slurm's state of the job, when --state asked accounting.
    pub state: Option<String>,
    pub nodes: usize,
    pub start_utc: String,
    pub start_unix_ms: u64,
    pub duration_s: f64,
    pub cpu_time_s: f64,
    pub cpu_j: f64,
    pub dram_j: f64,
    pub gpu_j: f64,
    pub total_j: f64,
    pub emissions_g_co2e: f64,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        crate::window::check_window(from, to, "--from", "--to")?;
    }
    let (lines, source) = match &args.legacy {
        Some(dir) => (legacy_lines(dir, &args)?, dir.display().to_string()),
        None => {
            let spool = args.spool.resolve();
            (spool_lines(&spool, &args)?, spool.display().to_string())
        }
    };
    let mut lines = lines;
    if !args.state.is_empty() {
        let ids: Vec<u32> = lines.iter().map(|l| l.job_id).collect();
        let states = crate::export::sacct::states_of(&ids).map_err(|why| {
            anyhow::anyhow!("--state needs Slurm's accounting, which is not available here ({why})")
        })?;
        for line in &mut lines {
            line.state = states.get(&line.job_id).cloned();
        }
        lines.retain(|l| {
            l.state
                .as_deref()
                .is_some_and(|s| wanted_state(&args.state, s))
        });
    }
    if lines.is_empty() {
        eprintln!("aipm-analyze: no recorded job matches in {source}");
        return Ok(ExitCode::from(1));
    }
    let total = JobLine {
        job: "total".into(),
        nodes: lines.iter().map(|l| l.nodes).sum(),
        duration_s: lines.iter().map(|l| l.duration_s).sum(),
        cpu_time_s: lines.iter().map(|l| l.cpu_time_s).sum(),
        cpu_j: lines.iter().map(|l| l.cpu_j).sum(),
        dram_j: lines.iter().map(|l| l.dram_j).sum(),
        gpu_j: lines.iter().map(|l| l.gpu_j).sum(),
        total_j: lines.iter().map(|l| l.total_j).sum(),
        emissions_g_co2e: lines.iter().map(|l| l.emissions_g_co2e).sum(),
        ..JobLine::default()
    };
    match args.format {
        Format::Json => write_json(out, &serde_json::json!({ "jobs": lines, "total": total }))?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "job",
                "name",
                "user",
                "state",
                "nodes",
                "start_utc",
                "duration_s",
                "cpu_time_s",
                "cpu_j",
                "dram_j",
                "gpu_j",
                "total_j",
                "emissions_g_co2e",
            ])?;
            for l in lines.iter().chain([&total]) {
                let text = |t: &str| crate::output::spreadsheet_text(t);
                w.write_record([
                    l.job.clone(),
                    text(l.name.as_deref().unwrap_or_default()),
                    text(&l.user),
                    text(l.state.as_deref().unwrap_or_default()),
                    l.nodes.to_string(),
                    l.start_utc.clone(),
                    format!("{:.3}", l.duration_s),
                    format!("{:.3}", l.cpu_time_s),
                    format!("{:.3}", l.cpu_j),
                    format!("{:.3}", l.dram_j),
                    format!("{:.3}", l.gpu_j),
                    format!("{:.3}", l.total_j),
                    format!("{:.4}", l.emissions_g_co2e),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<12} {:<16} {:<10} {:<24} {:>10} {:>26} {:>10}",
                "job", "name", "user", "start", "duration", "energy", "gCO2e"
            )?;
            for l in lines.iter().chain([&total]) {
                writeln!(
                    out,
                    "{:<12} {:<16} {:<10} {:<24} {:>8.0} s {:>26} {:>10.2}",
                    l.job,
                    l.name
                        .as_deref()
                        .unwrap_or("")
                        .chars()
                        .take(16)
                        .collect::<String>(),
                    match &l.state {
                        Some(state) => format!("{} {state}", l.user),
                        None => l.user.clone(),
                    },
                    l.start_utc,
                    l.duration_s,
                    joules(l.total_j),
                    l.emissions_g_co2e
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `CANCELLED by 0` is CANCELLED; states compare without case.
fn wanted_state(wanted: &[String], state: &str) -> bool {
    let first = state.split_whitespace().next().unwrap_or("");
    wanted.iter().any(|w| w.eq_ignore_ascii_case(first))
}

/// The spool's jobs that match, by start time.
fn spool_lines(spool: &std::path::Path, args: &Args) -> anyhow::Result<Vec<JobLine>> {
    let ids = crate::spool::job_ids(spool)?;
    // A month of jobs is hundreds of recordings: read on every core.
    let line_of = |&id: &u32| -> Option<JobLine> {
        // Decided on the metadata first; other users' jobs are unreadable: not listed.
        let metas = job_metas(spool, id)
            .map_err(|e| crate::spool::warn_unless_others(&e))
            .ok()?;
        let start_ms = metas.iter().map(|m| m.start_unix_ms).min()?;
        let in_window = args.from.is_none_or(|f| start_ms as i64 >= f * 1000)
            && args.to.is_none_or(|t| (start_ms as i64) < t * 1000);
        if !in_window || args.user.as_deref().is_some_and(|u| u != metas[0].user) {
            return None;
        }
        let recordings = job_recordings(spool, id)
            .map_err(|e| crate::spool::warn_unless_others(&e))
            .ok()?;
        let reports: Vec<NodeReport> = recordings.iter().map(NodeReport::from_recording).collect();
        let summary = JobSummary::new(&recordings, &reports)?;
        Some(JobLine {
            job: summary.job.clone(),
            job_id: id,
            name: summary.name.clone(),
            user: summary.user.clone(),
            state: None, // filled by the caller when --state asks accounting
            nodes: summary.nodes.len(),
            start_utc: aipm_recording::time::format_utc(summary.start_ms),
            start_unix_ms: summary.start_ms,
            duration_s: summary.duration_s,
            cpu_time_s: summary.cpu_time_s,
            cpu_j: summary.cpu_j,
            dram_j: summary.dram_j,
            gpu_j: summary.gpu_j,
            total_j: summary.total_j(),
            emissions_g_co2e: summary.total_j() * args.emissions.g_per_j(),
        })
    };
    let mut lines: BTreeMap<(u64, u32), JobLine> = BTreeMap::new();
    for line in crate::par::map(&ids, line_of).into_iter().flatten() {
        lines.insert((line.start_unix_ms, line.job_id), line);
    }
    Ok(lines.into_values().collect())
}

/// The AIPowerMeter recordings under `dir` that match, by start time. In the Lab IA's layout
/// (`…/<user>/<jobid>/power_metrics.json`) the folders name the user and the job; elsewhere
/// the folder's path (relative to `dir`) stands for the job.
fn legacy_lines(dir: &std::path::Path, args: &Args) -> anyhow::Result<Vec<JobLine>> {
    let mut lines = Vec::new();
    for file in crate::legacy::find(dir) {
        let folder = file.parent().unwrap_or(&file);
        let relative = folder.strip_prefix(dir).unwrap_or(folder);
        let parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let (job, user) = match parts.as_slice() {
            [.., user, id] if id.parse::<u32>().is_ok() => (id.clone(), user.clone()),
            _ if parts.is_empty() => (folder.display().to_string(), String::new()),
            _ => (relative.display().to_string(), String::new()),
        };
        if args.user.as_deref().is_some_and(|u| u != user) {
            continue;
        }
        let r = crate::legacy::read(&file, args.tz)?;
        for warning in r.warnings() {
            eprintln!("aipm-analyze: warning: {warning}");
        }
        let start_ms = r.start_unix_s.map_or(0, |t| (t * 1000.0) as u64);
        let in_window = args.from.is_none_or(|f| start_ms as i64 >= f * 1000)
            && args.to.is_none_or(|t| (start_ms as i64) < t * 1000);
        if !in_window {
            continue;
        }
        let energy = |series: &str| r.energy_j.get(series).copied().unwrap_or(0.0);
        let (cpu_j, dram_j, gpu_j) = (energy("cpu_package"), energy("dram"), energy("gpu"));
        let total_j = cpu_j + dram_j + gpu_j;
        lines.push(JobLine {
            job_id: job.parse().unwrap_or(0),
            job,
            user,
            nodes: 1,
            start_utc: aipm_recording::time::format_utc(start_ms),
            start_unix_ms: start_ms,
            duration_s: r.duration_s,
            cpu_j,
            dram_j,
            gpu_j,
            total_j,
            emissions_g_co2e: total_j * args.emissions.g_per_j(),
            ..JobLine::default()
        });
    }
    lines.sort_by(|a, b| (a.start_unix_ms, &a.job).cmp(&(b.start_unix_ms, &b.job)));
    Ok(lines)
}
