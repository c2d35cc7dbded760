//! Reading a `wattmetre-read` log: a plain file, or a Lab IA daily archive
//! (`MM_DD_YYYY_USBn.zip` with one member, `log_omegawatt_of_the_day`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context as _};

use super::stream::{Frame, Header, StreamReader, StreamStats};

/// The member the Lab IA cron puts in each daily zip.
pub const DAY_MEMBER: &str = "log_omegawatt_of_the_day";

/// Read a log or an archive; `on_frame` gets every frame with the header it belongs to.
pub fn read_log(
    path: &Path,
    mut on_frame: impl FnMut(&Header, &Frame),
) -> anyhow::Result<StreamStats> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let is_zip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if !is_zip {
        return read_lines(
            BufReader::with_capacity(1 << 20, file),
            &path.display().to_string(),
            &mut on_frame,
        );
    }
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable zip archive (truncated or corrupt?): {e}",
            path.display()
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
                "{}: no member {DAY_MEMBER} (members: {})",
                path.display(),
                names.join(", ")
            );
        }
    };
    let member = archive
        .by_index(index)
        .map_err(|e| anyhow::anyhow!("{}: cannot open its member: {e}", path.display()))?;
    let member_name = member.name().map(|n| n.into_owned()).unwrap_or_default();
    let name = format!("{}:{member_name}", path.display());
    read_lines(
        BufReader::with_capacity(1 << 20, member),
        &name,
        &mut on_frame,
    )
}

fn read_lines(
    mut input: impl BufRead,
    name: &str,
    on_frame: &mut impl FnMut(&Header, &Frame),
) -> anyhow::Result<StreamStats> {
    let mut reader = StreamReader::default();
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf).map_err(|e| {
            anyhow::anyhow!(
                "{name}: unreadable after line {} (a truncated or corrupt archive?): {e}",
                reader.stats.lines
            )
        })?;
        if n == 0 {
            reader.finish("");
            break;
        }
        if buf.last() != Some(&b'\n') {
            reader.finish(&String::from_utf8_lossy(&buf));
            break;
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf);
        reader.line(&line, on_frame);
    }
    Ok(reader.stats)
}
