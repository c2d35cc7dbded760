//! `aipm-analyze job JOBID`: what one job's recordings say, per node.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aipm_recording::period::format_period;

use crate::legacy::{self, LegacyReport, Zone};
use crate::output::{bytes, joules, write_json, Format, Units};
use crate::report::{NodeReport, WallReport};
use crate::spool::{find_job, JobRef, Lookup, NodeRecording};
use aipm_omegawatt::channels::ChannelMap;
use aipm_omegawatt::wall::{energy_in_window, mid_second_points, node_power_seconds, WallSource};
use aipm_recording::attribution::{channel_kind, ChannelKind, Tag};

/// Show the energy and usage of one job, per node.
///
/// Reads the job's recordings from the spool and prints, for each node: the time covered,
/// the number of samples, the job's CPU time and peak memory, and the energy of each source
/// found on the node. Exits with 1 when the job has no recording.
///
/// Examples: `aipm-analyze job 1234`, `aipm-analyze job 1234_5 --format json`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Job id, or ARRAYJOB_TASK for a task of a job array (1234_5).
    #[arg(
        value_name = "JOBID",
        value_parser = clap::builder::ValueParser::new(parse_job_ref),
        required_unless_present = "legacy"
    )]
    pub job: Option<JobRef>,

    /// Read an AIPowerMeter recording instead: a folder with power_metrics.json, the file
    /// itself, or a tree of such folders.
    #[arg(long, value_name = "DIR", conflicts_with = "job")]
    pub legacy: Option<PathBuf>,

    /// Time zone of AIPowerMeter's naive dates: local, UTC or an offset such as +01:00.
    #[arg(long, value_name = "ZONE", default_value = "local", value_parser = parse_zone, allow_hyphen_values = true)]
    pub tz: Zone,

    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,

    #[command(flatten)]
    pub wall: super::wall_args::WallArgs,

    #[command(flatten)]
    pub emissions: super::emission_args::EmissionArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Energy unit of the table (JSON and CSV are always in joules, `_j`).
    #[arg(long, value_enum, default_value_t = Units::Wh)]
    pub units: Units,

    /// Draw the power of each node over the job (CPU packages, DRAM, each GPU, and the wall
    /// meter with --wall-map) into FILE.png or FILE.svg, one panel per node.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Size of the plot in pixels [default: 1200 wide, 300 per node].
    #[arg(long, value_name = "WxH", value_parser = crate::plot::parse_size, requires = "plot")]
    pub plot_size: Option<crate::plot::Size>,
}

fn parse_job_ref(text: &str) -> Result<JobRef, String> {
    text.parse()
}

pub(crate) fn parse_zone(text: &str) -> Result<Zone, String> {
    text.parse()
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.legacy {
        return run_legacy(dir, args.tz, args.format, out);
    }
    let Some(job) = args.job else {
        anyhow::bail!("give a JOBID, or --legacy DIR");
    };
    let spool = args.spool.resolve();
    let wall = args.wall.load()?;
    let recordings = match find_job(&spool, job)? {
        Lookup::Found(recordings) => recordings,
        Lookup::NotFound(message) => {
            let wall = wall.as_ref().map(|(m, s)| (m, s));
            return match super::unrecorded::report(&job.to_string(), wall, args.wall.rotation_hour)?
            {
                Ok(report) => {
                    super::unrecorded::print(&report, args.format, args.units, out)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    eprintln!("aipm-analyze: {message}; {why}");
                    Ok(ExitCode::from(1))
                }
            };
        }
    };
    if let Some(path) = &args.plot {
        crate::plot::format_of(path)?;
    }
    let mut reports: Vec<NodeReport> = crate::par::map(&recordings, NodeReport::from_recording);
    let mut wall_power: Vec<Vec<(f64, f64)>> = vec![Vec::new(); recordings.len()];
    if let Some((map, source)) = &wall {
        // Each node's wall data is its own read of the cache or archives: in parallel.
        let pairs: Vec<(&NodeRecording, NodeReport)> =
            recordings.iter().zip(reports.drain(..)).collect();
        let joined = crate::par::map(&pairs, |(rec, report)| {
            let mut report = report.clone();
            add_wall(rec, &mut report, map, source, args.wall.rotation_hour)
                .map(|power| (report, power))
        });
        for (i, result) in joined.into_iter().enumerate() {
            let (report, power) = result?;
            reports.push(report);
            wall_power[i] = power;
        }
    }
    for r in &mut reports {
        let job_j = r.job_cpu_j + r.job_dram_j + r.job_gpu_j;
        r.emissions_g_co2e = Some(job_j * args.emissions.g_per_j());
    }
    if let Some(path) = &args.plot {
        let chart = job_chart(&recordings, &reports, &wall_power);
        let size = args
            .plot_size
            .unwrap_or_else(|| crate::plot::Size::default_for(chart.panels.len()));
        crate::plot::write(&chart, size, path)?;
        eprintln!(
            "aipm-analyze: wrote {} ({}x{})",
            path.display(),
            size.width,
            size.height
        );
    }
    print_reports(&recordings, reports, args.format, args.units, out)?;
    let missing: Vec<&NodeRecording> = recordings.iter().filter(|r| r.samples_missing).collect();
    for rec in &missing {
        eprintln!(
            "aipm-analyze: {}: missing: node {} of job {} has metadata but no samples",
            rec.samples_path.display(),
            rec.meta.node,
            rec.meta.job_id
        );
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// One panel per node: the node's power per component from the counters, and the wall
/// meter's per-second power when it was joined.
fn job_chart(
    recordings: &[NodeRecording],
    reports: &[NodeReport],
    wall_power: &[Vec<(f64, f64)>],
) -> crate::plot::Chart {
    use crate::plot::{Chart, Panel, Series};
    let first = &reports[0];
    let name = first
        .job_name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let jobs: Vec<&str> = reports.iter().map(|r| r.job.as_str()).collect();
    let title = if jobs.iter().all(|j| *j == first.job) {
        format!(
            "Job {}{name} of {}: power per component",
            first.job, first.user
        )
    } else {
        let array = first.job.split('_').next().unwrap_or(&first.job);
        format!("Array {array}{name} of {}: power per component", first.user)
    };
    let panels = recordings
        .iter()
        .zip(reports)
        .zip(wall_power)
        .map(|((rec, report), wall)| {
            let mut series: Vec<Series> = crate::power::components(&rec.samples)
                .into_iter()
                .map(|(name, points)| Series {
                    name: format!("{name} (node)"),
                    points,
                    dashed: false,
                })
                .collect();
            if !wall.is_empty() {
                series.push(Series {
                    name: "wall (Omegawatt)".into(),
                    points: wall.clone(),
                    dashed: true,
                });
            }
            Panel {
                title: format!(
                    "job {} on {} ({}: the job's part is in the report)",
                    report.job, report.node, report.attribution
                ),
                series,
            }
        })
        .collect();
    Chart { title, panels }
}

/// The node's wall energy over the job's window (its first to its last sample).
pub fn add_wall(
    rec: &NodeRecording,
    report: &mut NodeReport,
    map: &ChannelMap,
    source: &WallSource,
    rotation_hour: u32,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let times: Vec<u64> = rec
        .samples
        .values(aipm_recording::samples::TIME_COLUMN)
        .collect();
    let (Some(&from_ms), Some(&to_ms)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let entry = match map.node(&rec.meta.node) {
        Ok(entry) => entry,
        Err(e) => {
            report.notes.push(format!("no wall data: {e}"));
            return Ok(Vec::new());
        }
    };
    let from_s = (from_ms / 1000) as i64;
    let to_s = to_ms.div_ceil(1000) as i64;
    let (seconds, read) = node_power_seconds(
        &rec.meta.node,
        entry,
        source,
        from_s,
        to_s.max(from_s + 1),
        rotation_hour,
    )?;
    let (energy_j, covered_s) = energy_in_window(&seconds, from_ms, to_ms);
    let window_s = (to_ms - from_ms) as f64 / 1000.0;
    let rapl_nvml_j: f64 = report
        .energy
        .iter()
        .filter(|e| {
            matches!(
                channel_kind(&e.channel),
                ChannelKind::Package | ChannelKind::Dram | ChannelKind::Gpu
            )
        })
        .map(|e| e.node_energy_j)
        .sum();
    let unseen_j = energy_j - rapl_nvml_j;
    if read.clock_steps_back > 0 || read.merged_seconds > 0 {
        report.notes.push(format!(
            "the wall meter's clock stepped back {} time(s) in the days read; {} second(s) of the window found in two days' files had their frames merged",
            read.clock_steps_back, read.merged_seconds
        ));
    }
    if covered_s < window_s * 0.99 {
        report.notes.push(format!(
            "the wall meter has data for {covered_s:.0} s of the {window_s:.0} s window: its energy covers that part only"
        ));
    }
    if energy_j > 0.0 && covered_s >= window_s * 0.99 && unseen_j < -0.05 * energy_j {
        report.notes.push(format!(
            "the wall meter saw less than RAPL + NVML ({:.0} J against {:.0} J), which cannot be: check the node's channels in the map and their wiring",
            energy_j, rapl_nvml_j
        ));
    }
    if energy_j > 0.0 && covered_s >= window_s * 0.99 && unseen_j > 0.3 * energy_j {
        report.notes.push(format!(
            "RAPL + NVML saw {:.0}% of the wall energy: the rest is power supplies, fans, disks, network",
            100.0 * rapl_nvml_j / energy_j
        ));
    }
    report.wall = Some(WallReport {
        energy_j,
        covered_s,
        window_s,
        rapl_nvml_j,
        unseen_j,
        archives_missing: read.archives_missing,
    });
    Ok(mid_second_points(&seconds))
}

/// Print the report of a job's recordings (one per node) in `format`; shared with `record`.
pub fn print_report(
    recordings: &[NodeRecording],
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let reports: Vec<NodeReport> = recordings.iter().map(NodeReport::from_recording).collect();
    print_reports(recordings, reports, format, Units::Wh, out)
}

fn print_reports(
    recordings: &[NodeRecording],
    reports: Vec<NodeReport>,
    format: Format,
    units: Units,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for (rec, report) in recordings.iter().zip(&reports) {
        if report.bad_lines > 0 {
            let first = &rec.samples.bad_lines[0];
            eprintln!(
                "aipm-analyze: warning: {}: {} unreadable line(s) skipped; first at line {}: {}",
                rec.samples_path.display(),
                report.bad_lines,
                first.line,
                first.reason
            );
        }
    }
    match format {
        Format::Json => write_json(out, &reports)?,
        Format::Csv => write_csv(&reports, out)?,
        Format::Table => write_table(&reports, units, out)?,
    }
    Ok(())
}

fn write_table(reports: &[NodeReport], units: Units, out: &mut impl Write) -> anyhow::Result<()> {
    for (i, r) in reports.iter().enumerate() {
        // A header for each job: one, or each task of an array.
        if i == 0 || reports[i - 1].job != r.job {
            if i > 0 {
                writeln!(out)?;
            }
            let name = r
                .job_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let nodes = reports.iter().filter(|o| o.job == r.job).count();
            writeln!(out, "Job {}{name}, user {}, {nodes} node(s)", r.job, r.user)?;
        }
        writeln!(out)?;
        let end = r
            .end_utc
            .as_deref()
            .unwrap_or("not finished (running, or the sampler was killed)");
        writeln!(out, "Node {}   steps: {}", r.node, r.steps.join(", "))?;
        writeln!(
            out,
            "  Window        {} .. {}  ({:.1} s)",
            r.start_utc, end, r.duration_s
        )?;
        writeln!(
            out,
            "  Samples       {} every {}, covering {:.0}% of the window",
            r.samples,
            format_period(std::time::Duration::from_millis(r.period_ms)),
            r.sample_coverage * 100.0
        )?;
        let cpu = match (r.cpu_time_s, r.cpu_efficiency, r.cpus) {
            (Some(t), Some(e), Some(n)) => format!("{t:.2} s ({:.0}% of {n} CPU(s))", e * 100.0),
            (Some(t), _, _) => format!("{t:.2} s"),
            _ => "not recorded (no job cgroup)".into(),
        };
        writeln!(out, "  CPU time      {cpu}")?;
        let mem = match (r.peak_mem_bytes, r.mem_alloc_bytes) {
            (Some(peak), Some(alloc)) => format!("{} of {} allocated", bytes(peak), bytes(alloc)),
            (Some(peak), None) => bytes(peak),
            _ => "not recorded".into(),
        };
        writeln!(out, "  Peak memory   {mem}")?;
        if r.energy.is_empty() {
            writeln!(out, "  Energy        no energy source on this node")?;
        } else {
            let rule = match r.attribution {
                Tag::Exclusive => "the job was alone on the node: its energy is the node's".into(),
                _ => {
                    // The share each rule gave, over the whole window.
                    let share = |kind: ChannelKind| {
                        let (job, node) = r
                            .energy
                            .iter()
                            .filter(|e| channel_kind(&e.channel) == kind)
                            .fold((0.0, 0.0), |(j, n), e| {
                                (j + e.job_energy_j, n + e.node_energy_j)
                            });
                        (node > 0.0).then(|| format!("{:.0}%", 100.0 * job / node))
                    };
                    let (cpu, dram) = (share(ChannelKind::Package), share(ChannelKind::Dram));
                    format!(
                        "CPU energy by the job's share of busy CPU time{}, DRAM by its share of used memory{}",
                        cpu.map(|p| format!(" ({p})")).unwrap_or_default(),
                        dram.map(|p| format!(" ({p})")).unwrap_or_default()
                    )
                }
            };
            writeln!(out, "  Attribution   {} ({rule})", r.attribution)?;
            let width = r
                .energy
                .iter()
                .map(|e| e.channel.len())
                .max()
                .unwrap_or(0)
                .max(22);
            writeln!(
                out,
                "  Energy        {:<width$} {:>14} {:>14} {:>14} {:>11} {:>11}",
                "channel", "job", "node", "unattributed", "node mean", "node peak"
            )?;
            for e in &r.energy {
                writeln!(
                    out,
                    "                {:<width$} {:>14} {:>14} {:>14} {:>9.2} W {:>9.2} W",
                    e.channel,
                    units.energy(e.job_energy_j),
                    units.energy(e.node_energy_j),
                    units.energy(e.unattributed_j),
                    e.node_mean_power_w,
                    e.node_peak_power_w
                )?;
            }
            for g in &r.gpus {
                let util = g
                    .mean_util_pct
                    .map(|u| format!("{u:.0}% busy"))
                    .unwrap_or_else(|| "utilisation not read".into());
                let mem = g
                    .peak_mem_bytes
                    .map(bytes)
                    .unwrap_or_else(|| "not read".into());
                writeln!(
                    out,
                    "  GPU           {}: {:.2} W mean, {util}, peak memory {mem}",
                    g.uuid, g.mean_power_w
                )?;
            }
            let total = r.job_cpu_j + r.job_dram_j + r.job_gpu_j;
            writeln!(
                out,
                "  Job energy    {}  (CPU {} + DRAM {} + GPU {}); not the job's: {} (idle, other jobs)",
                units.energy(total),
                units.energy(r.job_cpu_j),
                units.energy(r.job_dram_j),
                units.energy(r.job_gpu_j),
                units.energy(r.unattributed_j)
            )?;
        }
        for (i, s) in r.sources.iter().enumerate() {
            let label = if i == 0 { "Sources" } else { "" };
            writeln!(out, "  {label:<13} {s}")?;
        }
        if let Some(g) = r.emissions_g_co2e {
            writeln!(
                out,
                "  Emissions     about {g:.2} gCO2e of the job's energy (see --intensity, --pue)"
            )?;
        }
        if let Some(w) = &r.wall {
            writeln!(
                out,
                "  Wall          {} over {:.0} of {:.0} s; RAPL + NVML saw {} of the node, {} unseen",
                units.energy(w.energy_j),
                w.covered_s,
                w.window_s,
                units.energy(w.rapl_nvml_j),
                units.energy(w.unseen_j)
            )?;
            for missing in &w.archives_missing {
                writeln!(out, "                wall archive missing: {missing}")?;
            }
        }
        for (i, note) in r.notes.iter().enumerate() {
            let label = if i == 0 { "Notes" } else { "" };
            writeln!(out, "  {label:<13} {note}")?;
        }
        if r.truncated_tail || r.bad_lines > 0 {
            writeln!(
                out,
                "  Data          {} unreadable line(s){}",
                r.bad_lines,
                if r.truncated_tail {
                    ", last line cut short"
                } else {
                    ""
                }
            )?;
        }
        let last_of_job = reports.get(i + 1).is_none_or(|next| next.job != r.job);
        if last_of_job {
            let nodes: Vec<&NodeReport> = reports.iter().filter(|o| o.job == r.job).collect();
            if nodes.len() > 1 {
                write_job_total(&nodes, units, out)?;
            }
        }
    }
    Ok(())
}

/// The whole job over its nodes.
fn write_job_total(
    nodes: &[&NodeReport],
    units: Units,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let sum = |f: fn(&NodeReport) -> f64| nodes.iter().map(|r| f(r)).sum::<f64>();
    let (cpu, dram, gpu) = (
        sum(|r| r.job_cpu_j),
        sum(|r| r.job_dram_j),
        sum(|r| r.job_gpu_j),
    );
    writeln!(out)?;
    writeln!(
        out,
        "Total over {} nodes: job energy {} (CPU {} + DRAM {} + GPU {})",
        nodes.len(),
        units.energy(cpu + dram + gpu),
        units.energy(cpu),
        units.energy(dram),
        units.energy(gpu)
    )?;
    let walls: Vec<f64> = nodes
        .iter()
        .filter_map(|r| r.wall.as_ref().map(|w| w.energy_j))
        .collect();
    if !walls.is_empty() {
        writeln!(
            out,
            "  Wall          {} on {} of {} nodes (whole nodes over the job's window)",
            units.energy(walls.iter().sum()),
            walls.len(),
            nodes.len()
        )?;
    }
    let grams: f64 = nodes.iter().filter_map(|r| r.emissions_g_co2e).sum();
    writeln!(out, "  Emissions     about {grams:.2} gCO2e")?;
    Ok(())
}

fn write_csv(reports: &[NodeReport], out: &mut impl Write) -> anyhow::Result<()> {
    let mut channels: Vec<&str> = Vec::new();
    for e in reports.iter().flat_map(|r| &r.energy) {
        if !channels.contains(&e.channel.as_str()) {
            channels.push(&e.channel);
        }
    }
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "job",
        "job_id",
        "user",
        "node",
        "steps",
        "start_utc",
        "end_utc",
        "duration_s",
        "samples",
        "period_ms",
        "cpus",
        "cpu_time_s",
        "cpu_efficiency",
        "peak_mem_bytes",
        "attribution",
        "job_cpu_j",
        "job_dram_j",
        "job_gpu_j",
        "unattributed_j",
        "wall_energy_j",
        "wall_unseen_j",
        "emissions_g_co2e",
    ]
    .map(String::from)
    .to_vec();
    // Channel names and steps come from files the job's user can write: no formulas.
    let text = |t: &str| crate::output::spreadsheet_text(t);
    for c in &channels {
        header.push(text(&format!("{c}:job_j")));
        header.push(text(&format!("{c}:node_j")));
    }
    w.write_record(&header)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in reports {
        let mut row = vec![
            r.job.clone(),
            r.job_id.to_string(),
            text(&r.user),
            text(&r.node),
            text(&r.steps.join(" ")),
            r.start_utc.clone(),
            opt(r.end_utc.clone()),
            format!("{:.3}", r.duration_s),
            r.samples.to_string(),
            r.period_ms.to_string(),
            opt(r.cpus.map(|c| c.to_string())),
            opt(r.cpu_time_s.map(|c| format!("{c:.3}"))),
            opt(r.cpu_efficiency.map(|c| format!("{c:.4}"))),
            opt(r.peak_mem_bytes.map(|m| m.to_string())),
            r.attribution.to_string(),
            format!("{:.6}", r.job_cpu_j),
            format!("{:.6}", r.job_dram_j),
            format!("{:.6}", r.job_gpu_j),
            format!("{:.6}", r.unattributed_j),
            opt(r.wall.as_ref().map(|w| format!("{:.6}", w.energy_j))),
            opt(r.wall.as_ref().map(|w| format!("{:.6}", w.unseen_j))),
            opt(r.emissions_g_co2e.map(|g| format!("{g:.4}"))),
        ];
        for c in &channels {
            let e = r.energy.iter().find(|e| e.channel == *c);
            row.push(opt(e.map(|e| format!("{:.6}", e.job_energy_j))));
            row.push(opt(e.map(|e| format!("{:.6}", e.node_energy_j))));
        }
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// The `power_metrics.json` files under `path` (the file itself, a folder, or a tree).
fn run_legacy(
    path: &std::path::Path,
    zone: Zone,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let files = legacy::find(path);
    if files.is_empty() {
        eprintln!("aipm-analyze: no power_metrics.json in {}", path.display());
        return Ok(ExitCode::from(1));
    }
    let reports: Vec<LegacyReport> = files
        .iter()
        .map(|f| legacy::read(f, zone))
        .collect::<anyhow::Result<_>>()?;
    for warning in reports.iter().flat_map(LegacyReport::warnings) {
        eprintln!("aipm-analyze: warning: {warning}");
    }
    let series: Vec<String> = {
        let mut names: Vec<String> = reports
            .iter()
            .flat_map(|r| r.energy_j.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    match format {
        Format::Json => write_json(out, &reports)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec![
                "file".to_string(),
                "start_utc".into(),
                "duration_s".into(),
                "segments".into(),
                "samples".into(),
            ];
            header.extend(series.iter().map(|s| format!("{s}_j")));
            w.write_record(&header)?;
            for r in &reports {
                let start = r
                    .start_unix_s
                    .map(|t| aipm_recording::time::format_utc((t * 1000.0) as u64))
                    .unwrap_or_default();
                let mut row = vec![
                    r.file.clone(),
                    start,
                    format!("{:.3}", r.duration_s),
                    r.segments.to_string(),
                    r.samples.to_string(),
                ];
                row.extend(series.iter().map(|s| {
                    r.energy_j
                        .get(s)
                        .map(|j| format!("{j:.3}"))
                        .unwrap_or_default()
                }));
                w.write_record(&row)?;
            }
            w.flush()?;
        }
        Format::Table => {
            for r in &reports {
                let start = r
                    .start_unix_s
                    .map(|t| aipm_recording::time::format_utc((t * 1000.0) as u64))
                    .unwrap_or_default();
                writeln!(out, "{} (AIPowerMeter)", r.file)?;
                writeln!(
                    out,
                    "  From          {start}, {:.1} s in {} segment(s), {} samples",
                    r.duration_s, r.segments, r.samples
                )?;
                for (name, j) in &r.energy_j {
                    writeln!(out, "  {:<13} {}", name, joules(*j))?;
                }
                if r.psys_not_measured > 0 {
                    writeln!(out, "  Note          psys not measured in {} sample(s) (AIPowerMeter's -1), left out", r.psys_not_measured)?;
                }
                if let Some((line, why)) = r.first_skipped.first() {
                    writeln!(
                        out,
                        "  Note          {} sample(s) left out, first at line {line}: {why}",
                        r.skipped_samples
                    )?;
                }
                if let Some(line) = r.first_non_finite_line {
                    writeln!(
                        out,
                        "  Note          {} NaN/Infinity value(s) read as missing, first at line {line}",
                        r.non_finite_values
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
