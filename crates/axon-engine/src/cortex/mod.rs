//! The spec's `CortexBridge`: sessions, merge-back, memory and task tracking, behind a trait.
//!
//! The engine calls a bridge at fixed moments of a run:
//!
//! - when the run starts or resumes, [`CortexBridge::open_run`] (the integration branch, the
//!   tracking records), which gives a [`RunBridge`] for the rest of the run;
//! - before each attempt, [`CortexBridge::search_episodes`] for the task's name (the agent's
//!   `context`) and [`RunBridge::create_session`] (the attempt's working directory);
//! - after a successful attempt, [`RunBridge::seal_session`] (scope check and commit) and, once
//!   the engine has made the success durable, [`RunBridge::merge_session`];
//! - after every attempt, whatever happened, [`RunBridge::close_session`];
//! - as tasks change, [`RunBridge::track`], off the dispatcher's hot path;
//! - when the run ends, [`RunBridge::close_run`].
//!
//! Failures are [`BridgeError`]s with an [`ErrorType`]: transient ones (`network`,
//! `service_unavailable`: a busy repository or database) fail the attempt with that kind, so the
//! task's retry policy retries it; the others (`merge_conflict`, `scope_violation`,
//! `system_error`) fail the task with the bridge's message. A bridge never holds engine state:
//! the store does, so a bridge outage loses nothing.
//!
//! [`LocalCortex`] is the embedded implementation (git worktrees, the store's episodes and
//! tracking tables). [`HttpCortex`] adds a remote Cortex server on top of it, spoken to with
//! the [`http`] client: tracking through a durable outbox, a Cortex session per attempt, and
//! Cortex memory in the agents' context.

pub mod http;
mod local;
mod remote;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axon_core::model::{ErrorType, SessionScope, Workflow};
use axon_store::{NewOutboxItem, TrackUpdate};
use uuid::Uuid;

use crate::agent::{AttemptError, CortexAccess};

pub use local::LocalCortex;
pub use remote::{
    CortexConfig, CortexRoles, DeliveryReport, HttpCortex, PROGRESS_EVERY, RunDelivery,
    UPDATE_SETTLE, deliver_backlog,
};

/// A bridge operation that failed, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BridgeError {
    /// What kind of failure it is (decides whether the attempt is retried).
    pub kind: ErrorType,
    /// What happened, for people.
    pub message: String,
}

impl BridgeError {
    /// A failure of class `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorType::Network | ErrorType::ServiceUnavailable | ErrorType::Timeout
        )
    }
}

impl From<BridgeError> for AttemptError {
    fn from(e: BridgeError) -> Self {
        AttemptError::failed(e.kind, e.message)
    }
}

/// The run a bridge is opened for.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run.
    pub run_id: Uuid,
    /// The workflow's name (the title of its tracking record).
    pub workflow_name: String,
    /// Every task: id and name, in workflow order (their tracking records).
    pub tasks: Vec<(String, String)>,
    /// The whole workflow (descriptions, priorities, types, estimates: what a remote tracker
    /// shows).
    pub workflow: Arc<Workflow>,
    /// The length of the workflow's critical path (its estimated duration).
    pub estimated: Duration,
    /// Where tasks work.
    pub workspace: PathBuf,
    /// Whether the run is resumed (its integration branch and records exist).
    pub resumed: bool,
}

/// Episodes for an agent's `context`, and what the user should hear about the search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The episodes, best first, as the JSON objects agents receive.
    pub episodes: Vec<serde_json::Value>,
    /// A degradation worth telling the user once (a remote memory search failed, so the
    /// context holds local episodes only).
    pub warning: Option<String>,
}

/// Where one attempt works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The task.
    pub task_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The attempt's working directory (its worktree, or the workspace without isolation).
    pub dir: PathBuf,
    /// Whether the directory is the attempt's own (changes are merged back), or the shared
    /// workspace (nothing to merge).
    pub isolated: bool,
    /// The commit the session was cut from, when the bridge uses git.
    pub base: Option<String>,
    /// The attempt's session on a Cortex server, if the bridge opened one.
    pub cortex: Option<Arc<CortexAccess>>,
}

/// What the bridge wants the user to know about a run, once (no isolation, a dirty working
/// tree, where the integration branch is).
pub type Notices = Vec<String>;

/// A memory and session service: the embedded [`LocalCortex`], or a remote Cortex server.
#[async_trait]
pub trait CortexBridge: Send + Sync + 'static {
    /// Prepares a run (or a resumed one): its integration branch, its tracking records.
    async fn open_run(&self, run: &RunInfo) -> Result<Arc<dyn RunBridge>, BridgeError>;

    /// Past episodes for `query` (a task's name), best first, at most `limit`, as the JSON
    /// objects agents receive as `context`.
    async fn search_episodes(&self, query: &str, limit: u32) -> Result<Context, BridgeError>;
}

/// A bridge opened for one run.
#[async_trait]
pub trait RunBridge: Send + Sync + 'static {
    /// What the user should be told about this run's sessions, once, at its start.
    fn notices(&self) -> Notices;

    /// A fresh working directory for one attempt (cut from the integration branch's tip).
    async fn create_session(&self, task_id: &str, attempt: u32) -> Result<Session, BridgeError>;

    /// After a successful attempt: checks its changes against `scope` (a
    /// `scope_violation` names the offending files) and records them (a commit); returns
    /// whether there is anything to merge.
    async fn seal_session(
        &self,
        session: &Session,
        scope: &SessionScope,
    ) -> Result<bool, BridgeError>;

    /// Merges a sealed session into the run's integration branch (merges of a run never
    /// interleave, and a session merged before is not merged twice). A conflict is a
    /// `merge_conflict` naming the files.
    async fn merge_session(&self, session: &Session) -> Result<(), BridgeError>;

    /// Frees the session's directory, or keeps it for inspection when `keep` (a conflict or a
    /// scope violation). What proves a merge (a git branch) may stay until
    /// [`RunBridge::repair`] at the end of the run. Never fails: problems are logged.
    async fn close_session(&self, session: &Session, keep: bool);

    /// After a crash: merges the sealed session of this attempt if it was not merged yet.
    async fn recover_merge(&self, task_id: &str, attempt: u32) -> Result<(), BridgeError>;

    /// Removes every session of the run except those `keep` names: after a crash (what a
    /// dead engine left), and when the run ends (once every outcome is recorded).
    async fn repair(&self, keep: &[(String, u32)]) -> Result<(), BridgeError>;

    /// Tracking calls to enqueue in the store's outbox in the same transaction as the task
    /// states `updates` report (called on the dispatcher's hot path, just before each commit:
    /// it must be quick and must not block). A bridge that delivers tracking through the
    /// outbox returns them here; the default, none.
    fn outbox(&self, updates: &[TrackUpdate]) -> Vec<NewOutboxItem> {
        let _ = updates;
        Vec::new()
    }

    /// Applies tracking changes (called off the dispatcher's hot path, in order, once they
    /// are committed).
    async fn track(&self, updates: Vec<TrackUpdate>) -> Result<(), BridgeError>;

    /// The run is over and its last tracking changes are committed: delivers what it can
    /// of them within a short time, and says what is left undelivered. Never fails.
    async fn drain(&self) -> Notices {
        Notices::new()
    }

    /// The run is over: brings `merge_into` (if any) up to the integration branch when the run
    /// succeeded, and cleans up. Returns what to tell the user.
    async fn close_run(
        &self,
        succeeded: bool,
        merge_into: Option<&str>,
    ) -> Result<Notices, BridgeError>;
}
