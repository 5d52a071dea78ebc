//! A simulated schedule of a plan on a given set of agents (list scheduling).
//!
//! Time advances from one task completion to the next. Whenever an agent has a free slot,
//! the best ready task it can run (priority, then longest remaining path, as the engine
//! orders them) starts on the least loaded capable agent that has a free slot and enough
//! free cpu and memory. Tasks are grouped by the set of agents able to run them, so each
//! step looks at a few groups, not at every ready task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::agents::AgentSpec;
use crate::dag::DagIndex;
use crate::model::Workflow;
use crate::plan::{Plan, ReadyKey};

/// Where and when one task runs in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the agent in the agent list.
    pub agent: u32,
    /// Start, in ms from the run's start.
    pub start_ms: u64,
    /// End, in ms from the run's start.
    pub finish_ms: u64,
}

/// How busy one agent is in the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentUsage {
    /// Tasks it runs.
    pub tasks: u32,
    /// Sum of its tasks' estimates, in ms.
    pub busy_ms: u64,
    /// `busy / (makespan × max_concurrent_tasks)`, 0..=1.
    pub utilisation: f64,
}

/// A simulated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// When the last task finishes.
    pub makespan: Duration,
    /// Per task, indexed like `workflow.tasks`.
    pub slots: Vec<Slot>,
    /// Per agent, indexed like the agent list.
    pub agents: Vec<AgentUsage>,
}

/// Tasks that no agent can run, by task number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infeasible(pub Vec<usize>);

struct AgentState {
    free_slots: u32,
    free_cpu: u32,
    free_mem: u64,
    running: u32,
}

/// Simulates running a planned workflow on `agents`.
///
/// # Errors
///
/// Lists the tasks no agent can ever run (see [`crate::agents::check_feasibility`] for the
/// reasons).
pub fn simulate(
    workflow: &Workflow,
    index: &DagIndex,
    plan: &Plan,
    agents: &[AgentSpec],
) -> Result<Schedule, Infeasible> {
    let n = workflow.tasks.len();
    // Group tasks by the exact set of agents able to run them.
    let mut class_of = vec![0u32; n];
    let mut classes: Vec<Vec<u32>> = Vec::new();
    let mut class_ids: FxHashMap<Vec<u32>, u32> = FxHashMap::default();
    let mut infeasible = Vec::new();
    for (i, task) in workflow.tasks.iter().enumerate() {
        let able: Vec<u32> = agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.can_run(task))
            .map(|(k, _)| k as u32)
            .collect();
        if able.is_empty() {
            infeasible.push(i);
            continue;
        }
        let next = classes.len() as u32;
        let id = *class_ids.entry(able.clone()).or_insert_with(|| {
            classes.push(able);
            next
        });
        class_of[i] = id;
    }
    if !infeasible.is_empty() {
        return Err(Infeasible(infeasible));
    }

    let weight = |i: usize| {
        u64::try_from(
            workflow.tasks[i]
                .requirements
                .estimated_duration
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    };
    let mut state: Vec<AgentState> = agents
        .iter()
        .map(|a| AgentState {
            free_slots: a.max_concurrent_tasks,
            free_cpu: a.resources.cpu_cores,
            free_mem: a.resources.memory_mb,
            running: 0,
        })
        .collect();
    let mut ready: Vec<BinaryHeap<(ReadyKey, u32)>> = vec![BinaryHeap::new(); classes.len()];
    let mut left: Vec<u32> = (0..n)
        .map(|i| index.prerequisites(i).len() as u32)
        .collect();
    for (i, _) in left.iter().enumerate().filter(|(_, l)| **l == 0) {
        ready[class_of[i] as usize].push((plan.ready_key(i), i as u32));
    }
    let mut slots = vec![
        Slot {
            agent: 0,
            start_ms: 0,
            finish_ms: 0,
        };
        n
    ];
    let mut usage = vec![
        AgentUsage {
            tasks: 0,
            busy_ms: 0,
            utilisation: 0.0,
        };
        agents.len()
    ];
    let mut events: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut now = 0u64;
    let mut makespan = 0u64;
    let mut blocked = vec![false; classes.len()];

    loop {
        // Start everything that can start now, best task first.
        blocked.iter_mut().for_each(|b| *b = false);
        loop {
            let best = (0..classes.len())
                .filter(|&c| !blocked[c])
                .filter_map(|c| ready[c].peek().map(|&(key, _)| (key, c)))
                .max();
            let Some((_, c)) = best else { break };
            let (_, task) = *ready[c].peek().expect("peeked above");
            let need = workflow.tasks[task as usize].requirements.resources;
            let agent = classes[c]
                .iter()
                .copied()
                .filter(|&a| {
                    let s = &state[a as usize];
                    s.free_slots > 0 && s.free_cpu >= need.cpu_cores && s.free_mem >= need.memory_mb
                })
                .min_by(|&a, &b| {
                    let load = |k: u32| {
                        f64::from(state[k as usize].running)
                            / f64::from(agents[k as usize].max_concurrent_tasks.max(1))
                    };
                    load(a).total_cmp(&load(b)).then(a.cmp(&b))
                });
            let Some(agent) = agent else {
                blocked[c] = true;
                continue;
            };
            ready[c].pop();
            let s = &mut state[agent as usize];
            s.free_slots -= 1;
            s.free_cpu -= need.cpu_cores;
            s.free_mem -= need.memory_mb;
            s.running += 1;
            let finish = now.saturating_add(weight(task as usize));
            slots[task as usize] = Slot {
                agent,
                start_ms: now,
                finish_ms: finish,
            };
            let u = &mut usage[agent as usize];
            u.tasks += 1;
            u.busy_ms = u.busy_ms.saturating_add(weight(task as usize));
            events.push(Reverse((finish, task)));
        }

        // Advance to the next completion and release everything finishing then.
        let Some(&Reverse((t, _))) = events.peek() else {
            break;
        };
        now = t;
        makespan = makespan.max(t);
        while let Some(&Reverse((t2, task))) = events.peek() {
            if t2 != now {
                break;
            }
            events.pop();
            let slot = slots[task as usize];
            let need = workflow.tasks[task as usize].requirements.resources;
            let s = &mut state[slot.agent as usize];
            s.free_slots += 1;
            s.free_cpu += need.cpu_cores;
            s.free_mem += need.memory_mb;
            s.running -= 1;
            for &d in index.dependents(task as usize) {
                let l = &mut left[d as usize];
                *l -= 1;
                if *l == 0 {
                    ready[class_of[d as usize] as usize].push((plan.ready_key(d as usize), d));
                }
            }
        }
    }

    for (u, a) in usage.iter_mut().zip(agents) {
        let capacity = makespan as f64 * f64::from(a.max_concurrent_tasks.max(1));
        u.utilisation = if capacity > 0.0 {
            (u.busy_ms as f64 / capacity).min(1.0)
        } else {
            0.0
        };
    }
    Ok(Schedule {
        makespan: Duration::from_millis(makespan),
        slots,
        agents: usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{AgentSpec, parse_agents};
    use crate::builder::{TaskBuilder, WorkflowBuilder};
    use crate::format::Format;

    fn agent(id: &str, caps: &[&str], slots: u32) -> AgentSpec {
        let yaml = format!(
            "agents:\n  - id: {id}\n    capabilities: [{}]\n    max_concurrent_tasks: {slots}\n",
            caps.join(", ")
        );
        parse_agents(&yaml, Format::Yaml).unwrap().agents.remove(0)
    }

    fn run(b: WorkflowBuilder, agents: &[AgentSpec]) -> (Workflow, Result<Schedule, Infeasible>) {
        let w = b.build_unchecked();
        let (idx, _) = DagIndex::build(&w);
        let plan = Plan::new(&w, &idx).unwrap();
        let s = simulate(&w, &idx, &plan, agents);
        (w, s)
    }

    fn t(id: &str, cap: &str, mins: u64) -> TaskBuilder {
        TaskBuilder::custom(id, id, "h")
            .capability(cap)
            .estimated_duration(Duration::from_secs(mins * 60))
    }

    #[test]
    fn one_slot_serialises_independent_tasks() {
        let (_, s) = run(
            WorkflowBuilder::new("w")
                .task(t("a", "x", 10))
                .task(t("b", "x", 20)),
            &[agent("solo", &["x"], 1)],
        );
        let s = s.unwrap();
        assert_eq!(s.makespan, Duration::from_secs(30 * 60));
        // The longer task goes first.
        assert_eq!(s.slots[1].start_ms, 0);
        assert_eq!(s.slots[0].start_ms, 20 * 60 * 1000);
        assert!((s.agents[0].utilisation - 1.0).abs() < 1e-9);
    }

    #[test]
    fn capabilities_route_tasks_and_idle_agents_lower_utilisation() {
        let (_, s) = run(
            WorkflowBuilder::new("w")
                .task(t("a", "x", 10))
                .task(t("b", "y", 30))
                .task(t("c", "x", 10).depends_on(["a"])),
            &[agent("ax", &["x"], 2), agent("ay", &["y"], 1)],
        );
        let s = s.unwrap();
        assert_eq!(s.makespan, Duration::from_secs(30 * 60));
        assert_eq!(s.slots[1].agent, 1);
        assert_eq!(s.slots[2].start_ms, 10 * 60 * 1000);
        assert_eq!(s.agents[0].tasks, 2);
        assert!(s.agents[0].utilisation < 0.5);
    }

    #[test]
    fn infeasible_tasks_are_listed() {
        let (_, s) = run(
            WorkflowBuilder::new("w")
                .task(t("a", "x", 1))
                .task(t("b", "z", 1)),
            &[agent("ax", &["x"], 1)],
        );
        assert_eq!(s.unwrap_err(), Infeasible(vec![1]));
    }
}
