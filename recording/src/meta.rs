//! The metadata file of one job on one node (`<node>.meta.json`).

use serde::{Deserialize, Serialize};

use crate::source;

/// Bumped on any change a reader of an older version would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Slurm's special step ids (`slurm.h`), shown the way Slurm shows them.
pub const SLURM_BATCH_SCRIPT: u32 = 0xffff_fffb;
pub const SLURM_EXTERN_CONT: u32 = 0xffff_fffc;
pub const SLURM_INTERACTIVE_STEP: u32 = 0xffff_fffa;

pub fn step_name(step_id: u32) -> String {
    match step_id {
        SLURM_BATCH_SCRIPT => "batch".into(),
        SLURM_EXTERN_CONT => "extern".into(),
        SLURM_INTERACTIVE_STEP => "interactive".into(),
        n => n.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub schema_version: u32,
    pub aipm_version: String,
    pub job_id: u32,
    /// Set for a task of a job array: `array_job_id`_`array_task_id` is how Slurm names it.
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    /// Steps that ran on this node, as Slurm names them: `batch`, `0`, `1`, `extern`.
    pub steps: Vec<String>,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub job_name: Option<String>,
    pub node: String,
    pub partition: Option<String>,
    /// CPUs allocated to the job on this node.
    pub cpus: Option<u32>,
    /// Memory allocated to the job on this node (what it asked for), when Slurm tracks it.
    /// Added after the first release: absent in older files.
    #[serde(default)]
    pub mem_alloc_bytes: Option<u64>,
    /// Slurm's count of the job's restarts (requeues) when this recording began: which run
    /// of a requeued job it is. Added in the fourth session: absent in older files.
    #[serde(default)]
    pub restart_count: Option<u32>,
    /// GPUs allocated to the job on this node, as Slurm lists them.
    pub gpus: Vec<String>,
    pub start_unix_ms: u64,
    pub start_utc: String,
    /// Unset while the job runs, or when the sampler never finished (node crash).
    pub end_unix_ms: Option<u64>,
    pub end_utc: Option<String>,
    pub period_ms: u64,
    pub sources: Vec<SourceStatus>,
    pub sampler: SamplerStats,
}

/// Whether a source was found on the node, and its channels (columns of the samples file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// [`source::RAPL`], [`source::NVML`]: a string, so that a recording of a source this
    /// reader does not know still reads.
    pub name: String,
    pub status: source::State,
    pub detail: String,
    pub channels: Vec<String>,
}

/// The sampler's account of itself, so that a zero is never ambiguous.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerStats {
    pub samples: u64,
    /// Periods in which no sample could be taken on time.
    pub missed_deadlines: u64,
    /// Times a sampler of another step took over (the previous leader's step ended).
    pub handovers: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub counter_wraps: u64,
    /// Microseconds spent reading sources and writing samples, all samples together.
    pub busy_us: u64,
}

/// A metadata file of the current schema with nothing known yet; writers fill in what
/// they know with struct update syntax.
impl Default for Meta {
    fn default() -> Self {
        Meta {
            schema_version: SCHEMA_VERSION,
            aipm_version: env!("CARGO_PKG_VERSION").into(),
            job_id: 0,
            array_job_id: None,
            array_task_id: None,
            steps: Vec::new(),
            user: String::new(),
            uid: 0,
            gid: 0,
            job_name: None,
            node: String::new(),
            partition: None,
            cpus: None,
            mem_alloc_bytes: None,
            restart_count: None,
            gpus: Vec::new(),
            start_unix_ms: 0,
            start_utc: String::new(),
            end_unix_ms: None,
            end_utc: None,
            period_ms: 0,
            sources: Vec::new(),
            sampler: SamplerStats::default(),
        }
    }
}

impl Meta {
    /// Slurm's name of the job: `1234` or, for an array task, `1234_5`.
    pub fn display_id(&self) -> String {
        match (self.array_job_id, self.array_task_id) {
            (Some(array), Some(task)) => format!("{array}_{task}"),
            _ => self.job_id.to_string(),
        }
    }

    pub fn from_json(text: &str) -> Result<Meta, serde_json::Error> {
        let mut meta: Meta = serde_json::from_str(text)?;
        meta.drop_slurm_sentinels();
        Ok(meta)
    }

    /// Recordings made before the plugin filtered them hold Slurm's NO_VAL (4294967294) as
    /// the array task id of jobs that are not array tasks: such a job is no array task.
    fn drop_slurm_sentinels(&mut self) {
        const NO_VAL: u32 = 0xffff_fffe;
        const INFINITE: u32 = 0xffff_ffff;
        let real = |id: Option<u32>| id.filter(|&v| v != NO_VAL && v != INFINITE);
        match (real(self.array_job_id), real(self.array_task_id)) {
            (Some(array), Some(task)) => {
                (self.array_job_id, self.array_task_id) = (Some(array), Some(task))
            }
            _ => (self.array_job_id, self.array_task_id) = (None, None),
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("Meta serialises");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurms_no_val_as_an_array_task_id_reads_as_no_array() {
        let mut meta = Meta {
            job_id: 8,
            array_job_id: Some(8),
            array_task_id: Some(4294967294),
            ..Meta::default()
        };
        let read = Meta::from_json(&meta.to_json()).unwrap();
        assert_eq!((read.array_job_id, read.array_task_id), (None, None));
        assert_eq!(read.display_id(), "8");
        meta.array_task_id = Some(3);
        let read = Meta::from_json(&meta.to_json()).unwrap();
        assert_eq!(read.display_id(), "8_3");
    }

    #[test]
    fn step_names_follow_slurm() {
        assert_eq!(step_name(SLURM_BATCH_SCRIPT), "batch");
        assert_eq!(step_name(SLURM_EXTERN_CONT), "extern");
        assert_eq!(step_name(3), "3");
    }
}
