//! [`CortexError`]: what went wrong talking to a Cortex server, classified for Axon's retry
//! policy ([`ErrorType`], [`CortexError::is_transient`], [`CortexError::retry_after`]).
//!
//! No variant holds the API key, and the URLs in messages never carry credentials (the client
//! refuses a base URL with a user or password in it).

use std::fmt;
use std::time::Duration;

use axon_core::model::ErrorType;

use crate::cortex::BridgeError;

/// Which client call failed. Decides some classifications: a 409 from a merge is a merge
/// conflict, a 409 anywhere else is a rejected request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// `GET /api/v1/health`
    Health,
    /// `GET /api/v1/tasks`
    ListTasks,
    /// `POST /api/v1/tasks`
    CreateTask,
    /// `GET /api/v1/tasks/{id}`
    GetTask,
    /// `PUT /api/v1/tasks/{id}`
    UpdateTask,
    /// `DELETE /api/v1/tasks/{id}`
    DeleteTask,
    /// `POST /api/v1/workspaces`
    CreateWorkspace,
    /// `GET /api/v1/workspaces`
    ListWorkspaces,
    /// `GET /api/v1/workspaces/{id}`
    GetWorkspace,
    /// `POST /api/v1/sessions`
    CreateSession,
    /// `GET /api/v1/sessions`
    ListSessions,
    /// `GET /api/v1/sessions/{id}`
    GetSession,
    /// `DELETE /api/v1/sessions/{id}`
    DeleteSession,
    /// `POST /api/v1/sessions/{id}/merge`
    MergeSession,
    /// `POST /api/v1/memory/search`
    SearchMemory,
}

/// Where a failed call went: its method and URL (never with credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The call.
    pub call: Call,
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// The full request URL.
    pub url: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cortex {} {}", self.method, self.url)
    }
}

/// A non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStatus {
    /// The HTTP status code.
    pub status: u16,
    /// `error.code` of a JSON error body (`NOT_FOUND`, `UNAUTHORIZED`, …).
    pub code: Option<String>,
    /// `error.message` of a JSON error body, else the plain-text body (trimmed, shortened),
    /// else empty.
    pub message: String,
    /// The `Retry-After` delay (whole seconds) of a 429 or 503.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        write!(f, "http {} {reason}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        } else if self.status == 404 {
            f.write_str(": empty body (no such route: is this the base url of a cortex server?)")?;
        }
        if let Some(after) = self.retry_after {
            write!(f, "; retry after {}s", after.as_secs())?;
        }
        Ok(())
    }
}

/// A failed Cortex call (or client setup).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CortexError {
    /// The client configuration is unusable (bad URL, URL with credentials, API key with
    /// characters a header cannot carry). The message never repeats the key or a password.
    #[error("invalid cortex configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the cortex http client")]
    Client(#[source] reqwest::Error),
    /// Axon was about to send something the contract cannot express (a tag with a comma).
    #[error("invalid cortex request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// Nothing listens at the address: connection refused.
    #[error("{at}: connection refused (is the cortex server running at that address?)")]
    Refused {
        /// The call.
        at: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection could not be established (name resolution, unreachable network, …).
    #[error("{at}: cannot connect")]
    Connect {
        /// The call.
        at: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed (certificate, protocol). Not retried: it is configuration.
    #[error(
        "{at}: tls handshake failed (check the certificate and that the url's scheme is right)"
    )]
    Tls {
        /// The call.
        at: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the client's timeout.
    #[error("{at}: no answer within {timeout:?} (timeout)")]
    Timeout {
        /// The call.
        at: Endpoint,
        /// The configured timeout.
        timeout: Duration,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection was reset or closed before the whole answer arrived.
    #[error("{at}: connection lost before the answer was complete")]
    ConnectionLost {
        /// The call.
        at: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-2xx status.
    #[error("{at}: {status}")]
    Status {
        /// The call.
        at: Endpoint,
        /// The answer.
        status: Box<HttpStatus>,
    },
    /// `/api/v1/health` answered (HTTP 200) but says `unhealthy`.
    #[error("{at}: cortex reports `unhealthy` (database connected: {database})")]
    Unhealthy {
        /// The call.
        at: Endpoint,
        /// What the server said about its database (`unknown` when it said nothing).
        database: &'static str,
    },
    /// A 2xx answer that does not follow the contract: not JSON, not the envelope, an unknown
    /// enum value, `data` missing where the contract promises it.
    #[error("{at}: the answer does not follow the cortex contract: {what}")]
    Contract {
        /// The call.
        at: Endpoint,
        /// What is wrong.
        what: &'static str,
        /// The decoding error, if any.
        #[source]
        source: Option<serde_json::Error>,
    },
}

impl CortexError {
    /// The class of failure, for the engine's retry policy and reports.
    ///
    /// - transport failures (refused, reset, cut short, timed out) and 408 → `network`;
    /// - 429, 502, 503, 504 and an unhealthy server → `service_unavailable`;
    /// - 409 from a merge → `merge_conflict`;
    /// - 400, 404, 409, 413, 422 and requests Axon cannot send → `invalid_input`;
    /// - 401/403 (the API key), TLS, other statuses (500, 405, 415, …), contract mismatches
    ///   and configuration → `system_error`.
    pub fn kind(&self) -> ErrorType {
        match self {
            Self::Refused { .. }
            | Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::ConnectionLost { .. } => ErrorType::Network,
            Self::Unhealthy { .. } => ErrorType::ServiceUnavailable,
            Self::InvalidRequest { .. } => ErrorType::InvalidInput,
            Self::Config { .. } | Self::Client(_) | Self::Tls { .. } | Self::Contract { .. } => {
                ErrorType::SystemError
            }
            Self::Status { at, status } => match status.status {
                408 => ErrorType::Network,
                429 | 502 | 503 | 504 => ErrorType::ServiceUnavailable,
                409 if at.call == Call::MergeSession => ErrorType::MergeConflict,
                400 | 404 | 409 | 413 | 422 => ErrorType::InvalidInput,
                _ => ErrorType::SystemError,
            },
        }
    }

    /// Whether the same call may succeed later: transport failures, 408, 429, 502, 503, 504
    /// and an unhealthy server. 400/401/403/404/409/422, 500 and contract mismatches are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { .. }
            | Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::ConnectionLost { .. }
            | Self::Unhealthy { .. } => true,
            Self::Status { status, .. } => matches!(status.status, 408 | 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether the server could not be reached at all (refused, no connection, TLS, timeout):
    /// other calls to it now would fail the same way.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::Connect { .. } | Self::Tls { .. } | Self::Timeout { .. }
        )
    }

    /// How long the server asked to wait (`Retry-After` in seconds, on a 429 or a 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { status, .. } => status.retry_after,
            _ => None,
        }
    }

    /// The HTTP status of a non-2xx answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(status.status),
            _ => None,
        }
    }

    /// `error.code` of a JSON error answer (`NOT_FOUND`, `CONFLICT`, `UNAUTHORIZED`, …).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Status { status, .. } => status.code.as_deref(),
            _ => None,
        }
    }

    /// The call that failed (none for configuration errors).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Refused { at, .. }
            | Self::Connect { at, .. }
            | Self::Tls { at, .. }
            | Self::Timeout { at, .. }
            | Self::ConnectionLost { at, .. }
            | Self::Status { at, .. }
            | Self::Unhealthy { at, .. }
            | Self::Contract { at, .. } => Some(at),
            Self::Config { .. } | Self::Client(_) | Self::InvalidRequest { .. } => None,
        }
    }
}

impl From<CortexError> for BridgeError {
    /// Keeps the kind; the message is the error's text, plus the decoding error for a
    /// contract mismatch (which names the offending value, e.g. an unknown status).
    fn from(e: CortexError) -> Self {
        let mut message = e.to_string();
        if let CortexError::Contract {
            source: Some(source),
            ..
        } = &e
        {
            message.push_str(": ");
            message.push_str(&source.to_string());
        }
        BridgeError::new(e.kind(), message)
    }
}
