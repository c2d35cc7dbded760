//! `aipm-analyze simulate rapl`: a simulated RAPL powercap tree at known constant powers,
//! for the demo and the tests on machines without RAPL. The sampler reads it with exactly
//! the code that reads `/sys/class/powercap`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Run a simulated sensor tree until killed.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub sensor: Sensor,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sensor {
    Rapl(RaplArgs),
}

/// Write a powercap tree (`intel-rapl:N/energy_uj`, ...) whose counters advance at constant
/// powers and wrap at `max_energy_range_uj`, until killed.
///
/// Point the plugin at it with `powercap_root=DIR`. Example:
/// `aipm-analyze simulate rapl --root /tmp/pc --zone package-0=40 --zone package-0/dram=6`
#[derive(Debug, clap::Args)]
pub struct RaplArgs {
    /// Directory to create the tree in.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    /// A zone and its power in watts: `package-0=40` (top level) or `package-0/dram=6`
    /// (a subzone of package-0). Repeat for more zones.
    #[arg(long = "zone", value_name = "NAME=WATTS", required = true, value_parser = parse_zone)]
    pub zones: Vec<(String, f64)>,

    /// Counter range, after which it wraps to 0 (µJ).
    #[arg(long, value_name = "UJ", default_value_t = 262_143_328_850)]
    pub max_range_uj: u64,

    /// How often the counters are updated (real RAPL: about every millisecond).
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub update_ms: u64,

    /// Stop after this many seconds (default: run until killed).
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
}

fn parse_zone(text: &str) -> Result<(String, f64), String> {
    let (name, watts) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=WATTS such as package-0=40, got {text:?}"))?;
    let watts: f64 = watts
        .parse()
        .ok()
        .filter(|w: &f64| w.is_finite() && *w >= 0.0)
        .ok_or_else(|| format!("{text:?}: expected a power in watts, such as 40 or 6.5"))?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('/').all(valid) || name.split('/').count() > 2 {
        return Err(format!(
            "{text:?}: expected a zone name such as package-0 or package-0/dram"
        ));
    }
    Ok((name.to_string(), watts))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.sensor {
        Sensor::Rapl(args) => run_rapl(args),
    }
}

struct SimZone {
    file: File,
    microwatts: f64,
}

fn run_rapl(args: RaplArgs) -> anyhow::Result<ExitCode> {
    let mut zones = Vec::new();
    let mut top: Vec<String> = Vec::new();
    let mut children: Vec<usize> = Vec::new();
    for (name, watts) in &args.zones {
        let (parent, leaf) = match name.split_once('/') {
            Some((p, l)) => (p, Some(l)),
            None => (name.as_str(), None),
        };
        let top_index = match top.iter().position(|t| t == parent) {
            Some(i) => i,
            None => {
                top.push(parent.to_string());
                children.push(0);
                let dir = args.root.join(format!("intel-rapl:{}", top.len() - 1));
                create_zone(&dir, parent, args.max_range_uj)?;
                top.len() - 1
            }
        };
        let dir = match leaf {
            None => args.root.join(format!("intel-rapl:{top_index}")),
            Some(leaf) => {
                let dir = args
                    .root
                    .join(format!("intel-rapl:{top_index}:{}", children[top_index]));
                children[top_index] += 1;
                create_zone(&dir, leaf, args.max_range_uj)?;
                dir
            }
        };
        let path = dir.join("energy_uj");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        zones.push(SimZone {
            file,
            microwatts: watts * 1e6,
        });
    }
    let start = Instant::now();
    let period = Duration::from_millis(args.update_ms.max(1));
    loop {
        let elapsed = start.elapsed();
        for zone in &zones {
            let energy = (zone.microwatts * elapsed.as_secs_f64()) as u64 % args.max_range_uj;
            write_counter(&zone.file, energy)?;
        }
        if args.seconds.is_some_and(|s| elapsed.as_secs_f64() >= s) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(period);
    }
}

fn create_zone(dir: &Path, name: &str, range: u64) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("name"), format!("{name}\n"))?;
    fs::write(dir.join("max_energy_range_uj"), format!("{range}\n"))?;
    let mut f = File::create(dir.join("energy_uj"))?;
    f.write_all(b"0\n")?;
    Ok(())
}

/// Overwrite the counter in place, as sysfs does: readers keep their file open and read
/// from offset 0, up to the first newline.
fn write_counter(file: &File, value: u64) -> anyhow::Result<()> {
    let text = format!("{value}\n");
    file.write_all_at(text.as_bytes(), 0)?;
    file.set_len(text.len() as u64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_arguments() {
        assert_eq!(parse_zone("package-0=40"), Ok(("package-0".into(), 40.0)));
        assert_eq!(
            parse_zone("package-0/dram=6.5"),
            Ok(("package-0/dram".into(), 6.5))
        );
        assert!(parse_zone("package-0").unwrap_err().contains("NAME=WATTS"));
        assert!(parse_zone("p=-1").is_err());
        assert!(parse_zone("../x=1").is_err());
        assert!(parse_zone("a/b/c=1").is_err());
    }
}
