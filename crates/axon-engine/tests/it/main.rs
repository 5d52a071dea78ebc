//! Integration tests of `axon-engine`: whole runs on in-process agents under paused tokio
//! time (dispatch, retries, failures, timeouts, cancellation, events), the durable store
//! with crash and resume, and the command agent with real processes.
//!
//! One binary for the crate (STYLE.md §7); each module covers one area.

mod bridge;
mod cancel;
mod command;
mod common;
mod cortex_bridge;
mod cortex_http;
mod dispatch;
mod events;
mod failures;
mod git;
mod inline;
mod store;
