//! The nightly per-user export and the job summaries it shares with `slurm-comment` and the
//! monthly `report`.

pub mod columns;
pub mod comment;
pub mod sacct;
pub mod summary;
pub mod userfile;

/// A span of time as admins write it in a cron line: `90s`, `30m`, `12h`, `1d`, `2w`.
pub fn parse_span(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let unit_s = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match n.parse::<i64>() {
        Ok(n) if unit_s > 0 => Ok(n * unit_s),
        _ => Err(format!(
            "expected a span such as 90s, 30m, 12h, 1d or 2w, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans() {
        assert_eq!(super::parse_span("1d"), Ok(86_400));
        assert_eq!(super::parse_span("30m"), Ok(1800));
        assert_eq!(super::parse_span("0s"), Ok(0));
        for bad in ["", "d", "1", "1y", "-1d", "1.5h"] {
            assert!(super::parse_span(bad).is_err(), "{bad}");
        }
    }
}
