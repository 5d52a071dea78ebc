//! The agent pool (the spec's `AgentPool`): which agents exist, what each can do, how much of
//! each is free, and statistics.
//!
//! The pool belongs to the engine, not to a run. [`AgentPool::try_acquire`] hands out a
//! [`PoolLease`] — a slot and the task's cpu/memory on the least loaded capable agent — and
//! dropping the lease gives them back and wakes whoever waits for capacity
//! ([`AgentPool::changes`]). Each agent has its own small lock, held for a few field updates
//! and never across an `.await`; there is no pool-wide lock. A release costs a counter bump,
//! and a wake-up only while someone waits (most releases have no one to wake).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axon_core::agents::AgentSpec;
use axon_core::model::{ResourceRequirements, Task};
use tokio::sync::Notify;
// Busy time comes from tokio's clock (paused in tests), like the run's durations.
use tokio::time::Instant;

use crate::agent::Agent;

/// One agent of the pool.
pub struct PoolAgent {
    /// What it declares.
    pub spec: AgentSpec,
    /// How it runs attempts.
    pub agent: Arc<dyn Agent>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    running: u32,
    cpu_used: u32,
    memory_used: u64,
    tasks_run: u64,
    failures: u64,
    busy: Duration,
}

struct Slot {
    agent: PoolAgent,
    load: Mutex<Load>,
}

struct Inner {
    slots: Vec<Slot>,
    /// Bumped on every release.
    version: AtomicU64,
    /// How many [`PoolChanges::changed`] calls are waiting.
    waiters: AtomicUsize,
    /// Wakes them.
    notify: Notify,
    created: Instant,
}

/// Per-agent statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStats {
    /// The agent's id.
    pub id: String,
    /// Attempts running now.
    pub running: u32,
    /// Attempts finished.
    pub tasks_run: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Time spent running attempts (summed over slots).
    pub busy: Duration,
    /// `busy / (age of the pool × max_concurrent_tasks)`.
    pub utilisation: f64,
}

/// The agents of an engine and their free capacity.
#[derive(Clone)]
pub struct AgentPool {
    inner: Arc<Inner>,
}

impl AgentPool {
    /// A pool of these agents.
    pub fn new(agents: Vec<PoolAgent>) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: agents
                    .into_iter()
                    .map(|agent| Slot {
                        agent,
                        load: Mutex::new(Load::default()),
                    })
                    .collect(),
                version: AtomicU64::new(0),
                waiters: AtomicUsize::new(0),
                notify: Notify::new(),
                created: Instant::now(),
            }),
        }
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    /// Whether the pool has no agent.
    pub fn is_empty(&self) -> bool {
        self.inner.slots.is_empty()
    }

    /// The agents' declarations.
    pub fn specs(&self) -> Vec<AgentSpec> {
        self.inner
            .slots
            .iter()
            .map(|s| s.agent.spec.clone())
            .collect()
    }

    /// Indices of the agents that could ever run `task` (capabilities and total resources).
    pub fn capable_of(&self, task: &Task) -> Vec<u32> {
        self.inner
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.agent.spec.can_run(task))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// A watcher of released capacity: [`PoolChanges::changed`] returns once capacity was
    /// released after the watcher last looked.
    pub fn changes(&self) -> PoolChanges {
        PoolChanges {
            seen: self.inner.version.load(Ordering::SeqCst),
            pool: self.clone(),
        }
    }

    /// Takes a slot and `need` on the least loaded of `candidates` that has room, if any.
    pub fn try_acquire(&self, candidates: &[u32], need: ResourceRequirements) -> Option<PoolLease> {
        let mut best: Option<(f64, u32)> = None;
        for &c in candidates {
            let slot = &self.inner.slots[c as usize];
            let load = lock(&slot.load);
            if fits(&slot.agent.spec, &load, need) {
                let ratio = f64::from(load.running)
                    / f64::from(slot.agent.spec.max_concurrent_tasks.max(1));
                if best.is_none_or(|(r, _)| ratio < r) {
                    best = Some((ratio, c));
                }
            }
        }
        // Take it, re-checking: another run may have taken the room meanwhile.
        let (_, chosen) = best?;
        let slot = &self.inner.slots[chosen as usize];
        let mut load = lock(&slot.load);
        if !fits(&slot.agent.spec, &load, need) {
            return None;
        }
        load.running += 1;
        load.cpu_used += need.cpu_cores;
        load.memory_used += need.memory_mb;
        Some(PoolLease {
            pool: self.clone(),
            agent: chosen,
            need,
            started: Instant::now(),
            failed: false,
        })
    }

    /// Statistics of every agent.
    pub fn stats(&self) -> Vec<AgentStats> {
        let age = self.inner.created.elapsed().as_secs_f64();
        self.inner
            .slots
            .iter()
            .map(|s| {
                let l = *lock(&s.load);
                let capacity = age * f64::from(s.agent.spec.max_concurrent_tasks.max(1));
                AgentStats {
                    id: s.agent.spec.id.to_string(),
                    running: l.running,
                    tasks_run: l.tasks_run,
                    failures: l.failures,
                    busy: l.busy,
                    utilisation: if capacity > 0.0 {
                        (l.busy.as_secs_f64() / capacity).min(1.0)
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }

    fn release(&self, agent: u32, need: ResourceRequirements, busy: Duration, failed: bool) {
        {
            let mut load = lock(&self.inner.slots[agent as usize].load);
            load.running -= 1;
            load.cpu_used -= need.cpu_cores;
            load.memory_used -= need.memory_mb;
            load.tasks_run += 1;
            load.failures += u64::from(failed);
            load.busy += busy;
        }
        // Paired with `PoolChanges::changed` (both SeqCst): either the waiter sees the new
        // version, or this sees the waiter and wakes it.
        self.inner.version.fetch_add(1, Ordering::SeqCst);
        if self.inner.waiters.load(Ordering::SeqCst) > 0 {
            self.inner.notify.notify_waiters();
        }
    }
}

/// Watches an [`AgentPool`] for released capacity.
pub struct PoolChanges {
    pool: AgentPool,
    seen: u64,
}

impl PoolChanges {
    /// Whether capacity was released since this watcher last looked.
    pub fn has_changed(&self) -> bool {
        self.pool.inner.version.load(Ordering::SeqCst) != self.seen
    }

    /// Marks everything released so far as seen.
    pub fn mark_seen(&mut self) {
        self.seen = self.pool.inner.version.load(Ordering::SeqCst);
    }

    /// Waits until capacity is released after this watcher last looked (at once if it
    /// already was), then marks it seen. Cancel-safe.
    pub async fn changed(&mut self) {
        let inner = Arc::clone(&self.pool.inner);
        let notified = inner.notify.notified();
        tokio::pin!(notified);
        // Registered before the version is read, so a release in between still wakes it.
        notified.as_mut().enable();
        inner.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = WaiterGuard(&inner.waiters);
        let now = inner.version.load(Ordering::SeqCst);
        if now == self.seen {
            notified.await;
        }
        self.mark_seen();
    }
}

/// Counts a waiter out when its wait ends or is dropped.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fits(spec: &AgentSpec, load: &Load, need: ResourceRequirements) -> bool {
    load.running < spec.max_concurrent_tasks
        && load.cpu_used + need.cpu_cores <= spec.resources.cpu_cores
        && load.memory_used + need.memory_mb <= spec.resources.memory_mb
        && (!need.gpu || spec.resources.gpu)
}

/// The per-agent lock guards plain counters; a panic elsewhere cannot leave them half
/// updated, so a poisoned lock is still usable.
fn lock(m: &Mutex<Load>) -> MutexGuard<'_, Load> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A slot on an agent, held while an attempt runs. Dropping it frees the slot.
pub struct PoolLease {
    pool: AgentPool,
    agent: u32,
    need: ResourceRequirements,
    started: Instant,
    failed: bool,
}

impl PoolLease {
    /// Index of the agent in the pool.
    pub fn agent_index(&self) -> u32 {
        self.agent
    }

    /// The agent's declaration.
    pub fn spec(&self) -> &AgentSpec {
        &self.pool.inner.slots[self.agent as usize].agent.spec
    }

    /// The agent itself.
    pub fn agent(&self) -> Arc<dyn Agent> {
        Arc::clone(&self.pool.inner.slots[self.agent as usize].agent.agent)
    }

    /// Records that the attempt failed (for the agent's statistics).
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }
}

impl Drop for PoolLease {
    fn drop(&mut self) {
        self.pool
            .release(self.agent, self.need, self.started.elapsed(), self.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AttemptOutput, FnAgent};
    use axon_core::agents::parse_agents;
    use axon_core::format::Format;

    fn pool(yaml: &str) -> AgentPool {
        let specs = parse_agents(yaml, Format::Yaml).unwrap().agents;
        AgentPool::new(
            specs
                .into_iter()
                .map(|spec| PoolAgent {
                    spec,
                    agent: Arc::new(FnAgent::new(|_, _, _| async {
                        Ok(AttemptOutput::default())
                    })),
                })
                .collect(),
        )
    }

    const NEED: ResourceRequirements = ResourceRequirements {
        cpu_cores: 1,
        memory_mb: 100,
        gpu: false,
    };

    #[test]
    fn slots_are_never_exceeded_and_come_back_on_drop() {
        let p = pool("agents:\n  - id: a\n    capabilities: [x]\n    max_concurrent_tasks: 2\n");
        let l1 = p.try_acquire(&[0], NEED).unwrap();
        let _l2 = p.try_acquire(&[0], NEED).unwrap();
        assert!(p.try_acquire(&[0], NEED).is_none());
        let mut changes = p.changes();
        changes.mark_seen();
        assert!(!changes.has_changed());
        drop(l1);
        assert!(changes.has_changed());
        let _l3 = p.try_acquire(&[0], NEED).unwrap();
        assert_eq!(p.stats()[0].tasks_run, 1);
        assert_eq!(p.stats()[0].running, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_wakes_a_waiter_and_an_earlier_one_is_not_missed() {
        let p = pool("agents:\n  - id: a\n    capabilities: [x]\n    max_concurrent_tasks: 1\n");
        let lease = p.try_acquire(&[0], NEED).unwrap();
        let mut changes = p.changes();
        // Released before anyone waits: the wait returns at once.
        drop(lease);
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .expect("an earlier release is seen");
        assert!(!changes.has_changed());
        // Released while waiting, from another task: the waiter wakes, many times over.
        for _ in 0..200 {
            let lease = p.try_acquire(&[0], NEED).unwrap();
            changes.mark_seen();
            let releaser = tokio::spawn(async move {
                tokio::task::yield_now().await;
                drop(lease);
            });
            tokio::time::timeout(Duration::from_secs(10), changes.changed())
                .await
                .expect("the waiter is woken");
            releaser.await.unwrap();
            assert!(p.try_acquire(&[0], NEED).is_some());
        }
    }

    #[test]
    fn the_least_loaded_capable_agent_wins() {
        let p = pool(
            "agents:\n  - id: a\n    capabilities: [x]\n    max_concurrent_tasks: 4\n  - id: b\n    capabilities: [x]\n    max_concurrent_tasks: 4\n",
        );
        let l1 = p.try_acquire(&[0, 1], NEED).unwrap();
        let l2 = p.try_acquire(&[0, 1], NEED).unwrap();
        assert_ne!(l1.agent_index(), l2.agent_index());
    }

    #[tokio::test(start_paused = true)]
    async fn busy_time_is_measured_on_the_tokio_clock() {
        let p = pool("agents:\n  - id: a\n    capabilities: [x]\n");
        let lease = p.try_acquire(&[0], NEED).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(lease);
        assert_eq!(p.stats()[0].busy, Duration::from_secs(3));
    }

    #[test]
    fn resources_are_reserved() {
        let p = pool(
            "agents:\n  - id: a\n    capabilities: [x]\n    max_concurrent_tasks: 8\n    resources: { cpu_cores: 3, memory_mb: 1000 }\n",
        );
        let big = ResourceRequirements {
            cpu_cores: 2,
            memory_mb: 10,
            gpu: false,
        };
        let _l = p.try_acquire(&[0], big).unwrap();
        assert!(p.try_acquire(&[0], big).is_none(), "only 1 core left");
        assert!(p.try_acquire(&[0], NEED).is_some());
        let gpu = ResourceRequirements { gpu: true, ..NEED };
        assert!(p.try_acquire(&[0], gpu).is_none());
    }
}
