//! What the metadata says of the `nvml` source once opening it has given its answer: kept
//! apart from the sampling loop, which only files the status and adds the source.

use std::path::Path;
use std::time::Duration;

use aipm_recording::meta::SourceStatus;
use aipm_recording::source::{self, State};

use super::nvml::NvmlSource;
use super::nvml_error::NvmlFailed;
use super::{EnergySource, Found, Opened};

/// An NVML open this slow is named in the metadata: 1–3 s per GPU is what GPUs without
/// persistence mode take to initialise.
const SLOW_OPEN: Duration = Duration::from_secs(1);

/// The source and its status from the answer of opening NVML (from `lib`, in `took`).
pub fn opened(
    lib: Option<&Path>,
    opened: Result<Found<NvmlSource>, NvmlFailed>,
    took: Duration,
) -> Opened {
    match opened {
        Ok(Found::Present(source)) => {
            let detail = found_detail(lib, &source, took);
            let problems = source.lost().to_vec();
            let state = match source.unopened().len() == source.channels().len() {
                true => State::Failed,
                false => State::Found,
            };
            Opened {
                status: status(state, detail, source.channels().to_vec()),
                source: Some(Box::new(source)),
                problems,
            }
        }
        Ok(Found::Absent(why)) => Opened {
            source: None,
            status: status(State::Absent, why, Vec::new()),
            problems: Vec::new(),
        },
        Err(e) => Opened {
            source: None,
            status: status(State::Failed, e.to_string(), Vec::new()),
            problems: vec![e.to_string()],
        },
    }
}

/// The status of GPUs not sampled, and why.
pub fn absent(detail: String) -> SourceStatus {
    status(State::Absent, detail, Vec::new())
}

pub fn status(state: State, detail: String, channels: Vec<String>) -> SourceStatus {
    SourceStatus {
        name: source::NVML.into(),
        status: state,
        detail,
        channels,
    }
}

/// NVML's library, then whatever is read otherwise than plainly, or not at all.
fn found_detail(lib: Option<&Path>, source: &NvmlSource, took: Duration) -> String {
    let mut detail = match lib {
        Some(lib) => format!("NVML from {}", lib.display()),
        None => "NVML".to_string(),
    };
    let d = &mut detail;
    let slices = source.mig_slices();
    note(
        d,
        "MIG slices get their share of the GPU's SMs: ",
        &slices,
        ", ",
        "",
    );
    let integrated = source.integrated_channels();
    note(
        d,
        "no energy counter on ",
        &integrated,
        ", ",
        ": integrated from power",
    );
    let by_index = source.taken_by_index();
    let why = "no minor number from NVML, Slurm's GPU id taken as NVML's index: ";
    note(d, why, &by_index, ", ", "");
    note(
        d,
        "not supported, left empty: ",
        &source.unsupported(),
        "; ",
        "",
    );
    if took >= SLOW_OPEN {
        d.push_str(&format!(
            "; NVML took {:.1} s to open (GPUs without persistence mode?)",
            took.as_secs_f64()
        ));
    }
    note(d, "read otherwise: ", &source.degraded(), "; ", "");
    note(d, "not opened, not recorded: ", source.lost(), "; ", "");
    let why = "not opened when this sampler took over, left empty: ";
    note(d, why, &source.unopened(), "; ", "");
    detail
}

/// `; BEFORE<list>AFTER`, for a list that is not empty.
fn note<T: AsRef<str>>(detail: &mut String, before: &str, list: &[T], sep: &str, after: &str) {
    if list.is_empty() {
        return;
    }
    let list: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
    detail.push_str(&format!("; {before}{}{after}", list.join(sep)));
}
