//! The job's GPUs, the one source opened inside the sampler's thread: NVML's start-up can
//! take seconds, so a new recording's other sources are sampled meanwhile, and a sampler
//! that takes over a recording reopens the GPUs it began with (kept beside the lock).

use std::time::{Duration, Instant};

use aipm_recording::meta::Meta;
use aipm_recording::source::{self, State};

use crate::sampler::{Control, GpuPlan, Level, SamplerSetup};
use crate::sources::nvml::NvmlSource;
use crate::sources::nvml_error::NvmlFailed;
use crate::sources::nvml_status;
use crate::sources::Found;
use crate::spool::RecordedGpus;

/// A step that takes over a recording samples the GPUs it began with (`open_gpus` reopens
/// them): the step's own view (`CUDA_VISIBLE_DEVICES`, its gres) may differ, and the
/// recording's columns cannot change.
pub(crate) fn follow_recording_gpus(setup: &mut SamplerSetup, recording: &Meta) {
    // `None` (every GPU of the node: `aipm-analyze record`) is not a step's view.
    let Some(Some(own)) = setup.gpus.as_ref().map(|plan| plan.selectors.clone()) else {
        return;
    };
    if own == recording.gpus {
        return;
    }
    (setup.log)(
        Level::Info,
        &format!(
            "continuing the recording with its GPUs [{}] (this step sees [{}])",
            recording.gpus.join(","),
            own.join(",")
        ),
    );
    setup.meta.gpus = recording.gpus.clone();
    if recording.gpus.is_empty() {
        setup.gpus = None;
        setup.meta.sources.push(nvml_status::absent(format!(
            "the recording began in a step without GPUs; this step's [{}] are not sampled",
            own.join(",")
        )));
    }
}

/// The GPUs of the recording this sampler continues, as its first sampler kept them beside
/// the election lock (root's): never the metadata's, which the job's user can write (a
/// takeover would open another job's GPUs, or thousands of copies of one). Only the
/// metadata's NVML status is taken, for a recording begun without GPU columns, to say why.
/// `None` when nothing was kept (a recording begun by an older aipm): this step's own GPUs
/// are opened, and the samples file's header decides whether they can continue it.
pub(crate) fn recorded_gpus(setup: &SamplerSetup, previous: &Meta) -> Option<Meta> {
    let Some(kept) = setup.lock.kept_gpus() else {
        (setup.log)(
            Level::Info,
            "continuing a recording whose first sampler's GPUs are not kept beside the lock: this step's own GPUs",
        );
        return None;
    };
    let status = previous
        .sources
        .iter()
        .find(|s| s.name == source::NVML)
        .filter(|_| kept.channels.is_empty());
    Some(Meta {
        gpus: kept.ids,
        sources: vec![nvml_status::status(
            status.map_or(State::Absent, |s| s.status),
            status.map_or_else(
                || "the recording began without GPU columns".into(),
                |s| cut(&s.detail, 500),
            ),
            kept.channels,
        )],
        ..Meta::default()
    })
}

/// Keep the GPUs this sampler begins the recording with, for those that take over.
pub(crate) fn keep_gpus(setup: &SamplerSetup) {
    let channels = setup
        .meta
        .sources
        .iter()
        .find(|s| s.name == source::NVML)
        .map(|s| s.channels.clone())
        .unwrap_or_default();
    let kept = RecordedGpus::new(&setup.meta.gpus, &channels);
    if let Err(e) = setup.lock.keep_gpus(&kept) {
        (setup.log)(Level::Error, &format!("keeping the recording's GPUs: {e}"));
    }
}

pub(crate) fn cut(text: &str, max: usize) -> String {
    aipm_recording::untrusted::cut(text, max)
}

/// Open the planned GPUs, or those of the recording this sampler continues (`previous`),
/// and record what was found in the metadata.
pub(crate) fn open_gpus(setup: &mut SamplerSetup, previous: Option<&Meta>, control: &Control) {
    let Some(plan) = setup.gpus.take() else {
        return;
    };
    let started = Instant::now();
    let (lib, selectors) = (plan.lib.clone(), plan.selectors.clone());
    let opened = match previous {
        Some(previous) => {
            let recorded = previous.sources.iter().find(|s| s.name == source::NVML);
            match recorded {
                // The recording's GPUs by their UUIDs, each a column of the recording whether
                // or not it can be opened now: its columns cannot change.
                Some(nvml) if !nvml.channels.is_empty() => {
                    let channels = nvml.channels.clone();
                    let reopen = move || NvmlSource::reopen(lib.as_deref(), &channels);
                    Ok(Found::Present(
                        unless_stopped(control, reopen).unwrap_or_else(|why| {
                            NvmlSource::unopened_all(&nvml.channels, &why.to_string())
                        }),
                    ))
                }
                // Begun without GPU columns (NVML absent or failed), it cannot gain any: it
                // goes on as begun, and its status says why.
                _ => {
                    if let Some(nvml) = recorded {
                        setup.meta.sources.retain(|s| s.name != source::NVML);
                        setup.meta.sources.push(nvml.clone());
                    }
                    return;
                }
            }
        }
        None if plan.selectors.as_ref().is_some_and(Vec::is_empty) => {
            // No GPU for this job: NVML is not even loaded.
            let why = "no GPU allocated to the job".into();
            setup.meta.sources.push(nvml_status::absent(why));
            return;
        }
        None => {
            let open = move || NvmlSource::open(lib.as_deref(), selectors.as_deref());
            unless_stopped(control, open).unwrap_or_else(Err)
        }
    };
    settle_gpus(setup, &plan, opened, started.elapsed());
}

/// An NVML open under way on a thread of its own, while the other sources are sampled.
pub(crate) struct PendingGpus {
    pub(crate) plan: GpuPlan,
    pub(crate) started: Instant,
    pub(crate) receiver: std::sync::mpsc::Receiver<Result<Found<NvmlSource>, NvmlFailed>>,
}

/// Start opening the planned GPUs of a new recording on a thread of its own; `None` when
/// there is nothing to open (no plan, no GPU) or the thread cannot start, and `open_gpus`
/// does it as before.
pub(crate) fn start_opening_gpus(setup: &mut SamplerSetup) -> Option<PendingGpus> {
    let plan = setup.gpus.as_ref()?;
    if plan.selectors.as_ref().is_some_and(Vec::is_empty) {
        return None;
    }
    let (lib, selectors) = (plan.lib.clone(), plan.selectors.clone());
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("aipm-nvml-open".into())
        .spawn(move || {
            let _ = sender.send(NvmlSource::open(lib.as_deref(), selectors.as_deref()));
        });
    thread.ok()?;
    Some(PendingGpus {
        plan: setup.gpus.take()?,
        started: Instant::now(),
        receiver,
    })
}

/// How long a new recording's first sample waits for NVML to open: GPUs in persistence mode
/// open in less; slower opens (1–3 s per GPU without it) do not hold the other sources back.
pub(crate) const OPEN_GRACE: Duration = Duration::from_millis(200);

/// How long a new recording's other sources are sampled and held in memory while NVML
/// opens. Past it the recording goes on without GPU columns, and says why: an NVML blocked
/// by a GPU fallen off the bus must not hold the recording back, nor grow the rows held.
pub(crate) const OPEN_GIVE_UP: Duration = Duration::from_secs(120);

/// Record in the metadata what opening NVML gave, and add its source.
pub(crate) fn settle_gpus(
    setup: &mut SamplerSetup,
    plan: &GpuPlan,
    opened: Result<Found<NvmlSource>, NvmlFailed>,
    took: Duration,
) {
    let opened = nvml_status::opened(plan.lib.as_deref(), opened, took);
    for problem in &opened.problems {
        (setup.log)(Level::Error, &format!("{}: {problem}", opened.status.name));
    }
    setup.meta.sources.retain(|s| s.name != opened.status.name);
    setup.meta.sources.push(opened.status);
    setup.sources.extend(opened.source);
}

/// How often the sampler looks at its stop flag while NVML opens.
const OPEN_POLL: Duration = Duration::from_millis(10);

/// `open` run on a thread of its own, waited for while the sampler is not told to stop. NVML
/// can take seconds to open (each GPU initialised without persistence mode) or block (a GPU
/// that fell off the bus): a job that ends meanwhile must still end its recording within
/// the stop limit. The thread is then left to finish, or block, on its own. `Err` says why.
pub(crate) fn unless_stopped<T: Send + 'static>(
    control: &Control,
    open: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NvmlFailed> {
    let started = Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("aipm-nvml-open".into())
        .spawn(move || {
            let _ = sender.send(open());
        });
    if let Err(e) = thread {
        return Err(NvmlFailed::NoThread(e));
    }
    loop {
        match receiver.recv_timeout(OPEN_POLL) {
            Ok(opened) => return Ok(opened),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(NvmlFailed::NoAnswer)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if *control.stop.lock().unwrap_or_else(|p| p.into_inner()) {
                    return Err(NvmlFailed::NotInTime {
                        waited: started.elapsed(),
                        when: "when the sampler was stopped",
                    });
                }
            }
        }
    }
}
