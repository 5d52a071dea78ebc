//! Stopping a run: `RunHandle::cancel`, the engine's root token, the workflow timeout.

use std::sync::Arc;

use axon_core::builder::WorkflowBuilder;
use axon_core::model::{ErrorType, Priority, RunStatus, TaskStatus};
use axon_core::retry::RetryOverride;
use axon_engine::agent::{AttemptError, AttemptRequest, FnAgent};
use axon_engine::bus::EventKind;
use axon_engine::{Engine, RunOptions};
use tokio::time::Instant;

use crate::common::{
    Recorder, pool_of, pool_with, report_of, secs, sleeper, task, until_started, within,
};

const TWO_SLOTS: &str = "agents:\n  - id: me\n    capabilities: [x]\n    max_concurrent_tasks: 2\n";

#[tokio::test(start_paused = true)]
async fn cancel_stops_running_tasks_and_cancels_those_not_started() {
    let rec = Recorder::default();
    let engine = Engine::new(pool_with(TWO_SLOTS, |s| sleeper(s.id.as_str(), &rec)));
    let mut events = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("cancel me")
        .task(task("long-1", 3_600_000).estimated_duration(secs(60)))
        .task(task("long-2", 3_600_000).estimated_duration(secs(60)))
        .task(task("next", 10).depends_on(["long-1"]))
        // Ready, but both slots are taken.
        .task(task("queued", 10).priority(Priority::Low))
        .build()
        .unwrap();
    let handle = engine.start(workflow, RunOptions::default()).await.unwrap();
    // Wait until both long tasks run.
    until_started(&mut events, 2).await;
    tokio::time::sleep(secs(5)).await;
    let cancelled_at = Instant::now();
    handle.cancel();
    let report = within(secs(60), handle.wait()).await.unwrap();

    assert_eq!(report.status, RunStatus::Cancelled);
    for id in ["long-1", "long-2"] {
        let t = report_of(&report, id);
        assert_eq!(t.status, TaskStatus::Cancelled, "{id}");
        assert_eq!(t.error.as_deref(), Some("run cancelled"), "{id}");
        let run = rec.one(id);
        assert!(run.cancelled, "{id}'s agent saw the cancellation");
        assert_eq!(run.ended, Some(cancelled_at), "{id} stopped at once");
    }
    for id in ["next", "queued"] {
        let t = report_of(&report, id);
        assert_eq!(t.status, TaskStatus::Cancelled, "{id}");
        assert_eq!(t.attempts, 0, "{id}");
        assert!(rec.of(id).is_empty(), "{id} must not run");
    }
    assert_eq!(report.totals.cancelled, 4);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_engine_cancels_its_runs() {
    let rec = Recorder::default();
    let engine = Engine::new(pool_with(TWO_SLOTS, |s| sleeper(s.id.as_str(), &rec)));
    let workflow = WorkflowBuilder::new("engine stop")
        .task(task("long", 3_600_000).estimated_duration(secs(60)))
        .task(task("next", 10).depends_on(["long"]))
        .build()
        .unwrap();
    let handle = engine.start(workflow, RunOptions::default()).await.unwrap();
    tokio::time::sleep(secs(1)).await;
    engine.cancellation().cancel();
    let report = within(secs(60), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert!(rec.one("long").cancelled);
    assert_eq!(report_of(&report, "next").status, TaskStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_run_past_the_workflow_timeout_fails_and_cancels_what_is_left() {
    let rec = Recorder::default();
    let engine = Engine::new(pool_with(TWO_SLOTS, |s| sleeper(s.id.as_str(), &rec)));
    // The plan fits (critical path 3 × 2 s = 6 s ≤ 10 s); the agents take 6 s per task.
    let workflow = WorkflowBuilder::new("deadline")
        .timeout(secs(10))
        .task(task("a", 6_000).estimated_duration(secs(2)))
        .task(
            task("b", 6_000)
                .estimated_duration(secs(2))
                .depends_on(["a"]),
        )
        .task(
            task("c", 6_000)
                .estimated_duration(secs(2))
                .depends_on(["b"]),
        )
        .task(task("quick", 1_000).estimated_duration(secs(1)))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report_of(&report, "a").status, TaskStatus::Succeeded);
    assert_eq!(report_of(&report, "quick").status, TaskStatus::Succeeded);
    for id in ["b", "c"] {
        let t = report_of(&report, id);
        assert_eq!(t.status, TaskStatus::Cancelled, "{id}");
        assert!(
            t.error
                .as_deref()
                .is_some_and(|e| e.contains("workflow timed out")),
            "{id}: {:?}",
            t.error
        );
    }
    let b = rec.one("b");
    assert!(b.cancelled, "b's agent was stopped");
    assert_eq!(b.ended, Some(t0 + secs(10)), "stopped at the deadline");
    assert!(rec.of("c").is_empty(), "c never started");
    assert_eq!(report_of(&report, "c").attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_backoff() {
    let agent = FnAgent::new(|_: AttemptRequest, _, _| async {
        Err::<axon_engine::agent::AttemptOutput, _>(AttemptError::failed(
            ErrorType::Network,
            "unreachable",
        ))
    });
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let mut events = engine.bus().subscribe();
    let hour = secs(3600);
    let workflow = WorkflowBuilder::new("backoff")
        .timeout(secs(4 * 3600))
        .retry(&RetryOverride {
            initial_delay: Some(hour),
            max_delay: Some(hour),
            ..RetryOverride::default()
        })
        .task(task("flaky", 10))
        .build()
        .unwrap();
    let handle = engine.start(workflow, RunOptions::default()).await.unwrap();
    loop {
        let e = within(secs(60), events.recv()).await.unwrap();
        if matches!(e.kind, EventKind::TaskRetrying { .. }) {
            break;
        }
    }
    let t0 = Instant::now();
    handle.cancel();
    let report = within(secs(60), handle.wait()).await.unwrap();
    assert_eq!(t0.elapsed(), secs(0), "the backoff was not waited out");
    assert_eq!(report.status, RunStatus::Cancelled);
    let flaky = report_of(&report, "flaky");
    assert_eq!(flaky.status, TaskStatus::Cancelled);
    assert_eq!(flaky.attempts, 1);
}
