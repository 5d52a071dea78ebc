//! `axon cortex check`: probes a Cortex server against the contract Axon relies on.

use crate::Status;
use crate::cli::CortexCheckArgs;

/// `axon cortex check`.
pub fn check(_args: &CortexCheckArgs) -> anyhow::Result<Status> {
    anyhow::bail!("`axon cortex check` is not implemented yet")
}
