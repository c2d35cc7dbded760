//! `aipm-analyze omegawatt …`: the Omegawatt wall meter's `wattmetre-read` logs and the
//! Lab IA's daily archives.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use crate::output::{write_json, Format};
use crate::window::parse_time;
use aipm_omegawatt::archive::read_log;
use aipm_omegawatt::channels::ChannelMap;
use aipm_omegawatt::generate::{self, Faults, Profile, Spec};
use aipm_omegawatt::seconds::{summarize, PerSecond};
use aipm_omegawatt::stream::StreamStats;
use aipm_omegawatt::wall::{node_seconds, NodeSeconds, WallSource};

/// Read Omegawatt wall-meter logs and archives.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Head(HeadArgs),
    Summary(SummaryArgs),
    Node(NodeArgs),
    Index(IndexArgs),
    Plot(PlotArgs),
    Ingest(IngestArgs),
    Generate(GenerateArgs),
}

/// Read the live wattmetre-read stream on stdin into the day's raw file, and close each day
/// into its archive at the rotation hour, without stopping the reader.
///
/// Run as `wattmetre-read --tty=/dev/ttyUSB0 --nb=0 2>&1 | aipm-analyze omegawatt ingest --dir /data/omegawatt --port USB0`
/// (a systemd unit: contrib/omegawatt-ingest@.service).
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Where the raw file (log_omegawatt_PORT) and the archives go.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The port's name, as in the archives' names: USB0, USB1.
    #[arg(long, value_name = "PORT")]
    pub port: String,
    /// Local hour at which a day is closed.
    #[arg(long, value_name = "HOUR", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..24))]
    pub rotation_hour: u32,
    /// Also write each closed day into this per-second cache (as `omegawatt index` does).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// Build the per-second cache of a directory of daily archives: one Parquet file per port and
/// day (`CACHE/port=USB0/date=2023-11-16/seconds.parquet`, schema in docs/omegawatt-cache.md),
/// read directly by polars, DuckDB or Spark. Archives already cached and unchanged are
/// skipped; several are read at once.
///
/// Example: `aipm-analyze omegawatt index --archives /data/omegawatt --cache /data/omegawatt-cache`
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Directory of the daily archives (MM_DD_YYYY_USBn.zip); other files are listed and left.
    #[arg(long, value_name = "DIR")]
    pub archives: PathBuf,
    /// The cache directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Archives read at once (each on two threads) [default: half the CPUs, at least 1].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Index again even archives cached and unchanged.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Power and energy of one node over a time window, from the per-second cache, else from the
/// daily archives of its port.
///
/// The node's plugs (one per PSU) come from the channel map; the days covering the window
/// are found by date (MM_DD_YYYY_USBn.zip, closed at the rotation hour). Missing days,
/// skipped frames and seconds without data are reported.
///
/// Example: `aipm-analyze omegawatt node n51 --map channels.toml --cache /data/omegawatt-cache --from "2023-11-16 08:00" --to "2023-11-16 20:00"`
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub window: NodeWindow,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A node and a time window of its wall data: what `node` and `plot` read.
#[derive(Debug, clap::Args)]
pub struct NodeWindow {
    /// Node name, as in the channel map.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// Channel map (TOML: [nodes.NAME] port = "USB0", channels = [13, 19]).
    #[arg(long, value_name = "FILE")]
    pub map: PathBuf,
    /// The per-second cache (`omegawatt index`), read first.
    #[arg(long, value_name = "DIR", required_unless_present = "archives")]
    pub cache: Option<PathBuf>,
    /// Directory of the daily archives, for days the cache does not hold.
    #[arg(long, value_name = "DIR")]
    pub archives: Option<PathBuf>,
    /// Start: 2023-11-16 08:00 (local), RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: i64,
    /// End (excluded), same forms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: i64,
    /// Local hour at which the archives close a day.
    #[arg(long, value_name = "HOUR", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..24))]
    pub rotation_hour: u32,
}

impl NodeWindow {
    /// The node's channels and its per-second data over the window.
    fn read(&self) -> anyhow::Result<(aipm_omegawatt::channels::NodeChannels, NodeSeconds)> {
        crate::window::check_window(self.from, self.to, "--from", "--to")?;
        let map = ChannelMap::load(&self.map).map_err(anyhow::Error::msg)?;
        let entry = map.node(&self.node).map_err(anyhow::Error::msg)?.clone();
        let source = WallSource {
            cache: self.cache.clone(),
            archives: self.archives.clone(),
        };
        let data = node_seconds(
            &self.node,
            &entry,
            &source,
            self.from,
            self.to,
            self.rotation_hour,
        )?;
        Ok((entry, data))
    }
}

/// Draw a node's wall power over a time window (each PSU and their sum) into a PNG or SVG
/// file, from the per-second cache, else from the daily archives.
///
/// Example: `aipm-analyze omegawatt plot n51 --map channels.toml --cache /data/omegawatt-cache --from "2023-11-16 08:00" --to "2023-11-16 20:00" -o n51.png`
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    #[command(flatten)]
    pub window: NodeWindow,
    /// The image: FILE.png or FILE.svg.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Image size in pixels [default: 1200x390].
    #[arg(long, value_name = "WxH", value_parser = crate::plot::parse_size)]
    pub size: Option<crate::plot::Size>,
}

/// Show what a log or daily archive holds: plugs, time covered, frames and what was skipped.
///
/// Example: `aipm-analyze omegawatt head 11_16_2023_USB0.zip`
#[derive(Debug, clap::Args)]
pub struct HeadArgs {
    /// A `wattmetre-read` log, or a daily zip (MM_DD_YYYY_USBn.zip).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// How many frames to print.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub frames: usize,
}

/// Power and energy of plugs over a log or archive, from the exact per-second means of every
/// frame. Several plugs are summed second by second (a node's two PSUs).
///
/// Example: `aipm-analyze omegawatt summary 11_16_2023_USB0.zip --plugs 13,19 --format json`
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// A `wattmetre-read` log, a daily zip (MM_DD_YYYY_USBn.zip) or a Grid'5000 hourly file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Plug (channel) numbers to sum, as in the header's `#activepowN` (default: each plug apart).
    #[arg(long, value_name = "N,N", value_delimiter = ',')]
    pub plugs: Vec<u32>,
    /// Only seconds from this time on: 2023-11-16 08:00 (local), RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only seconds before this time, same forms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Write realistic `wattmetre-read` output, for tests and benchmarks.
///
/// Example: `aipm-analyze omegawatt generate --plugs 24 --seconds 60 --power 1=200 --power 2=100..300 --zip day.zip`
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of plugs (a multiple of 6, as the boxes have).
    #[arg(long, default_value_t = 24)]
    pub plugs: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seconds of data to write.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// First frame's time (Unix seconds, or as --from elsewhere).
    #[arg(long, value_name = "TIME", default_value = "1700000000", value_parser = parse_time)]
    pub start: i64,
    /// A plug's power: PLUG=WATTS or PLUG=FROM..TO (a ramp over the run). Others draw 0 W.
    #[arg(long = "power", value_name = "PLUG=W", value_parser = Profile::parse)]
    pub profiles: Vec<Profile>,
    /// Zero-mean noise on each value of a powered plug, ± this many watts.
    #[arg(long, value_name = "W", default_value_t = 0.0)]
    pub noise: f64,
    /// Every Nth frame invalid (`false`, empty fields).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub invalid_every: u64,
    /// Every Nth frame cut by a stderr log line.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub log_every: u64,
    /// Every Nth frame with `nan` for plug 1.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub nan_every: u64,
    /// Begin like the Lab IA's files: the header glued to a log line.
    #[arg(long)]
    pub glued_header: bool,
    /// End in the middle of a line.
    #[arg(long)]
    pub truncate: bool,
    /// Step the clock back: FRAME:SECONDS.
    #[arg(long, value_name = "FRAME:S")]
    pub step_back: Option<String>,
    /// Write a daily archive (one member, log_omegawatt_of_the_day) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub zip: Option<PathBuf>,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Head(a) => head(a, out),
        Command::Summary(a) => summary(a, out),
        Command::Node(a) => node(a, out),
        Command::Index(a) => index(a, out),
        Command::Plot(a) => plot(a, out),
        Command::Ingest(a) => ingest(a, out),
        Command::Generate(a) => generate_cmd(a, out),
    }
}

fn skipped_line(stats: &StreamStats) -> String {
    stats.skipped()
}

fn head(args: HeadArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut shown: Vec<String> = Vec::new();
    let mut plugs = Vec::new();
    let mut first_last: Option<(i64, i64)> = None;
    let stats = read_log(&args.file, |header, frame| {
        if plugs.is_empty() {
            plugs = header.plugs();
        }
        first_last = Some(first_last.map_or((frame.time_ns, frame.time_ns), |(a, b)| {
            (a.min(frame.time_ns), b.max(frame.time_ns))
        }));
        if shown.len() < args.frames {
            let power: Vec<String> = header
                .plugs()
                .iter()
                .take(8)
                .map(|p| match frame.milli.get(header.power_columns[p] - 2) {
                    Some(Some(t)) => format!("{:.1}", f64::from(*t) / 1000.0),
                    _ => "-".into(),
                })
                .collect();
            let time = aipm_recording::time::format_utc((frame.time_ns / 1_000_000) as u64);
            shown.push(format!(
                "  {time}  {:<5}  {}",
                if frame.ok { "ok" } else { "false" },
                power.join(" ")
            ));
        }
    })?;
    writeln!(out, "{}", args.file.display())?;
    if plugs.is_empty() {
        // No frame: the header's plugs, if it had one.
        plugs = stats.header_plugs.clone().unwrap_or_default();
    }
    writeln!(
        out,
        "  plugs: {} ({})",
        plugs.len(),
        plugs
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )?;
    if let Some((a, b)) = first_last {
        let fmt = |ns: i64| aipm_recording::time::format_utc((ns / 1_000_000) as u64);
        writeln!(
            out,
            "  from {} to {} ({:.1} s)",
            fmt(a),
            fmt(b),
            (b - a) as f64 / 1e9
        )?;
    }
    writeln!(
        out,
        "  frames: {} valid; skipped: {}",
        stats.valid_frames,
        skipped_line(&stats)
    )?;
    writeln!(
        out,
        "  first frames (time, validity, W of the first 8 plugs):"
    )?;
    for line in shown {
        writeln!(out, "{line}")?;
    }
    if first_last.is_none() {
        writeln!(out, "  no frame: {}", stats.why_no_frame())?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct PlugSummary {
    plugs: Vec<u32>,
    seconds_covered: u64,
    seconds_missing: u64,
    energy_wh: f64,
    mean_w: f64,
    median_w: f64,
    min_w: f64,
    max_w: f64,
    first_utc: Option<String>,
    last_utc: Option<String>,
}

#[derive(Debug, Serialize)]
struct FileSummary {
    file: String,
    valid_frames: u64,
    invalid_frames: u64,
    unreadable_lines: u64,
    nan_values: u64,
    clock_steps_back: u64,
    truncated_last_line: bool,
    summaries: Vec<PlugSummary>,
}

fn summary(args: SummaryArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut per_second: Option<PerSecond> = None;
    let stats = read_log(&args.file, |header, frame| {
        per_second
            .get_or_insert_with(|| PerSecond::new(header))
            .add(frame);
    })?;
    let Some(per_second) = per_second else {
        anyhow::bail!(
            "{}: no frame found (is it a wattmetre-read log?): {}",
            args.file.display(),
            stats.why_no_frame()
        );
    };
    // Summed from the per-second statistics directly: a day of 24 plugs is 2 million rows.
    let all_plugs = per_second.plugs();
    if all_plugs.is_empty() {
        anyhow::bail!(
            "{}: its header has no #activepowN column",
            args.file.display()
        );
    }
    if let (Some(from), Some(to)) = (args.from, args.to) {
        crate::window::check_window(from, to, "--from", "--to")?;
    }
    for plug in &args.plugs {
        if !all_plugs.contains(plug) {
            anyhow::bail!(
                "{}: no #activepow{plug} column (plugs {}..{})",
                args.file.display(),
                all_plugs[0],
                all_plugs[all_plugs.len() - 1]
            );
        }
    }
    let groups: Vec<Vec<u32>> = if args.plugs.is_empty() {
        all_plugs.iter().map(|p| vec![*p]).collect()
    } else {
        vec![args.plugs.clone()]
    };
    let fmt = |s: Option<i64>| s.map(aipm_recording::time::format_utc_s);
    let summaries: Vec<PlugSummary> = groups
        .into_iter()
        .map(|plugs| {
            let s = summarize(per_second.rows(), &plugs, args.from, args.to);
            PlugSummary {
                plugs,
                seconds_covered: s.seconds_covered,
                seconds_missing: s.seconds_missing,
                energy_wh: s.energy_wh,
                mean_w: s.mean_w,
                median_w: s.median_w,
                min_w: s.min_w,
                max_w: s.max_w,
                first_utc: fmt(s.first_second),
                last_utc: fmt(s.last_second),
            }
        })
        .collect();
    let report = FileSummary {
        file: args.file.display().to_string(),
        valid_frames: stats.valid_frames,
        invalid_frames: stats.invalid_frames,
        unreadable_lines: stats.bad_lines,
        nan_values: stats.nan_values,
        clock_steps_back: stats.clock_steps_back,
        truncated_last_line: stats.truncated_last_line,
        summaries,
    };
    match args.format {
        Format::Json => write_json(out, &report)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "plugs",
                "seconds_covered",
                "seconds_missing",
                "energy_wh",
                "mean_w",
                "median_w",
                "min_w",
                "max_w",
                "first_utc",
                "last_utc",
            ])?;
            for s in &report.summaries {
                let plugs: Vec<String> = s.plugs.iter().map(u32::to_string).collect();
                w.write_record([
                    plugs.join("+"),
                    s.seconds_covered.to_string(),
                    s.seconds_missing.to_string(),
                    format!("{:.6}", s.energy_wh),
                    format!("{:.3}", s.mean_w),
                    format!("{:.3}", s.median_w),
                    format!("{:.1}", s.min_w),
                    format!("{:.1}", s.max_w),
                    s.first_utc.clone().unwrap_or_default(),
                    s.last_utc.clone().unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "{}: {} valid frames; skipped: {}",
                report.file,
                stats.valid_frames,
                skipped_line(&stats)
            )?;
            writeln!(
                out,
                "{:>10} {:>10} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9}",
                "plugs", "seconds", "missing", "energy Wh", "mean W", "median W", "min W", "max W"
            )?;
            for s in &report.summaries {
                let plugs: Vec<String> = s.plugs.iter().map(u32::to_string).collect();
                writeln!(
                    out,
                    "{:>10} {:>10} {:>9} {:>12.4} {:>9.2} {:>9.2} {:>9.1} {:>9.1}",
                    plugs.join("+"),
                    s.seconds_covered,
                    s.seconds_missing,
                    s.energy_wh,
                    s.mean_w,
                    s.median_w,
                    s.min_w,
                    s.max_w
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate_cmd(args: GenerateArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.plugs == 0 || !args.plugs.is_multiple_of(6) || args.rate == 0 {
        anyhow::bail!("--plugs must be a positive multiple of 6 and --rate positive");
    }
    let (step_back_at, step_back_s) = match &args.step_back {
        Some(text) => {
            let (frame, s) = text
                .split_once(':')
                .context("--step-back: expected FRAME:SECONDS, such as 500:2.5")?;
            (
                Some(
                    frame
                        .parse()
                        .context("--step-back: FRAME must be an integer")?,
                ),
                s.parse().context("--step-back: SECONDS must be a number")?,
            )
        }
        None => (None, 0.0),
    };
    let spec = Spec {
        plugs: args.plugs,
        rate_hz: args.rate,
        seconds: args.seconds,
        start_s: args.start,
        profiles: args.profiles,
        noise_w: args.noise,
        faults: Faults {
            invalid_every: args.invalid_every,
            log_every: args.log_every,
            nan_every: args.nan_every,
            glued_header: args.glued_header,
            truncate: args.truncate,
            step_back_at,
            step_back_s,
        },
    };
    match args.zip {
        None => generate::write(&spec, &mut std::io::BufWriter::new(out))?,
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut zip = aipm_omegawatt::archive::day_zip_writer(file)?;
            generate::write(
                &spec,
                &mut std::io::BufWriter::with_capacity(1 << 20, &mut zip),
            )?;
            zip.finish()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct NodeReport {
    node: String,
    port: String,
    plugs: Vec<u32>,
    from_utc: String,
    to_utc: String,
    days_cached: Vec<String>,
    archives_read: Vec<String>,
    archives_missing: Vec<String>,
    valid_frames: u64,
    skipped_frames: u64,
    unreadable_lines: u64,
    /// Clock steps back in the days read, and seconds found in two days' files (merged).
    clock_steps_back: u64,
    merged_seconds: u64,
    /// Seconds of the window with data on every plug of the node.
    seconds_covered: u64,
    /// Seconds of the window without.
    seconds_uncovered: u64,
    energy_wh: f64,
    mean_w: f64,
    median_w: f64,
    min_w: f64,
    max_w: f64,
}

fn node(args: NodeArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (entry, data) = args.window.read()?;
    let w = &args.window;
    let s = summarize(data.rows, &entry.channels, Some(w.from), Some(w.to));
    let fmt = aipm_recording::time::format_utc_s;
    let report = NodeReport {
        node: w.node.clone(),
        port: entry.port.clone(),
        plugs: entry.channels.clone(),
        from_utc: fmt(w.from),
        to_utc: fmt(w.to),
        days_cached: data.days_cached,
        archives_read: data.archives_read,
        archives_missing: data.archives_missing,
        valid_frames: data.valid_frames,
        skipped_frames: data.skipped_frames,
        unreadable_lines: data.unreadable_lines,
        clock_steps_back: data.clock_steps_back,
        merged_seconds: data.merged_seconds,
        seconds_covered: s.seconds_covered,
        seconds_uncovered: (w.to - w.from) as u64 - s.seconds_covered,
        energy_wh: s.energy_wh,
        mean_w: s.mean_w,
        median_w: s.median_w,
        min_w: s.min_w,
        max_w: s.max_w,
    };
    match args.format {
        Format::Json => write_json(out, &report)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "node",
                "from_utc",
                "to_utc",
                "seconds_covered",
                "seconds_uncovered",
                "energy_wh",
                "mean_w",
                "median_w",
                "min_w",
                "max_w",
                "archives_missing",
            ])?;
            w.write_record([
                report.node.clone(),
                report.from_utc.clone(),
                report.to_utc.clone(),
                report.seconds_covered.to_string(),
                report.seconds_uncovered.to_string(),
                format!("{:.6}", report.energy_wh),
                format!("{:.3}", report.mean_w),
                format!("{:.3}", report.median_w),
                format!("{:.1}", report.min_w),
                format!("{:.1}", report.max_w),
                report.archives_missing.len().to_string(),
            ])?;
            w.flush()?;
        }
        Format::Table => {
            let plugs: Vec<String> = report.plugs.iter().map(u32::to_string).collect();
            writeln!(
                out,
                "Node {} ({}, plugs {}) from {} to {}",
                report.node,
                report.port,
                plugs.join("+"),
                report.from_utc,
                report.to_utc
            )?;
            writeln!(out, "  Energy      {:.3} Wh", report.energy_wh)?;
            writeln!(
                out,
                "  Power       mean {:.1} W, median {:.1} W, min {:.1} W, max {:.1} W",
                report.mean_w, report.median_w, report.min_w, report.max_w
            )?;
            writeln!(
                out,
                "  Coverage    {} s with data, {} s without",
                report.seconds_covered, report.seconds_uncovered
            )?;
            writeln!(
                out,
                "  Frames      {} valid, {} invalid skipped, {} unreadable lines",
                report.valid_frames, report.skipped_frames, report.unreadable_lines
            )?;
            if !report.days_cached.is_empty() {
                writeln!(
                    out,
                    "  Read        {} day(s) from the cache, {} archive(s)",
                    report.days_cached.len(),
                    report.archives_read.len()
                )?;
            }
            for a in &report.archives_missing {
                // A run of days reads "A to B (N days)"; a single day, its archive's name.
                let what = if a.ends_with(" days)") {
                    "those days are not covered"
                } else {
                    "that day is not covered"
                };
                writeln!(out, "  Missing     {a}: {what}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest(args: IngestArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    if args.rotation_hour > 23
        || args.port.is_empty()
        || !args.port.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        anyhow::bail!("--port must be letters and digits (USB0) and --rotation-hour 0 to 23");
    }
    let mut ingest = aipm_omegawatt::ingest::Ingest::open(
        &args.dir,
        &args.port,
        args.rotation_hour,
        args.cache.clone(),
    )?;
    // A stop (SIGTERM from systemd, SIGINT) must not cut the compression of a closing day:
    // the signal only ends the reading, and the days being closed are finished first.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .context("setting up the stop signals")?;
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::with_capacity(4096);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        buf.clear();
        if input.read_until(b'\n', &mut buf).context("reading stdin")? == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        ingest.line(&String::from_utf8_lossy(&buf))?;
    }
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("aipm-analyze: stopping: finishing the days being closed first");
    }
    let lines = ingest.lines;
    for archive in ingest.finish()? {
        writeln!(out, "closed {}", archive.display())?;
    }
    writeln!(out, "{lines} lines ingested")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct IndexedDay {
    archive: String,
    port: String,
    date: String,
    /// `indexed`, `unchanged` or `failed`.
    outcome: &'static str,
    rows: Option<u64>,
    skipped: Option<String>,
    error: Option<String>,
}

fn index(args: IndexArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    use aipm_omegawatt::index::{find_archives, index_all, Outcome};
    let (days, others) = find_archives(&args.archives)?;
    if days.is_empty() {
        anyhow::bail!(
            "{}: no daily archive (MM_DD_YYYY_USBn.zip) found",
            args.archives.display()
        );
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    });
    let total: u64 = days
        .iter()
        .map(|d| std::fs::metadata(&d.path).map_or(0, |m| m.len()))
        .sum();
    // Drawn on stderr only when it is a terminal.
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {binary_bytes}/{binary_total_bytes} of archives, eta {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    let outcomes = index_all(&days, &args.cache, jobs, args.force, &|day, _| {
        bar.inc(std::fs::metadata(&day.path).map_or(0, |m| m.len()));
        bar.set_message(format!("{} {}", day.port, day.date));
    });
    bar.finish_and_clear();
    let rows: Vec<IndexedDay> = days
        .iter()
        .zip(outcomes)
        .map(|(day, outcome)| {
            let mut row = IndexedDay {
                archive: day.path.display().to_string(),
                port: day.port.clone(),
                date: day.date.to_string(),
                outcome: "unchanged",
                rows: None,
                skipped: None,
                error: None,
            };
            match outcome {
                Outcome::Indexed(e) => {
                    row.outcome = "indexed";
                    row.rows = Some(e.rows);
                    row.skipped = Some(skipped_line(&aipm_omegawatt::cache::skipped_of(&e)));
                }
                Outcome::Current => {}
                Outcome::Failed(e) => {
                    row.outcome = "failed";
                    row.error = Some(e);
                }
            }
            row
        })
        .collect();
    let count = |what: &str| rows.iter().filter(|r| r.outcome == what).count();
    let failed = count("failed");
    match args.format {
        Format::Json => write_json(out, &rows)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "archive", "port", "date", "outcome", "rows", "skipped", "error",
            ])?;
            for r in &rows {
                w.write_record([
                    r.archive.clone(),
                    r.port.clone(),
                    r.date.clone(),
                    r.outcome.to_string(),
                    r.rows.map(|n| n.to_string()).unwrap_or_default(),
                    r.skipped.clone().unwrap_or_default(),
                    r.error.clone().unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            for r in &rows {
                match r.outcome {
                    "indexed" => writeln!(
                        out,
                        "indexed   {}  {} {}: {} rows; skipped: {}",
                        r.archive,
                        r.port,
                        r.date,
                        r.rows.unwrap_or(0),
                        r.skipped.as_deref().unwrap_or("")
                    )?,
                    "failed" => writeln!(
                        out,
                        "FAILED    {}: {}",
                        r.archive,
                        r.error.as_deref().unwrap_or("")
                    )?,
                    _ => {}
                }
            }
            writeln!(
                out,
                "{} archive(s) indexed, {} unchanged, {failed} failed, into {}",
                count("indexed"),
                count("unchanged"),
                args.cache.display()
            )?;
            if !others.is_empty() {
                writeln!(
                    out,
                    "{} other file(s) left (not named MM_DD_YYYY_PORT.zip), such as {}",
                    others.len(),
                    others[0].display()
                )?;
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn plot(args: PlotArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    use crate::plot::{Chart, Panel, Series, Size};
    crate::plot::format_of(&args.output)?;
    let (entry, data) = args.window.read()?;
    let w = &args.window;
    let mut series: Vec<Series> = entry
        .channels
        .iter()
        .enumerate()
        .map(|(i, plug)| Series {
            name: format!("PSU {} (plug {plug})", i + 1),
            points: data
                .rows
                .iter()
                .filter(|r| r.plug == *plug && r.valid_frames > 0)
                .map(|r| (r.second as f64 + 0.5, r.mean_w))
                .collect(),
            dashed: false,
        })
        .collect();
    if entry.channels.len() > 1 {
        series.push(Series {
            name: "node (all PSUs)".into(),
            points: aipm_omegawatt::wall::node_power(&data.rows, &entry.channels),
            dashed: true,
        });
    }
    let fmt = crate::plot::local_label;
    let chart = Chart {
        title: format!(
            "Wall power of {} ({}), {} to {}",
            w.node,
            entry.port,
            fmt(w.from),
            fmt(w.to)
        ),
        panels: vec![Panel {
            title: format!("{} (Omegawatt, per-second means)", w.node),
            series,
        }],
    };
    let size = args.size.unwrap_or_else(|| Size::default_for(1));
    crate::plot::write(&chart, size, &args.output)?;
    writeln!(
        out,
        "wrote {} ({}x{})",
        args.output.display(),
        size.width,
        size.height
    )?;
    for a in &data.archives_missing {
        writeln!(out, "missing {a} (that day is not drawn)")?;
    }
    Ok(ExitCode::SUCCESS)
}
