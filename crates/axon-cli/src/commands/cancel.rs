//! `axon cancel RUN`: cancels a run another `axon` process executes, through the store.

use std::path::Path;
use std::time::Duration;

use axon_core::model::{RunStatus, TaskStatus};
use axon_engine::lease::effective_status;
use axon_store::{Batch, EventRecord, Store};

use crate::Status;
use crate::cli::CancelArgs;
use crate::commands::run::runtime;
use crate::state::{chain, db_path, open_existing, run_id_arg};
use crate::summary::now_ms;

/// How long `axon cancel` waits for the engine to stop the run.
const WAIT: Duration = Duration::from_secs(120);

/// `axon cancel`.
pub fn cancel(args: &CancelArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let Some(run_id) = run_id_arg(&args.run) else {
        return Ok(Status::Usage);
    };
    let db = db_path(db, &std::env::current_dir()?);
    runtime()?.block_on(async {
        let store = open_existing(&db).await?;
        let err = |e: axon_store::StoreError| anyhow::anyhow!(chain(&e));
        let Some(run) = store.run(run_id).await.map_err(err)? else {
            eprintln!("axon: error: no run with id {run_id} in {}", db.display());
            return Ok(Status::Invalid);
        };
        let lease = store.lease(run_id).await.map_err(err)?;
        match effective_status(run.status, lease.as_ref()) {
            RunStatus::Interrupted => {
                // Nobody runs it: record the cancellation ourselves.
                let now = now_ms();
                let mut batch = Batch {
                    run_status: Some((RunStatus::Cancelled, Some(now))),
                    ..Batch::default()
                };
                for mut t in store.tasks(run_id).await.map_err(err)? {
                    if !t.status.is_terminal() {
                        t.status = TaskStatus::Cancelled;
                        t.finished_at_ms = Some(now);
                        t.error = Some("run cancelled while interrupted".into());
                        batch.tasks.push(t);
                    }
                }
                batch.events.push(EventRecord {
                    seq: 0,
                    run_id,
                    task_id: None,
                    kind: "run_finished".into(),
                    attempt: None,
                    agent: None,
                    at_ms: now,
                    data: serde_json::json!({ "status": "cancelled", "by": "axon cancel" }),
                });
                store.commit(run_id, &batch).await.map_err(err)?;
                eprintln!("run {run_id} was interrupted; marked cancelled");
                Ok(Status::Cancelled)
            }
            RunStatus::Running => {
                store.request_cancel(run_id).await.map_err(err)?;
                if let Some(l) = &lease {
                    eprintln!(
                        "cancel requested; waiting for pid {} on {} to stop run {run_id}",
                        l.pid, l.host
                    );
                }
                let deadline = tokio::time::Instant::now() + WAIT;
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let run = store.run(run_id).await.map_err(err)?;
                    let lease = store.lease(run_id).await.map_err(err)?;
                    let status = run.map_or(RunStatus::Cancelled, |r| {
                        effective_status(r.status, lease.as_ref())
                    });
                    if status.is_terminal() || status == RunStatus::Interrupted {
                        eprintln!("run {run_id} {status}");
                        return Ok(Status::of_run(status));
                    }
                    if tokio::time::Instant::now() > deadline {
                        eprintln!(
                            "axon: error: run {run_id} has not stopped after {}s",
                            WAIT.as_secs()
                        );
                        return Ok(Status::Invalid);
                    }
                }
            }
            done => {
                eprintln!("run {run_id} is already {done}");
                Ok(Status::of_run(done))
            }
        }
    })
}
