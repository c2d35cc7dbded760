//! The plugin's configuration: the `key=value` arguments of its line in `plugstack.conf`.
//!
//! The same parser serves the plugin (arguments arrive as `argv`) and `aipm-analyze`, which
//! reads the admin's `plugstack.conf.d/` to find the spool without being told.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::period::{format_period, parse_period, PeriodError, MAX_PERIOD};

pub const DEFAULT_SPOOL: &str = "/var/spool/aipm";
pub const DEFAULT_LOCKDIR: &str = "/run/aipm";
pub const DEFAULT_PLUGSTACK_DIR: &str = "/etc/slurm/plugstack.conf.d";

/// Every argument the plugin understands, with its default, as documented in
/// `plugstack.conf.d/aipm.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Root of the recordings the samplers write; root-owned, not writable by users, on a
    /// local disk of each node.
    pub spool: PathBuf,
    /// The cluster's shared store (docs/storage.md): each node's job epilog publishes its
    /// finished recording there, where the controller and the login hosts read it. Unset:
    /// the spool is read where it is (one host, or a spool shared by every host).
    pub store: Option<PathBuf>,
    /// Record every job unless it says `--energy-profile=off`.
    pub default_on: bool,
    /// Period used by `--energy-profile` without a value and by automatic recording.
    pub period: Duration,
    /// Shortest period a user may ask for.
    pub min_period: Duration,
    /// Whether `--energy-profile=off` is honoured when `default=on`.
    pub allow_opt_out: bool,
    /// Node-local, root-owned directory of the per-job election lock files.
    pub lockdir: PathBuf,
    pub powercap_root: PathBuf,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    /// NVML library to load instead of the system's `libnvidia-ml.so.1`.
    pub nvml_lib: Option<PathBuf>,
    /// A group that may read every recording besides its user (directories 0750, files
    /// 0640): SlurmUser's, so that the controller's epilog, which runs as SlurmUser, can.
    pub reader_group: Option<String>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            spool: PathBuf::from(DEFAULT_SPOOL),
            store: None,
            default_on: false,
            period: Duration::from_secs(1),
            min_period: Duration::from_millis(100),
            allow_opt_out: true,
            lockdir: PathBuf::from(DEFAULT_LOCKDIR),
            powercap_root: PathBuf::from("/sys/class/powercap"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            nvml_lib: None,
            reader_group: None,
        }
    }
}

impl PluginConfig {
    /// Parse plugstack arguments. Bad arguments are reported, never fatal: each problem is
    /// returned as a message and the default for that key is kept.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> (PluginConfig, Vec<String>) {
        let mut config = PluginConfig::default();
        let mut problems = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            if let Err(problem) = config.apply(arg) {
                problems.push(format!("plugstack argument {arg:?}: {problem}"));
            }
        }
        if config.period < config.min_period {
            problems.push(format!(
                "period={} is below min_period={}; using min_period",
                format_period(config.period),
                format_period(config.min_period)
            ));
            config.period = config.min_period;
        }
        (config, problems)
    }

    fn apply(&mut self, arg: &str) -> Result<(), BadArgument> {
        let (key, value) = arg.split_once('=').ok_or(BadArgument::NotKeyValue)?;
        match key {
            "spool" => self.spool = absolute_path(value)?,
            "store" => self.store = Some(absolute_path(value)?),
            "lockdir" => self.lockdir = absolute_path(value)?,
            "powercap_root" => self.powercap_root = absolute_path(value)?,
            "cgroup_root" => self.cgroup_root = absolute_path(value)?,
            "proc_root" => self.proc_root = absolute_path(value)?,
            "nvml_lib" => self.nvml_lib = Some(absolute_path(value)?),
            "reader_group" => self.reader_group = Some(group_name(value)?),
            "default" => self.default_on = on_off(value)?,
            "allow_opt_out" => self.allow_opt_out = on_off(value)?,
            "period" => self.period = admin_period(value)?,
            "min_period" => self.min_period = admin_period(value)?,
            _ => return Err(BadArgument::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// The paths with slurm.conf's `%n` (the node's Slurm name), `%h` (the host's name) and
    /// `%%` replaced, as for `SlurmdSpoolDir`: several slurmd on one host (each a node) need
    /// their own lock directory, and a test host its own simulated sensors per node.
    pub fn for_node(&self, node: &str, host: &str) -> PluginConfig {
        let expand = |path: &Path| -> PathBuf {
            let text = path.to_string_lossy();
            if !text.contains('%') {
                return path.to_path_buf();
            }
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('%', Some('n')) => out.push_str(node),
                    ('%', Some('h')) => out.push_str(host),
                    ('%', Some('%')) => out.push('%'),
                    _ => {
                        out.push(c);
                        continue;
                    }
                }
                chars.next();
            }
            PathBuf::from(out)
        };
        PluginConfig {
            spool: expand(&self.spool),
            store: self.store.as_deref().map(expand),
            lockdir: expand(&self.lockdir),
            powercap_root: expand(&self.powercap_root),
            cgroup_root: expand(&self.cgroup_root),
            proc_root: expand(&self.proc_root),
            nvml_lib: self.nvml_lib.as_deref().map(expand),
            ..self.clone()
        }
    }

    /// Where finished recordings are read: the store, else the spool.
    pub fn recordings(&self) -> &Path {
        self.store.as_deref().unwrap_or(&self.spool)
    }

    /// The configuration of the aipm line in an admin's `plugstack.conf.d/`, if there is one.
    pub fn from_plugstack_dir(dir: &Path) -> Option<PluginConfig> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        entries
            .iter()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".conf"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find_map(|text| aipm_line_args(&text))
            .map(|args| PluginConfig::from_args(&args).0)
    }
}

/// The arguments of the first non-comment plugstack line whose plugin is aipm's.
fn aipm_line_args(text: &str) -> Option<Vec<String>> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let _required_or_optional = words.next()?;
            let plugin = words.next()?;
            let file = Path::new(plugin).file_name()?.to_string_lossy();
            file.contains("aipm")
                .then(|| words.map(str::to_string).collect())
        })
}

/// Why a plugstack argument was not taken (its default is kept).
#[derive(Debug, thiserror::Error)]
enum BadArgument {
    #[error("expected key=value")]
    NotKeyValue,
    #[error(
        "unknown key {0:?}; known keys: spool, store, default, period, min_period, \
         allow_opt_out, lockdir, powercap_root, cgroup_root, proc_root, nvml_lib, reader_group"
    )]
    UnknownKey(String),
    #[error("expected an absolute path, got {0:?}")]
    NotAbsolute(String),
    #[error("expected a group name, got {0:?}")]
    NotAGroup(String),
    #[error("expected on or off, got {0:?}")]
    NotOnOff(String),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error("expected a period between 1ms and {}", format_period(MAX_PERIOD))]
    PeriodOutOfRange,
}

fn absolute_path(value: &str) -> Result<PathBuf, BadArgument> {
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(BadArgument::NotAbsolute(value.to_string()));
    }
    Ok(path)
}

/// A POSIX group name (letters, digits, `.`, `_`, `-`, not starting with `-`).
fn group_name(value: &str) -> Result<String, BadArgument> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(BadArgument::NotAGroup(value.to_string()))
    }
}

fn on_off(value: &str) -> Result<bool, BadArgument> {
    match value {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err(BadArgument::NotOnOff(value.to_string())),
    }
}

fn admin_period(value: &str) -> Result<Duration, BadArgument> {
    let period = parse_period(value)?;
    if period.is_zero() || period > MAX_PERIOD {
        return Err(BadArgument::PeriodOutOfRange);
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_n_and_h_in_paths_name_the_node_and_the_host() {
        let (config, problems) = PluginConfig::from_args(&[
            "lockdir=/run/aipm/%n",
            "powercap_root=/sim/%h/%n/powercap",
            "nvml_lib=/sim/%n/lib%%nvml.so",
            "spool=/var/spool/aipm",
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let node = config.for_node("n2", "vm");
        assert_eq!(node.lockdir, PathBuf::from("/run/aipm/n2"));
        assert_eq!(node.powercap_root, PathBuf::from("/sim/vm/n2/powercap"));
        assert_eq!(node.nvml_lib, Some(PathBuf::from("/sim/n2/lib%nvml.so")));
        assert_eq!(node.spool, PathBuf::from("/var/spool/aipm"));
        assert_eq!(node.period, config.period);
        // A % before another letter is kept as written.
        let odd = PluginConfig::from_args(&["lockdir=/run/%x%"])
            .0
            .for_node("n1", "h");
        assert_eq!(odd.lockdir, PathBuf::from("/run/%x%"));
    }

    #[test]
    fn defaults_without_arguments() {
        let (config, problems) = PluginConfig::from_args::<&str>(&[]);
        assert!(problems.is_empty());
        assert_eq!(config, PluginConfig::default());
        assert!(!config.default_on);
    }

    #[test]
    fn every_key_is_read() {
        let args = [
            "spool=/srv/aipm",
            "default=on",
            "period=500ms",
            "min_period=200ms",
            "allow_opt_out=no",
            "lockdir=/run/x",
            "powercap_root=/tmp/pc",
            "cgroup_root=/cg",
            "proc_root=/p",
            "nvml_lib=/opt/libnvml.so",
        ];
        let (config, problems) = PluginConfig::from_args(&args);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.spool, PathBuf::from("/srv/aipm"));
        assert!(config.default_on);
        assert!(!config.allow_opt_out);
        assert_eq!(config.period, Duration::from_millis(500));
        assert_eq!(config.min_period, Duration::from_millis(200));
        assert_eq!(config.nvml_lib, Some(PathBuf::from("/opt/libnvml.so")));
    }

    #[test]
    fn bad_arguments_are_reported_and_defaults_kept() {
        let (config, problems) =
            PluginConfig::from_args(&["spool=relative", "default=maybe", "colour=blue", "x"]);
        assert_eq!(config, PluginConfig::default());
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("absolute path"));
        assert!(problems[2].contains("unknown key \"colour\""));
    }

    #[test]
    fn period_is_raised_to_the_minimum() {
        let (config, problems) = PluginConfig::from_args(&["period=50ms", "min_period=100ms"]);
        assert_eq!(config.period, Duration::from_millis(100));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn finds_the_aipm_line_in_a_plugstack_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a-other.conf"),
            "optional /x/other.so spool=/nope\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("aipm.conf"),
            "# comment\nrequired /usr/lib/slurm/libaipm_spank.so spool=/srv/s default=on # x\n",
        )
        .unwrap();
        let config = PluginConfig::from_plugstack_dir(dir.path()).unwrap();
        assert_eq!(config.spool, PathBuf::from("/srv/s"));
        assert!(config.default_on);
    }
}
