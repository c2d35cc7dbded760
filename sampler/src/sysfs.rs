//! Reading small integer files (sysfs, cgroupfs) through handles kept open, so a sample
//! costs one `pread` per value and root-only files stay readable after privileges drop.

use std::fs::File;
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open integer file, remembered with its path for error messages.
#[derive(Debug)]
pub struct ValueFile {
    file: File,
    path: PathBuf,
}

/// A file that could not be opened or read as expected, with its path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Opening { path: PathBuf, source: io::Error },
    #[error("reading {}: {source}", path.display())]
    Reading { path: PathBuf, source: io::Error },
    #[error("listing {}: {source}", path.display())]
    Listing { path: PathBuf, source: io::Error },
    #[error("reading {}: expected text", path.display())]
    NotText { path: PathBuf },
    #[error("reading {}: expected an integer, found {found:?}", path.display())]
    NotAnInteger { path: PathBuf, found: String },
}

impl ValueFile {
    pub fn open(path: &Path) -> Result<ValueFile, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Opening {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ValueFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the whole file from offset 0 into `buf` (cleared first).
    pub fn read_text<'b>(&self, buf: &'b mut [u8]) -> Result<&'b str, ReadError> {
        let path = || self.path.clone();
        let n = self
            .file
            .read_at(buf, 0)
            .map_err(|source| ReadError::Reading {
                path: path(),
                source,
            })?;
        std::str::from_utf8(&buf[..n]).map_err(|_| ReadError::NotText { path: path() })
    }

    /// Read the integer on the first line.
    pub fn read_u64(&self) -> Result<u64, ReadError> {
        let mut buf = [0u8; 64];
        let text = self.read_text(&mut buf)?;
        parse_u64_line(text).ok_or_else(|| ReadError::NotAnInteger {
            path: self.path.clone(),
            found: text.to_string(),
        })
    }
}

/// The integer on the first line of `text`; sysfs writes `123\n`.
pub fn parse_u64_line(text: &str) -> Option<u64> {
    text.split('\n').next()?.trim().parse().ok()
}

/// Read a small file as text, for values read once (names, ranges).
pub fn read_to_string(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError::Reading {
        path: path.to_path_buf(),
        source,
    })
}

/// A Linux list of CPUs (`0-3,8,10-11`), as sysfs `cpumask` files and Slurm's core lists
/// write it, as ranges; `None` unless the whole text is such a list.
pub fn parse_cpu_list(text: &str) -> Option<Vec<RangeInclusive<u32>>> {
    text.trim()
        .split(',')
        .map(|part| {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
            (first <= last).then_some(first..=last)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0..=0]));
        assert_eq!(parse_cpu_list("0,28\n"), Some(vec![0..=0, 28..=28]));
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0..=3, 8..=8, 10..=11])
        );
        assert_eq!(parse_cpu_list(" 0 - 1 , 4\n"), Some(vec![0..=1, 4..=4]));
        for bad in [
            "", "\n", "x", "3-1", "1-", "-1", "0,,1", "0,", "1 2", "0-1-2", "-0",
        ] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }
}
