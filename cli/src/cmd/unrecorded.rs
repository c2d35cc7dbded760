//! `aipm-analyze job ID` for a job aipm did not record (opted out, or run before aipm):
//! its window and nodes from Slurm's accounting, and the wall meter's energy over it.

use std::io::Write;

use serde::Serialize;

use crate::export::sacct::{one_job, AccountedJob};
use crate::output::{write_json, Format, Units};
use aipm_omegawatt::channels::ChannelMap;
use aipm_omegawatt::wall::{energy_in_window, node_power_seconds, WallSource};

#[derive(Debug, Serialize)]
pub struct UnrecordedReport {
    pub job: String,
    pub user: String,
    pub state: String,
    pub start_utc: Option<String>,
    pub end_utc: Option<String>,
    pub duration_s: Option<f64>,
    pub nodes: Vec<UnrecordedNode>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UnrecordedNode {
    pub node: String,
    /// The node's energy at the wall over the job's window (whole node: other jobs included).
    pub wall_energy_j: Option<f64>,
    pub wall_covered_s: Option<f64>,
    pub wall_missing: Vec<String>,
}

/// What to say about job `job`, which has no recording. `Err` carries the lines for stderr
/// when accounting does not know the job either.
pub fn report(
    job: &str,
    wall: Option<(&ChannelMap, &WallSource)>,
    rotation_hour: u32,
) -> anyhow::Result<Result<UnrecordedReport, String>> {
    let accounted = match one_job(job) {
        Ok(Some(a)) => a,
        Ok(None) => return Ok(Err("Slurm's accounting does not know it either".into())),
        Err(why) => return Ok(Err(format!("Slurm's accounting is not available ({why})"))),
    };
    let AccountedJob { job: j, nodes } = accounted;
    let fmt = aipm_recording::time::format_utc_s;
    let mut notes = vec![format!(
        "no aipm recording of this job (submitted without --energy-profile, or before aipm ran): window and nodes from Slurm's accounting; only the wall meter measures it, for the whole node"
    )];
    let mut out_nodes = Vec::new();
    for node in &nodes {
        let mut entry = UnrecordedNode {
            node: node.clone(),
            wall_energy_j: None,
            wall_covered_s: None,
            wall_missing: Vec::new(),
        };
        if let (Some((map, source)), Some(start), Some(end)) = (wall, j.start, j.end) {
            match map.node(node) {
                Ok(channels) => {
                    let (seconds, read) = node_power_seconds(
                        node,
                        channels,
                        source,
                        start,
                        end.max(start + 1),
                        rotation_hour,
                    )?;
                    let (energy, covered) =
                        energy_in_window(&seconds, start as u64 * 1000, end as u64 * 1000);
                    entry.wall_energy_j = Some(energy);
                    entry.wall_covered_s = Some(covered);
                    entry.wall_missing = read.archives_missing;
                }
                Err(e) => notes.push(format!("{node}: no wall data: {e}")),
            }
        }
        out_nodes.push(entry);
    }
    if j.end.is_none() {
        notes.push(format!("the job has not ended ({})", j.state));
    }
    Ok(Ok(UnrecordedReport {
        job: j.job,
        user: j.user,
        state: j.state,
        start_utc: j.start.map(fmt),
        end_utc: j.end.map(fmt),
        duration_s: j.start.zip(j.end).map(|(a, b)| (b - a) as f64),
        nodes: out_nodes,
        notes,
    }))
}

pub fn print(
    r: &UnrecordedReport,
    format: Format,
    units: Units,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Json => write_json(out, r)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "job",
                "user",
                "state",
                "node",
                "start_utc",
                "end_utc",
                "duration_s",
                "wall_energy_j",
                "wall_covered_s",
                "recorded",
            ])?;
            for n in &r.nodes {
                let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
                w.write_record([
                    r.job.clone(),
                    r.user.clone(),
                    r.state.clone(),
                    n.node.clone(),
                    r.start_utc.clone().unwrap_or_default(),
                    r.end_utc.clone().unwrap_or_default(),
                    opt(r.duration_s),
                    opt(n.wall_energy_j),
                    opt(n.wall_covered_s),
                    "no".into(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "Job {}, user {}, {} ({} node(s)), not recorded by aipm",
                r.job,
                r.user,
                r.state,
                r.nodes.len()
            )?;
            writeln!(
                out,
                "  Window        {} .. {}{}",
                r.start_utc.as_deref().unwrap_or("not started"),
                r.end_utc.as_deref().unwrap_or("not ended"),
                r.duration_s
                    .map(|d| format!("  ({d:.0} s)"))
                    .unwrap_or_default()
            )?;
            for n in &r.nodes {
                let wall = match (n.wall_energy_j, n.wall_covered_s) {
                    (Some(j), Some(c)) => {
                        format!("wall {} over {c:.0} s (the whole node)", units.energy(j))
                    }
                    _ => "no wall data (see --wall-map)".into(),
                };
                writeln!(out, "  Node {:<9} {wall}", n.node)?;
                for m in &n.wall_missing {
                    writeln!(out, "                wall archive missing: {m}")?;
                }
            }
            for (i, note) in r.notes.iter().enumerate() {
                let label = if i == 0 { "Notes" } else { "" };
                writeln!(out, "  {label:<13} {note}")?;
            }
        }
    }
    Ok(())
}
