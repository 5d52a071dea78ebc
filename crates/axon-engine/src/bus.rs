//! The message bus (the spec's `MessageBus`): typed events of every run, for library users,
//! the CLI's progress display and metrics.
//!
//! Each subscriber has its own unbounded queue, so a subscriber never misses an event that
//! was published after it subscribed — subscribe before submitting a run and you see all of
//! it. Events are published only after they were committed to the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axon_core::model::{ErrorType, RunStatus};
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use uuid::Uuid;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The run.
    pub run_id: Uuid,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
    /// The task, for task events.
    pub task_id: Option<String>,
    /// The attempt, for task events (1 for the first).
    pub attempt: Option<u32>,
    /// The agent, when one is involved.
    pub agent: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, with its details.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The run was recorded and is about to start (or resume).
    RunSubmitted {
        /// The workflow's id.
        workflow_id: String,
        /// Number of tasks.
        tasks: usize,
        /// Whether this is a resumed run.
        resumed: bool,
    },
    /// A task got an agent and its attempt is starting.
    TaskDispatched {
        /// Time it waited since it became ready, in seconds.
        queue_wait_secs: f64,
    },
    /// The agent started working (e.g. its process was spawned).
    TaskStarted,
    /// The agent reported progress.
    TaskProgress {
        /// 0..=1.
        progress: f64,
    },
    /// The attempt succeeded.
    TaskSucceeded {
        /// How long the attempt took.
        duration_secs: f64,
    },
    /// The attempt failed and will be retried after `delay_secs`.
    TaskRetrying {
        /// Why it failed.
        error: String,
        /// Failure class.
        error_kind: ErrorType,
        /// Backoff before the next attempt.
        delay_secs: f64,
    },
    /// The task failed for good.
    TaskFailed {
        /// Why.
        error: String,
        /// Failure class.
        error_kind: ErrorType,
        /// How long the last attempt took.
        duration_secs: f64,
    },
    /// The task will not run because a prerequisite did not succeed.
    TaskSkipped {
        /// The prerequisite that failed (directly or transitively).
        because: String,
    },
    /// The task was cancelled.
    TaskCancelled {
        /// Why.
        reason: String,
    },
    /// Something the user should know about the run, said once (no isolation, the branch
    /// its work merges into, a dirty working tree, what `--merge-into` did).
    RunNotice {
        /// The message.
        message: String,
    },
    /// The run is over.
    RunFinished {
        /// Its final status.
        status: RunStatus,
        /// Wall-clock duration of this engine's part of the run.
        duration_secs: f64,
    },
}

impl EventKind {
    /// The event's name in the store's log and in JSON (`task_succeeded`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunSubmitted { .. } => "run_submitted",
            Self::TaskDispatched { .. } => "task_dispatched",
            Self::TaskStarted => "task_started",
            Self::TaskProgress { .. } => "task_progress",
            Self::TaskSucceeded { .. } => "task_succeeded",
            Self::TaskRetrying { .. } => "task_retrying",
            Self::TaskFailed { .. } => "task_failed",
            Self::TaskSkipped { .. } => "task_skipped",
            Self::TaskCancelled { .. } => "task_cancelled",
            Self::RunNotice { .. } => "run_notice",
            Self::RunFinished { .. } => "run_finished",
        }
    }
}

/// Publishes events to every subscriber.
#[derive(Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<UnboundedSender<Event>>>>,
    /// How many subscribers the list held when it last changed (read without the lock).
    count: Arc<AtomicUsize>,
}

impl EventBus {
    /// A bus with no subscriber.
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue of every event published from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        let mut subscribers = self.lock();
        subscribers.push(tx);
        self.count.store(subscribers.len(), Ordering::Release);
        rx
    }

    /// Whether anyone has subscribed (and not gone away as far as the bus has noticed).
    /// Publishers may skip building events nobody will read.
    pub fn has_subscribers(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Sends `event` to every live subscriber (dropping those that went away).
    pub fn publish(&self, event: &Event) {
        self.publish_all(std::slice::from_ref(event));
    }

    /// Sends `events`, in order, to every live subscriber, taking the subscriber list once
    /// per batch (the dispatcher publishes each committed batch this way).
    pub fn publish_all(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut subscribers = self.lock();
        subscribers.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
        self.count.store(subscribers.len(), Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<UnboundedSender<Event>>> {
        // The guarded Vec is always consistent; a panicking subscriber elsewhere cannot
        // break it.
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u32) -> Event {
        Event {
            run_id: Uuid::nil(),
            at_ms: 0,
            task_id: Some(format!("t{n}")),
            attempt: Some(1),
            agent: None,
            kind: EventKind::TaskStarted,
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = EventBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for n in 0..1000 {
            bus.publish(&ev(n));
        }
        for n in 0..1000 {
            assert_eq!(a.recv().await.unwrap(), ev(n));
            assert_eq!(b.recv().await.unwrap(), ev(n));
        }
    }

    #[test]
    fn events_serialise_flat_with_their_kind() {
        let json = serde_json::to_value(ev(1)).unwrap();
        assert_eq!(json["kind"], "task_started");
        assert_eq!(json["task_id"], "t1");
        assert_eq!(EventKind::TaskStarted.name(), "task_started");
    }
}
