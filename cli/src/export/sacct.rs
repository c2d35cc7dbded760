//! Finished jobs, their state and times, from Slurm's accounting (`sacct`), where it exists.

use std::process::Command;

/// One job as `sacct -X` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SacctJob {
    /// The id the job's spool directory is named by (`JobIDRaw`).
    pub job_id: u32,
    /// `1234` or `1234_5` (`JobID`).
    pub job: String,
    pub user: String,
    /// `COMPLETED`, `FAILED`, `CANCELLED by 0`, `TIMEOUT`, `OUT_OF_MEMORY`, ...
    pub state: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl SacctJob {
    /// Slurm is done with the job: it will not run again as this record.
    pub fn is_finished(&self) -> bool {
        let first = self.state.split_whitespace().next().unwrap_or("");
        !matches!(
            first,
            "" | "PENDING" | "RUNNING" | "REQUEUED" | "RESIZING" | "SUSPENDED" | "REQUEUE_HOLD"
        ) && self.end.is_some()
    }
}

#[derive(Debug)]
pub enum Accounting {
    Jobs(Vec<SacctJob>),
    /// No accounting here (no `sacct`, or `accounting_storage/none`): why, in words.
    Unavailable(String),
}

const FIELDS: &str = "JobIDRaw,JobID,User,State,Start,End";

/// Jobs that ran at some time in `[since, until)` (Unix seconds), of every user (as root).
pub fn jobs_between(since: i64, until: i64, user: Option<&str>) -> Accounting {
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let (since, until) = (fmt(since), fmt(until));
    let mut args = vec!["-X", "-n", "-P", "-o", FIELDS, "-S", &since, "-E", &until];
    match user {
        Some(u) => args.extend(["-u", u]),
        None => args.push("-a"),
    }
    match sacct(&args) {
        Ok(stdout) => Accounting::Jobs(parse(&stdout)),
        Err(why) => Accounting::Unavailable(why),
    }
}

/// `sacct ARGS` with Unix times: its output, or why accounting is not available.
fn sacct(args: &[&str]) -> Result<String, String> {
    let out = Command::new("sacct")
        .args(args)
        // Times printed as Unix seconds, and -S/-E read as UTC: no time zone guesswork.
        .env("SLURM_TIME_FORMAT", "%s")
        .env("TZ", "UTC")
        .output()
        .map_err(|e| format!("sacct: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || stdout.contains("accounting storage is disabled") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.trim().lines().chain(stdout.lines()).next();
        return Err(format!(
            "sacct: {}",
            why.unwrap_or("failed without a message")
        ));
    }
    Ok(stdout)
}

/// Slurm's state of each of `ids` that accounting knows, asked by id (exact, whatever the
/// jobs' times).
pub fn states_of(ids: &[u32]) -> Result<std::collections::HashMap<u32, String>, String> {
    let mut states = std::collections::HashMap::new();
    // A command line of a few thousand characters at most per call.
    for chunk in ids.chunks(400) {
        let list: Vec<String> = chunk.iter().map(u32::to_string).collect();
        let stdout = sacct(&["-X", "-n", "-P", "-o", FIELDS, "-j", &list.join(",")])?;
        states.extend(parse(&stdout).into_iter().map(|j| (j.job_id, j.state)));
    }
    Ok(states)
}

/// One job as accounting knows it, with the nodes it ran on: for a job aipm did not record.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountedJob {
    pub job: SacctJob,
    pub nodes: Vec<String>,
}

/// `sacct -j JOB` (`1234` or `1234_5`): `Ok(None)` when accounting does not know it.
pub fn one_job(job: &str) -> Result<Option<AccountedJob>, String> {
    let fields = "JobIDRaw,JobID,User,State,Start,End,NodeList";
    let stdout = sacct(&["-X", "-n", "-P", "-o", fields, "-j", job])?;
    Ok(stdout.lines().find_map(|line| {
        let (fields, nodes) = line.rsplit_once('|')?;
        let job = parse(fields).pop()?;
        Some(AccountedJob {
            job,
            nodes: expand_hostlist(nodes.trim()),
        })
    }))
}

/// Slurm's host list `n[01-03,7],gpu5` as names: `n01 n02 n03 n7 gpu5`. `None assigned` (a
/// job that never ran) is no node.
pub fn expand_hostlist(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        // One item: up to a comma outside brackets.
        let mut depth = 0;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                *c == ',' && depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let item = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        match item.split_once('[') {
            Some((prefix, ranges)) => {
                let ranges = ranges.trim_end_matches(']');
                for range in ranges.split(',') {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    let (Ok(from), Ok(to)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                        continue;
                    };
                    for n in from..=to {
                        names.push(format!("{prefix}{n:0width$}", width = a.len()));
                    }
                }
            }
            None if item.is_empty() || item.contains(' ') => {}
            None => names.push(item.to_string()),
        }
    }
    names
}

/// `sacct -X -n -P -o JobIDRaw,JobID,User,State,Start,End` with `SLURM_TIME_FORMAT=%s`.
/// Lines that do not read as a job (warnings) are skipped.
pub fn parse(text: &str) -> Vec<SacctJob> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() != 6 {
                return None;
            }
            let time = |s: &str| s.trim().parse::<i64>().ok().filter(|&t| t > 0);
            Some(SacctJob {
                job_id: f[0].trim().parse().ok()?,
                job: f[1].trim().to_string(),
                user: f[2].trim().to_string(),
                state: f[3].trim().to_string(),
                start: time(f[4]),
                end: time(f[5]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists() {
        assert_eq!(
            expand_hostlist("n[01-03,7],gpu5"),
            ["n01", "n02", "n03", "n7", "gpu5"]
        );
        assert_eq!(expand_hostlist("vm"), ["vm"]);
        assert!(expand_hostlist("None assigned").is_empty());
    }

    #[test]
    fn sacct_lines_with_unix_times() {
        let text = "12|12|alice|COMPLETED|1700000000|1700000100\n\
                    13|13|bob|CANCELLED by 0|1700000000|1700000050\n\
                    15|14_1|bob|RUNNING|1700000000|Unknown\n\
                    sacct: warning: something\n";
        let jobs = parse(text);
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[1].state, "CANCELLED by 0");
        assert!(jobs[0].is_finished() && jobs[1].is_finished());
        assert_eq!((jobs[2].job_id, jobs[2].job.as_str()), (15, "14_1"));
        assert_eq!(jobs[2].end, None);
        assert!(!jobs[2].is_finished());
    }
}
