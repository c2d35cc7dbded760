//! RAPL through the powercap sysfs tree (`/sys/class/powercap/intel-rapl:N[:M]`).
//!
//! Top-level zones are packages, `psys` or `dram`, whatever their name; subzones (`core`,
//! `uncore`, `dram`) are nested in their package and recorded as `package-0/dram`. AMD
//! exposes the same tree. See: kernel Documentation/power/powercap/powercap.rst.

use std::path::Path;

use super::{EnergySource, Found};
use crate::sysfs::{read_to_string, ValueFile};

pub struct PowercapSource {
    zones: Vec<Zone>,
    channels: Vec<String>,
}

struct Zone {
    energy: ValueFile,
    range: Option<u64>,
}

/// Zones whose names start like this are RAPL; `intel-rapl-mmio` repeats the package
/// counter through another interface and would be counted twice.
const RAPL_PREFIX: &str = "intel-rapl:";

impl PowercapSource {
    /// Open every readable RAPL zone under `root`. Unreadable zones are reported in
    /// `problems` and left out; no readable zone at all is `Absent`.
    pub fn open(root: &Path, problems: &mut Vec<String>) -> Found<PowercapSource> {
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) => return Found::Absent(format!("no powercap tree at {}: {e}", root.display())),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(RAPL_PREFIX))
            .collect();
        // Numeric order of the id parts, so intel-rapl:10 comes after intel-rapl:2.
        ids.sort_by_key(|id| zone_path_numbers(id));
        let mut source = PowercapSource {
            zones: Vec::new(),
            channels: Vec::new(),
        };
        let mut names = std::collections::HashMap::new();
        for id in &ids {
            let dir = root.join(id);
            let name = match read_to_string(&dir.join("name")) {
                Ok(name) => name.trim().to_string(),
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let numbers = zone_path_numbers(id);
            let channel = if numbers.len() > 1 {
                let parent_id = format!("{RAPL_PREFIX}{}", numbers[0]);
                let parent = names.get(&parent_id).cloned().unwrap_or(parent_id);
                format!("{parent}/{name}")
            } else {
                names.insert(id.clone(), name.clone());
                name
            };
            let energy = match ValueFile::open(&dir.join("energy_uj")) {
                Ok(f) => f,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Err(e) = energy.read_u64() {
                problems.push(e.to_string());
                continue;
            }
            let range = match ValueFile::open(&dir.join("max_energy_range_uj"))
                .and_then(|f| f.read_u64())
            {
                Ok(range) => Some(range),
                Err(e) => {
                    problems.push(format!("{e}; wraps of {channel} cannot be corrected"));
                    None
                }
            };
            source.zones.push(Zone { energy, range });
            source.channels.push(channel);
        }
        if source.zones.is_empty() {
            let why = if ids.is_empty() {
                format!("no {RAPL_PREFIX}* zone under {}", root.display())
            } else {
                format!("no readable RAPL zone under {}", root.display())
            };
            return Found::Absent(why);
        }
        Found::Present(source)
    }
}

/// `intel-rapl:0:1` -> `[0, 1]`.
fn zone_path_numbers(id: &str) -> Vec<u32> {
    id.trim_start_matches(RAPL_PREFIX)
        .split(':')
        .filter_map(|n| n.parse().ok())
        .collect()
}

impl EnergySource for PowercapSource {
    fn name(&self) -> &'static str {
        aipm_recording::source::RAPL
    }

    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn ranges(&self) -> Vec<Option<u64>> {
        self.zones.iter().map(|z| z.range).collect()
    }

    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>) {
        for zone in &self.zones {
            match zone.energy.read_u64() {
                Ok(v) => out.push(Some(v)),
                Err(e) => {
                    errors.push(e.to_string());
                    out.push(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn zone(root: &Path, id: &str, name: &str, energy: u64, range: Option<u64>) {
        let dir = root.join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("energy_uj"), format!("{energy}\n")).unwrap();
        if let Some(range) = range {
            fs::write(dir.join("max_energy_range_uj"), format!("{range}\n")).unwrap();
        }
    }

    fn open(root: &Path) -> (PowercapSource, Vec<String>) {
        let mut problems = Vec::new();
        match PowercapSource::open(root, &mut problems) {
            Found::Present(s) => (s, problems),
            Found::Absent(why) => panic!("absent: {why}"),
        }
    }

    #[test]
    fn finds_packages_psys_and_nested_dram() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        zone(
            root,
            "intel-rapl:0",
            "package-0",
            100,
            Some(262_143_328_850),
        );
        zone(root, "intel-rapl:0:0", "dram", 50, Some(65_712_999_613));
        zone(root, "intel-rapl:1", "psys", 7, Some(262_143_328_850));
        zone(root, "intel-rapl-mmio:0", "package-0", 100, Some(1));
        fs::create_dir_all(root.join("dtpm")).unwrap();
        let (mut source, problems) = open(root);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(source.channels(), ["package-0", "package-0/dram", "psys"]);
        assert_eq!(
            source.ranges(),
            [
                Some(262_143_328_850),
                Some(65_712_999_613),
                Some(262_143_328_850)
            ]
        );
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        source.read(&mut out, &mut errors);
        assert_eq!(out, [Some(100), Some(50), Some(7)]);
        fs::write(root.join("intel-rapl:0/energy_uj"), "12345\n").unwrap();
        out.clear();
        source.read(&mut out, &mut errors);
        assert_eq!(out[0], Some(12345));
    }

    #[test]
    fn an_unreadable_or_broken_zone_is_reported_and_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        zone(root, "intel-rapl:0", "package-0", 100, Some(1000));
        zone(root, "intel-rapl:1", "package-1", 0, None);
        fs::write(root.join("intel-rapl:1/energy_uj"), "garbage").unwrap();
        zone(root, "intel-rapl:2", "package-2", 5, None);
        let (source, problems) = open(root);
        assert_eq!(source.channels(), ["package-0", "package-2"]);
        assert_eq!(source.ranges(), [Some(1000), None]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("intel-rapl:1/energy_uj: expected an integer"));
        assert!(problems[1].contains("wraps of package-2 cannot be corrected"));
    }

    /// What an unreadable counter does to the reader (root reads even 0400 files, so the
    /// test makes `energy_uj` a directory: opened fine, every read fails).
    #[test]
    fn an_unreadable_counter_is_reported_and_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        zone(tmp.path(), "intel-rapl:0", "package-0", 100, Some(1000));
        zone(tmp.path(), "intel-rapl:1", "package-1", 100, Some(1000));
        let counter = tmp.path().join("intel-rapl:1/energy_uj");
        fs::remove_file(&counter).unwrap();
        fs::create_dir(&counter).unwrap();
        let (source, problems) = open(tmp.path());
        assert_eq!(source.channels(), ["package-0"]);
        assert!(
            problems[0].contains("intel-rapl:1/energy_uj"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_read_error_during_sampling_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        zone(tmp.path(), "intel-rapl:0", "package-0", 100, Some(1000));
        let (mut source, _) = open(tmp.path());
        fs::write(tmp.path().join("intel-rapl:0/energy_uj"), "").unwrap();
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        source.read(&mut out, &mut errors);
        assert_eq!(out, [None]);
        assert!(
            errors[0].contains("expected an integer, found \"\""),
            "{errors:?}"
        );
    }

    #[test]
    fn no_tree_is_absent_not_an_error() {
        let mut problems = Vec::new();
        let found = PowercapSource::open(Path::new("/nonexistent/powercap"), &mut problems);
        assert!(matches!(found, Found::Absent(why) if why.contains("no powercap tree")));
    }
}
