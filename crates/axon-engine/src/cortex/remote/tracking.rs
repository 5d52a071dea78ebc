//! What Cortex tracking looks like: a run's workflow and tasks as Cortex tasks, and the outbox
//! calls that keep them in step with the run.
//!
//! The workflow becomes a Cortex task titled after it, tagged `axon` and `axon-run:<run_id>`,
//! with the workflow's priority and its critical path as `estimated_hours`. Each Axon task
//! becomes a Cortex task tagged `axon-parent:<the workflow's Cortex id>` (added at delivery,
//! once that id is known) and `axon-task:<task_id>`. Statuses map as
//!
//! | Axon | Cortex |
//! |---|---|
//! | `pending`, `ready` | `pending` |
//! | `running`, `retrying` | `inprogress` (with `assigned_to` the agent, and `progress`) |
//! | `succeeded` | `done` (with `actual_hours`) |
//! | `failed` | `blocked` (with the error as `completion_note`) |
//! | `skipped`, `cancelled` | `cancelled` |
//!
//! [`Tracker::calls`] turns the engine's tracking updates into outbox calls, dropping those that
//! change nothing Cortex shows and throttling progress to one call per task per
//! [`PROGRESS_EVERY`]; it runs on the dispatcher's hot path, so it only computes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axon_core::model::Workflow;
use axon_store::{NewOutboxItem, TrackUpdate};
use uuid::Uuid;

use crate::cortex::http::{NewTask, Priority, TaskStatus, TaskUpdate};

/// Outbox call: create the run's workflow task (payload: a [`NewTask`]).
pub(crate) const CREATE_WORKFLOW: &str = "create_workflow";
/// Outbox call: create a task's Cortex task (payload: a [`NewTask`] without its parent tag).
pub(crate) const CREATE_TASK: &str = "create_task";
/// Outbox call: update the workflow's or a task's Cortex task (payload: a [`TaskUpdate`]).
pub(crate) const UPDATE: &str = "update_task";

/// At most one progress-only update per task this often (status changes are never held back).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How long an update waits in the outbox before it is due: a task that changes again within
/// this time (a quick task, `inprogress` then `done`) costs Cortex one call instead of two, as
/// the courier merges the updates it finds queued together.
pub const UPDATE_SETTLE: Duration = Duration::from_millis(300);

/// The workflow task's tags.
pub(crate) fn workflow_tags(run_id: Uuid) -> Vec<String> {
    vec!["axon".to_owned(), format!("axon-run:{run_id}")]
}

/// The tag naming a task's parent, the workflow task.
pub(crate) fn parent_tag(workflow_task: &str) -> String {
    format!("axon-parent:{workflow_task}")
}

/// The tag naming the Axon task a Cortex task tracks.
pub(crate) fn task_tag(task_id: &str) -> String {
    format!("axon-task:{task_id}")
}

fn priority(p: axon_core::model::Priority) -> Priority {
    match p {
        axon_core::model::Priority::Low => Priority::Low,
        axon_core::model::Priority::Medium => Priority::Medium,
        axon_core::model::Priority::High => Priority::High,
        axon_core::model::Priority::Critical => Priority::Critical,
    }
}

fn hours(d: Duration) -> f64 {
    d.as_secs_f64() / 3600.0
}

/// The Cortex status of an Axon task or run status (as tracking updates spell them).
pub(crate) fn cortex_status(status: &str) -> TaskStatus {
    match status {
        "running" | "retrying" => TaskStatus::InProgress,
        "succeeded" => TaskStatus::Done,
        "failed" | "interrupted" => TaskStatus::Blocked,
        "skipped" | "cancelled" => TaskStatus::Cancelled,
        _ => TaskStatus::Pending,
    }
}

/// The calls that create a run's Cortex tasks: the workflow's first, then every task's in
/// workflow order (those whose Cortex id is already known are left out by the caller).
pub(crate) fn create_workflow(
    run_id: Uuid,
    workflow: &Workflow,
    estimated: Duration,
) -> NewOutboxItem {
    let mut task = NewTask::new(&workflow.name, &workflow.description);
    task.priority = Some(priority(workflow.priority));
    task.estimated_hours = Some(hours(estimated));
    task.tags = workflow_tags(run_id);
    NewOutboxItem::workflow(CREATE_WORKFLOW, payload(&task))
}

/// The call that creates task `i`'s Cortex task.
pub(crate) fn create_task(workflow: &Workflow, i: usize) -> NewOutboxItem {
    let t = &workflow.tasks[i];
    let mut task = NewTask::new(&t.name, &t.description);
    task.priority = Some(priority(workflow.priority_of(t)));
    task.estimated_hours = Some(hours(t.requirements.estimated_duration));
    task.tags = vec![task_tag(t.id.as_str())];
    NewOutboxItem::task(t.id.as_str(), CREATE_TASK, payload(&task))
}

/// An update of the workflow task (or, with `task_id`, of a task's).
pub(crate) fn update(task_id: Option<&str>, update: &TaskUpdate) -> NewOutboxItem {
    let item = match task_id {
        Some(t) => NewOutboxItem::task(t, UPDATE, payload(update)),
        None => NewOutboxItem::workflow(UPDATE, payload(update)),
    };
    item.delayed(u32::try_from(UPDATE_SETTLE.as_millis()).unwrap_or(u32::MAX))
}

fn payload(value: &impl serde::Serialize) -> serde_json::Value {
    // Plain structs of strings and numbers: encoding cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// What was last sent for one task (or the workflow).
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    status: TaskStatus,
    assignee: Option<String>,
    progress: Option<f64>,
    progress_at_ms: i64,
}

/// Turns tracking updates into outbox calls, remembering what each task last got.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// By task id (`None`: the workflow).
    sent: Mutex<HashMap<Option<String>, Sent>>,
}

impl Tracker {
    /// A tracker for records that Cortex holds as `pending` (as just created).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The calls `updates` need, in order.
    pub(crate) fn calls(&self, updates: &[TrackUpdate]) -> Vec<NewOutboxItem> {
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut calls = Vec::new();
        for u in updates {
            let status = cortex_status(&u.status);
            let last = sent.entry(u.task_id.clone()).or_insert(Sent {
                status: TaskStatus::Pending,
                assignee: None,
                progress: None,
                progress_at_ms: i64::MIN,
            });
            let running = status == TaskStatus::InProgress;
            let assignee = if running {
                u.assigned_to.clone()
            } else {
                last.assignee.clone()
            };
            let changed = status != last.status || (running && assignee != last.assignee);
            let progress = if running { u.progress } else { None };
            let progress_due = running
                && progress.is_some()
                && progress != last.progress
                && u.at_ms.saturating_sub(last.progress_at_ms)
                    >= i64::try_from(PROGRESS_EVERY.as_millis()).unwrap_or(i64::MAX);
            if !changed && !progress_due {
                continue;
            }
            let mut up = TaskUpdate::default();
            if changed {
                up.status = Some(status);
            }
            if running {
                if changed {
                    up.assigned_to = assignee.clone().map(|a| vec![a]);
                }
                up.progress = progress;
            }
            match status {
                TaskStatus::Done => {
                    up.progress = Some(1.0);
                    up.actual_hours = u
                        .started_at_ms
                        .map(|s| (u.at_ms - s).max(0) as f64 / 3_600_000.0);
                }
                TaskStatus::Blocked | TaskStatus::Cancelled => {
                    up.completion_note = u.note.clone();
                }
                _ => {}
            }
            *last = Sent {
                status,
                assignee,
                progress: if up.progress.is_some() {
                    progress
                } else {
                    last.progress
                },
                progress_at_ms: if up.progress.is_some() {
                    u.at_ms
                } else {
                    last.progress_at_ms
                },
            };
            calls.push(update(u.task_id.as_deref(), &up));
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(task: &str, status: &str, at: i64) -> TrackUpdate {
        TrackUpdate::task(task, "T", status, at)
    }

    fn decoded(items: &[NewOutboxItem]) -> Vec<TaskUpdate> {
        items
            .iter()
            .map(|i| serde_json::from_value(i.payload.clone()).unwrap())
            .collect()
    }

    #[test]
    fn statuses_map_to_cortex_spellings() {
        assert_eq!(cortex_status("pending"), TaskStatus::Pending);
        assert_eq!(cortex_status("ready"), TaskStatus::Pending);
        assert_eq!(cortex_status("running"), TaskStatus::InProgress);
        assert_eq!(cortex_status("retrying"), TaskStatus::InProgress);
        assert_eq!(cortex_status("succeeded"), TaskStatus::Done);
        assert_eq!(cortex_status("failed"), TaskStatus::Blocked);
        assert_eq!(cortex_status("skipped"), TaskStatus::Cancelled);
        assert_eq!(cortex_status("cancelled"), TaskStatus::Cancelled);
    }

    #[test]
    fn unchanged_states_make_no_calls_and_changes_carry_their_fields() {
        let t = Tracker::new();
        // pending and ready are what Cortex shows already.
        assert!(
            t.calls(&[upd("a", "pending", 0), upd("a", "ready", 1)])
                .is_empty()
        );
        let mut running = upd("a", "running", 10);
        running.assigned_to = Some("dev-1".into());
        running.progress = Some(0.0);
        running.started_at_ms = Some(10);
        let calls = t.calls(&[running.clone()]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].kind, UPDATE);
        assert_eq!(calls[0].task_id.as_deref(), Some("a"));
        let up = &decoded(&calls)[0];
        assert_eq!(up.status, Some(TaskStatus::InProgress));
        assert_eq!(up.assigned_to.as_deref(), Some(&["dev-1".to_owned()][..]));
        // The same state again: nothing.
        assert!(t.calls(&[running]).is_empty());
        let mut done = upd("a", "succeeded", 10 + 7_200_000);
        done.started_at_ms = Some(10);
        let up = &decoded(&t.calls(&[done]))[0];
        assert_eq!(up.status, Some(TaskStatus::Done));
        assert_eq!(up.progress, Some(1.0));
        assert_eq!(up.actual_hours, Some(2.0));
        let mut failed = upd("b", "failed", 5);
        failed.note = Some("exit 3".into());
        let up = &decoded(&t.calls(&[failed]))[0];
        assert_eq!(up.status, Some(TaskStatus::Blocked));
        assert_eq!(up.completion_note.as_deref(), Some("exit 3"));
    }

    #[test]
    fn progress_is_throttled_per_task_but_status_changes_are_not() {
        let t = Tracker::new();
        let at = |p: f64, ms: i64| {
            let mut u = upd("a", "running", ms);
            u.assigned_to = Some("x".into());
            u.progress = Some(p);
            u
        };
        assert_eq!(t.calls(&[at(0.0, 0)]).len(), 1);
        // Within a second of the last progress sent: held back.
        assert!(t.calls(&[at(0.1, 100), at(0.2, 500)]).is_empty());
        let calls = t.calls(&[at(0.3, 1_000)]);
        let up = &decoded(&calls)[0];
        assert_eq!((up.status, up.progress), (None, Some(0.3)));
        assert!(t.calls(&[at(0.4, 1_500)]).is_empty());
        // A status change goes at once, whatever the time.
        assert_eq!(t.calls(&[upd("a", "succeeded", 1_600)]).len(), 1);
    }

    #[test]
    fn creates_carry_the_contract_fields() {
        use axon_core::builder::{TaskBuilder, WorkflowBuilder};
        let wf = WorkflowBuilder::new("Ship it")
            .description("all of it")
            .priority(axon_core::model::Priority::High)
            .task(
                TaskBuilder::custom("a", "Do A", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(1800)),
            )
            .build()
            .unwrap();
        let run = Uuid::now_v7();
        let w = create_workflow(run, &wf, Duration::from_secs(5400));
        assert_eq!(
            (w.kind.as_str(), w.task_id.as_deref()),
            (CREATE_WORKFLOW, None)
        );
        let body: NewTask = serde_json::from_value(w.payload).unwrap();
        assert_eq!(body.title, "Ship it");
        assert_eq!(body.description, "all of it");
        assert_eq!(body.priority, Some(Priority::High));
        assert_eq!(body.estimated_hours, Some(1.5));
        assert_eq!(body.tags, ["axon".to_owned(), format!("axon-run:{run}")]);
        let a = create_task(&wf, 0);
        let body: NewTask = serde_json::from_value(a.payload).unwrap();
        assert_eq!(body.title, "Do A");
        assert_eq!(body.tags, ["axon-task:a"]);
        assert_eq!(body.estimated_hours, Some(0.5));
    }
}
