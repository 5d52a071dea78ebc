//! Request and response bodies of the Cortex `/api/v1` routes Axon uses, spelled as the
//! contract (`../shared/cortex-api.md`) spells them.
//!
//! Enums are closed: a value the contract does not list (`in_progress`, `failed`, …) fails
//! decoding with a [`CortexError::Contract`](super::CortexError::Contract), never a panic and
//! never a silent default. Unknown *fields* are ignored, so a server that adds fields still works.
//! Timestamps stay RFC 3339 strings: Axon only stores and shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_newtype!(
    /// A Cortex task's id (a UUID string assigned by the server).
    CortexTaskId
);
id_newtype!(
    /// A Cortex session's id (a UUID string assigned by the server).
    SessionId
);
id_newtype!(
    /// A Cortex workspace's id (a UUID string assigned by the server).
    WorkspaceId
);

// ---- health (contract 7a) ----

/// `data.status` of `/api/v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// `healthy`
    Healthy,
    /// `unhealthy` (the database probe failed; the HTTP status is still 200)
    Unhealthy,
}

/// `data` of `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Whether the server is usable: check this, not the HTTP status.
    pub status: HealthStatus,
    /// The server's version.
    #[serde(default)]
    pub version: String,
    /// Seconds since the server started.
    #[serde(default)]
    pub uptime_seconds: u64,
    /// The database probe.
    #[serde(default)]
    pub database: Option<DatabaseHealth>,
}

/// `data.database` of `/api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseHealth {
    /// Whether a connection could be acquired (500 ms probe).
    pub connected: bool,
    /// How long the probe took.
    #[serde(default)]
    pub response_time_ms: u64,
}

// ---- tasks (contract 4) ----

/// A Cortex task's status. Note `inprogress`: no underscore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl TaskStatus {
    /// The wire spelling (also the `status` query value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "inprogress",
            Self::Blocked => "blocked",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A Cortex task's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// `critical`
    Critical,
    /// `high`
    High,
    /// `medium` (the server's default)
    Medium,
    /// `low`
    Low,
}

impl Priority {
    /// The wire spelling (also the `priority` query value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// `{spec_name, section}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecReference {
    /// The spec's name.
    pub spec_name: String,
    /// The section.
    pub section: String,
}

/// A Cortex task (contract 4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Assigned by the server.
    pub id: CortexTaskId,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Priority,
    /// Assignees.
    #[serde(default)]
    pub assigned_to: Vec<String>,
    /// Estimate.
    #[serde(default)]
    pub estimated_hours: Option<f64>,
    /// Time spent.
    #[serde(default)]
    pub actual_hours: Option<f64>,
    /// Progress; the server defines no scale (Axon sends 0.0–1.0).
    #[serde(default)]
    pub progress: f64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Always `[]` through REST.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Spec reference.
    #[serde(default)]
    pub spec_reference: Option<SpecReference>,
    /// Completion note.
    #[serde(default)]
    pub completion_note: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `POST /api/v1/tasks` body. The server always starts a task `pending` with progress 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Required.
    pub title: String,
    /// Required (may be empty).
    pub description: String,
    /// `medium` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_hours: Option<f64>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Spec reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_reference: Option<SpecReference>,
}

impl NewTask {
    /// A task with a title and description, everything else defaulted by the server.
    pub fn new(title: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            description: description.into(),
            priority: None,
            estimated_hours: None,
            tags: Vec::new(),
            spec_reference: None,
        }
    }
}

/// `PUT /api/v1/tasks/{id}` body: a partial update. `None` means unchanged (and is left out:
/// the server cannot clear a field back to null anyway).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    /// New title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New status (no transition rules on the server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// New priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Replaces the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<Vec<String>>,
    /// New estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_hours: Option<f64>,
    /// Time spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_hours: Option<f64>,
    /// Progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Replaces the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Completion note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_note: Option<String>,
}

/// `GET /api/v1/tasks` filters; all optional, all combined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks with this exact assignee.
    pub assigned_to: Option<String>,
    /// Tasks with **any** of these tags (sent comma-separated, untrimmed; a tag cannot contain
    /// a comma).
    pub tags: Vec<String>,
}

// ---- workspaces (contract 5) ----

/// `POST /api/v1/workspaces` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewWorkspace {
    /// Name.
    pub name: String,
    /// The directory it mirrors, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

/// A Cortex workspace. `source_type` and `namespace` are free text here: the contract names
/// them without listing values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Assigned by the server.
    pub id: WorkspaceId,
    /// Name.
    pub name: String,
    /// As the server says.
    #[serde(default)]
    pub source_type: String,
    /// As the server says.
    #[serde(default)]
    pub namespace: String,
    /// As created.
    #[serde(default)]
    pub source_path: Option<String>,
    /// Whether it is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

// ---- sessions (contract 5) ----

/// A session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// `active` (on create)
    Active,
    /// `paused`
    Paused,
    /// `completed` (after a merge with changes)
    Completed,
    /// `failed`
    Failed,
}

/// A Cortex session. The server does not return its `workspace_id`: remember it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Assigned by the server.
    pub id: SessionId,
    /// Name.
    pub name: String,
    /// Free text (Axon sends the task type).
    pub agent_type: String,
    /// Status.
    pub status: SessionStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `POST /api/v1/sessions` body. `workspace_id` is required in practice (400 without it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewSession {
    /// Required.
    pub name: String,
    /// Required, free text.
    pub agent_type: String,
    /// Required by the handler; the server does not check that the workspace exists.
    pub workspace_id: WorkspaceId,
}

/// How a merge treats conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeStrategy {
    /// Skip conflicting files; the merge is `partial`.
    #[default]
    Auto,
    /// Stop with 409 on an unresolved conflict.
    Manual,
    /// Count conflicts as resolved.
    Theirs,
    /// Skip conflicting files.
    Mine,
}

/// `POST /api/v1/sessions/{id}/merge` body. An empty `conflict_resolution` is left out (the
/// server rejects `null` with 422).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MergeRequest {
    /// The strategy.
    pub strategy: MergeStrategy,
    /// Path → resolution text.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub conflict_resolution: BTreeMap<String, String>,
}

impl MergeRequest {
    /// A merge with `strategy` and no resolutions.
    pub fn new(strategy: MergeStrategy) -> Self {
        Self {
            strategy,
            conflict_resolution: BTreeMap::new(),
        }
    }
}

/// A merge's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStatus {
    /// `success`
    Success,
    /// `partial`: a conflict was detected (the server does not say which files).
    Partial,
    /// `no_changes`
    NoChanges,
}

/// `data` of a merge. There is no list of conflicting files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeResult {
    /// Fresh per call, not stored by the server.
    pub merge_id: String,
    /// Outcome.
    pub status: MergeStatus,
    /// Files written or deleted.
    pub changes_merged: u64,
    /// Conflicts resolved.
    pub conflicts_resolved: u64,
    /// Hard-coded by the server (1, or 0 for `no_changes`).
    pub new_version: u64,
}

// ---- memory (contract 6) ----

/// `POST /api/v1/memory/search` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryQuery {
    /// Case-sensitive substring of the episode's content (not a semantic search).
    pub query: String,
    /// Only this episode type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode_type: Option<String>,
    /// Applied after the limit (0.0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_importance: Option<f64>,
    /// At most this many (20 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl MemoryQuery {
    /// A search for `query` with at most `limit` results.
    pub fn new(query: impl Into<String>, limit: u32) -> Self {
        Self {
            query: query.into(),
            episode_type: None,
            min_importance: None,
            limit: Some(limit),
        }
    }
}

/// An episode as the REST API returns it. `episode_type` stays text: the REST layer passes
/// cortex-memory's values through, and one Axon does not know should not fail a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The stored id.
    pub id: String,
    /// The task description.
    pub content: String,
    /// `task`, `refactor`, `bugfix`, `feature`, `exploration`, …
    pub episode_type: String,
    /// Computed by the server (0.5 without metrics).
    pub importance: f64,
    /// RFC 3339.
    pub created_at: String,
}
