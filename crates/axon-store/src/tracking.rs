//! Task tracking, the embedded stand-in for a Cortex server's: each run has one workflow record,
//! and each of its tasks one record linked to it, with a status, progress, assignee and note.
//! The engine writes them through [`Store::track`](crate::Store::track); a Cortex sync can
//! later read them back with [`Store::tracking`](crate::Store::tracking).

use uuid::Uuid;

/// A tracking record as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRecord {
    /// Assigned by the store.
    pub id: i64,
    /// The run.
    pub run_id: Uuid,
    /// The workflow record's id, for task records; `None` for the workflow record.
    pub parent_id: Option<i64>,
    /// The task, or `None` for the run's workflow record.
    pub task_id: Option<String>,
    /// What is tracked (the workflow's or the task's name).
    pub title: String,
    /// Free-form status (the engine uses task and run statuses: `running`, `succeeded`, ...).
    pub status: String,
    /// Progress, 0..=1, if reported.
    pub progress: Option<f64>,
    /// Who works on it (an agent name).
    pub assigned_to: Option<String>,
    /// A short note (the error of a failed task, say).
    pub note: Option<String>,
    /// When the record was created, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

/// One change to a tracking record, applied by [`Store::track`](crate::Store::track).
///
/// The record is created if missing. `title` and `status` always replace the stored ones;
/// `progress`, `assigned_to` and `note` replace them only when `Some` (so a progress report
/// does not clear the assignee).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackUpdate {
    /// The task, or `None` for the run's workflow record.
    pub task_id: Option<String>,
    /// What is tracked.
    pub title: String,
    /// The new status.
    pub status: String,
    /// New progress, 0..=1.
    pub progress: Option<f64>,
    /// New assignee.
    pub assigned_to: Option<String>,
    /// New note.
    pub note: Option<String>,
    /// When the change happened, ms since the Unix epoch.
    pub at_ms: i64,
    /// When the work it reports started (the task's latest attempt, or the run), if known:
    /// for durations. Not stored in tracking records.
    pub started_at_ms: Option<i64>,
}

impl TrackUpdate {
    /// An update of the run's workflow record.
    pub fn workflow(title: impl Into<String>, status: impl Into<String>, at_ms: i64) -> Self {
        Self {
            task_id: None,
            title: title.into(),
            status: status.into(),
            progress: None,
            assigned_to: None,
            note: None,
            at_ms,
            started_at_ms: None,
        }
    }

    /// An update of a task's record.
    pub fn task(
        task_id: impl Into<String>,
        title: impl Into<String>,
        status: impl Into<String>,
        at_ms: i64,
    ) -> Self {
        Self {
            task_id: Some(task_id.into()),
            ..Self::workflow(title, status, at_ms)
        }
    }
}
