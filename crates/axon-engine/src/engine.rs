//! The engine's public face: start, resume and cancel runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axon_core::format::{Format, parse_workflow};
use axon_core::model::{RunStatus, Workflow};
use axon_core::validate::{InvalidWorkflow, validate};
use axon_store::{RunRecord, Store, TaskRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::EventBus;
use crate::cortex::{CortexBridge, RunInfo};
use crate::error::EngineError;
use crate::lease::{Holder, LEASE_TTL, is_live};
use crate::pool::AgentPool;
use crate::report::RunReport;
use crate::run::{Bridges, RunContext, RunLoop, now_ms};

/// The files a run came from, kept in the store so `resume` runs exactly the same thing.
#[derive(Debug, Clone)]
pub struct RunSource {
    /// The workflow file's text.
    pub workflow: String,
    /// Its format.
    pub workflow_format: Format,
    /// The agents file's text, if any.
    pub agents: Option<String>,
    /// Its format.
    pub agents_format: Option<Format>,
    /// The directory it was in.
    pub agents_dir: Option<PathBuf>,
}

/// How to run a workflow.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where tasks work (the command agent's working directory).
    pub workspace: PathBuf,
    /// The source files, recorded for resume (needed to resume without passing the
    /// workflow again).
    pub source: Option<RunSource>,
    /// With a bridge whose sessions use git: the branch to bring up to the run's integration
    /// branch when every task succeeded (fast-forward or merge; refused if it is checked
    /// out with local changes).
    pub merge_into: Option<String>,
}

/// A run in progress.
pub struct RunHandle {
    /// Its id.
    pub run_id: Uuid,
    cancel: CancellationToken,
    join: JoinHandle<Result<RunReport, EngineError>>,
}

impl RunHandle {
    /// Asks the run to stop: agents are told to stop (a command agent's process group gets
    /// SIGTERM, then SIGKILL), tasks not started are cancelled.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancellation token (cancel it to cancel the run).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for the run to end.
    ///
    /// # Errors
    ///
    /// When the store fails or the run was lost to another engine.
    pub async fn wait(self) -> Result<RunReport, EngineError> {
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(EngineError::Internal(format!(
                "the dispatcher stopped: {e}"
            ))),
        }
    }
}

/// Runs workflows on a pool of agents.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use axon_core::agents::parse_agents;
/// use axon_core::builder::{TaskBuilder, WorkflowBuilder};
/// use axon_core::format::Format;
/// use axon_engine::agent::{AttemptOutput, FnAgent};
/// use axon_engine::pool::{AgentPool, PoolAgent};
/// use axon_engine::{Engine, RunOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = parse_agents("agents:\n  - id: me\n    capabilities: [x]\n", Format::Yaml)?
///     .agents
///     .remove(0);
/// let agent = FnAgent::new(|req, _progress, _cancel| async move {
///     Ok(AttemptOutput { output: Some(serde_json::json!(req.task.id.as_str())), ..Default::default() })
/// });
/// let engine = Engine::new(AgentPool::new(vec![PoolAgent { spec, agent: Arc::new(agent) }]));
/// let workflow = WorkflowBuilder::new("demo")
///     .task(TaskBuilder::custom("a", "A", "h").capability("x").estimated_duration(Duration::from_secs(1)))
///     .task(TaskBuilder::custom("b", "B", "h").capability("x").estimated_duration(Duration::from_secs(1)).depends_on(["a"]))
///     .build()?;
/// let report = engine.run(workflow, RunOptions::default()).await?;
/// assert_eq!(report.status.as_str(), "succeeded");
/// # Ok(()) }
/// ```
pub struct Engine {
    pool: AgentPool,
    bus: EventBus,
    store: Option<Arc<dyn Store>>,
    cancel: CancellationToken,
    holder: Holder,
    lease_ttl: Duration,
    cortex: Option<Arc<dyn CortexBridge>>,
}

impl Engine {
    /// An engine on these agents, keeping state in memory only.
    pub fn new(pool: AgentPool) -> Self {
        Self {
            pool,
            bus: EventBus::new(),
            store: None,
            cancel: CancellationToken::new(),
            holder: Holder::this_process(),
            lease_ttl: LEASE_TTL,
            cortex: None,
        }
    }

    /// Gives runs sessions, memory and tracking through `bridge` (for example
    /// [`LocalCortex`](crate::cortex::LocalCortex): git worktrees, episodes and tracking in
    /// the store). Without one, tasks work in the workspace itself and get no context.
    pub fn with_cortex(mut self, bridge: Arc<dyn CortexBridge>) -> Self {
        self.cortex = Some(bridge);
        self
    }

    /// Opens the bridge for a run, if the engine has one.
    async fn open_bridge(
        &self,
        run_id: Uuid,
        workflow: &Arc<Workflow>,
        estimated: Duration,
        workspace: &std::path::Path,
        resumed: bool,
    ) -> Result<Option<Bridges>, EngineError> {
        let Some(cortex) = &self.cortex else {
            return Ok(None);
        };
        let info = RunInfo {
            run_id,
            workflow_name: workflow.name.clone(),
            tasks: workflow
                .tasks
                .iter()
                .map(|t| (t.id.to_string(), t.name.clone()))
                .collect(),
            workflow: Arc::clone(workflow),
            estimated,
            workspace: if workspace.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                workspace.to_path_buf()
            },
            resumed,
        };
        let run = cortex.open_run(&info).await.map_err(EngineError::Bridge)?;
        Ok(Some(Bridges {
            cortex: Arc::clone(cortex),
            run,
        }))
    }

    /// Makes every transition durable in `store` (required for resume and cancel-by-id).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets how long a lease lasts without renewal.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The event bus; subscribe before starting a run to see all of its events.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The agent pool.
    pub fn pool(&self) -> &AgentPool {
        &self.pool
    }

    /// Cancelling this token cancels every run of the engine.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Validates `workflow`, checks that every task has a capable agent, records the run and
    /// starts it.
    ///
    /// # Errors
    ///
    /// An invalid workflow, a task no agent can run, or a store failure; nothing runs then.
    pub async fn start(
        &self,
        workflow: Workflow,
        opts: RunOptions,
    ) -> Result<RunHandle, EngineError> {
        let (index, plan) = checked(&workflow)?;
        let makespan = plan.makespan;
        let run_id = Uuid::now_v7();
        let records: Vec<TaskRecord> = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskRecord::pending(t.id.as_str(), i as u32, t.name.clone()))
            .collect();
        let created_at_ms = now_ms();
        let workflow = Arc::new(workflow);
        let cancel = self.cancel.child_token();
        let run_loop = RunLoop::new(RunContext {
            run_id,
            workflow: Arc::clone(&workflow),
            index,
            plan,
            pool: self.pool.clone(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            holder: self.store.as_ref().map(|_| self.holder.clone()),
            lease_ttl: self.lease_ttl,
            cancel: cancel.clone(),
            workspace: opts.workspace.clone(),
            records,
            created_at_ms,
            resumed: false,
            bridge: None,
            merge_into: None,
        })?;
        if let Some(store) = &self.store {
            let source = opts.source.as_ref();
            let record = RunRecord {
                run_id,
                workflow_id: workflow.id.to_string(),
                workflow_name: workflow.name.clone(),
                status: RunStatus::Running,
                created_at_ms,
                finished_at_ms: None,
                workspace: opts.workspace.display().to_string(),
                workflow_source: source.map(|s| s.workflow.clone()).unwrap_or_default(),
                workflow_format: source
                    .map_or("none", |s| format_name(s.workflow_format))
                    .to_owned(),
                agents_source: source.and_then(|s| s.agents.clone()),
                agents_format: source
                    .and_then(|s| s.agents_format)
                    .map(|f| format_name(f).to_owned()),
                agents_dir: source
                    .and_then(|s| s.agents_dir.as_ref())
                    .map(|d| d.display().to_string()),
                cancel_requested: false,
            };
            store
                .create_run(
                    &record,
                    &run_loop.records(),
                    &self.holder.lease(self.lease_ttl),
                )
                .await?;
        }
        let bridge = match self
            .open_bridge(run_id, &workflow, makespan, &opts.workspace, false)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                // Nothing ran: the run is recorded as failed, not left for `resume`.
                if let Some(store) = &self.store {
                    let batch = axon_store::Batch {
                        run_status: Some((RunStatus::Failed, Some(now_ms()))),
                        ..Default::default()
                    };
                    let _ = store.commit(run_id, &batch).await;
                    let _ = store
                        .release_lease(run_id, &self.holder.host, self.holder.pid)
                        .await;
                }
                return Err(e);
            }
        };
        let run_loop = run_loop.with_bridge(bridge, opts.merge_into.clone());
        Ok(RunHandle {
            run_id,
            cancel,
            join: tokio::spawn(run_loop.run()),
        })
    }

    /// Starts `workflow` and waits for it to end.
    ///
    /// # Errors
    ///
    /// As [`Engine::start`] and [`RunHandle::wait`].
    pub async fn run(
        &self,
        workflow: Workflow,
        opts: RunOptions,
    ) -> Result<RunReport, EngineError> {
        self.start(workflow, opts).await?.wait().await
    }

    /// Continues a run whose engine died: tasks that succeeded never run again; tasks that
    /// were running start over with the next attempt number. The workflow is read back from
    /// the store unless given.
    ///
    /// # Errors
    ///
    /// No store, no such run, a finished run, a run held by a live engine, or an unreadable
    /// stored workflow.
    pub async fn resume(
        &self,
        run_id: Uuid,
        workflow: Option<Workflow>,
        workspace: Option<PathBuf>,
        merge_into: Option<String>,
    ) -> Result<RunHandle, EngineError> {
        let store = self
            .store
            .clone()
            .ok_or_else(|| EngineError::Internal("resume needs a store".into()))?;
        let run = store
            .run(run_id)
            .await?
            .ok_or(EngineError::NoSuchRun(run_id))?;
        if run.status.is_terminal() {
            return Err(EngineError::AlreadyFinished {
                run_id,
                status: run.status,
            });
        }
        let current = store.lease(run_id).await?;
        if let Some(l) = &current
            && is_live(l)
            && !(l.host == self.holder.host && l.pid == self.holder.pid)
        {
            return Err(held(run_id, l));
        }
        if !store
            .swap_lease(run_id, current.as_ref(), &self.holder.lease(self.lease_ttl))
            .await?
        {
            let now = store.lease(run_id).await?;
            return Err(match now {
                Some(l) => held(run_id, &l),
                None => EngineError::Internal("the lease changed while resuming".into()),
            });
        }
        let workflow = match workflow {
            Some(w) => w,
            None => read_stored_workflow(&run)?,
        };
        let (index, plan) = checked(&workflow)?;
        let makespan = plan.makespan;
        let workflow = Arc::new(workflow);
        let stored = store.tasks(run_id).await?;
        // Agents the dead engine left running on this host would race their next attempt.
        if current.as_ref().is_none_or(|l| l.host == self.holder.host) {
            for t in &stored {
                if let (Some(pid), false) = (t.agent_pid, t.status.is_terminal())
                    && crate::os::stop_stale_agent(pid, run_id, &t.task_id)
                {
                    tracing::info!(task = %t.task_id, pid, "stopped an agent left by the previous engine");
                }
            }
        }
        let mut stored: std::collections::HashMap<String, TaskRecord> =
            stored.into_iter().map(|r| (r.task_id.clone(), r)).collect();
        let records: Vec<TaskRecord> = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                stored
                    .remove(t.id.as_str())
                    .unwrap_or_else(|| TaskRecord::pending(t.id.as_str(), i as u32, t.name.clone()))
            })
            .collect();
        let cancel = self.cancel.child_token();
        let workspace = workspace.unwrap_or_else(|| PathBuf::from(&run.workspace));
        let bridge = self
            .open_bridge(run_id, &workflow, makespan, &workspace, true)
            .await?;
        let run_loop = RunLoop::new(RunContext {
            run_id,
            workflow,
            index,
            plan,
            pool: self.pool.clone(),
            bus: self.bus.clone(),
            store: Some(store),
            holder: Some(self.holder.clone()),
            lease_ttl: self.lease_ttl,
            cancel: cancel.clone(),
            workspace,
            records,
            created_at_ms: run.created_at_ms,
            resumed: true,
            bridge,
            merge_into,
        })?;
        Ok(RunHandle {
            run_id,
            cancel,
            join: tokio::spawn(run_loop.run()),
        })
    }
}

/// Validates a workflow for running: its DAG index and plan, or every problem.
fn checked(workflow: &Workflow) -> Result<(axon_core::DagIndex, axon_core::Plan), EngineError> {
    let v = validate(workflow, None);
    match v.plan {
        Some(plan) if v.is_valid() => Ok((v.index, plan)),
        _ => Err(InvalidWorkflow {
            diagnostics: v.diagnostics,
        }
        .into()),
    }
}

fn held(run_id: Uuid, l: &axon_store::Lease) -> EngineError {
    EngineError::Held {
        run_id,
        host: l.host.clone(),
        pid: l.pid,
        expires: crate::time::rfc3339(l.expires_at_ms),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
    }
}

/// Parses the workflow a run was started with.
///
/// # Errors
///
/// When the run has no stored workflow or it no longer parses.
pub fn read_stored_workflow(run: &RunRecord) -> Result<Workflow, EngineError> {
    let format = match run.workflow_format.as_str() {
        "yaml" => Format::Yaml,
        "json" => Format::Json,
        other => {
            return Err(EngineError::StoredWorkflow {
                run_id: run.run_id,
                reason: format!(
                    "it was started without a workflow file (format `{other}`); pass the workflow to resume"
                ),
            });
        }
    };
    parse_workflow(&run.workflow_source, format)
        .map(|p| p.workflow)
        .map_err(|d| EngineError::StoredWorkflow {
            run_id: run.run_id,
            reason: d.to_string(),
        })
}
