//! The job's energy in Slurm's own accounting: a short summary in the job's `AdminComment`,
//! which `sacct -o AdminComment` shows (as Princeton's jobstats stores its summaries).

use std::process::Command;

use super::summary::JobSummary;

/// `aipm:v1 energy_wh=… cpu_wh=… dram_wh=… gpu_wh=… tag=exclusive [wall_wh=…]`: versioned,
/// key=value, short enough for a terminal column, and no characters that need quoting.
pub fn comment_text(s: &JobSummary) -> String {
    let wh = |j: f64| format!("{:.3}", j / 3600.0);
    let mut text = format!(
        "aipm:v1 energy_wh={} cpu_wh={} dram_wh={} gpu_wh={} tag={}",
        wh(s.total_j()),
        wh(s.cpu_j),
        wh(s.dram_j),
        wh(s.gpu_j),
        s.attribution
    );
    if let Some(w) = s.wall_j {
        text.push_str(&format!(" wall_wh={}", wh(w)));
    }
    text
}

/// Store `text` as the AdminComment of job `job_id` in slurmdbd, through `sacctmgr` (it
/// works for finished jobs; `scontrol update` only while slurmctld still holds the job).
/// `job_id` is the raw id that names the recording's directory (an array task's own id,
/// not `1234_5`): a metadata file's array ids cannot point the comment at another job.
pub fn set_admin_comment(job_id: u32, text: &str) -> anyhow::Result<()> {
    let job = job_id.to_string();
    let out = Command::new("sacctmgr")
        .args(["-i", "modify", "job", "where"])
        .arg(format!("jobid={job}"))
        .arg("set")
        .arg(format!("AdminComment={text}"))
        .output()
        .map_err(|e| anyhow::anyhow!("running sacctmgr: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stdout.contains("Nothing modified") {
        anyhow::bail!(
            "sacctmgr could not set the AdminComment of job {job}: {}",
            format!("{} {}", stderr.trim(), stdout.trim()).trim()
        );
    }
    Ok(())
}
