//! Test-only helpers for Axon. Never a dependency of a shipped crate (`publish = false`, only
//! ever in `[dev-dependencies]`).
//!
//! - [`cortex`]: a **contract-faithful fake Cortex server** (`../shared/cortex-api.md`), an axum
//!   app held in memory and served on a random loopback port, with fault injection (refused
//!   connections, 503 bursts, 429 with `Retry-After`, slow answers, connections dropped
//!   mid-body, malformed JSON, the `in_progress` typo, an unhealthy `/health`).
//!
//! It depends on no Axon crate, on purpose: its types are written from the contract, not from
//! the client it tests, so the two cannot drift together.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axon_testkit::cortex::{FakeConfig, FakeCortex};
//!
//! let cortex = FakeCortex::start(FakeConfig::default()).await;
//! cortex.faults().fail_next(2, 503);
//! // … point the client at `cortex.url()` with `cortex.api_key()` …
//! assert!(cortex.state().tasks.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```

pub mod cortex;
