//! The planner: execution order, parallel levels, earliest and latest starts, slack and the
//! critical path of a valid workflow, all in O(V+E) (the order's tie-breaking heap adds
//! O(V log V)).
//!
//! The ordering key, [`Plan::ready_key`], is what the engine uses to pick among ready tasks:
//! higher priority first, then the longest remaining path (critical work first), then id.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::dag::DagIndex;
use crate::model::Workflow;

/// Estimates are planned in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The plan of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPlan {
    /// Parallel level: 0 for tasks without prerequisites, else one more than the highest
    /// level among its prerequisites.
    pub level: u32,
    /// Position in [`Plan::order`].
    pub position: u32,
    /// Earliest start with unlimited agents, in ms from the run's start.
    pub earliest_start_ms: u64,
    /// Latest start that does not delay the run, in ms.
    pub latest_start_ms: u64,
    /// Longest path from this task's start to the end of the run, its own estimate included.
    pub remaining_ms: u64,
}

impl TaskPlan {
    /// How long the task may slip without delaying the run.
    pub fn slack(&self) -> Duration {
        Duration::from_millis(self.latest_start_ms - self.earliest_start_ms)
    }

    /// Whether the task is on a critical path (no slack).
    pub fn is_critical(&self) -> bool {
        self.latest_start_ms == self.earliest_start_ms
    }

    /// Earliest start as a duration from the run's start.
    pub fn earliest_start(&self) -> Duration {
        Duration::from_millis(self.earliest_start_ms)
    }

    /// Latest start as a duration from the run's start.
    pub fn latest_start(&self) -> Duration {
        Duration::from_millis(self.latest_start_ms)
    }
}

/// The plan of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Task numbers in execution order: prerequisites first; among tasks available at the
    /// same time, higher priority, then longer remaining path, then smaller id first.
    pub order: Vec<u32>,
    /// Task numbers by parallel level, each level in execution order.
    pub levels: Vec<Vec<u32>>,
    /// Per task, indexed like `workflow.tasks`.
    pub tasks: Vec<TaskPlan>,
    /// A longest path through the DAG, first task first.
    pub critical_path: Vec<u32>,
    /// Its duration: the run's makespan with unlimited agents.
    pub makespan: Duration,
    priorities: Vec<u8>,
}

/// The first 8 bytes of an id, big-endian, zero-padded: comparing these compares the ids'
/// prefixes lexicographically without following a pointer (ids never contain NUL).
fn id_prefix(id: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

/// Kahn's algorithm that always takes the available task with the largest
/// (priority, remaining path), then the smallest id.
///
/// When every prerequisite has a strictly larger (priority, remaining) than each of its
/// dependents — always the case when priorities are equal and estimates positive — the task
/// with the largest key overall is always available, so the order is simply all tasks sorted
/// by key: one O(E) check and a sort replace the heap. Otherwise the heap runs.
fn best_first_order(
    index: &DagIndex,
    priorities: &[u8],
    remaining: &[u64],
    ids: &[&str],
) -> Vec<u32> {
    let n = ids.len();
    // (priority, remaining, Reverse(id prefix), Reverse(id), index): larger pops first.
    type Key<'a> = (u8, u64, Reverse<u64>, Reverse<&'a str>, u32);
    let key = |i: usize| -> Key<'_> {
        (
            priorities[i],
            remaining[i],
            Reverse(id_prefix(ids[i])),
            Reverse(ids[i]),
            i as u32,
        )
    };
    let sortable = (0..n).all(|d| {
        index.prerequisites(d).iter().all(|&p| {
            (priorities[p as usize], remaining[p as usize]) > (priorities[d], remaining[d])
        })
    });
    if sortable {
        let mut keys: Vec<Key<'_>> = (0..n).map(key).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        return keys.into_iter().map(|k| k.4).collect();
    }
    let mut left: Vec<u32> = (0..n)
        .map(|i| index.prerequisites(i).len() as u32)
        .collect();
    let mut heap: BinaryHeap<Key<'_>> = (0..n).filter(|&i| left[i] == 0).map(key).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(k) = heap.pop() {
        let v = k.4;
        order.push(v);
        for &d in index.dependents(v as usize) {
            let l = &mut left[d as usize];
            *l -= 1;
            if *l == 0 {
                heap.push(key(d as usize));
            }
        }
    }
    order
}

/// The key by which ready tasks are ordered; larger runs first.
pub type ReadyKey = (u8, u64, Reverse<u32>);

impl Plan {
    /// Plans `workflow` on its index.
    ///
    /// # Errors
    ///
    /// Returns the cycles when the graph has any (see [`DagIndex::topological_order`]).
    pub fn new(workflow: &Workflow, index: &DagIndex) -> Result<Self, Vec<Vec<u32>>> {
        let n = index.len();
        let fifo = index.topological_order()?;
        let weight: Vec<u64> = workflow
            .tasks
            .iter()
            .map(|t| millis(t.requirements.estimated_duration))
            .collect();
        let priorities: Vec<u8> = workflow
            .tasks
            .iter()
            .map(|t| workflow.priority_of(t).rank())
            .collect();

        // Longest remaining path, from the sinks back.
        let mut remaining = vec![0u64; n];
        for &v in fifo.iter().rev() {
            let v = v as usize;
            let tail = index
                .dependents(v)
                .iter()
                .map(|&d| remaining[d as usize])
                .max()
                .unwrap_or(0);
            remaining[v] = weight[v].saturating_add(tail);
        }
        drop(fifo);

        // The execution order: among available tasks, the best key first.
        let ids: Vec<&str> = workflow.tasks.iter().map(|t| t.id.as_str()).collect();
        let order = best_first_order(index, &priorities, &remaining, &ids);

        // Forward pass: levels and earliest starts.
        let mut tasks = vec![
            TaskPlan {
                level: 0,
                position: 0,
                earliest_start_ms: 0,
                latest_start_ms: 0,
                remaining_ms: 0,
            };
            n
        ];
        let mut makespan = 0u64;
        let mut level_count = 0usize;
        for (pos, &v) in order.iter().enumerate() {
            let v = v as usize;
            let mut level = 0u32;
            let mut es = 0u64;
            for &p in index.prerequisites(v) {
                let pp = &tasks[p as usize];
                level = level.max(pp.level + 1);
                es = es.max(pp.earliest_start_ms.saturating_add(weight[p as usize]));
            }
            tasks[v] = TaskPlan {
                level,
                position: pos as u32,
                earliest_start_ms: es,
                latest_start_ms: 0,
                remaining_ms: remaining[v],
            };
            makespan = makespan.max(es.saturating_add(weight[v]));
            level_count = level_count.max(level as usize + 1);
        }
        for (v, t) in tasks.iter_mut().enumerate() {
            // Saturation can only bite on absurd estimates the validator already rejects.
            t.latest_start_ms = makespan
                .saturating_sub(remaining[v])
                .max(t.earliest_start_ms);
        }

        let mut levels = vec![Vec::new(); level_count];
        for &v in &order {
            levels[tasks[v as usize].level as usize].push(v);
        }

        // The critical path: from the first critical source, follow critical dependents
        // whose remaining path continues this one's.
        let mut critical_path = Vec::new();
        if let Some(&start) = order.iter().find(|&&v| {
            tasks[v as usize].earliest_start_ms == 0 && remaining[v as usize] == makespan
        }) {
            let mut cur = start as usize;
            loop {
                critical_path.push(cur as u32);
                let want = remaining[cur] - weight[cur];
                let next = index
                    .dependents(cur)
                    .iter()
                    .copied()
                    .filter(|&d| remaining[d as usize] == want && tasks[d as usize].is_critical())
                    .min_by_key(|&d| tasks[d as usize].position);
                match next {
                    Some(d) => cur = d as usize,
                    None => break,
                }
            }
        }

        Ok(Self {
            order,
            levels,
            tasks,
            critical_path,
            makespan: Duration::from_millis(makespan),
            priorities,
        })
    }

    /// The ordering key of task `i` among ready tasks: priority, then longest remaining path,
    /// then the smaller position in [`Plan::order`] (which breaks ties by id).
    pub fn ready_key(&self, i: usize) -> ReadyKey {
        (
            self.priorities[i],
            self.tasks[i].remaining_ms,
            Reverse(self.tasks[i].position),
        )
    }

    /// The longest path from the start of task `i` to the end of the run.
    pub fn remaining(&self, i: usize) -> Duration {
        Duration::from_millis(self.tasks[i].remaining_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TaskBuilder, WorkflowBuilder};
    use crate::model::Priority;

    fn task(id: &str, mins: u64, deps: &[&str]) -> TaskBuilder {
        TaskBuilder::custom(id, id, "h")
            .capability("x")
            .estimated_duration(Duration::from_secs(mins * 60))
            .depends_on(deps.iter().copied())
    }

    fn plan(b: WorkflowBuilder) -> (Workflow, Plan) {
        let w = b.build_unchecked();
        let (idx, _) = DagIndex::build(&w);
        let p = Plan::new(&w, &idx).unwrap();
        (w, p)
    }

    #[test]
    fn diamond_has_levels_slack_and_critical_path() {
        let (w, p) = plan(
            WorkflowBuilder::new("d")
                .task(task("a", 10, &[]))
                .task(task("b", 30, &["a"]))
                .task(task("c", 5, &["a"]))
                .task(task("d", 10, &["b", "c"])),
        );
        let ids = |v: &[u32]| -> Vec<&str> {
            v.iter().map(|&i| w.tasks[i as usize].id.as_str()).collect()
        };
        assert_eq!(ids(&p.order), ["a", "b", "c", "d"]);
        assert_eq!(p.levels.len(), 3);
        assert_eq!(ids(&p.levels[1]), ["b", "c"]);
        assert_eq!(ids(&p.critical_path), ["a", "b", "d"]);
        assert_eq!(p.makespan, Duration::from_secs(50 * 60));
        assert_eq!(p.tasks[2].slack(), Duration::from_secs(25 * 60));
        assert!(p.tasks[1].is_critical() && !p.tasks[2].is_critical());
        assert_eq!(p.tasks[3].earliest_start(), Duration::from_secs(40 * 60));
    }

    #[test]
    fn priority_beats_remaining_path_which_beats_id() {
        let (w, p) = plan(
            WorkflowBuilder::new("p")
                .task(task("z_long", 60, &[]))
                .task(task("a_short", 1, &[]))
                .task(task("b_short", 1, &[]))
                .task(task("m_urgent", 1, &[]).priority(Priority::Critical)),
        );
        let ids: Vec<_> = p
            .order
            .iter()
            .map(|&i| w.tasks[i as usize].id.as_str())
            .collect();
        assert_eq!(ids, ["m_urgent", "z_long", "a_short", "b_short"]);
        assert!(p.ready_key(3) > p.ready_key(0));
        assert!(p.ready_key(0) > p.ready_key(1));
        assert!(p.ready_key(1) > p.ready_key(2));
    }

    #[test]
    fn empty_workflow_plans_to_nothing() {
        let (_, p) = plan(WorkflowBuilder::new("e"));
        assert!(p.order.is_empty() && p.critical_path.is_empty());
        assert_eq!(p.makespan, Duration::ZERO);
    }
}
