//! The `axon` binary: parses arguments, runs the command, maps the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = axon_cli::Cli::parse();
    axon_cli::run(cli)
}
