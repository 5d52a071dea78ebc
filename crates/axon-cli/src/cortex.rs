//! The `--cortex-*` flags as the engine's bridge: the embedded Cortex without a URL, a
//! connected [`HttpCortex`] with one (or, with `--cortex-optional`, the embedded Cortex when
//! the server is not usable).

use std::sync::Arc;

use axon_engine::cortex::http::{ClientConfig, CortexError};
use axon_engine::cortex::{CortexBridge, CortexConfig, CortexRoles, HttpCortex, LocalCortex};
use axon_store::Store;

use crate::Status;
use crate::cli::{CortexArgs, CortexRole};
use crate::state::chain;

/// The client settings of the flags, if a URL is given.
pub fn client_config(args: &CortexArgs) -> Option<ClientConfig> {
    let url = args.cortex_url.as_deref()?.trim();
    if url.is_empty() {
        return None;
    }
    Some(client_config_at(args, url))
}

/// The client settings of the flags for the server at `url` (the key and timeout given).
pub fn client_config_at(args: &CortexArgs, url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url);
    config.api_key = args
        .cortex_api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    config.timeout = args.cortex_timeout;
    config
}

/// The roles of `--cortex-roles`.
pub fn roles(args: &CortexArgs) -> CortexRoles {
    CortexRoles {
        tracking: args.cortex_roles.contains(&CortexRole::Tracking),
        memory: args.cortex_roles.contains(&CortexRole::Memory),
        sessions: args.cortex_roles.contains(&CortexRole::Sessions),
    }
}

/// The bridge for a run or resume. On failure, the problem is printed and the exit status
/// returned: 2 for a malformed setting, 1 when the server is not usable.
pub async fn bridge(
    args: &CortexArgs,
    store: &Arc<dyn Store>,
) -> Result<Arc<dyn CortexBridge>, Status> {
    let local = || Arc::new(LocalCortex::new(Arc::clone(store))) as Arc<dyn CortexBridge>;
    let Some(client) = client_config(args) else {
        return Ok(local());
    };
    let url = client.url.clone();
    let mut config = CortexConfig::new(client);
    config.roles = roles(args);
    config.workspace_id = args.cortex_workspace.clone();
    match HttpCortex::connect(config, Arc::clone(store)).await {
        Ok(cortex) => Ok(Arc::new(cortex)),
        Err(e @ CortexError::Config { .. }) => {
            eprintln!("axon: error: {e}");
            Err(Status::Usage)
        }
        Err(e) if args.cortex_optional => {
            eprintln!(
                "note: Cortex at {url} is not usable ({}); running on the embedded implementation instead (--cortex-optional)",
                chain(&e)
            );
            key_hint(&e);
            Ok(local())
        }
        Err(e) => {
            eprintln!("axon: error: Cortex at {url} is not usable: {}", chain(&e));
            key_hint(&e);
            eprintln!(
                "  nothing ran; pass --cortex-optional to run without Cortex when it is not usable"
            );
            Err(Status::Invalid)
        }
    }
}

/// After a 401: what to do about the key.
fn key_hint(e: &CortexError) {
    if e.status() == Some(401) {
        eprintln!(
            "  sessions and memory need an API key Cortex accepts: pass --cortex-api-key or set AXON_CORTEX_API_KEY"
        );
    }
}
