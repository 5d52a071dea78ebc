//! [`CortexClient`]: one typed method per Cortex route the bridge uses, one envelope decoder
//! for all of them.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{Call, CortexError, Endpoint, HttpStatus};
use super::types::{
    CortexTaskId, Episode, Health, HealthStatus, MemoryQuery, MergeRequest, MergeResult,
    NewSession, NewTask, NewWorkspace, Session, SessionId, Task, TaskFilter, TaskUpdate, Workspace,
    WorkspaceId,
};

/// The default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything but RFC 3986's unreserved characters is encoded: an id (or a file path) becomes
/// exactly one path segment, slashes included.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// At most this much of a plain-text error body goes into a message.
const MAX_TEXT: usize = 300;

/// How to reach a Cortex server.
#[derive(Clone)]
pub struct ClientConfig {
    /// The base URL, e.g. `http://127.0.0.1:8080` (paths are `<url>/api/v1/...`; a path prefix
    /// such as `https://host/cortex` is kept). No credentials in it.
    pub url: String,
    /// Sent as `Authorization: ApiKey <key>` on the routes that need it (sessions, memory),
    /// and nowhere else. Never shown by `Debug`.
    pub api_key: Option<String>,
    /// The whole-request timeout (connect, send, and read the full answer).
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config for `url` with no key and the [`DEFAULT_TIMEOUT`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Shows `<redacted>` for a secret that is set.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("api_key", &Redacted(&self.api_key))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A client for one Cortex server's `/api/v1` REST API (`../shared/cortex-api.md`).
///
/// Cheap to clone (the connection pool is shared). Each method is one HTTP request: no retries
/// here; callers decide with [`CortexError::is_transient`] and [`CortexError::retry_after`].
#[derive(Clone)]
pub struct CortexClient {
    http: reqwest::Client,
    /// The base URL without a trailing slash.
    base: String,
    /// `ApiKey <key>`, marked sensitive.
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl fmt::Debug for CortexClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.auth.as_ref().map(|_| String::new());
        f.debug_struct("CortexClient")
            .field("url", &self.base)
            .field("api_key", &Redacted(&key))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The success envelope. `data` is decoded straight into the call's type, so an unknown enum
/// value anywhere in it is a decoding error.
#[derive(Deserialize)]
struct Envelope<T> {
    success: bool,
    /// A missing `data` key reads as `None` too (serde's rule for `Option` fields).
    data: Option<T>,
}

/// An error body: `{success: false, error: {code, message, details?}}` (or, leniently,
/// `error` as a string).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorField,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object {
        code: Option<String>,
        message: Option<String>,
    },
    Text(String),
}

impl CortexClient {
    /// A client for `config.url`.
    ///
    /// # Errors
    /// [`CortexError::Config`] for a URL that is not `http(s)://…`, that carries a user,
    /// password, query or fragment, or an API key a header cannot carry;
    /// [`CortexError::Client`] if the TLS backend cannot be set up.
    pub fn new(config: ClientConfig) -> Result<Self, CortexError> {
        let url = Url::parse(config.url.trim()).map_err(|_| CortexError::Config {
            reason: "the cortex url is not a valid url (expected http://host:port)".to_owned(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CortexError::Config {
                reason: "the cortex url must not carry credentials; give the api key separately"
                    .to_owned(),
            });
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CortexError::Config {
                reason: format!("the cortex url `{url}` must start with http:// or https://"),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(CortexError::Config {
                reason: format!("the cortex url `{url}` must not have a query or fragment"),
            });
        }
        if config.timeout.is_zero() {
            return Err(CortexError::Config {
                reason: "the cortex request timeout must be more than zero".to_owned(),
            });
        }
        let auth = match config.api_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("ApiKey {key}")).map_err(|_| {
                    CortexError::Config {
                        reason: "the cortex api key contains characters an http header cannot \
                                 carry"
                            .to_owned(),
                    }
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("axon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(CortexError::Client)?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            auth,
            timeout: config.timeout,
        })
    }

    /// The base URL (no trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    // ---- health ----

    /// `GET /api/v1/health`, whatever it reports (public: no key sent).
    ///
    /// # Errors
    /// Any [`CortexError`] of the call (not [`CortexError::Unhealthy`]).
    pub async fn health(&self) -> Result<Health, CortexError> {
        let at = self.endpoint(Call::Health, Method::GET, "/api/v1/health");
        self.send(at, None::<&()>).await
    }

    /// `GET /api/v1/health`, which must say `healthy` (the HTTP status alone says nothing:
    /// the server answers 200 when its database is down).
    ///
    /// # Errors
    /// [`CortexError::Unhealthy`] when it says `unhealthy`, or any error of the call.
    pub async fn check_health(&self) -> Result<Health, CortexError> {
        let health = self.health().await?;
        match health.status {
            HealthStatus::Healthy => Ok(health),
            HealthStatus::Unhealthy => Err(CortexError::Unhealthy {
                at: self.endpoint(Call::Health, Method::GET, "/api/v1/health"),
                database: match health.database.as_ref().map(|d| d.connected) {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown",
                },
            }),
        }
    }

    // ---- tasks (public) ----

    /// `GET /api/v1/tasks` with `filter`, newest first.
    ///
    /// # Errors
    /// [`CortexError::InvalidRequest`] for a tag containing a comma, or any error of the call.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, CortexError> {
        if let Some(bad) = filter.tags.iter().find(|t| t.contains(',')) {
            return Err(CortexError::InvalidRequest {
                reason: format!("tag `{bad}` contains a comma, which the tags filter cannot carry"),
            });
        }
        let mut at = self.endpoint(Call::ListTasks, Method::GET, "/api/v1/tasks");
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(s) = filter.status {
            pairs.push(("status", s.as_str().to_owned()));
        }
        if let Some(p) = filter.priority {
            pairs.push(("priority", p.as_str().to_owned()));
        }
        if let Some(a) = &filter.assigned_to {
            pairs.push(("assigned_to", a.clone()));
        }
        if !filter.tags.is_empty() {
            pairs.push(("tags", filter.tags.join(",")));
        }
        if !pairs.is_empty() {
            let mut url = Url::parse(&at.url).map_err(|_| CortexError::InvalidRequest {
                reason: "cannot build the tasks query".to_owned(),
            })?;
            url.query_pairs_mut().extend_pairs(pairs);
            at.url = url.into();
        }
        self.send(at, None::<&()>).await
    }

    /// `POST /api/v1/tasks` (200 with the full task, `pending`).
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn create_task(&self, task: &NewTask) -> Result<Task, CortexError> {
        let at = self.endpoint(Call::CreateTask, Method::POST, "/api/v1/tasks");
        self.send(at, Some(task)).await
    }

    /// `GET /api/v1/tasks/{id}`.
    ///
    /// # Errors
    /// 404 (`invalid_input`) when it does not exist, 400 when `id` is not a UUID, or any error
    /// of the call.
    pub async fn get_task(&self, id: &CortexTaskId) -> Result<Task, CortexError> {
        let path = format!("/api/v1/tasks/{}", segment(id.as_str()));
        let at = self.endpoint(Call::GetTask, Method::GET, &path);
        self.send(at, None::<&()>).await
    }

    /// `PUT /api/v1/tasks/{id}`: a partial update; returns the whole updated task.
    ///
    /// # Errors
    /// As [`CortexClient::get_task`], plus 422 for a value the server refuses.
    pub async fn update_task(
        &self,
        id: &CortexTaskId,
        update: &TaskUpdate,
    ) -> Result<Task, CortexError> {
        let path = format!("/api/v1/tasks/{}", segment(id.as_str()));
        let at = self.endpoint(Call::UpdateTask, Method::PUT, &path);
        self.send(at, Some(update)).await
    }

    /// `DELETE /api/v1/tasks/{id}` (`data: null`; idempotent: an unknown id succeeds).
    ///
    /// # Errors
    /// 400 when `id` is not a UUID, or any error of the call.
    pub async fn delete_task(&self, id: &CortexTaskId) -> Result<(), CortexError> {
        let path = format!("/api/v1/tasks/{}", segment(id.as_str()));
        let at = self.endpoint(Call::DeleteTask, Method::DELETE, &path);
        self.send_null(at, None::<&()>).await
    }

    // ---- workspaces (public) ----

    /// `POST /api/v1/workspaces`.
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn create_workspace(
        &self,
        workspace: &NewWorkspace,
    ) -> Result<Workspace, CortexError> {
        let at = self.endpoint(Call::CreateWorkspace, Method::POST, "/api/v1/workspaces");
        self.send(at, Some(workspace)).await
    }

    /// `GET /api/v1/workspaces`, to find a workspace again (the contract lists the route but
    /// not its answer; this expects an array of the objects `POST` returns).
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, CortexError> {
        let at = self.endpoint(Call::ListWorkspaces, Method::GET, "/api/v1/workspaces");
        self.send(at, None::<&()>).await
    }

    /// `GET /api/v1/workspaces/{id}` (the contract lists the route but not its answer; this
    /// expects the object `POST` returns).
    ///
    /// # Errors
    /// 404 when it does not exist, or any error of the call.
    pub async fn get_workspace(&self, id: &WorkspaceId) -> Result<Workspace, CortexError> {
        let path = format!("/api/v1/workspaces/{}", segment(id.as_str()));
        let at = self.endpoint(Call::GetWorkspace, Method::GET, &path);
        self.send(at, None::<&()>).await
    }

    // ---- sessions (auth) ----

    /// `POST /api/v1/sessions` (status `active`). Remember the workspace: the session object
    /// does not carry it.
    ///
    /// # Errors
    /// 401 without a valid key, 400 for a workspace id that is not a UUID, or any error of the
    /// call.
    pub async fn create_session(&self, session: &NewSession) -> Result<Session, CortexError> {
        let at = self.endpoint(Call::CreateSession, Method::POST, "/api/v1/sessions");
        self.send(at, Some(session)).await
    }

    /// `GET /api/v1/sessions`: every session, newest first.
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn list_sessions(&self) -> Result<Vec<Session>, CortexError> {
        let at = self.endpoint(Call::ListSessions, Method::GET, "/api/v1/sessions");
        self.send(at, None::<&()>).await
    }

    /// `GET /api/v1/sessions/{id}`.
    ///
    /// # Errors
    /// 404 when it does not exist, or any error of the call.
    pub async fn get_session(&self, id: &SessionId) -> Result<Session, CortexError> {
        let path = format!("/api/v1/sessions/{}", segment(id.as_str()));
        let at = self.endpoint(Call::GetSession, Method::GET, &path);
        self.send(at, None::<&()>).await
    }

    /// `DELETE /api/v1/sessions/{id}` (`data: null`; idempotent).
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn delete_session(&self, id: &SessionId) -> Result<(), CortexError> {
        let path = format!("/api/v1/sessions/{}", segment(id.as_str()));
        let at = self.endpoint(Call::DeleteSession, Method::DELETE, &path);
        self.send_null(at, None::<&()>).await
    }

    /// `POST /api/v1/sessions/{id}/merge`. A `partial` result is returned as is (the caller
    /// decides); a 409 (`manual` with an unresolved conflict) is an error of kind
    /// `merge_conflict`.
    ///
    /// # Errors
    /// 409 as said, 404 when the session does not exist, or any error of the call.
    pub async fn merge_session(
        &self,
        id: &SessionId,
        merge: &MergeRequest,
    ) -> Result<MergeResult, CortexError> {
        let path = format!("/api/v1/sessions/{}/merge", segment(id.as_str()));
        let at = self.endpoint(Call::MergeSession, Method::POST, &path);
        self.send(at, Some(merge)).await
    }

    // ---- memory (auth) ----

    /// `POST /api/v1/memory/search` (a bare array of episodes).
    ///
    /// # Errors
    /// Any [`CortexError`] of the call.
    pub async fn search_memory(&self, query: &MemoryQuery) -> Result<Vec<Episode>, CortexError> {
        let at = self.endpoint(Call::SearchMemory, Method::POST, "/api/v1/memory/search");
        self.send(at, Some(query)).await
    }

    // ---- the one request path ----

    fn endpoint(&self, call: Call, method: Method, path: &str) -> Endpoint {
        let method = match method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        Endpoint {
            call,
            method,
            url: format!("{}{path}", self.base),
        }
    }

    /// Whether `call` is on a route the server protects (sessions, memory): only those get the
    /// key, so it is never sent where it is not needed.
    fn needs_auth(call: Call) -> bool {
        matches!(
            call,
            Call::CreateSession
                | Call::ListSessions
                | Call::GetSession
                | Call::DeleteSession
                | Call::MergeSession
                | Call::SearchMemory
        )
    }

    fn request(&self, at: &Endpoint) -> RequestBuilder {
        let method = match at.method {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            _ => Method::GET,
        };
        let mut req = self.http.request(method, &at.url);
        if Self::needs_auth(at.call)
            && let Some(auth) = &self.auth
        {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req
    }

    /// A call whose `data` must be present.
    async fn send<T: DeserializeOwned>(
        &self,
        at: Endpoint,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, CortexError> {
        let missing = at.clone();
        match self.exchange(at, body).await? {
            Some(data) => Ok(data),
            None => Err(CortexError::Contract {
                at: missing,
                what: "`data` is missing or null",
                source: None,
            }),
        }
    }

    /// A call that answers `data: null` (deletes); any `data` is accepted and dropped.
    async fn send_null(
        &self,
        at: Endpoint,
        body: Option<&impl serde::Serialize>,
    ) -> Result<(), CortexError> {
        self.exchange::<serde::de::IgnoredAny>(at, body)
            .await
            .map(drop)
    }

    /// Sends, then decodes: the HTTP status first, then the body.
    async fn exchange<T: DeserializeOwned>(
        &self,
        at: Endpoint,
        body: Option<&impl serde::Serialize>,
    ) -> Result<Option<T>, CortexError> {
        let mut req = self.request(&at);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Err(self.transport(at, e)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.transport(at, e)),
        };
        if !status.is_success() {
            return Err(status_error(at, status.as_u16(), &bytes, retry_after));
        }
        decode(at, &bytes)
    }

    /// Classifies a transport failure (no status, or a body cut short).
    fn transport(&self, at: Endpoint, e: reqwest::Error) -> CortexError {
        // The URL is already in `at`; keep it out of the source's text.
        let source = e.without_url();
        if source.is_timeout() {
            return CortexError::Timeout {
                at,
                timeout: self.timeout,
                source,
            };
        }
        if source.is_connect() {
            return match io_kind(&source) {
                Some(std::io::ErrorKind::ConnectionRefused) => CortexError::Refused { at, source },
                _ if looks_like_tls(&source) => CortexError::Tls { at, source },
                _ => CortexError::Connect { at, source },
            };
        }
        CortexError::ConnectionLost { at, source }
    }
}

/// Percent-encodes `s` as one path segment.
fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The first `io::ErrorKind` in `e`'s source chain.
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut next = e.source();
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

/// Whether a connect failure came from TLS: rustls reports through tokio-rustls as an
/// `InvalidData` I/O error (which the connector may wrap in another I/O error); the texts cover
/// certificate and handshake failures otherwise.
fn looks_like_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = e.source();
    while let Some(err) = next {
        let io = err.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return true;
        }
        // `io::Error::source` skips the error an I/O error wraps: look at that one too.
        next = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    false
}

/// A non-2xx answer: the JSON error object if there is one, else the plain text.
fn status_error(
    at: Endpoint,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> CortexError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorField::Object { code, message },
        }) => (code, message.unwrap_or_default()),
        Ok(ErrorBody {
            error: ErrorField::Text(message),
        }) => (None, message),
        Err(_) => (None, plain_text(body)),
    };
    CortexError::Status {
        at,
        status: Box::new(HttpStatus {
            status,
            code,
            message,
            retry_after,
        }),
    }
}

/// A plain-text body, trimmed and shortened to [`MAX_TEXT`] characters.
fn plain_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A 2xx answer: the envelope with `success: true`; `data` as the call's type (`None` for
/// `null` or absent).
fn decode<T: DeserializeOwned>(at: Endpoint, body: &[u8]) -> Result<Option<T>, CortexError> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(source) => {
            let what = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                "the body is not json"
            } else {
                "unexpected shape or unknown value in the envelope"
            };
            return Err(CortexError::Contract {
                at,
                what,
                source: Some(source),
            });
        }
    };
    if !envelope.success {
        return Err(CortexError::Contract {
            at,
            what: "a 2xx answer with `success: false`",
            source: None,
        });
    }
    Ok(envelope.data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cortex::http::types::TaskStatus;

    fn at() -> Endpoint {
        Endpoint {
            call: Call::GetTask,
            method: "GET",
            url: "http://127.0.0.1:1/api/v1/tasks/x".into(),
        }
    }

    #[test]
    fn decode_accepts_null_or_absent_data_as_none() {
        let null = br#"{"success":true,"data":null,"error":null,"metadata":{}}"#;
        assert_eq!(decode::<serde_json::Value>(at(), null).unwrap(), None);
        let absent = br#"{"success":true}"#;
        assert_eq!(decode::<serde_json::Value>(at(), absent).unwrap(), None);
    }

    #[test]
    fn decode_rejects_unknown_enum_values_and_false_success() {
        let typo = br#"{"success":true,"data":"in_progress"}"#;
        let e = decode::<TaskStatus>(at(), typo).unwrap_err();
        assert!(matches!(
            e,
            CortexError::Contract {
                source: Some(_),
                ..
            }
        ));
        let ok = br#"{"success":true,"data":"inprogress"}"#;
        assert_eq!(
            decode::<TaskStatus>(at(), ok).unwrap(),
            Some(TaskStatus::InProgress)
        );
        let e = decode::<TaskStatus>(at(), br#"{"success":false,"data":"done"}"#).unwrap_err();
        assert!(e.to_string().contains("success: false"), "{e}");
    }

    #[test]
    fn error_bodies_are_read_as_objects_strings_or_text() {
        let obj = br#"{"success":false,"error":{"code":"NOT_FOUND","message":"Not found: x","details":null}}"#;
        let e = status_error(at(), 404, obj, None);
        assert_eq!(e.error_code(), Some("NOT_FOUND"));
        assert!(
            e.to_string()
                .ends_with("http 404 Not Found (NOT_FOUND): Not found: x"),
            "{e}"
        );
        let text = status_error(at(), 422, b"Failed to deserialize the JSON body", None);
        assert_eq!(text.error_code(), None);
        assert!(text.to_string().contains("Failed to deserialize"), "{text}");
        let legacy = status_error(at(), 400, br#"{"success":false,"error":"bad"}"#, None);
        assert!(legacy.to_string().ends_with(": bad"), "{legacy}");
        let long = "x".repeat(1000);
        let cut = status_error(at(), 500, long.as_bytes(), None);
        assert!(cut.to_string().len() < 500);
    }

    /// A transport error whose cause is `io` (as reqwest's is hyper's, then the connector's).
    #[derive(Debug)]
    struct Transport(std::io::Error);

    impl fmt::Display for Transport {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn tls_failures_are_recognised_inside_wrapped_io_errors() {
        use std::io::{Error, ErrorKind};
        // What rustls gives for `https://` to a plain-http port: an `InvalidData` I/O error
        // inside an `Other` one, whose text says nothing about tls.
        let wrapped = Error::other(Error::new(
            ErrorKind::InvalidData,
            "received corrupt message of type InvalidContentType",
        ));
        assert!(looks_like_tls(&Transport(wrapped)));
        let direct = Error::new(ErrorKind::InvalidData, "corrupt");
        assert!(looks_like_tls(&Transport(direct)));
        let refused = Error::other(Error::new(ErrorKind::ConnectionRefused, "refused"));
        assert!(!looks_like_tls(&Transport(refused)));
        let unknown = Error::other("invalid peer certificate: UnknownIssuer");
        assert!(looks_like_tls(&Transport(unknown)));
    }

    #[test]
    fn segments_encode_everything_but_unreserved() {
        assert_eq!(segment("src/lib.rs"), "src%2Flib.rs");
        assert_eq!(segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(segment("3f2b-A_z.~"), "3f2b-A_z.~");
    }
}
