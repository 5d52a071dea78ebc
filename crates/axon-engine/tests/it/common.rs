//! Helpers shared by the engine tests: agent pools from agents-file text, a recording
//! in-process agent that sleeps for its task's `input.ms`, and event helpers.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axon_core::agents::{AgentSpec, parse_agents};
use axon_core::builder::TaskBuilder;
use axon_core::format::Format;
use axon_engine::agent::{Agent, AttemptError, AttemptOutput, Execution as Mode, FnAgent};
use axon_engine::bus::{Event, EventKind};
use axon_engine::pool::{AgentPool, PoolAgent};
use axon_engine::{RunReport, TaskReport};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The agents of an agents file (YAML), which must have no problem.
pub fn specs(yaml: &str) -> Vec<AgentSpec> {
    let parsed = parse_agents(yaml, Format::Yaml).expect("agents file parses");
    assert!(
        parsed.diagnostics.is_empty(),
        "agents file has problems: {:?}",
        parsed.diagnostics
    );
    parsed.agents
}

/// A pool of the agents of `yaml`, each run by the agent `make` returns for it.
pub fn pool_with(yaml: &str, mut make: impl FnMut(&AgentSpec) -> Arc<dyn Agent>) -> AgentPool {
    AgentPool::new(
        specs(yaml)
            .into_iter()
            .map(|spec| {
                let agent = make(&spec);
                PoolAgent { spec, agent }
            })
            .collect(),
    )
}

/// A pool where every agent of `yaml` is `agent`.
pub fn pool_of(yaml: &str, agent: Arc<dyn Agent>) -> AgentPool {
    pool_with(yaml, |_| Arc::clone(&agent))
}

/// A custom task needing capability `x`, estimated at one second, whose agent works for
/// `ms` milliseconds (see [`sleeper`]).
pub fn task(id: &str, work_ms: u64) -> TaskBuilder {
    TaskBuilder::custom(id, format!("Task {id}"), "test")
        .capability("x")
        .estimated_duration(secs(1))
        .input(json!({ "ms": work_ms }))
}

/// One attempt as an agent saw it.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Task id.
    pub task: String,
    /// Agent id.
    pub agent: String,
    /// Attempt number from the request.
    pub attempt: u32,
    /// When the agent started (tokio time).
    pub started: Instant,
    /// When it returned, if it did.
    pub ended: Option<Instant>,
    /// Whether it stopped because its cancellation token fired.
    pub cancelled: bool,
}

/// What agents did, in the order they started.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Execution>>>);

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Vec<Execution>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a start; returns its index for [`Recorder::end`].
    pub fn start(&self, task: &str, agent: &str, attempt: u32) -> usize {
        let mut all = self.lock();
        all.push(Execution {
            task: task.to_owned(),
            agent: agent.to_owned(),
            attempt,
            started: Instant::now(),
            ended: None,
            cancelled: false,
        });
        all.len() - 1
    }

    /// Records the end of execution `i`.
    pub fn end(&self, i: usize, cancelled: bool) {
        let mut all = self.lock();
        all[i].ended = Some(Instant::now());
        all[i].cancelled = cancelled;
    }

    /// Every execution.
    pub fn all(&self) -> Vec<Execution> {
        self.lock().clone()
    }

    /// The executions of `task`.
    pub fn of(&self, task: &str) -> Vec<Execution> {
        self.lock()
            .iter()
            .filter(|e| e.task == task)
            .cloned()
            .collect()
    }

    /// The only execution of `task`.
    pub fn one(&self, task: &str) -> Execution {
        let runs = self.of(task);
        assert_eq!(runs.len(), 1, "task `{task}` ran {} times", runs.len());
        runs[0].clone()
    }
}

/// Sleeps for `d` unless `cancel` fires first (then returns `Err(Cancelled)`).
pub async fn work(d: Duration, cancel: &CancellationToken) -> Result<(), AttemptError> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = cancel.cancelled() => Err(AttemptError::Cancelled),
    }
}

/// An agent that works for its task's `input.ms` milliseconds (honouring cancellation),
/// records what it did in `rec` under the name `agent_id`, and outputs `{"task": id}`.
pub fn sleeper(agent_id: &str, rec: &Recorder) -> Arc<dyn Agent> {
    sleeper_with(agent_id, rec, Mode::Spawned)
}

/// [`sleeper`], its attempts polled by the dispatcher ([`FnAgent::inline`]).
pub fn inline_sleeper(agent_id: &str, rec: &Recorder) -> Arc<dyn Agent> {
    sleeper_with(agent_id, rec, Mode::Inline)
}

fn sleeper_with(agent_id: &str, rec: &Recorder, mode: Mode) -> Arc<dyn Agent> {
    let agent_id = agent_id.to_owned();
    let rec = rec.clone();
    let agent = FnAgent::new(move |req, _progress, cancel| {
        let rec = rec.clone();
        let agent_id = agent_id.clone();
        async move {
            let id = req.task.id.as_str().to_owned();
            let i = rec.start(&id, &agent_id, req.attempt);
            let d = ms(req.task.input["ms"].as_u64().unwrap_or(10));
            let r = work(d, &cancel).await;
            rec.end(i, r.is_err());
            r.map(|()| AttemptOutput {
                output: Some(json!({ "task": id })),
                ..AttemptOutput::default()
            })
        }
    });
    match mode {
        Mode::Inline => Arc::new(agent.inline()),
        Mode::Spawned => Arc::new(agent),
    }
}

/// The report of task `id`.
pub fn report_of<'a>(report: &'a RunReport, id: &str) -> &'a TaskReport {
    report
        .tasks
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no task `{id}` in the report"))
}

/// Awaits `f`, failing the test if it takes longer than `limit` (tokio time: under paused
/// time this catches hangs without waiting for them).
pub async fn within<F: Future>(limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("still not done after {limit:?}: the run hangs"),
    }
}

/// Receives events until `n` attempts have started.
pub async fn until_started(rx: &mut UnboundedReceiver<Event>, n: usize) {
    let mut started = 0;
    while started < n {
        let e = within(secs(60), rx.recv()).await.expect("the run goes on");
        if matches!(e.kind, EventKind::TaskStarted) {
            started += 1;
        }
    }
}

/// Receives events until (and including) the run's `RunFinished`.
pub async fn events_until_finished(rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = rx.recv().await {
        let last = matches!(e.kind, EventKind::RunFinished { .. });
        out.push(e);
        if last {
            return out;
        }
    }
    panic!("the bus closed before RunFinished; got {out:#?}");
}

/// Events of `task` with kind name `kind` (`task_retrying`, ...).
pub fn task_events<'a>(events: &'a [Event], task: &str, kind: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.task_id.as_deref() == Some(task) && e.kind.name() == kind)
        .collect()
}
