//! Command-agent overhead: 1,000 independent tasks that run `true`, at most `CONCURRENCY`
//! at a time.
//!
//! Group `command_1000`:
//! - `engine`: the engine with one `CommandAgent` running `true` (`max_concurrent_tasks:
//!   CONCURRENCY`): stdin JSON, `AXON_*` environment, piped and parsed stdout/stderr, its own
//!   process group (killed when it exits), every event;
//! - `plain_loop`: `tokio::process::Command::new("true").status()` from a plain loop, the
//!   same concurrency (a semaphore), one `tokio::spawn` per process;
//! - `plain_piped`: the plain loop with the command agent's process set-up (own process
//!   group, piped stdio, the request written to stdin, stdout and stderr read to the end):
//!   the part of the difference that is process mechanics rather than engine.
//!
//! After criterion, a summary prints the cost per task and the engine's overhead per task
//! over each plain loop.
//!
//! Run: `cargo bench -p axon-engine --bench engine_command`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_engine::command::CommandAgent;
use axon_engine::{Engine, RunOptions};
use criterion::{Criterion, SamplingMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const N: usize = 1_000;
const CONCURRENCY: usize = 8;
const GROUP: &str = "command_1000";
const FUNCTIONS: &[&str] = &["engine", "plain_loop", "plain_piped"];

/// Runs `N` processes through `one`, at most `CONCURRENCY` at a time.
async fn plain<F, Fut>(one: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..N {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is open");
        let fut = one();
        set.spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("a process task does not panic");
    }
}

async fn bare_true() {
    let status = tokio::process::Command::new("true")
        .status()
        .await
        .expect("`true` runs");
    assert!(status.success());
}

async fn piped_true(stdin_doc: Arc<Vec<u8>>) {
    let mut child = tokio::process::Command::new("true")
        .env("AXON_RUN_ID", "r")
        .env("AXON_TASK_ID", "t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("`true` runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&stdin_doc).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
    });
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
    });
    let status = child.wait().await.expect("`true` ends");
    assert!(status.success());
    let _ = writer.await;
    let _ = out.await;
    let _ = err.await;
}

fn command_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let workspace = tempfile::tempdir().expect("a temporary directory");
    let agent = CommandAgent::new(&["true".to_owned()], BTreeMap::new(), Path::new("."))
        .expect("a command");
    let yaml = format!(
        "agents:\n  - id: run-true\n    capabilities: [x]\n    max_concurrent_tasks: {CONCURRENCY}\n"
    );
    let engine = Engine::new(common::pool_of_yaml(&yaml, Arc::new(agent)));
    let workflow = common::independent(N).to_workflow(GROUP, |_| serde_json::Value::Null);
    let opts = RunOptions {
        workspace: workspace.path().to_path_buf(),
        ..RunOptions::default()
    };
    // About the size of the request the command agent writes for these tasks.
    let stdin_doc = Arc::new(vec![b' '; 600]);

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("engine", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let wf = workflow.clone();
                let start = Instant::now();
                let report = rt
                    .block_on(engine.run(wf, opts.clone()))
                    .expect("the run ends");
                total += start.elapsed();
                assert_eq!(report.totals.succeeded as usize, N);
            }
            total
        });
    });
    g.bench_function("plain_loop", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    tokio::spawn(plain(bare_true))
                        .await
                        .expect("the loop does not panic");
                });
            }
            start.elapsed()
        });
    });
    g.bench_function("plain_piped", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let doc = Arc::clone(&stdin_doc);
                rt.block_on(async move {
                    tokio::spawn(plain(move || piped_true(Arc::clone(&doc))))
                        .await
                        .expect("the loop does not panic");
                });
            }
            start.elapsed()
        });
    });
    g.finish();
}

/// Prints the cost per task and the engine's overhead per task over the plain loops.
fn summary(dir: &std::path::Path, since: SystemTime) {
    let mean = |f: &str| common::criterion_mean_ns(dir, GROUP, f, since);
    println!(
        "\nSummary (criterion means of this run, {N} tasks of `true`, {CONCURRENCY} at a time; load average now {}):",
        common::load_average()
    );
    println!(
        "{:<12} {:>10} {:>10} {:>22}",
        "function", "mean ms", "us/task", "engine overhead us/task"
    );
    let engine = mean("engine");
    for f in FUNCTIONS {
        let Some(m) = mean(f) else { continue };
        let overhead = match (engine, *f == "engine") {
            (Some(e), false) => format!("{:.1} ({:.2}x)", (e - m) / 1e3 / N as f64, e / m),
            _ => "-".to_owned(),
        };
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>22}",
            f,
            m / 1e6,
            m / 1e3 / N as f64,
            overhead
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
    command_bench(&mut c, &rt);
    c.final_summary();
    if common::full_run() {
        summary(&dir, since);
    }
}
