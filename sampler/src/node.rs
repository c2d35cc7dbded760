//! The node's side of the attribution: its busy CPU time (`/proc/stat`), its used memory
//! (`/proc/meminfo`), and how many Slurm jobs have a cgroup on it.

use std::path::{Path, PathBuf};

use crate::sysfs::{ReadError, ValueFile};

/// One reading of the node; `None` where a value could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// CPU time spent outside idle and iowait, all CPUs, since boot.
    pub cpu_busy_ns: Option<u64>,
    /// All CPU time, idle included, since boot.
    pub cpu_total_ns: Option<u64>,
    /// MemTotal − MemAvailable.
    pub mem_used_bytes: Option<u64>,
}

pub struct NodeStats {
    stat: ValueFile,
    meminfo: ValueFile,
    ns_per_tick: u64,
    buf: Vec<u8>,
}

impl NodeStats {
    pub fn open(proc_root: &Path) -> Result<NodeStats, ReadError> {
        let open = |name: &str| ValueFile::open(&proc_root.join(name));
        Ok(NodeStats {
            stat: open("stat")?,
            meminfo: open("meminfo")?,
            ns_per_tick: ns_per_tick(),
            buf: vec![0; 8192],
        })
    }

    pub fn read(&mut self, errors: &mut Vec<String>) -> NodeUsage {
        let mut usage = NodeUsage::default();
        match self.stat.read_text(&mut self.buf) {
            Ok(text) => {
                if let Some((busy, total)) = parse_cpu_line(text) {
                    usage.cpu_busy_ns = Some(busy.saturating_mul(self.ns_per_tick));
                    usage.cpu_total_ns = Some(total.saturating_mul(self.ns_per_tick));
                } else {
                    errors.push(format!("{}: no cpu line", self.stat.path().display()));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        match self.meminfo.read_text(&mut self.buf) {
            Ok(text) => usage.mem_used_bytes = parse_mem_used(text),
            Err(e) => errors.push(e.to_string()),
        }
        usage
    }
}

/// Nanoseconds per clock tick, the unit of CPU times in `/proc` (USER_HZ).
pub fn ns_per_tick() -> u64 {
    1_000_000_000 / rustix::param::clock_ticks_per_second().max(1)
}

/// Busy and total ticks from the first line of `/proc/stat`:
/// `cpu user nice system idle iowait irq softirq steal guest guest_nice`.
/// Guest time is already inside user and nice (proc(5)).
pub fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + idle))
}

/// MemTotal − MemAvailable from `/proc/meminfo`, in bytes.
pub fn parse_mem_used(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some(total.saturating_sub(available) * 1024)
}

/// Counts the Slurm jobs that have a cgroup on this node, from the directory that holds the
/// job's own cgroup: `.../uid_<u>/job_<id>` (v1: all `uid_*/job_*`) or `.../job_<id>` (v2).
pub struct JobCensus {
    root: PathBuf,
    by_uid: bool,
}

impl JobCensus {
    /// From the job's cgroup directory, as found by `JobUsage::discover`.
    pub fn new(job_cgroup: &Path) -> Option<JobCensus> {
        let parent = job_cgroup.parent()?;
        let by_uid = parent.file_name()?.to_string_lossy().starts_with("uid_");
        let root = if by_uid { parent.parent()? } else { parent };
        Some(JobCensus {
            root: root.to_path_buf(),
            by_uid,
        })
    }

    pub fn count(&self) -> Option<u64> {
        let jobs_in = |dir: &Path| -> Option<u64> {
            Some(
                std::fs::read_dir(dir)
                    .ok()?
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("job_"))
                    .count() as u64,
            )
        };
        if !self.by_uid {
            return jobs_in(&self.root);
        }
        let mut total = 0;
        for entry in std::fs::read_dir(&self.root).ok()?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("uid_") {
                total += jobs_in(&entry.path()).unwrap_or(0);
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_meminfo() {
        let stat = "cpu  35327 10 14770 314925 2135 5 449 1501 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            parse_cpu_line(stat),
            Some((
                35327 + 10 + 14770 + 5 + 449 + 1501,
                35327 + 10 + 14770 + 5 + 449 + 1501 + 314925 + 2135
            ))
        );
        assert_eq!(parse_cpu_line("intr 1 2\n"), None);
        let meminfo = "MemTotal:       24684092 kB\nMemFree:  1 kB\nMemAvailable:   24336248 kB\n";
        assert_eq!(parse_mem_used(meminfo), Some((24684092 - 24336248) * 1024));
        assert_eq!(parse_mem_used("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn counts_jobs_of_every_user_in_a_v1_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let slurm = tmp.path().join("cpuacct/slurm_vm");
        for dir in [
            "uid_0/job_3/step_batch",
            "uid_0/job_4",
            "uid_1001/job_5",
            "system",
        ] {
            std::fs::create_dir_all(slurm.join(dir)).unwrap();
        }
        let census = JobCensus::new(&slurm.join("uid_0/job_3")).unwrap();
        assert_eq!(census.count(), Some(3));
        std::fs::remove_dir_all(slurm.join("uid_1001/job_5")).unwrap();
        assert_eq!(census.count(), Some(2));
    }

    #[test]
    fn counts_jobs_in_a_v2_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let scope = tmp.path().join("system.slice/slurmstepd.scope");
        for dir in ["job_12/step_0", "job_13", "system"] {
            std::fs::create_dir_all(scope.join(dir)).unwrap();
        }
        assert_eq!(
            JobCensus::new(&scope.join("job_12")).unwrap().count(),
            Some(2)
        );
    }
}
