//! Axon's runtime: runs validated workflows on a pool of agents.
//!
//! - [`agent`]: the `Agent` trait, in-process agents ([`agent::FnAgent`]), spawned or polled
//!   by the dispatcher itself ([`agent::Execution`]).
//! - [`command`]: the command agent (any program, DESIGN.md's protocol).
//! - [`pool`]: the agent pool (capabilities, free slots and resources, statistics).
//! - [`bus`]: typed events for subscribers.
//! - `run` (private): the dispatcher, the single owner of a run's state; eager dispatch,
//!   retries with backoff, timeouts, cancellation, failure policies, group commit;
//!   `metrics` (private): the metrics a run records.
//! - [`engine`]: start, resume and cancel runs; [`lease`]: who holds a run.
//! - [`retry`]: retry delays (backon's exponential backoff over the task's policy).
//! - [`session`]: git worktree sessions, scope checks, merge-back (the git CLI).
//! - [`cortex`]: the spec's `CortexBridge` (sessions, episodes as context, tracking) and
//!   [`cortex::LocalCortex`], the embedded implementation.
//!
//! Data flows one way: a validated [`axon_core::Workflow`] and its plan go in; transitions
//! are committed to the [`axon_store::Store`] and then acted on and published on the
//! [`bus::EventBus`]. Time comes only from `tokio::time`.
//!
//! See [`engine::Engine`] for an example.

pub mod agent;
pub mod bus;
pub mod command;
pub mod cortex;
pub mod engine;
pub mod error;
pub mod lease;
mod metrics;
mod os;
pub mod pool;
pub mod report;
pub mod retry;
mod run;
pub mod session;
pub mod time;

pub use engine::{Engine, RunHandle, RunOptions, RunSource};
pub use error::EngineError;
pub use report::{RunReport, RunTotals, TaskReport};

/// Whether a process with this pid is alive on this host.
pub fn pid_alive(pid: u32) -> bool {
    os::pid_alive(pid)
}

/// Kills the process group of agent process `pid` if it still is the agent of `task_id` in
/// `run_id` (checked from its environment, so a reused pid is left alone). Returns whether it
/// did. For stopping agents when the engine cannot (e.g. exiting at once on a second Ctrl-C).
pub fn kill_agent(pid: u32, run_id: uuid::Uuid, task_id: &str) -> bool {
    os::stop_stale_agent(pid, run_id, task_id)
}
