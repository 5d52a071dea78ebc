//! Properties of the planner on random DAGs: order, levels, critical path, slack,
//! determinism and the ready-task ordering.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use axon_core::DagIndex;
use axon_core::Plan;
use proptest::prelude::*;

use crate::graphs::{Reference, all_maximal_paths, dag};

proptest! {
    #[test]
    fn order_is_a_permutation_that_respects_every_edge(dag in dag(60)) {
        let (_, index, plan) = dag.plan();
        let n = dag.len();
        prop_assert_eq!(index.len(), n);
        prop_assert_eq!(index.edge_count(), dag.edges().count());
        let mut sorted = plan.order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        for (pos, &v) in plan.order.iter().enumerate() {
            prop_assert_eq!(plan.tasks[v as usize].position as usize, pos);
        }
        for (p, d) in dag.edges() {
            prop_assert!(
                plan.tasks[p].position < plan.tasks[d].position,
                "{} runs before its prerequisite {}", dag.ids[d], dag.ids[p]
            );
        }
    }

    #[test]
    fn levels_are_minimal_and_partition_the_tasks(dag in dag(60)) {
        let (_, _, plan) = dag.plan();
        let reference = Reference::of(&dag);
        for i in 0..dag.len() {
            prop_assert_eq!(plan.tasks[i].level, reference.level[i], "level of task {}", i);
        }
        let depth = reference.level.iter().max().map_or(0, |&l| l as usize + 1);
        prop_assert_eq!(plan.levels.len(), depth);
        let mut seen = BTreeSet::new();
        for (k, level) in plan.levels.iter().enumerate() {
            prop_assert!(!level.is_empty(), "level {} is empty", k);
            for &v in level {
                prop_assert_eq!(reference.level[v as usize] as usize, k);
                prop_assert!(seen.insert(v), "task {} is in two levels", v);
            }
            // Each level lists its tasks in execution order.
            let in_order = level.windows(2).all(|w| {
                plan.tasks[w[0] as usize].position < plan.tasks[w[1] as usize].position
            });
            prop_assert!(in_order, "level {} is not in execution order", k);
        }
        prop_assert_eq!(seen.len(), dag.len());
    }

    #[test]
    fn makespan_is_the_longest_path_and_critical_path_is_a_path_of_that_length(dag in dag(60)) {
        let (_, index, plan) = dag.plan();
        let reference = Reference::of(&dag);
        let w = dag.weights_ms();
        prop_assert_eq!(plan.makespan.as_millis(), u128::from(reference.makespan));

        // The same length again, by Bellman-Ford style relaxation of every edge, which does
        // not rely on any order of the tasks.
        let mut finish: Vec<u64> = w.clone();
        for _ in 0..dag.len() {
            for (p, d) in dag.edges() {
                finish[d] = finish[d].max(finish[p] + w[d]);
            }
        }
        prop_assert_eq!(reference.makespan, finish.iter().copied().max().unwrap_or(0));

        let path = &plan.critical_path;
        if dag.len() == 0 {
            prop_assert!(path.is_empty());
        } else {
            prop_assert!(!path.is_empty());
            prop_assert!(index.prerequisites(path[0] as usize).is_empty());
            for pair in path.windows(2) {
                prop_assert!(
                    dag.prereqs[pair[1] as usize].contains(&(pair[0] as usize)),
                    "{} does not depend on {}", pair[1], pair[0]
                );
            }
            let length: u64 = path.iter().map(|&v| w[v as usize]).sum();
            prop_assert_eq!(length, reference.makespan);
            for &v in path {
                prop_assert!(plan.tasks[v as usize].is_critical());
            }
        }
    }

    #[test]
    fn makespan_and_critical_tasks_match_path_enumeration_on_small_graphs(dag in dag(12)) {
        let (_, _, plan) = dag.plan();
        let w = dag.weights_ms();
        let paths = all_maximal_paths(&dag);
        let length = |p: &Vec<usize>| p.iter().map(|&v| w[v]).sum::<u64>();
        let longest = paths.iter().map(length).max().unwrap_or(0);
        prop_assert_eq!(plan.makespan.as_millis(), u128::from(longest));
        // A task is critical exactly when some longest path goes through it.
        let mut on_longest = vec![false; dag.len()];
        for p in paths.iter().filter(|p| length(p) == longest) {
            for &v in p {
                on_longest[v] = true;
            }
        }
        for (i, &expected) in on_longest.iter().enumerate() {
            prop_assert_eq!(plan.tasks[i].is_critical(), expected, "task {}", i);
        }
    }

    #[test]
    fn slack_is_zero_exactly_on_critical_tasks_and_starts_match_reference(dag in dag(60)) {
        let (_, _, plan) = dag.plan();
        let reference = Reference::of(&dag);
        for i in 0..dag.len() {
            let t = &plan.tasks[i];
            prop_assert_eq!(t.earliest_start_ms, reference.earliest_start[i], "earliest start of {}", i);
            prop_assert_eq!(t.latest_start_ms, reference.latest_start(i), "latest start of {}", i);
            prop_assert_eq!(t.remaining_ms, reference.remaining[i], "remaining of {}", i);
            prop_assert_eq!(plan.remaining(i).as_millis(), u128::from(reference.remaining[i]));
            prop_assert_eq!(t.is_critical(), reference.is_critical(i), "criticality of {}", i);
            prop_assert_eq!(t.slack().is_zero(), reference.is_critical(i));
            prop_assert_eq!(
                t.slack().as_millis(),
                u128::from(reference.latest_start(i) - reference.earliest_start[i])
            );
        }
    }

    #[test]
    fn planning_ignores_the_insertion_order_of_tasks(
        (dag, insertion) in dag(60).prop_flat_map(|d| {
            let all: Vec<usize> = (0..d.len()).collect();
            (Just(d), Just(all).prop_shuffle())
        })
    ) {
        let plan_ids = |insertion: &[usize]| {
            let w = dag.workflow_in_order(insertion);
            let (index, problems) = DagIndex::build(&w);
            assert!(problems.is_empty());
            let plan = Plan::new(&w, &index).unwrap();
            let ids = |v: &[u32]| -> Vec<String> {
                v.iter().map(|&i| w.tasks[i as usize].id.to_string()).collect()
            };
            let levels: Vec<Vec<String>> = plan.levels.iter().map(|l| ids(l)).collect();
            (ids(&plan.order), levels, ids(&plan.critical_path), plan.makespan)
        };
        let identity: Vec<usize> = (0..dag.len()).collect();
        let (order, levels, critical, makespan) = plan_ids(&identity);
        let (order2, levels2, critical2, makespan2) = plan_ids(&insertion);
        prop_assert_eq!(order, order2);
        prop_assert_eq!(levels, levels2);
        prop_assert_eq!(critical, critical2);
        prop_assert_eq!(makespan, makespan2);
    }

    #[test]
    fn each_task_is_the_best_ready_one_when_chosen(dag in dag(60)) {
        let (w, _, plan) = dag.plan();
        let reference = Reference::of(&dag);
        let dependents = dag.dependents();
        for i in 0..dag.len() {
            prop_assert_eq!(
                plan.ready_key(i),
                (dag.priority_rank(i), reference.remaining[i], Reverse(plan.tasks[i].position))
            );
        }
        // Replay the order, keeping the set of tasks whose prerequisites are all done.
        let mut left: Vec<usize> = dag.prereqs.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..dag.len()).filter(|&i| left[i] == 0).collect();
        for &a in &plan.order {
            let a = a as usize;
            prop_assert!(ready.remove(&a), "task {} ran before it was ready", a);
            for &b in &ready {
                prop_assert!(plan.ready_key(a) > plan.ready_key(b), "{} before {}", a, b);
                // The documented rule, from the definitions: priority, then remaining
                // path, then the smaller id.
                let rule = |i: usize| {
                    (dag.priority_rank(i), reference.remaining[i], Reverse(w.tasks[i].id.as_str()))
                };
                prop_assert!(rule(a) > rule(b), "{} before {}", dag.ids[a], dag.ids[b]);
            }
            for &d in &dependents[a] {
                left[d] -= 1;
                if left[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        prop_assert!(ready.is_empty());
    }
}
