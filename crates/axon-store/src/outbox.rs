//! The durable outbox of tracking calls to a Cortex server, and the ids Cortex gave the tasks
//! Axon created there.
//!
//! Tracking must never block or fail a run. So the engine does not call Cortex: it enqueues
//! each call as an [`NewOutboxItem`] (in the same [`Batch`](crate::Batch) as the task state it
//! reports, or with [`Store::outbox_push`](crate::Store::outbox_push)), and a delivery worker
//! reads [`Store::outbox_due`](crate::Store::outbox_due), sends the calls, and marks each one
//! [delivered](crate::Store::outbox_delivered) (it leaves the outbox) or
//! [to retry later](crate::Store::outbox_retry_later).
//!
//! Calls are delivered in order per (run, task): an item is only due once every older item of
//! the same run and task is delivered, so a failing call holds back the calls after it (a task
//! is never marked done before it is created) but not those of other tasks. What a run still
//! owes Cortex is in [`Store::outbox_counts`](crate::Store::outbox_counts).
//!
//! The Cortex id of each created task is recorded with
//! [`Store::set_cortex_id`](crate::Store::set_cortex_id), so a resumed run or a later sync
//! updates the task it created instead of creating another.

use uuid::Uuid;

/// A tracking call waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Assigned by the store; items are delivered in the order of their ids (per task).
    pub id: i64,
    /// The run.
    pub run_id: Uuid,
    /// The task, or `None` for the run's workflow record.
    pub task_id: Option<String>,
    /// Which call: `create_workflow`, `create_task`, `update_task`, ...
    pub kind: String,
    /// The call's arguments, as the engine enqueued them.
    pub payload: serde_json::Value,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not to be delivered before this time, ms since the Unix epoch.
    pub next_attempt_at_ms: i64,
    /// Why the latest delivery failed.
    pub last_error: Option<String>,
    /// When it was enqueued, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// A tracking call to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxItem {
    /// The task, or `None` for the run's workflow record.
    pub task_id: Option<String>,
    /// Which call: `create_workflow`, `create_task`, `update_task`, ...
    pub kind: String,
    /// The call's arguments.
    pub payload: serde_json::Value,
    /// How long after it is enqueued it becomes due (0: at once). A courier that finds
    /// several calls of a task due together may merge them into one.
    pub delay_ms: u32,
}

impl NewOutboxItem {
    /// A call about the run's workflow record.
    pub fn workflow(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            task_id: None,
            kind: kind.into(),
            payload,
            delay_ms: 0,
        }
    }

    /// The same call, due `delay_ms` after it is enqueued.
    pub fn delayed(self, delay_ms: u32) -> Self {
        Self { delay_ms, ..self }
    }

    /// A call about a task's record.
    pub fn task(
        task_id: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            task_id: Some(task_id.into()),
            ..Self::workflow(kind, payload)
        }
    }
}

/// What a run still owes Cortex, for `axon status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Calls not delivered yet.
    pub undelivered: u64,
    /// Of those, calls whose delivery failed at least once.
    pub failing: u64,
    /// When the oldest undelivered call was enqueued, ms since the Unix epoch.
    pub oldest_at_ms: Option<i64>,
}

impl OutboxCounts {
    /// Whether everything was delivered.
    pub fn is_empty(&self) -> bool {
        self.undelivered == 0
    }
}
