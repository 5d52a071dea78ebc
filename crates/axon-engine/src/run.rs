//! The dispatcher of one run: the single owner of the run's state.
//!
//! It holds every task's state, the remaining-prerequisite counters and the ready queues
//! (binary heaps keyed by [`Plan::ready_key`]: priority, then longest remaining path), one
//! queue per set of agents able to run the tasks in it, so a task waiting for a busy kind of
//! agent never blocks one whose agent is free. Attempts run in their own tokio tasks and
//! report back over one channel.
//!
//! Every transition is computed in memory, committed to the store (events and current
//! state, one transaction for everything that was waiting: group commit), and only then acted
//! on: agents started, dependents released, events published.

use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axon_core::DagIndex;
use axon_core::model::{ErrorType, FailurePolicy, RunStatus, TaskStatus, Workflow};
use axon_core::plan::{Plan, ReadyKey};
use axon_store::{Batch, EpisodeRecord, EventRecord, Store, TaskRecord, TrackUpdate};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
// Durations come from tokio's clock (paused in tests), like every timer of the run.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::agent::{
    Agent, AttemptError, AttemptOutput, AttemptRequest, BoxFuture, Execution, Progress, TaskRef,
    Upstream, WorkflowRef,
};
use crate::bus::{Event, EventBus, EventKind};
use crate::cortex::{CortexBridge, RunBridge};
use crate::error::EngineError;
use crate::lease::Holder;
use crate::metrics::RunMetrics;
use crate::pool::{AgentPool, PoolLease};
use crate::report::{RunReport, RunTotals, TaskReport};

/// How long an attempt that was told to stop may take to do so before it is abandoned.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// How often the store is asked whether someone cancelled the run, and the lease renewed.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What attempts and timers tell the dispatcher.
#[derive(Debug)]
pub(crate) enum Msg {
    Progress {
        task: u32,
        attempt: u32,
        value: f64,
    },
    Finished(Finished),
    RetryDue {
        task: u32,
    },
    Spawned {
        task: u32,
        attempt: u32,
        pid: u32,
    },
    /// Something the user should be told about the run (once).
    Notice {
        message: String,
    },
    /// A successful attempt's changes are sealed in its session: record its output (and
    /// that a merge is due) durably, then tell it to merge.
    Merging {
        task: u32,
        attempt: u32,
        output: Option<serde_json::Value>,
        go: oneshot::Sender<()>,
    },
}

/// An attempt's outcome, as its future ends.
#[derive(Debug)]
pub(crate) struct Finished {
    task: u32,
    attempt: u32,
    result: Result<AttemptOutput, AttemptError>,
}

impl Finished {
    /// The outcome of an attempt on `lease`, whose agent is freed here (marked failed if the
    /// attempt failed), before the dispatcher hears of it, so it can reuse the agent at once.
    fn freeing(
        mut lease: PoolLease,
        task: u32,
        attempt: u32,
        result: Result<AttemptOutput, AttemptError>,
    ) -> Self {
        if result.is_err() {
            lease.mark_failed();
        }
        drop(lease);
        Self {
            task,
            attempt,
            result,
        }
    }
}

/// A task's id and output as [`Upstream`] entries share them (each made on first use).
type SharedOutput = (Option<Arc<str>>, Option<Arc<serde_json::Value>>);

/// How a task's running attempt is reached (for cancelling it).
enum Running {
    /// No attempt runs.
    Idle,
    /// In a tokio task of its own, with its own token.
    Spawned(CancellationToken),
    /// Polled by the dispatcher; with a token of its own if it has a timeout, else the
    /// run's `inline_cancel`.
    Inline(Option<CancellationToken>),
}

const NOT_IN_BATCH: u32 = u32::MAX;

/// How many rounds one [`RunLoop::dispatch`] may run, dispatching what attempts that finished
/// at once made ready, before the loop yields (so a long chain of instant attempts still lets
/// cancellation, timers and other tasks in).
const EAGER_ROUNDS: usize = 64;

/// Why the run is stopping early.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Cancelled,
    FailFast(String),
    WorkflowTimeout(Duration),
    LostLease,
}

struct TaskState {
    rec: TaskRecord,
    remaining: u32,
    ready_since: Option<Instant>,
    attempt_started: Option<Instant>,
    log_tail: Vec<String>,
}

/// Everything a run needs from its engine.
pub(crate) struct RunContext {
    pub run_id: Uuid,
    pub workflow: Arc<Workflow>,
    pub index: DagIndex,
    pub plan: Plan,
    pub pool: AgentPool,
    pub bus: EventBus,
    pub store: Option<Arc<dyn Store>>,
    pub holder: Option<Holder>,
    pub lease_ttl: Duration,
    pub cancel: CancellationToken,
    pub workspace: PathBuf,
    /// Current state per task (all pending for a new run; from the store on resume).
    pub records: Vec<TaskRecord>,
    pub created_at_ms: i64,
    pub resumed: bool,
    /// Sessions, memory and tracking (none: attempts run in the workspace, without context).
    pub bridge: Option<Bridges>,
    /// The branch to bring up to the run's integration branch when it fully succeeds.
    pub merge_into: Option<String>,
}

/// A run's bridge and the service behind it (for episode searches).
#[derive(Clone)]
pub(crate) struct Bridges {
    pub cortex: Arc<dyn CortexBridge>,
    pub run: Arc<dyn RunBridge>,
}

pub(crate) struct RunLoop {
    cx: RunContext,
    tasks: Vec<TaskState>,
    classes: Vec<Vec<u32>>,
    /// The workflow as attempts see it, shared by all of them.
    workflow_ref: Arc<WorkflowRef>,
    /// How each task's running attempt is cancelled. Attempts' tokens are not children of
    /// the run's: the dispatcher cancels them itself when the run stops, which keeps 10,000
    /// attempts from queueing on one parent's lock.
    running_attempts: Vec<Running>,
    /// The token of every inline attempt without a timeout of its own: cancelled once, when
    /// the run stops (an attempt with a timeout has its own, which the timeout cancels).
    inline_cancel: CancellationToken,
    /// When a stopping run gives up on inline attempts that have not stopped (their futures
    /// are dropped then; a spawned attempt gives up on its agent by itself).
    abandon_at: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Attempts of [`Execution::Inline`] agents, polled by the dispatcher itself.
    inline: FuturesUnordered<BoxFuture<Finished>>,
    /// Tasks not in a terminal status yet (the run is done when none are left and nothing
    /// runs or waits).
    unfinished: usize,
    /// Whether some ready task waits for an agent of the pool (then pool changes matter).
    waiting_for_pool: bool,
    /// Attempts waiting for their success to be committed before they merge.
    merge_acks: Vec<oneshot::Sender<()>>,
    /// Tracking updates go to the bridge through this queue, off the hot path.
    tracking: Option<(
        UnboundedSender<Vec<TrackUpdate>>,
        tokio::task::JoinHandle<()>,
    )>,
    class_of: Vec<u32>,
    ready: Vec<BinaryHeap<(ReadyKey, u32)>>,
    tx: UnboundedSender<Msg>,
    rx: UnboundedReceiver<Msg>,
    running: usize,
    waiting_retry: usize,
    stop: Option<Stop>,
    batch: Batch,
    /// Where each task's row is in `batch.tasks` (so a batch holds one row per task).
    batch_slot: Vec<u32>,
    events: Vec<Event>,
    started: Instant,
    /// The clock, read once per turn of the dispatcher's loop (every transition of a turn
    /// shares it: reading the clock per event was a measurable share of the hot path).
    now: Instant,
    /// The same instant, in ms since the Unix epoch.
    now_ms: i64,
    totals: RunTotals,
    metrics: RunMetrics,
    /// Each task's id and output as [`Upstream`] entries share them (made on first use).
    shared_outputs: Vec<SharedOutput>,
    /// The output of a task that produced none.
    null_output: Arc<serde_json::Value>,
    /// [`Self::dispatch`]'s buffers: which ready queues wait for an agent, the attempts to
    /// start, and the inline ones that finished as they started.
    blocked: Vec<bool>,
    starts: Vec<(usize, PoolLease, AttemptRequest)>,
    finished_now: Vec<Finished>,
    /// Whether the last dispatch stopped with tasks it could start still ready.
    more_ready: bool,
    /// `run_id/`, the start of every idempotency key.
    key_prefix: String,
}

impl RunLoop {
    pub(crate) fn new(mut cx: RunContext) -> Result<Self, EngineError> {
        let n = cx.workflow.tasks.len();
        let mut classes: Vec<Vec<u32>> = Vec::new();
        let mut class_of = vec![0u32; n];
        let mut no_agent = Vec::new();
        for (i, task) in cx.workflow.tasks.iter().enumerate() {
            let able = cx.pool.capable_of(task);
            if able.is_empty() {
                no_agent.push(axon_core::agents::infeasibility_reason(
                    task,
                    &cx.pool.specs(),
                ));
                continue;
            }
            class_of[i] = match classes.iter().position(|c| *c == able) {
                Some(c) => c as u32,
                None => {
                    classes.push(able);
                    (classes.len() - 1) as u32
                }
            };
        }
        if !no_agent.is_empty() {
            return Err(EngineError::NoSuitableAgent(no_agent));
        }
        let records = std::mem::take(&mut cx.records);
        let tasks: Vec<TaskState> = records
            .into_iter()
            .enumerate()
            .map(|(i, rec)| TaskState {
                // Rows are keyed by their place in this workflow (batch slots rely on it).
                rec: TaskRecord {
                    position: i as u32,
                    ..rec
                },
                remaining: 0,
                ready_since: None,
                attempt_started: None,
                log_tail: Vec::new(),
            })
            .collect();
        let (tx, rx) = unbounded_channel();
        let ready = vec![BinaryHeap::new(); classes.len()];
        let workflow_ref = Arc::new(WorkflowRef {
            id: cx.workflow.id.to_string(),
            name: cx.workflow.name.clone(),
        });
        let unfinished = tasks.iter().filter(|t| !t.rec.status.is_terminal()).count();
        let key_prefix = format!("{}/", cx.run_id);
        Ok(Self {
            cx,
            tasks,
            classes,
            workflow_ref,
            running_attempts: std::iter::repeat_with(|| Running::Idle).take(n).collect(),
            inline_cancel: CancellationToken::new(),
            abandon_at: None,
            inline: FuturesUnordered::new(),
            unfinished,
            waiting_for_pool: false,
            merge_acks: Vec::new(),
            tracking: None,
            class_of,
            ready,
            tx,
            rx,
            running: 0,
            waiting_retry: 0,
            stop: None,
            batch: Batch::default(),
            batch_slot: vec![NOT_IN_BATCH; n],
            events: Vec::new(),
            started: Instant::now(),
            now: Instant::now(),
            now_ms: now_ms(),
            totals: RunTotals::default(),
            metrics: RunMetrics::register(),
            key_prefix,
            blocked: Vec::new(),
            starts: Vec::new(),
            finished_now: Vec::new(),
            more_ready: false,
            shared_outputs: vec![(None, None); n],
            null_output: Arc::new(serde_json::Value::Null),
        })
    }

    /// Gives the run its bridge (opened after the run was recorded).
    pub(crate) fn with_bridge(
        mut self,
        bridge: Option<Bridges>,
        merge_into: Option<String>,
    ) -> Self {
        self.cx.bridge = bridge;
        self.cx.merge_into = merge_into;
        self
    }

    /// `run_id/task_id/attempt`, from the run's prefix made once (formatting the run id
    /// per attempt was a measurable share of dispatching).
    fn idempotency_key(&self, i: usize, attempt: u32) -> String {
        use std::fmt::Write as _;
        let id = self.task_id(i);
        let mut key = String::with_capacity(self.key_prefix.len() + id.len() + 11);
        key.push_str(&self.key_prefix);
        key.push_str(id);
        key.push('/');
        let _ = write!(key, "{attempt}");
        key
    }

    /// Every task's current state, in workflow order (what a new run records first).
    pub(crate) fn records(&self) -> Vec<TaskRecord> {
        self.tasks.iter().map(|t| t.rec.clone()).collect()
    }

    fn task_id(&self, i: usize) -> &str {
        self.cx.workflow.tasks[i].id.as_str()
    }

    /// Whether events are wanted: by a store to write them, or by a subscriber of the bus.
    fn recording(&self) -> bool {
        self.cx.store.is_some() || self.cx.bus.has_subscribers()
    }

    /// Queues an event for the next commit (and publication after it). Nothing is built
    /// when nobody records events.
    fn emit(&mut self, task: Option<usize>, attempt: Option<u32>, kind: EventKind) {
        if !self.recording() {
            return;
        }
        let event = Event {
            run_id: self.cx.run_id,
            at_ms: self.now_ms,
            task_id: task.map(|i| self.task_id(i).to_owned()),
            attempt,
            // Task events name the agent of the task's latest attempt (a skipped task has none).
            agent: match kind {
                EventKind::TaskSkipped { .. } => None,
                _ => task.and_then(|i| self.tasks[i].rec.agent.clone()),
            },
            kind,
        };
        // The durable copy (JSON data and all) is only built for a store to write.
        if self.cx.store.is_some() {
            self.batch.events.push(EventRecord {
                seq: 0,
                run_id: event.run_id,
                task_id: event.task_id.clone(),
                kind: event.kind.name().to_owned(),
                attempt: event.attempt,
                agent: event.agent.clone(),
                at_ms: event.at_ms,
                data: serde_json::to_value(&event.kind).unwrap_or(serde_json::Value::Null),
            });
        }
        self.events.push(event);
    }

    /// Queues the task's current state for the next commit.
    /// Reads the clock for this turn of the loop.
    fn tick(&mut self) {
        self.now = Instant::now();
        self.now_ms = now_ms();
    }

    fn touch(&mut self, i: usize) {
        if self.cx.store.is_none() {
            return; // nothing to write it to
        }
        let rec = self.tasks[i].rec.clone();
        // One row per task per batch: the last state wins.
        match self.batch_slot[i] {
            NOT_IN_BATCH => {
                self.batch_slot[i] = self.batch.tasks.len() as u32;
                self.batch.tasks.push(rec);
            }
            slot => self.batch.tasks[slot as usize] = rec,
        }
    }

    /// Commits what is queued, then publishes its events.
    async fn flush(&mut self) -> Result<(), EngineError> {
        if self.stop == Some(Stop::LostLease) {
            // The run belongs to another engine now: this one's attempts stopping is not the
            // run's state, and writing it would overwrite the new holder's.
            self.batch = Batch::default();
            self.batch_slot.fill(NOT_IN_BATCH);
            self.events.clear();
            // Attempts waiting to merge are told no (their senders dropped).
            self.merge_acks.clear();
            return Ok(());
        }
        // Without a store, events are queued but the batch stays empty.
        if self.batch.is_empty() && self.events.is_empty() {
            self.release_merges();
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        for t in &batch.tasks {
            // Rows carry their task's position; clear the slots they used.
            if let Some(slot) = self.batch_slot.get_mut(t.position as usize) {
                *slot = NOT_IN_BATCH;
            }
        }
        // Tracking: what changed, as updates; a bridge with an outbox enqueues its calls in
        // this same transaction, so none is lost or sent for a state that was not committed.
        let updates = match (&self.tracking, &self.cx.bridge) {
            (Some(_), Some(bridge)) => {
                let mut updates: Vec<TrackUpdate> = batch.tasks.iter().map(track_update).collect();
                if let Some((status, _)) = batch.run_status
                    && status.is_terminal()
                {
                    let mut run =
                        TrackUpdate::workflow(&self.cx.workflow.name, status.as_str(), self.now_ms);
                    run.started_at_ms = Some(self.cx.created_at_ms);
                    updates.push(run);
                }
                batch.outbox = bridge.run.outbox(&updates);
                batch.outbox_at_ms = self.now_ms;
                updates
            }
            _ => Vec::new(),
        };
        if let Some(store) = &self.cx.store {
            let mut tries = 0;
            loop {
                match store.commit(self.cx.run_id, &batch).await {
                    Ok(()) => break,
                    Err(e) if e.is_transient() && tries < 8 => {
                        tries += 1;
                        tracing::warn!(error = %e, "store busy; retrying the commit");
                        let delay = crate::retry::service_backoff(
                            Duration::from_millis(20),
                            Duration::from_secs(2),
                            tries,
                            self.cx.run_id.as_u64_pair().1,
                        );
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(EngineError::Store(e)),
                }
            }
        }
        self.cx.bus.publish_all(&std::mem::take(&mut self.events));
        if let Some((tx, _)) = &self.tracking
            && !updates.is_empty()
        {
            let _ = tx.send(updates);
        }
        self.release_merges();
        Ok(())
    }

    /// What waited for the commit that just happened may act now.
    fn release_merges(&mut self) {
        for go in self.merge_acks.drain(..) {
            let _ = go.send(());
        }
    }

    fn make_ready(&mut self, i: usize) {
        let t = &mut self.tasks[i];
        t.rec.status = TaskStatus::Ready;
        t.ready_since = Some(self.now);
        let key = self.cx.plan.ready_key(i);
        self.ready[self.class_of[i] as usize].push((key, i as u32));
        self.touch(i);
    }

    /// Sets up counters and the ready queues from the current task states.
    fn prepare(&mut self) {
        let n = self.tasks.len();
        let wf = Arc::clone(&self.cx.workflow);
        self.emit(
            None,
            None,
            EventKind::RunSubmitted {
                workflow_id: wf.id.to_string(),
                tasks: n,
                resumed: self.cx.resumed,
            },
        );
        // Unfinished work from a previous engine starts over (with its attempt count kept).
        for i in 0..n {
            let t = &mut self.tasks[i];
            if !t.rec.status.is_terminal() {
                t.rec.status = TaskStatus::Pending;
                t.rec.progress = None;
            }
        }
        // Tasks whose prerequisites can no longer succeed are skipped.
        for &v in &self.cx.plan.order.clone() {
            let v = v as usize;
            if self.tasks[v].rec.status.is_terminal() {
                continue;
            }
            let blocker = self.cx.index.prerequisites(v).iter().copied().find(|&p| {
                matches!(
                    self.tasks[p as usize].rec.status,
                    TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled
                )
            });
            if let Some(p) = blocker {
                let because = self.task_id(p as usize).to_owned();
                self.skip(v, because);
            }
        }
        for i in 0..n {
            if self.tasks[i].rec.status != TaskStatus::Pending {
                continue;
            }
            let remaining = self
                .cx
                .index
                .prerequisites(i)
                .iter()
                .filter(|&&p| self.tasks[p as usize].rec.status != TaskStatus::Succeeded)
                .count() as u32;
            self.tasks[i].remaining = remaining;
            if remaining == 0 {
                self.make_ready(i);
            }
        }
    }

    fn skip(&mut self, i: usize, because: String) {
        let t = &mut self.tasks[i];
        t.rec.status = TaskStatus::Skipped;
        t.rec.finished_at_ms = Some(self.now_ms);
        t.rec.error = Some(format!("skipped because `{because}` did not succeed"));
        self.unfinished -= 1;
        self.touch(i);
        self.emit(Some(i), None, EventKind::TaskSkipped { because });
        self.metrics.task(
            self.cx.workflow.tasks[i].task_type.kind(),
            TaskStatus::Skipped,
        );
    }

    /// Skips every not-yet-finished task that depends, directly or not, on `failed`.
    fn skip_dependents(&mut self, failed: usize) {
        let because = self.task_id(failed).to_owned();
        let mut queue: VecDeque<u32> = self.cx.index.dependents(failed).iter().copied().collect();
        while let Some(d) = queue.pop_front() {
            let d = d as usize;
            if self.tasks[d].rec.status.is_terminal() {
                continue;
            }
            // Pending dependents are never running: a dependent only starts after `failed`
            // succeeded, and ready queues hold no dependent of an unfinished task.
            self.skip(d, because.clone());
            queue.extend(self.cx.index.dependents(d).iter().copied());
        }
    }

    /// Starts an attempt on every ready task that can get an agent, best first.
    ///
    /// Inline attempts are polled once as they start; those that finish at once are handled
    /// here, and what they made ready is dispatched in the same call, up to
    /// [`EAGER_ROUNDS`] rounds (then `more_ready` asks the loop to come back after a yield).
    async fn dispatch(&mut self) -> Result<(), EngineError> {
        self.more_ready = false;
        for _ in 0..EAGER_ROUNDS {
            if !self.dispatch_round().await? {
                return Ok(());
            }
        }
        self.more_ready = self.stop.is_none();
        Ok(())
    }

    /// One round of [`Self::dispatch`]; whether attempts finished at once (so more tasks may
    /// be ready).
    async fn dispatch_round(&mut self) -> Result<bool, EngineError> {
        if self.stop.is_some() {
            return Ok(false);
        }
        // Buffers kept between calls (a chain dispatches one task per call).
        let mut blocked = std::mem::take(&mut self.blocked);
        blocked.clear();
        blocked.resize(self.classes.len(), false);
        let mut starts = std::mem::take(&mut self.starts);
        self.waiting_for_pool = false;
        loop {
            let best = (0..self.classes.len())
                .filter(|&c| !blocked[c])
                .filter_map(|c| self.ready[c].peek().map(|&(k, _)| (k, c)))
                .max();
            let Some((_, c)) = best else { break };
            let Some(&(_, task)) = self.ready[c].peek() else {
                break;
            };
            let i = task as usize;
            let need = self.cx.workflow.tasks[i].requirements.resources;
            let Some(lease) = self.cx.pool.try_acquire(&self.classes[c], need) else {
                blocked[c] = true;
                self.waiting_for_pool = true;
                continue;
            };
            self.ready[c].pop();
            let req = self.begin_attempt(i, &lease);
            starts.push((i, lease, req));
        }
        self.blocked = blocked;
        if starts.is_empty() {
            self.starts = starts;
            return Ok(false);
        }
        // Commit, then act.
        self.flush().await?;
        let mut finished_now = std::mem::take(&mut self.finished_now);
        for (i, lease, req) in starts.drain(..) {
            if let Some(mut attempt) = self.spawn_attempt(i, lease, req) {
                // Polled once with the dispatcher's own waker: an attempt that is done at once
                // never joins the set (a spurious wake-up later is all a pending one costs).
                match std::future::poll_fn(|cx| Poll::Ready(attempt.as_mut().poll(cx))).await {
                    Poll::Ready(done) => finished_now.push(done),
                    Poll::Pending => self.inline.push(attempt),
                }
            }
        }
        self.starts = starts;
        let any = !finished_now.is_empty();
        for done in finished_now.drain(..) {
            self.handle(Msg::Finished(done));
        }
        self.finished_now = finished_now;
        Ok(any)
    }

    /// Task `p`'s id and output as its dependents' requests share them, made on first use: a
    /// task's output is final once it succeeded, which it has before any dependent starts.
    fn upstream_entry(&mut self, p: usize) -> (Arc<str>, Arc<serde_json::Value>) {
        let (id, output) = &mut self.shared_outputs[p];
        let id = id.get_or_insert_with(|| Arc::from(self.cx.workflow.tasks[p].id.as_str()));
        let output = output.get_or_insert_with(|| match &self.tasks[p].rec.output {
            Some(v) => Arc::new(v.clone()),
            None => Arc::clone(&self.null_output),
        });
        (Arc::clone(id), Arc::clone(output))
    }

    fn begin_attempt(&mut self, i: usize, lease: &PoolLease) -> AttemptRequest {
        let agent = lease.spec().id.as_str().to_owned();
        let upstream = Upstream::from_shared((0..self.cx.index.prerequisites(i).len()).map(|k| {
            let p = self.cx.index.prerequisites(i)[k] as usize;
            self.upstream_entry(p)
        }));
        let t = &mut self.tasks[i];
        let wait = t
            .ready_since
            .take()
            .map_or(0.0, |s| (self.now - s).as_secs_f64());
        t.rec.attempts += 1;
        let attempt = t.rec.attempts;
        t.rec.status = TaskStatus::Running;
        t.rec.agent = Some(agent);
        t.rec.started_at_ms = Some(self.now_ms);
        t.rec.progress = Some(0.0);
        t.rec.error = None;
        t.rec.error_kind = None;
        t.attempt_started = Some(self.now);
        self.touch(i);
        self.running += 1;
        self.totals.attempts += 1;
        self.metrics.attempt(wait);
        self.totals.queue_wait_secs += wait;
        self.emit(
            Some(i),
            Some(attempt),
            EventKind::TaskDispatched {
                queue_wait_secs: wait,
            },
        );
        self.emit(Some(i), Some(attempt), EventKind::TaskStarted);
        AttemptRequest {
            task: TaskRef::in_workflow(Arc::clone(&self.cx.workflow), i),
            workflow: Arc::clone(&self.workflow_ref),
            run_id: self.cx.run_id,
            attempt,
            context: Vec::new(),
            upstream,
            idempotency_key: self.idempotency_key(i, attempt),
            cortex: None,
            session_dir: self.cx.workspace.clone(),
        }
    }

    /// Starts an attempt: spawned, or (for an inline agent) returned for the caller to poll.
    fn spawn_attempt(
        &mut self,
        i: usize,
        lease: PoolLease,
        req: AttemptRequest,
    ) -> Option<BoxFuture<Finished>> {
        let timeout = self.cx.workflow.tasks[i].timeout;
        let attempt = req.attempt;
        let progress = Progress {
            tx: Some(self.tx.clone()),
            task: i as u32,
            attempt,
        };
        let agent = lease.agent();
        let task = i as u32;
        if self.cx.bridge.is_none() && agent.execution() == Execution::Inline {
            let (token, own) = match timeout {
                None => (self.inline_cancel.clone(), None),
                Some(_) => {
                    let token = CancellationToken::new();
                    (token.clone(), Some(token))
                }
            };
            self.running_attempts[i] = Running::Inline(own);
            return Some(Box::pin(async move {
                // No wait on the token here: a stopping run abandons inline attempts itself.
                let result =
                    run_attempt(agent.as_ref(), req, progress, token, timeout, false).await;
                Finished::freeing(lease, task, attempt, result)
            }));
        }
        let token = CancellationToken::new();
        self.running_attempts[i] = Running::Spawned(token.clone());
        let tx = self.tx.clone();
        let cortex_api_key = lease.spec().cortex_api_key;
        let bridge = self.cx.bridge.clone();
        let context_limit = self
            .cx
            .workflow
            .context_limit_for(&self.cx.workflow.tasks[i]);
        // Spawned attempts are not tracked apart: each one's last act is its `Finished`
        // message, and the run ends only when every attempt has reported.
        tokio::spawn(async move {
            let result = match bridge {
                None => run_attempt(agent.as_ref(), req, progress, token, timeout, true).await,
                Some(bridge) => {
                    let attempt = Attempt {
                        agent: agent.as_ref(),
                        req,
                        progress,
                        token,
                        timeout,
                        context_limit,
                        cortex_api_key,
                    };
                    // Boxed: sessions' bigger state is not carried by every attempt's task.
                    Box::pin(run_in_session(&bridge, attempt, &tx)).await
                }
            };
            let _ = tx.send(Msg::Finished(Finished::freeing(
                lease, task, attempt, result,
            )));
        });
        None
    }

    /// Gives up on the inline attempts that did not stop within [`STOP_WAIT`] of the run's
    /// stop: their futures are dropped (freeing their agents) and they end as cancelled.
    fn abandon_inline(&mut self) {
        self.abandon_at = None;
        drop(std::mem::take(&mut self.inline));
        for i in 0..self.tasks.len() {
            if matches!(self.running_attempts[i], Running::Inline(_)) {
                let attempt = self.tasks[i].rec.attempts;
                tracing::warn!(
                    task = self.task_id(i),
                    attempt,
                    "the agent did not stop; abandoned"
                );
                self.handle(Msg::Finished(Finished {
                    task: i as u32,
                    attempt,
                    result: Err(AttemptError::Cancelled),
                }));
            }
        }
    }

    /// Waits (at most [`STOP_WAIT`]) for the running attempts to report, ignoring what they
    /// say: the run is failing and commits nothing more.
    async fn drain_attempts(&mut self) {
        let deadline = Instant::now() + STOP_WAIT;
        while self.running > 0 {
            // Whether an attempt reported (`None`: no sender is left).
            let next = async {
                tokio::select! {
                    Some(_) = self.inline.next(), if !self.inline.is_empty() => Some(true),
                    msg = self.rx.recv() => msg.map(|m| matches!(m, Msg::Finished(_))),
                }
            };
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(true)) => self.running -= 1,
                Ok(Some(false)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Cancels every running attempt (each gets its agent's grace period to stop).
    fn cancel_attempts(&mut self) {
        self.inline_cancel.cancel();
        for running in &self.running_attempts {
            match running {
                Running::Spawned(token) | Running::Inline(Some(token)) => token.cancel(),
                Running::Idle | Running::Inline(None) => {}
            }
        }
        if !self.inline.is_empty() && self.abandon_at.is_none() {
            self.abandon_at = Some(Box::pin(tokio::time::sleep(STOP_WAIT)));
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Progress {
                task,
                attempt,
                value,
            } => {
                let i = task as usize;
                let t = &mut self.tasks[i];
                if t.rec.status != TaskStatus::Running || t.rec.attempts != attempt {
                    return; // a late report from an attempt that is over
                }
                t.rec.progress = Some(value);
                self.touch(i);
                self.emit(
                    Some(i),
                    Some(attempt),
                    EventKind::TaskProgress { progress: value },
                );
            }
            Msg::Notice { message } => self.emit(None, None, EventKind::RunNotice { message }),
            Msg::Spawned { task, attempt, pid } => {
                let i = task as usize;
                let t = &mut self.tasks[i];
                if t.rec.status == TaskStatus::Running && t.rec.attempts == attempt {
                    t.rec.agent_pid = Some(pid);
                    self.touch(i);
                }
            }
            Msg::Merging {
                task,
                attempt,
                output,
                go,
            } => {
                let i = task as usize;
                let t = &mut self.tasks[i];
                if t.rec.status != TaskStatus::Running || t.rec.attempts != attempt {
                    return; // dropping `go` tells the attempt not to merge
                }
                t.rec.output = output;
                t.rec.merging = true;
                self.touch(i);
                self.merge_acks.push(go);
            }
            Msg::RetryDue { task } => {
                let i = task as usize;
                self.waiting_retry -= 1;
                if self.tasks[i].rec.status != TaskStatus::Retrying {
                    return;
                }
                if let Some(stop) = self.stop.clone() {
                    self.cancel_task(i, &stop);
                } else {
                    self.make_ready(i);
                }
            }
            Msg::Finished(Finished {
                task,
                attempt,
                result,
            }) => {
                self.running -= 1;
                let duration = self.tasks[task as usize]
                    .attempt_started
                    .map_or(Duration::ZERO, |s| self.now - s);
                self.running_attempts[task as usize] = Running::Idle;
                self.tasks[task as usize].rec.agent_pid = None;
                self.tasks[task as usize].rec.merging = false;
                self.finished(task as usize, attempt, result, duration);
            }
        }
    }

    fn finished(
        &mut self,
        i: usize,
        attempt: u32,
        result: Result<AttemptOutput, AttemptError>,
        duration: Duration,
    ) {
        let task_kind = self.cx.workflow.tasks[i].task_type.kind();
        self.metrics.duration(task_kind, duration.as_secs_f64());
        if self.cx.store.is_some() {
            // Every finished attempt is remembered, in the same commit as its outcome.
            let episode = self.episode(i, attempt, &result, duration);
            self.batch.episodes.push(episode);
        }
        match result {
            Ok(out) => {
                let t = &mut self.tasks[i];
                t.rec.status = TaskStatus::Succeeded;
                t.rec.output = out.output;
                t.rec.progress = Some(1.0);
                t.rec.finished_at_ms = Some(self.now_ms);
                t.log_tail = out.log_tail;
                self.unfinished -= 1;
                self.touch(i);
                self.emit(
                    Some(i),
                    Some(attempt),
                    EventKind::TaskSucceeded {
                        duration_secs: duration.as_secs_f64(),
                    },
                );
                self.metrics.task(task_kind, TaskStatus::Succeeded);
                for k in 0..self.cx.index.dependents(i).len() {
                    let d = self.cx.index.dependents(i)[k] as usize;
                    let t = &mut self.tasks[d];
                    t.remaining = t.remaining.saturating_sub(1);
                    if t.remaining == 0 && t.rec.status == TaskStatus::Pending {
                        if let Some(stop) = self.stop.clone() {
                            self.cancel_task(d, &stop);
                        } else {
                            self.make_ready(d);
                        }
                    }
                }
            }
            Err(AttemptError::Cancelled) => {
                let stop = self.stop.clone().unwrap_or(Stop::Cancelled);
                self.cancel_task(i, &stop);
            }
            Err(AttemptError::Failed {
                kind,
                message,
                log_tail,
            }) => {
                let policy = self
                    .cx
                    .workflow
                    .retry_policy_for(&self.cx.workflow.tasks[i]);
                self.tasks[i].log_tail = log_tail;
                self.tasks[i].rec.error = Some(message.clone());
                self.tasks[i].rec.error_kind = Some(kind);
                if self.stop.is_none() && policy.should_retry(kind, attempt) {
                    let delay = crate::retry::delay_before_retry(
                        &policy,
                        attempt,
                        crate::retry::jitter_seed(self.cx.run_id, i, attempt),
                    );
                    self.tasks[i].rec.status = TaskStatus::Retrying;
                    self.touch(i);
                    self.emit(
                        Some(i),
                        Some(attempt),
                        EventKind::TaskRetrying {
                            error: message,
                            error_kind: kind,
                            delay_secs: delay.as_secs_f64(),
                        },
                    );
                    self.totals.retries += 1;
                    self.metrics.retry();
                    self.waiting_retry += 1;
                    let tx = self.tx.clone();
                    let token = self.cx.cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = token.cancelled() => {}
                        }
                        let _ = tx.send(Msg::RetryDue { task: i as u32 });
                    });
                } else {
                    let t = &mut self.tasks[i];
                    t.rec.status = TaskStatus::Failed;
                    t.rec.finished_at_ms = Some(self.now_ms);
                    self.unfinished -= 1;
                    self.touch(i);
                    self.emit(
                        Some(i),
                        Some(attempt),
                        EventKind::TaskFailed {
                            error: message,
                            error_kind: kind,
                            duration_secs: duration.as_secs_f64(),
                        },
                    );
                    self.metrics.task(task_kind, TaskStatus::Failed);
                    match self.cx.workflow.failure_policy {
                        FailurePolicy::Continue => self.skip_dependents(i),
                        FailurePolicy::FailFast => {
                            if self.stop.is_none() {
                                let id = self.task_id(i).to_owned();
                                self.skip_dependents(i);
                                self.begin_stop(Stop::FailFast(id));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The episode an attempt of task `i` leaves behind.
    fn episode(
        &self,
        i: usize,
        attempt: u32,
        result: &Result<AttemptOutput, AttemptError>,
        duration: Duration,
    ) -> EpisodeRecord {
        let task = &self.cx.workflow.tasks[i];
        let (status, output, error, log_tail) = match result {
            Ok(out) => (
                TaskStatus::Succeeded,
                out.output.clone(),
                None,
                &out.log_tail,
            ),
            Err(AttemptError::Cancelled) => (
                TaskStatus::Cancelled,
                None,
                Some("cancelled".to_owned()),
                &self.tasks[i].log_tail,
            ),
            Err(AttemptError::Failed {
                message, log_tail, ..
            }) => (TaskStatus::Failed, None, Some(message.clone()), log_tail),
        };
        EpisodeRecord {
            id: 0,
            run_id: self.cx.run_id,
            task_id: task.id.to_string(),
            attempt,
            name: task.name.clone(),
            task_type: task.task_type.kind().as_str().to_owned(),
            status,
            agent: self.tasks[i].rec.agent.clone(),
            output,
            log_tail: (!log_tail.is_empty()).then(|| log_tail.join("\n")),
            error,
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            finished_at_ms: self.now_ms,
        }
    }

    fn cancel_task(&mut self, i: usize, stop: &Stop) {
        let reason = match stop {
            Stop::Cancelled => "run cancelled".to_owned(),
            Stop::FailFast(id) => format!("fail_fast: task `{id}` failed"),
            Stop::WorkflowTimeout(after) => format!(
                "workflow timed out after {}",
                axon_core::duration::format(*after)
            ),
            Stop::LostLease => "another engine took over the run".to_owned(),
        };
        let t = &mut self.tasks[i];
        let attempt = (t.rec.attempts > 0).then_some(t.rec.attempts);
        t.rec.status = TaskStatus::Cancelled;
        t.rec.finished_at_ms = Some(self.now_ms);
        if t.rec.error.is_none() || matches!(stop, Stop::WorkflowTimeout(_)) {
            t.rec.error = Some(reason.clone());
        }
        self.unfinished -= 1;
        self.touch(i);
        self.emit(Some(i), attempt, EventKind::TaskCancelled { reason });
        self.metrics.task(
            self.cx.workflow.tasks[i].task_type.kind(),
            TaskStatus::Cancelled,
        );
    }

    /// Stops starting work, cancels running attempts and pending retries, and cancels every
    /// task that has not started.
    fn begin_stop(&mut self, stop: Stop) {
        if self.stop.is_some() {
            return;
        }
        tracing::info!(?stop, "stopping run");
        self.stop = Some(stop.clone());
        self.cx.cancel.cancel();
        self.cancel_attempts();
        for heap in &mut self.ready {
            heap.clear();
        }
        for i in 0..self.tasks.len() {
            if matches!(
                self.tasks[i].rec.status,
                TaskStatus::Pending | TaskStatus::Ready
            ) {
                self.cancel_task(i, &stop);
            }
        }
    }

    fn is_done(&self) -> bool {
        self.running == 0 && self.waiting_retry == 0 && self.unfinished == 0
    }

    pub(crate) async fn run(mut self) -> Result<RunReport, EngineError> {
        self.tick();
        if let Some(bridge) = self.cx.bridge.clone() {
            self.open_sessions(&bridge.run).await?;
        }
        self.prepare();
        self.flush().await?;
        // Made once, not per turn of the loop: each would register a timer or a waiter anew.
        let deadline = tokio::time::sleep(self.cx.workflow.timeout);
        tokio::pin!(deadline);
        let cancelled = self.cx.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        let mut pool_changes = self.cx.pool.changes();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            if let Err(e) = self.dispatch().await {
                break Err(e);
            }
            if self.is_done() {
                break Ok(());
            }
            // A stopping run whose attempts are all back has nothing left to wait for.
            tokio::select! {
                biased;
                () = &mut cancelled, if self.stop.is_none() => {
                    self.tick();
                    self.begin_stop(Stop::Cancelled);
                }
                () = &mut deadline, if self.stop.is_none() => {
                    self.tick();
                    self.begin_stop(Stop::WorkflowTimeout(self.cx.workflow.timeout));
                }
                () = async {
                    if let Some(at) = &mut self.abandon_at {
                        at.as_mut().await;
                    }
                }, if self.abandon_at.is_some() => {
                    self.tick();
                    self.abandon_inline();
                }
                Some(finished) = self.inline.next(), if !self.inline.is_empty() => {
                    self.tick();
                    self.handle(Msg::Finished(finished));
                    // Whatever else is ready now (`next` polls only those that were woken).
                    while let Some(Some(more)) = self.inline.next().now_or_never() {
                        self.handle(Msg::Finished(more));
                    }
                    while let Ok(more) = self.rx.try_recv() {
                        self.handle(more);
                    }
                }
                msg = self.rx.recv() => {
                    self.tick();
                    if let Some(msg) = msg {
                        self.handle(msg);
                        while let Ok(more) = self.rx.try_recv() {
                            self.handle(more);
                        }
                    }
                }
                () = pool_changes.changed(), if self.waiting_for_pool => {
                    self.tick();
                }
                _ = heartbeat.tick(), if self.cx.store.is_some() => {
                    self.tick();
                    match self.heartbeat().await {
                        Ok(None) => {}
                        Ok(Some(stop)) => self.begin_stop(stop),
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
                // Last: everything above had its chance first.
                () = tokio::task::yield_now(), if self.more_ready => {
                    self.tick();
                }
            }
            if let Err(e) = self.flush().await {
                break Err(e);
            }
        };
        if let Err(e) = outcome {
            // The store is unusable: stop the agents; what was committed stays for resume.
            self.cx.cancel.cancel();
            self.cancel_attempts();
            self.drain_attempts().await;
            return Err(e);
        }
        if self.stop == Some(Stop::LostLease) {
            return Err(EngineError::LostLease(self.cx.run_id));
        }
        self.finish().await
    }

    /// Says what the bridge wants said, repairs what a dead engine left (merges it had made
    /// durable but not done, sessions it left behind), and starts the tracking worker.
    ///
    /// # Errors
    /// When the store cannot record the recovered merges.
    async fn open_sessions(&mut self, bridge: &Arc<dyn RunBridge>) -> Result<(), EngineError> {
        // Tracking first: what the recovery below changes is tracked too.
        let (tx, mut rx) = unbounded_channel::<Vec<TrackUpdate>>();
        let tracked = Arc::clone(bridge);
        let worker = tokio::spawn(async move {
            while let Some(mut updates) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    updates.extend(more);
                }
                track_with_retries(tracked.as_ref(), updates).await;
            }
        });
        self.tracking = Some((tx, worker));
        for message in bridge.notices() {
            self.emit(None, None, EventKind::RunNotice { message });
        }
        if self.cx.resumed {
            for i in 0..self.tasks.len() {
                let rec = &self.tasks[i].rec;
                if !rec.merging || rec.status.is_terminal() {
                    continue;
                }
                let (task_id, attempt) = (rec.task_id.clone(), rec.attempts);
                let outcome = bridge.recover_merge(&task_id, attempt).await;
                let t = &mut self.tasks[i];
                t.rec.merging = false;
                t.rec.finished_at_ms = Some(self.now_ms);
                self.unfinished -= 1;
                match outcome {
                    Ok(()) => {
                        t.rec.status = TaskStatus::Succeeded;
                        t.rec.progress = Some(1.0);
                        self.touch(i);
                        self.emit(
                            Some(i),
                            Some(attempt),
                            EventKind::TaskSucceeded { duration_secs: 0.0 },
                        );
                    }
                    Err(e) => {
                        t.rec.status = TaskStatus::Failed;
                        t.rec.error = Some(e.message.clone());
                        t.rec.error_kind = Some(e.kind);
                        self.touch(i);
                        self.emit(
                            Some(i),
                            Some(attempt),
                            EventKind::TaskFailed {
                                error: e.message,
                                error_kind: e.kind,
                                duration_secs: 0.0,
                            },
                        );
                    }
                }
            }
            // The recovered merges are recorded before repair removes what proves them (a
            // task branch): a crash right after must not find a merge due and no branch.
            self.flush().await?;
            // Sessions kept for inspection stay; everything else a dead engine left goes.
            if let Err(e) = bridge.repair(&self.kept_sessions()).await {
                tracing::warn!(error = %e, "could not clean up the sessions of the previous engine");
            }
        }
        Ok(())
    }

    /// The sessions kept for inspection: the last attempt of each task that failed with a
    /// merge conflict or a scope violation.
    fn kept_sessions(&self) -> Vec<(String, u32)> {
        self.tasks
            .iter()
            .filter(|t| {
                t.rec.status == TaskStatus::Failed
                    && matches!(
                        t.rec.error_kind,
                        Some(ErrorType::MergeConflict | ErrorType::ScopeViolation)
                    )
            })
            .map(|t| (t.rec.task_id.clone(), t.rec.attempts))
            .collect()
    }

    /// Checks for a cancel request and renews the lease.
    async fn heartbeat(&mut self) -> Result<Option<Stop>, EngineError> {
        let Some(store) = &self.cx.store else {
            return Ok(None);
        };
        if self.stop.is_none() && store.cancel_requested(self.cx.run_id).await? {
            return Ok(Some(Stop::Cancelled));
        }
        if let Some(h) = &self.cx.holder {
            let expires =
                now_ms() + i64::try_from(self.cx.lease_ttl.as_millis()).unwrap_or(i64::MAX);
            if !store
                .renew_lease(self.cx.run_id, &h.host, h.pid, expires)
                .await?
            {
                return Ok(Some(Stop::LostLease));
            }
        }
        Ok(None)
    }

    async fn finish(mut self) -> Result<RunReport, EngineError> {
        let status = match &self.stop {
            Some(Stop::Cancelled) => RunStatus::Cancelled,
            Some(_) => RunStatus::Failed,
            None if self
                .tasks
                .iter()
                .all(|t| t.rec.status == TaskStatus::Succeeded) =>
            {
                RunStatus::Succeeded
            }
            None => RunStatus::Failed,
        };
        self.tick();
        let finished_at = self.now_ms;
        let duration = self.started.elapsed();
        let mut finish_error = None;
        if let Some(bridge) = self.cx.bridge.clone() {
            // Every outcome is committed: what sessions left for a resume can go now.
            if let Err(e) = bridge.run.repair(&self.kept_sessions()).await {
                tracing::warn!(error = %e, "could not clean up the run's sessions");
            }
            let succeeded = status == RunStatus::Succeeded;
            match bridge
                .run
                .close_run(succeeded, self.cx.merge_into.as_deref())
                .await
            {
                Ok(notices) => {
                    for message in notices {
                        self.emit(None, None, EventKind::RunNotice { message });
                    }
                }
                Err(e) => {
                    self.emit(
                        None,
                        None,
                        EventKind::RunNotice {
                            message: format!("error: {e}"),
                        },
                    );
                    finish_error = Some(e.message);
                }
            }
        }
        self.batch.run_status = Some((status, Some(finished_at)));
        let finished = EventKind::RunFinished {
            status,
            duration_secs: duration.as_secs_f64(),
        };
        crate::metrics::run_finished(
            status.as_str(),
            self.cx
                .pool
                .stats()
                .into_iter()
                .map(|s| (s.id, s.utilisation)),
        );
        match self.cx.bridge.clone() {
            None => {
                self.emit(None, None, finished);
                self.flush().await?;
            }
            Some(bridge) => {
                // This flush also tracks the run's end (see `flush`).
                self.flush().await?;
                if let Some((tx, worker)) = self.tracking.take() {
                    drop(tx);
                    // Tracking is written before the run is reported over.
                    let _ = worker.await;
                }
                // What a remote tracker was not sent yet gets a last chance, then a word;
                // the run's last event stays `RunFinished`.
                for message in bridge.run.drain().await {
                    self.emit(None, None, EventKind::RunNotice { message });
                }
                self.emit(None, None, finished);
                self.flush().await?;
            }
        }
        if let (Some(store), Some(h)) = (&self.cx.store, &self.cx.holder) {
            store.release_lease(self.cx.run_id, &h.host, h.pid).await?;
        }
        let mut totals = self.totals;
        for t in &self.tasks {
            match t.rec.status {
                TaskStatus::Succeeded => totals.succeeded += 1,
                TaskStatus::Failed => totals.failed += 1,
                TaskStatus::Skipped => totals.skipped += 1,
                TaskStatus::Cancelled => totals.cancelled += 1,
                _ => {}
            }
        }
        let wf = &self.cx.workflow;
        Ok(RunReport {
            run_id: self.cx.run_id,
            workflow_id: wf.id.to_string(),
            workflow_name: wf.name.clone(),
            status,
            created_at_ms: self.cx.created_at_ms,
            finished_at_ms: Some(finished_at),
            tasks: self
                .tasks
                .into_iter()
                .map(|t| TaskReport::from_record(t.rec, t.log_tail))
                .collect(),
            totals,
            finish_error,
        })
    }
}

/// Runs one attempt in the calling task: the agent's future, its timeout, and its
/// cancellation. A panic in `execute` itself (before a future exists) or in any poll of its
/// future fails the attempt with the panic message instead of vanishing. With
/// `abandon_when_cancelled`, an agent that does not stop within [`STOP_WAIT`] of its token's
/// cancellation is abandoned here (inline attempts leave that to the dispatcher, which saves
/// every attempt a wait on its token).
///
/// The agent's future runs in this task, not in one of its own: an agent that blocks its
/// thread delays its own timeout (agents must not block; the command agent never does).
async fn run_attempt(
    agent: &dyn Agent,
    req: AttemptRequest,
    progress: Progress,
    token: CancellationToken,
    timeout: Option<Duration>,
    abandon_when_cancelled: bool,
) -> Result<AttemptOutput, AttemptError> {
    let exec = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        agent.execute(req, progress, token.clone())
    }));
    let mut exec = match exec {
        Ok(future) => CatchUnwind(future),
        Err(payload) => return Err(panicked(payload)),
    };
    let limit = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = &mut exec => result,
        () = limit => {
            token.cancel();
            // Whatever it answers once told to stop, the attempt ran out of time; one that
            // does not stop within the wait is abandoned (its future dropped).
            let _ = tokio::time::timeout(STOP_WAIT, &mut exec).await;
            Err(AttemptError::timed_out(timeout.unwrap_or_default()))
        }
        () = token.cancelled(), if abandon_when_cancelled => {
            // The agent was told to stop; it may still finish (even successfully).
            tokio::time::timeout(STOP_WAIT, &mut exec)
                .await
                .unwrap_or(Err(AttemptError::Cancelled))
        }
    }
}

/// One attempt and what it needs, for [`run_in_session`].
struct Attempt<'a> {
    agent: &'a dyn Agent,
    req: AttemptRequest,
    progress: Progress,
    token: CancellationToken,
    timeout: Option<Duration>,
    context_limit: u32,
    /// Whether the agent may have the Cortex API key (its agents file opts in).
    cortex_api_key: bool,
}

/// Runs an attempt in a session of the run's bridge: past episodes as its context, its own
/// working directory, and, on success, the scope check, the commit and (once the dispatcher
/// has made the success durable) the merge. The session is closed whatever happens; it is
/// kept for inspection after a merge conflict or a scope violation.
async fn run_in_session(
    bridge: &Bridges,
    mut a: Attempt<'_>,
    tx: &UnboundedSender<Msg>,
) -> Result<AttemptOutput, AttemptError> {
    let task = a.req.task.clone();
    if a.context_limit > 0 {
        match bridge
            .cortex
            .search_episodes(&task.name, a.context_limit)
            .await
        {
            Ok(context) => {
                a.req.context = context.episodes;
                if let Some(message) = context.warning {
                    let _ = tx.send(Msg::Notice { message });
                }
            }
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "episode search failed; no context")
            }
        }
    }
    let session = bridge
        .run
        .create_session(task.id.as_str(), a.req.attempt)
        .await?;
    a.req.session_dir = session.dir.clone();
    // The Cortex API key only reaches agents whose agents file opts in.
    a.req.cortex = session.cortex.as_ref().map(|c| {
        if a.cortex_api_key || c.api_key.is_none() {
            Arc::clone(c)
        } else {
            Arc::new(c.without_key())
        }
    });
    let (task_no, attempt) = (a.progress.task, a.req.attempt);
    let result = run_attempt(a.agent, a.req, a.progress, a.token, a.timeout, true).await;
    let (result, keep) = match result {
        Err(e) => (Err(e), false),
        Ok(out) => match bridge.run.seal_session(&session, &task.scope).await {
            Err(e) => {
                let keep = e.kind == ErrorType::ScopeViolation;
                (Err(e.into()), keep)
            }
            Ok(false) => (Ok(out), false),
            Ok(true) => {
                let (go, merge_now) = oneshot::channel();
                let _ = tx.send(Msg::Merging {
                    task: task_no,
                    attempt,
                    output: out.output.clone(),
                    go,
                });
                match merge_now.await {
                    // The run stopped writing (another engine took it over): not ours to merge.
                    Err(_) => (Err(AttemptError::Cancelled), false),
                    Ok(()) => match bridge.run.merge_session(&session).await {
                        Ok(()) => (Ok(out), false),
                        Err(e) => {
                            let keep = e.kind == ErrorType::MergeConflict;
                            (Err(e.into()), keep)
                        }
                    },
                }
            }
        },
    };
    bridge.run.close_session(&session, keep).await;
    result
}

/// Applies tracking updates, retrying transient failures (a busy database, a server
/// restarting) with backoff; tracking never stops or fails the run, so what still fails is
/// logged and dropped.
async fn track_with_retries(bridge: &dyn RunBridge, updates: Vec<TrackUpdate>) {
    for tries in 1.. {
        match bridge.track(updates.clone()).await {
            Ok(()) => return,
            Err(e) if e.is_transient() && tries < 8 => {
                let delay = crate::retry::service_backoff(
                    Duration::from_millis(50),
                    Duration::from_secs(5),
                    tries,
                    u64::from(tries),
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, updates = updates.len(), "task tracking update failed");
                return;
            }
        }
    }
}

/// A task's current state as a tracking update.
fn track_update(rec: &TaskRecord) -> TrackUpdate {
    let mut update = TrackUpdate::task(
        rec.task_id.clone(),
        rec.name.clone(),
        rec.status.as_str(),
        rec.finished_at_ms
            .or(rec.started_at_ms)
            .unwrap_or_else(now_ms),
    );
    update.progress = rec.progress;
    update.assigned_to = rec.agent.clone();
    update.note = rec.error.clone();
    update.started_at_ms = rec.started_at_ms;
    update
}

/// An agent's future, with panics in its `poll` turned into a failed attempt.
struct CatchUnwind(BoxFuture<Result<AttemptOutput, AttemptError>>);

impl Future for CatchUnwind {
    type Output = Result<AttemptOutput, AttemptError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)))
            .unwrap_or_else(|payload| Poll::Ready(Err(panicked(payload))))
    }
}

fn panicked(payload: Box<dyn std::any::Any + Send>) -> AttemptError {
    AttemptError::failed(
        ErrorType::AgentError,
        format!("agent panicked: {}", panic_message(payload)),
    )
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_agent_panicking_before_its_future_exists_fails_the_task() {
        use crate::pool::PoolAgent;
        use axon_core::builder::{TaskBuilder, WorkflowBuilder};

        struct PanicsAtOnce;
        impl Agent for PanicsAtOnce {
            fn execute(
                &self,
                _: AttemptRequest,
                _: Progress,
                _: CancellationToken,
            ) -> BoxFuture<Result<AttemptOutput, AttemptError>> {
                panic!("no future for you");
            }
        }
        let spec = axon_core::agents::parse_agents(
            "agents:\n  - id: a\n    capabilities: [x]\n",
            axon_core::format::Format::Yaml,
        )
        .unwrap()
        .agents
        .remove(0);
        let engine = crate::Engine::new(AgentPool::new(vec![PoolAgent {
            spec,
            agent: Arc::new(PanicsAtOnce),
        }]));
        let workflow = WorkflowBuilder::new("p")
            .task(
                TaskBuilder::custom("t", "T", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(1)),
            )
            .build()
            .unwrap();
        let run = engine.run(workflow, crate::RunOptions::default());
        let report = tokio::time::timeout(Duration::from_secs(7200), run)
            .await
            .expect("the run ends instead of hanging")
            .unwrap();
        assert_eq!(report.tasks[0].status, TaskStatus::Failed);
        assert_eq!(
            report.tasks[0].error.as_deref(),
            Some("agent panicked: no future for you")
        );
        assert_eq!(engine.pool().stats()[0].running, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_losing_its_lease_a_run_writes_nothing_more() {
        use crate::agent::FnAgent;
        use crate::pool::PoolAgent;
        use axon_core::builder::{TaskBuilder, WorkflowBuilder};
        use axon_store::{Lease, SqliteStore};

        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let (started_tx, mut started) = unbounded_channel::<()>();
        let agent = FnAgent::new(move |_, _, cancel: CancellationToken| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                cancel.cancelled().await;
                Err(AttemptError::Cancelled)
            }
        });
        let spec = axon_core::agents::parse_agents(
            "agents:\n  - id: a\n    capabilities: [x]\n",
            axon_core::format::Format::Yaml,
        )
        .unwrap()
        .agents
        .remove(0);
        let engine = crate::Engine::new(AgentPool::new(vec![PoolAgent {
            spec,
            agent: Arc::new(agent),
        }]))
        .with_store(store.clone());
        let task = |id: &str| {
            TaskBuilder::custom(id, id, "h")
                .capability("x")
                .estimated_duration(Duration::from_secs(1))
        };
        let workflow = WorkflowBuilder::new("w")
            .task(task("t"))
            .task(task("u").depends_on(["t"]))
            .build()
            .unwrap();
        let handle = engine
            .start(workflow, crate::RunOptions::default())
            .await
            .unwrap();
        let run_id = handle.run_id;
        started.recv().await.unwrap();
        let before = store.tasks(run_id).await.unwrap();
        let other = Lease {
            host: "elsewhere".into(),
            pid: 1,
            expires_at_ms: now_ms() + 60_000,
        };
        // The heartbeat may renew the lease meanwhile: compare-and-swap until it sticks.
        while !store
            .swap_lease(run_id, store.lease(run_id).await.unwrap().as_ref(), &other)
            .await
            .unwrap()
        {}
        let out = tokio::time::timeout(Duration::from_secs(10), handle.wait())
            .await
            .expect("the run stops");
        assert!(matches!(out, Err(EngineError::LostLease(_))), "{out:?}");
        assert_eq!(store.tasks(run_id).await.unwrap(), before);
    }
}
