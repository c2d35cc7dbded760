//! `--energy-profile[=PERIOD|off]`: what the user asked for, checked against the admin's
//! configuration.

use std::time::Duration;

use aipm_recording::config::PluginConfig;
use aipm_recording::period::{parse_bounded_period, PERIOD_FORMS};

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

/// Parse the option's value: `None` or `""` (a flag without value; slurmstepd passes `""`)
/// means the configured period.
pub fn parse_request(value: Option<&str>, config: &PluginConfig) -> Result<Request, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Request::Record(config.period)),
        Some("off") => Ok(Request::Off),
        Some(text) => parse_bounded_period(text, config.min_period)
            .map(Request::Record)
            .map_err(|e| {
                let e = e.to_string();
                if e.contains(PERIOD_FORMS) {
                    format!("--energy-profile={text}: expected {PERIOD_FORMS}, or off")
                } else {
                    format!("--energy-profile={text}: {e}")
                }
            }),
    }
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
        assert_eq!(parse_request(Some("off"), &config), Ok(Request::Off));
        let err = parse_request(Some("banana"), &config).unwrap_err();
        assert_eq!(
            err,
            "--energy-profile=banana: expected a period such as 500ms, 2s or 1 (seconds), or off"
        );
        let err = parse_request(Some("10ms"), &config).unwrap_err();
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
}
