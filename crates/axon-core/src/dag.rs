//! The DAG index: tasks as dense integers, edges in compressed sparse rows, built once.
//!
//! Every graph algorithm of Axon (cycle detection, ordering, levels, critical path, the
//! engine's ready counters) runs on this index in O(V+E) with loops, never recursion, so a
//! chain of a million tasks is as safe as a chain of three. Task number `i` is
//! `workflow.tasks[i]`.

use rustc_hash::FxHashMap;

use crate::model::Workflow;

/// A problem with the edges of a workflow, found while building the index. The offending
/// edge is left out of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphProblem {
    /// Task `index` has the same id as the earlier task `first`; dependencies on that id
    /// resolve to `first`.
    DuplicateTaskId {
        /// The later task.
        index: usize,
        /// The first task with that id.
        first: usize,
    },
    /// Entry `position` of task `task`'s `depends_on` names no task.
    UnknownDependency {
        /// The task.
        task: usize,
        /// Position in its `depends_on`.
        position: usize,
        /// The task whose id is closest, if one is close.
        suggestion: Option<usize>,
    },
    /// Task `task` lists itself in `depends_on`.
    SelfDependency {
        /// The task.
        task: usize,
        /// Position in its `depends_on`.
        position: usize,
    },
    /// Entry `position` of task `task`'s `depends_on` repeats an earlier one.
    DuplicateDependency {
        /// The task.
        task: usize,
        /// Position in its `depends_on`.
        position: usize,
    },
}

/// The dependency graph of a workflow in compressed sparse rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagIndex {
    prereq_start: Vec<u32>,
    prereqs: Vec<u32>,
    dependent_start: Vec<u32>,
    dependents: Vec<u32>,
}

/// Unknown dependencies get a "nearest id" suggestion by a linear scan of the ids; on huge
/// workflows with many typos that would be quadratic, so only the first ones get one.
const MAX_SUGGESTIONS: usize = 32;

impl DagIndex {
    /// Builds the index of `workflow`, leaving out (and reporting) edges that name unknown
    /// tasks, the task itself, or repeat an earlier edge.
    ///
    /// # Panics
    ///
    /// Panics if the workflow has more than `u32::MAX` tasks or edges.
    pub fn build(workflow: &Workflow) -> (Self, Vec<GraphProblem>) {
        let n = workflow.tasks.len();
        assert!(u32::try_from(n).is_ok(), "more than u32::MAX tasks");
        let mut problems = Vec::new();
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        ids.reserve(n);
        for (i, t) in workflow.tasks.iter().enumerate() {
            if let Some(&first) = ids.get(t.id.as_str()) {
                problems.push(GraphProblem::DuplicateTaskId {
                    index: i,
                    first: first as usize,
                });
            } else {
                ids.insert(t.id.as_str(), i as u32);
            }
        }

        let edge_hint: usize = workflow.tasks.iter().map(|t| t.depends_on.len()).sum();
        let mut prereq_start = Vec::with_capacity(n + 1);
        let mut prereqs: Vec<u32> = Vec::with_capacity(edge_hint);
        // `seen_by[p] == i + 1` means task i already has p as a prerequisite.
        let mut seen_by = vec![0u32; n];
        let mut in_counts = vec![0u32; n];
        let mut suggestions = 0usize;
        prereq_start.push(0);
        for (i, t) in workflow.tasks.iter().enumerate() {
            for (position, dep) in t.depends_on.iter().enumerate() {
                match ids.get(dep.as_str()) {
                    None => {
                        let suggestion = if suggestions < MAX_SUGGESTIONS {
                            suggestions += 1;
                            nearest_id(workflow, dep.as_str())
                        } else {
                            None
                        };
                        problems.push(GraphProblem::UnknownDependency {
                            task: i,
                            position,
                            suggestion,
                        });
                    }
                    Some(&p) if p as usize == i => {
                        problems.push(GraphProblem::SelfDependency { task: i, position });
                    }
                    Some(&p) if seen_by[p as usize] == i as u32 + 1 => {
                        problems.push(GraphProblem::DuplicateDependency { task: i, position });
                    }
                    Some(&p) => {
                        seen_by[p as usize] = i as u32 + 1;
                        prereqs.push(p);
                        in_counts[p as usize] += 1;
                    }
                }
            }
            let end = u32::try_from(prereqs.len()).expect("more than u32::MAX edges");
            prereq_start.push(end);
        }
        drop(seen_by);

        // Dependents: the transpose, filled by counting sort.
        let mut dependent_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        dependent_start.push(0);
        for c in &in_counts {
            acc += c;
            dependent_start.push(acc);
        }
        let mut fill: Vec<u32> = dependent_start[..n].to_vec();
        let mut dependents = vec![0u32; prereqs.len()];
        for task in 0..n {
            for &p in &prereqs[prereq_start[task] as usize..prereq_start[task + 1] as usize] {
                let slot = &mut fill[p as usize];
                dependents[*slot as usize] = task as u32;
                *slot += 1;
            }
        }

        (
            Self {
                prereq_start,
                prereqs,
                dependent_start,
                dependents,
            },
            problems,
        )
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.prereq_start.len() - 1
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of (deduplicated, known) edges.
    pub fn edge_count(&self) -> usize {
        self.prereqs.len()
    }

    /// The tasks task `i` waits for.
    pub fn prerequisites(&self, i: usize) -> &[u32] {
        &self.prereqs[self.prereq_start[i] as usize..self.prereq_start[i + 1] as usize]
    }

    /// The tasks that wait for task `i`.
    pub fn dependents(&self, i: usize) -> &[u32] {
        &self.dependents[self.dependent_start[i] as usize..self.dependent_start[i + 1] as usize]
    }

    /// A topological order (Kahn's algorithm, FIFO), or the cycles that prevent one.
    ///
    /// # Errors
    ///
    /// Each returned cycle lists its tasks so that each depends on the next and the last on
    /// the first, starting from its lowest task number. Disjoint cycles are all reported.
    pub fn topological_order(&self) -> Result<Vec<u32>, Vec<Vec<u32>>> {
        let n = self.len();
        let mut remaining: Vec<u32> = (0..n)
            .map(|i| self.prereq_start[i + 1] - self.prereq_start[i])
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        order.extend((0..n as u32).filter(|&i| remaining[i as usize] == 0));
        let mut head = 0;
        while head < order.len() {
            let v = order[head] as usize;
            head += 1;
            for &d in self.dependents(v) {
                let r = &mut remaining[d as usize];
                *r -= 1;
                if *r == 0 {
                    order.push(d);
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self.find_cycles(&remaining))
        }
    }

    /// Finds disjoint cycles among the tasks Kahn's algorithm could not emit (those with
    /// `remaining > 0`). Every such task has a prerequisite that is also unemitted, so
    /// following one from any of them must close a loop.
    fn find_cycles(&self, remaining: &[u32]) -> Vec<Vec<u32>> {
        const UNSEEN: u32 = u32::MAX;
        const DONE: u32 = u32::MAX - 1;
        // For a task on the current walk: its position in `path`.
        let mut state = vec![UNSEEN; self.len()];
        let mut cycles = Vec::new();
        let mut path: Vec<u32> = Vec::new();
        for start in 0..self.len() {
            if remaining[start] == 0 || state[start] != UNSEEN {
                continue;
            }
            path.clear();
            let mut cur = start as u32;
            loop {
                state[cur as usize] = path.len() as u32;
                path.push(cur);
                let next = self
                    .prerequisites(cur as usize)
                    .iter()
                    .copied()
                    .find(|&p| remaining[p as usize] > 0)
                    .expect("an unemitted task has an unemitted prerequisite");
                match state[next as usize] {
                    UNSEEN => cur = next,
                    DONE => break,
                    pos => {
                        let mut cycle = path[pos as usize..].to_vec();
                        let min_at = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, v)| **v)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min_at);
                        cycles.push(cycle);
                        break;
                    }
                }
            }
            for &v in &path {
                state[v as usize] = DONE;
            }
        }
        cycles
    }
}

fn nearest_id(workflow: &Workflow, wanted: &str) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, t) in workflow.tasks.iter().enumerate() {
        let score = strsim::jaro_winkler(wanted, t.id.as_str());
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TaskBuilder, WorkflowBuilder};

    fn wf(edges: &[(&str, &[&str])]) -> Workflow {
        let mut b = WorkflowBuilder::new("t");
        for (id, deps) in edges {
            b = b.task(
                TaskBuilder::custom(*id, *id, "h")
                    .capability("x")
                    .depends_on(deps.iter().copied()),
            );
        }
        b.build_unchecked()
    }

    #[test]
    fn order_puts_prerequisites_first() {
        let w = wf(&[("c", &["b"]), ("b", &["a"]), ("a", &[])]);
        let (idx, problems) = DagIndex::build(&w);
        assert!(problems.is_empty());
        assert_eq!(idx.topological_order().unwrap(), vec![2, 1, 0]);
        assert_eq!(idx.dependents(2), &[1]);
    }

    #[test]
    fn reports_the_whole_cycle_in_dependency_order() {
        let w = wf(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        let (idx, _) = DagIndex::build(&w);
        assert_eq!(idx.topological_order().unwrap_err(), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn reports_disjoint_cycles() {
        let w = wf(&[("a", &["b"]), ("b", &["a"]), ("c", &["d"]), ("d", &["c"])]);
        let (idx, _) = DagIndex::build(&w);
        assert_eq!(idx.topological_order().unwrap_err().len(), 2);
    }

    #[test]
    fn bad_edges_are_reported_and_left_out() {
        let w = wf(&[("a", &["a", "bb", "zz"]), ("b", &["a", "a"]), ("b", &[])]);
        let (idx, problems) = DagIndex::build(&w);
        assert_eq!(idx.edge_count(), 1);
        assert_eq!(
            problems,
            vec![
                GraphProblem::DuplicateTaskId { index: 2, first: 1 },
                GraphProblem::SelfDependency {
                    task: 0,
                    position: 0
                },
                GraphProblem::UnknownDependency {
                    task: 0,
                    position: 1,
                    suggestion: Some(1)
                },
                GraphProblem::UnknownDependency {
                    task: 0,
                    position: 2,
                    suggestion: None
                },
                GraphProblem::DuplicateDependency {
                    task: 1,
                    position: 1
                },
            ]
        );
    }

    #[test]
    fn a_million_task_ring_is_found_without_recursion() {
        let n = 1_000_000;
        let tasks: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let mut b = WorkflowBuilder::new("ring");
        for i in 0..n {
            b = b.task(
                TaskBuilder::custom(tasks[i].as_str(), "t", "h")
                    .capability("x")
                    .depends_on([tasks[(i + 1) % n].as_str()]),
            );
        }
        let (idx, _) = DagIndex::build(&b.build_unchecked());
        let cycles = idx.topological_order().unwrap_err();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n);
    }
}
