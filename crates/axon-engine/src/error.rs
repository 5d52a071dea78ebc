//! Errors of the engine's public API.

use axon_core::model::RunStatus;
use axon_core::validate::InvalidWorkflow;
use uuid::Uuid;

/// Why a run could not be started, resumed or finished.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The workflow failed validation; nothing ran.
    #[error(transparent)]
    Invalid(#[from] InvalidWorkflow),
    /// Some tasks can never be run by any agent of the pool; nothing ran.
    #[error("{}", .0.join("; "))]
    NoSuitableAgent(Vec<String>),
    /// The store failed; what was committed before stays for `resume`.
    #[error("store error")]
    Store(#[from] axon_store::StoreError),
    /// Resume or cancel named a run that does not exist.
    #[error("no run with id {0}")]
    NoSuchRun(Uuid),
    /// Resume found the run already finished.
    #[error("run {run_id} is already {status}; there is nothing to resume")]
    AlreadyFinished {
        /// The run.
        run_id: Uuid,
        /// Its final status.
        status: RunStatus,
    },
    /// Another live engine holds the run.
    #[error(
        "run {run_id} is being executed by pid {pid} on {host} (lease until {expires}); refusing to run it twice"
    )]
    Held {
        /// The run.
        run_id: Uuid,
        /// Holder's host.
        host: String,
        /// Holder's pid.
        pid: u32,
        /// Lease expiry, RFC 3339.
        expires: String,
    },
    /// Another engine took the run over while this one ran it (its lease lapsed).
    #[error("lost run {0} to another engine")]
    LostLease(Uuid),
    /// The stored workflow of a run could not be read again.
    #[error("the stored workflow of run {run_id} is unreadable: {reason}")]
    StoredWorkflow {
        /// The run.
        run_id: Uuid,
        /// What failed.
        reason: String,
    },
    /// The Cortex bridge (sessions, memory, tracking) could not be opened for the run;
    /// nothing ran.
    #[error("cannot set up the run's sessions: {0}")]
    Bridge(#[source] crate::cortex::BridgeError),
    /// A bug: the dispatcher stopped unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and its causes on one line, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
