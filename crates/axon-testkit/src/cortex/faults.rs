//! Fault injection: what the fake does instead of (or on top of) answering as the contract
//! says. Applied by one middleware around every route (and the 404 fallback), after the
//! request is recorded.
//!
//! Where a fault sits relative to the handler matters for the tests that use it:
//!
//! - a queued **status** (`fail_next`, `throttle_next`) answers *instead of* the handler, as a
//!   proxy or an overloaded server would: nothing is created or changed;
//! - **drop mid-body** and **malformed JSON** run the handler first and spoil its answer: the
//!   change *is* made and the client cannot know it (the case that tests idempotency);
//! - the **delay** is slept before the handler; a client that gives up first closes the
//!   connection, and the handler never runs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::model::RecordedRequest;

/// The contract's request body limit (10 MiB, `DefaultBodyLimit`).
pub(crate) const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// A one-shot fault: replaces or spoils exactly one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneShot {
    /// Answer with this status and a plain-text reason (an empty body for 408, as
    /// tower-http's `TimeoutLayer` sends), without running the handler.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`, without running the handler.
    TooManyRequests(u64),
    /// Run the handler, send the headers and half the body, then drop the connection.
    DropMidBody,
    /// Run the handler, then send a 200 whose JSON body is cut short.
    MalformedJson,
}

#[derive(Debug)]
struct Queued {
    /// Only requests whose path starts with this (any request when `None`).
    scope: Option<String>,
    fault: OneShot,
}

/// The fault switches and queues.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    queue: VecDeque<Queued>,
    delays: Vec<(Option<String>, Duration)>,
    /// Write `in_progress` instead of `inprogress` in task objects.
    pub(crate) status_typo: bool,
    /// `/health` says `unhealthy` (still 200, as the contract says).
    pub(crate) unhealthy: bool,
}

fn in_scope(scope: &Option<String>, path: &str) -> bool {
    scope.as_deref().is_none_or(|p| path.starts_with(p))
}

impl FaultState {
    /// The first queued fault for `path`, removed from the queue.
    fn take(&mut self, path: &str) -> Option<OneShot> {
        let at = self.queue.iter().position(|q| in_scope(&q.scope, path))?;
        self.queue.remove(at).map(|q| q.fault)
    }

    /// The longest delay that applies to `path`.
    fn delay(&self, path: &str) -> Option<Duration> {
        self.delays
            .iter()
            .filter(|(scope, _)| in_scope(scope, path))
            .map(|(_, d)| *d)
            .max()
    }
}

/// A handle on the fake's faults, optionally scoped to a path prefix (see [`Faults::on`]).
///
/// One-shot faults queue up in the order they are added and each is used by the first later
/// request in its scope; switches stay until turned off. Everything can be changed while
/// requests are in flight.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
    scope: Option<String>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Faults {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            scope: None,
        }
    }

    /// The same faults, limited to requests whose path starts with `path_prefix` (for example
    /// `/api/v1/sessions`). Applies to the one-shot faults and the delay.
    pub fn on(&self, path_prefix: impl Into<String>) -> Faults {
        Faults {
            shared: self.shared.clone(),
            scope: Some(path_prefix.into()),
        }
    }

    fn push(&self, n: usize, fault: OneShot) -> &Self {
        let mut faults = self.shared.faults();
        for _ in 0..n {
            faults.queue.push_back(Queued {
                scope: self.scope.clone(),
                fault,
            });
        }
        self
    }

    /// The next `n` responses are `status` (for example 503, 502, 504 or 408) with a plain-text
    /// body; the handler does not run.
    pub fn fail_next(&self, n: usize, status: u16) -> &Self {
        self.push(n, OneShot::Status(status))
    }

    /// The next `n` responses are 429 with `Retry-After: <seconds>` (rounded up); the handler
    /// does not run.
    pub fn throttle_next(&self, n: usize, retry_after: Duration) -> &Self {
        let secs = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
        self.push(n, OneShot::TooManyRequests(secs))
    }

    /// The next `n` responses send their headers and half their body, then the connection is
    /// dropped. The handler runs (its change is made).
    pub fn drop_mid_body_next(&self, n: usize) -> &Self {
        self.push(n, OneShot::DropMidBody)
    }

    /// The next `n` responses are 200 with a JSON body cut short. The handler runs.
    pub fn malformed_json_next(&self, n: usize) -> &Self {
        self.push(n, OneShot::MalformedJson)
    }

    /// Every response in scope waits `delay` before the handler runs (`Duration::ZERO` turns
    /// this scope's delay off).
    pub fn set_delay(&self, delay: Duration) -> &Self {
        let mut faults = self.shared.faults();
        faults.delays.retain(|(scope, _)| *scope != self.scope);
        if !delay.is_zero() {
            faults.delays.push((self.scope.clone(), delay));
        }
        self
    }

    /// Task objects say `in_progress` instead of the contract's `inprogress` (a server that
    /// drifted from the contract). Requests are still validated as the contract says.
    pub fn set_status_typo(&self, on: bool) -> &Self {
        self.shared.faults().status_typo = on;
        self
    }

    /// `/health` reports `unhealthy` with a disconnected database (still HTTP 200).
    pub fn set_unhealthy(&self, on: bool) -> &Self {
        self.shared.faults().unhealthy = on;
        self
    }

    /// How many one-shot faults are still queued (all scopes).
    pub fn pending(&self) -> usize {
        self.shared.faults().queue.len()
    }

    /// Removes every queued fault, delay and switch (all scopes). Does not bring the server up.
    pub fn clear(&self) -> &Self {
        *self.shared.faults() = FaultState::default();
        self
    }

    /// `true`: stop listening (new connections are refused) and close every open connection;
    /// `false`: listen again on the same port. Returns once the server is in that state.
    ///
    /// # Panics
    /// If the server task has stopped (the [`FakeCortex`](super::FakeCortex) was dropped).
    pub async fn set_down(&self, down: bool) {
        self.shared.down.send_replace(down);
        let mut listening = self.shared.listening.subscribe();
        listening
            .wait_for(|l| *l != down)
            .await
            .expect("the fake cortex server is running");
    }
}

/// Records the request, then applies the faults that hit it.
pub(crate) async fn apply(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
    };
    let path = parts.uri.path().to_owned();
    shared.state().snapshot.requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: bytes.to_vec(),
    });
    let (fault, delay) = {
        let mut faults = shared.faults();
        (faults.take(&path), faults.delay(&path))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(OneShot::Status(code)) => return status_only(code),
        Some(OneShot::TooManyRequests(secs)) => {
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
        _ => {}
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match fault {
        Some(OneShot::DropMidBody) => drop_mid_body(resp).await,
        Some(OneShot::MalformedJson) => malformed(resp).await,
        _ => resp,
    }
}

fn status_only(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if status == StatusCode::REQUEST_TIMEOUT {
        return status.into_response();
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    (status, reason).into_response()
}

async fn drop_mid_body(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let full = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = Bytes::copy_from_slice(&full[..full.len() / 2]);
    // Promise the whole body, send half, then fail the stream: hyper closes the connection.
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len().max(2)));
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok(half), 1)),
                1 => {
                    // Let hyper flush the headers and the first half before the failure.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::other("fault: connection dropped mid-body")),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

async fn malformed(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let full = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let cut = if full.len() > 2 {
        full.slice(..full.len() / 2)
    } else {
        Bytes::from_static(b"{\"success\": true, \"data\": ")
    };
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(cut))
}
