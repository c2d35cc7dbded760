//! Reading a whole text file (a channel map, an AIPowerMeter recording) with errors that say
//! where: the byte, line and column of the first invalid UTF-8, and a size checked before
//! anything is read or parsed.

use std::io::Read;
use std::path::Path;

/// The file's text, refused when larger than `max_bytes` or not UTF-8, naming the file and
/// where the first invalid byte is.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut data = Vec::new();
    // One byte over the limit tells a file too large, even one growing as it is read.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if data.len() as u64 > max_bytes {
        return Err(format!(
            "{}: larger than {max_bytes} bytes, more than such a file can be: not read",
            path.display()
        ));
    }
    String::from_utf8(data).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        // Characters, not bytes, before it on its line: what an editor shows as the column.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        format!(
            "{}: not UTF-8 text: invalid byte 0x{:02x} at byte {at} (line {line}, column {column})",
            path.display(),
            e.as_bytes()[at]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::read_text;

    #[test]
    fn invalid_utf8_and_size_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.toml");
        std::fs::write(&path, b"[nodes.n1]\nport = \"\xc3\xa9\xff\"\n").unwrap();
        let why = read_text(&path, 1000).unwrap_err();
        assert!(
            why.ends_with(
                "map.toml: not UTF-8 text: invalid byte 0xff at byte 21 (line 2, column 10)"
            ),
            "{why}"
        );
        std::fs::write(&path, "x".repeat(1001)).unwrap();
        assert!(read_text(&path, 1000)
            .unwrap_err()
            .contains("larger than 1000 bytes"));
        assert_eq!(read_text(&path, 1001).unwrap().len(), 1001);
    }
}
