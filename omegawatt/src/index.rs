//! `omegawatt index`: the per-second cache of a directory of daily archives (years of
//! backlog), several archives at a time, skipping those already cached and unchanged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context as _;
use chrono::NaiveDate;

use super::cache::{self, DayEntry};
use super::days::parse_archive_name;

/// A daily archive found by its name.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveDay {
    pub path: PathBuf,
    pub port: String,
    pub date: NaiveDate,
}

#[derive(Debug)]
pub enum Outcome {
    Indexed(Box<DayEntry>),
    /// Cached from the same archive already.
    Current,
    Failed(String),
}

/// The archives of a directory, by date then port, and the files whose names are not
/// archive names (reported, not read).
pub fn find_archives(dir: &Path) -> anyhow::Result<(Vec<ArchiveDay>, Vec<PathBuf>)> {
    let mut days = Vec::new();
    let mut others = Vec::new();
    for item in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let item = item.with_context(|| format!("listing {}", dir.display()))?;
        let path = item.path();
        if !item.file_type()?.is_file() {
            continue;
        }
        match item.file_name().to_str().and_then(parse_archive_name) {
            Some((date, port)) => days.push(ArchiveDay { path, port, date }),
            None => others.push(path),
        }
    }
    days.sort_by(|a, b| (a.date, &a.port).cmp(&(b.date, &b.port)));
    others.sort();
    Ok((days, others))
}

/// Index `days` into `cache` with `jobs` workers (each reads an archive on two threads);
/// `done` is called as each archive finishes, in any order. Returns outcomes in `days` order.
pub fn index_all(
    days: &[ArchiveDay],
    cache: &Path,
    jobs: usize,
    force: bool,
    done: &(dyn Fn(&ArchiveDay, &Outcome) + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(days.len()).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(days.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(day) = days.get(i) else { break };
                let outcome = index_one(day, cache, force);
                done(day, &outcome);
                outcomes.lock().expect("no worker panics holding it")[i] = Some(outcome);
            });
        }
    });
    outcomes
        .into_inner()
        .expect("no worker panics holding it")
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not indexed (a worker stopped)".into())))
        .collect()
}

pub fn index_one(day: &ArchiveDay, cache: &Path, force: bool) -> Outcome {
    if !force && cache::is_current(cache, &day.port, day.date, &day.path) {
        return Outcome::Current;
    }
    match cache::index_archive(&day.path, cache, &day.port, day.date) {
        Ok(entry) => Outcome::Indexed(Box::new(entry)),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}
