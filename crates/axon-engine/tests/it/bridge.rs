//! The engine's side of the Cortex bridge, against a scripted bridge that records every call:
//! when sessions are created, sealed, merged and closed; that cleanup always runs; that bridge
//! failures are classified (transient ones retried by the task's policy, others fail the
//! task); that episodes become the agent's `context`; and that tracking follows the tasks.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axon_core::builder::WorkflowBuilder;
use axon_core::model::{ErrorType, SessionScope, TaskStatus};
use axon_engine::agent::{AttemptOutput, FnAgent};
use axon_engine::cortex::{
    BridgeError, Context, CortexBridge, Notices, RunBridge, RunInfo, Session,
};
use axon_engine::{Engine, RunOptions};
use axon_store::TrackUpdate;
use serde_json::json;

use crate::common::{pool_of, report_of, secs, task, within};

/// What the scripted bridge was asked, in order.
#[derive(Default)]
struct Script {
    calls: Mutex<Vec<String>>,
    /// Failures to return from `merge_session`, one per call, then success.
    merge_failures: Mutex<VecDeque<BridgeError>>,
    /// Failures to return from `create_session`, one per call, then success.
    create_failures: Mutex<VecDeque<BridgeError>>,
    tracked: Mutex<Vec<TrackUpdate>>,
}

impl Script {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

struct Bridge(Arc<Script>);

#[async_trait]
impl CortexBridge for Bridge {
    async fn open_run(&self, run: &RunInfo) -> Result<Arc<dyn RunBridge>, BridgeError> {
        self.0.log(format!("open {}", run.tasks.len()));
        Ok(Arc::new(Bridge(Arc::clone(&self.0))))
    }

    async fn search_episodes(&self, query: &str, limit: u32) -> Result<Context, BridgeError> {
        self.0.log(format!("search {query} {limit}"));
        Ok(Context {
            episodes: vec![json!({ "name": format!("before: {query}") })],
            warning: None,
        })
    }
}

#[async_trait]
impl RunBridge for Bridge {
    fn notices(&self) -> Notices {
        vec!["scripted bridge".into()]
    }

    async fn create_session(&self, task_id: &str, attempt: u32) -> Result<Session, BridgeError> {
        self.0.log(format!("create {task_id}/{attempt}"));
        if let Some(e) = self.0.create_failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        Ok(Session {
            task_id: task_id.into(),
            attempt,
            dir: std::env::temp_dir(),
            isolated: true,
            base: None,
            cortex: None,
        })
    }

    async fn seal_session(
        &self,
        session: &Session,
        _scope: &SessionScope,
    ) -> Result<bool, BridgeError> {
        self.0
            .log(format!("seal {}/{}", session.task_id, session.attempt));
        Ok(true)
    }

    async fn merge_session(&self, session: &Session) -> Result<(), BridgeError> {
        self.0
            .log(format!("merge {}/{}", session.task_id, session.attempt));
        match self.0.merge_failures.lock().unwrap().pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn close_session(&self, session: &Session, keep: bool) {
        self.0.log(format!(
            "close {}/{}{}",
            session.task_id,
            session.attempt,
            if keep { " keep" } else { "" }
        ));
    }

    async fn recover_merge(&self, task_id: &str, attempt: u32) -> Result<(), BridgeError> {
        self.0.log(format!("recover {task_id}/{attempt}"));
        Ok(())
    }

    async fn repair(&self, _keep: &[(String, u32)]) -> Result<(), BridgeError> {
        self.0.log("repair".into());
        Ok(())
    }

    async fn track(&self, updates: Vec<TrackUpdate>) -> Result<(), BridgeError> {
        self.0.tracked.lock().unwrap().extend(updates);
        Ok(())
    }

    async fn close_run(
        &self,
        succeeded: bool,
        _merge_into: Option<&str>,
    ) -> Result<Notices, BridgeError> {
        self.0.log(format!("close_run {succeeded}"));
        Ok(Vec::new())
    }
}

const AGENTS: &str = "agents:\n  - id: a\n    capabilities: [x]\n    max_concurrent_tasks: 1\n";

/// An engine whose one agent (one slot) answers with the context it was given.
fn engine(script: &Arc<Script>) -> Engine {
    let agent = FnAgent::new(|req, _progress, _cancel| async move {
        Ok(AttemptOutput {
            output: Some(json!({ "context": req.context, "dir": req.session_dir })),
            ..AttemptOutput::default()
        })
    });
    Engine::new(pool_of(AGENTS, Arc::new(agent))).with_cortex(Arc::new(Bridge(Arc::clone(script))))
}

#[tokio::test(start_paused = true)]
async fn sessions_are_created_sealed_merged_and_closed_in_order() {
    let script = Arc::new(Script::default());
    let engine = engine(&script);
    let wf = WorkflowBuilder::new("w")
        .task(task("a", 0).context_limit(3))
        .task(task("b", 0).depends_on(["a"]))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(wf, RunOptions::default()))
        .await
        .unwrap();
    assert_eq!(report.status.as_str(), "succeeded");
    assert_eq!(
        script.calls(),
        [
            "open 2",
            "search Task a 3",
            "create a/1",
            "seal a/1",
            "merge a/1",
            "close a/1",
            "search Task b 5",
            "create b/1",
            "seal b/1",
            "merge b/1",
            "close b/1",
            "repair",
            "close_run true",
        ]
    );
    // The episodes found became the agent's context; the session's directory its working one.
    let out = report_of(&report, "a").output.clone().unwrap();
    assert_eq!(out["context"], json!([{ "name": "before: Task a" }]));
    assert_eq!(out["dir"], json!(std::env::temp_dir()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_merge_still_closes_the_session_and_frees_the_agent() {
    let script = Arc::new(Script::default());
    script
        .merge_failures
        .lock()
        .unwrap()
        .push_back(BridgeError::new(
            ErrorType::MergeConflict,
            "merge conflict in src/x.rs",
        ));
    let engine = engine(&script);
    // `b` does not depend on `a`: it needs the one agent slot `a` held during its merge.
    let wf = WorkflowBuilder::new("w")
        .task(task("a", 0))
        .task(task("b", 0))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(wf, RunOptions::default()))
        .await
        .unwrap();
    let a = report_of(&report, "a");
    assert_eq!(a.status, TaskStatus::Failed);
    assert_eq!(a.error.as_deref(), Some("merge conflict in src/x.rs"));
    assert_eq!(a.error_kind, Some(ErrorType::MergeConflict));
    assert_eq!(a.attempts, 1, "a merge conflict is not retried by default");
    assert_eq!(report_of(&report, "b").status, TaskStatus::Succeeded);
    let calls = script.calls();
    assert!(calls.contains(&"close a/1 keep".to_owned()), "{calls:?}");
    assert_eq!(engine.pool().stats()[0].running, 0);
}

#[tokio::test(start_paused = true)]
async fn transient_bridge_failures_are_retried_and_others_fail_the_task() {
    let script = Arc::new(Script::default());
    script.create_failures.lock().unwrap().extend([
        BridgeError::new(ErrorType::ServiceUnavailable, "repository busy"),
        BridgeError::new(ErrorType::SystemError, "disk full"),
    ]);
    let engine = engine(&script);
    let wf = WorkflowBuilder::new("w")
        .task(task("a", 0))
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(wf, RunOptions::default()))
        .await
        .unwrap();
    let a = report_of(&report, "a");
    // Attempt 1: busy (retried); attempt 2: disk full (not retryable).
    assert_eq!(a.attempts, 2);
    assert_eq!(a.status, TaskStatus::Failed);
    assert_eq!(a.error.as_deref(), Some("disk full"));
    assert_eq!(a.error_kind, Some(ErrorType::SystemError));
    assert!(!script.calls().iter().any(|c| c.starts_with("merge")));
}

#[tokio::test(start_paused = true)]
async fn context_limit_zero_searches_nothing() {
    let script = Arc::new(Script::default());
    let engine = engine(&script);
    let wf = WorkflowBuilder::new("w")
        .context_limit(0)
        .task(task("a", 0))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(wf, RunOptions::default()))
        .await
        .unwrap();
    assert!(!script.calls().iter().any(|c| c.starts_with("search")));
    let out = report_of(&report, "a").output.clone().unwrap();
    assert_eq!(out["context"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_follows_the_tasks_and_episodes_are_recorded() {
    use axon_store::{SqliteStore, Store};

    let script = Arc::new(Script::default());
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let engine = engine(&script).with_store(store.clone());
    let wf = WorkflowBuilder::new("w")
        .task(task("a", 0))
        .task(task("b", 0).depends_on(["a"]))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(wf, RunOptions::default()))
        .await
        .unwrap();
    assert_eq!(report.status.as_str(), "succeeded");
    // Tracking is delivered before the run reports its end; the last word on each task is
    // its final status, and the workflow record's is the run's.
    let tracked = script.tracked.lock().unwrap().clone();
    for id in ["a", "b"] {
        let last = tracked
            .iter()
            .rev()
            .find(|u| u.task_id.as_deref() == Some(id))
            .unwrap();
        assert_eq!(last.status, "succeeded", "{id}: {tracked:?}");
        assert_eq!(last.assigned_to.as_deref(), Some("a"));
    }
    assert_eq!(tracked.last().unwrap().task_id, None);
    assert_eq!(tracked.last().unwrap().status, "succeeded");
    // Every finished attempt became an episode, searchable by its task's name.
    let hits = store.search_episodes("a", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].episode.task_id, "a");
    assert_eq!(hits[0].episode.status, TaskStatus::Succeeded);
}
