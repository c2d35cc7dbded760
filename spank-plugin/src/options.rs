//! `--energy-profile[=PERIOD|off]`: what the user asked for, checked against the admin's
//! configuration.

use std::time::Duration;

use aipm_recording::config::PluginConfig;
use aipm_recording::period::{parse_bounded_period, PeriodError, PERIOD_FORMS};

/// What the job's `--energy-profile` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The option was not given.
    Unset,
    /// `--energy-profile` or `--energy-profile=PERIOD`.
    Record(Duration),
    /// `--energy-profile=off`.
    Off,
}

/// The variable through which sbatch, salloc and srun hand the option to the job's steps and
/// to the commands run inside the job (an `srun` in a batch script reads it back as if typed).
pub const INHERITED_VARIABLE: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_aipm_energy_profile";

/// What Slurm writes into [`INHERITED_VARIABLE`] for the flag given without a value.
const BARE_FLAG_AS_EXPORTED: &str = "(null)";

/// Parse the option's value: `None`, `""` (slurmstepd's form of a flag without value) and
/// `(null)` (the form sbatch exports it in) mean the configured period.
pub fn parse_request(value: Option<&str>, config: &PluginConfig) -> Result<Request, BadRequest> {
    match value.map(str::trim) {
        None | Some("") | Some(BARE_FLAG_AS_EXPORTED) => Ok(Request::Record(config.period)),
        Some("off") => Ok(Request::Off),
        Some(text) => parse_bounded_period(text, config.min_period)
            .map(Request::Record)
            .map_err(|e| match e {
                PeriodError::NotAPeriod(_) => BadRequest::NotAPeriod(text.to_string()),
                e => BadRequest::Period(text.to_string(), e),
            }),
    }
}

/// A value of `--energy-profile=` refused, as the user is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("--energy-profile={0}: expected {PERIOD_FORMS}, or off")]
    NotAPeriod(String),
    #[error("--energy-profile={0}: {1}")]
    Period(String, PeriodError),
}

/// The period to record this job with, or `None` when it is not recorded.
pub fn decide(request: Request, config: &PluginConfig) -> Option<Duration> {
    match request {
        Request::Record(period) => Some(period.max(config.min_period)),
        Request::Unset if config.default_on => Some(config.period),
        Request::Off if config.default_on && !config.allow_opt_out => Some(config.period),
        Request::Unset | Request::Off => None,
    }
}

/// The period a step in slurmstepd records with, or `None` when it records nothing. A job is
/// recorded on a node from its first step there that asks for it until the job ends, and
/// every step of a recorded job is in its recording: the energy is measured for the whole
/// job (its cgroup), so a step cannot leave it with `=off`. `own` is the step's value (its
/// srun's, typed or inherited), `submitted` the job's as its environment carries it, and
/// `recorded_here` says that an earlier step of the job recorded on this node.
pub fn step_period(
    own: Request,
    submitted: Option<Request>,
    recorded_here: bool,
    config: &PluginConfig,
) -> Option<Duration> {
    decide(own, config)
        .or_else(|| submitted.and_then(|job| decide(job, config)))
        .or_else(|| recorded_here.then_some(config.period))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn values_of_the_option() {
        let config = PluginConfig::default();
        assert_eq!(parse_request(None, &config), Ok(Request::Record(ms(1000))));
        assert_eq!(
            parse_request(Some(""), &config),
            Ok(Request::Record(ms(1000)))
        );
        assert_eq!(
            parse_request(Some("200ms"), &config),
            Ok(Request::Record(ms(200)))
        );
        assert_eq!(
            parse_request(Some("(null)"), &config),
            Ok(Request::Record(ms(1000))),
            "the bare flag as sbatch exports it to the job"
        );
        assert_eq!(parse_request(Some("off"), &config), Ok(Request::Off));
        let err = parse_request(Some("banana"), &config)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--energy-profile=banana: expected a period such as 500ms, 2s or 1 (seconds), or off"
        );
        let err = parse_request(Some("10ms"), &config)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("below this cluster's minimum of 100ms"),
            "{err}"
        );
    }

    #[test]
    fn who_is_recorded() {
        let mut config = PluginConfig::default();
        assert_eq!(decide(Request::Unset, &config), None);
        assert_eq!(decide(Request::Record(ms(200)), &config), Some(ms(200)));
        config.default_on = true;
        assert_eq!(decide(Request::Unset, &config), Some(ms(1000)));
        assert_eq!(decide(Request::Off, &config), None);
        config.allow_opt_out = false;
        assert_eq!(decide(Request::Off, &config), Some(ms(1000)));
    }

    #[test]
    fn a_step_records_when_it_or_its_job_asks_and_never_leaves_a_recorded_job() {
        let config = PluginConfig::default();
        let job = Some(Request::Record(ms(250)));
        // A step of a recorded job, whatever its own value.
        assert_eq!(
            step_period(Request::Record(ms(250)), job, false, &config),
            Some(ms(250))
        );
        assert_eq!(
            step_period(Request::Off, job, false, &config),
            Some(ms(250))
        );
        assert_eq!(
            step_period(Request::Off, None, true, &config),
            Some(ms(1000))
        );
        // A step that asks for itself in a job that did not.
        assert_eq!(
            step_period(Request::Record(ms(200)), Some(Request::Off), false, &config),
            Some(ms(200))
        );
        // Nobody asked.
        assert_eq!(
            step_period(Request::Off, Some(Request::Off), false, &config),
            None
        );
        assert_eq!(step_period(Request::Unset, None, false, &config), None);
    }
}
