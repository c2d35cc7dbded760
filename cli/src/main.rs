//! `aipm-analyze`: reports on aipm recordings.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use aipm_analyze::{run, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // `aipm-analyze job 1 | head` must not end in an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("aipm-analyze: {e:#}");
            ExitCode::from(2)
        }
    }
}
