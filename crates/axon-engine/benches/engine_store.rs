//! Throughput with the durable SQLite store: W2 (10,000 independent no-op tasks) with every
//! transition committed (WAL, `synchronous = FULL`) before it is acted on.
//!
//! Group `w2_store_10k`:
//! - `sqlite_file`: `SqliteStore::open` on a fresh file in a temporary directory (opening and
//!   migrating are not timed; recording the run and its 10,000 task rows is);
//! - `sqlite_memory`: `SqliteStore::in_memory()`: the same SQL without the file and fsync;
//! - `no_store`: the engine without a store (as W2 of the `engine` bench).
//!
//! Group `w1_store_1k` (for reference): a chain of 1,000 tasks on the file store, where
//! every task waits for its own commits (nothing to group).
//!
//! After criterion, a summary prints task completions per second.
//!
//! Run: `cargo bench -p axon-engine --bench engine_store`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::Workflow;
use axon_engine::pool::AgentPool;
use axon_engine::{Engine, RunOptions};
use axon_store::{SqliteStore, Store};
use criterion::{Criterion, SamplingMode};

const GROUPS: &[(&str, usize)] = &[("w2_store_10k", 10_000), ("w1_store_1k", 1_000)];
const FUNCTIONS: &[&str] = &["sqlite_file", "sqlite_memory", "no_store"];

#[derive(Clone, Copy)]
enum Backend {
    File,
    Memory,
    None,
}

/// One run of `workflow` on a fresh store of kind `backend`; returns the time of the run
/// alone.
fn timed_run(
    rt: &tokio::runtime::Runtime,
    pool: &AgentPool,
    workflow: &Workflow,
    backend: Backend,
) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Option<Arc<dyn Store>> = rt.block_on(async {
        match backend {
            Backend::File => Some(Arc::new(
                SqliteStore::open(&dir.path().join("axon.db"))
                    .await
                    .expect("the store opens"),
            ) as Arc<dyn Store>),
            Backend::Memory => Some(Arc::new(
                SqliteStore::in_memory().await.expect("the store opens"),
            ) as Arc<dyn Store>),
            Backend::None => None,
        }
    });
    let mut engine = Engine::new(pool.clone());
    if let Some(store) = &store {
        engine = engine.with_store(Arc::clone(store));
    }
    let n = workflow.tasks.len();
    let wf = workflow.clone();
    let start = Instant::now();
    let report = rt
        .block_on(engine.run(wf, RunOptions::default()))
        .expect("the run ends");
    let took = start.elapsed();
    assert_eq!(report.status.as_str(), "succeeded");
    assert_eq!(report.totals.succeeded as usize, n);
    if let Some(store) = store {
        // Everything the report says is durable: the store agrees.
        let rows = rt
            .block_on(store.tasks(report.run_id))
            .expect("the store reads");
        assert!(rows.iter().all(|r| r.status.as_str() == "succeeded"));
        assert_eq!(rows.len(), n);
    }
    took
}

fn store_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let pool = common::pool_of(common::noop_agent());
    for &(label, n) in GROUPS {
        let dag = if label.starts_with("w1") {
            common::chain(n)
        } else {
            common::independent(n)
        };
        let workflow = dag.to_workflow(label, |_| serde_json::Value::Null);
        let backends: &[(&str, Backend)] = if label.starts_with("w1") {
            &[("sqlite_file", Backend::File)]
        } else {
            &[
                ("sqlite_file", Backend::File),
                ("sqlite_memory", Backend::Memory),
                ("no_store", Backend::None),
            ]
        };
        let mut g = c.benchmark_group(label);
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for &(name, backend) in backends {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| timed_run(rt, &pool, &workflow, backend))
                        .sum()
                });
            });
        }
        g.finish();
    }
}

/// Prints task completions per second of this run.
fn summary(dir: &std::path::Path, since: SystemTime) {
    println!(
        "\nSummary (criterion means of this run; load average now {}):",
        common::load_average()
    );
    println!(
        "{:<14} {:<14} {:>10} {:>10} {:>14}",
        "workload", "store", "mean ms", "us/task", "completions/s"
    );
    for &(label, n) in GROUPS {
        for f in FUNCTIONS {
            let Some(m) = common::criterion_mean_ns(dir, label, f, since) else {
                continue;
            };
            println!(
                "{:<14} {:<14} {:>10.1} {:>10.2} {:>14.0}",
                label,
                f,
                m / 1e6,
                m / 1e3 / n as f64,
                n as f64 / (m / 1e9)
            );
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let dir = common::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let rt = common::runtime();
    store_benches(&mut c, &rt);
    c.final_summary();
    if common::full_run() {
        summary(&dir, since);
    }
}
