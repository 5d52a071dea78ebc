//! The low-level HTTP client for a remote Cortex server's `/api/v1` REST API, as written down
//! in `../shared/cortex-api.md` (the contract: what a real server answers, quirks included).
//!
//! This module only speaks the protocol; the `CortexBridge` built on it (tracking outbox,
//! sessions per attempt, memory as context) lives elsewhere.
//!
//! - [`CortexClient`]: one pooled `reqwest` client (rustls, never OpenSSL), one typed method
//!   per route, `Authorization: ApiKey <key>` on the protected routes only (sessions, memory);
//!   the key never appears in `Debug` output or in an error.
//! - One decoder for every answer: the HTTP status first; for 2xx the
//!   `{success, data, error, metadata}` envelope with `data` decoded straight into the typed
//!   value (`data: null` is the normal answer of a delete); for anything else the JSON error
//!   object `{code, message, details}` when there is one, else the plain-text body (axum's
//!   415/400/422, an empty 404).
//! - [`types`]: the wire types; enums are closed, so an unknown value (`in_progress`) is an
//!   error, never a panic.
//! - [`CortexError`]: classified to the engine's [`ErrorType`](axon_core::model::ErrorType),
//!   with [`CortexError::is_transient`] and [`CortexError::retry_after`]. Each message names
//!   the method and URL and what was wrong (refused, timeout, TLS, 401, unhealthy, …).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axon_engine::cortex::http::{ClientConfig, CortexClient, NewTask};
//!
//! let mut config = ClientConfig::new("http://127.0.0.1:8080");
//! config.api_key = std::env::var("AXON_CORTEX_API_KEY").ok();
//! let cortex = CortexClient::new(config)?;
//! cortex.check_health().await?;
//! let task = cortex.create_task(&NewTask::new("build", "the workflow")).await?;
//! cortex.delete_task(&task.id).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```

mod client;
mod error;
pub mod types;

pub use client::{ClientConfig, CortexClient, DEFAULT_TIMEOUT};
pub use error::{Call, CortexError, Endpoint, HttpStatus};
pub use types::{
    CortexTaskId, DatabaseHealth, Episode, Health, HealthStatus, MemoryQuery, MergeRequest,
    MergeResult, MergeStatus, MergeStrategy, NewSession, NewTask, NewWorkspace, Priority, Session,
    SessionId, SessionStatus, SpecReference, Task, TaskFilter, TaskStatus, TaskUpdate, Workspace,
    WorkspaceId,
};
