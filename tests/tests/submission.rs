//! End-to-end: every way a user submits a job, against the real test cluster (issue #7).
//! Each cell of the matrix is a job submitted as the unprivileged test user the way a user
//! types it (bare flag, `#SBATCH` line, a value inherited through Slurm's environment,
//! steps with their own values), and asserts what the user would check:
//! (a) the job's final state and exit code are what Slurm gives without the plugin (the
//!     values below were read off the same jobs submitted without `--energy-profile`),
//! (b) a recording exists exactly when one was asked for, with the steps that ran,
//! (c) the user can read its report with `aipm-analyze job`.
//! Cells run concurrently, each in its own thread; the failures of all cells are reported
//! together.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aipm_e2e::*;
use aipm_recording::meta::Meta;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// The test cluster's plugstack gives no `period=`: the plugin's default.
const DEFAULT_PERIOD_MS: u64 = 1000;
/// A few seconds of CPU, so that steps overlap the sampler's periods.
const BURN: &str = "sh -c 'timeout 2 sh -c \"while :; do :; done\"; exit 0'";

/// How a cell's job is submitted.
enum How {
    /// `sbatch ARGS script`, the script holding its own `#SBATCH` lines.
    Sbatch {
        args: &'static [&'static str],
        script: String,
    },
    /// `srun ARGS sh -c COMMAND` alone: it allocates the job.
    Srun {
        args: &'static [&'static str],
        command: &'static str,
    },
    /// `salloc ARGS bash -c COMMAND`, the command running sruns.
    Salloc {
        args: &'static [&'static str],
        command: String,
    },
}

/// What a recorded job's recording on the node holds.
struct Recorded {
    period_ms: u64,
    steps: &'static [&'static str],
}

struct Cell {
    name: &'static str,
    how: How,
    /// More environment for the submitting command (a value inherited from a parent job).
    env: &'static [(&'static str, &'static str)],
    state: &'static str,
    exit_code: &'static str,
    recorded: Option<Recorded>,
}

fn script(lines: &[&str]) -> String {
    let mut text = String::from("#!/bin/bash\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

impl Cell {
    fn new(name: &'static str, how: How) -> Cell {
        Cell {
            name,
            how,
            env: &[],
            state: "COMPLETED",
            exit_code: "0:0",
            recorded: None,
        }
    }

    fn recorded(mut self, period_ms: u64, steps: &'static [&'static str]) -> Cell {
        self.recorded = Some(Recorded { period_ms, steps });
        self
    }

    fn ends(mut self, state: &'static str, exit_code: &'static str) -> Cell {
        (self.state, self.exit_code) = (state, exit_code);
        self
    }

    fn env(mut self, env: &'static [(&'static str, &'static str)]) -> Cell {
        self.env = env;
        self
    }
}

fn sbatch(args: &'static [&'static str], lines: &[&str]) -> How {
    How::Sbatch {
        args,
        script: script(lines),
    }
}

/// The cells that run under the test cluster's own configuration (`default=off`).
fn matrix() -> Vec<Cell> {
    let bare = &["--energy-profile"][..];
    let burn_off = format!("srun --energy-profile=off {BURN}");
    vec![
        // How the option reaches the job.
        Cell::new(
            "sbatch bare flag, sruns inside",
            sbatch(bare, &["srun true", "srun -n1 sleep 1"]),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0", "1"]),
        Cell::new(
            "#SBATCH bare flag",
            sbatch(&[], &["#SBATCH --energy-profile", "srun true"]),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
        Cell::new(
            "#SBATCH period",
            sbatch(&[], &["#SBATCH --energy-profile=300ms", "srun true"]),
        )
        .recorded(300, &["batch", "0"]),
        Cell::new(
            "sbatch =off, srun inside",
            sbatch(&["--energy-profile=off"], &["srun true"]),
        ),
        Cell::new(
            "sbatch without the option, srun inside",
            sbatch(&[], &["srun true"]),
        ),
        Cell::new(
            "sbatch --export=NONE bare flag",
            sbatch(
                &["--export=NONE", "--energy-profile"],
                &["/usr/bin/srun /bin/true"],
            ),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
        Cell::new(
            "an invalid value inherited from the environment",
            sbatch(&[], &["srun true"]),
        )
        .env(&[(
            "SLURM_SPANK__SLURM_SPANK_OPTION_aipm_energy_profile",
            "banana",
        )])
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
        Cell::new(
            "srun alone, bare flag",
            How::Srun {
                args: bare,
                command: "echo JOB=$SLURM_JOB_ID",
            },
        )
        .recorded(DEFAULT_PERIOD_MS, &["0"]),
        Cell::new(
            "srun alone, period",
            How::Srun {
                args: &["--energy-profile=200ms"],
                command: "echo JOB=$SLURM_JOB_ID",
            },
        )
        .recorded(200, &["0"]),
        Cell::new(
            "salloc bare flag, then a step with =off",
            How::Salloc {
                args: bare,
                command: format!("srun true; {burn_off}; echo JOB=$SLURM_JOB_ID"),
            },
        )
        .recorded(DEFAULT_PERIOD_MS, &["0", "1"]),
        Cell::new(
            "salloc without the option, a step asks for itself",
            How::Salloc {
                args: &[],
                command: "srun true; srun --energy-profile=200ms true; echo JOB=$SLURM_JOB_ID"
                    .into(),
            },
        )
        .recorded(200, &["1"]),
        // Inside the job.
        Cell::new(
            "a step with =off in a recorded job",
            sbatch(bare, &[&burn_off]),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
        Cell::new(
            "a step with its own period in a job without the option",
            sbatch(&[], &["srun --energy-profile=200ms true"]),
        )
        .recorded(200, &["0"]),
        Cell::new(
            "two concurrent steps",
            sbatch(
                &["--energy-profile", "-n2"],
                &[
                    "srun -n1 --exact sleep 1 &",
                    "srun -n1 --exact sleep 1 &",
                    "wait",
                ],
            ),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0", "1"]),
        Cell::new(
            "a step that is killed",
            sbatch(bare, &["srun sh -c 'kill -9 $$'", "exit 0"]),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
        Cell::new("a failing script", sbatch(bare, &["srun true", "exit 3"]))
            .ends("FAILED", "3:0")
            .recorded(DEFAULT_PERIOD_MS, &["batch", "0"]),
    ]
}

/// Runs `argv` as the test user from /tmp, with `env` added.
fn as_user(argv: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("runuser")
        .args(["-u", TEST_USER, "--"])
        .args(argv)
        .current_dir("/tmp")
        .envs(env.iter().copied())
        .output()
        .expect("runuser")
}

fn job_from_output(out: &Output) -> Result<u32, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("JOB="))
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "no job id printed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Submits the cell's job; returns its id (blocking commands return once it ended).
fn submit(cell: &Cell, dir: &std::path::Path) -> Result<u32, String> {
    match &cell.how {
        How::Sbatch { args, script } => {
            let path = dir.join(format!("{}.sh", cell.name.replace([' ', '/', '='], "_")));
            std::fs::write(&path, script).map_err(|e| e.to_string())?;
            let mut argv = vec!["sbatch", "--parsable", "-o", "/dev/null", "-e", "/dev/null"];
            argv.extend(args.iter());
            let path = path.to_string_lossy().into_owned();
            argv.push(&path);
            let out = as_user(&argv, cell.env);
            if !out.status.success() {
                return Err(format!(
                    "sbatch failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| format!("sbatch printed {:?}", out.stdout))
        }
        How::Srun { args, command } => {
            let mut argv = vec!["srun", "-n1"];
            argv.extend(args.iter());
            argv.extend(["sh", "-c", command]);
            job_from_output(&as_user(&argv, cell.env))
        }
        How::Salloc { args, command } => {
            let mut argv = vec!["salloc", "-n1"];
            argv.extend(args.iter());
            argv.extend(["bash", "-c", command]);
            job_from_output(&as_user(&argv, cell.env))
        }
    }
}

/// Slurm's `ExitCode=` of a job (`0:0`), from `scontrol`.
fn exit_code(job: u32) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job.to_string()])
        .output()
        .expect("scontrol");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ExitCode="))
        .unwrap_or("?")
        .to_string()
}

/// Checks one cell; returns what is wrong with it.
fn check(cluster: &Cluster, cell: &Cell, dir: &std::path::Path) -> Vec<String> {
    let mut wrong = Vec::new();
    let job = match submit(cell, dir) {
        Ok(job) => job,
        Err(e) => return vec![e],
    };
    let state = wait_job(job, JOB_TIMEOUT);
    let code = exit_code(job);
    if (state.as_str(), code.as_str()) != (cell.state, cell.exit_code) {
        wrong.push(format!(
            "job {job} ended {state} {code}, expected {} {}",
            cell.state, cell.exit_code
        ));
    }
    wrong.extend(check_recording(cluster, job, cell.recorded.as_ref(), None));
    wrong
}

/// What is wrong with a job's recording on the node, given what was asked (`None`: nothing)
/// and the job's array ids, if it is an array task.
fn check_recording(
    cluster: &Cluster,
    job: u32,
    expected: Option<&Recorded>,
    array: Option<(u32, u32)>,
) -> Vec<String> {
    let dir = cluster.job_dir(job);
    let Some(expected) = expected else {
        return if dir.exists() {
            vec![format!("job {job} was recorded, and nobody asked")]
        } else {
            vec![]
        };
    };
    let mut wrong = Vec::new();
    let meta = match wait_meta(cluster, job) {
        Ok(meta) => meta,
        Err(e) => return vec![e],
    };
    if meta.period_ms != expected.period_ms {
        wrong.push(format!(
            "job {job} recorded every {} ms, expected {}",
            meta.period_ms, expected.period_ms
        ));
    }
    let mut steps = meta.steps.clone();
    // Concurrent steps are listed in the order they started.
    steps.sort_by_key(|s| (s != "batch", s.parse::<u32>().ok()));
    if steps != expected.steps {
        wrong.push(format!(
            "job {job} recorded steps {:?}, expected {:?}",
            meta.steps, expected.steps
        ));
    }
    if (meta.array_job_id, meta.array_task_id) != (array.map(|a| a.0), array.map(|a| a.1)) {
        wrong.push(format!(
            "job {job}'s array ids are {array:?}, its recording says {:?}_{:?}",
            meta.array_job_id, meta.array_task_id
        ));
    }
    // An array task is named as users name it; the array's own id stands for all its tasks.
    let name = array.map_or(job.to_string(), |(a, t)| format!("{a}_{t}"));
    let report = Command::new("runuser")
        .args(["-u", TEST_USER, "--"])
        .arg(cluster.bin_dir.join("aipm-analyze"))
        .args(["job", &name])
        .env("AIPM_SPOOL", &cluster.spool)
        .output()
        .expect("aipm-analyze");
    let text = String::from_utf8_lossy(&report.stdout);
    if !report.status.success() || !text.starts_with(&format!("Job {name} ")) {
        wrong.push(format!(
            "the user's `aipm-analyze job {name}` failed: {text}{}",
            String::from_utf8_lossy(&report.stderr)
        ));
    }
    wrong
}

/// The node's metadata once its sampler has written the end (it follows the job's end by
/// at most the step's stop limit).
fn wait_meta(cluster: &Cluster, job: u32) -> Result<Meta, String> {
    let path = cluster
        .job_dir(job)
        .join(format!("{}.meta.json", node_name()));
    let start = Instant::now();
    loop {
        let meta = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Meta::from_json(&t).ok());
        match meta {
            Some(meta) if meta.end_unix_ms.is_some() => return Ok(meta),
            _ if start.elapsed() > Duration::from_secs(10) => {
                return Err(format!(
                    "{} has no finished recording ({:?})",
                    path.display(),
                    meta.map(|m| m.steps)
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn scripts_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aipm-submission-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The test user reads the scripts.
    Command::new("chmod")
        .arg("0755")
        .arg(&dir)
        .status()
        .unwrap();
    dir
}

fn run_matrix(cluster: &Cluster, cells: &[Cell]) {
    let dir = scripts_dir();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cells
            .iter()
            .map(|cell| {
                let dir = &dir;
                scope.spawn(move || (cell.name, check(cluster, cell, dir)))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                let (name, wrong) = h.join().expect("cell thread");
                wrong.into_iter().map(move |w| format!("{name}: {w}"))
            })
            .collect()
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_way_of_submitting_runs_the_job_as_without_the_plugin_and_records_what_was_asked() {
    let _g = shared();
    let cluster = cluster();
    run_matrix(cluster, &matrix());
}

#[test]
fn a_malformed_value_typed_at_submission_is_refused_with_the_reason() {
    let _g = shared();
    cluster();
    let says = "expected a period such as 500ms, 2s or 1 (seconds), or off";
    let dir = scripts_dir();
    let file = dir.join("bad-line.sh");
    std::fs::write(&file, script(&["#SBATCH --energy-profile=banana", "true"])).unwrap();
    let file = file.to_string_lossy().into_owned();
    for argv in [
        vec!["sbatch", "--energy-profile=banana", "--wrap", "true"],
        vec!["sbatch", &file],
        vec!["srun", "--energy-profile=banana", "true"],
        vec!["salloc", "--energy-profile=banana", "true"],
    ] {
        let out = as_user(&argv, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{argv:?} was accepted");
        assert!(err.contains(says), "{argv:?}: {err}");
    }
}

/// Writes a batch script the test user can read; returns its path.
fn script_file(name: &str, lines: &[&str]) -> String {
    let path = scripts_dir().join(name);
    std::fs::write(&path, script(lines)).unwrap();
    path.to_string_lossy().into_owned()
}

/// `sbatch --parsable ARGS` as the test user; the job id.
fn sbatch_as_user(args: &[&str]) -> u32 {
    let mut argv = vec!["sbatch", "--parsable", "-o", "/dev/null", "-e", "/dev/null"];
    argv.extend(args);
    let out = as_user(&argv, &[]);
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// One `scontrol -o show job` field of each job the id stands for (an array: its tasks).
fn jobs_fields(id: u32, field: &str) -> Vec<String> {
    let out = Command::new("scontrol")
        .args(["-o", "show", "job", &id.to_string()])
        .output()
        .expect("scontrol");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{field}=")))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn each_task_of_a_throttled_array_submitted_with_the_bare_flag_is_recorded() {
    let _g = shared();
    let cluster = cluster();
    let file = script_file("array.sh", &["#SBATCH --energy-profile", "srun true"]);
    let array = sbatch_as_user(&["--array=1-3%2", &file]);
    let start = Instant::now();
    // The array's line stands for its pending tasks until each has its own.
    while jobs_fields(array, "ArrayTaskId")
        .iter()
        .any(|t| t.contains('-') || t.contains('%'))
        || jobs_fields(array, "JobState").iter().any(|s| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"
            )
        })
    {
        assert!(start.elapsed() < JOB_TIMEOUT, "array {array} not done");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ids = jobs_fields(array, "JobId");
    let tasks = jobs_fields(array, "ArrayTaskId");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let mut wrong = Vec::new();
    for (id, task) in ids.iter().zip(&tasks) {
        let (job, task): (u32, u32) = (id.parse().unwrap(), task.parse().unwrap());
        if (job_state(job).unwrap_or_default(), exit_code(job))
            != ("COMPLETED".into(), "0:0".into())
        {
            wrong.push(format!("task {task} (job {job}) did not complete"));
        }
        let expected = Recorded {
            period_ms: DEFAULT_PERIOD_MS,
            steps: &["batch", "0"],
        };
        wrong.extend(check_recording(
            cluster,
            job,
            Some(&expected),
            Some((array, task)),
        ));
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn a_job_that_waits_for_another_is_recorded_from_its_own_start() {
    let _g = shared();
    let cluster = cluster();
    let first = sbatch_as_user(&["--energy-profile", "--wrap", "sleep 1"]);
    let then = sbatch_as_user(&[
        "--energy-profile",
        &format!("--dependency=afterok:{first}"),
        "--wrap",
        "srun true",
    ]);
    for job in [first, then] {
        assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    }
    let steps: &[&str] = &["batch", "0"];
    let wrong = check_recording(
        cluster,
        then,
        Some(&Recorded {
            period_ms: DEFAULT_PERIOD_MS,
            steps,
        }),
        None,
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    let (a, b) = (
        wait_meta(cluster, first).unwrap(),
        wait_meta(cluster, then).unwrap(),
    );
    assert!(
        b.start_unix_ms >= a.end_unix_ms.unwrap(),
        "job {then} was recorded from before the job it waited for ended"
    );
}

#[test]
fn a_requeued_job_is_recorded_by_its_last_run_and_keeps_the_earlier_one_aside() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch_as_user(&["--requeue", "--energy-profile", "--wrap", "srun sleep 2"]);
    let dir = cluster.job_dir(job);
    let steps = dir.join(format!("{}.steps", node_name()));
    let start = Instant::now();
    while !std::fs::read_to_string(&steps)
        .unwrap_or_default()
        .contains('0')
    {
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "job {job}'s step 0 never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let requeued_ms = aipm_recording::time::now_unix_ms();
    let out = Command::new("scontrol")
        .args(["requeue", &job.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Slurm holds a requeued batch job back two minutes before it may start again.
    assert_eq!(wait_job(job, Duration::from_secs(300)), "COMPLETED");
    assert_eq!(jobs_fields(job, "Restarts"), ["1"]);
    let steps: &[&str] = &["batch", "0"];
    let wrong = check_recording(
        cluster,
        job,
        Some(&Recorded {
            period_ms: DEFAULT_PERIOD_MS,
            steps,
        }),
        None,
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    let last = wait_meta(cluster, job).unwrap();
    assert!(
        last.start_unix_ms > requeued_ms,
        "the recording is not the last run's"
    );
    let aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{}.meta.json.previous-", node_name())))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the first run's metadata is not kept aside: {aside:?}"
    );
}

#[test]
fn the_admins_default_records_every_job_and_each_opt_out_setting_is_honoured() {
    let _g = exclusive();
    let cluster = cluster();
    let _conf = cluster.with_plugin_args("default=on period=300ms");
    run_matrix(
        cluster,
        &[
            Cell::new("default=on, no option", sbatch(&[], &["srun true"]))
                .recorded(300, &["batch", "0"]),
            Cell::new(
                "default=on, opted out",
                sbatch(&["--energy-profile=off"], &["srun true"]),
            ),
            Cell::new(
                "default=on, srun alone",
                How::Srun {
                    args: &[],
                    command: "echo JOB=$SLURM_JOB_ID",
                },
            )
            .recorded(300, &["0"]),
        ],
    );
    drop(_conf);
    let _conf = cluster.with_plugin_args("default=on allow_opt_out=no");
    run_matrix(
        cluster,
        &[Cell::new(
            "default=on allow_opt_out=no, opted out",
            sbatch(&["--energy-profile=off"], &["srun true"]),
        )
        .recorded(DEFAULT_PERIOD_MS, &["batch", "0"])],
    );
}
