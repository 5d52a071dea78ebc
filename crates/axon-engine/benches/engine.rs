//! Dispatcher overhead and makespan of the in-memory engine, each against baselines written
//! here and measured in the same run (see `common/mod.rs` for workloads and baselines).
//!
//! Groups (one per workload), with in-process agents on one agent of 10,000 slots:
//!
//! - `w1_chain_10k`, `w2_independent_10k`, `w3_layered_10k` (no-op agents):
//!   - `engine`: `Engine::run(workflow, RunOptions::default())`, everything included
//!     (validation and planning, dispatch, events, the report), each attempt in a tokio task
//!     of its own (`Execution::Spawned`, the default);
//!   - `engine_inline`: the same with the agent's attempts polled by the dispatcher itself
//!     (`FnAgent::inline`, `Execution::Inline`);
//!   - `validate`: `axon_core::validate` alone, the part of `engine` that is not dispatch;
//!   - `floor`: the hand-written executor (in-degree counters + mpsc ready channel, one
//!     `tokio::spawn` per task);
//!   - `dagrs` (with `--features dagrs-bench`): dagrs 0.9, each node waiting for its
//!     predecessors' packets and broadcasting one (graph construction not timed).
//! - `w4_sleep_200` (layered DAG of 200 tasks sleeping 1–20 ms, seeded): the makespan of
//!   `engine`, `floor`, `back_to_back` (the critical path's sleeps one after the other in one
//!   task: the eager bound, with the same timer rounding), `level_barrier` and `dagrs`.
//!
//! After criterion, a summary prints per-task costs and ratios to `floor` (W1–W3) and
//! makespans and ratios to `back_to_back` (W4).
//!
//! Run: `cargo bench -p axon-engine --bench engine [--features dagrs-bench]`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::Workflow;
use axon_core::validate;
use axon_engine::{Engine, RunOptions, RunReport};
use common::Dag;
use criterion::{Criterion, SamplingMode};

const N: usize = 10_000;
const W4_N: usize = 200;

/// The W1–W3 groups: label and shape.
fn dispatch_workloads() -> Vec<(&'static str, Dag)> {
    vec![
        ("w1_chain_10k", common::chain(N)),
        ("w2_independent_10k", common::independent(N)),
        ("w3_layered_10k", common::layered(N, common::SEED)),
    ]
}

const DISPATCH_FUNCTIONS: &[&str] = &["engine", "engine_inline", "validate", "floor", "dagrs"];
const W4_GROUP: &str = "w4_sleep_200";
const W4_FUNCTIONS: &[&str] = &["engine", "floor", "back_to_back", "level_barrier", "dagrs"];

/// Runs `workflow` on `engine` once and checks that every task succeeded. The report is
/// returned so that the caller drops it after its clock stops.
async fn run_engine(engine: &Engine, workflow: Workflow, n: usize) -> RunReport {
    let report = engine
        .run(workflow, RunOptions::default())
        .await
        .expect("the run ends");
    assert_eq!(report.status.as_str(), "succeeded");
    assert_eq!(report.totals.succeeded as usize, n);
    report
}

/// Times `iters` runs of `workflow` (cloned before each clock starts; reports dropped after
/// it stops).
fn time_engine(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    workflow: &Workflow,
    iters: u64,
) -> Duration {
    let n = workflow.tasks.len();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let wf = workflow.clone();
        let start = Instant::now();
        let report = rt.block_on(run_engine(engine, wf, n));
        total += start.elapsed();
        drop(report);
    }
    total
}

fn dispatch_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let engine = Engine::new(common::pool_of(common::noop_agent()));
    let inline = Engine::new(common::pool_of(common::inline_noop_agent()));
    for (label, dag) in dispatch_workloads() {
        let n = dag.len();
        let workflow = dag.to_workflow(label, |_| serde_json::Value::Null);
        let dag = Arc::new(dag);
        // Both executors run the whole workload before anything is timed.
        rt.block_on(run_engine(&engine, workflow.clone(), n));
        rt.block_on(run_engine(&inline, workflow.clone(), n));
        rt.block_on(common::floor(Arc::clone(&dag), |_| async {}));

        let mut g = c.benchmark_group(label);
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        g.bench_function("engine", |b| {
            b.iter_custom(|iters| time_engine(rt, &engine, &workflow, iters));
        });
        g.bench_function("engine_inline", |b| {
            b.iter_custom(|iters| time_engine(rt, &inline, &workflow, iters));
        });
        g.bench_function("validate", |b| {
            b.iter(|| validate(std::hint::black_box(&workflow), None));
        });
        g.bench_function("floor", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(common::floor(Arc::clone(&dag), |_| async {}));
                }
                start.elapsed()
            });
        });
        #[cfg(feature = "dagrs-bench")]
        g.bench_function("dagrs", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut graph = with_dagrs::graph(&dag, |_| 0);
                    let start = Instant::now();
                    rt.block_on(with_dagrs::run(&mut graph));
                    total += start.elapsed();
                }
                total
            });
        });
        g.finish();
    }
}

fn w4_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dag = Arc::new(common::layered(W4_N, common::SEED));
    let ms = Arc::new(common::durations_ms(W4_N, common::SEED));
    let path = common::critical_path(&dag, &ms);
    let path_ms: Vec<u64> = path.iter().map(|&i| ms[i as usize]).collect();
    let levels = dag.levels();
    let workflow = dag.to_workflow(W4_GROUP, |i| serde_json::json!({ "ms": ms[i] }));
    let engine = Engine::new(common::pool_of(common::sleeper_agent()));
    let sleep =
        |ms: Arc<Vec<u64>>| move |i: u32| tokio::time::sleep(Duration::from_millis(ms[i as usize]));

    let mut g = c.benchmark_group(W4_GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("engine", |b| {
        b.iter_custom(|iters| time_engine(rt, &engine, &workflow, iters));
    });
    g.bench_function("floor", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(common::floor(Arc::clone(&dag), sleep(Arc::clone(&ms))));
            }
            start.elapsed()
        });
    });
    g.bench_function("back_to_back", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let path_ms = path_ms.clone();
                rt.block_on(async move {
                    tokio::spawn(async move {
                        for d in path_ms {
                            tokio::time::sleep(Duration::from_millis(d)).await;
                        }
                    })
                    .await
                    .expect("the sleeper does not panic");
                });
            }
            start.elapsed()
        });
    });
    g.bench_function("level_barrier", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let levels = levels.clone();
                let work = sleep(Arc::clone(&ms));
                rt.block_on(async move {
                    tokio::spawn(async move { common::level_barrier(&levels, work).await })
                        .await
                        .expect("the executor does not panic");
                });
            }
            start.elapsed()
        });
    });
    #[cfg(feature = "dagrs-bench")]
    g.bench_function("dagrs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut graph = with_dagrs::graph(&dag, |i| ms[i]);
                let start = Instant::now();
                rt.block_on(with_dagrs::run(&mut graph));
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

/// The same workloads on dagrs 0.9: every node waits for one packet from each predecessor,
/// sleeps its duration (if any) and broadcasts one packet to its successors.
#[cfg(feature = "dagrs-bench")]
mod with_dagrs {
    use std::sync::Arc;
    use std::time::Duration;

    use dagrs::async_trait::async_trait;
    use dagrs::{
        Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeTable, OutChannels,
        Output,
    };

    use crate::common::Dag;

    struct Step(u64);

    #[async_trait]
    impl Action for Step {
        async fn run(
            &self,
            in_channels: &mut InChannels,
            out_channels: &mut OutChannels,
            _env: Arc<EnvVar>,
        ) -> Output {
            in_channels.map(|_| ()).await;
            if self.0 > 0 {
                tokio::time::sleep(Duration::from_millis(self.0)).await;
            }
            out_channels.broadcast(Content::new(())).await;
            Output::empty()
        }
    }

    /// A dagrs graph of `dag`, node `i` sleeping `ms(i)` milliseconds.
    pub fn graph(dag: &Dag, ms: impl Fn(usize) -> u64) -> Graph {
        let mut table = NodeTable::default();
        let mut graph = Graph::new();
        let mut ids = Vec::with_capacity(dag.len());
        for i in 0..dag.len() {
            let node = DefaultNode::with_action(format!("t{i}"), Step(ms(i)), &mut table);
            ids.push(node.id());
            graph.add_node(node).expect("a new node");
        }
        for (i, succ) in dag.dependents.iter().enumerate() {
            if !succ.is_empty() {
                graph
                    .add_edge(
                        ids[i],
                        succ.iter().map(|&s| ids[s as usize]).collect::<Vec<_>>(),
                    )
                    .expect("known nodes");
            }
        }
        graph.set_env(EnvVar::new(table));
        graph
    }

    /// Runs `graph` to the end.
    pub async fn run(graph: &mut Graph) {
        graph.async_start().await.expect("the dagrs run succeeds");
    }
}

/// Prints the means of this run: per task and as ratios to `floor` for W1–W3, makespans and
/// ratios to `back_to_back` for W4.
fn summary(dir: &std::path::Path, since: SystemTime) {
    let mean = |group: &str, f: &str| common::criterion_mean_ns(dir, group, f, since);
    println!(
        "\nSummary (criterion means of this run; load average now {}):",
        common::load_average()
    );
    println!(
        "{:<20} {:<14} {:>10} {:>10} {:>9}",
        "workload", "function", "mean ms", "us/task", "/ floor"
    );
    for (label, _) in dispatch_workloads() {
        let floor = mean(label, "floor");
        for f in DISPATCH_FUNCTIONS {
            let Some(m) = mean(label, f) else { continue };
            let ratio = floor.map_or_else(|| "-".to_owned(), |b| format!("{:.2}x", m / b));
            println!(
                "{:<20} {:<14} {:>10.2} {:>10.3} {:>9}",
                label,
                f,
                m / 1e6,
                m / 1e3 / N as f64,
                ratio
            );
        }
        if let (Some(e), Some(v), Some(fl)) =
            (mean(label, "engine"), mean(label, "validate"), floor)
        {
            println!(
                "{:<20} {:<14} {:>10.2} {:>10.3} {:>9}",
                label,
                "engine-valid.",
                (e - v) / 1e6,
                (e - v) / 1e3 / N as f64,
                format!("{:.2}x", (e - v) / fl)
            );
        }
    }
    let dag = common::layered(W4_N, common::SEED);
    let ms = common::durations_ms(W4_N, common::SEED);
    let path = common::critical_path(&dag, &ms);
    let sum: u64 = path.iter().map(|&i| ms[i as usize]).sum();
    println!(
        "\n{W4_GROUP}: critical path of {} tasks, {sum} ms of sleeps; {} levels",
        path.len(),
        dag.levels().len()
    );
    println!(
        "{:<14} {:>12} {:>16}",
        "function", "makespan ms", "/ back_to_back"
    );
    let base = mean(W4_GROUP, "back_to_back");
    for f in W4_FUNCTIONS {
        let Some(m) = mean(W4_GROUP, f) else { continue };
        let ratio = base.map_or_else(|| "-".to_owned(), |b| format!("{:.3}x", m / b));
        println!("{:<14} {:>12.2} {:>16}", f, m / 1e6, ratio);
    }
}

fn main() {
    let since = SystemTime::now();
    let dir = common::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let rt = common::runtime();
    dispatch_benches(&mut c, &rt);
    w4_bench(&mut c, &rt);
    c.final_summary();
    if common::full_run() {
        summary(&dir, since);
    }
}
