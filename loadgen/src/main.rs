//! `loadgen` command-line entry point. Exit codes: 0 pass, 1 the run failed its verdict
//! (mismatches or unanswered requests), 2 a usage or setup error.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = loadgen::cli::Cli::parse();
    match loadgen::commands::execute(cli.command) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
