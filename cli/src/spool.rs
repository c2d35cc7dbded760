//! The reading side of the spool: which spool, and the recordings of one job.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aipm_recording::config::{PluginConfig, DEFAULT_PLUGSTACK_DIR, DEFAULT_SPOOL};
use aipm_recording::layout::{self, NodeName};
use aipm_recording::meta::Meta;
use aipm_recording::samples::Samples;
use aipm_recording::untrusted::{self, vouch_for, Identity, JobDir};
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

/// The recordings to read: `--spool`, else `$AIPM_SPOOL`, else the store (or, without one,
/// the spool) of the admin's plugstack configuration, else the default spool.
pub fn resolve_spool(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("AIPM_SPOOL").map(PathBuf::from))
        .or_else(|| {
            PluginConfig::from_plugstack_dir(Path::new(DEFAULT_PLUGSTACK_DIR))
                .map(|c| c.recordings().to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL))
}

/// One node's recording of a job. Its metadata's job, node, user and uid are the file
/// system's (the directory's name and owner, the file's name), whatever the file says.
#[derive(Debug, Clone)]
pub struct NodeRecording {
    pub meta: Meta,
    pub samples: Samples,
    pub samples_path: PathBuf,
    /// What the metadata file claimed that the file system contradicts, naming the file:
    /// shown as notes, never trusted.
    pub claims: Vec<String>,
    /// The node's metadata is there but not its samples file: named in `claims`, and
    /// `job` exits 2 rather than report a node without figures as if it had none.
    pub samples_missing: bool,
}

/// A job directory this user may not read: another user's recording (not an error for
/// commands that list what they can read).
#[derive(Debug)]
pub struct OthersRecording(pub String);

impl fmt::Display for OthersRecording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: the recording belongs to another user", self.0)
    }
}

impl std::error::Error for OthersRecording {}

/// For commands that list what they can read: a recording that cannot be read is named on
/// stderr and left out, unless it is another user's (which is no one's error).
pub fn warn_unless_others(e: &anyhow::Error) {
    if e.downcast_ref::<OthersRecording>().is_none() {
        eprintln!("aipm-analyze: warning: {e:#}");
    }
}

#[derive(Debug)]
pub enum Lookup {
    Found(Vec<NodeRecording>),
    NotFound(String),
}

/// A job directory held open, with each node's metadata, checked.
struct OpenJob {
    dir: JobDir,
    nodes: Vec<NodeMeta>,
}

struct NodeMeta {
    node: NodeName,
    meta: Meta,
    claims: Vec<String>,
}

impl OpenJob {
    /// `spool/<id>` and its metadata files; `Ok(None)` when the job has no directory.
    fn open(spool: &Path, id: u32) -> anyhow::Result<Option<OpenJob>> {
        let dir = match JobDir::open(spool, id) {
            Ok(Some(dir)) => dir,
            Ok(None) => return Ok(None),
            Err(e) if e.is_permission_denied() => return Err(OthersRecording(e.path).into()),
            Err(e) => return Err(e.into()),
        };
        let owner = crate::system_user::by_uid(dir.owner_uid());
        let mut nodes = Vec::new();
        for node in dir.nodes()? {
            let mut meta = dir.read_meta(&node)?;
            let identity = Identity {
                job_id: dir.job_id(),
                node: node.clone(),
                uid: dir.owner_uid(),
                gid: owner.as_ref().map_or(dir.owner_gid(), |u| u.gid),
                user: owner
                    .as_ref()
                    .map_or_else(|| dir.owner_uid().to_string(), |u| u.name.clone()),
            };
            let file = dir.path().join(layout::meta_file_name(&node));
            let claims = vouch_for(&mut meta, &identity, &file);
            nodes.push(NodeMeta { node, meta, claims });
        }
        Ok(Some(OpenJob { dir, nodes }))
    }

    /// Each node's samples, read in parallel (a long job's are tens of MB per node).
    fn read(&self) -> anyhow::Result<Vec<NodeRecording>> {
        crate::par::map(&self.nodes, |n| self.read_node(n))
            .into_iter()
            .collect()
    }

    fn read_node(&self, n: &NodeMeta) -> anyhow::Result<NodeRecording> {
        let limit = untrusted::samples_limit(&n.meta, aipm_recording::time::now_unix_ms());
        let samples_path = self.dir.path().join(layout::samples_file_name(&n.node));
        let mut claims = n.claims.clone();
        let (samples, samples_missing) = match self.dir.read_samples(&n.node, limit) {
            Ok(samples) => (samples, false),
            Err(aipm_recording::samples::ReadError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                claims.push(format!(
                    "{}: missing: the node's samples were never written (the recording failed to start there) or were removed; this node has no figures",
                    samples_path.display()
                ));
                (Samples::default(), true)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(NodeRecording {
            meta: n.meta.clone(),
            samples,
            samples_path,
            claims,
            samples_missing,
        })
    }
}

/// The recordings of one job, one per node, sorted by node.
pub fn find_job(spool: &Path, job: JobRef) -> anyhow::Result<Lookup> {
    if !spool.is_dir() {
        anyhow::bail!(
            "spool {} does not exist; pass --spool DIR or set AIPM_SPOOL",
            spool.display()
        );
    }
    let id = match job {
        JobRef::Job(id) => Some(id),
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
    let Some(first) = id.map(|id| OpenJob::open(spool, id)).transpose()?.flatten() else {
        return Ok(missing());
    };
    if first.nodes.is_empty() {
        let failed = first.dir.nodes_without_metadata()?;
        if !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(NodeName::as_str).collect();
            anyhow::bail!(
                "job {job} was to be recorded, but its recording failed as it began on node(s) {}: \
                 {} holds samples and no metadata (the spool full or unwritable then: the plugin's \
                 error is in that node's slurmd log)",
                names.join(","),
                first.dir.path().display()
            );
        }
    }
    // Decided on the metadata before any samples are read.
    let mut jobs = vec![first];
    // `1234` where 1234 is a job array: every task of it (Slurm gives the array's id to one
    // of its tasks) that belongs to the same user: another user's metadata claiming to be
    // a task of this array is not one.
    if let JobRef::Job(id) = job {
        let owner = jobs[0].dir.owner_uid();
        if jobs[0]
            .nodes
            .iter()
            .any(|n| n.meta.array_job_id == Some(id))
        {
            jobs = jobs_with(spool, |j| {
                j.dir.owner_uid() == owner
                    && j.nodes.iter().any(|n| n.meta.array_job_id == Some(id))
            })?;
        }
    }
    let mut recordings = Vec::new();
    for job in &jobs {
        recordings.extend(job.read()?);
    }
    recordings.sort_by(|a, b| {
        (a.meta.array_task_id, &a.meta.node).cmp(&(b.meta.array_task_id, &b.meta.node))
    });
    Ok(if recordings.is_empty() {
        missing()
    } else {
        Lookup::Found(recordings)
    })
}

/// The job directories of the spool that `wanted` accepts, in the spool's order.
/// Directories that cannot be read (other users', broken ones) are skipped.
fn jobs_with(spool: &Path, wanted: impl Fn(&OpenJob) -> bool) -> anyhow::Result<Vec<OpenJob>> {
    let mut jobs = Vec::new();
    for id in job_ids(spool)? {
        if let Ok(Some(job)) = OpenJob::open(spool, id) {
            if wanted(&job) {
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

/// The job id of an array task: Slurm's accounting says which it is where it exists;
/// without it, the metadata is searched, the only word there is (the job found is shown
/// with its directory's owner, whoever its metadata names).
fn find_array_task(spool: &Path, array_job_id: u32, task_id: u32) -> anyhow::Result<Option<u32>> {
    let name = format!("{array_job_id}_{task_id}");
    if let Ok(Some(accounted)) = crate::export::sacct::one_job(&name) {
        if accounted.job.job == name {
            return Ok(Some(accounted.job.job_id));
        }
    }
    let task = |j: &OpenJob| {
        j.nodes.iter().any(|n| {
            n.meta.array_job_id == Some(array_job_id) && n.meta.array_task_id == Some(task_id)
        })
    };
    Ok(jobs_with(spool, task)?.first().map(|j| j.dir.job_id()))
}

/// The metadata of exactly job `id`, one per node (sorted by node: a job's first node
/// speaks for it), without its samples. Empty when the job has no directory.
pub fn job_metas(spool: &Path, id: u32) -> anyhow::Result<Vec<Meta>> {
    Ok(OpenJob::open(spool, id)?
        .map(|job| job.nodes.into_iter().map(|n| n.meta).collect())
        .unwrap_or_default())
}

/// The recordings of exactly job `id` (an array's own id gives its own task only, not the
/// whole array as `find_job` does): what the listing commands read, one directory each.
/// Empty when the job has no directory.
pub fn job_recordings(spool: &Path, id: u32) -> anyhow::Result<Vec<NodeRecording>> {
    match OpenJob::open(spool, id)? {
        Some(job) => job.read(),
        None => Ok(Vec::new()),
    }
}

/// The job ids of the spool's directories, in order (not those set aside:
/// `<id>.previous-…`).
pub fn job_ids(spool: &Path) -> anyhow::Result<Vec<u32>> {
    let mut ids: Vec<u32> = std::fs::read_dir(spool)
        .with_context(|| {
            format!(
                "listing {}; pass --spool DIR or set AIPM_SPOOL",
                spool.display()
            )
        })?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let id: u32 = name.to_str()?.parse().ok()?;
            // Exactly the digits Slurm writes: `+5` or `05` is not job 5's directory.
            (name.to_str()? == id.to_string()).then_some(id)
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Every recording of `node` in the spool that overlaps `[from_ms, to_ms)`, readable by this
/// user (others' are skipped: `compare` is an admin's view, run as root), by start time.
/// A recording that cannot be read is named on stderr and left out.
pub fn node_recordings(
    spool: &Path,
    node: &str,
    from_ms: u64,
    to_ms: u64,
) -> anyhow::Result<Vec<NodeRecording>> {
    let node_name = NodeName::new(node).map_err(anyhow::Error::msg)?;
    let mut found = Vec::new();
    for id in job_ids(spool)? {
        let job = match OpenJob::open(spool, id) {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) => {
                warn_unless_others(&e);
                continue;
            }
        };
        let Some(n) = job.nodes.iter().find(|n| n.node == node_name) else {
            continue;
        };
        // A recording without an end may still run, or ended with its node: read it to see.
        let ends_before = n.meta.end_unix_ms.is_some_and(|end| end < from_ms);
        if n.meta.start_unix_ms >= to_ms || ends_before {
            continue;
        }
        match job.read_node(n) {
            Ok(recording) => found.push(recording),
            Err(e) => eprintln!("aipm-analyze: warning: {e:#}"),
        }
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
