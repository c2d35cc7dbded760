//! `aipm-analyze export`: append each finished job's figures to its user's CSV, once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::export::columns::{Layout, RowContext, Wall};
use crate::export::comment::{comment_text, set_admin_comment};
use crate::export::parse_span;
use crate::export::sacct::{jobs_between, Accounting};
use crate::export::summary::JobSummary;
use crate::export::userfile::ExportDir;
use crate::output::{write_json, Format};
use crate::report::NodeReport;
use crate::window::parse_time;

/// Append one row per finished job to DIR/<user>.csv, for a daily cron or timer.
///
/// Jobs are those that ended in the window (`--since/--until`, or the `--last` span up to
/// now), with their state and times from `sacct` where Slurm accounting exists, and their
/// energy from the recordings. A job already in its user's file is never written again, so
/// overlapping windows are safe and a killed run is completed by the next one. A job whose
/// recording or wall data is not there yet waits for it, up to `--grace`, then is written
/// with its `wall` column saying `missing`. Each file belongs to its user, mode 0600.
///
/// Example (cron, as root): `aipm-analyze export --dir /srv/aipm/per-user --last 3d`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of the per-user files (created if missing; must not be writable by others).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Jobs that ended at or after this time (2023-11-01, 2023-11-01 08:00, RFC 3339, Unix s).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "last")]
    pub since: Option<i64>,
    /// Jobs that ended before this time [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "last")]
    pub until: Option<i64>,
    /// Jobs that ended in this span before now: 12h, 1d, 3d [default: 1d when no --since].
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    pub last: Option<i64>,
    /// Only this user's jobs.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Columns: aipm's (units in the header) or the Lab IA's exact layout.
    #[arg(long, value_enum, default_value_t = Layout::Aipm)]
    pub layout: Layout,
    /// How long after its end a job may wait for its recording's end or its wall data;
    /// then it is written with what is there.
    #[arg(long, value_name = "SPAN", value_parser = parse_span, default_value = "2d")]
    pub grace: i64,
    /// Where the job list comes from: sacct (Slurm accounting), the spool, or sacct when it
    /// works and the spool otherwise.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    pub jobs_from: Source,
    /// Also store each written job's summary in Slurm (`sacct -o AdminComment`).
    #[arg(long)]
    pub slurm_comment: bool,
    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,
    /// The wall meters (as for `job`): adds wall energy, and jobs wait for it.
    #[command(flatten)]
    pub wall: super::wall_args::WallArgs,
    #[command(flatten)]
    pub emissions: super::emission_args::EmissionArgs,
    /// Output format of what was done (table or json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Auto,
    Sacct,
    Spool,
}

/// A finished job to export, as Slurm (or the spool) lists it.
struct Candidate {
    /// The job's directory in the spool (`JobIDRaw`).
    job_id: u32,
    /// Slurm's name for it (`1234_5`), where accounting gave one.
    job: Option<String>,
    state: String,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct UserOutcome {
    pub file: String,
    pub written: Vec<String>,
    pub already: usize,
    pub waiting: Vec<String>,
    pub repaired_bytes: usize,
    pub error: Option<String>,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let now_ms = aipm_recording::time::now_unix_ms();
    let now = (now_ms / 1000) as i64;
    if args.format == Format::Csv {
        anyhow::bail!("--format: export reports what it did as table or json (the rows themselves are CSV, in DIR)");
    }
    let until = args.until.unwrap_or(now);
    let since = args.since.unwrap_or(until - args.last.unwrap_or(86_400));
    if since >= until {
        anyhow::bail!("the window is empty: it must start (--since, or --until minus --last) before it ends (--until, default now)");
    }
    let spool = args.spool.resolve();
    if !spool.is_dir() {
        anyhow::bail!(
            "spool {} does not exist; pass --spool DIR or set AIPM_SPOOL",
            spool.display()
        );
    }
    // Anything skipped (an unreadable recording, a user's file refused or locked) makes
    // the run exit 2 at its end, after every other row is written.
    let mut failed = false;
    let (candidates, source) = candidates(&args, &spool, since, until, &mut failed)?;
    let grace_ms = args.grace.max(0) as u64 * 1000;
    let wall_data = args.wall.load()?;
    let g_co2e_per_j = args.emissions.g_per_j();

    // Per user: the rows to write (by end time), the jobs that wait, and the summaries.
    type Pending = (Vec<(u64, Vec<String>, JobSummary)>, Vec<String>, u32, u32);
    let mut by_user: BTreeMap<String, Pending> = BTreeMap::new();
    for c in candidates {
        let recordings = match crate::spool::job_recordings(&spool, c.job_id) {
            Ok(recordings) if recordings.is_empty() => continue, // not recorded
            Ok(recordings) => recordings,
            Err(e) => {
                // Its user's bad file holds up no one: named, skipped, retried next run.
                eprintln!("aipm-analyze: job {}: {e:#}", c.job_id);
                failed = true;
                continue;
            }
        };
        let mut reports: Vec<NodeReport> =
            recordings.iter().map(NodeReport::from_recording).collect();
        if let Some((map, source)) = &wall_data {
            for (rec, report) in recordings.iter().zip(reports.iter_mut()) {
                let hour = args.wall.rotation_hour;
                if let Err(e) = super::job::add_wall(rec, report, map, source, hour) {
                    report.notes.push(format!("no wall data: {e:#}"));
                }
            }
        }
        let Some(mut summary) = JobSummary::new(&recordings, &reports) else {
            continue;
        };
        // Slurm's name of the job (`1234_5`), not the one its metadata gives.
        if let Some(job) = &c.job {
            summary.job = job.clone();
        }
        if args.user.as_deref().is_some_and(|u| u != summary.user) {
            continue;
        }
        let end_ms = c.end_ms.or(summary.end_ms).unwrap_or(now_ms);
        let in_grace = now_ms < end_ms + grace_ms;
        let entry = by_user
            .entry(summary.user.clone())
            .or_insert_with(|| (Vec::new(), Vec::new(), summary.uid, summary.gid));
        let wall = match (&wall_data, summary.wall_j) {
            (None, _) => Wall::NotAsked,
            (Some(_), Some(_)) => Wall::Complete,
            (Some(_), None) => Wall::Missing,
        };
        if in_grace && (summary.end_ms.is_none() || wall == Wall::Missing) {
            entry.1.push(summary.job.clone());
            continue;
        }
        let cx = RowContext {
            state: &c.state,
            start_ms: c.start_ms.unwrap_or(summary.start_ms),
            end_ms: c.end_ms.or(summary.end_ms),
            wall,
            g_co2e_per_j,
        };
        let row = args.layout.row(&summary, &cx);
        entry.0.push((end_ms, row, summary));
    }

    let dir = ExportDir::open(&args.dir)?;
    let mut kill_after = std::env::var("AIPM_TEST_KILL_AFTER_BYTES")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut outcomes: BTreeMap<String, UserOutcome> = BTreeMap::new();
    for (user, (mut rows, waiting, uid, gid)) in by_user {
        rows.sort_by_key(|(end, row, _)| (*end, row[args.layout.job_column()].clone()));
        let mut outcome = UserOutcome {
            file: dir.path().join(format!("{user}.csv")).display().to_string(),
            waiting,
            ..UserOutcome::default()
        };
        let result = (|| -> anyhow::Result<()> {
            let mut file = dir.user_file(&user, uid, gid, args.layout)?;
            outcome.repaired_bytes = file.repaired_bytes;
            let (new, old): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|(_, row, _)| !file.exported.contains(&row[args.layout.job_column()]));
            outcome.already = old.len();
            let lines: Vec<Vec<String>> = new.iter().map(|(_, row, _)| row.clone()).collect();
            if !lines.is_empty() {
                file.append(&lines, &mut kill_after)?;
            }
            for (_, _, summary) in &new {
                outcome.written.push(summary.job.clone());
                if args.slurm_comment {
                    // The CSV is written: a comment that fails is a warning, not a lost row.
                    let comment = comment_text(summary);
                    if let Err(e) = set_admin_comment(summary.job_id, &comment) {
                        eprintln!("aipm-analyze: warning: {e:#}");
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("aipm-analyze: {user}: {e:#}");
            outcome.error = Some(format!("{e:#}"));
            failed = true;
        }
        outcomes.insert(user, outcome);
    }

    match args.format {
        Format::Json => write_json(
            out,
            &serde_json::json!({ "jobs_from": source, "since": since, "until": until, "users": outcomes }),
        )?,
        _ => {
            writeln!(
                out,
                "export of jobs ended {} .. {} (jobs from {source})",
                aipm_recording::time::format_utc(since as u64 * 1000),
                aipm_recording::time::format_utc(until as u64 * 1000)
            )?;
            for (user, o) in &outcomes {
                writeln!(
                    out,
                    "{user:<12} {} written, {} already there, {} waiting{}{}  {}",
                    o.written.len(),
                    o.already,
                    o.waiting.len(),
                    if o.repaired_bytes > 0 {
                        format!(", a cut last line of {} bytes removed", o.repaired_bytes)
                    } else {
                        String::new()
                    },
                    o.error
                        .as_ref()
                        .map(|e| format!(", FAILED: {e}"))
                        .unwrap_or_default(),
                    o.file
                )?;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The finished jobs of the window, from sacct or from the spool; and which it was.
fn candidates(
    args: &Args,
    spool: &std::path::Path,
    since: i64,
    until: i64,
    failed: &mut bool,
) -> anyhow::Result<(Vec<Candidate>, &'static str)> {
    if args.jobs_from != Source::Spool {
        match jobs_between(since, until, args.user.as_deref()) {
            Accounting::Jobs(jobs) => {
                let list = jobs
                    .into_iter()
                    .filter(|j| j.is_finished() && j.end.is_some_and(|e| e >= since && e < until))
                    .map(|j| Candidate {
                        job_id: j.job_id,
                        job: Some(j.job),
                        state: j.state,
                        start_ms: j.start.map(|s| s as u64 * 1000),
                        end_ms: j.end.map(|e| e as u64 * 1000),
                    })
                    .collect();
                return Ok((list, "sacct"));
            }
            Accounting::Unavailable(why) if args.jobs_from == Source::Sacct => {
                anyhow::bail!("--jobs-from sacct: {why}")
            }
            Accounting::Unavailable(why) => {
                eprintln!(
                    "aipm-analyze: no Slurm accounting ({why}): jobs from the spool, state unknown"
                );
            }
        }
    }
    let mut list = Vec::new();
    for id in crate::spool::job_ids(spool)? {
        // Only the metadata: the samples are read later, for the jobs kept.
        let metas = match crate::spool::job_metas(spool, id) {
            Ok(metas) => metas,
            // Another user's: root reads every one, a user only theirs.
            Err(e) if e.is::<crate::spool::OthersRecording>() => continue,
            Err(e) => {
                eprintln!("aipm-analyze: job {id}: {e:#}");
                *failed = true;
                continue;
            }
        };
        if metas.is_empty() {
            continue;
        }
        // Without Slurm's word, a job has ended when every node's recording has.
        let ends: Option<Vec<u64>> = metas.iter().map(|m| m.end_unix_ms).collect();
        let Some(end) = ends.and_then(|e| e.into_iter().max()) else {
            continue;
        };
        if (end / 1000) as i64 >= since && ((end / 1000) as i64) < until {
            list.push(Candidate {
                job_id: id,
                job: None,
                state: String::new(),
                start_ms: None,
                end_ms: Some(end),
            });
        }
    }
    Ok((list, "spool"))
}
