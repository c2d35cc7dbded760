//! What each SPANK hook does. No hook ever reports failure to Slurm from remote context: a
//! measurement problem is logged and the job runs on. The one refusal is a malformed
//! `--energy-profile=` at submission, as for any bad flag.

use std::sync::Mutex;
use std::time::Instant;

use aipm_recording::config::PluginConfig;
use aipm_recording::layout::NodeName;
use aipm_recording::meta::{self, Meta};
use aipm_recording::period::format_period;
use aipm_sampler::sampler::{GpuPlan, Level, Log, Sampler, SamplerSetup};
use aipm_sampler::setup;
use aipm_sampler::spool::Retired;
use aipm_sampler::spool::{ElectionLock, JobFiles, ReaderGroup};
use aipm_sampler::sysfs::parse_cpu_list;
use aipm_sampler::usage::{JobUsage, ProcessTree};

use crate::error::HookError;
use crate::options::{decide, parse_request, step_period, Request, INHERITED_VARIABLE};
use crate::spank::{context, log, Context, LogLevel, Spank};

/// The plugin's state in one process (sbatch, srun, or one slurmstepd).
#[derive(Default)]
struct Plugin {
    config: PluginConfig,
    request: Option<Request>,
    /// Opened as root in `init_post_opt`, started at the first `task_post_fork`.
    prepared: Option<SamplerSetup>,
    job_id: u32,
    sampler: Option<Sampler>,
    local_tasks: u32,
    tasks_exited: u32,
}

static PLUGIN: Mutex<Option<Plugin>> = Mutex::new(None);

fn with_plugin<T>(f: impl FnOnce(&mut Plugin) -> T) -> T {
    let mut guard = PLUGIN.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Plugin::default))
}

/// Problems go to slurmd's log as errors; in sbatch/srun they would land on the user's
/// terminal, so there they are verbose only.
fn problem_level() -> LogLevel {
    match context() {
        Context::Remote | Context::Slurmd | Context::JobScript => LogLevel::Error,
        _ => LogLevel::Verbose,
    }
}

/// `slurm_spank_init`, every context: read the plugstack arguments, register the option.
pub fn init(sp: &Spank, args: &[String]) -> Result<(), HookError> {
    let (config, problems) = PluginConfig::from_args(args);
    for problem in problems {
        log(problem_level(), &problem);
    }
    with_plugin(|p| p.config = config);
    sp.register_option(&crate::export::ENERGY_PROFILE)
}

/// The option callback. Only a value the user typed (sbatch, srun or salloc's command line
/// or `#SBATCH` line) is refused when malformed, as for any bad flag. Everywhere else (in
/// slurmstepd, or read back from the job's environment by an `srun` inside the job) a value
/// is taken as given, and a malformed one means the default period: it never fails a step.
pub fn on_option(value: Option<&str>, remote: bool) -> Result<(), HookError> {
    let typed = !remote && !is_inherited(value);
    with_plugin(|p| match parse_request(value, &p.config) {
        Ok(request) => {
            p.request = Some(request);
            Ok(())
        }
        Err(e) if typed => {
            log(LogLevel::Error, &e.to_string());
            Err(e.into())
        }
        Err(e) => {
            log(
                problem_level(),
                &format!("{e}; recording with the default period"),
            );
            p.request = Some(Request::Record(p.config.period));
            Ok(())
        }
    })
}

/// Whether a value given to the callback outside slurmstepd was read back from the job's
/// environment (Slurm passes those through the same callback before the command line).
fn is_inherited(value: Option<&str>) -> bool {
    value.is_some() && std::env::var(INHERITED_VARIABLE).ok().as_deref() == value
}

/// Set by the plugin at submission for a job that is recorded; prologs and epilogs (the
/// controller's `EpilogSlurmctld` among them) see it as `SPANK_AIPM_RECORDED=PERIOD`.
pub const RECORDED_JOB_VARIABLE: &str = "AIPM_RECORDED";

/// `slurm_spank_init_post_opt`: in slurmstepd, while still root, open everything the
/// sampler needs; at submission, tell a user whose opt-out the admin does not allow.
pub fn init_post_opt(sp: &Spank) -> Result<(), HookError> {
    let ctx = context();
    with_plugin(|p| {
        let request = p.request.unwrap_or(Request::Unset);
        if ctx != Context::Remote {
            if request == Request::Off && decide(request, &p.config).is_some() {
                log(
                    LogLevel::Info,
                    "this cluster records the energy of every job; --energy-profile=off is ignored",
                );
            }
            // Tell the job's epilogs, the controller's included, that it is recorded: they
            // wait for its recording then, and for no other job's.
            if let Some(period) = decide(request, &p.config) {
                if matches!(ctx, Context::Allocator | Context::Local) {
                    sp.job_control_setenv(RECORDED_JOB_VARIABLE, &format_period(period))?;
                }
            }
            return Ok(());
        }
        let step = sp.job_stepid().ok_or(HookError::Item("S_JOB_STEPID"))?;
        if step == meta::SLURM_EXTERN_CONT {
            // The option is invisible in the extern step; the job's other steps record it.
            return Ok(());
        }
        let job_id = sp.job_id().ok_or(HookError::Item("S_JOB_ID"))?;
        let submitted = sp.getenv(INHERITED_VARIABLE).map(|v| {
            parse_request(Some(&v), &p.config).unwrap_or(Request::Record(p.config.period))
        });
        // The common case, a job nobody asked to record, costs one stat: the node's name
        // is looked up only when needed (a recording, or a lock directory with `%n`).
        let asked = step_period(request, submitted, false, &p.config).is_some();
        let lockdir_per_node = p.config.lockdir.to_string_lossy().contains('%');
        if !asked && !lockdir_per_node && !ElectionLock::exists(&p.config.lockdir, job_id) {
            return Ok(());
        }
        let node = stepd_node(&p.config, job_id, step);
        // From here on, every path is this node's (`%n`, `%h` in the plugstack line).
        p.config = p.config.for_node(node.as_str(), &crate::node::host_name());
        let recorded_here = ElectionLock::exists(&p.config.lockdir, job_id);
        let Some(period) = step_period(request, submitted, recorded_here, &p.config) else {
            return Ok(());
        };
        if request == Request::Off && decide(request, &p.config).is_none() {
            log(
                LogLevel::Info,
                &format!("job {job_id} is recorded: --energy-profile=off on one of its steps is ignored (a step cannot leave its job's recording)"),
            );
        }
        let setup = prepare(sp, &p.config, period, step, node)?;
        p.job_id = setup.meta.job_id;
        p.local_tasks = sp.job_local_task_count().unwrap_or(1).max(1);
        p.prepared = Some(setup);
        Ok(())
    })
}

/// Open the spool files, the election lock and the sources for this step.
fn prepare(
    sp: &Spank,
    config: &PluginConfig,
    period: std::time::Duration,
    step: u32,
    node: NodeName,
) -> Result<SamplerSetup, HookError> {
    let job_id = sp.job_id().ok_or(HookError::Item("S_JOB_ID"))?;
    let uid = sp.job_uid().ok_or(HookError::Item("S_JOB_UID"))?;
    let gid = sp.job_gid().ok_or(HookError::Item("S_JOB_GID"))?;
    let lock = ElectionLock::open(&config.lockdir, job_id)?;
    let readers = reader_group(config);
    let mut files = JobFiles::open_with_readers(&config.spool, job_id, &node, uid, gid, readers)?;
    if let Err(e) = files.add_step(&meta::step_name(step)) {
        log(
            LogLevel::Error,
            &format!("noting step in {}: {e}", files.dir_path().display()),
        );
    }

    // The job's GPUs: by UUID where its CUDA_VISIBLE_DEVICES names them (MIG slices are
    // only named so), else by SLURM_JOB_GPUS (gres/gpu), whose ids are the numbers of the
    // gres device files, /dev/nvidiaN: minor numbers, not NVML indices. The sampler opens
    // NVML for those only, in its own thread.
    let list = |name: &str| -> Vec<String> {
        sp.getenv(name)
            .map(|l| {
                l.split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_uuid = list("CUDA_VISIBLE_DEVICES");
    let gpus = if !by_uuid.is_empty()
        && by_uuid
            .iter()
            .all(|g| g.starts_with("GPU-") || g.starts_with("MIG-"))
    {
        by_uuid
    } else {
        list("SLURM_JOB_GPUS")
    };
    // Always a plan, even without GPUs: a later step that takes over a recording with GPUs
    // samples those (the sampler loads NVML only for a non-empty list).
    let gpu_plan = GpuPlan {
        lib: config.nvml_lib.clone(),
        selectors: Some(gpus.clone()),
    };
    let meta = Meta {
        job_id,
        array_job_id: sp.job_array().map(|(array, _)| array),
        array_task_id: sp.job_array().map(|(_, task)| task),
        // Completed from the task's environment in task_post_fork; slurmstepd has not set
        // SLURM_JOB_USER yet when init_post_opt runs.
        user: crate::spank::user_name(uid).unwrap_or_else(|| uid.to_string()),
        uid,
        gid,
        job_name: sp.getenv("SLURM_JOB_NAME"),
        node: node.as_str().into(),
        partition: sp.getenv("SLURM_JOB_PARTITION"),
        cpus: sp.job_alloc_cores().as_deref().and_then(count_cpu_list),
        mem_alloc_bytes: sp.job_alloc_mem_mb().map(|mb| mb << 20),
        restart_count: sp.job_restart_count(),
        gpus,
        ..Meta::default()
    };
    let logger: Log = std::sync::Arc::new(|level, message: &str| {
        let level = match level {
            Level::Error => LogLevel::Error,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
        };
        log(level, message);
    });
    log(
        LogLevel::Info,
        &format!(
            "job {job_id} step {}: recording every {} into {}",
            meta::step_name(step),
            format_period(period),
            files.dir_path().display()
        ),
    );
    let prepared = setup::prepare(setup::Job {
        period,
        files,
        lock,
        roots: setup::Roots {
            powercap: config.powercap_root.clone(),
            proc: config.proc_root.clone(),
            ..setup::Roots::default()
        },
        gpus: gpu_plan,
        usage: None,
        meta,
        log: logger,
    });
    for problem in &prepared.problems {
        log(LogLevel::Error, problem);
    }
    Ok(prepared.setup)
}

/// The admin's `reader_group=`, resolved; a group that does not exist is logged and left
/// out (the recording is then its user's alone).
fn reader_group(config: &PluginConfig) -> ReaderGroup {
    ReaderGroup(config.reader_group.as_deref().and_then(|name| {
        let gid = crate::spank::group_id(name);
        if gid.is_none() {
            log(
                LogLevel::Error,
                &format!("reader_group={name}: no such group; the recording is its user's alone"),
            );
        }
        gid
    }))
}

/// The number of CPUs in a Slurm list such as `0-3,8`.
fn count_cpu_list(list: &str) -> Option<u32> {
    let ranges = parse_cpu_list(list)?;
    let count: u64 = ranges
        .iter()
        .map(|r| u64::from(r.end() - r.start()) + 1)
        .sum();
    u32::try_from(count).ok()
}

/// `slurm_spank_task_post_fork`, in slurmstepd once every task is forked: find the job's
/// cgroup from the task and start the sampler thread (once per step).
pub fn task_post_fork(sp: &Spank) -> Result<(), HookError> {
    with_plugin(|p| {
        let Some(mut setup) = p.prepared.take() else {
            return Ok(());
        };
        if let Some(user) = sp.getenv("SLURM_JOB_USER") {
            setup.meta.user = user;
        }
        if let Some(pid) = sp.task_pid() {
            setup.usage = Some(
                match JobUsage::discover(&p.config.proc_root, &p.config.cgroup_root, pid, p.job_id)
                {
                    Ok(usage) => usage,
                    // No job cgroup (proctrack/linuxproc): this step's process tree.
                    Err(e) => {
                        log(
                            LogLevel::Info,
                            &format!("{e}; following the task's process tree"),
                        );
                        JobUsage::ProcessTree(ProcessTree::new(&p.config.proc_root, pid, None))
                    }
                },
            );
        }
        let sampler = Sampler::start(setup).map_err(|source| HookError::Io {
            doing: "starting the sampler thread".into(),
            source,
        })?;
        p.sampler = Some(sampler);
        Ok(())
    })
}

/// `slurm_spank_task_exit`: stop at the step's last task, not at `exit`, which comes up to
/// seconds later (slurmstepd's tail after the tasks end).
pub fn task_exit() -> Result<(), HookError> {
    with_plugin(|p| {
        p.tasks_exited += 1;
        if p.tasks_exited >= p.local_tasks {
            stop(p);
        }
        Ok(())
    })
}

/// `slurm_spank_exit`: make sure nothing of ours outlives the step.
pub fn exit() -> Result<(), HookError> {
    with_plugin(|p| {
        stop(p);
        p.prepared = None;
        Ok(())
    })
}

/// How long a step's end waits for its sampler's last sample: far more than a sample takes
/// (under a millisecond) or NVML takes to open, short of holding a job for long.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn stop(p: &mut Plugin) {
    if let Some(sampler) = p.sampler.take() {
        let started = Instant::now();
        if sampler.stop_within(STOP_LIMIT) {
            log(
                LogLevel::Info,
                &format!(
                    "job {}: sampler stopped in {} µs",
                    p.job_id,
                    started.elapsed().as_micros()
                ),
            );
        } else {
            log(
                LogLevel::Error,
                &format!(
                    "job {}: the sampler did not stop within {} s (a source hangs?); left behind, its recording has no end",
                    p.job_id,
                    STOP_LIMIT.as_secs()
                ),
            );
        }
    }
}

/// The Slurm node of this slurmstepd (see [`crate::node`]); the host's name, logged, in the
/// unlikely case slurmstepd's socket cannot be found. Never the job's `SLURMD_NODENAME`.
fn stepd_node(config: &PluginConfig, job_id: u32, step: u32) -> NodeName {
    crate::node::of_slurmstepd(&config.proc_root, job_id, step).unwrap_or_else(|e| {
        let host = crate::node::host_name();
        log(
            LogLevel::Error,
            &format!(
                "job {job_id}: this node's Slurm name is unknown ({e}); using the host name {host}"
            ),
        );
        NodeName::new(&host).unwrap_or_else(|_| NodeName::new("unknown").expect("a valid name"))
    })
}

/// The node of the prolog or epilog (slurmd's `SLURMD_NODENAME`), else the host's.
fn script_node() -> NodeName {
    crate::node::of_script_environment().unwrap_or_else(|e| {
        let host = crate::node::host_name();
        log(LogLevel::Error, &format!("{e}; using the host name {host}"));
        NodeName::new(&host).unwrap_or_else(|_| NodeName::new("unknown").expect("a valid name"))
    })
}

/// The configuration in the prolog and epilog, with this node's paths: `slurm_spank_init`
/// is not called in that process, so the plugstack arguments are read here (problems were
/// logged at init).
fn script_context_config(args: &[String], node: &NodeName) -> PluginConfig {
    PluginConfig::from_args(args)
        .0
        .for_node(node.as_str(), &crate::node::host_name())
}

/// `slurm_spank_job_prolog`, as root on each node before any step of the job runs there:
/// move aside this node's recording of an older job with the same id (Slurm's ids restart
/// when its state is wiped), whether or not this job is recorded, so that neither is read
/// as the other. Done here and not in a step, because steps may start together.
pub fn job_prolog(sp: &Spank, args: &[String]) -> Result<(), HookError> {
    let job_id = sp.job_id().ok_or(HookError::Item("S_JOB_ID"))?;
    let node = script_node();
    let config = script_context_config(args, &node);
    let uid = sp.job_uid().ok_or(HookError::Item("S_JOB_UID"))?;
    let retired = aipm_sampler::spool::retire_previous(&config.spool, job_id, &node, uid).map_err(
        |source| HookError::SpoolAt {
            doing: format!("moving an older recording of job {job_id}"),
            source,
        },
    )?;
    let moved = match retired {
        Some(Retired::NodeFiles { suffix }) => {
            format!("this node's files were moved to *.{suffix}")
        }
        Some(Retired::Directory { suffix }) => {
            format!("it was another user's: its directory was moved to {job_id}.{suffix}")
        }
        None => return Ok(()),
    };
    log(
        LogLevel::Info,
        &format!("job {job_id}: an older recording with this id was found; {moved}"),
    );
    Ok(())
}

/// `slurm_spank_job_epilog`, as root after every step of the job has ended on the node:
/// remove the election lock file (never earlier, or a late step could elect a second
/// leader), then publish the node's finished recording into the shared store, if any.
pub fn job_epilog(sp: &Spank, args: &[String]) -> Result<(), HookError> {
    let job_id = sp.job_id().ok_or(HookError::Item("S_JOB_ID"))?;
    let node = script_node();
    let config = script_context_config(args, &node);
    aipm_sampler::spool::ElectionLock::remove(&config.lockdir, job_id).map_err(|source| {
        let lockdir = config.lockdir.display();
        HookError::Io {
            doing: format!("removing the lock of job {job_id} in {lockdir}"),
            source,
        }
    })?;
    let Some(store) = &config.store else {
        return Ok(());
    };
    let started = Instant::now();
    let readers = reader_group(&config);
    match aipm_sampler::publish::publish(&config.spool, store, job_id, &node, readers) {
        Ok(Some(published)) => {
            log(
                LogLevel::Info,
                &format!(
                    "job {job_id}: published this node's recording to {} ({} bytes in {} ms{})",
                    store.display(),
                    published.bytes,
                    started.elapsed().as_millis(),
                    if published.moved_aside_older {
                        "; an older one with this id moved aside"
                    } else {
                        ""
                    }
                ),
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(source) => Err(HookError::SpoolAt {
            doing: format!("job {job_id}: not published"),
            source,
        }),
    }
}

/// Log a hook's error where the admin will see it; never fail the job.
pub fn report(hook: &str, result: Result<(), HookError>) {
    if let Err(e) = result {
        log(problem_level(), &format!("{hook}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::count_cpu_list("0"), Some(1));
        assert_eq!(super::count_cpu_list("0-3,8"), Some(5));
        assert_eq!(super::count_cpu_list("0-1, 4-5\n"), Some(4));
        assert_eq!(super::count_cpu_list("3-1"), None);
        assert_eq!(super::count_cpu_list("x"), None);
        assert_eq!(super::count_cpu_list("0-4294967295"), None);
    }
}
