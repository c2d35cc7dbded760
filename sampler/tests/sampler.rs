//! The sampling thread against real files: a spool in a temporary directory, a simulated
//! powercap tree, and the election lock. Runs as root, like the plugin (fchown, mount).

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aipm_recording::layout::NodeName;
use aipm_recording::meta::Meta;
use aipm_recording::samples::{self, Samples};
use aipm_recording::source::State;
use aipm_sampler::sampler::{GpuPlan, Level, Log, Sampler, SamplerSetup};
use aipm_sampler::sources::powercap::PowercapSource;
use aipm_sampler::sources::{EnergySource, Found};
use aipm_sampler::spool::{retire_previous, ElectionLock, JobFiles, RecordedGpus, Retired};
use aipm_sampler::usage::{JobUsage, ProcessTree};

const JOB: u32 = 77;
const RANGE: u64 = 1_000_000;

/// Overwrite the counter in place, as sysfs values change: a truncating write could be
/// read half-done by the sampler.
fn write_counter(root: &Path, value: u64) {
    use std::os::unix::fs::FileExt;
    let path = root.join("intel-rapl:0/energy_uj");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    let text = format!("{value}\n");
    file.write_all_at(text.as_bytes(), 0).unwrap();
    file.set_len(text.len() as u64).unwrap();
}

fn powercap(root: &Path) -> Vec<Box<dyn EnergySource>> {
    let zone = root.join("intel-rapl:0");
    fs::create_dir_all(&zone).unwrap();
    fs::write(zone.join("name"), "package-0\n").unwrap();
    fs::write(zone.join("max_energy_range_uj"), format!("{RANGE}\n")).unwrap();
    if !zone.join("energy_uj").exists() {
        write_counter(root, 0);
    }
    match PowercapSource::open(root, &mut Vec::new()) {
        Found::Present(s) => vec![Box::new(s)],
        Found::Absent(why) => panic!("{why}"),
    }
}

type Messages = Arc<Mutex<Vec<String>>>;

fn setup(dir: &Path, period_ms: u64, messages: &Messages) -> SamplerSetup {
    let node = NodeName::new("n1").unwrap();
    let spool = dir.join("spool");
    let files = JobFiles::open(&spool, JOB, &node, 0, 0).unwrap();
    let messages = Arc::clone(messages);
    let log: Log = Arc::new(move |level, msg: &str| {
        if level == Level::Error {
            messages.lock().unwrap().push(msg.to_string());
        }
    });
    SamplerSetup {
        period: Duration::from_millis(period_ms),
        files,
        lock: ElectionLock::open(&dir.join("locks"), JOB).unwrap(),
        sources: powercap(&dir.join("powercap")),
        usage: None,
        node: None,
        gpus: None,
        meta: Meta {
            job_id: JOB,
            user: "root".into(),
            node: "n1".into(),
            period_ms,
            ..Meta::default()
        },
        log,
    }
}

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("spool")).unwrap();
    dir
}

fn read(dir: &Path) -> (Meta, Samples) {
    let job = dir.join("spool").join(JOB.to_string());
    let meta = Meta::from_json(&fs::read_to_string(job.join("n1.meta.json")).unwrap()).unwrap();
    (meta, Samples::read(&job.join("n1.samples.csv")).unwrap())
}

fn energy(samples: &Samples) -> Vec<u64> {
    samples
        .values(&samples::energy_column("rapl:package-0"))
        .collect()
}

#[test]
fn a_follower_takes_over_and_continues_the_count_across_a_wrap() {
    let dir = tempdir();
    let messages = Messages::default();
    let power = dir.path().join("powercap");
    let first = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    write_counter(&power, 400_000);
    std::thread::sleep(Duration::from_millis(150));
    first.stop();
    // While the second leads, the counter wraps: 900000 -> (wrap at 1000000) -> 100000.
    write_counter(&power, 900_000);
    std::thread::sleep(Duration::from_millis(400));
    write_counter(&power, 100_000);
    std::thread::sleep(Duration::from_millis(150));
    second.stop();

    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 1);
    assert_eq!(meta.sampler.counter_wraps, 1);
    assert_eq!(meta.sampler.samples as usize, samples.rows.len());
    assert!(meta.end_unix_ms.is_some());
    let e = energy(&samples);
    assert!(e.windows(2).all(|w| w[1] >= w[0]), "{e:?}");
    assert_eq!(*e.last().unwrap(), 400_000 + 500_000 + 200_000);
}

#[test]
fn a_line_cut_short_by_a_killed_sampler_is_removed_and_the_count_continues() {
    let dir = tempdir();
    let messages = Messages::default();
    let power = dir.path().join("powercap");
    powercap(&power);
    write_counter(&power, 1_000);
    let first = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    write_counter(&power, 5_000);
    std::thread::sleep(Duration::from_millis(80));
    first.stop();
    // A sampler killed in the middle of a line:
    let path = dir.path().join("spool/77/n1.samples.csv");
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("1795623629180,19853");
    fs::write(&path, &text).unwrap();
    assert!(read(dir.path()).1.truncated_tail);

    write_counter(&power, 9_000);
    let next = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    next.stop();
    let (_, samples) = read(dir.path());
    assert!(
        !samples.truncated_tail && samples.bad_lines.is_empty(),
        "{samples:?}"
    );
    assert_eq!(*energy(&samples).last().unwrap(), 8_000);
}

#[test]
fn a_full_disk_stops_the_writing_keeps_what_was_written_and_logs_once() {
    let dir = tempdir();
    let spool = dir.path().join("spool");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs"])
        .arg(&spool)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&spool);

    let messages = Messages::default();
    let sampler = Sampler::start(setup(dir.path(), 5, &messages)).unwrap();
    // About 25 bytes a line every 5 ms: the 16 KiB fill up within three seconds.
    std::thread::sleep(Duration::from_millis(3000));
    sampler.stop();

    let logged = messages.lock().unwrap().clone();
    let write_errors: Vec<_> = logged
        .iter()
        .filter(|m| m.contains("cannot write samples"))
        .collect();
    assert_eq!(write_errors.len(), 1, "{logged:?}");
    assert!(
        write_errors[0].contains("No space left on device"),
        "{logged:?}"
    );
    let samples = Samples::read(&spool.join("77/n1.samples.csv")).unwrap();
    assert!(
        samples.rows.len() > 10,
        "only {} samples kept",
        samples.rows.len()
    );
    assert!(samples.bad_lines.is_empty());
}

#[test]
fn a_new_job_with_a_reused_id_moves_the_old_recording_aside() {
    let dir = tempdir();
    let messages = Messages::default();
    let power = dir.path().join("powercap");
    powercap(&power);
    write_counter(&power, 50_000);
    let old = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    write_counter(&power, 90_000);
    std::thread::sleep(Duration::from_millis(120));
    old.stop();
    let (old_meta, _) = read(dir.path());
    // The job's end on this node: the epilog removes the lock file.
    ElectionLock::remove(&dir.path().join("locks"), JOB).unwrap();

    // Slurm's ids restarted: job 77 again, its prolog on this node.
    let (spool, node) = (dir.path().join("spool"), NodeName::new("n1").unwrap());
    let suffix = format!("previous-{}", old_meta.start_unix_ms);
    assert_eq!(
        retire_previous(&spool, JOB, &node, 0).unwrap(),
        Some(Retired::NodeFiles {
            suffix: suffix.clone()
        })
    );
    assert_eq!(
        retire_previous(&spool, JOB, &node, 0).unwrap(),
        None,
        "nothing left to move"
    );
    assert_eq!(
        retire_previous(&spool, JOB + 1, &node, 0).unwrap(),
        None,
        "no directory, nothing to move"
    );

    let new = Sampler::start(setup(dir.path(), 50, &messages)).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    new.stop();
    let (meta, samples) = read(dir.path());
    assert!(meta.start_unix_ms > old_meta.start_unix_ms);
    assert_eq!(
        meta.sampler.handovers, 0,
        "a new recording, not a continuation"
    );
    assert_eq!(*energy(&samples).last().unwrap(), 0);
    let job_dir = dir.path().join("spool/77");
    for name in ["n1.meta.json", "n1.samples.csv", "n1.steps"] {
        assert!(
            job_dir.join(format!("{name}.{suffix}")).exists(),
            "{name} kept aside"
        );
    }
    // A recording cut before its metadata was written is moved aside when it has samples;
    // empty files are left for the new job; a name already taken is never replaced.
    let n2 = NodeName::new("n2").unwrap();
    let cut = |suffix: &str| {
        Some(Retired::NodeFiles {
            suffix: suffix.into(),
        })
    };
    fs::write(job_dir.join("n2.samples.csv"), "").unwrap();
    assert_eq!(retire_previous(&spool, JOB, &n2, 0).unwrap(), None);
    fs::write(job_dir.join("n2.samples.csv"), "time_unix_ms\n1\n").unwrap();
    assert_eq!(
        retire_previous(&spool, JOB, &n2, 0).unwrap(),
        cut("previous-0")
    );
    fs::write(job_dir.join("n2.samples.csv"), "time_unix_ms\n2\n").unwrap();
    assert_eq!(
        retire_previous(&spool, JOB, &n2, 0).unwrap(),
        cut("previous-0-2")
    );
    assert_eq!(
        fs::read_to_string(job_dir.join("n2.samples.csv.previous-0")).unwrap(),
        "time_unix_ms\n1\n"
    );
}

#[test]
fn the_prolog_and_the_steps_never_wait_on_a_pipe_left_in_the_job_directory() {
    let dir = tempdir();
    let (spool, node) = (dir.path().join("spool"), NodeName::new("n1").unwrap());
    let job_dir = spool.join(JOB.to_string());
    fs::create_dir_all(&job_dir).unwrap();
    for name in ["n1.meta.json", "n1.samples.csv"] {
        let made = std::process::Command::new("mkfifo")
            .arg(job_dir.join(name))
            .status()
            .unwrap();
        assert!(made.success());
    }
    // Not a recording (the pipes are not read): left in place, nothing waits.
    assert_eq!(retire_previous(&spool, JOB, &node, 0).unwrap(), None);
    let refused = JobFiles::open(&spool, JOB, &node, 0, 0).unwrap_err();
    assert!(refused.to_string().contains("n1.samples.csv"), "{refused}");
}

#[test]
fn another_users_directory_of_a_reused_id_is_moved_aside_whole() {
    let dir = tempdir();
    let (spool, node) = (dir.path().join("spool"), NodeName::new("n1").unwrap());
    let job_dir = spool.join(JOB.to_string());
    fs::create_dir_all(&job_dir).unwrap();
    fs::write(job_dir.join("n2.samples.csv"), "time_unix_ms\n1\n").unwrap();
    std::os::unix::fs::chown(&job_dir, Some(4242), Some(4242)).unwrap();
    let Some(Retired::Directory { suffix }) = retire_previous(&spool, JOB, &node, 1000).unwrap()
    else {
        panic!("the directory is not the new job's user's: moved whole");
    };
    let aside = spool.join(format!("{JOB}.{suffix}"));
    assert!(
        aside.join("n2.samples.csv").exists(),
        "other nodes' files go with it"
    );
    assert!(!job_dir.exists());
    // The new job's user can now be given a directory of their own.
    JobFiles::open(&spool, JOB, &node, 1000, 1000).unwrap();
}

/// A source whose reads hang once `hang` is set (a GPU fallen off the bus, say).
struct Hanging {
    channels: Vec<String>,
    hang: Arc<std::sync::atomic::AtomicBool>,
}

impl EnergySource for Hanging {
    fn name(&self) -> &'static str {
        "hanging"
    }
    fn channels(&self) -> &[String] {
        &self.channels
    }
    fn ranges(&self) -> Vec<Option<u64>> {
        vec![None]
    }
    fn read(&mut self, out: &mut Vec<Option<u64>>, _errors: &mut Vec<String>) {
        while self.hang.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        out.push(Some(0));
    }
}

#[test]
fn a_hanging_source_cannot_hold_up_the_stop_beyond_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("spool")).unwrap();
    let messages = Messages::default();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut s = setup(dir.path(), 20, &messages);
    s.sources = vec![Box::new(Hanging {
        channels: vec!["x".into()],
        hang: Arc::clone(&hang),
    })];
    let sampler = Sampler::start(s).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    hang.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    assert!(
        !sampler.stop_within(Duration::from_millis(300)),
        "the thread is stuck in the source"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    hang.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// One stand-in GPU (tests/nvml-standin) described by `device`, recorded for a few samples
/// with the job's usage from `usage`: the metadata, the samples and what was logged.
fn record_a_gpu(
    dir: &Path,
    device: serde_json::Value,
    usage: Option<JobUsage>,
) -> (Meta, Samples, Vec<String>) {
    record_gpus(dir, device, usage, None)
}

/// `record_a_gpu`, the GPU named by `selectors` (Slurm's ids or UUIDs).
fn record_gpus(
    dir: &Path,
    device: serde_json::Value,
    usage: Option<JobUsage>,
    selectors: Option<Vec<String>>,
) -> (Meta, Samples, Vec<String>) {
    let mut device = device;
    device["uuid"] = "GPU-aaaa".into();
    let lib = standin_nvml(dir, vec![device]);
    let messages = Messages::default();
    let mut s = setup(dir, 20, &messages);
    s.usage = usage;
    s.gpus = Some(GpuPlan {
        lib: Some(lib),
        selectors,
    });
    let sampler = Sampler::start(s).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sampler.stop();
    let (meta, samples) = read(dir);
    let logged = messages.lock().unwrap().clone();
    (meta, samples, logged)
}

/// The stand-in NVML library (tests/nvml-standin) in `dir`, with these devices, counting
/// from now; returns its path.
fn standin_nvml(dir: &Path, devices: Vec<serde_json::Value>) -> std::path::PathBuf {
    let now = aipm_recording::time::now_unix_ms();
    let devices: Vec<serde_json::Value> = devices
        .into_iter()
        .map(|mut d| {
            d["start_unix_ms"] = now.into();
            d
        })
        .collect();
    aipm_nvml_standin::install::install(dir, &serde_json::json!({ "devices": devices }))
}

/// Steps of an allocation see different GPUs (each its own gres): the step that takes over
/// the node's recording samples the GPUs the recording began with, instead of stopping on
/// columns that differ.
/// A stand-in GPU drawing `watts`.
fn fake_a100(uuid: &str, watts: f64) -> serde_json::Value {
    serde_json::json!({ "uuid": uuid, "name": "Fake A100", "power_w": watts, "energy_start_mj": 0 })
}

/// A step's sampler setup in `dir` with Slurm's GPU ids `gpus`, through the stand-in `lib`.
fn gpu_step(dir: &Path, lib: &Path, messages: &Messages, gpus: &[&str]) -> SamplerSetup {
    let mut s = setup(dir, 20, messages);
    let gpus: Vec<String> = gpus.iter().map(|g| g.to_string()).collect();
    s.meta.gpus = gpus.clone();
    s.gpus = Some(GpuPlan {
        lib: Some(lib.to_path_buf()),
        selectors: Some(gpus),
    });
    s
}

#[test]
fn a_step_that_sees_other_gpus_continues_the_recordings_gpus() {
    let dir = tempdir();
    let gpu = fake_a100;
    let lib = standin_nvml(
        dir.path(),
        vec![gpu("GPU-aaaa", 100.0), gpu("GPU-bbbb", 250.0)],
    );
    let messages = Messages::default();
    let step = |gpus: &[&str]| gpu_step(dir.path(), &lib, &messages, gpus);
    // Step 0 has GPU 0 and leads; step 1 (GPU 1) waits, then takes over; then a step
    // without GPUs.
    let first = Sampler::start(step(&["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(step(&["1"])).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    first.stop();
    std::thread::sleep(Duration::from_millis(150));
    let third = Sampler::start(step(&[])).unwrap();
    second.stop();
    std::thread::sleep(Duration::from_millis(150));
    third.stop();

    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 2);
    assert_eq!(meta.gpus, ["0"]);
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.channels, ["GPU-aaaa"], "{nvml:?}");
    assert_eq!(meta.sampler.samples as usize, samples.rows.len());
    let power: Vec<u64> = samples.values("nvml:GPU-aaaa:power_mw").collect();
    assert_eq!(
        power,
        vec![100_000; samples.rows.len()],
        "every step sampled GPU 0"
    );
    assert!(samples.column("nvml:GPU-bbbb:power_mw").is_none());

    // A recording begun by a step without GPUs stays without: the metadata says why.
    let dir = tempdir();
    let lib = standin_nvml(dir.path(), vec![gpu("GPU-aaaa", 100.0)]);
    let messages = Messages::default();
    let step = |gpus: &[&str]| {
        let mut s = setup(dir.path(), 20, &messages);
        s.gpus = Some(GpuPlan {
            lib: Some(lib.clone()),
            selectors: Some(gpus.iter().map(|g| g.to_string()).collect()),
        });
        s
    };
    let first = Sampler::start(step(&[])).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(step(&["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    first.stop();
    std::thread::sleep(Duration::from_millis(100));
    second.stop();
    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 1);
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Absent);
    assert!(
        nvml.detail
            .contains("began in a step without GPUs; this step's [0]"),
        "{}",
        nvml.detail
    );
    assert!(samples.column("nvml:GPU-aaaa:power_mw").is_none());
}

/// The job's user can rewrite the metadata between two steps: a later step that continues
/// the recording opens the GPUs its first sampler kept beside the election lock (root's),
/// not those the metadata lists (another job's GPU, or thousands of copies of one).
#[test]
fn a_takeover_opens_the_gpus_kept_by_the_first_sampler_not_the_metadatas() {
    let dir = tempdir();
    let gpus = vec![fake_a100("GPU-aaaa", 100.0), fake_a100("GPU-bbbb", 250.0)];
    let lib = standin_nvml(dir.path(), gpus);
    let messages = Messages::default();
    let step = |gpus: &[&str]| gpu_step(dir.path(), &lib, &messages, gpus);
    let first = Sampler::start(step(&["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    first.stop();
    // The user's forgery: GPU 1 (another job's), listed 10,000 times.
    let job = dir.path().join("spool").join(JOB.to_string());
    let forge = || {
        let (mut forged, _) = read(dir.path());
        forged.gpus = vec!["1".into(); 10_000];
        let nvml = forged
            .sources
            .iter_mut()
            .find(|s| s.name == "nvml")
            .unwrap();
        nvml.channels = vec!["GPU-bbbb".into(); 10_000];
        fs::write(job.join("n1.meta.json"), forged.to_json()).unwrap();
    };
    forge();
    let rows = read(dir.path()).1.rows.len();

    // A later step without GPUs of its own continues the recording.
    let second = Sampler::start(step(&[])).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    second.stop();
    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 1);
    assert_eq!(meta.gpus, ["0"]);
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.channels, ["GPU-aaaa"], "{nvml:?}");
    assert!(samples.rows.len() > rows);
    let power: Vec<u64> = samples.values("nvml:GPU-aaaa:power_mw").collect();
    assert_eq!(power, vec![100_000; samples.rows.len()]);
    assert!(samples.column("nvml:GPU-bbbb:power_mw").is_none());

    // With the samples' header forged to match, the recording stops rather than read
    // GPU 1: not a row more.
    forge();
    let text = fs::read_to_string(job.join("n1.samples.csv")).unwrap();
    fs::write(
        job.join("n1.samples.csv"),
        text.replace("GPU-aaaa", "GPU-bbbb"),
    )
    .unwrap();
    let rows = samples.rows.len();
    let third = Sampler::start(step(&[])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    third.stop();
    let logged = messages.lock().unwrap().clone();
    assert!(
        logged.len() == 1 && logged[0].contains("has other columns"),
        "{logged:?}"
    );
    assert_eq!(read(dir.path()).1.rows.len(), rows);
}

#[test]
fn kept_gpus_are_distinct_and_bounded() {
    let dir = tempdir();
    let lock = ElectionLock::open(&dir.path().join("locks"), JOB).unwrap();
    assert_eq!(lock.kept_gpus(), None);
    let many: Vec<String> = (0..1000).map(|i| format!("GPU-{i}")).collect();
    let kept = RecordedGpus::new(&["0".into(), "0".into(), "1".into()], &many);
    assert_eq!(kept.ids, ["0", "1"]);
    assert_eq!(kept.channels.len(), RecordedGpus::MAX);
    lock.keep_gpus(&kept).unwrap();
    let again = ElectionLock::open(&dir.path().join("locks"), JOB).unwrap();
    assert_eq!(again.kept_gpus(), Some(kept));
    lock.keep_gpus(&RecordedGpus::default()).unwrap();
    assert_eq!(again.kept_gpus(), Some(RecordedGpus::default()));
}

fn record_a_gpu_whose_utilisation_fails(error: &str) -> (Meta, Samples, Vec<String>) {
    let dir = tempdir();
    let device = serde_json::json!({
        "name": "Fake V100", "power_w": 100.0, "energy_start_mj": 0, "util_gpu": 10,
        "mem_total": 16u64 << 30, "mem_used": 1u64 << 30,
        "errors": { "nvmlDeviceGetUtilizationRates": error }
    });
    record_a_gpu(dir.path(), device, None)
}

#[test]
fn a_gpu_query_not_supported_leaves_its_column_empty_and_counts_no_read_error() {
    let (meta, samples, logged) = record_a_gpu_whose_utilisation_fails("NOT_SUPPORTED");
    assert!(logged.is_empty(), "{logged:?}");
    assert!(meta.sampler.samples >= 5, "{:?}", meta.sampler);
    assert_eq!(meta.sampler.read_errors, 0);
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert!(
        nvml.detail
            .contains("not supported, left empty: GPU-aaaa: utilisation"),
        "{}",
        nvml.detail
    );
    let rows = samples.rows.len();
    assert!(samples.column("nvml:GPU-aaaa:util_pct").is_some());
    assert_eq!(samples.values("nvml:GPU-aaaa:util_pct").count(), 0);
    // Everything else is still read at every sample.
    let power: Vec<u64> = samples.values("nvml:GPU-aaaa:power_mw").collect();
    assert_eq!(power, vec![100_000; rows]);
    assert_eq!(samples.values("nvml:GPU-aaaa:mem_used_bytes").count(), rows);
    let energy = samples::energy_column("nvml:GPU-aaaa");
    assert_eq!(samples.values(&energy).count(), rows);
}

#[test]
fn a_gpu_query_that_fails_otherwise_counts_a_read_error_at_every_sample() {
    let (meta, samples, logged) = record_a_gpu_whose_utilisation_fails("UNKNOWN");
    assert_eq!(meta.sampler.read_errors, meta.sampler.samples);
    assert_eq!(samples.values("nvml:GPU-aaaa:util_pct").count(), 0);
    assert_eq!(logged.len(), 1, "logged once: {logged:?}");
    assert!(
        logged[0].contains("GPU GPU-aaaa: utilisation"),
        "{logged:?}"
    );
}

/// `aipm-analyze record` and nodes without job cgroups: the job is a process tree.
#[test]
fn a_gpu_process_in_the_jobs_process_tree_is_the_jobs() {
    let dir = tempdir();
    let proc_root = dir.path().join("proc");
    for (pid, ppid) in [(10, 1), (11, 10), (777, 1)] {
        let stat = format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 1 0 0 0 20 0 1 0 5 1000 1 x");
        fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
        fs::write(proc_root.join(format!("{pid}/stat")), stat).unwrap();
    }
    let tree = JobUsage::ProcessTree(ProcessTree::new(&proc_root, 10, None));
    let device = serde_json::json!({
        "name": "Fake A100", "power_w": 100.0, "energy_start_mj": 0,
        "mem_total": 40u64 << 30, "mem_used": 3u64 << 30,
        "processes": [
            { "pid": 11, "used_mem": 1u64 << 30, "sm_util": 60 },
            { "pid": 777, "used_mem": 2u64 << 30, "sm_util": 30 }
        ]
    });
    let (meta, samples, logged) = record_a_gpu(dir.path(), device, Some(tree));
    assert!(logged.is_empty(), "{logged:?}");
    assert_eq!(meta.sampler.read_errors, 0);
    let rows = samples.rows.len();
    let column =
        |gauge: &str| -> Vec<u64> { samples.values(&format!("nvml:GPU-aaaa:{gauge}")).collect() };
    assert_eq!(column("job_procs"), vec![1; rows]);
    assert_eq!(column("other_procs"), vec![1; rows]);
    assert_eq!(column("job_mem_bytes"), vec![1 << 30; rows]);
    assert_eq!(column("other_mem_bytes"), vec![2 << 30; rows]);
}

#[test]
fn a_gpu_taken_by_index_for_want_of_a_minor_number_is_named_in_the_metadata() {
    let dir = tempdir();
    let device = serde_json::json!({
        "name": "Fake V100", "power_w": 100.0, "energy_start_mj": 0,
        "errors": { "nvmlDeviceGetMinorNumber": "NOT_SUPPORTED" }
    });
    let (meta, samples, logged) =
        record_gpus(dir.path(), device, None, Some(vec!["0".to_string()]));
    assert!(logged.is_empty(), "{logged:?}");
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Found);
    assert!(
        nvml.detail
            .contains("no minor number from NVML, Slurm's GPU id taken as NVML's index: GPU-aaaa"),
        "{}",
        nvml.detail
    );
    assert!(samples.values("nvml:GPU-aaaa:power_mw").count() > 0);
}

/// Change the stand-in's state in `dir` as a GPU would change under a running job: written
/// aside and renamed, so that a call never reads it half-written.
fn change_standin(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("libnvidia-ml.so.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    change(&mut state);
    let tmp = dir.join("state.tmp");
    fs::write(&tmp, state.to_string()).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A GPU that falls off the bus before another step's sampler takes over: the recording
/// goes on with the same columns, the lost GPU's empty, instead of stopping for all.
#[test]
fn a_gpu_lost_before_a_takeover_keeps_its_columns_empty_and_the_rest_is_recorded() {
    let dir = tempdir();
    let gpu = |uuid: &str, watts: f64| serde_json::json!({ "uuid": uuid, "name": "Fake A100", "power_w": watts, "energy_start_mj": 0 });
    let lib = standin_nvml(
        dir.path(),
        vec![gpu("GPU-aaaa", 100.0), gpu("GPU-bbbb", 250.0)],
    );
    let messages = Messages::default();
    let step = || {
        let mut s = setup(dir.path(), 20, &messages);
        s.meta.gpus = vec!["0".into(), "1".into()];
        s.gpus = Some(GpuPlan {
            lib: Some(lib.clone()),
            selectors: Some(s.meta.gpus.clone()),
        });
        s
    };
    let samples_file = dir.path().join("spool/77/n1.samples.csv");
    let header = || {
        fs::read_to_string(&samples_file)
            .unwrap()
            .lines()
            .next()
            .map(str::to_string)
    };
    let first = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let header_before = header();
    change_standin(dir.path(), |state| {
        state["devices"][1]["error"] = "GPU_IS_LOST".into();
    });
    first.stop();
    std::thread::sleep(Duration::from_millis(200));
    second.stop();

    let (meta, samples) = read(dir.path());
    let logged = messages.lock().unwrap().clone();
    assert!(
        !logged.iter().any(|m| m.contains("other columns")),
        "{logged:?}"
    );
    assert_eq!(header(), header_before, "the header is the recording's");
    assert!(samples.bad_lines.is_empty(), "{:?}", samples.bad_lines);
    assert_eq!(meta.sampler.handovers, 1);
    assert_eq!(meta.sampler.samples as usize, samples.rows.len());
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Found);
    assert_eq!(nvml.channels, ["GPU-aaaa", "GPU-bbbb"], "{nvml:?}");
    assert!(nvml.detail.contains("GPU GPU-bbbb"), "{}", nvml.detail);
    assert!(!nvml.detail.contains("GPU-aaaa"), "{}", nvml.detail);

    // RAPL and GPU 0 in every row, both samplers'; GPU 1 until it was lost, and none of its
    // columns in the last row, which the second sampler took when it stopped.
    let rows = samples.rows.len();
    assert_eq!(energy(&samples).len(), rows);
    let gpu0: Vec<u64> = samples.values("nvml:GPU-aaaa:power_mw").collect();
    assert_eq!(gpu0, vec![100_000; rows]);
    assert_eq!(
        samples
            .values(&samples::energy_column("nvml:GPU-aaaa"))
            .count(),
        rows
    );
    let gpu1 = samples.column("nvml:GPU-bbbb:power_mw").unwrap();
    assert_eq!(samples.rows.get(0).unwrap().get(gpu1), Some(250_000));
    let last = samples.rows.last().unwrap();
    for (i, column) in samples.columns.iter().enumerate() {
        if column.starts_with("nvml:GPU-bbbb:") {
            assert_eq!(last.get(i), None, "{column}");
        }
    }
    // One read error for each sample without GPU 1, and one line logged by each sampler:
    // the first read it lost, the second could not open it.
    let without_gpu1 = samples
        .rows
        .iter()
        .filter(|r| r.get(gpu1).is_none())
        .count();
    assert!(without_gpu1 >= 1);
    assert_eq!(meta.sampler.read_errors as usize, without_gpu1);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(logged[0].contains("GPU GPU-bbbb: energy"), "{logged:?}");
    assert!(
        logged[1].contains("GPU GPU-bbbb") && logged[1].contains("not opened"),
        "{logged:?}"
    );
}

/// A recording begun while NVML could not be loaded has no GPU columns; a step that takes
/// over once the driver is back cannot add them: the recording goes on without, as begun.
#[test]
fn a_recording_begun_without_nvml_is_continued_without_gpus() {
    let dir = tempdir();
    let gpu = serde_json::json!({ "uuid": "GPU-aaaa", "name": "Fake A100", "power_w": 100.0, "energy_start_mj": 0 });
    let lib = standin_nvml(dir.path(), vec![gpu]);
    let state = dir.path().join("libnvidia-ml.so.json");
    let loaded = fs::read_to_string(&state).unwrap();
    // The stand-in's driver is "not loaded" while it has no state file.
    fs::remove_file(&state).unwrap();
    let messages = Messages::default();
    let step = || {
        let mut s = setup(dir.path(), 20, &messages);
        s.meta.gpus = vec!["0".into()];
        s.gpus = Some(GpuPlan {
            lib: Some(lib.clone()),
            selectors: Some(s.meta.gpus.clone()),
        });
        s
    };
    let first = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    fs::write(dir.path().join("state.tmp"), loaded).unwrap();
    fs::rename(dir.path().join("state.tmp"), &state).unwrap();
    first.stop();
    std::thread::sleep(Duration::from_millis(150));
    second.stop();

    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 1);
    assert_eq!(meta.sampler.samples as usize, samples.rows.len());
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Absent);
    assert!(nvml.detail.contains("driver not loaded"), "{}", nvml.detail);
    assert!(nvml.channels.is_empty());
    assert!(samples.column("nvml:GPU-aaaa:power_mw").is_none());
    assert_eq!(energy(&samples).len(), samples.rows.len());
}

/// A GPU without the energy counter has its energy integrated from power: the sampler that
/// takes over goes on from the last row's energy and power, so the handover loses nothing.
#[test]
fn energy_integrated_from_power_goes_on_across_a_takeover() {
    let dir = tempdir();
    let gpu = serde_json::json!({
        "uuid": "GPU-aaaa", "name": "Fake P100", "power_w": 100.0, "energy_start_mj": 0,
        "errors": { "nvmlDeviceGetTotalEnergyConsumption": "NOT_SUPPORTED" }
    });
    let lib = standin_nvml(dir.path(), vec![gpu]);
    let messages = Messages::default();
    let step = || {
        let mut s = setup(dir.path(), 20, &messages);
        s.meta.gpus = vec!["0".into()];
        s.gpus = Some(GpuPlan {
            lib: Some(lib.clone()),
            selectors: Some(s.meta.gpus.clone()),
        });
        s
    };
    let first = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let second = Sampler::start(step()).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    first.stop();
    std::thread::sleep(Duration::from_millis(150));
    second.stop();

    let (meta, samples) = read(dir.path());
    assert!(messages.lock().unwrap().is_empty(), "{messages:?}");
    assert_eq!(meta.sampler.handovers, 1);
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert!(
        nvml.detail
            .contains("no energy counter on GPU-aaaa: integrated from power"),
        "{}",
        nvml.detail
    );
    let rows = samples.rows.len();
    let raw: Vec<u64> = samples
        .values(&samples::raw_column("nvml:GPU-aaaa"))
        .collect();
    let energy: Vec<u64> = samples
        .values(&samples::energy_column("nvml:GPU-aaaa"))
        .collect();
    assert_eq!((raw.len(), energy.len()), (rows, rows));
    // The GPU draws 100 W throughout: its energy grows from each sample to the next, the
    // two samplers' included.
    assert!(raw.windows(2).all(|w| w[1] > w[0]), "{raw:?}");
    assert!(energy.windows(2).all(|w| w[1] > w[0]), "{energy:?}");
}

/// Issue 17, row 11: a driver reload restarts NVML's energy counter from zero. What it has
/// counted since the reload is the GPU's energy, not a value to start from: the recording
/// keeps it.
#[test]
fn a_gpu_counter_reset_by_a_driver_reload_keeps_what_it_counted_since() {
    let dir = tempdir();
    let mut gpu = fake_a100("GPU-aaaa", 100.0);
    gpu["energy_start_mj"] = 50_000_000.into();
    let lib = standin_nvml(dir.path(), vec![gpu.clone()]);
    let messages = Messages::default();
    let sampler = Sampler::start(gpu_step(dir.path(), &lib, &messages, &["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    // The reload: the counter starts again from 0, 20 s before "now" in the stand-in's
    // clock, so that it stands at 2 000 J (100 W × 20 s) when read.
    gpu["energy_start_mj"] = 0.into();
    gpu["start_unix_ms"] = (aipm_recording::time::now_unix_ms() - 20_000).into();
    let state = serde_json::json!({ "devices": [gpu] });
    let tmp = dir.path().join("state.tmp");
    fs::write(&tmp, state.to_string()).unwrap();
    fs::rename(&tmp, dir.path().join("libnvidia-ml.so.json")).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    sampler.stop();
    let (_, samples) = read(dir.path());
    let energy: Vec<u64> = samples
        .values(&samples::energy_column("nvml:GPU-aaaa"))
        .collect();
    let total_j = *energy.last().unwrap() as f64 / 1e6;
    // About 15 J before the reload, 2 000 J at it and about 15 J after.
    assert!((2_000.0..2_100.0).contains(&total_j), "{total_j} J");
}

/// The stand-in's state in `dir`: these devices counting from now, and `extra` top-level
/// keys.
fn standin_state(dir: &Path, devices: Vec<serde_json::Value>, extra: serde_json::Value) {
    let now = aipm_recording::time::now_unix_ms();
    let devices: Vec<serde_json::Value> = devices
        .into_iter()
        .map(|mut d| {
            d["start_unix_ms"] = now.into();
            d
        })
        .collect();
    let mut state = extra;
    state["devices"] = devices.into();
    let tmp = dir.join("state.tmp");
    fs::write(&tmp, state.to_string()).unwrap();
    fs::rename(&tmp, dir.join("libnvidia-ml.so.json")).unwrap();
}

/// Issue 17, row 7: NVML can take seconds to open (1–3 s per GPU without persistence mode)
/// or block. A job that ends meanwhile still gets a recording with an end, within the stop
/// limit, with its other sources and the reason GPUs are missing.
#[test]
fn a_job_that_ends_while_nvml_opens_still_ends_its_recording() {
    let dir = tempdir();
    let lib = standin_nvml(dir.path(), vec![]);
    let delays = serde_json::json!({ "delays_ms": { "nvmlDeviceGetHandleByIndex_v2": 4000 } });
    standin_state(dir.path(), vec![fake_a100("GPU-aaaa", 100.0)], delays);
    let messages = Messages::default();
    let sampler = Sampler::start(gpu_step(dir.path(), &lib, &messages, &["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert!(
        sampler.stop_within(Duration::from_secs(2)),
        "the sampler stopped in time"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (meta, samples) = read(dir.path());
    assert!(meta.end_unix_ms.is_some(), "the recording has an end");
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Failed, "{nvml:?}");
    assert!(nvml.detail.starts_with("NVML not open after"), "{nvml:?}");
    assert!(!samples.rows.is_empty());
    assert!(samples.column("nvml:GPU-aaaa:power_mw").is_none());
    assert!(samples
        .column(&samples::energy_column("rapl:package-0"))
        .is_some());
}

/// A slow open that finishes is recorded, and named.
#[test]
fn a_slow_nvml_open_is_named_in_the_metadata() {
    let dir = tempdir();
    let lib = standin_nvml(dir.path(), vec![]);
    let delays = serde_json::json!({ "delays_ms": { "nvmlInit_v2": 1100 } });
    standin_state(dir.path(), vec![fake_a100("GPU-aaaa", 100.0)], delays);
    let messages = Messages::default();
    let sampler = Sampler::start(gpu_step(dir.path(), &lib, &messages, &["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(1400));
    sampler.stop();
    let (meta, samples) = read(dir.path());
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Found, "{nvml:?}");
    assert!(nvml.detail.contains("NVML took 1."), "{nvml:?}");
    assert!(samples.column("nvml:GPU-aaaa:power_mw").is_some());
}

/// Issue 17, row 7: the other sources do not wait for a slow NVML open. RAPL is sampled from
/// the start; the rows taken while NVML opens have empty GPU columns, the later ones the
/// GPU's, in one file whose header has them all.
#[test]
fn rapl_is_sampled_from_the_start_while_nvml_opens() {
    let dir = tempdir();
    let lib = standin_nvml(dir.path(), vec![]);
    let delays = serde_json::json!({ "delays_ms": { "nvmlInit_v2": 1500 } });
    standin_state(dir.path(), vec![fake_a100("GPU-aaaa", 100.0)], delays);
    let messages = Messages::default();
    let started = aipm_recording::time::now_unix_ms();
    let sampler = Sampler::start(gpu_step(dir.path(), &lib, &messages, &["0"])).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    sampler.stop();
    let (meta, samples) = read(dir.path());
    let nvml = meta.sources.iter().find(|s| s.name == "nvml").unwrap();
    assert_eq!(nvml.status, State::Found, "{nvml:?}");
    assert!(nvml.detail.contains("NVML took 1."), "{nvml:?}");
    let times: Vec<u64> = samples.values(samples::TIME_COLUMN).collect();
    assert!(
        times[0] - started < 700,
        "first sample {} ms after the start",
        times[0] - started
    );
    let rapl = samples::energy_column("rapl:package-0");
    assert_eq!(samples.values(&rapl).count(), samples.rows.len());
    let gpu = samples
        .column(&samples::energy_column("nvml:GPU-aaaa"))
        .unwrap();
    let with_gpu: Vec<bool> = samples.rows.iter().map(|r| r.get(gpu).is_some()).collect();
    assert!(!with_gpu[0], "the first rows were taken before NVML opened");
    assert!(with_gpu[with_gpu.len() - 1], "the last ones have the GPU");
    let first_gpu = with_gpu.iter().position(|&g| g).unwrap();
    assert!(with_gpu[first_gpu..].iter().all(|&g| g));
    assert!(
        times[first_gpu] - started >= 1400,
        "{}",
        times[first_gpu] - started
    );
}
