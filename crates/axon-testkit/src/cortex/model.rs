//! The fake's records, spelled as the contract spells them on the wire (sections 4–6 of
//! `cortex-api.md`), and the snapshot tests inspect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A task's status (contract 4.1). Note `inprogress`: no underscore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// `pending`
    Pending,
    /// `inprogress`
    InProgress,
    /// `blocked`
    Blocked,
    /// `done`
    Done,
    /// `cancelled`
    Cancelled,
}

/// A task's priority (contract 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// `critical`
    Critical,
    /// `high`
    High,
    /// `medium`
    Medium,
    /// `low`
    Low,
}

/// `{spec_name, section}` (contract 4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecReference {
    /// The spec's name.
    pub spec_name: String,
    /// The section.
    pub section: String,
}

/// A Cortex task, exactly the contract's fields (4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Lowercase hyphenated UUID v4.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Priority,
    /// Assignees.
    pub assigned_to: Vec<String>,
    /// Estimate.
    pub estimated_hours: Option<f64>,
    /// Actual time.
    pub actual_hours: Option<f64>,
    /// Progress (no scale defined by the contract).
    pub progress: f64,
    /// Tags.
    pub tags: Vec<String>,
    /// Always `[]`: no REST call can change it.
    pub dependencies: Vec<String>,
    /// Spec reference.
    pub spec_reference: Option<SpecReference>,
    /// Completion note.
    pub completion_note: Option<String>,
    /// RFC 3339, `Z`.
    pub created_at: String,
    /// RFC 3339, `Z`.
    pub updated_at: String,
}

/// A session's status (contract 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// `active`: set on create.
    Active,
    /// `paused`: never set through REST.
    Paused,
    /// `completed`: set by a merge that had changes.
    Completed,
    /// `failed`: never set through REST.
    Failed,
}

/// A Cortex session as the REST API returns it (contract 5): no `workspace_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub agent_type: String,
    /// Status.
    pub status: SessionStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A session with what the fake keeps besides its wire shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The wire object.
    pub session: Session,
    /// The `workspace_id` it was created with (never returned by the API).
    pub workspace_id: String,
}

/// A workspace (contract 5, `POST /api/v1/workspaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Not specified by the contract; the fake says `local`.
    pub source_type: String,
    /// Not specified by the contract; the fake says `ws_<id without hyphens>`.
    pub namespace: String,
    /// As sent.
    pub source_path: Option<String>,
    /// Always false here.
    pub read_only: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Merge strategies (contract 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeStrategy {
    /// `auto` (the default): conflicting files are skipped, status `partial`.
    #[default]
    Auto,
    /// `manual`: an unresolved conflict is a 409 `CONFLICT`.
    Manual,
    /// `theirs`: conflicts count as resolved.
    Theirs,
    /// `mine`: conflicting files are skipped.
    Mine,
}

/// A merge's outcome (contract 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStatus {
    /// `success`
    Success,
    /// `partial`: a conflict was detected.
    Partial,
    /// `no_changes`
    NoChanges,
}

/// `data` of a merge (contract 5.5). No list of conflicting files, as in the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeResult {
    /// Fresh UUID per call, not stored.
    pub merge_id: String,
    /// Outcome.
    pub status: MergeStatus,
    /// Files written or deleted.
    pub changes_merged: u64,
    /// Conflicts covered by `conflict_resolution` or by `theirs`.
    pub conflicts_resolved: u64,
    /// Hard-coded: 1, or 0 for `no_changes`.
    pub new_version: u64,
}

/// One merge call the fake answered (with 200 or 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecord {
    /// The session merged.
    pub session_id: String,
    /// The strategy asked for.
    pub strategy: MergeStrategy,
    /// The `conflict_resolution` map sent.
    pub conflict_resolution: BTreeMap<String, String>,
    /// The answer: `Ok` for 200, `Err(message)` for the 409.
    pub outcome: Result<MergeResult, String>,
}

/// What a session's merge finds (the fake has no files, so tests script it).
///
/// The real server counts a *conflict* when a file the session modified no longer exists in
/// the workspace (contract 5.5); the fake takes the list of such paths from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChanges {
    /// Files the session modified that merge cleanly.
    pub modified: u64,
    /// Paths of modified files that conflict.
    pub conflicts: Vec<String>,
}

/// A memory episode as the REST API returns it (contract 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The stored `cortex_id`.
    pub id: String,
    /// The task description (what search matches against).
    pub content: String,
    /// `task`, `refactor`, `bugfix`, `feature` or `exploration`.
    pub episode_type: String,
    /// Mean of the success metrics; 0.5 when absent.
    pub importance: f64,
    /// RFC 3339.
    pub created_at: String,
}

impl Episode {
    /// An episode with importance 0.5 (the server's value when there are no metrics).
    pub fn new(id: impl Into<String>, content: impl Into<String>, episode_type: &str) -> Self {
        Self {
            id: id.into(),
            content: content.into(),
            episode_type: episode_type.to_owned(),
            importance: 0.5,
            created_at: super::now(),
        }
    }
}

/// One HTTP request the fake received, recorded before any fault or auth check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header, lowercase name and lossy UTF-8 value, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as lossy text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A copy of everything the fake holds, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Live tasks, oldest first.
    pub tasks: Vec<Task>,
    /// Ids of tasks deleted (each DELETE of a well-formed id, in order, even unknown ones).
    pub deleted_tasks: Vec<String>,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionRecord>,
    /// Ids of sessions deleted (each DELETE of a well-formed id, in order, even unknown ones).
    pub deleted_sessions: Vec<String>,
    /// Every merge answered, in order.
    pub merges: Vec<MergeRecord>,
    /// Workspaces, oldest first.
    pub workspaces: Vec<Workspace>,
    /// Every request received, in order (including refused-by-fault and rejected ones).
    pub requests: Vec<RecordedRequest>,
}

impl Snapshot {
    /// The live task `id`.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The live session `id`.
    pub fn session(&self, id: &str) -> Option<&SessionRecord> {
        self.sessions.iter().find(|s| s.session.id == id)
    }
}
