//! Random DAGs and a reference model of them, written independently of the planner.
//!
//! Edges only go from a lower task number to a higher one, so every generated graph is
//! acyclic and the task numbers themselves are a topological order the reference model can
//! rely on.

use std::time::Duration;

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{Priority, Workflow};
use axon_core::{DagIndex, Plan};
use proptest::prelude::*;
use proptest::sample::select;

/// A generated DAG: task `i` has id `ids[i]` and waits for the tasks `prereqs[i]`.
#[derive(Debug, Clone)]
pub struct Dag {
    pub ids: Vec<String>,
    /// Sorted, without repeats, every entry lower than the task's own number.
    pub prereqs: Vec<Vec<usize>>,
    pub estimates: Vec<Duration>,
    pub priorities: Vec<Option<Priority>>,
    pub workflow_priority: Priority,
}

/// Estimates from zero and sub-millisecond values (planned as 0 ms) to hours, with many
/// repeated values so ties between paths are common.
fn estimate() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..3_000_000).prop_map(Duration::from_nanos),
        (0u64..5).prop_map(Duration::from_millis),
        (0u64..4).prop_map(|k| Duration::from_secs(600 * k)),
        (1u64..240).prop_map(|m| Duration::from_secs(60 * m)),
    ]
}

/// DAGs of `0..=max_tasks` tasks, from edgeless to dense.
pub fn dag(max_tasks: usize) -> impl Strategy<Value = Dag> {
    dag_sized(0, max_tasks)
}

/// DAGs of `min_tasks..=max_tasks` tasks: edgeless, sparse, dense, or mostly one long
/// chain (task `i` waits for task `i - 1`) with a few shortcuts, which has long paths, and
/// long cycles once a back edge is added.
pub fn dag_sized(min_tasks: usize, max_tasks: usize) -> impl Strategy<Value = Dag> {
    let uniform = |d: f64| (d, d);
    let density = prop_oneof![
        Just((0.0, 0.0)),
        (0.0..0.15).prop_map(uniform),
        (0.0..0.6).prop_map(uniform),
        (0.97..1.0, 0.0..0.03),
    ];
    dag_with_density(min_tasks, max_tasks, density)
}

/// DAGs where an edge from task `i - 1` to task `i` is present with probability `near`, and
/// any other edge with probability `far`, the pair drawn from `density`.
fn dag_with_density(
    min_tasks: usize,
    max_tasks: usize,
    density: impl Strategy<Value = (f64, f64)>,
) -> impl Strategy<Value = Dag> {
    (min_tasks..=max_tasks, density).prop_flat_map(|(n, (near, far))| {
        let weighted =
            |d: usize, p: usize| prop::bool::weighted(if p + 1 == d { near } else { far });
        let edges: Vec<_> = (0..n)
            .flat_map(|d| (0..d).map(move |p| weighted(d, p)))
            .collect();
        (
            edges,
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            prop::collection::vec(estimate(), n),
            prop::collection::vec(prop::option::of(select(Priority::ALL)), n),
            select(Priority::ALL),
        )
            .prop_map(
                move |(edges, names, estimates, priorities, workflow_priority)| {
                    let mut prereqs = vec![Vec::new(); n];
                    let mut bits = edges.into_iter();
                    for (dependent, list) in prereqs.iter_mut().enumerate() {
                        for p in 0..dependent {
                            if bits.next().unwrap_or(false) {
                                list.push(p);
                            }
                        }
                    }
                    Dag {
                        // Ids are unrelated to task numbers, so tie-breaking by id is exercised.
                        ids: names.into_iter().map(|k| format!("t{k}")).collect(),
                        prereqs,
                        estimates,
                        priorities,
                        workflow_priority,
                    }
                },
            )
    })
}

impl Dag {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Every edge as (prerequisite, dependent).
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.prereqs
            .iter()
            .enumerate()
            .flat_map(|(d, ps)| ps.iter().map(move |&p| (p, d)))
    }

    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.len()];
        for (p, d) in self.edges() {
            out[p].push(d);
        }
        out
    }

    /// Estimates in whole milliseconds, as the planner counts them.
    pub fn weights_ms(&self) -> Vec<u64> {
        self.estimates
            .iter()
            .map(|d| u64::try_from(d.as_millis()).expect("generated estimates are small"))
            .collect()
    }

    pub fn priority_rank(&self, i: usize) -> u8 {
        self.priorities[i].unwrap_or(self.workflow_priority).rank()
    }

    fn task(&self, i: usize, deps: &[usize]) -> TaskBuilder {
        let mut t = TaskBuilder::custom(self.ids[i].as_str(), format!("task {i}"), "h")
            .capability("x")
            .estimated_duration(self.estimates[i])
            .depends_on(deps.iter().map(|&p| self.ids[p].as_str()));
        if let Some(p) = self.priorities[i] {
            t = t.priority(p);
        }
        t
    }

    /// The workflow with task `i` at index `i`.
    pub fn workflow(&self) -> Workflow {
        let all: Vec<usize> = (0..self.len()).collect();
        self.workflow_in_order(&all)
    }

    /// The workflow with the tasks inserted in the order `insertion` (a permutation of the
    /// task numbers), each task's `depends_on` listed in that order too.
    pub fn workflow_in_order(&self, insertion: &[usize]) -> Workflow {
        let mut rank = vec![0; self.len()];
        for (pos, &i) in insertion.iter().enumerate() {
            rank[i] = pos;
        }
        let mut b = WorkflowBuilder::new("prop").priority(self.workflow_priority);
        for &i in insertion {
            let mut deps = self.prereqs[i].clone();
            deps.sort_by_key(|&p| rank[p]);
            b = b.task(self.task(i, &deps));
        }
        b.build_unchecked()
    }

    /// Builds the index and plan of [`Dag::workflow`], which must succeed.
    pub fn plan(&self) -> (Workflow, DagIndex, Plan) {
        let w = self.workflow();
        let (index, problems) = DagIndex::build(&w);
        assert!(problems.is_empty(), "{problems:?}");
        let plan = Plan::new(&w, &index).expect("a generated DAG has no cycle");
        (w, index, plan)
    }
}

/// The schedule of a DAG with unlimited agents, computed from the definitions in index
/// order (a topological order by construction).
#[derive(Debug)]
pub struct Reference {
    pub level: Vec<u32>,
    pub earliest_start: Vec<u64>,
    /// Longest path from a task's start to the end, its own estimate included.
    pub remaining: Vec<u64>,
    pub makespan: u64,
}

impl Reference {
    pub fn of(dag: &Dag) -> Self {
        let n = dag.len();
        let w = dag.weights_ms();
        let dependents = dag.dependents();
        let mut level = vec![0u32; n];
        let mut earliest_start = vec![0u64; n];
        for i in 0..n {
            for &p in &dag.prereqs[i] {
                level[i] = level[i].max(level[p] + 1);
                earliest_start[i] = earliest_start[i].max(earliest_start[p] + w[p]);
            }
        }
        let mut remaining = vec![0u64; n];
        for i in (0..n).rev() {
            let tail = dependents[i].iter().map(|&d| remaining[d]).max();
            remaining[i] = w[i] + tail.unwrap_or(0);
        }
        let makespan = (0..n).map(|i| earliest_start[i] + w[i]).max().unwrap_or(0);
        Self {
            level,
            earliest_start,
            remaining,
            makespan,
        }
    }

    pub fn latest_start(&self, i: usize) -> u64 {
        self.makespan - self.remaining[i]
    }

    pub fn is_critical(&self, i: usize) -> bool {
        self.earliest_start[i] + self.remaining[i] == self.makespan
    }
}

/// Every path from a task without prerequisites to a task without dependents, by
/// depth-first enumeration (exponential: small graphs only).
pub fn all_maximal_paths(dag: &Dag) -> Vec<Vec<usize>> {
    let dependents = dag.dependents();
    let mut out = Vec::new();
    let mut stack: Vec<Vec<usize>> = (0..dag.len())
        .filter(|&i| dag.prereqs[i].is_empty())
        .map(|i| vec![i])
        .collect();
    while let Some(path) = stack.pop() {
        let last = *path.last().expect("paths are never empty");
        if dependents[last].is_empty() {
            out.push(path);
            continue;
        }
        for &d in &dependents[last] {
            let mut longer = path.clone();
            longer.push(d);
            stack.push(longer);
        }
    }
    out
}
