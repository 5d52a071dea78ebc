//! Workloads and baselines shared by the axon-core benches.
//!
//! Everything here is deterministic: a workload is a pure function of its shape, its size and
//! a fixed seed, so two runs (or two machines) measure the same graphs and files.
//!
//! - [`Graph`]: a DAG with integer task numbers, from which the same workflow is rendered as a
//!   [`Workflow`] (through the builder DSL), as YAML text and as JSON text.
//! - [`layered`]: tasks in layers of about `sqrt(n)` tasks; every task after the first layer
//!   depends on 1 to 5 (mean 3) distinct tasks of earlier layers: one of the layer just
//!   before (so the depth is the number of layers) and the others anywhere before it.
//! - [`chain`]: `t0 <- t1 <- ... <- t(n-1)`, the deepest graph there is.
//! - [`csr_plan_int`], [`csr_plan_interned`]: the baseline the issue asks for, a plain
//!   Vec/CSR index + Kahn + longest path, with integer ids or with string ids interned
//!   through a `HashMap` with a chosen hasher.

// Each bench target uses a different part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::time::Duration;

use axon_core::Workflow;
use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::Capability;

/// The seed of every generated workload.
pub const SEED: u64 = 0x00A7_0C0E_BE4C_4001;

/// The workflow timeout of every workload: the longest the validator accepts, so that the
/// deep workloads stay valid (a 1M chain of 10 s tasks is about 116 days).
pub const TIMEOUT_DAYS: u64 = 365;

/// SplitMix64: tiny, fast and good enough to draw dependencies.
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

    /// A number in `0..bound` (`bound > 0`), by multiply-shift (bias is negligible here).
    pub fn below(&mut self, bound: u32) -> u32 {
        ((u64::from(self.next_u64() as u32) * u64::from(bound)) >> 32) as u32
    }
}

/// A DAG with integer task numbers; task `i` has id `t{i}`.
pub struct Graph {
    /// A short name of the workload, e.g. `layered_1m`.
    pub label: String,
    /// Start of each task's prerequisites in `deps` (`n + 1` entries).
    pub dep_start: Vec<u32>,
    /// The prerequisites of all tasks, task after task, in `depends_on` order.
    pub deps: Vec<u32>,
    /// Estimated duration of each task, in seconds.
    pub estimate_secs: Vec<u32>,
}

impl Graph {
    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.estimate_secs.len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.deps.len()
    }

    /// The prerequisites of task `i`.
    pub fn prerequisites(&self, i: usize) -> &[u32] {
        &self.deps[self.dep_start[i] as usize..self.dep_start[i + 1] as usize]
    }

    /// The per-task prerequisite lists, the integer twin of `Task::depends_on`.
    pub fn dep_lists(&self) -> Vec<Vec<u32>> {
        (0..self.len())
            .map(|i| self.prerequisites(i).to_vec())
            .collect()
    }

    /// Estimates in milliseconds, as the planner weighs tasks.
    pub fn weights_ms(&self) -> Vec<u64> {
        self.estimate_secs
            .iter()
            .map(|&s| u64::from(s) * 1000)
            .collect()
    }

    /// The workflow, built with the builder DSL (not validated).
    pub fn to_workflow(&self) -> Workflow {
        let mut b = WorkflowBuilder::new(self.label.as_str())
            .timeout(Duration::from_secs(TIMEOUT_DAYS * 24 * 3600));
        let mut dep_ids: Vec<String> = Vec::new();
        for i in 0..self.len() {
            let id = format!("t{i}");
            dep_ids.clear();
            dep_ids.extend(self.prerequisites(i).iter().map(|p| format!("t{p}")));
            b = b.task(
                TaskBuilder::development(id.clone(), id, "rust")
                    .capability(Capability::CodeGeneration)
                    .estimated_duration(Duration::from_secs(u64::from(self.estimate_secs[i])))
                    .depends_on(dep_ids.drain(..)),
            );
        }
        b.build_unchecked()
    }

    /// The same workflow as a YAML file (block style, as people write them).
    pub fn to_yaml(&self) -> String {
        let mut s = String::with_capacity(self.len() * 160 + 128);
        let _ = write!(
            s,
            "name: {}\ntimeout: {TIMEOUT_DAYS}days\ntasks:\n",
            self.label
        );
        for i in 0..self.len() {
            let _ = write!(
                s,
                "  t{i}:\n    type: development\n    language: rust\n    capabilities: [code_generation]\n    estimated_duration: {}\n",
                duration_text(self.estimate_secs[i])
            );
            let deps = self.prerequisites(i);
            if !deps.is_empty() {
                s.push_str("    depends_on: [");
                for (k, p) in deps.iter().enumerate() {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(s, "t{p}");
                }
                s.push_str("]\n");
            }
        }
        s
    }

    /// The same workflow as a JSON file (one task per line).
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(self.len() * 160 + 128);
        let _ = write!(
            s,
            "{{\n  \"name\": \"{}\",\n  \"timeout\": \"{TIMEOUT_DAYS}days\",\n  \"tasks\": {{\n",
            self.label
        );
        for i in 0..self.len() {
            let _ = write!(
                s,
                "    \"t{i}\": {{\"type\": \"development\", \"language\": \"rust\", \"capabilities\": [\"code_generation\"], \"estimated_duration\": \"{}\"",
                duration_text(self.estimate_secs[i])
            );
            let deps = self.prerequisites(i);
            if !deps.is_empty() {
                s.push_str(", \"depends_on\": [");
                for (k, p) in deps.iter().enumerate() {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(s, "\"t{p}\"");
                }
                s.push(']');
            }
            s.push_str(if i + 1 < self.len() { "},\n" } else { "}\n" });
        }
        s.push_str("  }\n}\n");
        s
    }
}

fn duration_text(secs: u32) -> String {
    if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A short label for a size: `10k`, `1m`.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// A layered random DAG of `n` tasks (see the module docs), estimates of 1 to 120 minutes.
pub fn layered(n: usize) -> Graph {
    assert!(u32::try_from(n).is_ok());
    let mut rng = SplitMix64::new(SEED ^ n as u64);
    let width = ((n as f64).sqrt().round() as usize).max(1);
    let mut dep_start = Vec::with_capacity(n + 1);
    let mut deps: Vec<u32> = Vec::with_capacity(3 * n);
    let mut estimate_secs = Vec::with_capacity(n);
    dep_start.push(0u32);
    for i in 0..n {
        let layer = i / width;
        if layer > 0 {
            let layer_start = (layer * width) as u32;
            let prev_start = layer_start - width as u32;
            let k = 1 + rng.below(5) as usize;
            let first = deps.len();
            deps.push(prev_start + rng.below(width as u32));
            while deps.len() - first < k {
                let p = rng.below(layer_start);
                if !deps[first..].contains(&p) {
                    deps.push(p);
                }
            }
        }
        dep_start.push(deps.len() as u32);
        estimate_secs.push(60 * (1 + rng.below(120)));
    }
    Graph {
        label: format!("layered_{}", size_label(n)),
        dep_start,
        deps,
        estimate_secs,
    }
}

/// A chain of `n` tasks of 10 seconds each: task `i` depends on task `i - 1`.
pub fn chain(n: usize) -> Graph {
    assert!(u32::try_from(n).is_ok());
    // Task 0 has no prerequisite; task i > 0 has task i - 1, at `deps[i - 1]`.
    let dep_start: Vec<u32> = std::iter::once(0).chain(0..n as u32).collect();
    let deps: Vec<u32> = (0..n.saturating_sub(1) as u32).collect();
    Graph {
        label: format!("chain_{}", size_label(n)),
        dep_start,
        deps,
        estimate_secs: vec![10; n],
    }
}

/// Generates a workload by its label (`layered_10k`, `layered_100k`, `layered_1m`,
/// `chain_1m`, ...).
pub fn by_label(label: &str) -> Option<Graph> {
    let (shape, _) = label.split_once('_')?;
    let n = label_size(label)?;
    match shape {
        "layered" => Some(layered(n)),
        "chain" => Some(chain(n)),
        _ => None,
    }
}

/// The number of tasks a workload label names (`layered_10k` has 10 000).
pub fn label_size(label: &str) -> Option<usize> {
    let (_, size) = label.split_once('_')?;
    if let Some(m) = size.strip_suffix('m') {
        Some(m.parse::<usize>().ok()? * 1_000_000)
    } else if let Some(k) = size.strip_suffix('k') {
        Some(k.parse::<usize>().ok()? * 1000)
    } else {
        size.parse().ok()
    }
}

/// What a baseline computes, enough to check it against the planner.
pub struct BaselinePlan {
    /// A topological order (Kahn, FIFO).
    pub order: Vec<u32>,
    /// Earliest start of each task, in ms.
    pub earliest_ms: Vec<u64>,
    /// The makespan with unlimited agents, in ms.
    pub makespan_ms: u64,
}

/// The plain baseline: CSR index from integer edge lists, Kahn, longest path.
///
/// Returns `None` on an out-of-range prerequisite or a cycle.
pub fn csr_plan_int(deps: &[Vec<u32>], weight_ms: &[u64]) -> Option<BaselinePlan> {
    let n = deps.len();
    let mut prereq_start: Vec<u32> = Vec::with_capacity(n + 1);
    let mut prereqs: Vec<u32> = Vec::with_capacity(deps.iter().map(Vec::len).sum());
    prereq_start.push(0);
    for list in deps {
        for &p in list {
            if p as usize >= n {
                return None;
            }
            prereqs.push(p);
        }
        prereq_start.push(prereqs.len() as u32);
    }
    finish_csr(prereq_start, prereqs, weight_ms)
}

/// The same baseline on the workflow's string ids, interned through a `HashMap<&str, u32>`
/// with hasher `S` (std's SipHash: `RandomState`; rustc-hash: `FxBuildHasher`).
pub fn csr_plan_interned<S: BuildHasher + Default>(workflow: &Workflow) -> Option<BaselinePlan> {
    let n = workflow.tasks.len();
    let mut ids: std::collections::HashMap<&str, u32, S> =
        std::collections::HashMap::with_capacity_and_hasher(n, S::default());
    for (i, t) in workflow.tasks.iter().enumerate() {
        ids.entry(t.id.as_str()).or_insert(i as u32);
    }
    let mut prereq_start: Vec<u32> = Vec::with_capacity(n + 1);
    let mut prereqs: Vec<u32> =
        Vec::with_capacity(workflow.tasks.iter().map(|t| t.depends_on.len()).sum());
    prereq_start.push(0);
    for t in &workflow.tasks {
        for d in &t.depends_on {
            prereqs.push(*ids.get(d.as_str())?);
        }
        prereq_start.push(prereqs.len() as u32);
    }
    drop(ids);
    let weight_ms: Vec<u64> = workflow
        .tasks
        .iter()
        .map(|t| t.requirements.estimated_duration.as_millis() as u64)
        .collect();
    finish_csr(prereq_start, prereqs, &weight_ms)
}

/// Transpose (counting sort), Kahn (FIFO) and the longest path forward pass.
fn finish_csr(
    prereq_start: Vec<u32>,
    prereqs: Vec<u32>,
    weight_ms: &[u64],
) -> Option<BaselinePlan> {
    let n = prereq_start.len() - 1;
    let mut dependent_start = vec![0u32; n + 1];
    for &p in &prereqs {
        dependent_start[p as usize + 1] += 1;
    }
    for i in 0..n {
        dependent_start[i + 1] += dependent_start[i];
    }
    let mut fill: Vec<u32> = dependent_start[..n].to_vec();
    let mut dependents = vec![0u32; prereqs.len()];
    for v in 0..n {
        for &p in &prereqs[prereq_start[v] as usize..prereq_start[v + 1] as usize] {
            let slot = &mut fill[p as usize];
            dependents[*slot as usize] = v as u32;
            *slot += 1;
        }
    }
    drop(fill);

    let mut left: Vec<u32> = (0..n)
        .map(|v| prereq_start[v + 1] - prereq_start[v])
        .collect();
    let mut queue: VecDeque<u32> = (0..n as u32).filter(|&v| left[v as usize] == 0).collect();
    let mut order: Vec<u32> = Vec::with_capacity(n);
    while let Some(v) = queue.pop_front() {
        order.push(v);
        for &d in &dependents
            [dependent_start[v as usize] as usize..dependent_start[v as usize + 1] as usize]
        {
            let l = &mut left[d as usize];
            *l -= 1;
            if *l == 0 {
                queue.push_back(d);
            }
        }
    }
    if order.len() != n {
        return None;
    }

    let mut earliest_ms = vec![0u64; n];
    let mut makespan_ms = 0u64;
    for &v in &order {
        let v = v as usize;
        let es = prereqs[prereq_start[v] as usize..prereq_start[v + 1] as usize]
            .iter()
            .map(|&p| earliest_ms[p as usize] + weight_ms[p as usize])
            .max()
            .unwrap_or(0);
        earliest_ms[v] = es;
        makespan_ms = makespan_ms.max(es + weight_ms[v]);
    }
    Some(BaselinePlan {
        order,
        earliest_ms,
        makespan_ms,
    })
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

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minute load averages), to show in
/// reports: on a 2-core machine, any other busy process skews the times.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
