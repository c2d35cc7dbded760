//! The reading side of the spool: which spool, and the recordings of one job.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aipm_recording::config::{PluginConfig, DEFAULT_PLUGSTACK_DIR, DEFAULT_SPOOL};
use aipm_recording::layout;
use aipm_recording::meta::Meta;
use aipm_recording::samples::Samples;
use anyhow::Context as _;

/// A job as Slurm names it: `1234`, or `1234_5` for task 5 of array job 1234.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRef {
    Job(u32),
    ArrayTask { array_job_id: u32, task_id: u32 },
}

impl FromStr for JobRef {
    type Err = String;

    fn from_str(text: &str) -> Result<JobRef, String> {
        let number = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        };
        let parsed = match text.split_once('_') {
            None => number(text).map(JobRef::Job),
            Some((array, task)) => {
                number(array)
                    .zip(number(task))
                    .map(|(array_job_id, task_id)| JobRef::ArrayTask {
                        array_job_id,
                        task_id,
                    })
            }
        };
        parsed.ok_or_else(|| {
            format!("expected a job id such as 1234, or 1234_5 for an array task, got {text:?}")
        })
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobRef::Job(id) => write!(f, "{id}"),
            JobRef::ArrayTask {
                array_job_id,
                task_id,
            } => write!(f, "{array_job_id}_{task_id}"),
        }
    }
}

/// The spool to read: `--spool`, else `$AIPM_SPOOL`, else the one in the admin's
/// plugstack configuration, else the default.
pub fn resolve_spool(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("AIPM_SPOOL").map(PathBuf::from))
        .or_else(|| {
            PluginConfig::from_plugstack_dir(Path::new(DEFAULT_PLUGSTACK_DIR)).map(|c| c.spool)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL))
}

/// One node's recording of a job.
#[derive(Debug, Clone)]
pub struct NodeRecording {
    pub meta: Meta,
    pub samples: Samples,
    pub samples_path: PathBuf,
}

#[derive(Debug)]
pub enum Lookup {
    Found(Vec<NodeRecording>),
    NotFound(String),
}

/// The recordings of one job, one per node, sorted by node.
pub fn find_job(spool: &Path, job: JobRef) -> anyhow::Result<Lookup> {
    if !spool.is_dir() {
        anyhow::bail!(
            "spool {} does not exist; pass --spool DIR or set AIPM_SPOOL",
            spool.display()
        );
    }
    let dir = match job {
        JobRef::Job(id) => Some(layout::job_dir(spool, id)),
        JobRef::ArrayTask {
            array_job_id,
            task_id,
        } => find_array_task(spool, array_job_id, task_id)?,
    };
    let missing = || {
        Lookup::NotFound(format!(
            "no recording of job {job} in {} (was it submitted with --energy-profile?)",
            spool.display()
        ))
    };
    let Some(dir) = dir.filter(|d| d.exists()) else {
        return Ok(missing());
    };
    // Decided on the metadata before any samples are read.
    let mut metas = read_job_metas(&dir)?;
    // `1234` where 1234 is a job array: every task of it (Slurm gives the array's id to one
    // of its tasks).
    if let JobRef::Job(id) = job {
        if metas.iter().any(|(m, _)| m.array_job_id == Some(id)) {
            metas = Vec::new();
            for task_dir in dirs_with(spool, |m| m.array_job_id == Some(id))? {
                metas.extend(read_job_metas(&task_dir)?);
            }
        }
    }
    let mut recordings = read_recordings(&metas)?;
    recordings.sort_by(|a, b| {
        (a.meta.array_task_id, &a.meta.node).cmp(&(b.meta.array_task_id, &b.meta.node))
    });
    Ok(if recordings.is_empty() {
        missing()
    } else {
        Lookup::Found(recordings)
    })
}

/// The job directories of the spool holding a node's metadata that `wanted` accepts, in the
/// spool's order. Directories of other users are unreadable and skipped.
fn dirs_with(spool: &Path, wanted: impl Fn(&Meta) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries =
        std::fs::read_dir(spool).with_context(|| format!("listing {}", spool.display()))?;
    for entry in entries.flatten() {
        // Job directories only (`<id>`), not ones set aside (`<id>.previous-…`).
        if entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        let matches = files.flatten().any(|f| {
            let name = f.file_name();
            layout::node_of_meta_file(&name.to_string_lossy()).is_some()
                && std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|t| Meta::from_json(&t).ok())
                    .is_some_and(|m| wanted(&m))
        });
        if matches {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// The job directory of an array task: its job id differs from the array's, so the
/// metadata is searched.
fn find_array_task(
    spool: &Path,
    array_job_id: u32,
    task_id: u32,
) -> anyhow::Result<Option<PathBuf>> {
    let task = |m: &Meta| m.array_job_id == Some(array_job_id) && m.array_task_id == Some(task_id);
    Ok(dirs_with(spool, task)?.into_iter().next())
}

/// The samples of each node, read in parallel (a long job's are tens of MB per node).
fn read_recordings(metas: &[(Meta, PathBuf)]) -> anyhow::Result<Vec<NodeRecording>> {
    crate::par::map(metas, read_recording).into_iter().collect()
}

fn read_job_dir(dir: &Path) -> anyhow::Result<Vec<NodeRecording>> {
    let mut recordings = read_recordings(&read_job_metas(dir)?)?;
    recordings.sort_by(|a, b| a.meta.node.cmp(&b.meta.node));
    Ok(recordings)
}

/// The metadata of each node of a job directory, with the path of its samples: small files,
/// for deciding whether the samples are worth reading.
fn read_job_metas(dir: &Path) -> anyhow::Result<Vec<(Meta, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("{}: the recording belongs to another user", dir.display())
        } else {
            anyhow::Error::new(e).context(format!("listing {}", dir.display()))
        }
    })?;
    let mut metas = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(node) = layout::node_of_meta_file(&file_name) else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let meta_path = entry.path();
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        let meta = Meta::from_json(&text)
            .with_context(|| format!("{}: not an aipm metadata file", meta_path.display()))?;
        let node = layout::NodeName::new(node).map_err(anyhow::Error::msg)?;
        metas.push((meta, dir.join(layout::samples_file_name(&node))));
    }
    // By node, as the recordings are: a job's first node speaks for it (its user, its id).
    metas.sort_by(|a, b| a.0.node.cmp(&b.0.node));
    Ok(metas)
}

/// The metadata of exactly job `id`, one per node, without its samples. Empty when the job
/// has no directory.
pub fn job_metas(spool: &Path, id: u32) -> anyhow::Result<Vec<Meta>> {
    let dir = layout::job_dir(spool, id);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(read_job_metas(&dir)?.into_iter().map(|(m, _)| m).collect())
}

fn read_recording((meta, samples_path): &(Meta, PathBuf)) -> anyhow::Result<NodeRecording> {
    let samples = match Samples::read(samples_path) {
        Ok(samples) => samples,
        Err(aipm_recording::samples::ReadError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            Samples::default()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(NodeRecording {
        meta: meta.clone(),
        samples,
        samples_path: samples_path.clone(),
    })
}

/// The recordings of exactly job `id` (an array's own id gives its own task only, not the
/// whole array as `find_job` does): what the listing commands read, one directory each.
/// Empty when the job has no directory.
pub fn job_recordings(spool: &Path, id: u32) -> anyhow::Result<Vec<NodeRecording>> {
    let dir = layout::job_dir(spool, id);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    read_job_dir(&dir)
}

/// The job ids of the spool's directories, in order.
pub fn job_ids(spool: &Path) -> anyhow::Result<Vec<u32>> {
    let mut ids: Vec<u32> = std::fs::read_dir(spool)
        .with_context(|| {
            format!(
                "listing {}; pass --spool DIR or set AIPM_SPOOL",
                spool.display()
            )
        })?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Every recording of `node` in the spool that overlaps `[from_ms, to_ms)`, readable by this
/// user (others' are skipped: `compare` is an admin's view, run as root), by start time.
pub fn node_recordings(
    spool: &Path,
    node: &str,
    from_ms: u64,
    to_ms: u64,
) -> anyhow::Result<Vec<NodeRecording>> {
    let node_name = layout::NodeName::new(node).map_err(anyhow::Error::msg)?;
    let entries = std::fs::read_dir(spool).with_context(|| {
        format!(
            "listing {}; pass --spool DIR or set AIPM_SPOOL",
            spool.display()
        )
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let meta_path = dir.join(layout::meta_file_name(&node_name));
        let Ok(text) = std::fs::read_to_string(&meta_path) else {
            continue;
        };
        let Ok(meta) = Meta::from_json(&text) else {
            continue;
        };
        // A recording without an end may still run, or ended with its node: read it to see.
        let ends_before = meta.end_unix_ms.is_some_and(|end| end < from_ms);
        if meta.start_unix_ms >= to_ms || ends_before {
            continue;
        }
        let samples_path = dir.join(layout::samples_file_name(&node_name));
        let Ok(samples) = Samples::read(&samples_path) else {
            continue;
        };
        found.push(NodeRecording {
            meta,
            samples,
            samples_path,
        });
    }
    found.sort_by_key(|r| (r.meta.start_unix_ms, r.meta.job_id));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_as_slurm_writes_them() {
        assert_eq!("1234".parse(), Ok(JobRef::Job(1234)));
        assert_eq!(
            "1234_5".parse(),
            Ok(JobRef::ArrayTask {
                array_job_id: 1234,
                task_id: 5
            })
        );
        for bad in ["", "x", "12_", "_3", "1_2_3", "-1", "+5", "../1"] {
            let err = bad.parse::<JobRef>().unwrap_err();
            assert!(err.contains("expected a job id"), "{bad}: {err}");
        }
    }
}
