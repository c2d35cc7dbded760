//! Output formats shared by every subcommand.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON document.
    Json,
    /// CSV with a header row.
    Csv,
}

/// A text cell of a CSV that a spreadsheet will not run: a cell starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return is a formula to Excel and LibreOffice (a job name
/// `=HYPERLINK(…)`), so it gets a leading `'`, as OWASP's CSV-injection guidance says.
/// For text only: numbers are written by aipm, and `-1.5` must stay a number.
pub fn spreadsheet_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// One pretty JSON document and a newline: the `--format json` of every subcommand.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The unit energies are shown in, in tables (JSON and CSV always carry joules, `_j`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Units {
    /// Watt-hours.
    Wh,
    /// Joules.
    J,
}

impl Units {
    /// `0.343 Wh` or `1234.5 J`.
    pub fn energy(self, j: f64) -> String {
        match self {
            Units::Wh => format!("{:.3} Wh", j / 3600.0),
            Units::J => format!("{j:.1} J"),
        }
    }
}

/// Joules for people: `1234.5 J (0.343 Wh)`.
pub fn joules(j: f64) -> String {
    format!("{j:.1} J ({:.3} Wh)", j / 3600.0)
}

/// Bytes for people, in binary units.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(joules(7200.0), "7200.0 J (2.000 Wh)");
        assert_eq!(Units::Wh.energy(7200.0), "2.000 Wh");
        assert_eq!(Units::J.energy(7200.0), "7200.0 J");
    }
}
