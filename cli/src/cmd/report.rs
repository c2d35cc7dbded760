//! `aipm-analyze report --user U --month YYYY-MM`: one user's month, for people: totals, the
//! jobs that used the most energy, what could be done better, emissions. Markdown or HTML.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{Local, NaiveDate, TimeZone};

use crate::export::summary::JobSummary;
use crate::report::NodeReport;

/// A user's month: total energy and its split, the top jobs by energy, efficiency notes, and
/// emissions, as Markdown or HTML (for a mail or an intranet page).
///
/// Example: `aipm-analyze report --user alice --month 2026-10 -o alice-2026-10.html`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user, as Slurm names them.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The month, YYYY-MM (local time); jobs that started in it.
    #[arg(long, value_name = "YYYY-MM", value_parser = crate::window::parse_month)]
    pub month: NaiveDate,
    /// md or html [default: from the -o file's extension, else md].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many of the most energy-hungry jobs to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub emissions: super::emission_args::EmissionArgs,
    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
}

/// The month's summary, ready to render.
struct Month {
    user: String,
    label: String,
    jobs: Vec<JobSummary>,
    grams_per_j: f64,
    top: usize,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(path)) if path.extension().is_some_and(|e| e == "html" || e == "htm") => {
            ReportFormat::Html
        }
        _ => ReportFormat::Md,
    };
    let start = local_ms(args.month)?;
    let next = args
        .month
        .checked_add_months(chrono::Months::new(1))
        .context("a month after that one")?;
    let end = local_ms(next)?;
    let spool = args.spool.resolve();
    let jobs = month_jobs(&spool, &args.user, start, end)?;
    if jobs.is_empty() {
        eprintln!(
            "aipm-analyze: no recorded job of {} started in {} (spool {})",
            args.user,
            args.month.format("%Y-%m"),
            spool.display()
        );
        return Ok(ExitCode::from(1));
    }
    let month = Month {
        user: args.user.clone(),
        label: args.month.format("%B %Y").to_string(),
        jobs,
        grams_per_j: args.emissions.g_per_j(),
        top: args.top,
    };
    let text = match format {
        ReportFormat::Md => markdown(&month),
        ReportFormat::Html => html(&month),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn local_ms(date: NaiveDate) -> anyhow::Result<u64> {
    let midnight = date.and_hms_opt(0, 0, 0).context("midnight")?;
    let t = Local
        .from_local_datetime(&midnight)
        .earliest()
        .context("midnight does not exist in the local time zone")?;
    Ok(t.timestamp_millis().max(0) as u64)
}

/// The user's recorded jobs that started in `[start, end)` ms, by energy, largest first.
fn month_jobs(
    spool: &std::path::Path,
    user: &str,
    start: u64,
    end: u64,
) -> anyhow::Result<Vec<JobSummary>> {
    let ids = crate::spool::job_ids(spool)?;
    let mut jobs = Vec::new();
    for id in ids {
        // Decided on the metadata first; other users' recordings are unreadable: they are
        // not this user's anyway.
        let metas = match crate::spool::job_metas(spool, id) {
            Ok(metas) => metas,
            Err(e) => {
                crate::spool::warn_unless_others(&e);
                continue;
            }
        };
        let start_ms = metas.iter().map(|m| m.start_unix_ms).min();
        let theirs = metas.first().is_some_and(|m| m.user == user);
        if !theirs || !start_ms.is_some_and(|t| (start..end).contains(&t)) {
            continue;
        }
        let recordings = match crate::spool::job_recordings(spool, id) {
            Ok(recordings) => recordings,
            Err(e) => {
                crate::spool::warn_unless_others(&e);
                continue;
            }
        };
        let reports: Vec<NodeReport> = recordings.iter().map(NodeReport::from_recording).collect();
        let Some(summary) = JobSummary::new(&recordings, &reports) else {
            continue;
        };
        if summary.user == user && (start..end).contains(&summary.start_ms) {
            jobs.push(summary);
        }
    }
    jobs.sort_by(|a, b| b.total_j().total_cmp(&a.total_j()));
    Ok(jobs)
}

fn wh(j: f64) -> String {
    if j >= 3.6e6 {
        format!("{:.2} kWh", j / 3.6e6)
    } else {
        format!("{:.1} Wh", j / 3600.0)
    }
}

fn hours(s: f64) -> String {
    format!("{:.1} h", s / 3600.0)
}

/// The lines of advice for the month, each with the jobs it is about.
fn advice(m: &Month) -> Vec<String> {
    let mut lines = Vec::new();
    let low_cpu: Vec<&JobSummary> = m
        .jobs
        .iter()
        .filter(|j| j.cpu_usage_pct.is_some_and(|p| p < 50.0) && j.duration_s >= 600.0)
        .collect();
    if !low_cpu.is_empty() {
        lines.push(format!(
            "{} job(s) of 10 minutes or more used less than half of their CPUs (such as {}): ask for fewer CPUs, or use them all.",
            low_cpu.len(),
            low_cpu[0].job
        ));
    }
    let idle_gpu: Vec<&JobSummary> = m
        .jobs
        .iter()
        .filter(|j| j.gpus > 0 && j.gpu_util_pct.is_some_and(|u| u < 30.0))
        .collect();
    if !idle_gpu.is_empty() {
        let idle_j: f64 = idle_gpu.iter().map(|j| j.gpu_j).sum();
        lines.push(format!(
            "{} job(s) kept their GPUs busy less than 30% of the time on average (such as {}), for {} of GPU energy: a smaller GPU, fewer GPUs, or a CPU job may do.",
            idle_gpu.len(),
            idle_gpu[0].job,
            wh(idle_j)
        ));
    }
    let too_much_mem = m
        .jobs
        .iter()
        .filter(|j| {
            j.mem_peak_bytes
                .zip(j.mem_alloc_bytes)
                .is_some_and(|(peak, alloc)| crate::report::memory_mostly_unused(peak, alloc))
        })
        .count();
    if too_much_mem > 0 {
        lines.push(format!(
            "{too_much_mem} job(s) used less than a quarter of the memory they asked for: a smaller --mem lets more jobs run."
        ));
    }
    let unfinished = m.jobs.iter().filter(|j| j.end_ms.is_none()).count();
    if unfinished > 0 {
        lines.push(format!(
            "{unfinished} job(s) have no end in their recording (still running, or their node stopped): their figures stop at the last sample."
        ));
    }
    lines
}

struct Totals {
    cpu_j: f64,
    dram_j: f64,
    gpu_j: f64,
    total_j: f64,
    node_hours: f64,
    cpu_hours: f64,
}

fn totals(m: &Month) -> Totals {
    let sum = |f: fn(&JobSummary) -> f64| m.jobs.iter().map(f).sum::<f64>();
    Totals {
        cpu_j: sum(|j| j.cpu_j),
        dram_j: sum(|j| j.dram_j),
        gpu_j: sum(|j| j.gpu_j),
        total_j: sum(JobSummary::total_j),
        node_hours: sum(|j| j.duration_s * j.nodes.len() as f64) / 3600.0,
        cpu_hours: sum(|j| j.cpu_time_s) / 3600.0,
    }
}

fn local_time(ms: u64) -> String {
    crate::plot::local_label((ms / 1000) as i64)
}

/// The report's content, once, for either rendering.
enum Block {
    Heading(u8, String),
    Paragraph(String),
    /// A header, then rows; `numeric` columns are right-aligned; a `strong` row is a total.
    Table {
        header: Vec<&'static str>,
        numeric: Vec<bool>,
        rows: Vec<(Vec<String>, bool)>,
    },
    List(Vec<String>),
}

fn content(m: &Month) -> (String, Vec<Block>) {
    let t = totals(m);
    let title = format!("Energy of {}'s jobs, {}", m.user, m.label);
    let mut blocks = vec![
        Block::Heading(1, title.clone()),
        Block::Paragraph(format!(
            "{} job(s), {:.1} node-hours, {:.1} CPU-hours. Energy measured by aipm (CPU packages, DRAM and GPUs, the job's share on shared nodes):",
            m.jobs.len(),
            t.node_hours,
            t.cpu_hours
        )),
    ];
    let mut split: Vec<(Vec<String>, bool)> = [
        ("CPU packages", t.cpu_j),
        ("DRAM", t.dram_j),
        ("GPUs", t.gpu_j),
    ]
    .into_iter()
    .map(|(name, j)| {
        let cells = vec![name.into(), wh(j), format!("{:.0}%", share(j, t.total_j))];
        (cells, false)
    })
    .collect();
    split.push((vec!["total".into(), wh(t.total_j), "100%".into()], true));
    blocks.push(Block::Table {
        header: vec!["", "energy", "share"],
        numeric: vec![false, true, true],
        rows: split,
    });
    blocks.push(Block::Paragraph(format!(
        "Emissions: about {:.0} gCO2e ({:.0} g per kWh, PUE included).",
        t.total_j * m.grams_per_j,
        m.grams_per_j * 3.6e6
    )));
    blocks.push(Block::Heading(
        2,
        format!(
            "The {} jobs that used the most energy",
            m.top.min(m.jobs.len())
        ),
    ));
    let top = m.jobs.iter().take(m.top).map(|j| {
        let cells = vec![
            j.job.clone(),
            j.name.clone().unwrap_or_default(),
            local_time(j.start_ms),
            hours(j.duration_s),
            j.nodes.len().to_string(),
            wh(j.total_j()),
            percent(j.cpu_usage_pct),
            if j.gpus > 0 {
                percent(j.gpu_util_pct)
            } else {
                "no GPU".into()
            },
        ];
        (cells, false)
    });
    blocks.push(Block::Table {
        header: vec![
            "job", "name", "started", "duration", "nodes", "energy", "CPU use", "GPU use",
        ],
        numeric: vec![false, false, false, true, true, true, true, true],
        rows: top.collect(),
    });
    blocks.push(Block::Heading(2, "What could be better".into()));
    let advice = advice(m);
    blocks.push(if advice.is_empty() {
        Block::Paragraph("Nothing stood out this month.".into())
    } else {
        Block::List(advice)
    });
    (title, blocks)
}

fn markdown(m: &Month) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut s = String::new();
    for block in content(m).1 {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {text}\n", "#".repeat(usize::from(level)));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::Table {
                header,
                numeric,
                rows,
            } => {
                let _ = writeln!(s, "| {} |", header.join(" | "));
                let rule: Vec<&str> = numeric
                    .iter()
                    .map(|&n| if n { "---:" } else { "---" })
                    .collect();
                let _ = writeln!(s, "|{}|", rule.join("|"));
                for (cells, strong) in rows {
                    let cells: Vec<String> = cells
                        .iter()
                        .map(|c| match strong {
                            true => format!("**{}**", cell(c)),
                            false => cell(c),
                        })
                        .collect();
                    let _ = writeln!(s, "| {} |", cells.join(" | "));
                }
                s.push('\n');
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(s, "- {item}");
                }
            }
        }
    }
    s
}

fn html(m: &Month) -> String {
    let e = escape;
    let (title, blocks) = content(m);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em}}td.n,th.n{{text-align:right}}</style></head><body>",
        e(&title)
    );
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", e(&text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "<p>{}</p>", e(&text));
            }
            Block::Table {
                header,
                numeric,
                rows,
            } => {
                let _ = write!(s, "<table><tr>");
                for h in header {
                    let _ = write!(s, "<th>{}</th>", e(h));
                }
                let _ = writeln!(s, "</tr>");
                for (cells, strong) in rows {
                    let tag = if strong { "th" } else { "td" };
                    let _ = write!(s, "<tr>");
                    for (c, &n) in cells.iter().zip(&numeric) {
                        let class = if n { " class=\"n\"" } else { "" };
                        let _ = write!(s, "<{tag}{class}>{}</{tag}>", e(c));
                    }
                    let _ = writeln!(s, "</tr>");
                }
                let _ = writeln!(s, "</table>");
            }
            Block::List(items) => {
                let _ = writeln!(s, "<ul>");
                for item in items {
                    let _ = writeln!(s, "<li>{}</li>", e(&item));
                }
                let _ = writeln!(s, "</ul>");
            }
        }
    }
    let _ = writeln!(s, "</body></html>");
    s
}

fn share(part: f64, total: f64) -> f64 {
    if total > 0.0 {
        100.0 * part / total
    } else {
        0.0
    }
}

fn percent(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
