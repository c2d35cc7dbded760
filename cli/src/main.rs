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
            let broken_pipe =
                |kind: Option<std::io::ErrorKind>| kind == Some(std::io::ErrorKind::BrokenPipe);
            if e.chain().any(|c| {
                broken_pipe(c.downcast_ref::<std::io::Error>().map(|io| io.kind()))
                    || broken_pipe(
                        c.downcast_ref::<serde_json::Error>()
                            .and_then(|j| j.io_error_kind()),
                    )
                    || broken_pipe(c.downcast_ref::<csv::Error>().and_then(|c| match c.kind() {
                        csv::ErrorKind::Io(io) => Some(io.kind()),
                        _ => None,
                    }))
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("aipm-analyze: {e:#}");
            ExitCode::from(2)
        }
    }
}
