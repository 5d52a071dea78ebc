//! `axon runs` and `axon status RUN`.

use std::fmt::Write as _;
use std::path::Path;

use axon_core::model::{RunStatus, TaskStatus};
use axon_engine::lease::effective_status;
use axon_engine::report::TaskReport;
use axon_engine::time::rfc3339;
use axon_store::Store;
use serde::Serialize;
use uuid::Uuid;

use crate::Status;
use crate::cli::{RunsArgs, StatusArgs};
use crate::commands::run::{counts_text, runtime};
use crate::output::print_stdout;
use crate::state::{chain, db_path, open_existing, run_id_arg};
use crate::summary::{CortexView, RunView, TaskView, TrackView, WorkflowView, human, now_ms};

#[derive(Serialize)]
struct RunLine {
    run_id: Uuid,
    workflow: WorkflowView,
    status: RunStatus,
    started_at: String,
    finished_at: Option<String>,
    task_counts: std::collections::BTreeMap<&'static str, u32>,
}

/// `axon runs`.
pub fn runs(args: &RunsArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let db = db_path(db, &std::env::current_dir()?);
    runtime()?.block_on(async {
        let store = open_existing(&db).await?;
        let runs = store
            .runs(args.limit)
            .await
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        let lines: Vec<RunLine> = runs
            .into_iter()
            .map(|r| RunLine {
                run_id: r.run.run_id,
                workflow: WorkflowView {
                    id: r.run.workflow_id.clone(),
                    name: r.run.workflow_name.clone(),
                },
                status: effective_status(r.run.status, r.lease.as_ref()),
                started_at: rfc3339(r.run.created_at_ms),
                finished_at: r.run.finished_at_ms.map(rfc3339),
                task_counts: r.counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
            })
            .collect();
        let text = if args.json {
            let mut t = serde_json::to_string_pretty(&lines)?;
            t.push('\n');
            t
        } else if lines.is_empty() {
            "no runs yet\n".to_owned()
        } else {
            let mut t = String::new();
            for l in &lines {
                let counts: Vec<(TaskStatus, u32)> = l
                    .task_counts
                    .iter()
                    .filter_map(|(s, n)| s.parse().ok().map(|s| (s, *n)))
                    .collect();
                t.push_str(&format!(
                    "{}  {:<11}  {}  {}  ({})\n",
                    l.run_id,
                    l.status.as_str(),
                    l.started_at,
                    l.workflow.name,
                    counts_text(&counts)
                ));
            }
            t
        };
        print_stdout(&text)?;
        Ok(Status::Success)
    })
}

/// `axon status RUN`.
pub fn status(args: &StatusArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let Some(run_id) = run_id_arg(&args.run) else {
        return Ok(Status::Usage);
    };
    let db = db_path(db, &std::env::current_dir()?);
    runtime()?.block_on(async {
        let store = open_existing(&db).await?;
        let Some(view) = load_view(&store, run_id).await? else {
            eprintln!("axon: error: no run with id {run_id} in {}", db.display());
            return Ok(Status::Invalid);
        };
        if args.json {
            let mut t = serde_json::to_string_pretty(&view)?;
            t.push('\n');
            print_stdout(&t)?;
        } else {
            let mut t = format!("{} ({})\n\n", view.workflow.name, view.workflow.id);
            t.push_str(&human(&view));
            t.push_str(&tracking_line(view.tracking.as_deref().unwrap_or_default()));
            t.push_str(&cortex_line(&view));
            print_stdout(&t)?;
        }
        Ok(Status::Success)
    })
}

/// A run as stored, with `interrupted` for runs whose engine died.
pub async fn load_view(store: &dyn Store, run_id: Uuid) -> anyhow::Result<Option<RunView>> {
    let Some(run) = store
        .run(run_id)
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))?
    else {
        return Ok(None);
    };
    let lease = store
        .lease(run_id)
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))?;
    let tasks = store
        .tasks(run_id)
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))?;
    let tracking = store
        .tracking(run_id)
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))?;
    let end = run.finished_at_ms.unwrap_or_else(now_ms);
    Ok(Some(RunView {
        run_id,
        workflow: WorkflowView {
            id: run.workflow_id,
            name: run.workflow_name,
        },
        status: effective_status(run.status, lease.as_ref()),
        started_at: rfc3339(run.created_at_ms),
        finished_at: run.finished_at_ms.map(rfc3339),
        duration_secs: (end - run.created_at_ms).max(0) as f64 / 1000.0,
        tasks: tasks
            .into_iter()
            .map(|t| TaskView::from_report(&TaskReport::from_record(t, Vec::new())))
            .collect(),
        metrics: None,
        tracking: Some(tracking.into_iter().map(TrackView::of).collect()),
        cortex: cortex_view(store, run_id)
            .await
            .map_err(|e| anyhow::anyhow!(chain(&e)))?,
        finish_error: None,
    }))
}

/// The run's Cortex server and what it still owes it, if it is tracked on one.
async fn cortex_view(
    store: &dyn Store,
    run_id: Uuid,
) -> Result<Option<CortexView>, axon_store::StoreError> {
    let Some(server) = store.cortex_server(run_id).await? else {
        return Ok(None);
    };
    let counts = store.outbox_counts(run_id).await?;
    // The head of the oldest queue, due or not, tells why deliveries fail.
    let last_error = store
        .outbox_due(Some(run_id), i64::MAX, 1)
        .await?
        .into_iter()
        .find_map(|i| i.last_error);
    Ok(Some(CortexView {
        server,
        workflow_task_id: store.cortex_id(run_id, None).await?,
        undelivered: counts.undelivered,
        failing: counts.failing,
        last_error,
        oldest_undelivered_at: counts.oldest_at_ms.map(rfc3339),
        open_sessions: store.cortex_sessions(Some(run_id)).await?.len() as u64,
    }))
}

/// One line on the run's Cortex server: where it is tracked, and what is still owed.
fn cortex_line(view: &RunView) -> String {
    let Some(c) = &view.cortex else {
        return String::new();
    };
    let task = c.workflow_task_id.as_deref().map_or_else(
        || " (its task is not created yet)".to_owned(),
        |id| format!(" as task {id}"),
    );
    let mut line = format!("cortex: tracked on {}{task}", c.server);
    if c.undelivered == 0 {
        line.push_str(", every update delivered");
    } else {
        let _ = write!(
            line,
            "; {} update{} not delivered yet",
            c.undelivered,
            if c.undelivered == 1 { "" } else { "s" }
        );
        if let Some(e) = &c.last_error {
            let _ = write!(line, " (last error: {e})");
        }
        let _ = write!(line, ": `axon cortex sync {}` delivers them", view.run_id);
    }
    if c.open_sessions > 0 {
        let _ = write!(
            line,
            "; {} Cortex session{} left open",
            c.open_sessions,
            if c.open_sessions == 1 { "" } else { "s" }
        );
    }
    line.push('\n');
    line
}

/// One line on the run's tracking records: the workflow record and its subtasks by status.
fn tracking_line(records: &[TrackView]) -> String {
    let Some(workflow) = records.iter().find(|r| r.task_id.is_none()) else {
        return String::new();
    };
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut linked = 0;
    for r in records.iter().filter(|r| r.task_id.is_some()) {
        *counts.entry(r.status.as_str()).or_default() += 1;
        linked += usize::from(r.parent_id == Some(workflow.id));
    }
    let by_status: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(
        "tracking: workflow record #{} ({}), {linked} linked subtask{}{}\n",
        workflow.id,
        workflow.status,
        if linked == 1 { "" } else { "s" },
        if by_status.is_empty() {
            String::new()
        } else {
            format!(": {}", by_status.join(", "))
        }
    )
}
