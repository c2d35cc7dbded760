//! `aipm-analyze` as a library, so tests can call the commands directly.
#![forbid(unsafe_code)]

pub mod cmd;
pub mod compare;
pub mod export;
pub mod legacy;
pub mod output;
pub mod par;
pub mod plot;
pub mod power;
pub mod report;
pub mod spool;
pub mod system_user;
pub mod window;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Per-job energy reports from aipm recordings.
///
/// Jobs submitted with `--energy-profile` (or every job, where the admin enabled it) are
/// recorded on each of their nodes; this tool reads the recordings back.
#[derive(Debug, Parser)]
#[command(name = "aipm-analyze", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Job(cmd::job::Args),
    Jobs(cmd::jobs::Args),
    Compare(cmd::compare::Args),
    Report(cmd::report::Args),
    Record(cmd::record::Args),
    Omegawatt(cmd::omegawatt::Args),
    Simulate(cmd::simulate::Args),
    Doctor(cmd::doctor::Args),
    Export(cmd::export::Args),
    SlurmComment(cmd::slurm_comment::Args),
}

/// Run a command; `Ok` carries the exit code (1 when nothing was found).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Job(args) => cmd::job::run(args, &mut stdout),
        Command::Jobs(args) => cmd::jobs::run(args, &mut stdout),
        Command::Compare(args) => cmd::compare::run(args, &mut stdout),
        Command::Report(args) => cmd::report::run(args, &mut stdout),
        Command::Record(args) => cmd::record::run(args, &mut stdout),
        Command::Omegawatt(args) => cmd::omegawatt::run(args, &mut stdout),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Doctor(args) => cmd::doctor::run(args, &mut stdout),
        Command::Export(args) => cmd::export::run(args, &mut stdout),
        Command::SlurmComment(args) => cmd::slurm_comment::run(args, &mut stdout),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the whole command tree (unique names, valid defaults): a
    /// mistake there is a panic at the first run of the command, not at build time.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
