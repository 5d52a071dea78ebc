//! [`RemoteRun`]: one run's bridge to a Cortex server, around the embedded run bridge (git
//! worktrees, local tracking records), and the [`Worker`] that delivers its tracking outbox
//! while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axon_core::model::{ErrorType, SessionScope};
use axon_store::{CortexSessionRecord, NewOutboxItem, Store, StoreError, TrackUpdate};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::CortexRoles;
use super::courier::Courier;
use super::tracking::Tracker;
use crate::agent::CortexAccess;
use crate::cortex::http::{
    CortexClient, MergeRequest, MergeStatus, MergeStrategy, NewSession, SessionId, WorkspaceId,
};
use crate::cortex::local::store_error;
use crate::cortex::{BridgeError, Notices, RunBridge, RunInfo, Session};
use crate::error::chain;
use crate::run::now_ms;

/// How long the worker sleeps when nothing was due. Updates wait in the outbox anyway
/// ([`super::UPDATE_SETTLE`]), so the worker polls rather than waking at every engine commit.
const IDLE: Duration = Duration::from_millis(500);
/// How long a backlog run may go without progress before the worker leaves it for later.
const BACKLOG_PATIENCE: Duration = Duration::from_secs(2);

/// Delivers a run's outbox in the background while the run lives; and, once, the backlog
/// other runs left for the same server.
pub(crate) struct Worker {
    courier: Arc<Courier>,
    stop: CancellationToken,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    pub(crate) fn start(courier: Arc<Courier>, run_id: Uuid) -> Self {
        let stop = CancellationToken::new();
        let join = tokio::spawn(work(Arc::clone(&courier), run_id, stop.clone()));
        Self {
            courier,
            stop,
            join: Mutex::new(Some(join)),
        }
    }

    /// Stops the worker and waits for it (a round in flight finishes first).
    async fn stop(&self) {
        self.stop.cancel();
        let join = self
            .join
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(join) = join {
            let _ = join.await;
        }
    }
}

async fn work(courier: Arc<Courier>, run_id: Uuid, stop: CancellationToken) {
    let mut backlog: Option<JoinHandle<()>> = None;
    // A round is never dropped: one dropped between a create's answer and the recording of
    // its id would create the task again. A stopped one takes no more calls and records
    // those in flight.
    while !stop.is_cancelled() {
        let full = match courier
            .background_round(run_id, Duration::ZERO, &stop)
            .await
        {
            Ok(r) => r.full,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "cortex tracking: the outbox is unreadable");
                false
            }
        };
        // A backlog goes round after round; otherwise calls are gathered for a while, so the
        // courier's few writes to the store (which share its one writer with the engine's
        // commits) come in batches.
        if full {
            continue;
        }
        if backlog.is_none() {
            backlog = Some(tokio::spawn(deliver_others(Arc::clone(&courier), run_id)));
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep(IDLE) => {}
        }
    }
    if let Some(b) = backlog {
        // Cutting another run's delivery short is safe: its calls predate this courier, so
        // the next one to deliver them looks for what they may have created.
        b.abort();
    }
}

/// The backlog of other runs tracked on this courier's server (their engines are gone).
async fn deliver_others(courier: Arc<Courier>, run_id: Uuid) {
    let store = courier.store();
    let server = courier.client().url().to_owned();
    let runs = match store.outbox_runs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %chain(&e), "cortex backlog: cannot list runs");
            return;
        }
    };
    for other in runs {
        if other.run_id == run_id || other.server.as_deref() != Some(server.as_str()) {
            continue;
        }
        let delivered = super::deliver_run(
            &courier,
            &store,
            &server,
            other.run_id,
            BACKLOG_PATIENCE,
            true,
        );
        match delivered.await {
            Ok(done) if done.left > 0 => break, // Cortex struggles: leave the rest for later
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cortex backlog: delivery stopped");
                break;
            }
        }
    }
}

/// What a [`RemoteRun`] is made of.
pub(crate) struct Parts<'a> {
    pub local: Arc<dyn RunBridge>,
    pub info: &'a RunInfo,
    pub store: Arc<dyn Store>,
    pub client: CortexClient,
    pub roles: CortexRoles,
    pub workspace: Option<WorkspaceId>,
    pub api_key: Option<String>,
    pub tracker: Tracker,
    pub worker: Option<Worker>,
    pub drain_timeout: Duration,
}

/// What the bridge needs of each task.
struct TaskInfo {
    /// The task's type, the session's `agent_type`.
    kind: &'static str,
    /// How its session is merged.
    strategy: MergeStrategy,
}

/// One run's bridge to a Cortex server.
pub(crate) struct RemoteRun {
    local: Arc<dyn RunBridge>,
    run_id: Uuid,
    store: Arc<dyn Store>,
    client: CortexClient,
    roles: CortexRoles,
    workspace: Option<WorkspaceId>,
    api_key: Option<String>,
    tasks: HashMap<String, TaskInfo>,
    tracker: Tracker,
    worker: Option<Worker>,
    drain_timeout: Duration,
    /// Sessions whose local (git) side has changes to merge.
    sealed: Mutex<HashSet<(String, u32)>>,
}

impl RemoteRun {
    pub(crate) fn new(p: Parts<'_>) -> Self {
        let tasks = p
            .info
            .workflow
            .tasks
            .iter()
            .map(|t| {
                let strategy = match t.merge_strategy {
                    None | Some(axon_core::model::MergeStrategy::Auto) => MergeStrategy::Auto,
                    Some(axon_core::model::MergeStrategy::Manual) => MergeStrategy::Manual,
                    Some(axon_core::model::MergeStrategy::Theirs) => MergeStrategy::Theirs,
                    Some(axon_core::model::MergeStrategy::Mine) => MergeStrategy::Mine,
                };
                let kind = t.task_type.kind().as_str();
                (t.id.to_string(), TaskInfo { kind, strategy })
            })
            .collect();
        Self {
            local: p.local,
            run_id: p.info.run_id,
            store: p.store,
            client: p.client,
            roles: p.roles,
            workspace: p.workspace,
            api_key: p.api_key,
            tasks,
            tracker: p.tracker,
            worker: p.worker,
            drain_timeout: p.drain_timeout,
            sealed: Mutex::new(HashSet::new()),
        }
    }

    fn sealed(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u32)>> {
        self.sealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Merges Cortex session `id` of `task_id` with the task's strategy.
    async fn merge_remote(&self, task_id: &str, id: &str) -> Result<(), BridgeError> {
        let strategy = self
            .tasks
            .get(task_id)
            .map_or(MergeStrategy::Auto, |t| t.strategy);
        let sid = SessionId(id.to_owned());
        match self
            .client
            .merge_session(&sid, &MergeRequest::new(strategy))
            .await
        {
            Ok(r) if r.status == MergeStatus::Partial => Err(BridgeError::new(
                ErrorType::MergeConflict,
                format!(
                    "merge conflict in Cortex session {id}: its merge was partial ({} changes merged; Cortex does not name the conflicting files)",
                    r.changes_merged
                ),
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorType::MergeConflict => Err(BridgeError::new(
                ErrorType::MergeConflict,
                format!("merge conflict in Cortex session {id}: {}", chain(&e)),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes Cortex session `id`; the record goes once Cortex confirms (else a later
    /// repair or sync deletes it).
    async fn delete_remote(&self, id: &str) {
        if let Err(e) = delete_session(&self.client, &self.store, self.run_id, id).await {
            tracing::warn!(error = %chain(&e), "could not record a deleted Cortex session");
        }
    }
}

/// Deletes Cortex session `id` of `run_id` and forgets it; returns whether Cortex confirmed
/// (when it did not, the session stays recorded, for a later repair or sync).
async fn delete_session(
    client: &CortexClient,
    store: &Arc<dyn Store>,
    run_id: Uuid,
    id: &str,
) -> Result<bool, StoreError> {
    match client.delete_session(&SessionId(id.to_owned())).await {
        Ok(()) => {
            store.cortex_session_closed(run_id, id).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "could not delete a Cortex session; it is deleted later");
            Ok(false)
        }
    }
}

/// Deletes every Cortex session of `run_id`: those recorded, and those on the server named
/// after the run (`axon/<run_id>/...`) that were never recorded (the answer to their create
/// was lost, or the engine died before recording it). Returns how many Cortex confirmed.
/// What it could not delete stays recorded.
pub(crate) async fn delete_run_sessions(
    client: &CortexClient,
    store: &Arc<dyn Store>,
    run_id: Uuid,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    let mut gone = HashSet::new();
    for s in store.cortex_sessions(Some(run_id)).await? {
        if delete_session(client, store, run_id, &s.session_id).await? {
            gone.insert(s.session_id);
            deleted += 1;
        }
    }
    let prefix = format!("axon/{run_id}/");
    match client.list_sessions().await {
        Ok(sessions) => {
            for s in sessions {
                if !s.name.starts_with(&prefix) || gone.contains(s.id.as_str()) {
                    continue;
                }
                match client.delete_session(&s.id).await {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(session = %s.id, error = %e, "could not delete a Cortex session");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list Cortex sessions"),
    }
    Ok(deleted)
}

#[async_trait]
impl RunBridge for RemoteRun {
    fn notices(&self) -> Notices {
        let mut notices = self.local.notices();
        let url = self.client.url();
        if self.roles.tracking {
            notices.push(format!("tracking this run on Cortex at {url}"));
        }
        if let Some(ws) = &self.workspace {
            notices.push(format!(
                "each task attempt also gets a Cortex session on workspace {ws}"
            ));
        }
        notices
    }

    async fn create_session(&self, task_id: &str, attempt: u32) -> Result<Session, BridgeError> {
        let mut session = self.local.create_session(task_id, attempt).await?;
        let Some(workspace) = &self.workspace else {
            return Ok(session);
        };
        let new = NewSession {
            name: format!("axon/{}/{task_id}/{attempt}", self.run_id),
            agent_type: self
                .tasks
                .get(task_id)
                .map_or("custom", |t| t.kind)
                .to_owned(),
            workspace_id: workspace.clone(),
        };
        let created = match self.client.create_session(&new).await {
            Ok(s) => s,
            Err(e) => {
                self.local.close_session(&session, false).await;
                return Err(e.into());
            }
        };
        let record = CortexSessionRecord {
            run_id: self.run_id,
            task_id: task_id.to_owned(),
            attempt,
            session_id: created.id.to_string(),
            created_at_ms: now_ms(),
        };
        if let Err(e) = self.store.cortex_session_opened(&record).await {
            self.delete_remote(created.id.as_str()).await;
            self.local.close_session(&session, false).await;
            return Err(store_error(e));
        }
        session.cortex = Some(Arc::new(CortexAccess {
            url: self.client.url().to_owned(),
            session_id: created.id.to_string(),
            workspace_id: workspace.to_string(),
            api_key: self.api_key.clone(),
        }));
        Ok(session)
    }

    async fn seal_session(
        &self,
        session: &Session,
        scope: &SessionScope,
    ) -> Result<bool, BridgeError> {
        let local = self.local.seal_session(session, scope).await?;
        if local {
            self.sealed()
                .insert((session.task_id.clone(), session.attempt));
        }
        // A Cortex session is always merged on success, changes in git or not.
        Ok(local || session.cortex.is_some())
    }

    async fn merge_session(&self, session: &Session) -> Result<(), BridgeError> {
        // Cortex first: a refused merge leaves the integration branch as it was.
        if let Some(c) = &session.cortex {
            self.merge_remote(&session.task_id, &c.session_id).await?;
        }
        let local = self
            .sealed()
            .remove(&(session.task_id.clone(), session.attempt));
        if local {
            self.local.merge_session(session).await?;
        }
        Ok(())
    }

    async fn close_session(&self, session: &Session, keep: bool) {
        self.sealed()
            .remove(&(session.task_id.clone(), session.attempt));
        self.local.close_session(session, keep).await;
        if let Some(c) = &session.cortex {
            self.delete_remote(&c.session_id).await;
        }
    }

    async fn recover_merge(&self, task_id: &str, attempt: u32) -> Result<(), BridgeError> {
        let recorded = self
            .store
            .cortex_sessions(Some(self.run_id))
            .await
            .map_err(store_error)?;
        for s in recorded
            .iter()
            .filter(|s| s.task_id == task_id && s.attempt == attempt)
        {
            let sid = SessionId(s.session_id.clone());
            match self.client.get_session(&sid).await {
                // The dead engine deleted it, which it did only after merging (a refused
                // merge it had not recorded leaves the git merge to decide).
                Err(e) if e.status() == Some(404) => {
                    let closed = self.store.cortex_session_closed(self.run_id, &s.session_id);
                    if let Err(e) = closed.await {
                        tracing::warn!(error = %chain(&e), "could not record a deleted Cortex session");
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            // Merging again is allowed: the engine died before it knew whether it had.
            let merged = self.merge_remote(task_id, &s.session_id).await;
            self.delete_remote(&s.session_id).await;
            merged?;
        }
        self.local.recover_merge(task_id, attempt).await
    }

    async fn repair(&self, keep: &[(String, u32)]) -> Result<(), BridgeError> {
        self.local.repair(keep).await?;
        // No attempt is running when the engine repairs: every session of the run is left over.
        if self.workspace.is_some() {
            delete_run_sessions(&self.client, &self.store, self.run_id)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    fn outbox(&self, updates: &[TrackUpdate]) -> Vec<NewOutboxItem> {
        if self.roles.tracking {
            self.tracker.calls(updates)
        } else {
            Vec::new()
        }
    }

    async fn track(&self, updates: Vec<TrackUpdate>) -> Result<(), BridgeError> {
        // The Cortex calls are in the outbox already (`outbox`); this is the local record.
        self.local.track(updates).await
    }

    async fn close_run(
        &self,
        succeeded: bool,
        merge_into: Option<&str>,
    ) -> Result<Notices, BridgeError> {
        self.local.close_run(succeeded, merge_into).await
    }

    async fn drain(&self) -> Notices {
        let mut notices = self.local.drain().await;
        let Some(worker) = &self.worker else {
            return notices;
        };
        worker.stop().await;
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let (left, last_error) = match worker
            .courier
            .deliver_until(self.run_id, self.drain_timeout, Some(deadline), false)
            .await
        {
            Ok(d) => (Some(d.left), d.last_error),
            Err(e) => (None, Some(chain(&e))),
        };
        match left {
            Some(0) => {
                // Delivered calls left the outbox as they were marked: nothing to prune.
                if let Ok(Some(id)) = self.store.cortex_id(self.run_id, None).await {
                    notices.push(format!(
                        "tracked on Cortex at {} as task {id}",
                        self.client.url()
                    ));
                }
            }
            left => {
                let count = left.map_or_else(|| "some".to_owned(), |n| n.to_string());
                let why = last_error.map(|e| format!(" ({e})")).unwrap_or_default();
                notices.push(format!(
                    "{count} Cortex tracking updates are not delivered yet{why}; they stay queued: `axon cortex sync {}` or the next run on this server delivers them",
                    self.run_id
                ));
            }
        }
        notices
    }
}
