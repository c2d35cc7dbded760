//! End-to-end: real sbatch/salloc/srun jobs on a real single-node Slurm with the aipm
//! plugin, checked the way a user would: the recording on the node and `aipm-analyze job`.
//! Issue #2 (the spine).

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use aipm_e2e::*;
use aipm_recording::samples::{self, Samples};
use aipm_recording::source::State;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Seconds of CPU the job's processes used, as bash's `times` printed it ("0m2.991s 0m0.004s").
fn parse_times(text: &str) -> f64 {
    let children = text.lines().nth(1).expect("times prints two lines");
    children
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').expect("NmS.SSSs");
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum()
}

fn samples_of(cluster: &Cluster, job_id: u32) -> Samples {
    Samples::read(
        &cluster
            .job_dir(job_id)
            .join(format!("{}.samples.csv", node_name())),
    )
    .unwrap()
}

#[test]
fn a_users_job_is_recorded_with_its_ids_ownership_samples_and_cpu_time() {
    let _g = shared();
    let cluster = cluster();
    let burn = "date +%s%3N > /tmp/aipm-e2e-start-$SLURM_JOB_ID; \
                timeout 3 sh -c 'while :; do :; done'; times > /tmp/aipm-e2e-times-$SLURM_JOB_ID; \
                date +%s%3N > /tmp/aipm-e2e-end-$SLURM_JOB_ID";
    let job = sbatch(
        Some(TEST_USER),
        &["--energy-profile=200ms", "-J", "burn3"],
        burn,
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let meta = finished_meta(cluster, job, Duration::from_secs(5));

    let uid = uid_of(TEST_USER);
    assert_eq!(meta.job_id, job);
    assert_eq!((meta.user.as_str(), meta.uid), (TEST_USER, uid));
    assert_eq!(meta.job_name.as_deref(), Some("burn3"));
    assert_eq!(meta.steps, ["batch"]);
    assert_eq!(meta.node, node_name());
    assert_eq!(meta.period_ms, 200);
    assert_eq!(meta.cpus, Some(1));

    // The sampler covers the job: it starts before the script's first command (it starts
    // when the task is forked) and writes its end within 2 s of the script's last one.
    let stamp = |what: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/tmp/aipm-e2e-{what}-{job}")).unwrap();
        text.trim().parse().unwrap()
    };
    let (script_start, script_end) = (stamp("start"), stamp("end"));
    assert!(
        meta.start_unix_ms <= script_start + 200,
        "sampler began {} ms after the script",
        meta.start_unix_ms - script_start
    );
    let end = meta.end_unix_ms.unwrap();
    assert!(
        end >= script_end && end - script_end < 2000,
        "sampler ended {} ms after the script",
        end as i64 - script_end as i64
    );

    // Everything belongs to the job's user, is readable by SlurmUser's group (the
    // cluster's reader_group=slurm, for the controller's epilog) and closed to others.
    let dir = cluster.job_dir(job);
    let slurm_gid = gid_of("slurm");
    let dir_meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (dir_meta.uid(), dir_meta.gid(), dir_meta.mode() & 0o777),
        (uid, slurm_gid, 0o750)
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let m = entry.unwrap().metadata().unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (uid, slurm_gid, 0o640),
            "{dir:?}"
        );
    }

    // One sample per period over the window, within 20%.
    let samples = samples_of(cluster, job);
    let window_s = (meta.end_unix_ms.unwrap() - meta.start_unix_ms) as f64 / 1000.0;
    let expected = window_s / 0.2 + 1.0;
    let n = samples.rows.len() as f64;
    assert!(
        (n - expected).abs() <= 0.2 * expected,
        "{n} samples over {window_s} s"
    );
    assert!((3.0..6.0).contains(&window_s), "window {window_s} s");

    // The job's CPU time as the job itself measured it, within 10%.
    let times = std::fs::read_to_string(format!("/tmp/aipm-e2e-times-{job}")).unwrap();
    let burned = parse_times(&times);
    let recorded = samples.values(samples::CPU_COLUMN).last().unwrap() as f64 / 1e9;
    assert!(burned > 1.0, "the job burned only {burned} s");
    assert!(
        (recorded - burned).abs() <= 0.1 * burned,
        "recorded {recorded} s, job measured {burned} s"
    );

    // The simulated package runs at a known power: its energy is power × window.
    let energy_j = |channel: &str| {
        let v: Vec<u64> = samples.values(&samples::energy_column(channel)).collect();
        (v.last().unwrap() - v.first().unwrap()) as f64 / 1e6
    };
    let times_ms: Vec<u64> = samples.values(samples::TIME_COLUMN).collect();
    let sampled_s = (times_ms.last().unwrap() - times_ms[0]) as f64 / 1000.0;
    let package = energy_j("rapl:package-0");
    assert!(
        (package - SIM_PACKAGE_W * sampled_s).abs() < 0.05 * SIM_PACKAGE_W * sampled_s,
        "{package} J in {sampled_s} s"
    );
    let dram = energy_j("rapl:package-0/dram");
    assert!(
        (dram - SIM_DRAM_W * sampled_s).abs() < 0.05 * SIM_DRAM_W * sampled_s,
        "{dram} J in {sampled_s} s"
    );
}

#[test]
fn aipm_analyze_job_reads_the_recording_back_in_every_format() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch(None, &["--energy-profile=250ms", "--mem=3G"], "sleep 1.5").unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    assert_eq!(
        meta.mem_alloc_bytes,
        Some(3 << 30),
        "what the job asked for"
    );
    let id = job.to_string();

    let table = cluster.analyze(&["job", &id]);
    assert!(table.status.success(), "{table:?}");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with(&format!("Job {job} (wrap), user root")),
        "{text}"
    );
    assert!(
        text.contains("rapl:package-0") && text.contains("every 250ms"),
        "{text}"
    );

    let json = cluster.analyze(&["job", &id, "--format", "json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let node = &nodes[0];
    assert_eq!(node["job_id"], job);
    assert_eq!(node["node"], node_name());
    let duration = node["duration_s"].as_f64().unwrap();
    assert!((1.4..4.0).contains(&duration), "{duration}");
    let package = node["energy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["channel"] == "rapl:package-0")
        .unwrap();
    let watts = package["node_mean_power_w"].as_f64().unwrap();
    assert!((watts - SIM_PACKAGE_W).abs() < 2.0, "{watts} W");
    // `sleep` used a few MiB of the 3 GiB it asked for: the report says so.
    let notes = node["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("of the 3.0 GiB it was allocated on this node")),
        "{notes:?}"
    );

    // Its plot: a PNG of the stated size.
    let png = std::env::temp_dir().join(format!("aipm-e2e-{job}.png"));
    let plot = cluster.analyze(&[
        "job",
        &id,
        "--plot",
        png.to_str().unwrap(),
        "--plot-size",
        "800x400",
    ]);
    assert!(plot.status.success(), "{plot:?}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (800, 400));
    std::fs::remove_file(&png).unwrap();

    let csv = cluster.analyze(&["job", &id, "--format", "csv"]);
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let text = String::from_utf8_lossy(&csv.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("job,job_id,user,node,"));
    assert!(lines[1].starts_with(&format!("{job},{job},root,{},batch,", node_name())));
    let count = |l: &str| l.split(',').count();
    assert_eq!(count(lines[0]), count(lines[1]), "one value per column");

    let unknown = cluster.analyze(&["job", "999999"]);
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no recording of job 999999"), "{err}");
}

#[test]
fn a_job_without_the_option_or_opted_out_leaves_nothing() {
    let _g = shared();
    let cluster = cluster();
    let plain = sbatch(None, &[], "sleep 0.5").unwrap();
    let off = sbatch(None, &["--energy-profile=off"], "sleep 0.5").unwrap();
    for job in [plain, off] {
        assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
        assert!(!cluster.job_dir(job).exists(), "job {job} was recorded");
    }
}

#[test]
fn a_bad_period_is_refused_at_submission() {
    let _g = shared();
    cluster();
    for (value, says) in [
        (
            "banana",
            "expected a period such as 500ms, 2s or 1 (seconds), or off",
        ),
        ("10ms", "minimum of 100ms"),
    ] {
        let err = sbatch(None, &[&format!("--energy-profile={value}")], "true").unwrap_err();
        let ours: Vec<&str> = err.lines().filter(|l| l.contains("aipm:")).collect();
        assert_eq!(ours.len(), 1, "{err}");
        assert!(ours[0].contains(says), "{err}");
    }
}

#[test]
fn each_task_of_a_job_array_has_its_own_recording() {
    let _g = shared();
    let cluster = cluster();
    let array = sbatch(
        None,
        &["--energy-profile=200ms", "--array=0-2"],
        "sleep 0.5",
    )
    .unwrap();
    let mut job_ids = Vec::new();
    for task in 0..3 {
        let name = format!("{array}_{task}");
        let start = Instant::now();
        let out = loop {
            let out = cluster.analyze(&["job", &name, "--format", "json"]);
            let done = out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["end_utc"]
                    .is_string();
            if done || start.elapsed() > JOB_TIMEOUT {
                break out;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0]["job"], name);
        job_ids.push(report[0]["job_id"].as_u64().unwrap());
    }
    job_ids.sort();
    job_ids.dedup();
    assert_eq!(job_ids.len(), 3, "three tasks, three jobs: {job_ids:?}");

    // The array's own id: every task.
    let all = cluster.analyze(&["job", &array.to_string(), "--format", "json"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let names: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            format!("{array}_0"),
            format!("{array}_1"),
            format!("{array}_2")
        ]
    );
}

#[test]
fn steps_of_an_allocation_hand_the_sampler_over_without_a_gap() {
    let _g = shared();
    let cluster = cluster();
    // Step 0 starts first and leads; step 1 outlives it and must take over.
    let out = Command::new("salloc")
        .current_dir("/tmp")
        .args(["-n2", "--energy-profile=200ms", "bash", "-c"])
        .arg("srun -n1 --exact sleep 1 & sleep 0.4; srun -n1 --exact sleep 3; wait; echo JOB=$SLURM_JOB_ID")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JOB="))
        .unwrap()
        .parse()
        .unwrap();
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    assert_eq!(meta.steps, ["0", "1"]);
    assert_eq!(meta.sampler.handovers, 1, "{:?}", meta.sampler);

    let samples = samples_of(cluster, job);
    let t: Vec<u64> = samples.values(samples::TIME_COLUMN).collect();
    let widest_gap = t.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest_gap <= 200 + 250,
        "a gap of {widest_gap} ms at the handover"
    );
    // The energy count continues across the handover: power × time still holds.
    let e: Vec<u64> = samples
        .values(&samples::energy_column("rapl:package-0"))
        .collect();
    assert!(e.windows(2).all(|w| w[1] >= w[0]), "energy went backwards");
    let sampled_s = (t.last().unwrap() - t[0]) as f64 / 1000.0;
    let package = (e.last().unwrap() - e[0]) as f64 / 1e6;
    assert!(
        (package - SIM_PACKAGE_W * sampled_s).abs() < 0.05 * SIM_PACKAGE_W * sampled_s,
        "{package} J in {sampled_s} s"
    );
}

#[test]
fn scancel_stops_the_sampler_promptly_and_leaves_nothing_behind() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch(None, &["--energy-profile"], "srun -n1 sleep 300").unwrap();
    wait_running(job, JOB_TIMEOUT);
    // Let the srun step start, so there are two stepds.
    wait_for_step(cluster, job, "0");
    std::thread::sleep(Duration::from_millis(500));
    let cancelled_ms = aipm_recording::time::now_unix_ms();
    assert!(Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap()
        .success());
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    let lag_ms = meta.end_unix_ms.unwrap().saturating_sub(cancelled_ms);
    assert!(
        lag_ms < 2000,
        "the sampler stopped {lag_ms} ms after scancel"
    );
    assert_eq!(wait_job(job, JOB_TIMEOUT), "CANCELLED");
    assert_nothing_left(job);
}

#[test]
fn default_on_records_every_job_and_honours_opt_out() {
    let _g = exclusive();
    let cluster = cluster();
    let _conf = cluster.with_plugin_args("default=on period=300ms");
    let plain = sbatch(None, &[], "sleep 0.5").unwrap();
    let off = sbatch(None, &["--energy-profile=off"], "sleep 0.5").unwrap();
    assert_eq!(wait_job(plain, JOB_TIMEOUT), "COMPLETED");
    assert_eq!(wait_job(off, JOB_TIMEOUT), "COMPLETED");
    assert_eq!(
        finished_meta(cluster, plain, Duration::from_secs(5)).period_ms,
        300
    );
    assert!(
        !cluster.job_dir(off).exists(),
        "the opted-out job was recorded"
    );

    drop(_conf);
    let _conf = cluster.with_plugin_args("default=on allow_opt_out=no");
    let forced = sbatch(None, &["--energy-profile=off"], "sleep 0.5").unwrap();
    assert_eq!(wait_job(forced, JOB_TIMEOUT), "COMPLETED");
    finished_meta(cluster, forced, Duration::from_secs(5));
}

#[test]
fn a_missing_spool_never_fails_the_job_and_is_logged() {
    let _g = exclusive();
    let cluster = cluster();
    let _conf = cluster.with_plugin_args("spool=/var/spool/aipm-missing");
    let job = sbatch(None, &["--energy-profile=200ms"], "sleep 0.5; exit 0").unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let log = cluster.slurmd_log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("[{job}.batch]")) && l.contains("aipm:"))
        .unwrap_or_else(|| panic!("no aipm line for job {job} in slurmd.log"));
    assert!(
        line.contains("opening spool /var/spool/aipm-missing"),
        "{line}"
    );
}

/// Waits until the job's recording lists `step`.
fn wait_for_step(cluster: &Cluster, job: u32, step: &str) {
    let path = cluster.job_dir(job).join(format!("{}.steps", node_name()));
    let start = Instant::now();
    while !std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .any(|l| l == step)
    {
        assert!(
            start.elapsed() < JOB_TIMEOUT,
            "step {step} of job {job} never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no slurmstepd of the job is left.
fn assert_nothing_left(job: u32) {
    let start = Instant::now();
    while !stepd_processes(job).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "left behind: {:?}",
            stepd_processes(job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_killed_for_its_memory_keeps_its_recording_and_leaves_nothing() {
    let _g = shared();
    let cluster = cluster();
    // `tail` holds a line without newline in memory: 1 GiB against a 64 MiB limit.
    let job = sbatch(
        None,
        &["--energy-profile=200ms", "--mem=64M"],
        "sleep 0.5; head -c 1G /dev/zero | tail > /dev/null",
    )
    .unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "OUT_OF_MEMORY");
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    assert!(meta.sampler.samples >= 2, "{:?}", meta.sampler);
    let peak = samples_of(cluster, job)
        .values(samples::MEM_PEAK_COLUMN)
        .max()
        .unwrap();
    assert!(peak >= 60 << 20, "peak memory {peak} bytes");
    assert_nothing_left(job);
}

#[test]
fn a_job_killed_at_its_time_limit_keeps_its_recording_and_leaves_nothing() {
    let guard = shared();
    let cluster = cluster();
    // Slurm's smallest time limit is one minute.
    let job = sbatch(
        None,
        &["--energy-profile", "--time=1"],
        "srun -n1 sleep 600",
    )
    .unwrap();
    // Once both steps run, later configuration changes cannot reach this job: let other
    // tests change it meanwhile.
    wait_for_step(cluster, job, "0");
    drop(guard);
    assert_eq!(wait_job(job, Duration::from_secs(240)), "TIMEOUT");
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    let window_s = (meta.end_unix_ms.unwrap() - meta.start_unix_ms) / 1000;
    assert!(
        window_s >= 59,
        "recorded {window_s} s of a job killed after 60 s"
    );
    assert_nothing_left(job);
}

#[test]
fn the_option_is_listed_by_sbatch_srun_and_salloc() {
    let _g = shared();
    cluster();
    for tool in ["sbatch", "srun", "salloc"] {
        let out = Command::new(tool).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let plugins = help
            .split("Options provided by plugins:")
            .nth(1)
            .unwrap_or_else(|| panic!("{tool}: {help}"));
        assert!(
            plugins.contains("--energy-profile=PERIOD|off"),
            "{tool}: {plugins}"
        );
        assert!(
            plugins.contains("aipm-analyze job JOBID"),
            "{tool}: {plugins}"
        );
    }
}

/// Runs `argv` and asserts it succeeded.
fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_jobs_sharing_the_node_split_its_energy_by_their_cpu_time() {
    // No other test's job may run meanwhile: the node must be these two jobs' alone.
    let _g = exclusive();
    let cluster = cluster();
    // Held, then released together, so both start in the same scheduling cycle. A runs
    // two processes, B one, each busy half of the time: 1.5 of the node's 2 CPUs, so the
    // kernel's per-job fair share never throttles A and the CPU times stay 2:1.
    let busy = |processes: usize| {
        let duty = "perl -MTime::HiRes=time,sleep -e '$e = time + 6; \
                    while (time < $e) { $t = time; 1 while time - $t < 0.01; sleep(0.01) }' &";
        format!("{} wait", vec![duty; processes].join(" "))
    };
    let a = sbatch(None, &["-H", "-n1", "--energy-profile=250ms"], &busy(2)).unwrap();
    let b = sbatch(None, &["-H", "-n1", "--energy-profile=250ms"], &busy(1)).unwrap();
    run(&["scontrol", "release", &format!("{a},{b}")]);
    for job in [a, b] {
        assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
        finished_meta(cluster, job, Duration::from_secs(5));
    }
    let report = |job: u32| -> serde_json::Value {
        let out = cluster.analyze(&["job", &job.to_string(), "--format", "json"]);
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    let (ra, rb) = (report(a), report(b));
    let package = |r: &serde_json::Value, field: &str| {
        let e = r["energy"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["channel"] == "rapl:package-0")
            .unwrap();
        e[field].as_f64().unwrap()
    };
    for r in [&ra, &rb] {
        assert_eq!(r["attribution"], "shared", "{r}");
        // Conservation within each job's report: its part plus the rest is the node's.
        let (job, node, rest) = (
            package(r, "job_energy_j"),
            package(r, "node_energy_j"),
            package(r, "unattributed_j"),
        );
        assert!((job + rest - node).abs() < 1e-6 * node.max(1.0), "{r}");
    }
    // Shares of the node's energy over each job's own window.
    let fa = package(&ra, "job_energy_j") / package(&ra, "node_energy_j");
    let fb = package(&rb, "job_energy_j") / package(&rb, "node_energy_j");
    assert!(
        (1.6..2.5).contains(&(fa / fb)),
        "A took {fa:.3} of the node, B {fb:.3}: not about 2:1"
    );
    // The two jobs did most of the node's work: together they get most of its energy, the
    // rest going to the system (the simulator, slurmd, this test). Each share is taken over
    // its own job's window and samples, with /proc/stat counting in 10 ms ticks, so the sum
    // may pass 1 by a few percent, never by much.
    assert!(
        (0.75..1.06).contains(&(fa + fb)),
        "A {fa:.3} + B {fb:.3} of the node"
    );
}

#[test]
fn a_gpu_job_gets_exactly_its_gpus_counter_delta() {
    let _g = shared();
    let cluster = cluster();
    let job = sbatch(None, &["--gres=gpu:1", "--energy-profile=200ms"], "sleep 2").unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    let meta = finished_meta(cluster, job, Duration::from_secs(5));
    assert_eq!(meta.gpus, ["0"], "Slurm allocated GPU 0");
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Found, "{nvml:?}");
    assert_eq!(
        nvml.channels,
        [SIM_GPU0_UUID],
        "only the job's GPU is sampled"
    );

    // The job's GPU energy is the counter's delta between its first and last samples.
    let samples = samples_of(cluster, job);
    let channel = format!("nvml:{SIM_GPU0_UUID}");
    let raw: Vec<u64> = samples.values(&samples::raw_column(&channel)).collect();
    let counter_delta_j = (raw.last().unwrap() - raw[0]) as f64 / 1e6;
    let out = cluster.analyze(&["job", &job.to_string(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpu_j = report[0]["job_gpu_j"].as_f64().unwrap();
    assert!(
        (gpu_j - counter_delta_j).abs() < 1e-6,
        "report {gpu_j} J, counter {counter_delta_j} J"
    );
    // And the simulated GPU draws a known power.
    let t: Vec<u64> = samples.values(samples::TIME_COLUMN).collect();
    let sampled_s = (t.last().unwrap() - t[0]) as f64 / 1000.0;
    assert!(
        (gpu_j - SIM_GPU0_W * sampled_s).abs() < 0.02 * SIM_GPU0_W * sampled_s,
        "{gpu_j} J in {sampled_s} s"
    );
    let gpu = &report[0]["gpus"][0];
    assert_eq!(gpu["mean_util_pct"], 90.0);
    assert_eq!(gpu["peak_mem_bytes"], 20u64 << 30);

    // A job without GPUs does not open NVML at all.
    let cpu_only = sbatch(None, &["--energy-profile=200ms"], "sleep 0.3").unwrap();
    assert_eq!(wait_job(cpu_only, JOB_TIMEOUT), "COMPLETED");
    let meta = finished_meta(cluster, cpu_only, Duration::from_secs(5));
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(
        (nvml.status.as_str(), nvml.detail.as_str()),
        ("absent", "no GPU allocated to the job")
    );
}

#[test]
fn a_reused_job_id_moves_the_older_recording_aside() {
    let _g = shared();
    let cluster = cluster();
    // Slurm's next id is not known beforehand: a held job gets one, an older recording of
    // that id is planted (as if Slurm's state had been wiped), then the job is released.
    let id = sbatch(
        Some(TEST_USER),
        &["--hold", "--energy-profile=100ms"],
        "sleep 0.5",
    )
    .unwrap();
    let node = node_name();
    let dir = cluster.job_dir(id);
    let older_start_ms = 1_600_000_000_000u64;
    let older = aipm_recording::meta::Meta {
        job_id: id,
        node: node.clone(),
        user: TEST_USER.into(),
        start_unix_ms: older_start_ms,
        end_unix_ms: Some(older_start_ms + 60_000),
        ..Default::default()
    };
    let older_samples = "time_unix_ms\n1600000000000\n";
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{node}.meta.json")), older.to_json()).unwrap();
    std::fs::write(dir.join(format!("{node}.samples.csv")), older_samples).unwrap();
    std::fs::write(dir.join(format!("{node}.steps")), "batch\n").unwrap();
    let user = Command::new("id").args(["-u", TEST_USER]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&user.stdout)
        .trim()
        .parse()
        .unwrap();
    for entry in std::iter::once(dir.clone())
        .chain(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()))
    {
        std::os::unix::fs::chown(&entry, Some(uid), Some(uid)).unwrap();
    }
    let released = Command::new("scontrol")
        .args(["release", &id.to_string()])
        .status()
        .unwrap();
    assert!(released.success());
    assert_eq!(wait_job(id, JOB_TIMEOUT), "COMPLETED");

    // The job's own recording, new; the older one kept beside it, untouched.
    let meta = finished_meta(cluster, id, JOB_TIMEOUT);
    assert!(meta.start_unix_ms > older_start_ms);
    assert_eq!(
        meta.sampler.handovers, 0,
        "a new recording, not a continuation"
    );
    let aside = |name: &str| dir.join(format!("{node}.{name}.previous-{older_start_ms}"));
    assert_eq!(
        std::fs::read_to_string(aside("samples.csv")).unwrap(),
        older_samples
    );
    assert!(aside("meta.json").exists() && aside("steps").exists());
    assert!(
        cluster.slurmd_log().contains(&format!(
            "job {id}: an older recording with this id was found; this node's files were moved to *.previous-{older_start_ms}"
        )),
        "the move is logged"
    );
    let out = cluster.analyze(&["job", &id.to_string(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report[0]["duration_s"].as_f64().unwrap() < 30.0, "{report}");
}

/// A small file system mounted for one test, unmounted when dropped.
struct Mounted(&'static str);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_spool_stays_out_of_the_users_output_and_the_report_says_the_recording_failed() {
    let _g = exclusive();
    let cluster = cluster();
    let spool = "/var/spool/aipm-full";
    std::fs::create_dir_all(spool).unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k,mode=0755",
        "tmpfs",
        spool,
    ]);
    let _mounted = Mounted(spool);
    // Full: every page taken, while names (a job directory, empty files) can still be made.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={spool}/filler"), "bs=4k"])
        .output();
    let _conf = cluster.with_plugin_args(&format!("spool={spool}"));
    let output = format!("/tmp/aipm-full-spool-{}.out", std::process::id());
    let out = Command::new("runuser")
        .args([
            "-u",
            TEST_USER,
            "--",
            "sbatch",
            "--parsable",
            "--energy-profile",
            "-o",
            &output,
        ])
        .args(["--wrap", "srun true; echo done"])
        .current_dir("/tmp")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let job: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(wait_job(job, JOB_TIMEOUT), "COMPLETED");
    // The user's output is theirs alone: no word of the spool's trouble.
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text, "done\n", "{text}");
    let _ = std::fs::remove_file(&output);
    // The trouble is in slurmd's log, for the admin.
    let log = cluster.slurmd_log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("[{job}.")) && l.contains("aipm: error:")),
        "no aipm error for job {job} in slurmd.log"
    );
    // Nothing half-written is left in the user's directory, and the report says what
    // happened instead of "not recorded".
    let dir = std::path::Path::new(spool).join(job.to_string());
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let report = cluster.analyze(&["job", &job.to_string(), "--spool", spool]);
    let err = String::from_utf8_lossy(&report.stderr);
    assert_eq!(report.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "recording failed as it began on node(s) {}",
            node_name()
        )),
        "{err}"
    );
}
