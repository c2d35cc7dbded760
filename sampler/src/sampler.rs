//! The sampling thread: one per step inside slurmstepd, of which exactly one per job per
//! node samples at a time.
//!
//! Every step's thread joins an election on a node-local `flock`; the winner samples, the
//! others poll the lock and one of them takes over, continuing the same files, when the
//! leader's step ends first (docs/background/slurm-single-node.md, design B). The thread never
//! touches a `spank_t`: handles are only valid inside their hook.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aipm_recording::meta::{Meta, SamplerStats};
use aipm_recording::samples::{self, EnergyValue, SampleRow, Samples};
use aipm_recording::time::{format_utc, now_unix_ms};
use rustix::time::{clock_gettime, ClockId};

use crate::counter::Counter;
use crate::gpus::{
    follow_recording_gpus, keep_gpus, open_gpus, recorded_gpus, settle_gpus, start_opening_gpus,
    PendingGpus, OPEN_GIVE_UP, OPEN_GRACE,
};
use crate::node::{JobCensus, NodeStats};
use crate::sources::nvml_error::NvmlFailed;
use crate::sources::{EnergySource, JobPids};
use crate::spool::{ElectionLock, JobFiles};
use crate::usage::JobUsage;

/// How often a follower checks whether the leader is gone, at most.
const FOLLOWER_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Info,
    Debug,
}

/// Where the sampler logs: Slurm's log when inside the plugin.
pub type Log = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// Everything a sampler needs, opened as root before the thread starts.
pub struct SamplerSetup {
    pub period: Duration,
    pub files: JobFiles,
    pub lock: ElectionLock,
    pub sources: Vec<Box<dyn EnergySource>>,
    pub usage: Option<JobUsage>,
    /// The node's CPU and memory (`/proc`), for the attribution; `None` if unreadable.
    pub node: Option<NodeStats>,
    /// The job's GPUs, opened by the first leader (NVML's start-up can take a while: it
    /// must not delay the job's start inside slurmstepd's hooks).
    pub gpus: Option<GpuPlan>,
    /// The job's metadata; times, sources' channels and statistics are filled in here.
    pub meta: Meta,
    pub log: Log,
}

/// Which GPUs to sample, and through which NVML library.
#[derive(Debug, Clone, Default)]
pub struct GpuPlan {
    /// `None`: the system's `libnvidia-ml.so.1`.
    pub lib: Option<std::path::PathBuf>,
    /// Slurm's GPU ids (`SLURM_JOB_GPUS`: device minor numbers, the N of `/dev/nvidiaN`) or
    /// UUIDs; `None` for every GPU of the node, empty for a job without GPUs.
    pub selectors: Option<Vec<String>>,
}

/// The stop flag the thread waits on, and its wake-up.
pub(crate) struct Control {
    pub(crate) stop: Mutex<bool>,
    wake: Condvar,
}

/// A running sampler thread.
pub struct Sampler {
    control: Arc<Control>,
    thread: JoinHandle<()>,
}

impl Sampler {
    pub fn start(setup: SamplerSetup) -> std::io::Result<Sampler> {
        let control = Arc::new(Control {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread_control = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name("aipm-sampler".into())
            .spawn(move || run(setup, &thread_control))?;
        Ok(Sampler { control, thread })
    }

    /// Take a last sample if leading, write the metadata, and join the thread.
    pub fn stop(self) {
        self.stop_within(Duration::MAX);
    }

    /// As `stop`, but wait at most `limit` for the thread: a source that hangs (an NVML
    /// call on a GPU fallen off the bus) must not hold up the end of a job. `false` when the
    /// thread was left to finish (or not) on its own; its recording then has no end.
    pub fn stop_within(self, limit: Duration) -> bool {
        *self.control.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.control.wake.notify_all();
        let deadline = Instant::now().checked_add(limit);
        while !self.thread.is_finished() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.thread.join();
        true
    }
}

fn run(mut setup: SamplerSetup, control: &Control) {
    let mut leading: Option<Leader> = None;
    let mut next = Instant::now();
    loop {
        if leading.is_none() && setup.lock.try_lead() {
            leading = Some(Leader::begin(&mut setup, control));
            next = Instant::now();
        }
        let wait = match leading.as_mut() {
            Some(leader) => {
                let now = Instant::now();
                if now >= next {
                    leader.sample(&mut setup);
                    next = leader.schedule(next, setup.period, Instant::now());
                }
                next.saturating_duration_since(Instant::now())
            }
            None => setup.period.min(FOLLOWER_POLL),
        };
        let stop = control.stop.lock().unwrap_or_else(|p| p.into_inner());
        let (stop, _) = control
            .wake
            .wait_timeout_while(stop, wait, |stop| !*stop)
            .unwrap_or_else(|p| p.into_inner());
        if *stop {
            break;
        }
    }
    if let Some(mut leader) = leading {
        leader.settle_pending(&mut setup, true, Duration::ZERO);
        leader.sample(&mut setup);
        leader.finish(&mut setup);
    }
}

/// The state of the sampler while it leads.
struct Leader {
    counters: Vec<Counter>,
    row: SampleRow,
    line: String,
    raw: Vec<Option<u64>>,
    errors: Vec<String>,
    stats: SamplerStats,
    writing: bool,
    logged_read_error: bool,
    cpu_at_start_us: u64,
    census: Option<JobCensus>,
    /// NVML opening while the other sources are sampled: their rows are `held`.
    pending: Option<PendingGpus>,
    held: Vec<SampleRow>,
}

/// One counter per channel of `sources`, in order.
fn counters_of(sources: &[Box<dyn EnergySource>]) -> Vec<Counter> {
    sources
        .iter()
        .flat_map(|s| {
            let from_zero = s.restarts_at_zero();
            s.ranges().into_iter().map(move |range| match from_zero {
                true => Counter::new(range).from_zero(),
                false => Counter::new(range),
            })
        })
        .collect()
}

fn gauge_count(sources: &[Box<dyn EnergySource>]) -> usize {
    sources.iter().map(|s| s.gauges().len()).sum()
}

fn thread_cpu_us() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

impl Leader {
    /// Start or continue this node's recording.
    fn begin(setup: &mut SamplerSetup, control: &Control) -> Leader {
        let previous = setup.files.read_meta();
        let gpus_of_recording = previous
            .as_ref()
            .and_then(|previous| recorded_gpus(setup, previous));
        if let Some(recording) = &gpus_of_recording {
            follow_recording_gpus(setup, recording);
        }
        // A new recording's other sources are sampled while NVML opens (issue 17, row 7):
        // their rows are held until the GPUs' columns are known.
        let pending = match previous {
            None => start_opening_gpus(setup),
            Some(_) => None,
        };
        if pending.is_none() {
            open_gpus(setup, gpus_of_recording.as_ref(), control);
            if gpus_of_recording.is_none() {
                keep_gpus(setup);
            }
        }
        let counters = counters_of(&setup.sources);
        let mut leader = Leader {
            counters,
            row: SampleRow::default(),
            line: String::with_capacity(256),
            raw: Vec::new(),
            errors: Vec::new(),
            stats: SamplerStats::default(),
            writing: true,
            logged_read_error: false,
            cpu_at_start_us: thread_cpu_us(),
            pending,
            held: Vec::new(),
            census: setup
                .usage
                .as_ref()
                .and_then(JobUsage::cgroup_dir)
                .and_then(JobCensus::new),
        };
        let now = now_unix_ms();
        if let Some(previous) = previous {
            // Another step's sampler led before: continue its recording.
            setup.meta.start_unix_ms = previous.start_unix_ms;
            setup.meta.start_utc = previous.start_utc;
            leader.stats = previous.sampler;
            leader.stats.handovers += 1;
        } else {
            setup.meta.start_unix_ms = now;
            setup.meta.start_utc = format_utc(now);
        }
        setup.meta.end_unix_ms = None;
        setup.meta.end_utc = None;
        match leader.pending.is_none() {
            true => leader.begin_file(setup),
            // An open that takes no time (persistence mode) is waited for: the first rows
            // then have their GPUs.
            false => leader.settle_pending(setup, false, OPEN_GRACE),
        }
        leader
    }

    /// Write the samples file's header (or check it against the recording continued) and
    /// the metadata: once the sources, GPUs included, are known.
    fn begin_file(&mut self, setup: &mut SamplerSetup) {
        let leader = self;
        let channels: Vec<String> = setup
            .sources
            .iter()
            .flat_map(|s| {
                s.channels()
                    .iter()
                    .map(move |c| format!("{}:{c}", s.name()))
            })
            .collect();
        let gauges: Vec<String> = setup
            .sources
            .iter()
            .flat_map(|s| s.gauges().iter().map(move |g| format!("{}:{g}", s.name())))
            .collect();
        let header = samples::header_line(&channels, &gauges);
        match setup.files.samples_tail() {
            Ok((existing, _)) if existing.is_empty() => {
                if let Err(e) = setup.files.append_sample(&header) {
                    leader.write_failed(setup, &e);
                }
            }
            Ok((existing, last)) if existing == header.trim_end() => {
                if let Some(last) = last {
                    let sources = &mut setup.sources;
                    leader.resume_counters(&existing, &last, &channels, sources);
                }
            }
            Ok((existing, _)) => {
                (setup.log)(
                    Level::Error,
                    &format!(
                        "samples file in {} has other columns ({existing:?}); not recording",
                        setup.files.dir_path().display()
                    ),
                );
                leader.writing = false;
            }
            Err(e) => leader.write_failed(setup, &e),
        }
        leader.write_meta(setup);
    }

    /// Whether NVML has opened (or failed, or must be given up: `stopping`, or after
    /// `OPEN_GIVE_UP`); if so, add its source and counters, begin the file and write the
    /// rows held meanwhile, their GPU columns empty.
    fn settle_pending(&mut self, setup: &mut SamplerSetup, stopping: bool, wait: Duration) {
        let Some(pending) = &self.pending else { return };
        let answer = pending.receiver.recv_timeout(wait);
        let waited = pending.started.elapsed();
        let opened = match answer {
            Ok(opened) => opened,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(NvmlFailed::NoAnswer),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if stopping || waited >= OPEN_GIVE_UP =>
            {
                let when = match stopping {
                    true => "when the sampler was stopped",
                    false => "when the sampler gave up waiting",
                };
                Err(NvmlFailed::NotInTime { waited, when })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return,
        };
        let Some(pending) = self.pending.take() else {
            return;
        };
        let before = (self.counters.len(), gauge_count(&setup.sources));
        settle_gpus(setup, &pending.plan, opened, waited);
        keep_gpus(setup);
        let counters = counters_of(&setup.sources);
        self.counters.extend(counters.into_iter().skip(before.0));
        let added = (
            self.counters.len() - before.0,
            gauge_count(&setup.sources) - before.1,
        );
        self.begin_file(setup);
        for mut row in std::mem::take(&mut self.held) {
            row.energy.extend(std::iter::repeat_n(None, added.0));
            row.gauges.extend(std::iter::repeat_n(None, added.1));
            if self.writing {
                self.line.clear();
                row.format_into(&mut self.line);
                if let Err(e) = setup.files.append_sample(&self.line) {
                    self.write_failed(setup, &e);
                }
            }
        }
    }

    fn resume_counters(
        &mut self,
        header: &str,
        last: &str,
        channels: &[String],
        sources: &mut [Box<dyn EnergySource>],
    ) {
        let Ok(parsed) = Samples::parse(&format!("{header}\n{last}\n")) else {
            return;
        };
        let Some(row) = parsed.last_row() else { return };
        let value = |name: &str| parsed.column(name).and_then(|c| row[c]);
        for (i, channel) in channels.iter().enumerate() {
            if let (Some(total), Some(raw)) = (
                value(&samples::energy_column(channel)),
                value(&samples::raw_column(channel)),
            ) {
                self.counters[i] = self.counters[i].resumed(raw, total);
            }
        }
        if let Some(time) = value(samples::TIME_COLUMN) {
            for source in sources {
                let name = source.name();
                source.resume(time, &|column| value(&format!("{name}:{column}")));
            }
        }
    }

    fn sample(&mut self, setup: &mut SamplerSetup) {
        self.settle_pending(setup, false, Duration::ZERO);
        self.errors.clear();
        self.raw.clear();
        self.row.time_unix_ms = now_unix_ms();
        let usage = setup
            .usage
            .as_mut()
            .map(|u| u.read(&mut self.errors))
            .unwrap_or_default();
        self.row.job_cpu_ns = usage.cpu_ns;
        self.row.job_mem_bytes = usage.mem_bytes;
        self.row.job_mem_peak_bytes = usage.mem_peak_bytes;
        let node = setup
            .node
            .as_mut()
            .map(|n| n.read(&mut self.errors))
            .unwrap_or_default();
        self.row.node_cpu_busy_ns = node.cpu_busy_ns;
        self.row.node_cpu_total_ns = node.cpu_total_ns;
        self.row.node_mem_used_bytes = node.mem_used_bytes;
        self.row.node_jobs = self.census.as_ref().and_then(JobCensus::count);
        for source in &mut setup.sources {
            source.read(&mut self.raw, &mut self.errors);
        }
        self.row.energy.clear();
        for (counter, raw) in self.counters.iter_mut().zip(&self.raw) {
            self.row.energy.push(raw.map(|raw| EnergyValue {
                energy_uj: counter.update(raw),
                raw,
            }));
        }
        self.row.gauges.clear();
        let usage = setup.usage.as_ref();
        let find = || usage.and_then(JobUsage::pids);
        let mut job_pids = match usage.is_some_and(JobUsage::knows_pids) {
            true => JobPids::new(&find),
            false => JobPids::unknown(),
        };
        for source in &mut setup.sources {
            source.read_gauges(&mut self.row.gauges, &mut self.errors, &mut job_pids);
        }
        if !self.errors.is_empty() {
            self.stats.read_errors += 1;
            if !self.logged_read_error {
                self.logged_read_error = true;
                let msg = format!(
                    "read error (logged once, then counted): {}",
                    self.errors.join("; ")
                );
                (setup.log)(Level::Error, &msg);
            }
        }
        self.stats.samples += 1;
        if self.pending.is_some() {
            self.held.push(self.row.clone());
        } else if self.writing {
            self.line.clear();
            self.row.format_into(&mut self.line);
            if let Err(e) = setup.files.append_sample(&self.line) {
                self.write_failed(setup, &e);
            }
        }
    }

    /// The next deadline on the fixed grid `start + k·period`, so periods never drift;
    /// deadlines already past are counted as missed.
    fn schedule(&mut self, deadline: Instant, period: Duration, now: Instant) -> Instant {
        let mut next = deadline + period;
        while next <= now {
            next += period;
            self.stats.missed_deadlines += 1;
        }
        next
    }

    fn write_failed(&mut self, setup: &SamplerSetup, error: &std::io::Error) {
        self.writing = false;
        self.stats.write_errors += 1;
        (setup.log)(
            Level::Error,
            &format!(
                "cannot write samples in {}: {error}; recording stops here, what was written is kept",
                setup.files.dir_path().display()
            ),
        );
    }

    fn finish(&mut self, setup: &mut SamplerSetup) {
        let now = now_unix_ms();
        setup.meta.end_unix_ms = Some(now);
        setup.meta.end_utc = Some(format_utc(now));
        self.write_meta(setup);
    }

    fn write_meta(&mut self, setup: &mut SamplerSetup) {
        let cpu_now = thread_cpu_us();
        self.stats.busy_us += cpu_now.saturating_sub(self.cpu_at_start_us);
        self.cpu_at_start_us = cpu_now;
        self.stats.counter_wraps = self.counters.iter().map(Counter::wraps).sum();
        setup.meta.steps = setup.files.steps();
        setup.meta.sampler = self.stats.clone();
        if let Err(e) = setup.files.write_meta(&setup.meta) {
            (setup.log)(
                Level::Error,
                &format!(
                    "cannot write metadata in {}: {e}",
                    setup.files.dir_path().display()
                ),
            );
        }
    }
}
