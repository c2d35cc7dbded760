//! Sampling periods as users write them: `500ms`, `2s`, `1.5s`, or a bare number of seconds.

use std::time::Duration;

/// The forms accepted, quoted in every error so a user can fix the value at once.
pub const PERIOD_FORMS: &str = "a period such as 500ms, 2s or 1 (seconds)";

/// The longest period accepted: beyond it RAPL counters may wrap twice between samples.
pub const MAX_PERIOD: Duration = Duration::from_secs(60);

/// Why a period was refused; each names the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("invalid period {0:?}: expected {PERIOD_FORMS}")]
    NotAPeriod(String),
    #[error("invalid period {0:?}: finer than a millisecond")]
    FinerThanAMillisecond(String),
    #[error("period {text:?} is below this cluster's minimum of {}", format_period(*.min))]
    BelowMinimum { text: String, min: Duration },
    #[error(
        "period {text:?} is above the maximum of {}",
        format_period(MAX_PERIOD)
    )]
    AboveMaximum { text: String },
}

/// Parse a period, without bounds: `250ms`, `2s`, `1.5s`, `1` (seconds).
pub fn parse_period(text: &str) -> Result<Duration, PeriodError> {
    let text = text.trim();
    let bad = || PeriodError::NotAPeriod(text.to_string());
    let (number, millis_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else {
        (text, 1000)
    };
    let number = number.trim_end();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    // Fractions are kept to the millisecond: "1.5s" is 1500 ms, "0.25" is 250 ms.
    let mut frac_millis = 0u64;
    let mut scale = millis_per_unit;
    for digit in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            if digit != b'0' {
                return Err(PeriodError::FinerThanAMillisecond(text.to_string()));
            }
            continue;
        }
        frac_millis += u64::from(digit - b'0') * scale;
    }
    let millis = whole
        .checked_mul(millis_per_unit)
        .and_then(|m| m.checked_add(frac_millis))
        .ok_or_else(bad)?;
    Ok(Duration::from_millis(millis))
}

/// Parse a period and check it against the admin's minimum and [`MAX_PERIOD`].
pub fn parse_bounded_period(text: &str, min: Duration) -> Result<Duration, PeriodError> {
    let period = parse_period(text)?;
    if period < min {
        return Err(PeriodError::BelowMinimum {
            text: text.to_string(),
            min,
        });
    }
    if period > MAX_PERIOD {
        return Err(PeriodError::AboveMaximum {
            text: text.to_string(),
        });
    }
    Ok(period)
}

/// Format a period the way it is written: `250ms`, `2s`.
pub fn format_period(period: Duration) -> String {
    let ms = period.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_period("500ms"), Ok(ms(500)));
        assert_eq!(parse_period("2s"), Ok(ms(2000)));
        assert_eq!(parse_period("1"), Ok(ms(1000)));
        assert_eq!(parse_period("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_period("0.25"), Ok(ms(250)));
        assert_eq!(parse_period(" 200ms "), Ok(ms(200)));
        assert_eq!(parse_period(".5"), Ok(ms(500)));
    }

    #[test]
    fn rejects_garbage_with_the_accepted_forms() {
        for bad in ["banana", "", "ms", "s", "-1", "1h", "1e3", "1..2", "."] {
            let err = parse_period(bad).unwrap_err().to_string();
            assert!(err.contains(PERIOD_FORMS), "{bad:?}: {err}");
        }
        assert!(parse_period("1.0001s").is_err());
        assert!(parse_period("99999999999999999999").is_err());
    }

    #[test]
    fn bounds_are_enforced_with_the_minimum_named() {
        let min = ms(100);
        assert_eq!(parse_bounded_period("100ms", min), Ok(ms(100)));
        let err = parse_bounded_period("50ms", min).unwrap_err().to_string();
        assert!(err.contains("minimum of 100ms"), "{err}");
        assert!(parse_bounded_period("61s", min).is_err());
        assert_eq!(parse_bounded_period("60", min), Ok(ms(60_000)));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "2s", "1500ms"] {
            assert_eq!(format_period(parse_period(text).unwrap()), text);
        }
    }
}
