//! Reading a `wattmetre-read` log: a plain file, or a Lab IA daily archive
//! (`MM_DD_YYYY_USBn.zip` with one member, `log_omegawatt_of_the_day`).
//!
//! Inflating and parsing run on two threads joined by a small queue of 1 MiB buffers, so a
//! day's archive reads at about the speed of inflating it on one core.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use anyhow::bail;

use super::stream::{Frame, Header, StreamReader, StreamStats};

/// The member the Lab IA cron puts in each daily zip.
pub const DAY_MEMBER: &str = "log_omegawatt_of_the_day";

const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads: bounds memory whatever the archive's size.
const QUEUE: usize = 4;

/// Read a log or an archive (or a Grid'5000 hourly file); `on_frame` gets every frame with
/// the header it belongs to.
pub fn read_log(
    path: &Path,
    mut on_frame: impl FnMut(&Header, &Frame),
) -> anyhow::Result<StreamStats> {
    if super::g5k::is_g5k_file(path) {
        return super::g5k::read_g5k(path, &mut on_frame);
    }
    let file = File::open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let is_zip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    let name = path.display().to_string();
    std::thread::scope(|scope| {
        let (chunks, received) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
        let name = &name;
        let inflater = scope.spawn(move || -> anyhow::Result<()> {
            let send = |input: &mut dyn Read| -> anyhow::Result<()> {
                loop {
                    let mut buf = recycled.try_recv().unwrap_or_default();
                    buf.resize(CHUNK, 0);
                    let n = read_full(input, &mut buf).map_err(|e| {
                        anyhow::anyhow!("{name}: unreadable (a truncated or corrupt archive?): {e}")
                    })?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.truncate(n);
                    if chunks.send(buf).is_err() {
                        return Ok(());
                    }
                }
            };
            if !is_zip {
                return send(&mut { file });
            }
            let mut archive = zip::ZipArchive::new(file).map_err(|e| {
                anyhow::anyhow!(
                    "{name}: not a readable zip archive (truncated or corrupt?): {}",
                    plain_zip_error(&e.to_string())
                )
            })?;
            let index = match archive.index_for_name(DAY_MEMBER) {
                Some(index) => index,
                None if archive.len() == 1 => 0,
                None => {
                    let names: Vec<String> = archive
                        .file_names()
                        .filter_map(Result::ok)
                        .map(|n| n.into_owned())
                        .collect();
                    bail!(
                        "{name}: no member {DAY_MEMBER} (members: {})",
                        names.join(", ")
                    );
                }
            };
            let mut member = archive.by_index(index).map_err(|e| {
                anyhow::anyhow!(
                    "{name}: cannot open its member: {}",
                    plain_zip_error(&e.to_string())
                )
            })?;
            send(&mut member)
        });
        let mut reader = StreamReader::default();
        let mut carry: Vec<u8> = Vec::new();
        for chunk in received {
            let mut rest = &chunk[..];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                let line = if carry.is_empty() {
                    &rest[..end]
                } else {
                    carry.extend_from_slice(&rest[..end]);
                    &carry[..]
                };
                feed(&mut reader, line, &mut on_frame);
                carry.clear();
                rest = &rest[end + 1..];
            }
            carry.extend_from_slice(rest);
            let _ = recycle.send(chunk);
        }
        inflater
            .join()
            .map_err(|_| anyhow::anyhow!("{name}: the inflating thread panicked"))??;
        reader.finish(&String::from_utf8_lossy(&carry));
        Ok(reader.stats)
    })
}

fn feed(reader: &mut StreamReader, line: &[u8], on_frame: &mut impl FnMut(&Header, &Frame)) {
    reader.line_bytes(line.strip_suffix(b"\r").unwrap_or(line), on_frame);
}

/// A daily archive being written as the Lab IA's tools expect it: one deflated member,
/// `log_omegawatt_of_the_day`, open for writing (zip64, a day is gigabytes).
pub fn day_zip_writer(file: File) -> zip::result::ZipResult<zip::ZipWriter<File>> {
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file(DAY_MEMBER, options)?;
    Ok(zip)
}

/// The zip library's message in the words of the format's specification, without its own
/// type names (`Unexpected end of zip::format::blocks::ZipLocalEntryBlock`) or acronyms.
fn plain_zip_error(message: &str) -> String {
    const NAMES: [(&str, &str); 5] = [
        ("LocalEntryBlock", "local file header"),
        ("CentralEntryBlock", "central directory entry"),
        ("EndOfCentralDirectory", "end of central directory record"),
        ("EOCD", "end of central directory record"),
        ("CDFH", "central directory entry"),
    ];
    message
        .split(' ')
        .map(|word| {
            // `zip::format::blocks::Zip32CDEBlock` → its last part, then a plain name.
            let last = word.rsplit("::").next().unwrap_or(word);
            let plain = NAMES
                .iter()
                .find(|(code, _)| last.contains(code))
                .map(|(_, plain)| plain.to_string());
            match plain {
                Some(plain) => plain,
                None if word.contains("::") => "block".to_string(),
                None => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fill `buf` as far as the input allows; 0 at the end.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::plain_zip_error;

    #[test]
    fn zip_errors_without_type_names() {
        assert_eq!(
            plain_zip_error(
                "invalid Zip archive: Unexpected end of zip::format::blocks::ZipLocalEntryBlock"
            ),
            "invalid Zip archive: Unexpected end of local file header"
        );
        assert_eq!(
            plain_zip_error("invalid Zip archive: Could not find EOCD"),
            "invalid Zip archive: Could not find end of central directory record"
        );
        assert_eq!(
            plain_zip_error("invalid Zip archive: Invalid CDFH offset in EOCD"),
            "invalid Zip archive: Invalid central directory entry offset in end of central directory record"
        );
        assert_eq!(plain_zip_error("Invalid checksum"), "Invalid checksum");
    }
}
