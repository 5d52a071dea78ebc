//! A contract-faithful fake Cortex server (`../shared/cortex-api.md`, the source of truth).
//!
//! [`FakeCortex::start`] serves, on `127.0.0.1:<random port>`, every route Axon's HTTP bridge
//! uses, with the contract's quirks:
//!
//! - the `{success, data, error, metadata}` envelope; errors carry an `error` **object**
//!   `{code, message, details}` and no `data` key; the auth middleware's 401 has no `metadata`;
//! - `GET /health` and `GET /api/v1/health` (always 200; `data.status` says `healthy` or
//!   `unhealthy`);
//! - tasks (public): `GET/POST /api/v1/tasks`, `GET/PUT/DELETE /api/v1/tasks/{id}`; `inprogress`
//!   without underscore; 200 on create; `data: null` on delete, which is idempotent;
//! - workspaces (public): `POST /api/v1/workspaces`, `GET /api/v1/workspaces[/{id}]`;
//! - sessions (auth): `POST/GET /api/v1/sessions`, `GET/DELETE /api/v1/sessions/{id}`,
//!   `POST /api/v1/sessions/{id}/merge` (strategies `auto|manual|theirs|mine`, 409 `CONFLICT` for
//!   `manual` with an unresolved conflict, no conflict list);
//! - memory (auth): `POST /api/v1/memory/search` (a bare array; case-sensitive substring match);
//! - auth: `Authorization: ApiKey <key>` or `Bearer <token>` on sessions and memory, 401 with
//!   `WWW-Authenticate: Bearer realm="Cortex API"` otherwise;
//! - framework rejections as axum 0.8 produces them, as plain text: 415 (no JSON content type),
//!   400 (malformed JSON, unparsable query), 422 (JSON of the wrong shape, unknown enum value,
//!   `null` where a map is expected), 404 with an empty body for an unknown path, 405 for a
//!   known path with the wrong method.
//!
//! Every request is recorded (method, path, query, headers, body) before anything else, so
//! tests can check, for instance, that the API key is only ever sent where it is needed.
//!
//! Faults ([`Faults`], from [`FakeCortex::faults`]) can be set at any time and compose: one-shot
//! responses (503 bursts, 429 with `Retry-After`, a connection dropped mid-body, malformed JSON)
//! queue up in order and can be scoped to a path prefix; switches (a delay, the `in_progress`
//! typo, an unhealthy `/health`) stay until turned off; [`Faults::set_down`] stops listening
//! altogether (connections are refused) and closes every open connection.

mod faults;
mod model;
mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use faults::Faults;
pub use model::{
    Episode, MergeRecord, MergeResult, MergeStatus, MergeStrategy, Priority, RecordedRequest,
    Session, SessionChanges, SessionRecord, SessionStatus, Snapshot, SpecReference, Task,
    TaskStatus, Workspace,
};

use faults::FaultState;

/// How to start a [`FakeCortex`].
#[derive(Clone)]
pub struct FakeConfig {
    /// The secret accepted as `Authorization: ApiKey <key>` (and, since the fake issues no JWTs,
    /// as `Authorization: Bearer <key>`) on the protected routes.
    pub api_key: String,
}

impl FakeConfig {
    /// A config accepting `api_key`.
    pub fn with_api_key(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
        }
    }
}

impl Default for FakeConfig {
    /// A fresh random API key (distinctive, so a leak is easy to grep for).
    fn default() -> Self {
        Self::with_api_key(format!("ctx-secret-{}", uuid::Uuid::new_v4().simple()))
    }
}

impl std::fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConfig")
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// The fake's mutable state.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) snapshot: Snapshot,
    /// Where each live task is in `snapshot.tasks` (a real server looks tasks up by an index,
    /// not by scanning them all: benchmarks must not measure the fake's scans).
    task_at: std::collections::HashMap<String, usize>,
    pub(crate) episodes: Vec<Episode>,
    /// Scripted merge findings by substring of the session name.
    pub(crate) changes_by_name: Vec<(String, SessionChanges)>,
}

impl State {
    /// Adds a task.
    pub(crate) fn push_task(&mut self, task: Task) {
        self.task_at
            .insert(task.id.clone(), self.snapshot.tasks.len());
        self.snapshot.tasks.push(task);
    }

    /// The live task `id`.
    pub(crate) fn task(&self, id: &str) -> Option<&Task> {
        self.task_at.get(id).map(|&i| &self.snapshot.tasks[i])
    }

    /// The live task `id`, to change it.
    pub(crate) fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        self.task_at.get(id).map(|&i| &mut self.snapshot.tasks[i])
    }

    /// Removes the live task `id`, if there is one.
    pub(crate) fn remove_task(&mut self, id: &str) {
        if self.task_at.remove(id).is_some() {
            self.snapshot.tasks.retain(|t| t.id != id);
            self.task_at = self
                .snapshot
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.clone(), i))
                .collect();
        }
    }
}

/// What the server task and every handle share.
pub(crate) struct Shared {
    pub(crate) api_key: String,
    pub(crate) started: Instant,
    state: Mutex<State>,
    faults: Mutex<FaultState>,
    /// `true` asks the server to stop listening.
    down: watch::Sender<bool>,
    /// Whether the server is listening now (acknowledges `down`).
    listening: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Cortex server. Stops when dropped.
pub struct FakeCortex {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeCortex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCortex")
            .field("addr", &self.addr)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl FakeCortex {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test machine).
    pub async fn start(config: FakeConfig) -> FakeCortex {
        Self::start_on(0, config)
            .await
            .expect("a test machine can bind a loopback port")
    }

    /// Binds `127.0.0.1:port` (0: any free port) and starts serving on the current tokio
    /// runtime.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start_on(port: u16, config: FakeConfig) -> std::io::Result<FakeCortex> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: config.api_key,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            faults: Mutex::new(FaultState::default()),
            down: watch::Sender::new(false),
            listening: watch::Sender::new(true),
        });
        let router = routes::router(shared.clone());
        let server = tokio::spawn(serve(listener, addr, router, shared.clone()));
        Ok(FakeCortex {
            addr,
            shared,
            server,
        })
    }

    /// The base URL, `http://127.0.0.1:<port>` (no trailing slash, no `/api/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API key the protected routes accept.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// A copy of everything the fake holds now.
    pub fn state(&self) -> Snapshot {
        self.shared.state().snapshot.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<model::RecordedRequest> {
        self.shared.state().snapshot.requests.clone()
    }

    /// Forgets the recorded requests (the records stay).
    pub fn clear_requests(&self) {
        self.shared.state().snapshot.requests.clear();
    }

    /// Adds episodes for `POST /api/v1/memory/search` to find (in this order, after any
    /// seeded before).
    pub fn seed_memory(&self, episodes: impl IntoIterator<Item = Episode>) {
        self.shared.state().episodes.extend(episodes);
    }

    /// What merging a session whose name contains `name_part` finds (the first matching rule
    /// wins; without one a session has no changes and merges as `no_changes`).
    pub fn set_session_changes(&self, name_part: impl Into<String>, changes: SessionChanges) {
        self.shared
            .state()
            .changes_by_name
            .push((name_part.into(), changes));
    }

    /// The fault switches and queues (a cheap handle; clone it freely).
    pub fn faults(&self) -> Faults {
        Faults::new(self.shared.clone())
    }
}

impl Drop for FakeCortex {
    fn drop(&mut self) {
        // Aborting the server drops its listener and every connection task with it.
        self.server.abort();
    }
}

/// The server loop: listen and serve until asked to go down; then drop the listener and every
/// connection, wait to be asked up again, and rebind the same port.
async fn serve(first: TcpListener, addr: SocketAddr, router: axum::Router, shared: Arc<Shared>) {
    let mut down = shared.down.subscribe();
    let mut listener = Some(first);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => match rebind(addr).await {
                Some(l) => l,
                None => return,
            },
        };
        shared.listening.send_replace(true);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                changed = down.wait_for(|d| *d) => {
                    if changed.is_err() { return; }
                    break;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = current.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let service = TowerToHyperService::new(router.clone());
                    connections.spawn(async move {
                        // A client hanging up mid-request is not the fake's problem.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
        drop(current);
        connections.shutdown().await;
        shared.listening.send_replace(false);
        if down.wait_for(|d| !*d).await.is_err() {
            return;
        }
    }
}

/// Binds `addr` again after a `set_down(false)`; the port was just released, so a short retry
/// covers a socket still closing. `None` if it stays taken.
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    None
}

/// Now, as the server writes timestamps (RFC 3339, UTC, `Z`).
pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}
