//! The durable store: what a run records, crash and resume, and who may resume a run.
//!
//! These tests use real time: SQLite works on threads of its own, and paused tokio time would
//! jump ahead (to heartbeats and deadlines) while the runtime waits for them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{RunStatus, TaskStatus, Workflow};
use axon_engine::agent::{AttemptError, AttemptOutput, AttemptRequest, FnAgent};
use axon_engine::bus::{Event, EventKind};
use axon_engine::lease::Holder;
use axon_engine::pool::AgentPool;
use axon_engine::{Engine, EngineError, RunOptions};
use axon_store::{Lease, RunRecord, SqliteStore, Store, TaskRecord};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::common::{pool_of, secs, within};

const AGENTS: &str = "agents:\n  - id: dev\n    capabilities: [x]\n    max_concurrent_tasks: 4\n";

fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(d.as_millis()).expect("ms fit in i64")
}

fn task(id: &str) -> TaskBuilder {
    TaskBuilder::custom(id, format!("Task {id}"), "test")
        .capability("x")
        .estimated_duration(secs(1))
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(path).await.expect("the store opens"))
}

/// One attempt as an agent saw it.
#[derive(Debug, Clone)]
struct Seen {
    task: String,
    attempt: u32,
    upstream: BTreeMap<String, Value>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn seen_of(log: &Log, task: &str) -> Vec<Seen> {
    log.lock()
        .expect("log lock")
        .iter()
        .filter(|s| s.task == task)
        .cloned()
        .collect()
}

/// Agents that log every attempt and output `{"task", "attempt"}`; with `hang`, task `hang`
/// never finishes (until cancelled).
fn logging_pool(log: &Log, hang: bool) -> AgentPool {
    let log = Arc::clone(log);
    let agent = FnAgent::new(move |req: AttemptRequest, progress, cancel| {
        let log = Arc::clone(&log);
        async move {
            let id = req.task.id.as_str().to_owned();
            log.lock().expect("log lock").push(Seen {
                task: id.clone(),
                attempt: req.attempt,
                upstream: req.upstream.to_map(),
            });
            if hang && id == "hang" {
                cancel.cancelled().await;
                return Err(AttemptError::Cancelled);
            }
            progress.report(0.5);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(AttemptOutput {
                output: Some(json!({ "task": id, "attempt": req.attempt })),
                ..AttemptOutput::default()
            })
        }
    });
    pool_of(AGENTS, Arc::new(agent))
}

fn crash_workflow() -> Workflow {
    WorkflowBuilder::new("crash")
        .task(task("a"))
        .task(task("b").depends_on(["a"]))
        .task(task("e"))
        .task(task("hang").depends_on(["a"]))
        .task(task("c").depends_on(["b", "hang"]))
        .build()
        .expect("a valid workflow")
}

/// Starts the workflow on a runtime of its own, waits until `a`, `b` and `e` succeeded and
/// `hang` runs, then kills the runtime without letting anything finish (a crashed engine).
fn run_until_crash(db: &Path, workspace: &Path, workflow: Workflow, log: &Log) -> Uuid {
    let (db, workspace, log) = (db.to_owned(), workspace.to_owned(), Arc::clone(log));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let (run_id, leftovers) = rt.block_on(async {
            let store = open(&db).await;
            let engine = Engine::new(logging_pool(&log, true)).with_store(store.clone());
            let mut rx = engine.bus().subscribe();
            let opts = RunOptions {
                workspace,
                ..RunOptions::default()
            };
            let handle = engine.start(workflow, opts).await.expect("the run starts");
            wait_until_only_hang_runs(&mut rx).await;
            (handle.run_id, (engine, store, handle))
        });
        rt.shutdown_background();
        // A crashed process cleans nothing up: no drop, no finalisation.
        std::mem::forget(leftovers);
        run_id
    })
    .join()
    .expect("the crashing engine's thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_finishes_the_run_without_repeating_succeeded_tasks() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("state/axon.db");
    let workflow = crash_workflow();
    let log: Log = Arc::default();
    let run_id = run_until_crash(&db, dir.path(), workflow.clone(), &log);

    // What the dead engine left behind.
    let store = open(&db).await;
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running);
    let before: BTreeMap<String, TaskRecord> = store
        .tasks(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id.clone(), t))
        .collect();
    for id in ["a", "b", "e"] {
        assert_eq!(before[id].status, TaskStatus::Succeeded, "{id}");
    }
    assert_eq!(before["hang"].status, TaskStatus::Running);
    assert_eq!(before["hang"].attempts, 1);
    assert_eq!(before["c"].status, TaskStatus::Pending);

    // A new engine on the same file carries on.
    let engine = Engine::new(logging_pool(&log, false)).with_store(store.clone());
    let mut rx = engine.bus().subscribe();
    let handle = engine
        .resume(run_id, Some(workflow.clone()), None, None)
        .await
        .unwrap();
    assert_eq!(handle.run_id, run_id);
    let report = within(secs(20), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");

    for id in ["a", "b", "e"] {
        let seen = seen_of(&log, id);
        assert_eq!(
            seen.len(),
            1,
            "{id} succeeded before the crash and never ran again"
        );
    }
    let hang: Vec<u32> = seen_of(&log, "hang").iter().map(|s| s.attempt).collect();
    assert_eq!(
        hang,
        [1, 2],
        "the interrupted attempt is followed by the next number"
    );
    let c = seen_of(&log, "c");
    assert_eq!(c.len(), 1);
    // Outputs recorded before the crash reach dependents after it.
    assert_eq!(c[0].upstream["b"], json!({ "task": "b", "attempt": 1 }));
    assert_eq!(
        c[0].upstream["hang"],
        json!({ "task": "hang", "attempt": 2 })
    );

    let first = within(secs(5), rx.recv()).await.unwrap();
    assert!(
        matches!(
            first.kind,
            EventKind::RunSubmitted {
                resumed: true,
                tasks: 5,
                ..
            }
        ),
        "{first:?}"
    );

    // The store's final state.
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(run.finished_at_ms.is_some());
    assert_eq!(run.created_at_ms, report.created_at_ms);
    let after = store.tasks(run_id).await.unwrap();
    assert!(
        after.iter().all(|t| t.status == TaskStatus::Succeeded),
        "{after:#?}"
    );
    let hang = after.iter().find(|t| t.task_id == "hang").unwrap();
    assert_eq!(hang.attempts, 2);
    for t in &after {
        if t.task_id != "hang" {
            assert_eq!(t.attempts, 1, "{}", t.task_id);
        }
    }
    assert_eq!(
        store.lease(run_id).await.unwrap(),
        None,
        "released at the end"
    );

    // Nothing is left to resume.
    match engine.resume(run_id, Some(workflow), None, None).await {
        Err(EngineError::AlreadyFinished { run_id: r, status }) => {
            assert_eq!(r, run_id);
            assert_eq!(status, RunStatus::Succeeded);
        }
        Err(e) => panic!("expected AlreadyFinished, got {e}"),
        Ok(_) => panic!("expected AlreadyFinished, got a new handle"),
    }
}

fn stored_run(run_id: Uuid, workflow: &Workflow, workspace: &Path) -> RunRecord {
    RunRecord {
        run_id,
        workflow_id: workflow.id.to_string(),
        workflow_name: workflow.name.clone(),
        status: RunStatus::Running,
        created_at_ms: now_ms(),
        finished_at_ms: None,
        workspace: workspace.display().to_string(),
        workflow_source: String::new(),
        workflow_format: "none".into(),
        agents_source: None,
        agents_format: None,
        agents_dir: None,
        cancel_requested: false,
    }
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("`true` starts");
    let pid = child.id();
    child.wait().expect("`true` is reaped");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_respects_the_lease_of_a_live_holder() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir.path().join("axon.db")).await;
    let workflow = WorkflowBuilder::new("held")
        .task(task("a"))
        .task(task("b").depends_on(["a"]))
        .build()
        .unwrap();
    let run_id = Uuid::now_v7();
    let tasks: Vec<TaskRecord> = workflow
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| TaskRecord::pending(t.id.as_str(), i as u32, t.name.clone()))
        .collect();
    let first = Lease {
        host: "build-box-7".into(),
        pid: 4242,
        expires_at_ms: 0,
    };
    store
        .create_run(&stored_run(run_id, &workflow, dir.path()), &tasks, &first)
        .await
        .unwrap();
    // Another host's engine holds the run, with a live lease.
    let elsewhere = Lease {
        host: "build-box-7".into(),
        pid: std::process::id(),
        expires_at_ms: now_ms() + 60_000,
    };
    assert!(
        store
            .swap_lease(run_id, Some(&first), &elsewhere)
            .await
            .unwrap()
    );

    let log: Log = Arc::default();
    let engine = Engine::new(logging_pool(&log, false)).with_store(store.clone());
    match engine
        .resume(run_id, Some(workflow.clone()), None, None)
        .await
    {
        Err(EngineError::Held {
            run_id: r,
            host,
            pid,
            ..
        }) => {
            assert_eq!(r, run_id);
            assert_eq!(host, "build-box-7");
            assert_eq!(pid, std::process::id());
        }
        Err(e) => panic!("expected Held, got {e}"),
        Ok(_) => panic!("expected Held, got a handle"),
    }
    assert_eq!(store.lease(run_id).await.unwrap(), Some(elsewhere.clone()));
    assert!(log.lock().unwrap().is_empty(), "nothing ran");

    // A holder on this host whose process is gone loses the run at once, expiry or not.
    let dead = Lease {
        host: Holder::this_process().host,
        pid: dead_pid(),
        expires_at_ms: now_ms() + 60_000,
    };
    assert!(
        store
            .swap_lease(run_id, Some(&elsewhere), &dead)
            .await
            .unwrap()
    );
    let report = within(
        secs(20),
        engine
            .resume(run_id, Some(workflow.clone()), None, None)
            .await
            .unwrap()
            .wait(),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(seen_of(&log, "a").len(), 1);
    assert_eq!(seen_of(&log, "b").len(), 1);

    assert!(matches!(
        engine
            .resume(Uuid::now_v7(), Some(workflow), None, None)
            .await,
        Err(EngineError::NoSuchRun(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_every_transition_and_the_final_state() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir.path().join("axon.db")).await;
    let log: Log = Arc::default();
    let engine = Engine::new(logging_pool(&log, false)).with_store(store.clone());
    let workflow = WorkflowBuilder::new("recorded")
        .task(task("a"))
        .task(task("b").depends_on(["a"]))
        .task(task("c"))
        .build()
        .unwrap();
    let report = within(
        secs(20),
        engine.run(workflow.clone(), RunOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);
    let run_id = report.run_id;

    let events = store.events(run_id, 0, 10_000).await.unwrap();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_submitted"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert_eq!(
        kinds.iter().filter(|k| k.starts_with("run_")).count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(events.last().unwrap().data["status"], "succeeded");
    for t in &workflow.tasks {
        let id = t.id.as_str();
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| e.task_id.as_deref() == Some(id))
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(
            mine,
            [
                "task_dispatched",
                "task_started",
                "task_progress",
                "task_succeeded"
            ],
            "{id}"
        );
        for e in events.iter().filter(|e| e.task_id.as_deref() == Some(id)) {
            assert_eq!(e.attempt, Some(1), "{id} {}", e.kind);
            assert_eq!(e.agent.as_deref(), Some("dev"), "{id} {}", e.kind);
        }
    }
    // b was dispatched only after a's success was recorded.
    let pos = |task: &str, kind: &str| {
        events
            .iter()
            .position(|e| e.task_id.as_deref() == Some(task) && e.kind == kind)
            .unwrap()
    };
    assert!(pos("a", "task_succeeded") < pos("b", "task_dispatched"));

    let tasks = store.tasks(run_id).await.unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    for t in &tasks {
        assert_eq!(t.status, TaskStatus::Succeeded, "{}", t.task_id);
        assert_eq!(t.attempts, 1);
        assert_eq!(t.agent.as_deref(), Some("dev"));
        assert_eq!(t.output, Some(json!({ "task": t.task_id, "attempt": 1 })));
        assert_eq!(t.progress, Some(1.0));
        assert!(t.started_at_ms.is_some() && t.finished_at_ms.is_some());
        assert_eq!(t.error, None);
    }
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.finished_at_ms, report.finished_at_ms);
    assert_eq!(store.lease(run_id).await.unwrap(), None);
}

/// Starts the crash workflow with the store and waits until only `hang` runs (`a`, `b` and
/// `e` succeeded): nothing changes any more until the run is stopped.
async fn start_until_only_hang_runs(
    store: &Arc<SqliteStore>,
    log: &Log,
) -> (Engine, axon_engine::RunHandle) {
    let engine = Engine::new(logging_pool(log, true)).with_store(store.clone());
    let mut rx = engine.bus().subscribe();
    let handle = engine
        .start(crash_workflow(), RunOptions::default())
        .await
        .expect("the run starts");
    wait_until_only_hang_runs(&mut rx).await;
    (engine, handle)
}

async fn wait_until_only_hang_runs(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let mut waiting: Vec<(&str, &str)> = vec![
        ("a", "task_succeeded"),
        ("b", "task_succeeded"),
        ("e", "task_succeeded"),
        ("hang", "task_started"),
    ];
    while !waiting.is_empty() {
        let e = within(secs(20), rx.recv()).await.expect("the bus is open");
        let (Some(task), kind) = (e.task_id.as_deref(), e.kind.name()) else {
            continue;
        };
        waiting.retain(|w| *w != (task, kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_requested_through_the_store_stops_the_run() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir.path().join("axon.db")).await;
    let log: Log = Arc::default();
    let (_engine, handle) = start_until_only_hang_runs(&store, &log).await;
    let run_id = handle.run_id;
    // What `axon cancel RUN` does from another process.
    assert!(store.request_cancel(run_id).await.unwrap());
    let report = within(secs(20), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    let tasks = store.tasks(run_id).await.unwrap();
    let status = |id: &str| tasks.iter().find(|t| t.task_id == id).unwrap().status;
    assert_eq!(status("hang"), TaskStatus::Cancelled);
    assert_eq!(status("c"), TaskStatus::Cancelled);
    assert_eq!(status("a"), TaskStatus::Succeeded);
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        !store.request_cancel(run_id).await.unwrap(),
        "the run is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_lost_its_lease_stops_and_leaves_the_state_to_the_new_holder() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir.path().join("axon.db")).await;
    let log: Log = Arc::default();
    let (_engine, handle) = start_until_only_hang_runs(&store, &log).await;
    let run_id = handle.run_id;

    // Another engine takes the run over (the heartbeat may renew meanwhile: retry the swap).
    let other = Lease {
        host: "another-host".into(),
        pid: 7,
        expires_at_ms: now_ms() + 60_000,
    };
    loop {
        let current = store.lease(run_id).await.unwrap();
        if store
            .swap_lease(run_id, current.as_ref(), &other)
            .await
            .unwrap()
        {
            break;
        }
    }
    let tasks_at_takeover = store.tasks(run_id).await.unwrap();
    let events_at_takeover = store.events(run_id, 0, 10_000).await.unwrap();

    match within(secs(20), handle.wait()).await {
        Err(EngineError::LostLease(r)) => assert_eq!(r, run_id),
        Err(e) => panic!("expected LostLease, got {e}"),
        Ok(report) => panic!("expected LostLease, got {report:#?}"),
    }
    let hang = seen_of(&log, "hang");
    assert_eq!(hang.len(), 1);
    // The old engine wrote nothing after it lost the run: no `cancelled` states or events
    // over what the new holder owns now.
    assert_eq!(store.tasks(run_id).await.unwrap(), tasks_at_takeover);
    assert_eq!(
        store.events(run_id, 0, 10_000).await.unwrap(),
        events_at_takeover
    );
    assert_eq!(store.lease(run_id).await.unwrap(), Some(other));
    let run = store.run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running);
}
