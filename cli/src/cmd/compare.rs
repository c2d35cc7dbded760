//! `aipm-analyze compare`: RAPL and NVML against the wall meter, per node over time.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::compare::{bin_count, bins, flag_psu_shares, median_ratio, sensor_seconds, Bin};
use crate::output::{write_json, Format};
use crate::spool::node_recordings;
use crate::window::parse_span;
use crate::window::parse_time;
use aipm_omegawatt::seconds::{plug_seconds, whole_node_seconds};
use aipm_omegawatt::wall::node_seconds;

/// Compare what RAPL and NVML saw of whole nodes with what the wall meter saw, bin by bin.
///
/// For each node: the CPU packages', DRAM's and GPUs' power from every recording of the node
/// in the window (jobs sharing the node are counted once), the wall meter's power (all PSUs),
/// and their ratio wall / (RAPL + NVML) on the seconds both saw. The wall sees more (power
/// supplies, fans, disks, network): a ratio that strays from the node's usual one by more
/// than 15% is flagged `drift` (a failing sensor, a channel moved), one below 1
/// `wall-below-sensors` (a mis-wired channel or a wrong map); a bin where one PSU's share of
/// the wall power strays more than 15% from its usual share is flagged `psu-share` (one PSU's
/// channel reading wrong). Bins without any data are counted, not listed. Exits with 1 when
/// a bin is flagged.
///
/// Example: `aipm-analyze compare --nodes n51,n52 --from "2023-11-16 08:00" --to "2023-11-17 08:00" --every 1h --wall-map channels.toml --wall-cache /data/omegawatt-cache`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes, comma-separated, as Slurm and the channel map name them.
    #[arg(long, value_name = "NODE,NODE", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Start: 2023-11-16 08:00 (local), RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: i64,
    /// End (excluded), same forms.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: i64,
    /// Bin length: 90s, 30m, 1h, 1d.
    #[arg(long, value_name = "SPAN", default_value = "1h", value_parser = parse_span)]
    pub every: i64,
    /// The wall meters: --wall-map and --wall-cache or --wall-archives are needed.
    #[command(flatten)]
    pub wall: super::wall_args::WallArgs,
    #[command(flatten)]
    pub spool: super::spool_arg::SpoolArg,
    /// Draw one panel per node (components, their sum and the wall) into FILE.png or FILE.svg.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Size of the plot in pixels [default: 1200 wide, 300 per node].
    #[arg(long, value_name = "WxH", value_parser = crate::plot::parse_size, requires = "plot")]
    pub plot_size: Option<crate::plot::Size>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct NodeComparison {
    node: String,
    /// Recordings of the node found in the window.
    recordings: usize,
    /// The node's usual wall / (RAPL + NVML) over the window (median of the bins).
    median_ratio: Option<f64>,
    flagged_bins: usize,
    /// Bins of the window without any data (no recording, no wall data), not listed.
    empty_bins: u64,
    wall_missing: Vec<String>,
    bins: Vec<BinReport>,
}

#[derive(Debug, Serialize)]
struct BinReport {
    start_utc: String,
    end_utc: String,
    #[serde(flatten)]
    bin: Bin,
}

pub fn run(args: Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    crate::window::check_window(args.from, args.to, "--from", "--to")?;
    if args.every <= 0 {
        anyhow::bail!("--every must be longer than 0 s");
    }
    if let Some(path) = &args.plot {
        crate::plot::format_of(path)?;
    }
    let spool = args.spool.resolve();
    let Some((map, source)) = args.wall.load()? else {
        anyhow::bail!("compare needs the wall meters: --wall-map FILE and --wall-cache DIR or --wall-archives DIR");
    };
    let fmt = aipm_recording::time::format_utc_s;
    let mut nodes = Vec::new();
    let mut panels = Vec::new();
    // Every node must be in the map before any data is read.
    for node in &args.nodes {
        map.node(node).map_err(anyhow::Error::msg)?;
    }
    for node in &args.nodes {
        let entry = map.node(node).map_err(anyhow::Error::msg)?;
        let recordings =
            node_recordings(&spool, node, args.from as u64 * 1000, args.to as u64 * 1000)?;
        let sensors = sensor_seconds(&recordings, args.from, args.to);
        let mut read = node_seconds(
            node,
            entry,
            &source,
            args.from,
            args.to,
            args.wall.rotation_hour,
        )?;
        let rows = std::mem::take(&mut read.rows);
        let wall: std::collections::BTreeMap<i64, f64> = whole_node_seconds(&rows, &entry.channels)
            .into_iter()
            .collect();
        // Each PSU's seconds, for its share of the node's power.
        let psus: Vec<std::collections::BTreeMap<i64, f64>> = entry
            .channels
            .iter()
            .map(|c| {
                plug_seconds(rows.iter().filter(|r| r.plug == *c), &[*c])
                    .into_iter()
                    .collect()
            })
            .collect();
        let mut node_bins = bins(&sensors, &wall, args.from, args.to, args.every);
        flag_psu_shares(&mut node_bins, &psus);
        if args.plot.is_some() {
            panels.push(panel(node, &sensors, &wall));
        }
        nodes.push(NodeComparison {
            node: node.clone(),
            recordings: recordings.len(),
            median_ratio: median_ratio(&node_bins),
            flagged_bins: node_bins.iter().filter(|b| !b.flag.is_empty()).count(),
            empty_bins: bin_count(args.from, args.to, args.every) - node_bins.len() as u64,
            wall_missing: read.archives_missing,
            bins: node_bins
                .into_iter()
                .map(|bin| BinReport {
                    start_utc: fmt(bin.start_unix_s),
                    end_utc: fmt(bin.end_unix_s),
                    bin,
                })
                .collect(),
        });
    }
    if let Some(path) = &args.plot {
        let chart = crate::plot::Chart {
            title: format!(
                "RAPL + NVML against the wall meter, {} to {}",
                crate::plot::local_label(args.from),
                crate::plot::local_label(args.to)
            ),
            panels,
        };
        let size = args
            .plot_size
            .unwrap_or_else(|| crate::plot::Size::default_for(chart.panels.len()));
        crate::plot::write(&chart, size, path)?;
        eprintln!("aipm-analyze: wrote {}", path.display());
    }
    match args.format {
        Format::Json => write_json(out, &nodes)?,
        Format::Csv => write_csv(&nodes, out)?,
        Format::Table => write_table(&nodes, out)?,
    }
    let flagged = nodes.iter().any(|n| n.flagged_bins > 0);
    Ok(if flagged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn panel(
    node: &str,
    sensors: &std::collections::BTreeMap<i64, crate::compare::SensorSecond>,
    wall: &std::collections::BTreeMap<i64, f64>,
) -> crate::plot::Panel {
    use crate::plot::Series;
    let seen = || sensors.iter().filter(|(_, v)| v.seen());
    let line = |name: &str, f: fn(&crate::compare::SensorSecond) -> f64| Series {
        name: name.into(),
        points: seen()
            .map(|(s, v)| (*s as f64 + 0.5, v.watts(f(v))))
            .collect(),
        dashed: false,
    };
    let mut series = vec![
        line("CPU packages", |v| v.cpu_j),
        line("DRAM", |v| v.dram_j),
        line("GPUs", |v| v.gpu_j),
        line("RAPL + NVML", |v| v.cpu_j + v.dram_j + v.gpu_j),
    ];
    series.retain(|s| s.points.iter().any(|(_, w)| *w > 0.0));
    series.push(Series {
        name: "wall (Omegawatt)".into(),
        points: wall.iter().map(|(s, w)| (*s as f64 + 0.5, *w)).collect(),
        dashed: true,
    });
    crate::plot::Panel {
        title: format!("{node}: whole node"),
        series,
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn write_table(nodes: &[NodeComparison], out: &mut impl Write) -> anyhow::Result<()> {
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "Node {}: {} recording(s); wall / (RAPL + NVML) usually {}; {} bin(s) flagged",
            n.node,
            n.recordings,
            opt(n.median_ratio, 2),
            n.flagged_bins
        )?;
        writeln!(
            out,
            "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>8} {:>6}  flag",
            "from (UTC)",
            "sensors",
            "wall",
            "CPU W",
            "DRAM W",
            "GPU W",
            "RAPL+NVML W",
            "wall W",
            "ratio"
        )?;
        for b in &n.bins {
            writeln!(
                out,
                "  {:<20} {:>7.0}% {:>7.0}% {:>8} {:>8} {:>8} {:>11} {:>8} {:>6}  {}",
                &b.start_utc[..19.min(b.start_utc.len())],
                b.bin.sensor_coverage * 100.0,
                b.bin.wall_coverage * 100.0,
                opt(b.bin.cpu_w, 1),
                opt(b.bin.dram_w, 1),
                opt(b.bin.gpu_w, 1),
                opt(b.bin.sensors_w, 1),
                opt(b.bin.wall_w, 1),
                opt(b.bin.ratio, 2),
                b.bin.flag
            )?;
        }
        if n.empty_bins > 0 {
            writeln!(
                out,
                "  {} bin(s) without any data (no recording, no wall data) not listed",
                n.empty_bins
            )?;
        }
        for m in &n.wall_missing {
            writeln!(out, "  wall archive missing: {m}")?;
        }
    }
    Ok(())
}

fn write_csv(nodes: &[NodeComparison], out: &mut impl Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "node",
        "start_utc",
        "end_utc",
        "sensor_coverage",
        "wall_coverage",
        "cpu_w",
        "dram_w",
        "gpu_w",
        "sensors_w",
        "wall_w",
        "ratio",
        "flag",
    ])?;
    let field = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for n in nodes {
        for b in &n.bins {
            w.write_record([
                n.node.clone(),
                b.start_utc.clone(),
                b.end_utc.clone(),
                format!("{:.4}", b.bin.sensor_coverage),
                format!("{:.4}", b.bin.wall_coverage),
                field(b.bin.cpu_w),
                field(b.bin.dram_w),
                field(b.bin.gpu_w),
                field(b.bin.sensors_w),
                field(b.bin.wall_w),
                field(b.bin.ratio),
                b.bin.flag.clone(),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}
