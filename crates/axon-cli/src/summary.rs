//! Run summaries: the JSON object of `run --json` / `status --json`, and the human table.

use std::fmt::Write as _;

use axon_core::model::{RunStatus, TaskStatus};
use axon_engine::report::{RunTotals, TaskReport};
use axon_engine::time::rfc3339;
use serde::Serialize;
use uuid::Uuid;

/// A run as shown to users.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// Run id.
    pub run_id: Uuid,
    /// Workflow id and name.
    pub workflow: WorkflowView,
    /// Run status (with `interrupted` for runs whose engine died).
    pub status: RunStatus,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, or null while it runs.
    pub finished_at: Option<String>,
    /// Seconds from start to finish (or to now).
    pub duration_secs: f64,
    /// Every task, in workflow order.
    pub tasks: Vec<TaskView>,
    /// Totals (this engine's attempts and retries; task counts of the whole run).
    pub metrics: Option<RunTotals>,
    /// The run's tracking records (`status` only): the workflow record, then one subtask
    /// per task linked to it by `parent_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Vec<TrackView>>,
    /// The Cortex server the run is tracked on, and what it still owes it (`status` only;
    /// absent for runs without Cortex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cortex: Option<CortexView>,
    /// What failed after the tasks were over (e.g. `--merge-into` refused); absent if nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_error: Option<String>,
}

/// A run's Cortex server and its delivery state, as shown to users.
#[derive(Debug, Serialize)]
pub struct CortexView {
    /// The server's base URL.
    pub server: String,
    /// The Cortex id of the run's workflow task, once created there.
    pub workflow_task_id: Option<String>,
    /// Tracking updates not delivered yet.
    pub undelivered: u64,
    /// Of those, how many failed at least once.
    pub failing: u64,
    /// Why the next one failed last, if it did.
    pub last_error: Option<String>,
    /// Since when the oldest undelivered one waits (RFC 3339).
    pub oldest_undelivered_at: Option<String>,
    /// Cortex sessions opened and not deleted yet (a crashed engine's; `axon cortex sync`
    /// deletes them).
    pub open_sessions: u64,
}

/// A tracking record as shown to users.
#[derive(Debug, Serialize)]
pub struct TrackView {
    /// Record id.
    pub id: i64,
    /// The workflow record's id (null for the workflow record itself).
    pub parent_id: Option<i64>,
    /// The task (null for the workflow record).
    pub task_id: Option<String>,
    /// Workflow or task name.
    pub title: String,
    /// Status as last tracked.
    pub status: String,
    /// Progress, 0..=1.
    pub progress: Option<f64>,
    /// The agent working on it.
    pub assigned_to: Option<String>,
    /// Error or note.
    pub note: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl TrackView {
    /// The view of a stored record.
    pub fn of(r: axon_store::TrackRecord) -> Self {
        Self {
            id: r.id,
            parent_id: r.parent_id,
            task_id: r.task_id,
            title: r.title,
            status: r.status,
            progress: r.progress,
            assigned_to: r.assigned_to,
            note: r.note,
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

/// Workflow id and name.
#[derive(Debug, Serialize)]
pub struct WorkflowView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// A task as shown to users.
#[derive(Debug, Serialize)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Task name.
    pub name: String,
    /// Status.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Agent of the last attempt.
    pub agent: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// Seconds of the last attempt.
    pub duration_secs: Option<f64>,
    /// What went wrong, or null.
    pub error: Option<String>,
    /// The class of that failure (`timeout`, `merge_conflict`, `scope_violation`, ...), or
    /// null.
    pub error_kind: Option<axon_core::model::ErrorType>,
    /// The task's output, or null.
    pub output: Option<serde_json::Value>,
    /// Last lines of the agent's log (failed tasks, this engine's attempts only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl TaskView {
    /// The view of a task report.
    pub fn from_report(t: &TaskReport) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            status: t.status,
            attempts: t.attempts,
            agent: t.agent.clone(),
            started_at: t.started_at_ms.map(rfc3339),
            finished_at: t.finished_at_ms.map(rfc3339),
            duration_secs: match (t.started_at_ms, t.finished_at_ms) {
                (Some(s), Some(f)) if f >= s && t.attempts > 0 => Some((f - s) as f64 / 1000.0),
                _ => None,
            },
            error: t.error.clone(),
            error_kind: t.error.as_ref().and(t.error_kind),
            output: t.output.clone(),
            log_tail: if t.status == TaskStatus::Failed {
                t.log_tail.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `1.5s`, `2m 3s`.
pub fn secs_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        axon_core::duration::format(std::time::Duration::from_secs_f64(secs.max(0.0)))
    }
}

/// The human summary of a run: one line per task, failures with their log tail, a total.
pub fn human(view: &RunView) -> String {
    let mut out = String::new();
    let idw = view
        .tasks
        .iter()
        .map(|t| t.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let agw = view
        .tasks
        .iter()
        .filter_map(|t| t.agent.as_ref().map(String::len))
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<idw$}  {:<9}  {:>8}  {:<agw$}  {:>8}  error",
        "task", "status", "attempts", "agent", "time"
    );
    for t in &view.tasks {
        let line = format!(
            "{:<idw$}  {:<9}  {:>8}  {:<agw$}  {:>8}  {}",
            t.id,
            t.status.as_str(),
            t.attempts,
            t.agent.as_deref().unwrap_or("-"),
            t.duration_secs.map_or_else(|| "-".to_owned(), secs_text),
            t.error.as_deref().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for t in view.tasks.iter().filter(|t| !t.log_tail.is_empty()) {
        let _ = writeln!(out, "\nlast lines of {}'s log:", t.id);
        for l in &t.log_tail {
            let _ = writeln!(out, "  | {l}");
        }
    }
    let mut counts: Vec<(TaskStatus, usize)> = Vec::new();
    for t in &view.tasks {
        match counts.iter_mut().find(|(s, _)| *s == t.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.status, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(
        out,
        "\nrun {} {} in {} ({})",
        view.run_id,
        view.status,
        secs_text(view.duration_secs),
        counts.join(", ")
    );
    if view.status == RunStatus::Interrupted {
        let _ = writeln!(
            out,
            "continue an interrupted run with: axon resume {}",
            view.run_id
        );
    }
    out
}
