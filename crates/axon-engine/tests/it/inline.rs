//! Inline attempts (`FnAgent::inline`, `Execution::Inline`): polled by the run's dispatcher
//! instead of tokio tasks of their own, with the same outcomes as spawned ones — outputs,
//! capacity, failures, panics, timeouts, cancellation — and agents that ignore a cancellation
//! abandoned after the stop wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axon_core::builder::WorkflowBuilder;
use axon_core::model::{ErrorType, RunStatus, TaskStatus};
use axon_engine::agent::{AttemptError, AttemptOutput, AttemptRequest, FnAgent};
use axon_engine::{Engine, RunOptions};
use serde_json::json;
use tokio::time::Instant;

use crate::common::{
    Recorder, inline_sleeper, ms, pool_of, report_of, secs, task, until_started, within,
};

const TWO_SLOTS: &str = "agents:\n  - id: me\n    capabilities: [x]\n    max_concurrent_tasks: 2\n";

#[tokio::test(start_paused = true)]
async fn inline_attempts_run_a_dag_with_outputs_and_capacity_kept() {
    let rec = Recorder::default();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let sleeper = inline_sleeper("me", &rec);
    let agent = {
        let seen = Arc::clone(&seen);
        FnAgent::new(move |req: AttemptRequest, progress, cancel| {
            let seen = Arc::clone(&seen);
            let sleeper = Arc::clone(&sleeper);
            async move {
                if req.task.id.as_str() == "join" {
                    *seen.lock().unwrap() = Some(req.upstream.clone());
                }
                sleeper.execute(req, progress, cancel).await
            }
        })
        .inline()
    };
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let workflow = WorkflowBuilder::new("diamond")
        .task(task("a", 100))
        .task(task("b", 300).depends_on(["a"]))
        .task(task("c", 200).depends_on(["a"]))
        .task(task("d", 200).depends_on(["a"]))
        .task(task("join", 10).depends_on(["b", "c"]))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.totals.succeeded, 5);
    let upstream = seen.lock().unwrap().clone().expect("join ran");
    assert_eq!(upstream["b"], json!({ "task": "b" }));
    assert_eq!(upstream["c"], json!({ "task": "c" }));
    // Never more than the agent's two slots at once, checked from the agent's own times.
    let all = rec.all();
    for e in &all {
        let overlapping = all
            .iter()
            .filter(|o| o.started <= e.started && o.ended.is_none_or(|end| end > e.started))
            .count();
        assert!(
            overlapping <= 2,
            "{} ran beside {overlapping} attempts",
            e.task
        );
    }
    // b, c and d were ready together after a: two ran at once (no level barrier, no idling).
    assert_eq!(rec.one("b").started, rec.one("a").ended.unwrap());
    assert_eq!(engine.pool().stats()[0].running, 0);
}

#[tokio::test(start_paused = true)]
async fn an_inline_agent_that_panics_fails_its_task_and_the_run_goes_on() {
    let agent = FnAgent::new(|req: AttemptRequest, _, _| async move {
        tokio::time::sleep(ms(5)).await;
        if req.task.id.as_str() == "boom" {
            panic!("inline kaboom");
        }
        Ok(AttemptOutput::default())
    })
    .inline();
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let workflow = WorkflowBuilder::new("panics")
        .task(task("boom", 5))
        .task(task("after", 5).depends_on(["boom"]))
        .task(task("fine", 5))
        .build()
        .unwrap();
    let report = within(secs(60), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Failed);
    let boom = report_of(&report, "boom");
    assert_eq!(boom.status, TaskStatus::Failed);
    assert_eq!(boom.error.as_deref(), Some("agent panicked: inline kaboom"));
    assert_eq!(report_of(&report, "after").status, TaskStatus::Skipped);
    assert_eq!(report_of(&report, "fine").status, TaskStatus::Succeeded);
    assert_eq!(engine.pool().stats()[0].running, 0);
}

#[tokio::test(start_paused = true)]
async fn an_inline_attempt_times_out_and_is_retried_with_a_fresh_token() {
    let calls = Arc::new(AtomicU32::new(0));
    let agent = {
        let calls = Arc::clone(&calls);
        FnAgent::new(move |req: AttemptRequest, _, cancel| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // A fresh token per attempt: the first attempt's timeout does not cancel the
                // second before it starts.
                assert!(
                    !cancel.is_cancelled(),
                    "attempt {} starts cancelled",
                    req.attempt
                );
                if req.attempt == 1 {
                    cancel.cancelled().await;
                    return Err(AttemptError::Cancelled);
                }
                Ok(AttemptOutput::default())
            }
        })
        .inline()
    };
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let workflow = WorkflowBuilder::new("timeouts")
        .task(
            task("slow", 0)
                .timeout(secs(1))
                .retry(axon_core::retry::RetryOverride {
                    on: Some(vec![ErrorType::Timeout]),
                    ..Default::default()
                }),
        )
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    let slow = report_of(&report, "slow");
    assert_eq!(slow.status, TaskStatus::Succeeded, "{slow:?}");
    assert_eq!(slow.attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_stops_inline_agents_and_abandons_those_that_ignore_it() {
    let rec = Recorder::default();
    let polite = inline_sleeper("me", &rec);
    // "stubborn" ignores its token: it only ends when its future is dropped.
    let agent = FnAgent::new(move |req: AttemptRequest, progress, cancel| {
        let polite = Arc::clone(&polite);
        async move {
            if req.task.id.as_str() == "stubborn" {
                std::future::pending::<()>().await;
            }
            polite.execute(req, progress, cancel).await
        }
    })
    .inline();
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let mut events = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("cancel inline")
        .task(task("polite", 3_600_000).estimated_duration(secs(60)))
        .task(task("stubborn", 0).estimated_duration(secs(60)))
        .task(task("next", 10).depends_on(["polite"]))
        .build()
        .unwrap();
    let handle = engine.start(workflow, RunOptions::default()).await.unwrap();
    until_started(&mut events, 2).await;
    tokio::time::sleep(secs(5)).await;
    let cancelled_at = Instant::now();
    handle.cancel();
    let report = within(secs(120), handle.wait()).await.unwrap();

    assert_eq!(report.status, RunStatus::Cancelled);
    let polite = rec.one("polite");
    assert!(polite.cancelled, "the polite agent saw the cancellation");
    assert_eq!(polite.ended, Some(cancelled_at), "and stopped at once");
    for id in ["polite", "stubborn", "next"] {
        assert_eq!(report_of(&report, id).status, TaskStatus::Cancelled, "{id}");
    }
    // The stubborn one was given the stop wait (30 s), then dropped, freeing its slot.
    assert!(Instant::now() >= cancelled_at + secs(30));
    assert!(Instant::now() < cancelled_at + secs(31));
    assert_eq!(engine.pool().stats()[0].running, 0);
}

#[tokio::test(start_paused = true)]
async fn a_long_chain_of_instant_inline_attempts_runs_to_the_end_in_order() {
    // Each task outputs its prerequisite's output plus one: the chain's last output counts
    // every task, in order. Far more tasks than one dispatch runs before yielding.
    let agent = FnAgent::new(|req: AttemptRequest, _, _| {
        let before = req
            .upstream
            .iter()
            .next()
            .map_or(0, |(_, v)| v.as_u64().unwrap_or(0));
        async move {
            Ok(AttemptOutput {
                output: Some(json!(before + 1)),
                ..AttemptOutput::default()
            })
        }
    })
    .inline();
    let engine = Engine::new(pool_of(TWO_SLOTS, Arc::new(agent)));
    let n = 1_000;
    let mut workflow = WorkflowBuilder::new("chain").task(task("t0", 0));
    for i in 1..n {
        workflow = workflow.task(task(&format!("t{i}"), 0).depends_on([format!("t{}", i - 1)]));
    }
    let report = within(
        secs(60),
        engine.run(workflow.build().unwrap(), RunOptions::default()),
    )
    .await
    .unwrap();

    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.totals.attempts, n);
    assert_eq!(
        report_of(&report, &format!("t{}", n - 1)).output,
        Some(json!(n))
    );
}
