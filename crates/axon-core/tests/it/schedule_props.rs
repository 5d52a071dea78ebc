//! Properties of the simulated schedule on random DAGs and random agents.

use std::collections::BTreeMap;

use axon_core::agents::AgentSpec;
use axon_core::id::AgentId;
use axon_core::model::{Capability, ResourceRequirements};
use axon_core::schedule::{Schedule, simulate};
use proptest::prelude::*;

use crate::graphs::{Dag, Reference, dag};

fn agent(k: usize, max_concurrent_tasks: u32, cpu_cores: u32, memory_mb: u64) -> AgentSpec {
    AgentSpec {
        id: AgentId::new(format!("agent-{k}")),
        capabilities: vec![Capability::from("x")],
        max_concurrent_tasks,
        resources: ResourceRequirements {
            cpu_cores,
            memory_mb,
            gpu: false,
        },
        command: Vec::new(),
        env: BTreeMap::new(),
        cortex_api_key: false,
    }
}

/// One to four agents with one to four slots, 2-8 cores and 1-4 GiB each.
fn agents() -> impl Strategy<Value = Vec<AgentSpec>> {
    prop::collection::vec((1u32..=4, 2u32..=8, 1024u64..=4096), 1..=4).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(k, (slots, cpu, mem))| agent(k, slots, cpu, mem))
            .collect()
    })
}

/// Per task: 1-2 cores and 256-1024 MiB, which every generated agent can hold.
fn needs(n: usize) -> impl Strategy<Value = Vec<ResourceRequirements>> {
    prop::collection::vec((1u32..=2, 256u64..=1024), n).prop_map(|v| {
        v.into_iter()
            .map(|(cpu_cores, memory_mb)| ResourceRequirements {
                cpu_cores,
                memory_mb,
                gpu: false,
            })
            .collect()
    })
}

fn dag_with_needs() -> impl Strategy<Value = (Dag, Vec<ResourceRequirements>)> {
    dag(40).prop_flat_map(|d| {
        let n = d.len();
        (Just(d), needs(n))
    })
}

fn run(
    dag: &Dag,
    needs: &[ResourceRequirements],
    agents: &[AgentSpec],
) -> (Schedule, axon_core::Plan) {
    let mut w = dag.workflow();
    for (t, need) in w.tasks.iter_mut().zip(needs) {
        t.requirements.resources = *need;
    }
    let (index, _) = axon_core::DagIndex::build(&w);
    let plan = axon_core::Plan::new(&w, &index).expect("a generated DAG has no cycle");
    let schedule = simulate(&w, &index, &plan, agents).expect("every agent can run every task");
    (schedule, plan)
}

proptest! {
    #[test]
    fn simulation_respects_edges_agent_capacity_and_the_critical_path(
        (dag, needs) in dag_with_needs(),
        agents in agents(),
    ) {
        let (s, plan) = run(&dag, &needs, &agents);
        let w = dag.weights_ms();
        prop_assert_eq!(s.slots.len(), dag.len());
        for (i, slot) in s.slots.iter().enumerate() {
            prop_assert!((slot.agent as usize) < agents.len());
            prop_assert_eq!(slot.finish_ms, slot.start_ms + w[i]);
        }
        for (p, d) in dag.edges() {
            prop_assert!(
                s.slots[d].start_ms >= s.slots[p].finish_ms,
                "task {} starts at {} before its prerequisite {} finishes at {}",
                d, s.slots[d].start_ms, p, s.slots[p].finish_ms
            );
        }
        // At every start, count what runs on that agent then: tasks occupy [start, finish).
        for (k, a) in agents.iter().enumerate() {
            let on_agent: Vec<usize> =
                (0..dag.len()).filter(|&i| s.slots[i].agent as usize == k).collect();
            for &i in &on_agent {
                let t = s.slots[i].start_ms;
                let running: Vec<usize> = on_agent
                    .iter()
                    .copied()
                    .filter(|&j| s.slots[j].start_ms <= t && t < s.slots[j].finish_ms)
                    .collect();
                prop_assert!(running.len() <= a.max_concurrent_tasks as usize,
                    "agent {} runs {:?} at {}", k, running, t);
                let cpu: u32 = running.iter().map(|&j| needs[j].cpu_cores).sum();
                let mem: u64 = running.iter().map(|&j| needs[j].memory_mb).sum();
                prop_assert!(cpu <= a.resources.cpu_cores && mem <= a.resources.memory_mb);
            }
            prop_assert_eq!(s.agents[k].tasks as usize, on_agent.len());
            prop_assert!((0.0..=1.0).contains(&s.agents[k].utilisation));
        }
        let last = s.slots.iter().map(|s| s.finish_ms).max().unwrap_or(0);
        prop_assert_eq!(s.makespan.as_millis(), u128::from(last));
        prop_assert!(s.makespan >= plan.makespan);
    }

    #[test]
    fn simulation_with_unlimited_capacity_starts_every_task_at_its_earliest_start(dag in dag(40)) {
        let n = dag.len().max(1);
        let big = [agent(0, n as u32, n as u32, 512 * n as u64)];
        let needs = vec![ResourceRequirements::default(); dag.len()];
        let (s, plan) = run(&dag, &needs, &big);
        let reference = Reference::of(&dag);
        for i in 0..dag.len() {
            prop_assert_eq!(s.slots[i].start_ms, reference.earliest_start[i], "task {}", i);
        }
        prop_assert_eq!(s.makespan, plan.makespan);
    }
}
