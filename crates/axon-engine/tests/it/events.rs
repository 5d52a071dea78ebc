//! The event bus: a subscriber sees a whole run, in order, without losses.

use std::collections::HashMap;

use axon_core::builder::WorkflowBuilder;
use axon_core::model::RunStatus;
use axon_engine::bus::EventKind;
use axon_engine::{Engine, RunOptions};

use crate::common::{Recorder, pool_with, secs, sleeper, task, within};

#[tokio::test(start_paused = true)]
async fn a_subscriber_sees_every_event_of_a_thousand_task_run() {
    const N: usize = 1_000;
    let rec = Recorder::default();
    let yaml = "agents:
  - id: a
    capabilities: [x]
    max_concurrent_tasks: 32
  - id: b
    capabilities: [x]
    max_concurrent_tasks: 32
";
    let engine = Engine::new(pool_with(yaml, |s| sleeper(s.id.as_str(), &rec)));
    let mut rx = engine.bus().subscribe();
    // 100 chains of 10 tasks.
    let mut wf = WorkflowBuilder::new("a thousand");
    for i in 0..N {
        let mut t = task(&format!("t{i}"), 1 + (i as u64 % 3));
        if i % 10 != 0 {
            t = t.depends_on([format!("t{}", i - 1)]);
        }
        wf = wf.task(t);
    }
    let handle = engine
        .start(wf.build().unwrap(), RunOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id;
    let report = within(secs(3600), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);

    // The run is over: everything it published is already queued.
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(events.iter().all(|e| e.run_id == run_id));
    assert!(
        matches!(
            events.first().map(|e| &e.kind),
            Some(EventKind::RunSubmitted {
                tasks: N,
                resumed: false,
                ..
            })
        ),
        "first: {:?}",
        events.first()
    );
    assert!(
        matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::RunFinished {
                status: RunStatus::Succeeded,
                ..
            })
        ),
        "last: {:?}",
        events.last()
    );
    let run_events = events.iter().filter(|e| e.task_id.is_none()).count();
    assert_eq!(run_events, 2, "one RunSubmitted and one RunFinished");

    // Per task: dispatched, started, succeeded, once each and in that order.
    let mut seen: HashMap<&str, Vec<&'static str>> = HashMap::new();
    for e in &events {
        if let Some(t) = e.task_id.as_deref() {
            seen.entry(t).or_default().push(e.kind.name());
        }
    }
    assert_eq!(seen.len(), N);
    for i in 0..N {
        let id = format!("t{i}");
        assert_eq!(
            seen.get(id.as_str()).map(Vec::as_slice),
            Some(&["task_dispatched", "task_started", "task_succeeded"][..]),
            "{id}"
        );
    }
    assert_eq!(rec.all().len(), N, "every task ran once");
}

#[tokio::test(start_paused = true)]
async fn reported_durations_and_queue_waits_follow_tokio_time() {
    let rec = Recorder::default();
    // One slot: `second` waits for `first`.
    let yaml = "agents:\n  - id: solo\n    capabilities: [x]\n";
    let engine = Engine::new(pool_with(yaml, |s| sleeper(s.id.as_str(), &rec)));
    let mut rx = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("durations")
        .task(task("first", 100).estimated_duration(secs(2)))
        .task(task("second", 50))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);

    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let of = |task: &str, kind: &str| {
        events
            .iter()
            .find(|e| e.task_id.as_deref() == Some(task) && e.kind.name() == kind)
            .map(|e| e.kind.clone())
            .unwrap_or_else(|| panic!("no {kind} for {task}"))
    };
    for (task, waited, took) in [("first", 0.0, 0.1), ("second", 0.1, 0.05)] {
        match of(task, "task_dispatched") {
            EventKind::TaskDispatched { queue_wait_secs } => {
                assert!(
                    close(queue_wait_secs, waited),
                    "{task} waited {queue_wait_secs}"
                );
            }
            other => unreachable!("{other:?}"),
        }
        match of(task, "task_succeeded") {
            EventKind::TaskSucceeded { duration_secs } => {
                assert!(close(duration_secs, took), "{task} took {duration_secs}");
            }
            other => unreachable!("{other:?}"),
        }
    }
    match events.last().map(|e| &e.kind) {
        Some(EventKind::RunFinished { duration_secs, .. }) => {
            assert!(close(*duration_secs, 0.15), "the run took {duration_secs}");
        }
        other => panic!("{other:?}"),
    }
    assert!(close(report.totals.queue_wait_secs, 0.1));
    let stats = engine.pool().stats();
    assert_eq!(stats[0].busy, crate::common::ms(150));
    assert_eq!(stats[0].tasks_run, 2);
}
