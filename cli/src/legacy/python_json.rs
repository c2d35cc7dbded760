//! Python's JSON writer emits `NaN`, `Infinity` and `-Infinity` for floats JSON cannot hold
//! (AIPowerMeter's `json.dumps` does when a reading fails); serde_json refuses the whole line.
//! They are read here as `null`: one value missing, not the whole sample.

use std::borrow::Cow;

const LITERALS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

/// The line with each of Python's non-finite literals outside strings replaced by `null`,
/// and how many there were.
pub fn non_finite_as_null(line: &str) -> (Cow<'_, str>, usize) {
    if !LITERALS.iter().any(|l| line.contains(l)) {
        return (Cow::Borrowed(line), 0);
    }
    let mut out = String::with_capacity(line.len());
    let (mut in_string, mut escaped, mut count) = (false, false, 0);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(literal) = LITERALS.iter().find(|l| rest.starts_with(**l)) {
            // Only where a value starts: after `:`, `,` or `[` (spaces aside).
            let before = out.trim_end().chars().last();
            if matches!(before, Some(':' | ',' | '[')) {
                out.push_str("null");
                rest = &rest[literal.len()..];
                count += 1;
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    (Cow::Owned(out), count)
}

#[cfg(test)]
mod tests {
    use super::non_finite_as_null;

    #[test]
    fn literals_outside_strings_become_null() {
        let (line, n) = non_finite_as_null(
            r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \"Infinity", "d":NaN}"#,
        );
        assert_eq!(
            line,
            r#"{"a": null, "b": [null, null], "c": "NaN \"Infinity", "d":null}"#
        );
        assert_eq!(n, 4);
        let plain = r#"{"date": "2023-07-27 17:21:57", "x": 1.5}"#;
        assert_eq!(non_finite_as_null(plain), (plain.into(), 0));
        // A key that merely starts like one is left alone.
        let key = r#"{"NaNa": 1}"#;
        assert_eq!(non_finite_as_null(key).1, 0);
    }
}
