//! The job's CPU time and memory, from its cgroup.
//!
//! The job cgroup is found from `/proc/<pid>/cgroup` of one of its tasks, never from a
//! hard-coded layout: the path is cut after its `job_<id>` component, so all steps of the
//! job are covered. Slurm names it so under cgroup v1 (`/slurm_<node>/uid_<u>/job_<id>/...`)
//! and v2 (`/system.slice/slurmstepd.scope/job_<id>/...`).

use std::path::{Path, PathBuf};

use crate::sysfs::{parse_u64_line, read_to_string, ValueFile};

/// One reading of the job's usage; `None` where the value could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: Option<u64>,
    pub mem_bytes: Option<u64>,
    pub mem_peak_bytes: Option<u64>,
}

/// Open handles on the job cgroup's accounting files.
#[derive(Debug)]
pub enum JobUsage {
    V1 {
        cpuacct_usage: ValueFile,
        mem_usage: Option<ValueFile>,
        mem_max_usage: Option<ValueFile>,
    },
    V2 {
        cpu_stat: ValueFile,
        mem_current: Option<ValueFile>,
        mem_peak: Option<ValueFile>,
    },
}

impl JobUsage {
    /// Find the cgroup of job `job_id` from the cgroup file of process `pid`.
    pub fn discover(
        proc_root: &Path,
        cgroup_root: &Path,
        pid: u32,
        job_id: u32,
    ) -> Result<JobUsage, String> {
        let cgroup_file = proc_root.join(pid.to_string()).join("cgroup");
        let text = read_to_string(&cgroup_file)?;
        let job = format!("job_{job_id}");
        let lines: Vec<CgroupLine> = text.lines().filter_map(parse_cgroup_line).collect();
        let job_path = |line: &CgroupLine| job_ancestor(line.path, &job);

        let v1_dir = |controller: &str| {
            lines
                .iter()
                .find(|l| l.controllers.split(',').any(|c| c == controller))
                .and_then(|l| Some((l, job_path(l)?)))
                .map(|(l, p)| v1_mount(cgroup_root, l.controllers, controller).join(p))
        };
        if let Some(cpu_dir) = v1_dir("cpuacct") {
            let mem_dir = v1_dir("memory");
            let open_mem = |f: &str| {
                mem_dir
                    .as_ref()
                    .and_then(|d| ValueFile::open(&d.join(f)).ok())
            };
            return Ok(JobUsage::V1 {
                cpuacct_usage: ValueFile::open(&cpu_dir.join("cpuacct.usage"))
                    .map_err(|e| format!("{}/cpuacct.usage: {e}", cpu_dir.display()))?,
                mem_usage: open_mem("memory.usage_in_bytes"),
                mem_max_usage: open_mem("memory.max_usage_in_bytes"),
            });
        }
        if let Some(path) = lines
            .iter()
            .find(|l| l.hierarchy == "0" && l.controllers.is_empty())
            .and_then(job_path)
        {
            // Hybrid hosts mount the v2 tree at `unified/`; pure v2 hosts at the root.
            let base = if cgroup_root.join("cgroup.controllers").exists() {
                cgroup_root.to_path_buf()
            } else {
                cgroup_root.join("unified")
            };
            let dir = base.join(path);
            let open_mem = |f: &str| ValueFile::open(&dir.join(f)).ok();
            return Ok(JobUsage::V2 {
                cpu_stat: ValueFile::open(&dir.join("cpu.stat"))
                    .map_err(|e| format!("{}/cpu.stat: {e}", dir.display()))?,
                mem_current: open_mem("memory.current"),
                mem_peak: open_mem("memory.peak"),
            });
        }
        Err(format!(
            "no cgroup of {job} in {} (Slurm without proctrack/cgroup?)",
            cgroup_file.display()
        ))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobUsage::V1 { .. } => "cgroup v1",
            JobUsage::V2 { .. } => "cgroup v2",
        }
    }

    pub fn read(&self, errors: &mut Vec<String>) -> Usage {
        let mut value = |file: Option<&ValueFile>| match file.map(ValueFile::read_u64) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            None => None,
        };
        match self {
            JobUsage::V1 {
                cpuacct_usage,
                mem_usage,
                mem_max_usage,
            } => Usage {
                cpu_ns: value(Some(cpuacct_usage)),
                mem_bytes: value(mem_usage.as_ref()),
                mem_peak_bytes: value(mem_max_usage.as_ref()),
            },
            JobUsage::V2 {
                cpu_stat,
                mem_current,
                mem_peak,
            } => {
                let mem_bytes = value(mem_current.as_ref());
                let mem_peak_bytes = value(mem_peak.as_ref());
                let mut buf = [0u8; 1024];
                let cpu_ns = match cpu_stat.read_text(&mut buf) {
                    Ok(text) => usage_usec(text).map(|us| us * 1000),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                };
                Usage {
                    cpu_ns,
                    mem_bytes,
                    mem_peak_bytes,
                }
            }
        }
    }
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub hierarchy: &'a str,
    pub controllers: &'a str,
    pub path: &'a str,
}

pub fn parse_cgroup_line(line: &str) -> Option<CgroupLine<'_>> {
    let mut parts = line.splitn(3, ':');
    Some(CgroupLine {
        hierarchy: parts.next()?,
        controllers: parts.next()?,
        path: parts.next()?,
    })
}

/// `/slurm_vm/uid_0/job_7/step_batch/task_0` -> `slurm_vm/uid_0/job_7` (relative).
pub fn job_ancestor(path: &str, job_component: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if component == ".." {
            return None;
        }
        out.push(component);
        if component == job_component {
            return Some(out);
        }
    }
    None
}

/// The mount of a v1 controller: `cpu,cpuacct/` when co-mounted, else `cpuacct/`.
fn v1_mount(root: &Path, controllers: &str, controller: &str) -> PathBuf {
    let joint = root.join(controllers);
    if joint.is_dir() {
        joint
    } else {
        root.join(controller)
    }
}

/// `usage_usec` from a cgroup v2 `cpu.stat`.
fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(parse_u64_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn parses_cgroup_lines() {
        assert_eq!(
            parse_cgroup_line("4:memory:/slurm_vm/uid_0/job_3/step_batch/task_0"),
            Some(CgroupLine {
                hierarchy: "4",
                controllers: "memory",
                path: "/slurm_vm/uid_0/job_3/step_batch/task_0"
            })
        );
        assert_eq!(parse_cgroup_line("0::/").unwrap().controllers, "");
        assert_eq!(
            job_ancestor("/slurm_vm/uid_0/job_3/step_batch/task_0", "job_3"),
            Some(PathBuf::from("slurm_vm/uid_0/job_3"))
        );
        assert_eq!(job_ancestor("/slurm_vm/uid_0/job_31/step_0", "job_3"), None);
        assert_eq!(job_ancestor("/../job_3", "job_3"), None);
    }

    /// The layout seen on Slurm 22.05 with cgroup v1 (shared/notes/slurm-single-node.md).
    #[test]
    fn reads_a_v1_job_cgroup_from_a_task_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc_root, cg) = (tmp.path().join("proc"), tmp.path().join("cg"));
        write(
            &proc_root.join("4242/cgroup"),
            "6:freezer:/slurm_vm/uid_0/job_3/step_batch\n\
             4:memory:/slurm_vm/uid_0/job_3/step_batch/task_0\n\
             2:cpu,cpuacct:/slurm_vm/uid_0/job_3/step_batch/task_0\n0::/\n",
        );
        let job = cg.join("cpu,cpuacct/slurm_vm/uid_0/job_3");
        write(&job.join("cpuacct.usage"), "1500000000\n");
        write(&job.join("step_batch/cpuacct.usage"), "1\n");
        let mem = cg.join("memory/slurm_vm/uid_0/job_3");
        write(&mem.join("memory.usage_in_bytes"), "1048576\n");
        write(&mem.join("memory.max_usage_in_bytes"), "2097152\n");
        let usage = JobUsage::discover(&proc_root, &cg, 4242, 3).unwrap();
        assert_eq!(usage.kind(), "cgroup v1");
        let mut errors = Vec::new();
        assert_eq!(
            usage.read(&mut errors),
            Usage {
                cpu_ns: Some(1_500_000_000),
                mem_bytes: Some(1_048_576),
                mem_peak_bytes: Some(2_097_152)
            }
        );
        assert!(errors.is_empty());
    }

    /// The layout of Slurm on a pure cgroup v2 host (slurmstepd.scope), which this machine
    /// cannot run: tested on a tree of the same shape.
    #[test]
    fn reads_a_v2_job_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let (proc_root, cg) = (tmp.path().join("proc"), tmp.path().join("cg"));
        write(
            &proc_root.join("77/cgroup"),
            "0::/system.slice/slurmstepd.scope/job_12/step_0/user/task_0\n",
        );
        write(&cg.join("cgroup.controllers"), "cpu memory\n");
        let job = cg.join("system.slice/slurmstepd.scope/job_12");
        write(
            &job.join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\n",
        );
        write(&job.join("memory.current"), "4096\n");
        let usage = JobUsage::discover(&proc_root, &cg, 77, 12).unwrap();
        let mut errors = Vec::new();
        let read = usage.read(&mut errors);
        assert_eq!(read.cpu_ns, Some(2_500_000_000));
        assert_eq!(read.mem_bytes, Some(4096));
        assert_eq!(read.mem_peak_bytes, None);
    }

    #[test]
    fn a_process_outside_any_job_cgroup_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let proc_root = tmp.path().join("proc");
        write(&proc_root.join("9/cgroup"), "6:freezer:/\n0::/\n");
        let err = JobUsage::discover(&proc_root, tmp.path(), 9, 5).unwrap_err();
        assert!(err.contains("no cgroup of job_5"), "{err}");
    }
}
