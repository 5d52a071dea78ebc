//! Who holds a run: this process's identity, and whether a recorded holder is still alive.
//!
//! A holder on this host whose pid is gone (the engine was killed) has lost the run at once;
//! a holder elsewhere keeps it until its lease expires.

use std::time::Duration;

use axon_core::model::RunStatus;
use axon_store::Lease;

use crate::os;
use crate::run::now_ms;

/// How long a lease lasts without renewal (the engine renews it every half second).
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// The identity of an engine process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl Holder {
    /// This process.
    pub fn this_process() -> Self {
        Self {
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".to_owned()),
            pid: std::process::id(),
        }
    }

    /// A lease for this holder expiring `ttl` from now.
    pub fn lease(&self, ttl: Duration) -> Lease {
        Lease {
            host: self.host.clone(),
            pid: self.pid,
            expires_at_ms: now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Whether `lease` still binds: unexpired, and its holder alive if it is on this host.
pub fn is_live(lease: &Lease) -> bool {
    if lease.expires_at_ms <= now_ms() {
        return false;
    }
    let me = Holder::this_process();
    if lease.host == me.host {
        return lease.pid == me.pid || os::pid_alive(lease.pid);
    }
    true
}

/// The status to show for a stored run: a `running` run without a live holder is
/// `interrupted`.
pub fn effective_status(status: RunStatus, lease: Option<&Lease>) -> RunStatus {
    if status == RunStatus::Running && !lease.is_some_and(is_live) {
        RunStatus::Interrupted
    } else {
        status
    }
}
