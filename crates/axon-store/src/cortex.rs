//! What the store keeps of a remote Cortex server besides the tracking outbox
//! ([`crate::OutboxItem`]): the server each run is tracked on, the Cortex sessions attempts
//! opened (until they are deleted there), and the Cortex workspace of each workspace directory.
//!
//! Sessions are recorded the moment Cortex creates them and forgotten once Cortex confirms
//! their deletion, so whatever a crashed engine left open is known to the next one (a resumed
//! run, or `axon cortex sync`), which deletes it.

use uuid::Uuid;

/// A Cortex session opened for one task attempt and not deleted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CortexSessionRecord {
    /// The run.
    pub run_id: Uuid,
    /// The task.
    pub task_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The id Cortex gave the session.
    pub session_id: String,
    /// When Cortex created it, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// A run with tracking calls still to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRun {
    /// The run.
    pub run_id: Uuid,
    /// The Cortex server it is tracked on, when recorded.
    pub server: Option<String>,
    /// How many calls are undelivered.
    pub undelivered: u64,
}

/// The Cortex task id of a run's task (or, with `task_id` `None`, of its workflow record), for
/// [`Store::set_cortex_ids`](crate::Store::set_cortex_ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CortexIdRecord {
    /// The run.
    pub run_id: Uuid,
    /// The task, or `None` for the workflow record.
    pub task_id: Option<String>,
    /// The Cortex task id.
    pub remote_id: String,
}
