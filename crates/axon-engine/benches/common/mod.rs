//! Workloads, baselines and reporting shared by the axon-engine benches.
//!
//! Everything is deterministic: a workload is a pure function of its shape, its size and a
//! fixed seed.
//!
//! - [`Dag`]: a DAG with integer task numbers (task `i` has id `t{i}`), rendered as an Axon
//!   [`Workflow`] through the builder DSL: custom tasks needing capability `x`, estimated at
//!   one second, with a workflow timeout long enough for any of them.
//! - [`chain`], [`independent`], [`layered`]: W1, W2 and W3's shapes.
//! - [`floor`]: the hand-written executor the issue asks for as the floor: in-degree
//!   counters and an mpsc ready channel; each finished task decrements its dependents'
//!   counters and sends the newly ready ones; one `tokio::spawn` per task.
//! - [`level_barrier`]: runs each level's tasks concurrently, waits for all, then the next.
//! - [`critical_path`]: the longest path by given durations.
//! - [`noop_pool`], [`sleeper_pool`]: one in-process agent with `max_concurrent_tasks: 10000`
//!   (the most the agents file allows), so the pool is never the limit.
//! - Criterion plumbing: where results go, reading a measured mean back for the summaries.

// Each bench target uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use axon_core::Workflow;
use axon_core::agents::parse_agents;
use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::format::Format;
use axon_engine::agent::{Agent, AttemptOutput, FnAgent};
use axon_engine::pool::{AgentPool, PoolAgent};
use tokio::sync::mpsc;

/// The seed of every generated workload.
pub const SEED: u64 = 0x00A7_0E61_2E00_0001;

/// Agents file of the benches: one agent, as many slots as the format allows, no resource
/// limit.
pub const AGENTS: &str =
    "agents:\n  - id: bench\n    capabilities: [x]\n    max_concurrent_tasks: 10000\n";

/// SplitMix64: tiny, fast and good enough to draw dependencies and durations.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`), by multiply-shift.
    pub fn below(&mut self, bound: u32) -> u32 {
        ((u64::from(self.next_u64() as u32) * u64::from(bound)) >> 32) as u32
    }
}

/// A DAG with integer task numbers.
pub struct Dag {
    /// Prerequisites of each task.
    pub deps: Vec<Vec<u32>>,
    /// Dependents of each task (the reverse edges).
    pub dependents: Vec<Vec<u32>>,
}

impl Dag {
    fn new(deps: Vec<Vec<u32>>) -> Self {
        let mut dependents = vec![Vec::new(); deps.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d as usize].push(i as u32);
            }
        }
        Self { deps, dependents }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.deps.iter().map(Vec::len).sum()
    }

    /// The workflow of this DAG; `input(i)` is task `i`'s input JSON.
    pub fn to_workflow(&self, name: &str, input: impl Fn(usize) -> serde_json::Value) -> Workflow {
        let mut b = WorkflowBuilder::new(name).timeout(Duration::from_secs(300 * 24 * 3600));
        for (i, ds) in self.deps.iter().enumerate() {
            b = b.task(
                TaskBuilder::custom(format!("t{i}"), format!("Task {i}"), "bench")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(1))
                    .input(input(i))
                    .depends_on(ds.iter().map(|d| format!("t{d}"))),
            );
        }
        b.build().expect("generated workflows are valid")
    }

    /// Level of every task: 0 for roots, else 1 + the highest level of its prerequisites.
    pub fn levels(&self) -> Vec<Vec<u32>> {
        // Prerequisites always have smaller numbers in these workloads.
        let mut level = vec![0usize; self.len()];
        let mut levels: Vec<Vec<u32>> = Vec::new();
        for (i, ds) in self.deps.iter().enumerate() {
            let l = ds.iter().map(|&d| level[d as usize] + 1).max().unwrap_or(0);
            level[i] = l;
            if levels.len() <= l {
                levels.resize_with(l + 1, Vec::new);
            }
            levels[l].push(i as u32);
        }
        levels
    }
}

/// W1: `t0 <- t1 <- ... <- t(n-1)`.
pub fn chain(n: usize) -> Dag {
    Dag::new(
        (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i as u32 - 1] })
            .collect(),
    )
}

/// W2: `n` tasks, no edge.
pub fn independent(n: usize) -> Dag {
    Dag::new(vec![Vec::new(); n])
}

/// W3: layers of about `sqrt(n)` tasks; every task after the first layer depends on exactly 3
/// distinct earlier tasks: one of the layer just before it (so the depth is the number of
/// layers) and two drawn from everything before its layer.
pub fn layered(n: usize, seed: u64) -> Dag {
    let mut rng = SplitMix64::new(seed ^ n as u64);
    let width = ((n as f64).sqrt().round() as usize).max(1);
    let deps = (0..n)
        .map(|i| {
            let layer = i / width;
            if layer == 0 {
                return Vec::new();
            }
            let layer_start = (layer * width) as u32;
            let prev_start = layer_start - width as u32;
            let mut ds = vec![prev_start + rng.below(width as u32)];
            while ds.len() < 3.min(layer_start as usize) {
                let p = rng.below(layer_start);
                if !ds.contains(&p) {
                    ds.push(p);
                }
            }
            ds
        })
        .collect();
    Dag::new(deps)
}

/// W4's durations: `n` values of 1 to 20 ms.
pub fn durations_ms(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(seed ^ 0xD0_0000 ^ n as u64);
    (0..n).map(|_| 1 + u64::from(rng.below(20))).collect()
}

/// The longest path of `dag` weighted by `weight` (the tasks on it, first to last).
pub fn critical_path(dag: &Dag, weight: &[u64]) -> Vec<u32> {
    let n = dag.len();
    let mut finish = vec![0u64; n];
    let mut via: Vec<Option<u32>> = vec![None; n];
    // Prerequisites always have smaller numbers in these workloads.
    for i in 0..n {
        let best = dag.deps[i]
            .iter()
            .copied()
            .max_by_key(|&d| finish[d as usize]);
        finish[i] = best.map_or(0, |d| finish[d as usize]) + weight[i];
        via[i] = best;
    }
    let Some(mut at) = (0..n as u32).max_by_key(|&i| finish[i as usize]) else {
        return Vec::new();
    };
    let mut path = vec![at];
    while let Some(p) = via[at as usize] {
        path.push(p);
        at = p;
    }
    path.reverse();
    path
}

/// The floor: runs `dag` with one `tokio::spawn` per task; the coordinator (itself spawned
/// on a worker, like the engine's dispatcher) receives ready task numbers on an mpsc channel
/// and spawns them; a finished task decrements its dependents' in-degree counters and sends
/// those that reach zero. `work(i)` is task `i`'s body.
pub async fn floor<F, Fut>(dag: Arc<Dag>, work: F)
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let n = dag.len();
    if n == 0 {
        return;
    }
    let remaining: Arc<Vec<AtomicU32>> = Arc::new(
        dag.deps
            .iter()
            .map(|d| AtomicU32::new(d.len() as u32))
            .collect(),
    );
    let done = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    for (i, d) in dag.deps.iter().enumerate() {
        if d.is_empty() {
            tx.send(i as u32).expect("the receiver is alive");
        }
    }
    let coordinator = tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            if i == u32::MAX {
                break;
            }
            let (dag, remaining, done, work, tx) = (
                Arc::clone(&dag),
                Arc::clone(&remaining),
                Arc::clone(&done),
                Arc::clone(&work),
                tx.clone(),
            );
            tokio::spawn(async move {
                work(i).await;
                for &d in &dag.dependents[i as usize] {
                    if remaining[d as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                        let _ = tx.send(d);
                    }
                }
                if done.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    let _ = tx.send(u32::MAX);
                }
            });
        }
    });
    coordinator.await.expect("the coordinator does not panic");
}

/// A level-barrier executor: every task of a level runs concurrently (one `tokio::spawn`
/// each); the next level starts when all of them are done.
pub async fn level_barrier<F, Fut>(levels: &[Vec<u32>], work: F)
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for level in levels {
        let mut set = tokio::task::JoinSet::new();
        for &i in level {
            set.spawn(work(i));
        }
        while let Some(r) = set.join_next().await {
            r.expect("a task does not panic");
        }
    }
}

/// An in-process agent that returns at once with no output.
pub fn noop_agent() -> Arc<dyn Agent> {
    Arc::new(FnAgent::new(|_, _, _| async {
        Ok(AttemptOutput::default())
    }))
}

/// The same no-op agent, its attempts polled by the dispatcher ([`FnAgent::inline`]).
pub fn inline_noop_agent() -> Arc<dyn Agent> {
    Arc::new(FnAgent::new(|_, _, _| async { Ok(AttemptOutput::default()) }).inline())
}

/// An in-process agent that sleeps for its task's `input.ms` milliseconds.
pub fn sleeper_agent() -> Arc<dyn Agent> {
    Arc::new(FnAgent::new(|req, _, _| async move {
        let ms = req.task.input.get("ms").and_then(serde_json::Value::as_u64);
        tokio::time::sleep(Duration::from_millis(ms.unwrap_or(0))).await;
        Ok(AttemptOutput::default())
    }))
}

/// A pool of one agent (see [`AGENTS`]) run by `agent`.
pub fn pool_of(agent: Arc<dyn Agent>) -> AgentPool {
    pool_of_yaml(AGENTS, agent)
}

/// A pool of the single agent declared in `yaml`, run by `agent`.
pub fn pool_of_yaml(yaml: &str, agent: Arc<dyn Agent>) -> AgentPool {
    let parsed = parse_agents(yaml, Format::Yaml).expect("the agents file parses");
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    AgentPool::new(
        parsed
            .agents
            .into_iter()
            .map(|spec| PoolAgent {
                spec,
                agent: Arc::clone(&agent),
            })
            .collect(),
    )
}

/// The multi-thread runtime every bench runs on (one worker per core). The engine spawns its
/// dispatcher on it, so the dispatcher runs on a worker, not on `block_on`'s thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Whether the bench binary runs as `cargo bench` runs it (`--bench`), rather than once as a
/// smoke test under `cargo test --benches`.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else the target directory `cargo metadata` names, else `target/criterion` (criterion's own
/// order). The benches pass it to criterion explicitly so that their summaries read the same
/// files.
pub fn criterion_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(PathBuf::from(meta.get("target_directory")?.as_str()?))
    });
    from_metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// The mean time (ns) criterion measured for `group/function`, if it was measured after
/// `since` (so a summary only uses results of the current run).
pub fn criterion_mean_ns(
    dir: &std::path::Path,
    group: &str,
    function: &str,
    since: std::time::SystemTime,
) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("mean")?.get("point_estimate")?.as_f64()
}

/// The 1, 5 and 15 minute load averages: on a 2-core machine any other busy process skews
/// the times.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
