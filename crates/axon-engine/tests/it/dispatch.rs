//! Dispatch: eager release of dependents, capacity and capability limits, what an attempt
//! is given (upstream outputs, idempotency keys).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{Capability, ErrorType, RunStatus, TaskStatus};
use axon_engine::agent::{AttemptError, AttemptOutput, AttemptRequest, FnAgent};
use axon_engine::bus::EventKind;
use axon_engine::{Engine, RunOptions};
use serde_json::json;

use crate::common::{
    Recorder, events_until_finished, ms, pool_of, pool_with, report_of, secs, sleeper, specs, task,
    within, work,
};

#[tokio::test(start_paused = true)]
async fn a_chain_of_short_tasks_finishes_before_an_unrelated_long_task() {
    let rec = Recorder::default();
    let yaml = "agents:
  - id: one
    capabilities: [x]
    max_concurrent_tasks: 2
  - id: two
    capabilities: [x]
    max_concurrent_tasks: 2
";
    let engine = Engine::new(pool_with(yaml, |s| sleeper(s.id.as_str(), &rec)));
    let mut events = engine.bus().subscribe();
    // Levels: {a, long}, {b}, {c}. With a barrier between levels, b would wait for long.
    let workflow = WorkflowBuilder::new("eager")
        .task(task("a", 10))
        .task(task("b", 10).depends_on(["a"]))
        .task(task("c", 10).depends_on(["b"]))
        .task(task("long", 100))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let report = within(secs(60), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);

    let (a, b, c, long) = (rec.one("a"), rec.one("b"), rec.one("c"), rec.one("long"));
    let end = |e: &crate::common::Execution| e.ended.expect("the agent returned");
    // Each link starts the moment its prerequisite ends, not when the level is done.
    assert_eq!(a.started, t0);
    assert_eq!(long.started, t0);
    assert_eq!(b.started, end(&a));
    assert_eq!(c.started, end(&b));
    assert_eq!(end(&c) - t0, ms(30));
    assert_eq!(end(&long) - t0, ms(100));
    assert!(end(&c) < end(&long));
    // The least loaded capable agent gets the next task.
    assert_ne!(a.agent, long.agent);

    // The bus tells the same story.
    let events = events_until_finished(&mut events).await;
    let succeeded: Vec<&str> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskSucceeded { .. }))
        .filter_map(|e| e.task_id.as_deref())
        .collect();
    assert_eq!(succeeded, ["a", "b", "c", "long"]);
}

/// Per-agent concurrency, as agents observe it.
#[derive(Default)]
struct Gauge {
    now: AtomicU32,
    peak: AtomicU32,
}

#[tokio::test(start_paused = true)]
async fn agent_limits_and_capabilities_are_never_violated() {
    let yaml = "agents:
  - id: gen-1
    capabilities: [code_generation]
    max_concurrent_tasks: 2
  - id: gen-2
    capabilities: [code_generation, testing]
    max_concurrent_tasks: 3
  - id: test-1
    capabilities: [testing]
    max_concurrent_tasks: 1
  - id: docs-1
    capabilities: [documentation]
    max_concurrent_tasks: 4
    resources: { cpu_cores: 2, memory_mb: 4096 }
";
    let agent_specs = specs(yaml);
    // docs-1 may run 4 tasks by count but only 2 of them fit its 2 cpu cores.
    let limits: HashMap<String, u32> = [("gen-1", 2), ("gen-2", 3), ("test-1", 1), ("docs-1", 2)]
        .into_iter()
        .map(|(a, n)| (a.to_owned(), n))
        .collect();
    let gauges: Arc<HashMap<String, Gauge>> = Arc::new(
        limits
            .keys()
            .map(|a| (a.clone(), Gauge::default()))
            .collect(),
    );
    let ran_on: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let pool = pool_with(yaml, |spec| {
        let me = spec.id.to_string();
        let gauges = Arc::clone(&gauges);
        let ran_on = Arc::clone(&ran_on);
        Arc::new(FnAgent::new(move |req: AttemptRequest, _, cancel| {
            let me = me.clone();
            let gauges = Arc::clone(&gauges);
            let ran_on = Arc::clone(&ran_on);
            async move {
                let g = &gauges[&me];
                let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                g.peak.fetch_max(now, Ordering::SeqCst);
                ran_on
                    .lock()
                    .unwrap()
                    .push((req.task.id.as_str().to_owned(), me.clone()));
                let r = work(ms(req.task.input["ms"].as_u64().unwrap_or(5)), &cancel).await;
                g.now.fetch_sub(1, Ordering::SeqCst);
                r.map(|()| AttemptOutput::default())
            }
        }))
    });
    let engine = Engine::new(pool);

    let needs: [&[Capability]; 4] = [
        &[Capability::CodeGeneration],
        &[Capability::Testing],
        &[Capability::CodeGeneration, Capability::Testing],
        &[Capability::Documentation],
    ];
    let mut wf = WorkflowBuilder::new("limits");
    for i in 0..80u64 {
        let mut t = TaskBuilder::custom(format!("t{i}"), format!("T{i}"), "test")
            .estimated_duration(secs(1))
            .input(json!({ "ms": 3 + (i * 7) % 20 }));
        for c in needs[(i % 4) as usize] {
            t = t.capability(c.clone());
        }
        if i >= 8 && i % 3 == 0 {
            t = t.depends_on([format!("t{}", i - 8)]);
        }
        wf = wf.task(t);
    }
    let workflow = wf.build().unwrap();
    let report = within(
        secs(600),
        engine.run(workflow.clone(), RunOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");

    let mut peak_total = 0;
    for (agent, limit) in &limits {
        let peak = gauges[agent].peak.load(Ordering::SeqCst);
        assert!(
            peak <= *limit,
            "agent {agent} ran {peak} tasks at once; its limit is {limit}"
        );
        assert_eq!(gauges[agent].now.load(Ordering::SeqCst), 0);
        peak_total += peak;
    }
    assert!(peak_total > 4, "tasks should have run in parallel");

    let ran_on = ran_on.lock().unwrap().clone();
    assert_eq!(
        ran_on.len(),
        workflow.tasks.len(),
        "every task ran exactly once"
    );
    for (task_id, agent) in &ran_on {
        let task = workflow
            .tasks
            .iter()
            .find(|t| t.id.as_str() == task_id)
            .unwrap();
        let spec = agent_specs.iter().find(|s| s.id.as_str() == agent).unwrap();
        assert!(
            spec.has_capabilities_for(task),
            "task {task_id} needs {:?} but ran on {agent} ({:?})",
            task.requirements.capabilities,
            spec.capabilities
        );
        assert_eq!(
            report_of(&report, task_id).agent.as_deref(),
            Some(agent.as_str())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn dependents_receive_upstream_outputs_and_idempotency_keys() {
    let seen: Arc<Mutex<Vec<AttemptRequest>>> = Arc::default();
    let agent = {
        let seen = Arc::clone(&seen);
        FnAgent::new(move |req: AttemptRequest, _, _| {
            seen.lock().unwrap().push(req.clone());
            async move {
                let id = req.task.id.as_str();
                match id {
                    // Fails once with a retryable error, so its key changes with the attempt.
                    "flaky" if req.attempt == 1 => {
                        Err(AttemptError::failed(ErrorType::Network, "connection reset"))
                    }
                    "silent" => Ok(AttemptOutput::default()),
                    _ => Ok(AttemptOutput {
                        output: Some(json!({ "from": id, "attempt": req.attempt })),
                        ..AttemptOutput::default()
                    }),
                }
            }
        })
    };
    let engine = Engine::new(pool_of(
        "agents:\n  - id: me\n    capabilities: [x]\n    max_concurrent_tasks: 4\n",
        Arc::new(agent),
    ));
    let workflow = WorkflowBuilder::new("upstream")
        .task(task("a", 1))
        .task(task("flaky", 1))
        .task(task("silent", 1))
        .task(task("join", 1).depends_on(["a", "flaky", "silent"]))
        .task(task("last", 1).depends_on(["join"]))
        .build()
        .unwrap();
    let handle = engine.start(workflow, RunOptions::default()).await.unwrap();
    let run_id = handle.run_id;
    let report = within(secs(600), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert_eq!(report.run_id, run_id);

    let seen = seen.lock().unwrap().clone();
    let request = |task: &str, attempt: u32| {
        seen.iter()
            .find(|r| r.task.id.as_str() == task && r.attempt == attempt)
            .unwrap_or_else(|| panic!("no attempt {attempt} of {task}"))
            .clone()
    };
    for r in &seen {
        assert_eq!(r.run_id, run_id);
        assert_eq!(
            r.idempotency_key,
            format!("{run_id}/{}/{}", r.task.id.as_str(), r.attempt)
        );
    }
    assert_eq!(
        request("flaky", 2).idempotency_key,
        format!("{run_id}/flaky/2")
    );
    assert!(request("a", 1).upstream.is_empty());

    let join = request("join", 1);
    let expected: BTreeMap<String, serde_json::Value> = [
        ("a".to_owned(), json!({ "from": "a", "attempt": 1 })),
        ("flaky".to_owned(), json!({ "from": "flaky", "attempt": 2 })),
        ("silent".to_owned(), serde_json::Value::Null),
    ]
    .into_iter()
    .collect();
    assert_eq!(join.upstream.to_map(), expected);
    // Only direct prerequisites are passed.
    let last = request("last", 1);
    assert_eq!(
        last.upstream.keys().collect::<Vec<_>>(),
        ["join"],
        "{:?}",
        last.upstream
    );
    assert_eq!(
        last.upstream["join"],
        json!({ "from": "join", "attempt": 1 })
    );
    assert_eq!(report_of(&report, "join").status, TaskStatus::Succeeded);
    assert_eq!(
        report_of(&report, "join").output,
        Some(json!({ "from": "join", "attempt": 1 }))
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_runs_share_the_engines_agents() {
    let gauge = Arc::new(Gauge::default());
    let agent = {
        let gauge = Arc::clone(&gauge);
        FnAgent::new(move |_: AttemptRequest, _, cancel| {
            let gauge = Arc::clone(&gauge);
            async move {
                let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.peak.fetch_max(now, Ordering::SeqCst);
                let r = work(ms(10), &cancel).await;
                gauge.now.fetch_sub(1, Ordering::SeqCst);
                r.map(|()| AttemptOutput::default())
            }
        })
    };
    // One slot for everything: the runs take turns, each woken when the other frees it.
    let engine = Engine::new(pool_of(
        "agents:\n  - id: solo\n    capabilities: [x]\n",
        Arc::new(agent),
    ));
    let workflow = |name: &str| {
        let mut wf = WorkflowBuilder::new(name);
        for i in 0..5 {
            wf = wf.task(task(&format!("t{i}"), 10));
        }
        wf.build().unwrap()
    };
    let one = engine
        .start(workflow("one"), RunOptions::default())
        .await
        .unwrap();
    let two = engine
        .start(workflow("two"), RunOptions::default())
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let (one, two) = within(secs(60), async { tokio::join!(one.wait(), two.wait()) }).await;
    assert_eq!(one.unwrap().status, RunStatus::Succeeded);
    assert_eq!(two.unwrap().status, RunStatus::Succeeded);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 1);
    assert_eq!(
        t0.elapsed(),
        ms(100),
        "ten 10 ms tasks back to back, no idle gaps"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_no_agent_can_run_is_refused_before_anything_starts() {
    let rec = Recorder::default();
    let engine = Engine::new(pool_of(
        "agents:\n  - id: me\n    capabilities: [x]\n",
        sleeper("me", &rec),
    ));
    let workflow = WorkflowBuilder::new("infeasible")
        .task(task("fine", 10))
        .task(
            TaskBuilder::custom("gpu-job", "GPU job", "test")
                .capability("x")
                .capability("cuda")
                .estimated_duration(secs(1)),
        )
        .build()
        .unwrap();
    match engine.start(workflow, RunOptions::default()).await {
        Err(axon_engine::EngineError::NoSuitableAgent(reasons)) => {
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert!(reasons[0].contains("gpu-job"), "{reasons:?}");
        }
        Err(e) => panic!("expected NoSuitableAgent, got {e}"),
        Ok(_) => panic!("expected NoSuitableAgent, got a run"),
    }
    assert!(rec.all().is_empty(), "nothing ran");
}
