//! The job's CPU time and memory, from its cgroup.
//!
//! The job cgroup is found from `/proc/<pid>/cgroup` of one of its tasks, never from a
//! hard-coded layout: the path is cut after its `job_<id>` component, so all steps of the
//! job are covered. Slurm names it so under cgroup v1 (`/slurm_<node>/uid_<u>/job_<id>/...`)
//! and v2 (`/system.slice/slurmstepd.scope/job_<id>/...`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::node::ns_per_tick;
use crate::sysfs::{parse_u64_line, read_to_string, ReadError, ValueFile};

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
    /// No cgroup: the process tree under one pid, walked through `/proc` at every sample.
    ProcessTree(ProcessTree),
}

/// Why a job's cgroup was not found: the plugin then follows the task's process tree.
#[derive(Debug, thiserror::Error)]
pub enum NoJobCgroup {
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    #[error("no cgroup of {job} in {} (Slurm without proctrack/cgroup?)", cgroup_file.display())]
    NotListed { job: String, cgroup_file: PathBuf },
}

impl JobUsage {
    /// Find the cgroup of job `job_id` from the cgroup file of process `pid`.
    pub fn discover(
        proc_root: &Path,
        cgroup_root: &Path,
        pid: u32,
        job_id: u32,
    ) -> Result<JobUsage, NoJobCgroup> {
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
                cpuacct_usage: ValueFile::open(&cpu_dir.join("cpuacct.usage"))?,
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
                cpu_stat: ValueFile::open(&dir.join("cpu.stat"))?,
                mem_current: open_mem("memory.current"),
                mem_peak: open_mem("memory.peak"),
            });
        }
        Err(NoJobCgroup::NotListed { job, cgroup_file })
    }

    /// The job's cgroup directory (the CPU controller's, under v1).
    pub fn cgroup_dir(&self) -> Option<&Path> {
        match self {
            JobUsage::V1 { cpuacct_usage, .. } => cpuacct_usage.path().parent(),
            JobUsage::V2 { cpu_stat, .. } => cpu_stat.path().parent(),
            JobUsage::ProcessTree(_) => None,
        }
    }

    /// The job's processes: every `cgroup.procs` under the job cgroup (all steps and
    /// tasks), or the process tree as the last `read` walked it.
    pub fn pids(&self) -> Option<Vec<u32>> {
        match self {
            JobUsage::ProcessTree(tree) => tree.pids.clone(),
            _ => {
                let mut pids = Vec::new();
                let mut dirs = vec![self.cgroup_dir()?.to_path_buf()];
                while let Some(dir) = dirs.pop() {
                    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                        pids.extend(
                            text.split_whitespace()
                                .filter_map(|p| p.parse::<u32>().ok()),
                        );
                    }
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            dirs.push(entry.path());
                        }
                    }
                }
                Some(pids)
            }
        }
    }

    /// Whether `pids` has an answer, found without looking for the processes: always for a
    /// cgroup, for a process tree once a `read` has walked it.
    pub fn knows_pids(&self) -> bool {
        match self {
            JobUsage::ProcessTree(tree) => tree.pids.is_some(),
            _ => true,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobUsage::V1 { .. } => "cgroup v1",
            JobUsage::V2 { .. } => "cgroup v2",
            JobUsage::ProcessTree(_) => "process tree",
        }
    }

    pub fn read(&mut self, errors: &mut Vec<String>) -> Usage {
        if let JobUsage::ProcessTree(tree) = self {
            return tree.read(errors);
        }
        let mut value = |file: Option<&ValueFile>| match file.map(ValueFile::read_u64) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                errors.push(e.to_string());
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
            JobUsage::ProcessTree(_) => Usage::default(),
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
                        errors.push(e.to_string());
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

/// The processes descending from one pid, for `aipm-analyze record` and nodes without job
/// cgroups. CPU time is the tree's `utime + stime + cutime + cstime` (a child's time moves
/// into its parent's `cutime` when it is reaped, so nothing is counted twice); memory is
/// the sum of resident sets.
#[derive(Debug)]
pub struct ProcessTree {
    proc_root: PathBuf,
    root_pid: u32,
    /// The process that will reap `root_pid` (aipm-analyze record): once it has, the tree's
    /// time is in the reaper's `cutime + cstime`.
    reaper: Option<u32>,
    ns_per_tick: u64,
    page_size: u64,
    peak_bytes: u64,
    /// The processes of the last walk (`None` before one, or when it failed), shared with
    /// the GPU source rather than walked again.
    pids: Option<Vec<u32>>,
}

impl ProcessTree {
    pub fn new(proc_root: &Path, root_pid: u32, reaper: Option<u32>) -> ProcessTree {
        ProcessTree {
            proc_root: proc_root.to_path_buf(),
            root_pid,
            reaper,
            ns_per_tick: ns_per_tick(),
            page_size: rustix::param::page_size() as u64,
            peak_bytes: 0,
            pids: None,
        }
    }

    fn read(&mut self, errors: &mut Vec<String>) -> Usage {
        let walked = match self.walk_children() {
            Some(procs) => Ok(procs),
            None => self.scan_all(),
        };
        let procs = match walked {
            Ok(procs) => procs,
            Err(e) => {
                self.pids = None;
                errors.push(e.to_string());
                return Usage::default();
            }
        };
        self.pids = Some(procs.iter().map(|p| p.pid).collect());
        let (ticks, pages) = procs
            .iter()
            .filter(|p| Some(p.pid) != self.reaper)
            .fold((0, 0), |(t, r), p| {
                (t + p.ticks + p.child_ticks, r + p.rss_pages)
            });
        let reaped = self
            .reaper
            .and_then(|r| self.stat(r))
            .map(|r| r.child_ticks);
        let root_alive = procs.iter().any(|p| p.pid == self.root_pid);
        if !root_alive && reaped.is_none() {
            return Usage::default();
        }
        let bytes = pages * self.page_size;
        self.peak_bytes = self.peak_bytes.max(bytes);
        Usage {
            cpu_ns: Some((ticks + reaped.unwrap_or(0)) * self.ns_per_tick),
            mem_bytes: Some(bytes),
            mem_peak_bytes: Some(self.peak_bytes),
        }
    }

    fn stat(&self, pid: u32) -> Option<ProcStat> {
        let text =
            std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat")).ok()?;
        parse_proc_stat(pid, &text)
    }

    /// The tree through `/proc/<pid>/task/<tid>/children` (Linux ≥ 3.5 with
    /// CONFIG_PROC_CHILDREN): a few reads per process of the tree, whatever else runs on the
    /// node. `None` when the kernel has no such file.
    fn walk_children(&self) -> Option<Vec<ProcStat>> {
        let root_tasks = self.proc_root.join(self.root_pid.to_string()).join("task");
        let first = root_tasks.join(self.root_pid.to_string()).join("children");
        if !first.exists() && self.proc_root.join(self.root_pid.to_string()).exists() {
            return None;
        }
        let mut procs = Vec::new();
        let mut queue = vec![self.root_pid];
        while let Some(pid) = queue.pop() {
            // A process may exit while it is read: it is then simply not counted.
            let Some(stat) = self.stat(pid) else { continue };
            procs.push(stat);
            let tasks = self.proc_root.join(pid.to_string()).join("task");
            for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
                if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                    queue.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        Some(procs)
    }

    /// The tree from every process's parent pid: for kernels without `children` files.
    fn scan_all(&self) -> Result<Vec<ProcStat>, ReadError> {
        let entries = std::fs::read_dir(&self.proc_root).map_err(|source| ReadError::Listing {
            path: self.proc_root.clone(),
            source,
        })?;
        let all: Vec<ProcStat> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.stat(pid))
            .collect();
        let links: Vec<(u32, u32)> = all.iter().map(|p| (p.pid, p.ppid)).collect();
        let members = descendants(&links, self.root_pid);
        Ok(all
            .into_iter()
            .zip(members)
            .filter_map(|(p, member)| member.then_some(p))
            .collect())
    }
}

/// Which of the `(pid, parent pid)` pairs descend from `root`, `root` included: children
/// indexed by parent once, then one walk down from `root`, so linear in the processes.
/// Each entry is visited once, so even a cycle (pids reused while /proc is read) ends.
fn descendants(links: &[(u32, u32)], root: u32) -> Vec<bool> {
    let mut children: HashMap<u32, Vec<usize>> = HashMap::with_capacity(links.len());
    for (i, &(pid, ppid)) in links.iter().enumerate() {
        if pid != ppid {
            children.entry(ppid).or_default().push(i);
        }
    }
    let mut member: Vec<bool> = links.iter().map(|&(pid, _)| pid == root).collect();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &child in children.get(&parent).into_iter().flatten() {
            if !std::mem::replace(&mut member[child], true) {
                parents.push(links[child].0);
            }
        }
    }
    member
}

#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    pid: u32,
    ppid: u32,
    /// utime + stime.
    ticks: u64,
    /// cutime + cstime: children it has reaped.
    child_ticks: u64,
    rss_pages: u64,
}

/// Fields of `/proc/<pid>/stat` (proc(5)); the command name may hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn parse_proc_stat(pid: u32, text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ... rss(24).
    let field = |n: usize| f.get(n - 3)?.parse::<i64>().ok();
    let sum = |a: usize, b: usize| Some((field(a)? + field(b)?).max(0) as u64);
    Some(ProcStat {
        pid,
        ppid: field(4)? as u32,
        ticks: sum(14, 15)?,
        child_ticks: sum(16, 17)?,
        rss_pages: field(24)?.max(0) as u64,
    })
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

    /// The layout seen on Slurm 22.05 with cgroup v1 (docs/background/slurm-single-node.md).
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
        let mut usage = JobUsage::discover(&proc_root, &cg, 4242, 3).unwrap();
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
        let mut usage = JobUsage::discover(&proc_root, &cg, 77, 12).unwrap();
        let mut errors = Vec::new();
        let read = usage.read(&mut errors);
        assert_eq!(read.cpu_ns, Some(2_500_000_000));
        assert_eq!(read.mem_bytes, Some(4096));
        assert_eq!(read.mem_peak_bytes, None);
    }

    #[test]
    fn parses_proc_stat_with_a_tricky_name() {
        let text =
            "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 150 50 30 20 20 0 1 0 5 1000 256 x";
        assert_eq!(
            parse_proc_stat(42, text),
            Some(ProcStat {
                pid: 42,
                ppid: 7,
                ticks: 200,
                child_ticks: 50,
                rss_pages: 256
            })
        );
    }

    #[test]
    fn sums_a_process_tree_and_ignores_strangers() {
        let tmp = tempfile::tempdir().unwrap();
        let stat = |pid: u32, ppid: u32, utime: u64, rss: u64| {
            format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0 5 1000 {rss} x")
        };
        for (pid, ppid, utime, rss) in [
            (10, 1, 100, 10),
            (11, 10, 50, 5),
            (12, 11, 25, 1),
            (13, 1, 999, 999),
        ] {
            write(
                &tmp.path().join(format!("{pid}/stat")),
                &stat(pid, ppid, utime, rss),
            );
        }
        let mut usage = JobUsage::ProcessTree(ProcessTree::new(tmp.path(), 10, None));
        let read = usage.read(&mut Vec::new());
        let tick_ns = ns_per_tick();
        assert_eq!(read.cpu_ns, Some(175 * tick_ns));
        assert_eq!(read.mem_bytes, Some(16 * rustix::param::page_size() as u64));

        // The same tree through the kernel's children files.
        for (pid, children) in [(10, "11 "), (11, "12 "), (12, "")] {
            write(
                &tmp.path().join(format!("{pid}/task/{pid}/children")),
                children,
            );
        }
        let mut walked = JobUsage::ProcessTree(ProcessTree::new(tmp.path(), 10, None));
        assert_eq!(walked.read(&mut Vec::new()), read);

        // Once the root is reaped by its parent, its time is the parent's cutime + cstime.
        for pid in [10, 11, 12] {
            std::fs::remove_dir_all(tmp.path().join(pid.to_string())).unwrap();
        }
        write(
            &tmp.path().join("9/stat"),
            "9 (aipm-analyze) S 1 9 9 0 -1 0 0 0 0 0 3 1 170 5 20 0 1 0 5 1000 7 x",
        );
        let mut usage = JobUsage::ProcessTree(ProcessTree::new(tmp.path(), 10, Some(9)));
        assert_eq!(usage.read(&mut Vec::new()).cpu_ns, Some(175 * tick_ns));
    }

    #[test]
    fn the_pids_are_those_of_the_walk_that_read_the_usage() {
        let tmp = tempfile::tempdir().unwrap();
        for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (13, 1)] {
            write(
                &tmp.path().join(format!("{pid}/stat")),
                &format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 1 0 0 0 20 0 1 0 5 1000 1 x"),
            );
        }
        let mut usage = JobUsage::ProcessTree(ProcessTree::new(tmp.path(), 10, None));
        assert!(!usage.knows_pids(), "nothing walked yet");
        assert_eq!(usage.pids(), None);
        usage.read(&mut Vec::new());
        // Gone from /proc since: the pids are still the walk's, not a second walk's.
        fs::remove_dir_all(tmp.path().join("12")).unwrap();
        assert!(usage.knows_pids());
        let mut pids = usage.pids().unwrap();
        pids.sort_unstable();
        assert_eq!(pids, [10, 11, 12]);
    }

    #[test]
    fn descendants_are_found_from_parent_pids() {
        let links = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 11),
            (13, 1),
            (14, 10),
            (15, 13),
        ];
        assert_eq!(
            descendants(&links, 10),
            [false, true, true, true, false, true, false]
        );
        // A root absent from the list still has its children found.
        assert_eq!(
            descendants(&links[2..], 10),
            [true, true, false, true, false]
        );
        // A pid listed as its own parent, and a cycle (pids reused during the scan), end.
        assert_eq!(descendants(&[(5, 5), (6, 5)], 5), [true, true]);
        assert_eq!(
            descendants(&[(5, 6), (6, 5), (7, 9)], 5),
            [true, true, false]
        );
    }

    /// A long chain and a wide fan of processes: one pass each (scanning every process for
    /// each parent took minutes on a chain this long).
    #[test]
    fn descendants_of_a_deep_chain_and_a_wide_fan() {
        // Deep (a recursive walk would overflow the stack) and wide; how fast is measured
        // outside the tests (docs/notes.md).
        let n = 20_000u32;
        let chain: Vec<(u32, u32)> = (1..=n).map(|pid| (pid, pid - 1)).collect();
        let fan: Vec<(u32, u32)> = (1..=n).map(|pid| (pid, 1)).collect();
        assert!(descendants(&chain, 1).iter().all(|&m| m));
        assert!(descendants(&fan, 1).iter().all(|&m| m));
        let mut outside = fan.clone();
        outside.push((n + 1, 0));
        assert!(
            !descendants(&outside, 1)[n as usize],
            "pid {} is not below 1",
            n + 1
        );
    }

    #[test]
    fn a_process_outside_any_job_cgroup_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let proc_root = tmp.path().join("proc");
        write(&proc_root.join("9/cgroup"), "6:freezer:/\n0::/\n");
        let err = JobUsage::discover(&proc_root, tmp.path(), 9, 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cgroup of job_5"), "{err}");
    }
}
