//! Back edges added to random DAGs are always reported as real cycles, by the index and by
//! the validator.

use std::collections::BTreeSet;

use axon_core::dag::GraphProblem;
use axon_core::model::Workflow;
use axon_core::{DagIndex, validate};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::graphs::{Dag, dag_sized};

/// A walk along dependents: where it starts and which dependent it takes at each step
/// (`None`: the lowest-numbered one, which makes long walks, and long cycles, likely).
#[derive(Debug, Clone)]
struct Walk {
    start: Index,
    steps: Vec<Option<Index>>,
}

fn walk() -> impl Strategy<Value = Walk> {
    let step = prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)];
    (any::<Index>(), prop::collection::vec(step, 0..40))
        .prop_map(|(start, steps)| Walk { start, steps })
}

impl Walk {
    /// The first and last task of the walk: the last one depends (transitively) on the first.
    fn ends(&self, dag: &Dag) -> (usize, usize) {
        let dependents = dag.dependents();
        let first = self.start.index(dag.len());
        let mut cur = first;
        for step in &self.steps {
            let next = &dependents[cur];
            if next.is_empty() {
                break;
            }
            cur = match step {
                Some(pick) => next[pick.index(next.len())],
                None => next[0],
            };
        }
        (first, cur)
    }
}

/// The graph with the extra edges, as prerequisite sets.
fn with_back_edges(dag: &Dag, back: &[(usize, usize)]) -> Vec<BTreeSet<usize>> {
    let mut prereqs: Vec<BTreeSet<usize>> = dag
        .prereqs
        .iter()
        .map(|p| p.iter().copied().collect())
        .collect();
    for &(from, to) in back {
        prereqs[from].insert(to);
    }
    prereqs
}

/// `from` also depends on `to`, for each pair.
fn workflow_with_back_edges(dag: &Dag, back: &[(usize, usize)]) -> Workflow {
    let mut w = dag.workflow();
    for &(from, to) in back {
        let id = w.tasks[to].id.clone();
        w.tasks[from].depends_on.push(id);
    }
    w
}

fn check_real_cycle(cycle: &[u32], prereqs: &[BTreeSet<usize>]) -> Result<(), TestCaseError> {
    prop_assert!(
        cycle.len() >= 2,
        "a self-dependency is not an edge of the index"
    );
    let distinct: BTreeSet<u32> = cycle.iter().copied().collect();
    prop_assert_eq!(
        distinct.len(),
        cycle.len(),
        "cycle {:?} repeats a task",
        cycle
    );
    prop_assert_eq!(
        cycle[0],
        *distinct.first().expect("a cycle has tasks"),
        "cycle {:?} starts at its lowest task",
        cycle
    );
    for (k, &task) in cycle.iter().enumerate() {
        let next = cycle[(k + 1) % cycle.len()];
        prop_assert!(
            prereqs[task as usize].contains(&(next as usize)),
            "in cycle {:?}, {} does not depend on {}",
            cycle,
            task,
            next
        );
    }
    Ok(())
}

/// The task ids a `dependency cycle:` message names, elision marker included.
fn named_in_message(message: &str) -> Vec<&str> {
    let list = message
        .strip_prefix("dependency cycle: ")
        .and_then(|m| m.strip_suffix(" (each task depends on the next)"))
        .unwrap_or_else(|| panic!("unexpected cycle message: {message}"));
    list.split(" -> ").collect()
}

proptest! {
    #[test]
    fn a_back_edge_is_always_reported_as_a_real_cycle(
        dag in dag_sized(1, 40),
        walk in walk(),
    ) {
        let (from, to) = walk.ends(&dag);
        // `from` now depends on `to`, which already depends (transitively) on `from`.
        let wf = workflow_with_back_edges(&dag, &[(from, to)]);
        let (index, problems) = DagIndex::build(&wf);
        let validation = validate(&wf, None);
        let errors: Vec<&str> = validation.errors().map(|d| d.message.as_str()).collect();

        if from == to {
            // A self-dependency is left out of the index and reported on its own.
            let position = dag.prereqs[from].len();
            prop_assert_eq!(problems, vec![GraphProblem::SelfDependency { task: from, position }]);
            prop_assert!(index.topological_order().is_ok());
            let expected = format!("task `{}` depends on itself", dag.ids[from]);
            prop_assert!(errors.contains(&expected.as_str()), "{:?}", errors);
            prop_assert!(!errors.iter().any(|e| e.starts_with("dependency cycle:")), "{:?}", errors);
            return Ok(());
        }

        prop_assert!(problems.is_empty(), "{:?}", problems);
        let prereqs = with_back_edges(&dag, &[(from, to)]);
        let cycles = index.topological_order().unwrap_err();
        // Every cycle goes through the one back edge, so exactly one is reported.
        prop_assert_eq!(cycles.len(), 1, "{:?}", cycles);
        let cycle = &cycles[0];
        check_real_cycle(cycle, &prereqs)?;
        prop_assert!(cycle.contains(&(from as u32)) && cycle.contains(&(to as u32)));
        prop_assert!(validation.plan.is_none());

        let messages: Vec<&str> = errors
            .iter()
            .copied()
            .filter(|e| e.starts_with("dependency cycle:"))
            .collect();
        prop_assert_eq!(messages.len(), 1, "{:?}", errors);
        let named = named_in_message(messages[0]);
        let ids: Vec<&str> = cycle.iter().map(|&v| dag.ids[v as usize].as_str()).collect();
        // The message walks the cycle and comes back to its first task; long cycles have
        // their middle elided.
        prop_assert_eq!(named.last(), named.first());
        if ids.len() <= 12 {
            prop_assert_eq!(&named[..named.len() - 1], &ids[..]);
        } else {
            let more = format!("... {} more ...", ids.len() - 12);
            prop_assert_eq!(named.len(), 14);
            prop_assert_eq!(&named[..6], &ids[..6]);
            prop_assert_eq!(named[6], more.as_str());
            prop_assert_eq!(&named[7..13], &ids[ids.len() - 6..]);
        }
    }

    #[test]
    fn several_back_edges_give_disjoint_real_cycles(
        dag in dag_sized(2, 40),
        walks in prop::collection::vec(walk(), 1..5),
    ) {
        let back: Vec<(usize, usize)> = walks
            .iter()
            .map(|w| w.ends(&dag))
            .filter(|(from, to)| from != to)
            .collect();
        let wf = workflow_with_back_edges(&dag, &back);
        let (index, _) = DagIndex::build(&wf);
        let prereqs = with_back_edges(&dag, &back);
        if back.is_empty() {
            // Only self-dependencies were drawn (say on an edgeless graph): no cycle.
            prop_assert!(index.topological_order().is_ok());
            return Ok(());
        }
        let cycles = index.topological_order().unwrap_err();
        prop_assert!(!cycles.is_empty());
        let mut used = BTreeSet::new();
        for cycle in &cycles {
            check_real_cycle(cycle, &prereqs)?;
            for &v in cycle {
                prop_assert!(used.insert(v), "task {} is in two reported cycles", v);
            }
            // Each cycle of the graph uses at least one back edge.
            let uses_back_edge = back.iter().any(|&(from, to)| {
                let (f, t) = (from as u32, to as u32);
                cycle.iter().zip(cycle.iter().cycle().skip(1)).any(|(&a, &b)| a == f && b == t)
            });
            prop_assert!(uses_back_edge, "cycle {:?} uses none of {:?}", cycle, back);
        }
        let validation = validate(&wf, None);
        let reported = validation
            .errors()
            .filter(|d| d.message.starts_with("dependency cycle:"))
            .count();
        prop_assert_eq!(reported, cycles.len());
    }
}
