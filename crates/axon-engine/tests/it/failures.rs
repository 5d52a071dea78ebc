//! Failures: retries with backoff, non-retryable failures and skipped dependents, fail-fast,
//! per-attempt timeouts, panicking agents.

use std::sync::{Arc, Mutex};

use axon_core::builder::WorkflowBuilder;
use axon_core::model::{ErrorType, FailurePolicy, Priority, RunStatus, TaskStatus};
use axon_core::retry::RetryOverride;
use axon_engine::agent::{AttemptError, AttemptOutput, AttemptRequest, FnAgent};
use axon_engine::bus::EventKind;
use axon_engine::{Engine, RunOptions};
use serde_json::json;
use tokio::time::Instant;

use crate::common::{
    Recorder, events_until_finished, ms, pool_of, report_of, secs, sleeper, task, task_events,
    within,
};

const ONE_AGENT: &str = "agents:\n  - id: me\n    capabilities: [x]\n    max_concurrent_tasks: 4\n";

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_backoff() {
    // (attempt, started, ended) as the agent saw them.
    let attempts: Arc<Mutex<Vec<(u32, Instant, Instant)>>> = Arc::default();
    let agent = {
        let attempts = Arc::clone(&attempts);
        FnAgent::new(move |req: AttemptRequest, _, _| {
            let attempts = Arc::clone(&attempts);
            async move {
                let started = Instant::now();
                tokio::time::sleep(ms(10)).await;
                attempts
                    .lock()
                    .unwrap()
                    .push((req.attempt, started, Instant::now()));
                if req.attempt < 3 {
                    Err(AttemptError::failed(
                        ErrorType::ServiceUnavailable,
                        format!("busy (attempt {})", req.attempt),
                    ))
                } else {
                    Ok(AttemptOutput {
                        output: Some(json!("done")),
                        ..AttemptOutput::default()
                    })
                }
            }
        })
    };
    let engine = Engine::new(pool_of(ONE_AGENT, Arc::new(agent)));
    let mut events = engine.bus().subscribe();
    // The default policy: 3 attempts, 1 s doubling, no jitter.
    let workflow = WorkflowBuilder::new("retries")
        .task(task("flaky", 10))
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Succeeded);
    let flaky = report_of(&report, "flaky");
    assert_eq!(flaky.status, TaskStatus::Succeeded);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.output, Some(json!("done")));
    assert_eq!(flaky.error, None, "a success clears the last error");
    assert_eq!(report.totals.retries, 2);
    assert_eq!(report.totals.attempts, 3);

    let events = events_until_finished(&mut events).await;
    let retries: Vec<(Option<u32>, f64, ErrorType)> =
        task_events(&events, "flaky", "task_retrying")
            .into_iter()
            .map(|e| match &e.kind {
                EventKind::TaskRetrying {
                    delay_secs,
                    error_kind,
                    ..
                } => (e.attempt, *delay_secs, *error_kind),
                other => unreachable!("{other:?}"),
            })
            .collect();
    assert_eq!(
        retries,
        [
            (Some(1), 1.0, ErrorType::ServiceUnavailable),
            (Some(2), 2.0, ErrorType::ServiceUnavailable),
        ]
    );

    // The backoff is really waited, in tokio time.
    let attempts = attempts.lock().unwrap().clone();
    let numbers: Vec<u32> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(attempts[1].1 - attempts[0].2, secs(1));
    assert_eq!(attempts[2].1 - attempts[1].2, secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_failure_skips_its_dependents_and_independent_work_finishes() {
    let rec = Recorder::default();
    let ok = sleeper("me", &rec);
    let agent = {
        let rec = rec.clone();
        FnAgent::new(move |req: AttemptRequest, progress, cancel| {
            let ok = Arc::clone(&ok);
            let rec = rec.clone();
            async move {
                if req.task.id.as_str() == "bad" {
                    let i = rec.start("bad", "me", req.attempt);
                    tokio::time::sleep(ms(5)).await;
                    rec.end(i, false);
                    return Err(AttemptError::failed(
                        ErrorType::AgentError,
                        "the model refused",
                    ));
                }
                ok.execute(req, progress, cancel).await
            }
        })
    };
    let engine = Engine::new(pool_of(ONE_AGENT, Arc::new(agent)));
    let mut events = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("continue")
        .task(task("bad", 5))
        .task(task("child", 10).depends_on(["bad"]))
        .task(task("grandchild", 10).depends_on(["child"]))
        .task(task("side", 30))
        .task(task("side-child", 10).depends_on(["side"]))
        .task(task("both", 10).depends_on(["bad", "side"]))
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Failed);
    let bad = report_of(&report, "bad");
    assert_eq!(bad.status, TaskStatus::Failed);
    assert_eq!(bad.attempts, 1, "agent_error is not retried by default");
    assert_eq!(bad.error.as_deref(), Some("the model refused"));
    assert_eq!(bad.error_kind, Some(ErrorType::AgentError));
    assert_eq!(rec.of("bad").len(), 1);

    for id in ["child", "grandchild", "both"] {
        let t = report_of(&report, id);
        assert_eq!(t.status, TaskStatus::Skipped, "{id}");
        assert_eq!(t.attempts, 0, "{id}");
        assert!(rec.of(id).is_empty(), "{id} must not run");
        assert!(
            t.error.as_deref().is_some_and(|e| e.contains("`bad`")),
            "{id}: {:?}",
            t.error
        );
    }
    for id in ["side", "side-child"] {
        assert_eq!(report_of(&report, id).status, TaskStatus::Succeeded, "{id}");
    }
    assert_eq!(
        (
            report.totals.succeeded,
            report.totals.failed,
            report.totals.skipped,
            report.totals.cancelled,
            report.totals.retries,
        ),
        (2, 1, 3, 0, 0)
    );

    let events = events_until_finished(&mut events).await;
    for id in ["child", "grandchild", "both"] {
        let skipped = task_events(&events, id, "task_skipped");
        assert_eq!(skipped.len(), 1, "{id}");
        assert_eq!(
            skipped[0].kind,
            EventKind::TaskSkipped {
                because: "bad".into()
            }
        );
    }
    assert_eq!(task_events(&events, "bad", "task_failed").len(), 1);
    assert!(task_events(&events, "bad", "task_retrying").is_empty());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_running_tasks_and_starts_nothing_new() {
    let rec = Recorder::default();
    let ok = sleeper("me", &rec);
    let agent = {
        let rec = rec.clone();
        FnAgent::new(move |req: AttemptRequest, progress, cancel| {
            let ok = Arc::clone(&ok);
            let rec = rec.clone();
            async move {
                if req.task.id.as_str() == "bad" {
                    let i = rec.start("bad", "me", req.attempt);
                    tokio::time::sleep(ms(10)).await;
                    rec.end(i, false);
                    return Err(AttemptError::failed(
                        ErrorType::InvalidInput,
                        "no such file",
                    ));
                }
                ok.execute(req, progress, cancel).await
            }
        })
    };
    // Two slots: `long` and `bad` start; `queued` waits for a slot.
    let engine = Engine::new(pool_of(
        "agents:\n  - id: me\n    capabilities: [x]\n    max_concurrent_tasks: 2\n",
        Arc::new(agent),
    ));
    let workflow = WorkflowBuilder::new("fail fast")
        .failure_policy(FailurePolicy::FailFast)
        .task(task("long", 60_000).estimated_duration(secs(60)))
        .task(task("after-long", 10).depends_on(["long"]))
        .task(task("bad", 10).estimated_duration(secs(30)))
        .task(task("after-bad", 10).depends_on(["bad"]))
        .task(task("queued", 10).priority(Priority::Low))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report_of(&report, "bad").status, TaskStatus::Failed);
    let long = report_of(&report, "long");
    assert_eq!(long.status, TaskStatus::Cancelled);
    assert!(
        long.error
            .as_deref()
            .is_some_and(|e| e.contains("fail_fast")),
        "{:?}",
        long.error
    );
    let long_run = rec.one("long");
    assert!(long_run.cancelled, "the running agent was told to stop");
    assert_eq!(
        long_run.ended,
        Some(t0 + ms(10)),
        "stopped when `bad` failed"
    );
    assert!(t0.elapsed() < secs(60), "the run did not wait for `long`");

    assert_eq!(report_of(&report, "after-bad").status, TaskStatus::Skipped);
    for id in ["after-long", "queued"] {
        assert_eq!(report_of(&report, id).status, TaskStatus::Cancelled, "{id}");
        assert_eq!(report_of(&report, id).attempts, 0, "{id}");
        assert!(rec.of(id).is_empty(), "{id} must not run");
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_timeout_fails_as_timeout_and_is_retried_per_policy() {
    let rec = Recorder::default();
    let engine = Engine::new(pool_of(ONE_AGENT, sleeper("me", &rec)));
    let mut events = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("timeouts")
        // Default policy: timeouts are retried, 3 attempts in all.
        .task(task("slow", 10_000).timeout(secs(1)))
        // This task's policy does not retry timeouts.
        .task(
            task("slow-once", 10_000)
                .timeout(secs(2))
                .retry(RetryOverride {
                    on: Some(vec![ErrorType::Network]),
                    ..RetryOverride::default()
                }),
        )
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);

    let slow = report_of(&report, "slow");
    assert_eq!(slow.status, TaskStatus::Failed);
    assert_eq!(slow.attempts, 3, "max_attempts of the default policy");
    assert_eq!(slow.error_kind, Some(ErrorType::Timeout));
    assert!(
        slow.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out after 1s")),
        "{:?}",
        slow.error
    );
    let runs = rec.of("slow");
    let numbers: Vec<u32> = runs.iter().map(|r| r.attempt).collect();
    assert_eq!(numbers, [1, 2, 3]);
    for r in &runs {
        assert!(r.cancelled, "the agent was told to stop at its timeout");
        assert_eq!(r.ended.map(|e| e - r.started), Some(secs(1)));
    }

    let once = report_of(&report, "slow-once");
    assert_eq!(once.status, TaskStatus::Failed);
    assert_eq!(once.attempts, 1);
    assert_eq!(once.error_kind, Some(ErrorType::Timeout));
    assert!(
        once.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out after 2s")),
        "{:?}",
        once.error
    );

    let events = events_until_finished(&mut events).await;
    let retrying = task_events(&events, "slow", "task_retrying");
    assert_eq!(retrying.len(), 2);
    assert!(retrying.iter().all(|e| matches!(
        e.kind,
        EventKind::TaskRetrying {
            error_kind: ErrorType::Timeout,
            ..
        }
    )));
    assert!(task_events(&events, "slow-once", "task_retrying").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_agent_fails_its_task_and_the_run_goes_on() {
    let rec = Recorder::default();
    let ok = sleeper("me", &rec);
    let agent = FnAgent::new(move |req: AttemptRequest, progress, cancel| {
        // A panic while building the attempt, before any future exists.
        assert!(
            req.task.id.as_str() != "boom-early",
            "agent could not read its input"
        );
        let ok = Arc::clone(&ok);
        async move {
            if req.task.id.as_str() == "boom" {
                tokio::time::sleep(ms(5)).await;
                panic!("agent exploded on purpose");
            }
            ok.execute(req, progress, cancel).await
        }
    });
    let engine = Engine::new(pool_of(ONE_AGENT, Arc::new(agent)));
    let workflow = WorkflowBuilder::new("panics")
        .task(task("boom", 10))
        .task(task("after-boom", 10).depends_on(["boom"]))
        .task(task("boom-early", 10))
        .task(task("fine", 20))
        .task(task("fine-too", 20).depends_on(["fine"]))
        .build()
        .unwrap();
    let report = within(secs(600), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Failed);
    let boom = report_of(&report, "boom");
    assert_eq!(boom.status, TaskStatus::Failed);
    assert_eq!(boom.attempts, 1);
    assert_eq!(boom.error_kind, Some(ErrorType::AgentError));
    assert!(
        boom.error
            .as_deref()
            .is_some_and(|e| e.contains("agent exploded on purpose")),
        "{:?}",
        boom.error
    );
    let early = report_of(&report, "boom-early");
    assert_eq!(early.status, TaskStatus::Failed);
    assert!(
        early
            .error
            .as_deref()
            .is_some_and(|e| e.contains("agent could not read its input")),
        "{:?}",
        early.error
    );
    assert_eq!(report_of(&report, "after-boom").status, TaskStatus::Skipped);
    for id in ["fine", "fine-too"] {
        assert_eq!(report_of(&report, id).status, TaskStatus::Succeeded, "{id}");
    }
    // The agent's slot came back: nothing is left running on it.
    let stats = engine.pool().stats();
    assert_eq!(stats[0].running, 0);
    assert_eq!(
        stats[0].tasks_run, 4,
        "every attempt but the skipped task's"
    );
    assert_eq!(stats[0].failures, 2);
}
