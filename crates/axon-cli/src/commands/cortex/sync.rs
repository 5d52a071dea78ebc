//! `axon cortex sync`: delivers the tracking updates still queued for a Cortex server, and
//! deletes the Cortex sessions crashed engines left there.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axon_engine::cortex::deliver_backlog;
use axon_engine::cortex::http::CortexClient;
use axon_store::Store;

use crate::Status;
use crate::cli::CortexSyncArgs;
use crate::commands::run::runtime;
use crate::output::{plural, print_stdout};
use crate::state::{chain, db_path, open_existing, run_id_arg};

/// How long a run may go without a delivery before sync leaves it for later.
const PATIENCE: Duration = Duration::from_secs(10);

/// `axon cortex sync`.
pub fn sync(args: &CortexSyncArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let run = match &args.run {
        Some(text) => match run_id_arg(text) {
            Some(id) => Some(id),
            None => return Ok(Status::Usage),
        },
        None => None,
    };
    let db = db_path(db, &std::env::current_dir()?);
    let cortex = args.cortex.clone();
    runtime()?.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(open_existing(&db).await?);
        let err = |e: axon_store::StoreError| anyhow::anyhow!(chain(&e));
        if let Some(run) = run
            && store.run(run).await.map_err(err)?.is_none()
        {
            eprintln!("axon: error: no run with id {run} in {}", db.display());
            return Ok(Status::Invalid);
        }
        // The server: the one given, else the one the backlog was queued for.
        let url = match crate::cortex::client_config(&cortex) {
            Some(c) => c.url,
            None => {
                let mut servers = BTreeSet::new();
                match run {
                    Some(run) => servers.extend(store.cortex_server(run).await.map_err(err)?),
                    None => {
                        for r in store.outbox_runs().await.map_err(err)? {
                            servers.extend(r.server);
                        }
                        for s in store.cortex_sessions(None).await.map_err(err)? {
                            servers.extend(store.cortex_server(s.run_id).await.map_err(err)?);
                        }
                    }
                }
                match servers.len() {
                    0 => {
                        print_stdout("nothing to deliver: no run has updates queued for Cortex\n")?;
                        return Ok(Status::Success);
                    }
                    1 => servers.into_iter().next().unwrap_or_default(),
                    _ => {
                        eprintln!(
                            "axon: error: updates are queued for several Cortex servers ({}); pick one with --cortex-url",
                            servers.into_iter().collect::<Vec<_>>().join(", ")
                        );
                        return Ok(Status::Usage);
                    }
                }
            }
        };
                let client = crate::cortex::client_config_at(&cortex, &url);
        let probe = match CortexClient::new(client.clone()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("axon: error: {e}");
                return Ok(Status::Usage);
            }
        };
        if let Err(e) = probe.check_health().await {
            eprintln!(
                "axon: error: Cortex at {url} is not usable: {}; the updates stay queued",
                chain(&e)
            );
            return Ok(Status::Failed);
        }
        let report = match deliver_backlog(client, Arc::clone(&store), run, PATIENCE).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("axon: error: {e}");
                return Ok(Status::Failed);
            }
        };
        let mut out = String::new();
        for r in &report.runs {
            out.push_str(&format!(
                "run {}: {} delivered, {} left",
                r.run_id,
                plural(r.delivered as usize, "update"),
                r.left
            ));
            if r.sessions_deleted > 0 {
                out.push_str(&format!(
                    ", {} deleted",
                    plural(r.sessions_deleted as usize, "leftover Cortex session")
                ));
            }
            if let Some(note) = &r.note {
                out.push_str(&format!(" ({note})"));
            }
            out.push('\n');
        }
        let delivered: u64 = report.runs.iter().map(|r| r.delivered).sum();
        let left: u64 = report.runs.iter().map(|r| r.left).sum();
        if report.runs.is_empty() {
            out.push_str(&format!("nothing to deliver to {url}\n"));
        } else if report.is_complete() {
            out.push_str(&format!(
                "{} delivered to {url}; nothing left\n",
                plural(delivered as usize, "update")
            ));
        } else {
            out.push_str(&format!(
                "{} delivered to {url}; {} still queued (`axon status RUN` shows why)\n",
                plural(delivered as usize, "update"),
                plural(left as usize, "update")
            ));
        }
        print_stdout(&out)?;
        Ok(if report.is_complete() {
            Status::Success
        } else {
            Status::Failed
        })
    })
}
