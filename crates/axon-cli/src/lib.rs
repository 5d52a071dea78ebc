//! The `axon` command-line tool: argument parsing, rendering and exit codes. It holds no
//! domain logic; that lives in `axon-core`.
//!
//! Exit codes: 0 success, 1 invalid input, a failed check or a failed run, 2 usage error,
//! 130 cancelled.

mod cli;
mod commands;
mod cortex;
mod input;
mod output;
mod progress;
mod state;
mod summary;

use std::process::ExitCode;

pub use cli::Cli;

/// Exit status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything went well.
    Success,
    /// The input was invalid or a check failed.
    Invalid,
    /// A run ended with a failed or skipped task.
    Failed,
    /// A run was cancelled.
    Cancelled,
    /// The command line was wrong.
    Usage,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        match s {
            Status::Success => ExitCode::SUCCESS,
            Status::Invalid | Status::Failed => ExitCode::from(1),
            Status::Cancelled => ExitCode::from(130),
            Status::Usage => ExitCode::from(2),
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let db = cli.db.as_deref();
    let result = match &cli.command {
        cli::Command::Validate(args) => commands::validate::run(args),
        cli::Command::Plan(args) => commands::plan::run(args),
        cli::Command::Schema(args) => commands::schema::run(args),
        cli::Command::Run(args) => commands::run::run(args, db),
        cli::Command::Runs(args) => commands::runs::runs(args, db),
        cli::Command::Status(args) => commands::runs::status(args, db),
        cli::Command::Resume(args) => commands::run::resume(args, db),
        cli::Command::Cancel(args) => commands::cancel::cancel(args, db),
        cli::Command::Episodes(cli::EpisodesCommand::Search(args)) => {
            commands::episodes::search(args, db)
        }
        cli::Command::Cortex(cli::CortexCommand::Check(args)) => commands::cortex::check(args),
        cli::Command::Cortex(cli::CortexCommand::Sync(args)) => commands::cortex::sync(args, db),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axon: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
