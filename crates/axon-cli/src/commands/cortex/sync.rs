//! `axon cortex sync`: delivers the tracking updates still queued for a Cortex server.

use std::path::Path;

use crate::Status;
use crate::cli::CortexSyncArgs;

/// `axon cortex sync`.
pub fn sync(_args: &CortexSyncArgs, _db: Option<&Path>) -> anyhow::Result<Status> {
    anyhow::bail!("`axon cortex sync` is not implemented yet")
}
