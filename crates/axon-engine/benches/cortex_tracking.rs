//! Cortex tracking over HTTP: what it costs a run, and how fast the outbox drains.
//!
//! Group `tracking_command_1000` (a W2-style run of command agents: 1,000 independent tasks
//! that run `true`, `CONCURRENCY` at a time, with the SQLite store in a temporary file):
//! - `tracking_off`: the embedded Cortex only (`LocalCortex`: local tracking records);
//! - `tracking_on`: `HttpCortex` with the tracking role (sessions and memory off) against the
//!   fake Cortex server of `axon-testkit` on loopback, served from the same process on its
//!   own runtime thread. Every task's creation and status changes go through the durable
//!   outbox and the courier; the run is timed until `run` returns, which includes the
//!   end-of-run drain (every call delivered).
//!
//! Group `outbox_drain_3001`: `deliver_backlog` (what `axon cortex sync` runs) delivering a
//! run's queued calls to the fake server: 1 workflow create, 1,000 task creates and 2,000
//! updates (enqueued before timing, in a fresh store per iteration).
//!
//! After criterion, a summary prints µs per task, the tracking overhead as a ratio of the
//! same-run `tracking_off`, and the outbox's delivered calls per second; then `ROUNDS` more
//! runs of each, alternating which goes first, and the median of their ratios (on this noisy
//! 2-core machine the interleaved figure is the one to trust).
//!
//! Run: `cargo bench -p axon-engine --bench cortex_tracking`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::model::RunStatus;
use axon_engine::command::CommandAgent;
use axon_engine::cortex::http::ClientConfig;
use axon_engine::cortex::{CortexConfig, CortexRoles, HttpCortex, LocalCortex, deliver_backlog};
use axon_engine::pool::AgentPool;
use axon_engine::{Engine, RunOptions};
use axon_store::{Lease, NewOutboxItem, RunRecord, SqliteStore, Store, TaskRecord};
use axon_testkit::cortex::{FakeConfig, FakeCortex};
use criterion::{Criterion, SamplingMode};

const N: usize = 1_000;
const CONCURRENCY: usize = 8;
const RUN_GROUP: &str = "tracking_command_1000";
const DRAIN_GROUP: &str = "outbox_drain_3001";
const DRAIN_CALLS: usize = 1 + 3 * N;

/// The fake Cortex server on a runtime (and thread) of its own.
struct Server {
    fake: FakeCortex,
    _rt: tokio::runtime::Runtime,
}

fn server() -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-cortex")
        .enable_all()
        .build()
        .expect("a runtime for the fake server");
    let fake = rt.block_on(FakeCortex::start(FakeConfig::default()));
    Server { fake, _rt: rt }
}

fn client(server: &Server) -> ClientConfig {
    let mut c = ClientConfig::new(server.fake.url());
    c.api_key = Some(server.fake.api_key().to_owned());
    c
}

fn pool() -> AgentPool {
    let agent = CommandAgent::new(&["true".to_owned()], BTreeMap::new(), Path::new("."))
        .expect("a command");
    let yaml = format!(
        "agents:\n  - id: run-true\n    capabilities: [x]\n    max_concurrent_tasks: {CONCURRENCY}\n"
    );
    common::pool_of_yaml(&yaml, Arc::new(agent))
}

/// A fresh store file in `dir`.
async fn store(dir: &Path, i: u64) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(&dir.join(format!("axon-{i}.db")))
            .await
            .expect("the store opens"),
    )
}

/// Interleaved rounds after criterion.
const ROUNDS: usize = 12;

fn tracking_config(server: &Server) -> CortexConfig {
    let mut config = CortexConfig::new(client(server));
    config.roles = CortexRoles {
        tracking: true,
        memory: false,
        sessions: false,
    };
    config
}

/// One run of the workload, tracking `on` or off, in a fresh store `i` in `dir`; its time.
async fn one_run(dir: &Path, i: u64, on: bool, config: CortexConfig) -> Duration {
    let workflow = common::independent(N).to_workflow(RUN_GROUP, |_| serde_json::Value::Null);
    let opts = RunOptions {
        workspace: dir.to_path_buf(),
        ..RunOptions::default()
    };
    let store = store(dir, i).await;
    let bridge: Arc<dyn axon_engine::cortex::CortexBridge> = if on {
        Arc::new(
            HttpCortex::connect(config, Arc::clone(&store))
                .await
                .expect("the fake Cortex is healthy"),
        )
    } else {
        Arc::new(LocalCortex::new(Arc::clone(&store)))
    };
    let engine = Engine::new(pool())
        .with_store(Arc::clone(&store))
        .with_cortex(bridge);
    let start = Instant::now();
    let report = engine.run(workflow, opts).await.expect("the run ends");
    let took = start.elapsed();
    assert_eq!(report.totals.succeeded as usize, N);
    if on {
        let owed = store.outbox_counts(report.run_id).await.expect("counts");
        assert!(owed.is_empty(), "every tracking call delivered: {owed:?}");
    }
    took
}

/// `ROUNDS` pairs of runs, alternating which goes first; prints each and the median ratio.
fn interleaved(rt: &tokio::runtime::Runtime, server: &Server) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut ratios = Vec::new();
    println!("\nInterleaved rounds ({N} tasks each; ms):");
    println!("{:>5} {:>9} {:>9} {:>8}", "round", "off", "on", "on/off");
    for r in 0..ROUNDS {
        let first_on = r % 2 == 1;
        let mut times = [Duration::ZERO; 2];
        for (k, on) in [first_on, !first_on].into_iter().enumerate() {
            let i = 2_000_000 + (r * 2 + k) as u64;
            times[usize::from(on)] =
                rt.block_on(one_run(dir.path(), i, on, tracking_config(server)));
        }
        let ratio = times[1].as_secs_f64() / times[0].as_secs_f64();
        ratios.push(ratio);
        println!(
            "{r:>5} {:>9.1} {:>9.1} {ratio:>8.3}",
            times[0].as_secs_f64() * 1e3,
            times[1].as_secs_f64() * 1e3
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[ROUNDS / 2 - 1] + ratios[ROUNDS / 2]) / 2.0;
    println!(
        "median on/off over {ROUNDS} rounds: {median:.3} ({:+.1}% per task); load average now {}",
        (median - 1.0) * 100.0,
        common::load_average()
    );
}

fn run_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, server: &Server) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = tracking_config(server);
    let mut g = c.benchmark_group(RUN_GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(15));
    let mut i = 0u64;
    for on in [false, true] {
        let name = if on { "tracking_on" } else { "tracking_off" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    total += rt.block_on(one_run(dir.path(), i, on, config.clone()));
                }
                total
            });
        });
    }
    g.finish();
}

/// A store holding one finished run (its lease lapsed) with `DRAIN_CALLS` queued calls.
async fn backlog(dir: &Path, i: u64) -> Arc<dyn Store> {
    let store = store(dir, 1_000_000 + i).await;
    let run_id = uuid::Uuid::now_v7();
    let run = RunRecord {
        run_id,
        workflow_id: "w".into(),
        workflow_name: "W".into(),
        status: RunStatus::Succeeded,
        created_at_ms: 1,
        finished_at_ms: Some(2),
        workspace: "/tmp".into(),
        workflow_source: String::new(),
        workflow_format: "yaml".into(),
        agents_source: None,
        agents_format: None,
        agents_dir: None,
        cancel_requested: false,
    };
    let tasks: Vec<TaskRecord> = (0..N)
        .map(|t| TaskRecord::pending(format!("t{t}"), t as u32, format!("Task {t}")))
        .collect();
    let lapsed = Lease {
        host: "elsewhere".into(),
        pid: 1,
        expires_at_ms: 0,
    };
    store
        .create_run(&run, &tasks, &lapsed)
        .await
        .expect("the run is recorded");
    let mut items = vec![NewOutboxItem::workflow(
        "create_workflow",
        serde_json::json!({ "title": "W", "description": "", "tags": ["axon"] }),
    )];
    for t in 0..N {
        let id = format!("t{t}");
        items.push(NewOutboxItem::task(
            &id,
            "create_task",
            serde_json::json!({ "title": id, "description": "" }),
        ));
        items.push(NewOutboxItem::task(
            &id,
            "update_task",
            serde_json::json!({ "status": "inprogress", "assigned_to": ["a"], "progress": 0.0 }),
        ));
        items.push(NewOutboxItem::task(
            &id,
            "update_task",
            serde_json::json!({ "status": "done", "progress": 1.0, "actual_hours": 0.1 }),
        ));
    }
    store
        .outbox_push(run_id, &items, 0)
        .await
        .expect("the calls are queued");
    store
}

fn drain_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, server: &Server) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group(DRAIN_GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    let mut i = 0u64;
    g.bench_function("deliver_backlog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                i += 1;
                total += rt.block_on(async {
                    let store = backlog(dir.path(), i).await;
                    let start = Instant::now();
                    let report =
                        deliver_backlog(client(server), store, None, Duration::from_secs(30))
                            .await
                            .expect("the backlog is delivered");
                    let took = start.elapsed();
                    assert!(report.is_complete(), "{report:?}");
                    assert_eq!(report.runs[0].delivered as usize, DRAIN_CALLS);
                    took
                });
            }
            total
        });
    });
    g.finish();
}

fn summary(dir: &Path, since: SystemTime) {
    let mean = |g: &str, f: &str| common::criterion_mean_ns(dir, g, f, since);
    println!(
        "\nSummary (criterion means of this run; load average now {}):",
        common::load_average()
    );
    if let (Some(off), Some(on)) = (
        mean(RUN_GROUP, "tracking_off"),
        mean(RUN_GROUP, "tracking_on"),
    ) {
        println!(
            "{N} tasks of `true`, {CONCURRENCY} at a time: tracking off {:.1} us/task, on {:.1} us/task; on / off = {:.3} ({:+.1}% per task)",
            off / 1e3 / N as f64,
            on / 1e3 / N as f64,
            on / off,
            (on / off - 1.0) * 100.0
        );
    }
    if let Some(drain) = mean(DRAIN_GROUP, "deliver_backlog") {
        println!(
            "outbox: {DRAIN_CALLS} calls delivered in {:.1} ms = {:.0} calls/s",
            drain / 1e6,
            DRAIN_CALLS as f64 / (drain / 1e9)
        );
    }
}

fn main() {
    let since = SystemTime::now();
    let dir = common::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let rt = common::runtime();
    let server = server();
    run_bench(&mut c, &rt, &server);
    drain_bench(&mut c, &rt, &server);
    c.final_summary();
    if common::full_run() {
        summary(&dir, since);
        interleaved(&rt, &server);
    }
}
