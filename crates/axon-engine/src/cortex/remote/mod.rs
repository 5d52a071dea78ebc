//! [`HttpCortex`]: the bridge to a remote Cortex server (`../shared/cortex-api.md`), on top of
//! the embedded [`LocalCortex`].
//!
//! Everything the embedded bridge does still happens — git worktree sessions (Cortex sessions
//! do not isolate writes, the contract says), episodes recorded and searched locally (Cortex
//! has no REST route to record one), tracking records in the store — and Cortex plays the
//! roles it is given ([`CortexRoles`]):
//!
//! - **tracking**: the workflow and its tasks become Cortex tasks that follow the run
//!   ([`tracking`] has the mapping). Calls never block or fail the run: they are enqueued in
//!   the store's outbox in the same transaction as the task states they report, and a
//!   [`courier`] delivers them in order per task, with retries and backoff. What a run could not
//!   deliver (Cortex was down) stays queued for the next run on the same server or for
//!   [`deliver_backlog`] (`axon cortex sync`). Cortex ids are stored, so a resumed run never
//!   creates a task twice.
//! - **sessions**: each attempt also gets a Cortex session (`axon/<run>/<task>/<attempt>`, on
//!   the workspace of `--cortex-workspace`, or one created per workspace directory and
//!   remembered), whose ids the agent receives; it is merged when the attempt succeeds (a
//!   `partial` merge or a 409 is a merge conflict) and deleted afterwards, whatever happened.
//!   Sessions are recorded in the store until deleted, so those a crashed engine left are
//!   deleted by the next one.
//! - **memory**: an agent's context is the local episodes plus `POST /api/v1/memory/search`
//!   results, deduplicated, each source's ranking kept and the two interleaved, capped at the
//!   task's context limit. A failed search degrades to local episodes, with one warning.

mod courier;
mod run;
mod tracking;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axon_core::model::ErrorType;
use axon_store::{Store, StoreError};
use uuid::Uuid;

use self::courier::{Courier, HttpThread};
use self::run::RemoteRun;
use self::tracking::Tracker;
use super::http::{
    ClientConfig, CortexClient, CortexError, Episode, MemoryQuery, NewWorkspace, SessionId,
    TaskUpdate, WorkspaceId,
};
use super::local::store_error;
use super::{BridgeError, Context, CortexBridge, LocalCortex, RunBridge, RunInfo};
use crate::error::chain;
use crate::run::now_ms;

pub use self::tracking::{PROGRESS_EVERY, UPDATE_SETTLE};

/// Which parts a Cortex server plays in a run (all of them by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CortexRoles {
    /// The workflow and its tasks are tracked as Cortex tasks.
    pub tracking: bool,
    /// Cortex memory search adds to agents' context.
    pub memory: bool,
    /// Each attempt gets a Cortex session, merged when it succeeds.
    pub sessions: bool,
}

impl Default for CortexRoles {
    fn default() -> Self {
        Self {
            tracking: true,
            memory: true,
            sessions: true,
        }
    }
}

impl CortexRoles {
    /// Whether a role needs the API key (sessions and memory are protected routes).
    pub fn needs_key(&self) -> bool {
        self.sessions || self.memory
    }
}

/// How to use a Cortex server.
#[derive(Debug, Clone)]
pub struct CortexConfig {
    /// How to reach it (URL, API key, request timeout).
    pub client: ClientConfig,
    /// What it does.
    pub roles: CortexRoles,
    /// The Cortex workspace of sessions (default: one created per workspace directory and
    /// remembered in the store).
    pub workspace_id: Option<String>,
    /// How long the end of a run waits for its last tracking calls to be delivered.
    pub drain_timeout: Duration,
}

impl CortexConfig {
    /// Every role, on `client`, with a 10 s drain.
    pub fn new(client: ClientConfig) -> Self {
        Self {
            client,
            roles: CortexRoles::default(),
            workspace_id: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The bridge to a remote Cortex server, with the embedded bridge underneath.
pub struct HttpCortex {
    local: LocalCortex,
    store: Arc<dyn Store>,
    client: CortexClient,
    /// The courier's own client and thread (tracking only): its calls never run on the
    /// engine's workers. `None` if the thread could not be started (the courier then runs
    /// inline).
    courier_http: Option<(CortexClient, Arc<HttpThread>)>,
    config: CortexConfig,
    /// Whether a failed memory search was reported already (it is, once).
    warned: AtomicBool,
}

impl HttpCortex {
    /// Connects to the server: `GET /api/v1/health` must say `healthy`, and when sessions or
    /// memory are on, the API key must be accepted on the protected routes.
    ///
    /// # Errors
    /// The [`CortexError`] that says what is wrong (refused, timeout, TLS, unhealthy, 401, a
    /// bad URL), naming the URL.
    pub async fn connect(config: CortexConfig, store: Arc<dyn Store>) -> Result<Self, CortexError> {
        let client = CortexClient::new(config.client.clone())?;
        client.check_health().await?;
        if config.roles.needs_key() {
            // A session that cannot exist: 404 says the key was accepted, 401 that it was not.
            match client
                .get_session(&SessionId(Uuid::nil().to_string()))
                .await
            {
                Ok(_) => {}
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        let courier_http = if config.roles.tracking {
            match HttpThread::start() {
                Ok(thread) => Some((CortexClient::new(config.client.clone())?, Arc::new(thread))),
                Err(e) => {
                    tracing::warn!(error = %e, "no thread for cortex tracking; it shares the engine's");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            local: LocalCortex::new(Arc::clone(&store)),
            store,
            client,
            courier_http,
            config,
            warned: AtomicBool::new(false),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// The Cortex workspace of `workspace`: the configured one, or the one remembered for this
    /// directory, or a new one (remembered).
    async fn workspace_for(&self, workspace: &Path) -> Result<WorkspaceId, BridgeError> {
        if let Some(id) = &self.config.workspace_id {
            return Ok(WorkspaceId(id.clone()));
        }
        let path = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
        let path = path.to_string_lossy().into_owned();
        let server = self.client.url();
        if let Some(id) = self
            .store
            .cortex_workspace(server, &path)
            .await
            .map_err(store_error)?
        {
            return Ok(WorkspaceId(id));
        }
        let name = Path::new(&path)
            .file_name()
            .map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
        let created = self
            .client
            .create_workspace(&NewWorkspace {
                name,
                source_path: Some(path.clone()),
            })
            .await
            .map_err(BridgeError::from)?;
        let kept = self
            .store
            .set_cortex_workspace(server, &path, created.id.as_str(), now_ms())
            .await
            .map_err(store_error)?;
        Ok(WorkspaceId(kept))
    }

    /// Memory search results for `query`, ranked: the whole name first (a plain substring
    /// match on the server, so it rarely matches), then its longest words.
    async fn search_memory(&self, query: &str, limit: u32) -> Result<Vec<Episode>, CortexError> {
        let mut queries = vec![query.trim().to_owned()];
        let mut words: Vec<&str> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 4)
            .collect();
        words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
        for w in words {
            if queries.len() > 3 {
                break;
            }
            if !queries.iter().any(|q| q == w) {
                queries.push(w.to_owned());
            }
        }
        let bodies: Vec<MemoryQuery> = queries
            .iter()
            .map(|q| MemoryQuery::new(q.clone(), limit))
            .collect();
        let searches = bodies.iter().map(|q| self.client.search_memory(q));
        let answers = futures_util::future::join_all(searches).await;
        let mut scored: Vec<(u32, Episode)> = Vec::new();
        let mut first_error = None;
        for (n, answer) in answers.into_iter().enumerate() {
            let weight = if n == 0 { 2 } else { 1 };
            match answer {
                Ok(episodes) => {
                    for e in episodes {
                        match scored.iter_mut().find(|(_, s)| s.id == e.id) {
                            Some((score, _)) => *score += weight,
                            None => scored.push((weight, e)),
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if scored.is_empty()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        scored.sort_by(|(a, x), (b, y)| {
            b.cmp(a)
                .then(y.importance.total_cmp(&x.importance))
                .then_with(|| y.created_at.cmp(&x.created_at))
                .then_with(|| x.id.cmp(&y.id))
        });
        Ok(scored.into_iter().map(|(_, e)| e).collect())
    }
}

/// Local episodes and Cortex memory results as one context: each source keeps its own
/// ranking, the two are interleaved (local first), a memory result whose content is a local
/// episode's task name is dropped as a duplicate, and the whole is capped at `limit`. Each
/// object says where it came from (`source`: `axon` or `cortex`).
fn merge_context(
    local: Vec<serde_json::Value>,
    remote: Vec<Episode>,
    limit: usize,
) -> Vec<serde_json::Value> {
    let local_names: Vec<String> = local
        .iter()
        .filter_map(|e| e.get("name").and_then(|n| n.as_str()))
        .map(|n| n.trim().to_lowercase())
        .collect();
    let remote = remote
        .into_iter()
        .filter(|e| !local_names.contains(&e.content.trim().to_lowercase()))
        .map(|e| {
            serde_json::json!({
                "source": "cortex",
                "id": e.id,
                "content": e.content,
                "episode_type": e.episode_type,
                "importance": e.importance,
                "created_at": e.created_at,
            })
        });
    let local = tagged_local(local).into_iter();
    let (mut local, mut remote) = (local.fuse(), remote.fuse());
    let mut merged = Vec::with_capacity(limit);
    while merged.len() < limit {
        let (l, r) = (local.next(), remote.next());
        if l.is_none() && r.is_none() {
            break;
        }
        merged.extend(l);
        if merged.len() < limit {
            merged.extend(r);
        }
    }
    merged.truncate(limit);
    merged
}

/// Local episodes, each saying it is one (`source: "axon"`), as in a merged context.
fn tagged_local(mut local: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    for e in &mut local {
        if let Some(obj) = e.as_object_mut() {
            obj.insert("source".into(), "axon".into());
        }
    }
    local
}

#[async_trait]
impl CortexBridge for HttpCortex {
    async fn open_run(&self, info: &RunInfo) -> Result<Arc<dyn RunBridge>, BridgeError> {
        let roles = self.config.roles;
        let server = self.client.url().to_owned();
        let run_id = info.run_id;
        if roles.tracking || roles.sessions {
            let kept = self
                .store
                .set_cortex_server(run_id, &server)
                .await
                .map_err(store_error)?;
            if kept != server {
                return Err(BridgeError::new(
                    ErrorType::InvalidInput,
                    format!(
                        "run {run_id} is tracked on the Cortex server at {kept}, not {server}: use --cortex-url {kept}"
                    ),
                ));
            }
        }
        let workspace = if roles.sessions {
            Some(self.workspace_for(&info.workspace).await?)
        } else {
            None
        };
        let local = self.local.open_run(info).await?;
        let tracker = Tracker::new();
        let worker = if roles.tracking {
            // Made first: what it finds enqueued before it was a previous engine's (and may
            // have reached Cortex unrecorded), what is enqueued now is its own.
            let courier = Courier::new(self.client.clone(), Arc::clone(&self.store));
            let courier = match &self.courier_http {
                Some((client, thread)) => courier.on_thread(Arc::clone(thread), client.clone()),
                None => courier,
            };
            let courier = Arc::new(courier);
            self.enqueue_creates(info).await.map_err(store_error)?;
            Some(run::Worker::start(courier, run_id))
        } else {
            None
        };
        Ok(Arc::new(RemoteRun::new(run::Parts {
            local,
            info,
            store: Arc::clone(&self.store),
            client: self.client.clone(),
            roles,
            workspace,
            api_key: self.config.client.api_key.clone(),
            tracker,
            worker,
            drain_timeout: self.config.drain_timeout,
        })))
    }

    async fn search_episodes(&self, query: &str, limit: u32) -> Result<Context, BridgeError> {
        let mut context = self.local.search_episodes(query, limit).await?;
        if !self.config.roles.memory || limit == 0 {
            return Ok(context);
        }
        match self.search_memory(query, limit).await {
            Ok(remote) => {
                context.episodes = merge_context(
                    std::mem::take(&mut context.episodes),
                    remote,
                    usize::try_from(limit).unwrap_or(usize::MAX),
                );
            }
            Err(e) => {
                context.episodes = tagged_local(std::mem::take(&mut context.episodes));
                if !self.warned.swap(true, Ordering::Relaxed) {
                    context.warning = Some(format!(
                        "cortex memory search failed, so agents get local episodes only: {}",
                        chain(&e)
                    ));
                }
                tracing::debug!(error = %e, "cortex memory search failed");
            }
        }
        Ok(context)
    }
}

impl HttpCortex {
    /// Enqueues the creation of the run's Cortex tasks that do not exist yet (all of them for
    /// a new run), and the workflow's move to `inprogress`.
    async fn enqueue_creates(&self, info: &RunInfo) -> Result<(), StoreError> {
        let run_id = info.run_id;
        let wf = &info.workflow;
        let mut items = Vec::with_capacity(wf.tasks.len() + 2);
        // A new run has no Cortex task yet; a resumed one only lacks those never created.
        let missing = async |task: Option<&str>| -> Result<bool, StoreError> {
            Ok(!info.resumed || self.store.cortex_id(run_id, task).await?.is_none())
        };
        if missing(None).await? {
            items.push(tracking::create_workflow(run_id, wf, info.estimated));
        }
        for (i, t) in wf.tasks.iter().enumerate() {
            if missing(Some(t.id.as_str())).await? {
                items.push(tracking::create_task(wf, i));
            }
        }
        let started = TaskUpdate {
            status: Some(tracking::cortex_status("running")),
            ..TaskUpdate::default()
        };
        items.push(tracking::update(None, &started));
        self.store.outbox_push(run_id, &items, now_ms()).await
    }
}

/// What [`deliver_backlog`] did for one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDelivery {
    /// The run.
    pub run_id: Uuid,
    /// Calls delivered.
    pub delivered: u64,
    /// Calls still undelivered.
    pub left: u64,
    /// Cortex sessions a crashed engine had left, deleted now.
    pub sessions_deleted: u64,
    /// Why something was left (the last delivery error), or why the run was skipped.
    pub note: Option<String>,
}

/// What [`deliver_backlog`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryReport {
    /// Per run, oldest backlog first.
    pub runs: Vec<RunDelivery>,
}

impl DeliveryReport {
    /// Whether nothing is left undelivered.
    pub fn is_complete(&self) -> bool {
        self.runs.iter().all(|r| r.left == 0)
    }
}

/// Delivers the queued tracking calls of `run` (or of every run tracked on this server), and
/// deletes the Cortex sessions crashed engines left there, for `axon cortex sync`. Runs whose
/// engine is alive are left to it. Gives up on a run when Cortex is unreachable, or when it
/// made no progress for `patience`.
///
/// # Errors
/// When the client cannot be built from `client`, or the store fails.
pub async fn deliver_backlog(
    client: ClientConfig,
    store: Arc<dyn Store>,
    run: Option<Uuid>,
    patience: Duration,
) -> Result<DeliveryReport, BridgeError> {
    let client = CortexClient::new(client).map_err(BridgeError::from)?;
    let server = client.url().to_owned();
    let runs: Vec<Uuid> = match run {
        Some(r) => vec![r],
        None => {
            let mut runs: Vec<Uuid> = store
                .outbox_runs()
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|r| r.server.as_deref().is_none_or(|s| s == server))
                .map(|r| r.run_id)
                .collect();
            for s in store.cortex_sessions(None).await.map_err(store_error)? {
                if !runs.contains(&s.run_id) {
                    runs.push(s.run_id);
                }
            }
            runs
        }
    };
    let courier = Arc::new(Courier::new(client.clone(), Arc::clone(&store)));
    let mut report = DeliveryReport::default();
    for run_id in runs {
        report
            .runs
            .push(deliver_run(&courier, &store, &server, run_id, patience, false).await?);
    }
    Ok(report)
}

/// Delivers `run_id`'s backlog (in the background while a run of this engine lives, with
/// `background`) and deletes the Cortex sessions its dead engine left.
async fn deliver_run(
    courier: &Arc<Courier>,
    store: &Arc<dyn Store>,
    server: &str,
    run_id: Uuid,
    patience: Duration,
    background: bool,
) -> Result<RunDelivery, BridgeError> {
    let mut done = RunDelivery {
        run_id,
        ..RunDelivery::default()
    };
    let left = |store: &Arc<dyn Store>| {
        let store = Arc::clone(store);
        async move {
            store
                .outbox_counts(run_id)
                .await
                .map(|c| c.undelivered)
                .map_err(store_error)
        }
    };
    if let Some(recorded) = store.cortex_server(run_id).await.map_err(store_error)?
        && recorded != server
    {
        done.left = left(store).await?;
        done.note = Some(format!("tracked on the Cortex server at {recorded}"));
        return Ok(done);
    }
    if store
        .lease(run_id)
        .await
        .map_err(store_error)?
        .is_some_and(|l| crate::lease::is_live(&l))
    {
        done.left = left(store).await?;
        done.note = Some("its engine is running and delivers them itself".into());
        return Ok(done);
    }
    let delivered = courier
        .deliver_until(run_id, patience, None, background)
        .await
        .map_err(store_error)?;
    done.delivered = delivered.delivered;
    done.left = delivered.left;
    if done.left == 0 {
        store.outbox_prune(run_id).await.map_err(store_error)?;
    } else {
        done.note = delivered.last_error;
    }
    done.sessions_deleted = run::delete_run_sessions(courier.client(), store, run_id)
        .await
        .map_err(store_error)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str) -> serde_json::Value {
        serde_json::json!({ "name": name, "status": "succeeded" })
    }

    fn remote(id: &str, content: &str) -> Episode {
        Episode {
            id: id.into(),
            content: content.into(),
            episode_type: "task".into(),
            importance: 0.5,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn context_interleaves_sources_drops_duplicates_and_caps() {
        let merged = merge_context(
            vec![local("Fix login"), local("Add login page")],
            vec![
                remote("c1", "fix login"),
                remote("c2", "Login flow notes"),
                remote("c3", "x"),
            ],
            4,
        );
        let ids: Vec<String> = merged
            .iter()
            .map(|e| {
                e.get("name")
                    .or_else(|| e.get("id"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["Fix login", "c2", "Add login page", "c3"]);
        assert_eq!(merged[0]["source"], "axon");
        assert_eq!(merged[1]["source"], "cortex");
        assert_eq!(merged[1]["content"], "Login flow notes");
        // Either source alone fills the list.
        assert_eq!(
            merge_context(vec![], vec![remote("a", "a"), remote("b", "b")], 5).len(),
            2
        );
        assert_eq!(
            merge_context(vec![local("a"), local("b")], vec![], 1).len(),
            1
        );
    }
}
