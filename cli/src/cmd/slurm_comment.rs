//! `aipm-analyze slurm-comment JOBID`: the job's energy into Slurm's accounting, for
//! `sacct -o AdminComment`; meant for `EpilogSlurmctld` (contrib/aipm-epilog-slurmctld.sh).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::export::comment::{comment_text, set_admin_comment};
use crate::export::parse_span;
use crate::export::sacct::expand_hostlist;
use crate::export::summary::JobSummary;
use crate::report::NodeReport;
use crate::spool::{find_job, job_metas, job_recordings, JobRef, Lookup};

/// Store a job's energy summary in Slurm, where `sacct -o AdminComment` shows it.
///
/// Writes `aipm:v1 energy_wh=… cpu_wh=… dram_wh=… gpu_wh=… tag=exclusive|shared` with
/// `sacctmgr -i modify job where jobid=JOBID set AdminComment=…` (needs slurmdbd, and to run
/// as root or SlurmUser). Waits up to --wait for the recording to be finished on every node.
/// Exit codes: 0 stored (or printed), 1 no finished recording, 2 error. From an epilog, run
/// it through contrib/aipm-epilog-slurmctld.sh, which never fails or delays the job.
///
/// Example: `aipm-analyze slurm-comment 1234`, `aipm-analyze slurm-comment 1234 --print`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Job id (1234, or 1234_5 for an array task) [default: $SLURM_JOB_ID].
    #[arg(value_name = "JOBID")]
    pub job: Option<JobRef>,
    /// Only print the summary; store nothing.
    #[arg(long)]
    pub print: bool,
    /// How long to wait for the recording to be finished (the sampler writes its end about
    /// a second after the job's last task).
    #[arg(long, value_name = "SPAN", value_parser = parse_span, default_value = "10s")]
    pub wait: i64,
    /// The job's nodes, as Slurm lists them (`n[1-3],gpu5`; the controller's epilog passes
    /// `$SLURM_JOB_NODELIST`): wait until each has a finished recording, not only those
    /// seen so far (nodes publish at their own pace); with one still missing at the end of
    /// --wait, write nothing and exit 1 (the export's --slurm-comment writes it later).
    #[arg(long, value_name = "HOSTLIST")]
    pub nodes: Option<String>,
    /// The job's uid (the controller's epilog passes `$SLURM_JOB_UID`): a recording whose
    /// directory belongs to another user is an older job's of the same id, never this one's.
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Which run of a requeued job (`$SLURM_JOB_RESTART_COUNT`): only recordings of that run
    /// count, not an earlier run's still in the store before the nodes publish this one.
    #[arg(long, value_name = "N")]
    pub restart_count: Option<u32>,
    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let job = match args.job {
        Some(job) => job,
        None => std::env::var("SLURM_JOB_ID")
            .map_err(|_| anyhow::anyhow!("give a JOBID (SLURM_JOB_ID is not set)"))?
            .parse::<JobRef>()
            .map_err(anyhow::Error::msg)?,
    };
    let spool = args.spool.resolve();
    let expected = args
        .nodes
        .as_deref()
        .map(expand_hostlist)
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(args.wait.max(0) as u64);
    let recordings = loop {
        // Slurm keeps a comment per job record: exactly this job, not an array it heads.
        // Polled on the small metadata files; the samples are read once, at the end.
        let finished = match job {
            JobRef::Job(id) => {
                let metas = job_metas(&spool, id)?;
                if let (Some(uid), Some(meta)) = (args.uid, metas.first()) {
                    // The uid of a recording is its directory's owner (the reader's word).
                    if meta.uid != uid {
                        eprintln!(
                            "aipm-analyze: job {job}: the recording in {} is uid {}'s, not the job's uid {uid}: an older job's; no comment written",
                            spool.display(),
                            meta.uid
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
                let this_run = |m: &&aipm_recording::meta::Meta| {
                    args.restart_count
                        .is_none_or(|run| m.restart_count.unwrap_or(0) == run)
                };
                let metas: Vec<_> = metas.iter().filter(this_run).collect();
                let all_there = expected
                    .iter()
                    .all(|node| metas.iter().any(|m| &m.node == node));
                let done = !metas.is_empty() && metas.iter().all(|m| m.end_unix_ms.is_some());
                if !all_there && Instant::now() >= deadline {
                    // A figure without some nodes would stand for good in the accounting:
                    // none is written, and the export (`--slurm-comment`) writes it later.
                    let missing: Vec<&str> = expected
                        .iter()
                        .filter(|n| !metas.iter().any(|m| &m.node == *n))
                        .map(String::as_str)
                        .collect();
                    eprintln!(
                        "aipm-analyze: job {job}: no recording of node(s) {} in {}; no comment written",
                        missing.join(","),
                        spool.display()
                    );
                    return Ok(ExitCode::from(1));
                }
                done && all_there
            }
            JobRef::ArrayTask { .. } => match find_job(&spool, job)? {
                Lookup::Found(recs) => recs.iter().all(|r| r.meta.end_unix_ms.is_some()),
                Lookup::NotFound(_) => false,
            },
        };
        if finished {
            break match job {
                // An earlier run's nodes that this run did not use stay in the store.
                JobRef::Job(id) => job_recordings(&spool, id)?
                    .into_iter()
                    .filter(|r| {
                        args.restart_count
                            .is_none_or(|run| r.meta.restart_count.unwrap_or(0) == run)
                    })
                    .collect(),
                JobRef::ArrayTask { .. } => match find_job(&spool, job)? {
                    Lookup::Found(recs) => recs,
                    Lookup::NotFound(_) => Vec::new(),
                },
            };
        }
        if Instant::now() >= deadline {
            eprintln!(
                "aipm-analyze: no finished recording of job {job} in {}",
                spool.display()
            );
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let reports: Vec<NodeReport> = recordings.iter().map(NodeReport::from_recording).collect();
    let Some(summary) = JobSummary::new(&recordings, &reports) else {
        return Ok(ExitCode::from(1));
    };
    let text = comment_text(&summary);
    if !args.print {
        set_admin_comment(summary.job_id, &text)?;
    }
    writeln!(out, "{text}")?;
    Ok(ExitCode::SUCCESS)
}
