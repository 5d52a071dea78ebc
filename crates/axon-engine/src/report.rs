//! What a finished run looks like to its caller.

use axon_core::model::{ErrorType, RunStatus, TaskStatus};
use axon_store::TaskRecord;
use serde::Serialize;
use uuid::Uuid;

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run.
    pub run_id: Uuid,
    /// The workflow's id.
    pub workflow_id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// Final status.
    pub status: RunStatus,
    /// When the run was submitted, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
    /// Every task, in workflow order.
    pub tasks: Vec<TaskReport>,
    /// Counts of this engine's part of the run.
    pub totals: RunTotals,
    /// What could not be done once the tasks were over (for example `merge_into` refused
    /// because the branch is checked out with local changes); the run's status is the
    /// tasks', but a caller that asked for it should treat this as a failure.
    pub finish_error: Option<String>,
}

/// One task's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// Task id.
    pub id: String,
    /// Task name.
    pub name: String,
    /// Final status.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Agent of the last attempt.
    pub agent: Option<String>,
    /// Start of the last attempt, ms since the Unix epoch.
    pub started_at_ms: Option<i64>,
    /// When it reached its final status.
    pub finished_at_ms: Option<i64>,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// Failure class.
    pub error_kind: Option<ErrorType>,
    /// Its output.
    pub output: Option<serde_json::Value>,
    /// Last lines of the agent's log (from this engine's attempts).
    pub log_tail: Vec<String>,
}

impl TaskReport {
    /// A report from the stored state.
    pub fn from_record(rec: TaskRecord, log_tail: Vec<String>) -> Self {
        Self {
            id: rec.task_id,
            name: rec.name,
            status: rec.status,
            attempts: rec.attempts,
            agent: rec.agent,
            started_at_ms: rec.started_at_ms,
            finished_at_ms: rec.finished_at_ms,
            error: rec.error,
            error_kind: rec.error_kind,
            output: rec.output,
            log_tail,
        }
    }
}

/// Counters of a run (also exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunTotals {
    /// Tasks that succeeded.
    pub succeeded: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Tasks skipped because a prerequisite did not succeed.
    pub skipped: u32,
    /// Tasks cancelled.
    pub cancelled: u32,
    /// Attempts started by this engine.
    pub attempts: u32,
    /// Retries scheduled by this engine.
    pub retries: u32,
    /// Sum of the time tasks waited for an agent, in seconds.
    pub queue_wait_secs: f64,
}
