//! The columns of a user's CSV: aipm's own (units in the header) or the Lab IA's exact layout.

use chrono::TimeZone;

use super::summary::JobSummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// aipm's columns, units in their names (Wh, %, GiB), the attribution tag and the wall.
    Aipm,
    /// The Lab IA's `append_summary_last_jobs.py` header, for existing spreadsheets.
    Labia,
}

pub const AIPM_HEADER: &[&str] = &[
    "job",
    "job_name",
    "user",
    "state",
    "nodes",
    "start_utc",
    "end_utc",
    "duration_s",
    "cpus",
    "energy_Wh",
    "cpu_Wh",
    "dram_Wh",
    "gpu_Wh",
    "gpus",
    "gpu_util_%",
    "gpu_mem_peak_GiB",
    "cpu_usage_%",
    "mem_peak_GiB",
    "attribution",
    "wall_Wh",
    "wall",
    "emissions_gCO2e",
    "notes",
];

/// Exactly the Lab IA's header, double space included.
pub const LABIA_HEADER: &[&str] = &[
    "node name",
    "job_id",
    "start date",
    "Total Duration (sec)",
    "GPU Consumption  (kWH)",
    "Avg. GPU RAM USAGE (Gb)",
    "GPU SM Usage (%)",
    "CPU Consumption (kWH)",
    "Avg. CPU RAM USAGE (Gb)",
    "CPU usage (%)",
];

/// Where the wall energy of a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wall {
    /// No wall meter asked for (`--wall-map`).
    NotAsked,
    Complete,
    /// Still missing after the grace period: exported without it.
    Missing,
}

/// What a row holds besides the recording: Slurm's view and the export's settings.
pub struct RowContext<'a> {
    pub state: &'a str,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub wall: Wall,
    pub g_co2e_per_j: f64,
}

impl Layout {
    pub fn header(self) -> &'static [&'static str] {
        match self {
            Layout::Aipm => AIPM_HEADER,
            Layout::Labia => LABIA_HEADER,
        }
    }

    /// The column that identifies a job, for finding rows already written.
    pub fn job_column(self) -> usize {
        match self {
            Layout::Aipm => 0,
            Layout::Labia => 1,
        }
    }

    pub fn row(self, s: &JobSummary, cx: &RowContext) -> Vec<String> {
        let wh = |j: f64| format!("{:.4}", j / 3600.0);
        let gib = |b: f64| format!("{:.3}", b / 1024f64.powi(3));
        let opt = |v: Option<String>| v.unwrap_or_default();
        let duration_s = cx
            .end_ms
            .map_or(0.0, |e| e.saturating_sub(cx.start_ms) as f64 / 1000.0);
        match self {
            Layout::Aipm => vec![
                s.job.clone(),
                clean(s.name.as_deref().unwrap_or("")),
                clean(&s.user),
                clean(cx.state),
                clean(&s.nodes.join(",")),
                aipm_recording::time::format_utc(cx.start_ms),
                opt(cx.end_ms.map(aipm_recording::time::format_utc)),
                format!("{duration_s:.1}"),
                opt(s.cpus.map(|c| c.to_string())),
                wh(s.total_j()),
                wh(s.cpu_j),
                wh(s.dram_j),
                wh(s.gpu_j),
                s.gpus.to_string(),
                opt(s.gpu_util_pct.map(|p| format!("{p:.1}"))),
                opt(s.gpu_mem_peak_bytes.map(|b| gib(b as f64))),
                opt(s.cpu_usage_pct.map(|p| format!("{p:.1}"))),
                opt(s.mem_peak_bytes.map(|b| gib(b as f64))),
                s.attribution.to_string(),
                opt(s.wall_j.filter(|_| cx.wall == Wall::Complete).map(wh)),
                match cx.wall {
                    Wall::NotAsked => "",
                    Wall::Complete => "complete",
                    Wall::Missing => "missing",
                }
                .to_string(),
                format!("{:.3}", s.total_j() * cx.g_co2e_per_j),
                clean(&s.notes.join("; ")),
            ],
            // The Lab IA's columns with what their labels say: kWh in the kWh columns, percent
            // (not fractions) in the % columns; memory as their files wrote it (`1.7GiB`).
            Layout::Labia => {
                let kwh = |j: f64| format!("{:.6}", j / 3.6e6);
                let human = |b: f64| format!("{:.1}GiB", b / 1024f64.powi(3));
                vec![
                    clean(&s.nodes.join(",")),
                    s.job.clone(),
                    local_iso(cx.start_ms),
                    format!("{duration_s:.1}"),
                    kwh(s.gpu_j),
                    human(s.gpu_mem_peak_bytes.unwrap_or(0) as f64),
                    format!("{:.1}", s.gpu_util_pct.unwrap_or(0.0)),
                    kwh(s.cpu_j + s.dram_j),
                    human(s.mem_mean_bytes.unwrap_or(0.0)),
                    format!("{:.1}", s.cpu_usage_pct.unwrap_or(0.0)),
                ]
            }
        }
    }
}

/// The Lab IA's start date: local time, ISO, no zone, no fraction.
fn local_iso(unix_ms: u64) -> String {
    chrono::Local
        .timestamp_millis_opt(unix_ms as i64)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A text cell: one row is one line (control characters, a newline in a job name, become
/// spaces) and no cell runs as a spreadsheet formula.
fn clean(text: &str) -> String {
    let formula_safe = crate::output::spreadsheet_text(text);
    formula_safe
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
