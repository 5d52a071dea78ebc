//! Axon's durable state: the [`Store`] trait the engine writes through, and its embedded
//! SQLite implementation ([`SqliteStore`]).
//!
//! The engine computes a transition in memory, writes it here — events appended to the log
//! *and* the current state of the run and its tasks updated, in one transaction — and only
//! then acts on it. Resume reads the current-state tables, not the log. A run is held by one
//! engine at a time through a lease (holder host and pid, expiry) that the engine renews.
//!
//! The trait knows nothing of SQLite: a PostgreSQL implementation can follow without
//! touching the engine. It depends on `axon-core` for statuses only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), axon_store::StoreError> {
//! use axon_store::{SqliteStore, Store};
//! let store = SqliteStore::open(std::path::Path::new(".axon/axon.db")).await?;
//! for run in store.runs(10).await? {
//!     println!("{} {}", run.run.run_id, run.run.status);
//! }
//! # Ok(()) }
//! ```

mod cortex;
mod episode;
mod outbox;
mod search;
mod sqlite;
mod tracking;

use async_trait::async_trait;
use axon_core::model::{ErrorType, RunStatus, TaskStatus};
use uuid::Uuid;

pub use cortex::{CortexIdRecord, CortexSessionRecord, OutboxRun};
pub use episode::{EpisodeHit, EpisodeRecord, MAX_QUERY_WORDS};
pub use outbox::{NewOutboxItem, OutboxCounts, OutboxItem};
pub use sqlite::SqliteStore;
pub use tracking::{TrackRecord, TrackUpdate};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("database error")]
    Database(#[source] Box<sqlx::Error>),
    /// A schema migration failed.
    #[error("database migration failed")]
    Migration(#[source] Box<sqlx::migrate::MigrateError>),
    /// The database directory could not be created.
    #[error("cannot create the database directory {path}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row holds a value this version does not understand.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No run has this id.
    #[error("no run with id {0}")]
    NoSuchRun(Uuid),
    /// The call never reached the store: what was to run it stopped (a runtime shutting
    /// down). Nothing was read or written.
    #[error("the store was not reached: {0}")]
    NotReached(String),
}

impl StoreError {
    /// Whether retrying the operation may succeed (the database was busy or locked).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => match e.as_ref() {
                sqlx::Error::Database(db) => {
                    let msg = db.message();
                    msg.contains("locked") || msg.contains("busy")
                }
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(Box::new(e))
    }
}

/// A run as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run id (UUIDv7).
    pub run_id: Uuid,
    /// The workflow's id.
    pub workflow_id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// As recorded; a `running` run whose engine died is reported as `interrupted` by the
    /// engine's lease logic, not stored as such.
    pub status: RunStatus,
    /// When it was submitted, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
    /// The workspace directory.
    pub workspace: String,
    /// The workflow file as read, so `resume` runs exactly the same workflow.
    pub workflow_source: String,
    /// `yaml` or `json`.
    pub workflow_format: String,
    /// The agents file as read, if the run had one.
    pub agents_source: Option<String>,
    /// `yaml` or `json`.
    pub agents_format: Option<String>,
    /// The directory the agents file was in (relative agent commands resolve there).
    pub agents_dir: Option<String>,
    /// Whether `axon cancel` asked for the run to stop.
    pub cancel_requested: bool,
}

/// A task of a run as the store holds it (its current state).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The task id.
    pub task_id: String,
    /// Index in the workflow's task list.
    pub position: u32,
    /// The task's name.
    pub name: String,
    /// Current status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The agent of the latest attempt.
    pub agent: Option<String>,
    /// Process (and process group) id of the latest attempt's command agent, while it runs.
    pub agent_pid: Option<u32>,
    /// Last reported progress, 0..=1.
    pub progress: Option<f64>,
    /// When the latest attempt started, ms since the Unix epoch.
    pub started_at_ms: Option<i64>,
    /// When the task reached a terminal status.
    pub finished_at_ms: Option<i64>,
    /// Why the latest attempt failed.
    pub error: Option<String>,
    /// The class of that failure.
    pub error_kind: Option<ErrorType>,
    /// The task's output, when it succeeded with one.
    pub output: Option<serde_json::Value>,
    /// The latest attempt succeeded and its session is being merged: a `resume` finishes
    /// the merge instead of running the task again.
    pub merging: bool,
}

impl TaskRecord {
    /// A pending task that has not run yet.
    pub fn pending(task_id: impl Into<String>, position: u32, name: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            position,
            name: name.into(),
            status: TaskStatus::Pending,
            attempts: 0,
            agent: None,
            agent_pid: None,
            progress: None,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            error_kind: None,
            output: None,
            merging: false,
        }
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Position in the log (assigned by the store; ignored on write).
    pub seq: i64,
    /// The run.
    pub run_id: Uuid,
    /// The task, for task events.
    pub task_id: Option<String>,
    /// What happened: `run_submitted`, `task_dispatched`, `task_succeeded`, ...
    pub kind: String,
    /// The attempt, for task events.
    pub attempt: Option<u32>,
    /// The agent, when one is involved.
    pub agent: Option<String>,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Details (delay, error, progress, ...).
    pub data: serde_json::Value,
}

/// Everything one commit writes, atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Events to append, in order.
    pub events: Vec<EventRecord>,
    /// New current state of these tasks (by task id).
    pub tasks: Vec<TaskRecord>,
    /// New status of the run, if it changed.
    pub run_status: Option<(RunStatus, Option<i64>)>,
    /// Episodes of attempts that finished, recorded with the state that finished them.
    pub episodes: Vec<EpisodeRecord>,
    /// Tracking calls to enqueue in the outbox, in order, with the state they report (see
    /// [`Store::outbox_push`]).
    pub outbox: Vec<NewOutboxItem>,
    /// When the `outbox` calls were made (they are due from then), ms since the Unix epoch.
    pub outbox_at_ms: i64,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.tasks.is_empty()
            && self.run_status.is_none()
            && self.episodes.is_empty()
            && self.outbox.is_empty()
    }
}

/// Who holds a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lease lapses unless renewed, ms since the Unix epoch.
    pub expires_at_ms: i64,
}

/// A run with its task counts, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run.
    pub run: RunRecord,
    /// The current lease, if any.
    pub lease: Option<Lease>,
    /// Number of tasks per status.
    pub counts: Vec<(TaskStatus, u32)>,
}

/// Durable state of runs. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a new run with its tasks (all pending), and gives its lease to `holder`.
    async fn create_run(
        &self,
        run: &RunRecord,
        tasks: &[TaskRecord],
        holder: &Lease,
    ) -> Result<(), StoreError>;

    /// Appends the batch's events and applies its state changes, and enqueues its outbox
    /// items (as [`Store::outbox_push`] does, at `outbox_at_ms`), in one transaction.
    async fn commit(&self, run_id: Uuid, batch: &Batch) -> Result<(), StoreError>;

    /// The run, if it exists.
    async fn run(&self, run_id: Uuid) -> Result<Option<RunRecord>, StoreError>;

    /// The run's tasks, in workflow order.
    async fn tasks(&self, run_id: Uuid) -> Result<Vec<TaskRecord>, StoreError>;

    /// The most recent runs, newest first, with task counts and leases.
    async fn runs(&self, limit: u32) -> Result<Vec<RunSummary>, StoreError>;

    /// Events of a run after `after_seq`, oldest first, at most `limit`.
    async fn events(
        &self,
        run_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// The run's current lease, if any.
    async fn lease(&self, run_id: Uuid) -> Result<Option<Lease>, StoreError>;

    /// Replaces the lease if it still equals `expected` (compare and swap); returns whether
    /// it did.
    async fn swap_lease(
        &self,
        run_id: Uuid,
        expected: Option<&Lease>,
        new: &Lease,
    ) -> Result<bool, StoreError>;

    /// Extends the lease held by `host`/`pid`; returns false if someone else holds it now.
    async fn renew_lease(
        &self,
        run_id: Uuid,
        host: &str,
        pid: u32,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Drops the lease held by `host`/`pid`, if it still holds it.
    async fn release_lease(&self, run_id: Uuid, host: &str, pid: u32) -> Result<(), StoreError>;

    /// Asks the engine holding the run to cancel it; returns false if the run is over.
    async fn request_cancel(&self, run_id: Uuid) -> Result<bool, StoreError>;

    /// Whether a cancel was requested.
    async fn cancel_requested(&self, run_id: Uuid) -> Result<bool, StoreError>;

    /// Records one episode on its own (the engine usually sends them in a [`Batch`], with
    /// the task state that finished them); returns the id the store gave it.
    async fn record_episode(&self, episode: &EpisodeRecord) -> Result<i64, StoreError>;

    /// Past episodes matching any word of `query`, best first, at most `limit`.
    ///
    /// The query is split into words (runs of letters and digits, lowercased; at most
    /// [`MAX_QUERY_WORDS`]), and an episode matches when any word is in its task name or
    /// error. Scores are bm25 with the name weighing most (higher is better); ties
    /// go to the most recently recorded episode. (A word found in at least half of all
    /// episodes, like `the` in task names, has no bm25 weight: episodes it alone matches
    /// come last, and are only looked for when the other words find fewer than `limit`.)
    /// No input is a syntax error: a query without words (empty, punctuation, emoji)
    /// matches nothing.
    async fn search_episodes(&self, query: &str, limit: u32)
    -> Result<Vec<EpisodeHit>, StoreError>;

    /// Applies tracking updates for a run, in one transaction: each creates or updates the
    /// record of its task (or, with no task id, the run's workflow record). The workflow
    /// record is created first if missing (titled after the workflow) and is every task
    /// record's parent.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when the run does not exist.
    async fn track(&self, run_id: Uuid, updates: &[TrackUpdate]) -> Result<(), StoreError>;

    /// The run's tracking records: the workflow record first, then task records in the
    /// order they were created.
    async fn tracking(&self, run_id: Uuid) -> Result<Vec<TrackRecord>, StoreError>;

    /// Enqueues tracking calls for a run, in order, in one transaction. Each is due at
    /// `at_ms` (plus its `delay_ms`), but only once every older call of the same run and task
    /// is delivered.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when the run does not exist (and `items` is not empty).
    async fn outbox_push(
        &self,
        run_id: Uuid,
        items: &[NewOutboxItem],
        at_ms: i64,
    ) -> Result<(), StoreError>;

    /// Up to `limit` calls to deliver now, oldest first, of one run or of every run.
    ///
    /// A call is returned only when it is due (`next_attempt_at_ms <= now_ms`) and no older
    /// call of the same run and task is undelivered. So the result holds at most one call per
    /// (run, task), and a worker may deliver them concurrently without reordering any task's
    /// calls; the next call of a task shows up once this one is delivered. A call that keeps
    /// failing holds back the later calls of its task, not those of other tasks.
    async fn outbox_due(
        &self,
        run_id: Option<Uuid>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Marks calls delivered: they leave the outbox, and the next call of each of their queues
    /// becomes its head. Ids already delivered or unknown are ignored.
    async fn outbox_delivered(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Records a failed delivery of a call: counts the attempt, keeps `error`, and makes the
    /// call due again at `next_attempt_at_ms` (the caller computes the backoff). A call
    /// already delivered or unknown is left alone.
    async fn outbox_retry_later(
        &self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// How many of the run's calls are undelivered, how many of those failed at least once,
    /// and since when the oldest waits. All zero for an unknown run.
    async fn outbox_counts(&self, run_id: Uuid) -> Result<OutboxCounts, StoreError>;

    /// The Cortex task id recorded for a task of a run (or, with no task id, for the run's
    /// workflow record), if any.
    async fn cortex_id(
        &self,
        run_id: Uuid,
        task_id: Option<&str>,
    ) -> Result<Option<String>, StoreError>;

    /// Records the Cortex task id of a task of a run (or, with no task id, of the run's
    /// workflow record), and returns the id now recorded.
    ///
    /// The first id recorded wins: if another one is recorded already, it is kept and
    /// returned, so a caller that raced with another delivery sees which Cortex task is the
    /// real one (and may delete its own). Recording the same id again changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when the run does not exist.
    async fn set_cortex_id(
        &self,
        run_id: Uuid,
        task_id: Option<&str>,
        remote: &str,
    ) -> Result<String, StoreError>;

    /// Records several Cortex task ids at once, as [`Store::set_cortex_id`] does each (the
    /// first id recorded for a record wins), in one transaction; returns the id now recorded
    /// for each, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when a run does not exist (nothing is recorded then).
    async fn set_cortex_ids(&self, ids: &[CortexIdRecord]) -> Result<Vec<String>, StoreError>;

    /// What a courier settles at once: records `cortex_ids` as
    /// [`Store::set_cortex_ids`] does (returning the ids now recorded, in order), and marks
    /// `delivered` as [`Store::outbox_delivered`] does. A store that can do both in one
    /// transaction should: it is one write (and one sync to disk) instead of two.
    ///
    /// # Errors
    ///
    /// As [`Store::set_cortex_ids`] (nothing is recorded or marked then) and
    /// [`Store::outbox_delivered`].
    async fn outbox_settle(
        &self,
        cortex_ids: &[CortexIdRecord],
        delivered: &[i64],
    ) -> Result<Vec<String>, StoreError> {
        let kept = if cortex_ids.is_empty() {
            Vec::new()
        } else {
            self.set_cortex_ids(cortex_ids).await?
        };
        self.outbox_delivered(delivered).await?;
        Ok(kept)
    }

    /// The run's undelivered calls that wait behind an older one of their queue (every
    /// undelivered call but the heads [`Store::outbox_due`] returns), oldest first, at most
    /// `limit`, due or not: a courier merges a task's consecutive updates into one call.
    async fn outbox_followers(
        &self,
        run_id: Uuid,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Deletes the run's delivered outbox calls that are still kept (the undelivered ones stay);
    /// returns how many. Calls leave the outbox as they are marked delivered: this clears those
    /// that earlier versions kept until their run ended.
    async fn outbox_prune(&self, run_id: Uuid) -> Result<u64, StoreError>;

    /// Runs with undelivered outbox calls, the one with the oldest call first, each with the
    /// Cortex server it is tracked on (when recorded) and its undelivered count.
    async fn outbox_runs(&self) -> Result<Vec<OutboxRun>, StoreError>;

    /// Records the Cortex server (its base URL) a run is tracked on, and returns the server
    /// now recorded: the first one recorded is kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when the run does not exist.
    async fn set_cortex_server(&self, run_id: Uuid, server: &str) -> Result<String, StoreError>;

    /// The Cortex server a run is tracked on, if recorded.
    async fn cortex_server(&self, run_id: Uuid) -> Result<Option<String>, StoreError>;

    /// Records a Cortex session just created for an attempt (recording it twice changes
    /// nothing).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSuchRun`] when the run does not exist.
    async fn cortex_session_opened(&self, session: &CortexSessionRecord) -> Result<(), StoreError>;

    /// Forgets a Cortex session once the server deleted it (an unknown one is ignored).
    async fn cortex_session_closed(&self, run_id: Uuid, session_id: &str)
    -> Result<(), StoreError>;

    /// The Cortex sessions recorded and not deleted yet, of one run or of every run, oldest
    /// first.
    async fn cortex_sessions(
        &self,
        run_id: Option<Uuid>,
    ) -> Result<Vec<CortexSessionRecord>, StoreError>;

    /// The Cortex workspace id remembered for workspace directory `path` on `server`.
    async fn cortex_workspace(
        &self,
        server: &str,
        path: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Remembers the Cortex workspace of `path` on `server`, and returns the id now
    /// remembered: the first one recorded is kept (a caller that raced with another sees
    /// which workspace is the real one).
    async fn set_cortex_workspace(
        &self,
        server: &str,
        path: &str,
        workspace_id: &str,
        at_ms: i64,
    ) -> Result<String, StoreError>;
}
