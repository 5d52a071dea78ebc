//! [`HttpCortex`] in whole runs on in-process agents, against the contract-faithful fake Cortex
//! server: tracking (one workflow task and one task per Axon task, tags, statuses, the outbox
//! surviving an outage and delivered exactly once later), a Cortex session per attempt (merged
//! on success, always deleted, a partial merge failing the task), Cortex memory in the agents'
//! context, and what `connect` says when the server is not usable.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{ErrorType, Workflow};
use axon_engine::agent::{AttemptError, AttemptOutput, AttemptRequest, FnAgent};
use axon_engine::bus::EventKind;
use axon_engine::cortex::http::{ClientConfig, CortexError};
use axon_engine::cortex::{CortexConfig, CortexRoles, HttpCortex, deliver_backlog};
use axon_engine::{Engine, RunOptions, RunReport};
use axon_store::{SqliteStore, Store};
use axon_testkit::cortex::{
    Episode, FakeConfig, FakeCortex, SessionChanges, TaskStatus as FakeStatus,
};
use serde_json::json;
use tempfile::TempDir;

use crate::common::{events_until_finished, pool_of, report_of};

const AGENTS: &str = "agents:\n  - id: dev\n    capabilities: [x]\n    max_concurrent_tasks: 4\n";

/// A fake Cortex, a store in a temp dir, and what the agents saw.
struct Rig {
    cortex: FakeCortex,
    store: Arc<SqliteStore>,
    dir: TempDir,
    seen: Arc<Mutex<Vec<AttemptRequest>>>,
}

impl Rig {
    async fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("axon.db"))
                .await
                .unwrap(),
        );
        Self {
            cortex: FakeCortex::start(FakeConfig::default()).await,
            store,
            dir,
            seen: Arc::default(),
        }
    }

    fn config(&self) -> CortexConfig {
        let mut client = ClientConfig::new(self.cortex.url());
        client.api_key = Some(self.cortex.api_key().to_owned());
        client.timeout = Duration::from_secs(5);
        let mut config = CortexConfig::new(client);
        config.drain_timeout = Duration::from_secs(5);
        config
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    /// An engine whose agent records its requests and fails tasks whose input says so.
    async fn engine(&self, config: CortexConfig) -> Engine {
        let seen = Arc::clone(&self.seen);
        let agent = FnAgent::new(move |req: AttemptRequest, progress, _cancel| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(req.clone());
                progress.report(0.5);
                if let Some(ms) = req.task.input["ms"].as_u64() {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if req.task.input["fail"].as_bool() == Some(true) {
                    return Err(AttemptError::failed(ErrorType::AgentError, "exit status 3"));
                }
                Ok(AttemptOutput {
                    output: Some(json!({ "task": req.task.id.as_str() })),
                    ..AttemptOutput::default()
                })
            }
        });
        let bridge = HttpCortex::connect(config, self.store()).await.unwrap();
        Engine::new(pool_of(AGENTS, Arc::new(agent)))
            .with_store(self.store())
            .with_cortex(Arc::new(bridge))
    }

    async fn run(&self, engine: &Engine, wf: Workflow) -> (RunReport, Vec<String>) {
        let mut events = engine.bus().subscribe();
        let opts = RunOptions {
            workspace: self.dir.path().join("ws"),
            ..RunOptions::default()
        };
        std::fs::create_dir_all(&opts.workspace).unwrap();
        let report = engine.run(wf, opts).await.unwrap();
        let notices = events_until_finished(&mut events)
            .await
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::RunNotice { message } => Some(message),
                _ => None,
            })
            .collect();
        (report, notices)
    }

    fn requests(&self, method: &str, path: &str) -> usize {
        self.cortex
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}

fn task(id: &str) -> TaskBuilder {
    TaskBuilder::custom(id, format!("Build the {id} module"), "h")
        .capability("x")
        .estimated_duration(Duration::from_secs(1800))
}

/// a -> b; c fails (not retried); d depends on c (skipped).
fn mixed() -> Workflow {
    WorkflowBuilder::new("Ship the feature")
        .description("four tasks")
        .max_retries(0)
        .task(task("a"))
        .task(task("b").depends_on(["a"]))
        .task(task("c").input(json!({ "fail": true })))
        .task(task("d").depends_on(["c"]))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_tracked_as_one_workflow_task_with_one_linked_task_per_axon_task() {
    let rig = Rig::new().await;
    let engine = rig.engine(rig.config()).await;
    let (report, notices) = rig.run(&engine, mixed()).await;
    assert_eq!(report.status.as_str(), "failed");
    let state = rig.cortex.state();
    assert_eq!(state.tasks.len(), 5, "{:#?}", state.tasks);
    let run_tag = format!("axon-run:{}", report.run_id);
    let workflows: Vec<_> = state
        .tasks
        .iter()
        .filter(|t| t.tags.contains(&run_tag))
        .collect();
    assert_eq!(workflows.len(), 1);
    let wf = workflows[0];
    assert_eq!(wf.tags, ["axon".to_owned(), run_tag.clone()]);
    assert_eq!(wf.title, "Ship the feature");
    assert_eq!(wf.description, "four tasks");
    // The critical path: a then b, half an hour each.
    assert_eq!(wf.estimated_hours, Some(1.0));
    assert_eq!(wf.status, FakeStatus::Blocked, "the run failed");
    let parent = format!("axon-parent:{}", wf.id);
    let of = |id: &str| {
        let tag = format!("axon-task:{id}");
        let found: Vec<_> = state
            .tasks
            .iter()
            .filter(|t| t.tags.contains(&tag))
            .collect();
        assert_eq!(found.len(), 1, "one Cortex task for {id}");
        assert_eq!(found[0].tags, [parent.clone(), tag]);
        found[0].clone()
    };
    let (a, b, c, d) = (of("a"), of("b"), of("c"), of("d"));
    assert_eq!(a.title, "Build the a module");
    for done in [&a, &b] {
        assert_eq!(done.status, FakeStatus::Done);
        assert_eq!(done.progress, 1.0);
        assert_eq!(done.assigned_to, ["dev"]);
        assert!(done.actual_hours.is_some());
    }
    assert_eq!(c.status, FakeStatus::Blocked);
    assert_eq!(c.completion_note.as_deref(), Some("exit status 3"));
    assert_eq!(d.status, FakeStatus::Cancelled);
    // Every create went once; the run says where it is tracked.
    assert_eq!(rig.requests("POST", "/api/v1/tasks"), 5);
    assert!(
        notices
            .iter()
            .any(|n| n.contains(&format!("as task {}", wf.id))),
        "{notices:?}"
    );
    let counts = rig.store.outbox_counts(report.run_id).await.unwrap();
    assert!(counts.is_empty(), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_while_its_tasks_are_still_being_created_creates_each_once() {
    let rig = Rig::new().await;
    // Every task call takes 100 ms: the courier's first round, 41 creates 8 at a time, outlasts
    // the run (40 tasks of 30 ms, 4 at a time), which then stops it with creates in flight
    // and delivers the rest itself.
    rig.cortex
        .faults()
        .on("/api/v1/tasks")
        .set_delay(Duration::from_millis(100));
    let mut config = rig.config();
    config.roles = CortexRoles {
        tracking: true,
        memory: false,
        sessions: false,
    };
    let engine = rig.engine(config).await;
    let mut wf = WorkflowBuilder::new("Many").description("forty tasks");
    for i in 0..40 {
        wf = wf.task(task(&format!("t{i}")).input(json!({ "ms": 30 })));
    }
    let (report, notices) = rig.run(&engine, wf.build().unwrap()).await;
    assert_eq!(report.status.as_str(), "succeeded");
    assert_eq!(
        rig.requests("POST", "/api/v1/tasks"),
        41,
        "each create once"
    );
    let state = rig.cortex.state();
    assert_eq!(state.tasks.len(), 41);
    assert!(
        state.tasks.iter().all(|t| t.status == FakeStatus::Done),
        "{:#?}",
        state.tasks
    );
    let counts = rig.store.outbox_counts(report.run_id).await.unwrap();
    assert!(counts.is_empty(), "{counts:?} {notices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_gets_a_session_that_is_merged_on_success_and_always_deleted() {
    let rig = Rig::new().await;
    let engine = rig.engine(rig.config()).await;
    let (report, _) = rig.run(&engine, mixed()).await;
    let state = rig.cortex.state();
    assert!(
        state.sessions.is_empty(),
        "sessions left: {:#?}",
        state.sessions
    );
    let seen = rig.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "a, b and c ran");
    let ws = &state.workspaces[0].id;
    for req in &seen {
        let cortex = req
            .cortex
            .as_ref()
            .expect("the attempt has a Cortex session");
        assert_eq!(cortex.url, rig.cortex.url());
        assert_eq!(&cortex.workspace_id, ws);
        assert_eq!(cortex.api_key, None, "no agent opted in to the key");
        assert!(state.deleted_sessions.contains(&cortex.session_id));
        let stdin = serde_json::to_value(req).unwrap();
        assert_eq!(stdin["cortex"]["session_id"], cortex.session_id.as_str());
        assert_eq!(stdin["cortex"]["workspace_id"], ws.as_str());
    }
    let merged: Vec<&str> = state.merges.iter().map(|m| m.session_id.as_str()).collect();
    let session_of = |id: &str| {
        seen.iter()
            .find(|r| r.task.id.as_str() == id)
            .and_then(|r| r.cortex.clone())
            .unwrap()
            .session_id
            .clone()
    };
    assert!(merged.contains(&session_of("a").as_str()));
    assert!(merged.contains(&session_of("b").as_str()));
    assert!(
        !merged.contains(&session_of("c").as_str()),
        "a failed attempt is not merged"
    );
    // Sessions were named after run, task and attempt, typed by the task.
    let creates: Vec<serde_json::Value> = rig
        .cortex
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/sessions")
        .filter_map(|r| r.body_json())
        .collect();
    assert!(creates.contains(&json!({
        "name": format!("axon/{}/a/1", report.run_id),
        "agent_type": "custom",
        "workspace_id": ws,
    })));
    assert!(rig.store.cortex_sessions(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_cortex_merge_fails_the_task_as_a_merge_conflict_and_skips_dependents() {
    let rig = Rig::new().await;
    rig.cortex.set_session_changes(
        "/a/",
        SessionChanges {
            modified: 2,
            conflicts: vec!["src/lib.rs".into()],
        },
    );
    let engine = rig.engine(rig.config()).await;
    let wf = WorkflowBuilder::new("w")
        .max_retries(0)
        .task(task("a"))
        .task(task("b").depends_on(["a"]))
        .build()
        .unwrap();
    let (report, _) = rig.run(&engine, wf).await;
    let a = report_of(&report, "a");
    assert_eq!(a.status.as_str(), "failed");
    assert_eq!(a.error_kind, Some(ErrorType::MergeConflict));
    assert!(
        a.error.as_deref().unwrap().contains("partial"),
        "{:?}",
        a.error
    );
    assert_eq!(report_of(&report, "b").status.as_str(), "skipped");
    assert!(
        rig.cortex.state().sessions.is_empty(),
        "the conflicting session is deleted too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cortex_memory_joins_local_episodes_in_the_context_and_a_failed_search_warns_once() {
    let rig = Rig::new().await;
    rig.cortex.seed_memory([
        Episode::new("ep-1", "Notes on the billing module", "task"),
        Episode::new("ep-2", "Unrelated", "task"),
    ]);
    let engine = rig.engine(rig.config()).await;
    let wf = WorkflowBuilder::new("w")
        .task(TaskBuilder::custom("bill", "Build the billing module", "h").capability("x"))
        .build()
        .unwrap();
    rig.run(&engine, wf).await;
    let context = rig.seen.lock().unwrap()[0].context.clone();
    assert_eq!(context.len(), 1, "{context:#?}");
    assert_eq!(context[0]["source"], "cortex");
    assert_eq!(context[0]["id"], "ep-1");
    assert_eq!(context[0]["content"], "Notes on the billing module");

    // A second run also finds the first run's local episode; Cortex memory now fails.
    rig.cortex.faults().on("/api/v1/memory").fail_next(100, 503);
    let engine = rig.engine(rig.config()).await;
    let wf = WorkflowBuilder::new("w")
        .task(TaskBuilder::custom("bill", "Build the billing module", "h").capability("x"))
        .task(TaskBuilder::custom("bill2", "Test the billing module", "h").capability("x"))
        .build()
        .unwrap();
    let (report, notices) = rig.run(&engine, wf).await;
    assert_eq!(report.status.as_str(), "succeeded");
    let warnings: Vec<_> = notices
        .iter()
        .filter(|n| n.contains("memory search failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{notices:?}");
    let seen = rig.seen.lock().unwrap().clone();
    for req in &seen[1..] {
        assert!(
            req.context.iter().all(|e| e["source"] == "axon"),
            "{:#?}",
            req.context
        );
        assert!(!req.context.is_empty(), "local episodes are still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cortex_down_mid_run_loses_nothing_and_the_backlog_is_delivered_exactly_once() {
    let rig = Rig::new().await;
    let mut config = rig.config();
    config.roles = CortexRoles {
        tracking: true,
        memory: false,
        sessions: false,
    };
    config.drain_timeout = Duration::from_millis(500);
    let faults = rig.cortex.faults();
    let seen = Arc::clone(&rig.seen);
    // The first task takes Cortex down as it starts.
    let agent = FnAgent::new(move |req: AttemptRequest, _p, _c| {
        let faults = faults.clone();
        let seen = Arc::clone(&seen);
        async move {
            if req.task.id.as_str() == "a" {
                faults.set_down(true).await;
            }
            seen.lock().unwrap().push(req);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(AttemptOutput::default())
        }
    });
    let bridge = HttpCortex::connect(config.clone(), rig.store())
        .await
        .unwrap();
    let engine = Engine::new(pool_of(AGENTS, Arc::new(agent)))
        .with_store(rig.store())
        .with_cortex(Arc::new(bridge));
    let short = |id: &str| task(id).estimated_duration(Duration::from_secs(60));
    let wf = WorkflowBuilder::new("w")
        .task(short("a"))
        .task(short("b").depends_on(["a"]))
        .task(short("c").depends_on(["b"]))
        .build()
        .unwrap();
    let (report, notices) = rig.run(&engine, wf).await;
    assert_eq!(
        report.status.as_str(),
        "succeeded",
        "Cortex down does not fail the run"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.contains("not delivered yet") && n.contains("axon cortex sync")),
        "{notices:?}"
    );
    let owed = rig.store.outbox_counts(report.run_id).await.unwrap();
    assert!(owed.undelivered > 0);

    rig.cortex.faults().set_down(false).await;
    let sync = deliver_backlog(
        config.client.clone(),
        rig.store(),
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(sync.is_complete(), "{sync:?}");
    assert_eq!(sync.runs.len(), 1);
    let state = rig.cortex.state();
    assert_eq!(state.tasks.len(), 4, "{:#?}", state.tasks);
    assert!(
        state.tasks.iter().all(|t| t.status == FakeStatus::Done),
        "{:#?}",
        state.tasks
    );
    // Nothing more to deliver, and no create went twice.
    let posts = rig.requests("POST", "/api/v1/tasks");
    let again = deliver_backlog(
        config.client.clone(),
        rig.store(),
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(again.runs.is_empty(), "{again:?}");
    assert_eq!(rig.requests("POST", "/api/v1/tasks"), posts);
    assert!(
        posts <= 4 + 1,
        "one create per task, plus at most the one cut off: {posts}"
    );
    assert!(
        rig.store
            .outbox_counts(report.run_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_failing_tracking_calls_are_retried_until_delivered() {
    let rig = Rig::new().await;
    let mut config = rig.config();
    config.roles.sessions = false;
    config.roles.memory = false;
    // Room for the retries' backoff (0.2 s doubling, with jitter) and the server's 1 s.
    config.drain_timeout = Duration::from_secs(20);
    let engine = rig.engine(config).await;
    rig.cortex
        .faults()
        .on("/api/v1/tasks")
        .fail_next(2, 503)
        .throttle_next(1, Duration::from_secs(1))
        .fail_next(1, 502);
    let (report, _) = rig
        .run(
            &engine,
            WorkflowBuilder::new("w")
                .task(task("a"))
                .task(task("b"))
                .build()
                .unwrap(),
        )
        .await;
    assert_eq!(report.status.as_str(), "succeeded");
    let state = rig.cortex.state();
    assert_eq!(state.tasks.len(), 3, "{:#?}", state.tasks);
    assert!(
        state.tasks.iter().all(|t| t.status == FakeStatus::Done),
        "{:#?}",
        state.tasks
    );
    assert!(
        rig.store
            .outbox_counts(report.run_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agents_that_opt_in_get_the_api_key() {
    let rig = Rig::new().await;
    let seen = Arc::clone(&rig.seen);
    let agent = Arc::new(FnAgent::new(move |req: AttemptRequest, _p, _c| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(req);
            Ok(AttemptOutput::default())
        }
    }));
    let agents = "agents:\n  - id: plain\n    capabilities: [x]\n  - id: trusted\n    capabilities: [y]\n    cortex_api_key: true\n";
    let bridge = HttpCortex::connect(rig.config(), rig.store())
        .await
        .unwrap();
    let engine = Engine::new(pool_of(agents, agent))
        .with_store(rig.store())
        .with_cortex(Arc::new(bridge));
    let wf = WorkflowBuilder::new("w")
        .task(task("p"))
        .task(TaskBuilder::custom("t", "T", "h").capability("y"))
        .build()
        .unwrap();
    rig.run(&engine, wf).await;
    let seen = rig.seen.lock().unwrap().clone();
    let key_of = |id: &str| {
        seen.iter()
            .find(|r| r.task.id.as_str() == id)
            .and_then(|r| r.cortex.as_ref())
            .unwrap()
            .api_key
            .clone()
    };
    assert_eq!(key_of("p"), None);
    assert_eq!(key_of("t").as_deref(), Some(rig.cortex.api_key()));
    for req in &seen {
        let stdin = serde_json::to_string(req).unwrap();
        assert!(
            !stdin.contains(rig.cortex.api_key()),
            "the key is never in stdin"
        );
        assert!(
            !format!("{req:?}").contains(rig.cortex.api_key()),
            "nor in Debug"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_says_what_is_wrong_with_the_server() {
    let rig = Rig::new().await;
    let config = rig.config();
    rig.cortex.faults().set_unhealthy(true);
    let e = HttpCortex::connect(config.clone(), rig.store())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, CortexError::Unhealthy { .. }), "{e}");
    rig.cortex.faults().set_unhealthy(false);

    let mut wrong = config.clone();
    wrong.client.api_key = Some("not-the-key".into());
    let e = HttpCortex::connect(wrong.clone(), rig.store())
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), Some(401), "{e}");
    // Tracking alone needs no key.
    wrong.roles = CortexRoles {
        tracking: true,
        memory: false,
        sessions: false,
    };
    assert!(HttpCortex::connect(wrong, rig.store()).await.is_ok());

    rig.cortex.faults().set_down(true).await;
    let e = HttpCortex::connect(config, rig.store())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, CortexError::Refused { .. }), "{e}");
    assert!(e.to_string().contains(&rig.cortex.url()), "{e}");
}
