//! The courier: delivers the store's tracking outbox to a Cortex server.
//!
//! Each round reads the calls that are due ([`Store::outbox_due`]: at most one per task, the
//! oldest undelivered of its queue, so no task's calls are reordered), delivers the workflow's
//! first (tasks need its Cortex id as their parent tag), then the tasks' concurrently, and
//! records each outcome: delivered, or to retry later with backoff (or after the server's
//! `Retry-After`). A failing call holds back the later calls of its own task only.
//!
//! Creating a Cortex task is not idempotent on the server, so the courier makes it so: the
//! Cortex id of every created task is stored, and a create whose earlier delivery may have
//! reached Cortex without being recorded (it failed in a way that proves nothing, or it was
//! enqueued before this courier started: a crash) first looks for the task by its tags and
//! adopts it. A create that loses a race with another courier deletes its own task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axon_store::{CortexIdRecord, OutboxItem, Store, StoreError};
use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::tracking::{CREATE_TASK, CREATE_WORKFLOW, UPDATE, parent_tag, task_tag, workflow_tags};
use crate::cortex::http::{
    CortexClient, CortexError, CortexTaskId, NewTask, TaskFilter, TaskUpdate,
};
use crate::error::chain;
use crate::retry::service_backoff;
use crate::run::now_ms;

/// Calls read per round: a new run's task creates (one per task) go in a few rounds, each
/// settled in one store write.
const ROUND: u32 = 1024;
/// Calls of different tasks in flight at once.
const IN_FLIGHT: usize = 8;
/// First retry delay of a failed delivery.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest retry delay of a failed delivery.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Delivered calls are recorded in the store this many at a time (or fewer, at the end of a
/// round): each record is a short write, so the engine's commits, which share the store's one
/// writer, never wait long behind one.
const SETTLE_EVERY: usize = 64;
/// At most this many updates of a task are merged into one call.
const MERGE_UPDATES: usize = 32;
/// At most this many waiting calls are read per round for merging.
const FOLLOWERS: u32 = 4096;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Round {
    /// Calls delivered (or dropped for good, see [`Outcome::Dropped`]).
    pub delivered: usize,
    /// Calls that failed and wait for a retry.
    pub failed: usize,
    /// Whether a call failed because the server could not be reached at all.
    pub unreachable: bool,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// Whether the round took as many calls as it could (more may be due).
    pub full: bool,
}

/// The outcome of delivering one call.
enum Outcome {
    /// Cortex has it.
    Delivered,
    /// Cortex has it, and so did the later calls of the same queue merged into it (their ids).
    DeliveredWith(Vec<i64>),
    /// The Cortex task of a task exists now (`ours`: this call created it; else it was found);
    /// its id is recorded with the round's others.
    Created {
        task: String,
        id: CortexTaskId,
        ours: bool,
    },
    /// It can never be delivered (its Cortex task was deleted there, or its payload is not
    /// one this version wrote): it is taken off the queue, so the task's later calls go on.
    Dropped(String),
    /// Not yet (nothing was sent): it stays due for a later round.
    Later(String),
}

/// The Cortex tasks of a run found by their tags (after a crash): by Axon task id, `None` for
/// the workflow.
type Found = HashMap<Option<String>, CortexTaskId>;

/// A background thread of its own for the courier's rounds while a run lives (a current-thread
/// runtime): the requests, the answers' parsing and the outbox reads never take a turn on the
/// engine's workers, where they would delay the dispatcher. It runs at background priority
/// (`SCHED_IDLE` on Linux: only on CPU time nothing else wants), so tracking takes its time
/// from the gaps of a busy run instead of from the agents and the engine. Stops when dropped.
pub(crate) struct HttpThread {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the thread's runtime.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpThread {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    pub(crate) fn start() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("axon-cortex-http".into())
            .spawn(move || {
                if let Err(e) = crate::os::lower_current_thread() {
                    tracing::debug!(error = %e, "cortex tracking runs at normal priority");
                }
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

/// Where a round runs its calls: the HTTP client of its runtime, and where its store writes go.
#[derive(Clone, Copy)]
struct Lane<'a> {
    client: &'a CortexClient,
    /// The runtime of the round's writes (`None`: the round's own). A background round's
    /// writes go to a runtime of normal priority: a transaction holds the store's one writer,
    /// which the engine's commits wait for, and must never wait for a background thread's
    /// turn on a busy CPU.
    writes: Option<&'a tokio::runtime::Handle>,
}

/// The courier's background thread, with the client whose connections live there.
struct Background {
    thread: Arc<HttpThread>,
    client: CortexClient,
    /// The runtime the courier was made on (the engine's), for the background rounds' writes.
    writes: tokio::runtime::Handle,
}

/// Delivers outbox calls to one Cortex server.
pub(crate) struct Courier {
    /// The client of rounds on the caller's runtime (the end of a run, `axon cortex sync`).
    client: CortexClient,
    /// Where the worker's rounds run while a run lives (`None`: on the caller's runtime).
    background: Option<Background>,
    store: Arc<dyn Store>,
    /// Calls enqueued before this may have reached Cortex unrecorded (their engine died).
    started_ms: i64,
    /// What searching Cortex by tags found, per run, and in which round (searched once per
    /// run, and again, at most once a round, for creates that failed before: their answer may
    /// have been lost after Cortex created the task).
    found: Mutex<HashMap<Uuid, (u64, Found)>>,
    /// Rounds started so far.
    rounds: std::sync::atomic::AtomicU64,
    /// The Cortex ids recorded in the store, as read or written by this courier (an id, once
    /// recorded, never changes).
    ids: std::sync::Mutex<HashMap<(Uuid, Option<String>), String>>,
}

impl Courier {
    pub(crate) fn new(client: CortexClient, store: Arc<dyn Store>) -> Self {
        Self {
            client,
            background: None,
            store,
            started_ms: now_ms(),
            found: Mutex::new(HashMap::new()),
            rounds: std::sync::atomic::AtomicU64::new(0),
            ids: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn known_ids(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Option<String>), String>> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The Cortex id recorded for `task` (`None`: the workflow) of `run`.
    async fn cortex_id(&self, run: Uuid, task: Option<&str>) -> Result<Option<String>, StoreError> {
        let key = (run, task.map(str::to_owned));
        if let Some(id) = self.known_ids().get(&key) {
            return Ok(Some(id.clone()));
        }
        let id = self.store.cortex_id(run, task).await?;
        if let Some(id) = &id {
            self.known_ids().insert(key, id.clone());
        }
        Ok(id)
    }

    /// The same courier with its background rounds on `thread`, with `client` (a client of
    /// its own: a client's connections belong to the runtime that made them). Call it on the
    /// runtime the background rounds' store writes should run on.
    pub(crate) fn on_thread(mut self, thread: Arc<HttpThread>, client: CortexClient) -> Self {
        if let Ok(writes) = tokio::runtime::Handle::try_current() {
            self.background = Some(Background {
                thread,
                client,
                writes,
            });
        }
        self
    }

    /// The lane of rounds on the caller's runtime.
    fn here(&self) -> Lane<'_> {
        Lane {
            client: &self.client,
            writes: None,
        }
    }

    /// Runs store write `write` where `lane` says.
    async fn write<T, F, Fut>(&self, lane: Lane<'_>, write: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match lane.writes {
            None => write(store).await,
            Some(runtime) => runtime.spawn(write(store)).await.unwrap_or_else(|e| {
                Err(StoreError::NotReached(format!(
                    "the engine's runtime stopped: {e}"
                )))
            }),
        }
    }

    /// The store it delivers from.
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The client it delivers with.
    pub(crate) fn client(&self) -> &CortexClient {
        &self.client
    }

    /// Delivers `run`'s calls round after round until none is left, Cortex cannot be reached,
    /// no round delivered anything for `patience`, or `deadline` passes. What would be due
    /// within `patience` (or before the deadline) goes at once: this is the last chance a run
    /// gives its calls, or a sync of a run whose engine is gone. The rounds run on the
    /// caller's runtime, at its priority (the caller waits for them), or with `background` as
    /// [`Courier::background_round`] runs them.
    ///
    /// # Errors
    /// When the store fails.
    pub(crate) async fn deliver_until(
        self: &Arc<Self>,
        run: Uuid,
        patience: Duration,
        deadline: Option<Instant>,
        background: bool,
    ) -> Result<Delivered, StoreError> {
        let mut done = Delivered::default();
        let mut last_progress = Instant::now();
        loop {
            done.left = self.store.outbox_counts(run).await?.undelivered;
            let now = Instant::now();
            if done.left == 0 || deadline.is_some_and(|d| now >= d) {
                return Ok(done);
            }
            let ahead = deadline.map_or(patience, |d| patience.min(d - now));
            let round = if background {
                self.background_round(run, ahead, &CancellationToken::new())
                    .await?
            } else {
                self.round_in(self.here(), run, ahead, &CancellationToken::new())
                    .await?
            };
            done.delivered += round.delivered as u64;
            if round.last_error.is_some() {
                done.last_error = round.last_error;
            }
            if round.delivered > 0 {
                last_progress = Instant::now();
                continue;
            }
            // Cortex is down: waiting for it would only hold the caller up.
            if round.unreachable || last_progress.elapsed() >= patience {
                done.left = self.store.outbox_counts(run).await?.undelivered;
                return Ok(done);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Delivers what of `run` is due `ahead` from now (zero: what is due now), once, in the
    /// background: on the courier's thread if it has one. Once `stop` is cancelled the round
    /// takes no more calls: it ends when those in flight are answered and recorded (a thread
    /// of background priority may get little CPU time, and whoever stops it waits for it).
    ///
    /// # Errors
    /// When the store fails (nothing is lost: what was not recorded delivered is delivered
    /// again later).
    pub(crate) async fn background_round(
        self: &Arc<Self>,
        run: Uuid,
        ahead: Duration,
        stop: &CancellationToken,
    ) -> Result<Round, StoreError> {
        let Some(background) = &self.background else {
            return self.round_in(self.here(), run, ahead, stop).await;
        };
        let stop = stop.clone();
        let (client, writes) = (background.client.clone(), background.writes.clone());
        // The whole round goes to the courier's thread: its HTTP exchanges, their answers and
        // its store reads wake that thread only, never the engine's workers.
        let me = Arc::clone(self);
        let round = background.thread.handle.spawn(async move {
            let lane = Lane {
                client: &client,
                writes: Some(&writes),
            };
            me.round_in(lane, run, ahead, &stop).await
        });
        match round.await {
            Ok(round) => round,
            // The thread is gone (the bridge is being dropped): nothing was delivered, the
            // calls stay queued.
            Err(e) => Ok(Round {
                unreachable: true,
                last_error: Some(format!("the cortex tracking thread stopped: {e}")),
                ..Round::default()
            }),
        }
    }

    /// Delivers what of `run` is due `ahead` from now (zero: what is due now), once, in `lane`,
    /// taking no more calls once `stop` is cancelled.
    async fn round_in(
        &self,
        lane: Lane<'_>,
        run: Uuid,
        ahead: Duration,
        stop: &CancellationToken,
    ) -> Result<Round, StoreError> {
        self.rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let horizon = now_ms() + i64::try_from(ahead.as_millis()).unwrap_or(0);
        let due = self.store.outbox_due(Some(run), horizon, ROUND).await?;
        let mut round = Round {
            full: due.len() >= ROUND as usize,
            ..Round::default()
        };
        // What waits behind the due updates, read once for the round: merged into them.
        let mut followers: HashMap<Option<String>, Vec<OutboxItem>> = HashMap::new();
        if due.iter().any(|i| i.kind == UPDATE) {
            for f in self.store.outbox_followers(run, FOLLOWERS).await? {
                followers.entry(f.task_id.clone()).or_default().push(f);
            }
        }
        let followers = &followers;
        let (workflow, tasks): (Vec<OutboxItem>, Vec<OutboxItem>) =
            due.into_iter().partition(|i| i.task_id.is_none());
        let mut settled = Settled::default();
        for item in workflow {
            let outcome = self.deliver(lane, &item, followers).await;
            self.settle(lane, &item, outcome, &mut round, &mut settled)
                .await?;
        }
        let outcomes = futures_util::stream::iter(tasks)
            .take_until(stop.cancelled())
            .map(|item| async move {
                let outcome = self.deliver(lane, &item, followers).await;
                (item, outcome)
            })
            .buffer_unordered(IN_FLIGHT);
        let mut outcomes = std::pin::pin!(outcomes);
        while let Some((item, outcome)) = outcomes.next().await {
            self.settle(lane, &item, outcome, &mut round, &mut settled)
                .await?;
            if settled.delivered.len() >= SETTLE_EVERY {
                self.record(lane, std::mem::take(&mut settled)).await?;
            }
        }
        self.record(lane, settled).await?;
        Ok(round)
    }

    /// Records what was `settled` in the store, in one transaction: the tasks' Cortex ids with
    /// the creates that made them, and the delivered calls. A crash before it is covered: the
    /// creates are delivered again, find their tasks and adopt them, and the rest goes again.
    async fn record(&self, lane: Lane<'_>, settled: Settled) -> Result<(), StoreError> {
        let (ids, ours): (Vec<CortexIdRecord>, Vec<bool>) = settled.ids.into_iter().unzip();
        let delivered = settled.delivered;
        let (ids, kept) = self
            .write(lane, |store| async move {
                let kept = store.outbox_settle(&ids, &delivered).await?;
                Ok((ids, kept))
            })
            .await?;
        {
            let mut known = self.known_ids();
            for (id, kept) in ids.iter().zip(&kept) {
                known.insert((id.run_id, id.task_id.clone()), kept.clone());
            }
        }
        for ((id, ours), kept) in ids.iter().zip(ours).zip(kept) {
            if ours && kept != id.remote_id {
                // Another delivery won the race: ours is a duplicate.
                let dup = CortexTaskId(id.remote_id.clone());
                if let Err(e) = lane.client.delete_task(&dup).await {
                    tracing::warn!(error = %e, "could not delete a duplicate Cortex task");
                }
            }
        }
        Ok(())
    }

    async fn settle(
        &self,
        lane: Lane<'_>,
        item: &OutboxItem,
        outcome: Result<Outcome, Failure>,
        round: &mut Round,
        settled: &mut Settled,
    ) -> Result<(), StoreError> {
        let delivered = &mut settled.delivered;
        let (reason, after) = match outcome {
            Ok(Outcome::Delivered) => {
                delivered.push(item.id);
                round.delivered += 1;
                return Ok(());
            }
            Ok(Outcome::DeliveredWith(more)) => {
                delivered.push(item.id);
                round.delivered += 1 + more.len();
                delivered.extend(more);
                return Ok(());
            }
            Ok(Outcome::Created { task, id, ours }) => {
                delivered.push(item.id);
                round.delivered += 1;
                settled.ids.push((
                    CortexIdRecord {
                        run_id: item.run_id,
                        task_id: Some(task),
                        remote_id: id.0,
                    },
                    ours,
                ));
                return Ok(());
            }
            Ok(Outcome::Dropped(reason)) => {
                tracing::warn!(run = %item.run_id, task = ?item.task_id, kind = %item.kind, %reason, "tracking call dropped");
                delivered.push(item.id);
                round.delivered += 1;
                return Ok(());
            }
            Ok(Outcome::Later(reason)) => {
                // Not a failure (nothing was sent): the call stays due, untouched.
                tracing::trace!(id = item.id, %reason, "tracking call waits");
                return Ok(());
            }
            Err(Failure::Store(e)) => return Err(e),
            Err(Failure::Cortex(e)) => {
                round.unreachable |= e.is_unreachable();
                let after = e.retry_after().unwrap_or_else(|| {
                    service_backoff(
                        FIRST_RETRY,
                        MAX_RETRY,
                        item.attempts.saturating_add(1),
                        item.id.unsigned_abs(),
                    )
                });
                (e.to_string(), after)
            }
        };
        round.failed += 1;
        let due = now_ms() + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2);
        let (id, why) = (item.id, reason.clone());
        self.write(lane, |store| async move {
            store.outbox_retry_later(id, &why, due).await
        })
        .await?;
        round.last_error = Some(reason);
        Ok(())
    }

    async fn deliver(
        &self,
        lane: Lane<'_>,
        item: &OutboxItem,
        followers: &HashMap<Option<String>, Vec<OutboxItem>>,
    ) -> Result<Outcome, Failure> {
        match item.kind.as_str() {
            CREATE_WORKFLOW => self.create(lane, item, None).await,
            CREATE_TASK => match &item.task_id {
                Some(task) => self.create(lane, item, Some(task)).await,
                None => Ok(Outcome::Dropped("a task create without a task".into())),
            },
            UPDATE => {
                let behind = followers.get(&item.task_id).map_or(&[][..], Vec::as_slice);
                self.update(lane, item, behind).await
            }
            other => Ok(Outcome::Dropped(format!("unknown call `{other}`"))),
        }
    }

    /// Creates the Cortex task of the workflow (`task` `None`) or of a task, unless it exists.
    async fn create(
        &self,
        lane: Lane<'_>,
        item: &OutboxItem,
        task: Option<&str>,
    ) -> Result<Outcome, Failure> {
        let run = item.run_id;
        // An earlier delivery may have created it without our knowing: a create that failed
        // before, or one enqueued before this courier started (by an engine that died).
        let suspect = item.attempts > 0 || item.created_at_ms < self.started_ms;
        // Otherwise only this courier can have recorded its id (another one only delivers runs
        // whose engine is gone), and it knows what it recorded.
        let exists = if suspect {
            self.cortex_id(run, task).await?.is_some()
        } else {
            self.known_ids()
                .contains_key(&(run, task.map(str::to_owned)))
        };
        if exists {
            return Ok(Outcome::Delivered);
        }
        let Ok(mut body) = serde_json::from_value::<NewTask>(item.payload.clone()) else {
            return Ok(Outcome::Dropped("its payload is not a Cortex task".into()));
        };
        if task.is_some() {
            let Some(parent) = self.cortex_id(run, None).await? else {
                return Ok(Outcome::Later(
                    "waiting for the workflow's Cortex task".into(),
                ));
            };
            body.tags.insert(0, parent_tag(&parent));
        }
        let found = if suspect {
            self.find(lane, run, task, item.attempts > 0).await?
        } else {
            None
        };
        let (id, ours) = match found {
            Some(id) => (id, false),
            None => (lane.client.create_task(&body).await?.id, true),
        };
        if let Some(task) = task {
            // Recorded with the round's other creates.
            return Ok(Outcome::Created {
                task: task.to_owned(),
                id,
                ours,
            });
        }
        // The workflow's id is recorded at once: its tasks' creates need it as their parent.
        let created = id;
        let new = created.0.clone();
        let kept = self
            .write(lane, |store| async move {
                store.set_cortex_id(run, None, &new).await
            })
            .await?;
        self.known_ids().insert((run, None), kept.clone());
        if !ours {
            return Ok(Outcome::Delivered);
        }
        if kept != created.as_str() {
            // Another delivery won the race: ours is a duplicate.
            if let Err(e) = lane.client.delete_task(&created).await {
                tracing::warn!(error = %e, "could not delete a duplicate Cortex task");
            }
        }
        Ok(Outcome::Delivered)
    }

    /// Delivers update `item` with the updates right `behind` it in its queue merged in.
    async fn update(
        &self,
        lane: Lane<'_>,
        item: &OutboxItem,
        behind: &[OutboxItem],
    ) -> Result<Outcome, Failure> {
        let task = item.task_id.as_deref();
        // The create is older in the same queue: it was delivered, or dropped for good.
        let Some(id) = self.cortex_id(item.run_id, task).await? else {
            return Ok(Outcome::Dropped("its Cortex task was never created".into()));
        };
        let Ok(mut body) = serde_json::from_value::<TaskUpdate>(item.payload.clone()) else {
            return Ok(Outcome::Dropped(
                "its payload is not a Cortex task update".into(),
            ));
        };
        // The updates queued right behind this one go with it, as one (a partial update
        // applied after another is the two merged, the later one winning).
        let mut merged = Vec::new();
        for next in behind.iter().take(MERGE_UPDATES) {
            if next.kind != UPDATE {
                break;
            }
            let Ok(later) = serde_json::from_value::<TaskUpdate>(next.payload.clone()) else {
                break;
            };
            overlay(&mut body, later);
            merged.push(next.id);
        }
        match lane.client.update_task(&CortexTaskId(id), &body).await {
            Ok(_) if merged.is_empty() => Ok(Outcome::Delivered),
            Ok(_) => Ok(Outcome::DeliveredWith(merged)),
            Err(e) if e.status() == Some(404) => Ok(Outcome::Dropped(format!(
                "its Cortex task is gone ({})",
                chain(&e)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The Cortex task already created for the workflow (`task` `None`) or a task of `run`,
    /// found by its tags; the oldest when there are several. Searches Cortex once per run,
    /// or again when `fresh`.
    async fn find(
        &self,
        lane: Lane<'_>,
        run: Uuid,
        task: Option<&str>,
        fresh: bool,
    ) -> Result<Option<CortexTaskId>, Failure> {
        let mut found = self.found.lock().await;
        let key = task.map(str::to_owned);
        let round = self.rounds.load(std::sync::atomic::Ordering::Relaxed);
        if let Some((searched, known)) = found.get(&run)
            && (!fresh || *searched == round)
        {
            // Searched already: a task that was there is adopted then, one that was not has
            // not been created since (this courier would know), unless a create of this
            // courier failed ambiguously since (`fresh`, searched again once a round).
            return Ok(known.get(&key).cloned());
        }
        let mut map = found.remove(&run).map(|(_, m)| m).unwrap_or_default();
        let workflow_tags = workflow_tags(run);
        let filter = TaskFilter {
            tags: vec![workflow_tags[1].clone()],
            ..TaskFilter::default()
        };
        // Newest first: the last one seen of each is the oldest.
        for t in lane.client.list_tasks(&filter).await? {
            if workflow_tags.iter().all(|tag| t.tags.contains(tag)) {
                map.insert(None, t.id);
            }
        }
        let parent = match map.get(&None) {
            Some(p) => Some(p.0.clone()),
            None => self.cortex_id(run, None).await?,
        };
        if let Some(parent) = parent {
            let filter = TaskFilter {
                tags: vec![parent_tag(&parent)],
                ..TaskFilter::default()
            };
            for t in lane.client.list_tasks(&filter).await? {
                if let Some(id) = t.tags.iter().find_map(|tag| tag.strip_prefix("axon-task:")) {
                    debug_assert_eq!(task_tag(id), format!("axon-task:{id}"));
                    map.insert(Some(id.to_owned()), t.id.clone());
                }
            }
        }
        let hit = map.get(&key).cloned();
        found.insert(run, (round, map));
        Ok(hit)
    }
}

/// What [`Courier::deliver_until`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Delivered {
    /// Calls delivered.
    pub delivered: u64,
    /// Calls still undelivered.
    pub left: u64,
    /// The last failure, for people.
    pub last_error: Option<String>,
}

/// What a round settled: calls delivered, and the Cortex ids of the tasks it created or
/// found (with whether it created them).
#[derive(Default)]
struct Settled {
    delivered: Vec<i64>,
    ids: Vec<(CortexIdRecord, bool)>,
}

/// `later` applied on top of `update`: its fields replace those it sets.
fn overlay(update: &mut TaskUpdate, later: TaskUpdate) {
    macro_rules! take {
        ($($field:ident),*) => {$(
            if later.$field.is_some() {
                update.$field = later.$field;
            }
        )*};
    }
    take!(
        title,
        description,
        status,
        priority,
        assigned_to,
        estimated_hours,
        actual_hours,
        progress,
        tags,
        completion_note
    );
}

/// Why a delivery did not happen.
enum Failure {
    /// Cortex failed or refused (retried later).
    Cortex(CortexError),
    /// The store failed (the round stops).
    Store(StoreError),
}

impl From<CortexError> for Failure {
    fn from(e: CortexError) -> Self {
        Self::Cortex(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
