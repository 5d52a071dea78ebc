//! The engine's metrics (the spec's `ExecutorMetrics`), through the `metrics` facade: whatever
//! recorder the program installed (the CLI's Prometheus exporter, for one) receives them.
//!
//! A run registers its handles once, when it starts, and then only increments and records:
//! looking a metric up by name and labels on every task was a measurable share of a
//! dispatcher's work (and a registry lookup per call with a recorder installed).
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `axon_runs_total` | counter | `status` |
//! | `axon_tasks_total` | counter | `type`, `outcome` (`succeeded`, `failed`, `skipped`, `cancelled`) |
//! | `axon_task_attempts_total` | counter | |
//! | `axon_task_retries_total` | counter | |
//! | `axon_task_queue_wait_seconds` | histogram | |
//! | `axon_task_duration_seconds` | histogram | `type` |
//! | `axon_agent_utilisation_ratio` | gauge | `agent` |

use axon_core::model::{TaskKind, TaskStatus};
use metrics::{Counter, Histogram};

/// The outcomes `axon_tasks_total` counts, in the order of [`RunMetrics::tasks`]' columns.
const OUTCOMES: [TaskStatus; 4] = [
    TaskStatus::Succeeded,
    TaskStatus::Failed,
    TaskStatus::Skipped,
    TaskStatus::Cancelled,
];

/// One run's metric handles.
pub(crate) struct RunMetrics {
    attempts: Counter,
    retries: Counter,
    queue_wait: Histogram,
    /// By task type (in [`TaskKind::ALL`]'s order).
    duration: Vec<Histogram>,
    /// By task type, then outcome (in [`OUTCOMES`]' order).
    tasks: Vec<[Counter; 4]>,
}

impl RunMetrics {
    /// Registers the handles with the installed recorder (none: they do nothing).
    pub(crate) fn register() -> Self {
        Self {
            attempts: metrics::counter!("axon_task_attempts_total"),
            retries: metrics::counter!("axon_task_retries_total"),
            queue_wait: metrics::histogram!("axon_task_queue_wait_seconds"),
            duration: TaskKind::ALL
                .iter()
                .map(|k| metrics::histogram!("axon_task_duration_seconds", "type" => k.as_str()))
                .collect(),
            tasks: TaskKind::ALL
                .iter()
                .map(|k| {
                    OUTCOMES.map(|o| {
                        metrics::counter!("axon_tasks_total", "type" => k.as_str(), "outcome" => o.as_str())
                    })
                })
                .collect(),
        }
    }

    /// An attempt started, after waiting `wait_secs` in a ready queue.
    pub(crate) fn attempt(&self, wait_secs: f64) {
        self.attempts.increment(1);
        self.queue_wait.record(wait_secs);
    }

    /// A retry was scheduled.
    pub(crate) fn retry(&self) {
        self.retries.increment(1);
    }

    /// An attempt of a task of type `kind` took `secs`.
    pub(crate) fn duration(&self, kind: TaskKind, secs: f64) {
        self.duration[kind_index(kind)].record(secs);
    }

    /// A task of type `kind` ended as `outcome` (a terminal status).
    pub(crate) fn task(&self, kind: TaskKind, outcome: TaskStatus) {
        if let Some(o) = OUTCOMES.iter().position(|&s| s == outcome) {
            self.tasks[kind_index(kind)][o].increment(1);
        }
    }
}

/// `kind`'s place in [`TaskKind::ALL`] (declaration order).
fn kind_index(kind: TaskKind) -> usize {
    kind as usize
}

/// A run ended as `status`; `agents` are each agent's id and utilisation (0..=1).
pub(crate) fn run_finished(status: &str, agents: impl IntoIterator<Item = (String, f64)>) {
    metrics::counter!("axon_runs_total", "status" => status.to_owned()).increment(1);
    for (id, utilisation) in agents {
        metrics::gauge!("axon_agent_utilisation_ratio", "agent" => id).set(utilisation);
    }
}
