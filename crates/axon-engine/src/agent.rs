//! The `Agent` trait: run one attempt of one task, report progress, honour cancellation.
//!
//! Two kinds ship: in-process agents for library users ([`FnAgent`], or any type that
//! implements [`Agent`]) and the command agent ([`crate::command::CommandAgent`]) that runs a
//! program per attempt.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axon_core::model::{ErrorType, Task, Workflow};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A boxed future, as agents return them (so agents can live behind `Arc<dyn Agent>`).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Everything an agent gets for one attempt. Serialised, this is the command agent's stdin.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRequest {
    /// The task (shared with the run's workflow: no copy per attempt).
    pub task: TaskRef,
    /// The workflow it belongs to (shared by every attempt of the run).
    pub workflow: Arc<WorkflowRef>,
    /// The run.
    pub run_id: Uuid,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Episodes from memory that may help (best first); empty until memory is configured.
    pub context: Vec<serde_json::Value>,
    /// Outputs of the prerequisite tasks, by task id.
    pub upstream: Upstream,
    /// `run_id/task_id/attempt`: lets an agent make side effects idempotent.
    pub idempotency_key: String,
    /// The attempt's Cortex session, when the run uses a Cortex server with sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cortex: Option<Arc<CortexAccess>>,
    /// The directory the task works in.
    #[serde(skip)]
    pub session_dir: PathBuf,
}

/// A task shared with the workflow it belongs to: attempts reach their task through the
/// run's `Arc<Workflow>` instead of a copy each (a `Task` holds strings, lists and JSON, and
/// copying it per task was a measurable share of a run's cost). Dereferences to [`Task`];
/// serialises as the task itself.
///
/// ```
/// use axon_core::builder::TaskBuilder;
/// use axon_engine::agent::TaskRef;
/// let task = TaskRef::from(TaskBuilder::custom("t", "T", "h").capability("x").build());
/// assert_eq!(task.id.as_str(), "t");
/// ```
#[derive(Clone)]
pub struct TaskRef(TaskRepr);

#[derive(Clone)]
enum TaskRepr {
    /// Task `index` of the workflow.
    InWorkflow(Arc<Workflow>, u32),
    /// A task of its own (for calling agents outside the engine).
    Alone(Arc<Task>),
}

impl TaskRef {
    /// Task `index` of `workflow` (the engine's dispatcher only hands out indices of its
    /// own workflow).
    pub(crate) fn in_workflow(workflow: Arc<Workflow>, index: usize) -> Self {
        debug_assert!(index < workflow.tasks.len());
        Self(TaskRepr::InWorkflow(workflow, index as u32))
    }
}

impl From<Task> for TaskRef {
    fn from(task: Task) -> Self {
        Self(TaskRepr::Alone(Arc::new(task)))
    }
}

impl From<Arc<Task>> for TaskRef {
    fn from(task: Arc<Task>) -> Self {
        Self(TaskRepr::Alone(task))
    }
}

impl std::ops::Deref for TaskRef {
    type Target = Task;

    fn deref(&self) -> &Task {
        match &self.0 {
            TaskRepr::InWorkflow(workflow, index) => &workflow.tasks[*index as usize],
            TaskRepr::Alone(task) => task,
        }
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Task::fmt(self, f)
    }
}

impl Serialize for TaskRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Task::serialize(self, serializer)
    }
}

/// The outputs of a task's prerequisites, by task id, in id order: `upstream` in the command
/// agent's stdin (a JSON object). Ids and outputs are shared with the run, not copied for
/// every attempt of every dependent (a large output used by many tasks is stored once).
///
/// ```
/// use axon_engine::agent::Upstream;
/// use serde_json::json;
/// let up: Upstream = [("b".to_owned(), json!(2)), ("a".to_owned(), json!(1))].into_iter().collect();
/// assert_eq!(up["a"], json!(1));
/// assert_eq!(up.keys().collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(serde_json::to_value(&up).unwrap(), json!({ "a": 1, "b": 2 }));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Upstream(Vec<(Arc<str>, Arc<serde_json::Value>)>);

impl Upstream {
    /// From shared ids and outputs, in any order (sorted here).
    pub(crate) fn from_shared(
        entries: impl Iterator<Item = (Arc<str>, Arc<serde_json::Value>)>,
    ) -> Self {
        let mut entries: Vec<_> = entries.collect();
        if entries.len() > 1 {
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Self(entries)
    }

    /// The output of prerequisite `id` (`null` if it produced none), if `id` is one.
    pub fn get(&self, id: &str) -> Option<&serde_json::Value> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(id))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// Number of prerequisites.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the task has no prerequisite.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Prerequisite ids and their outputs, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Prerequisite ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// A copy as an ordinary map.
    pub fn to_map(&self) -> BTreeMap<String, serde_json::Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }
}

impl std::ops::Index<&str> for Upstream {
    type Output = serde_json::Value;

    /// # Panics
    ///
    /// When `id` is not a prerequisite (like a map's index).
    fn index(&self, id: &str) -> &serde_json::Value {
        match self.get(id) {
            Some(v) => v,
            None => panic!("`{id}` is not a prerequisite of this task"),
        }
    }
}

impl FromIterator<(String, serde_json::Value)> for Upstream {
    fn from_iter<I: IntoIterator<Item = (String, serde_json::Value)>>(iter: I) -> Self {
        let mut map = BTreeMap::new();
        map.extend(iter);
        Self(
            map.into_iter()
                .map(|(k, v)| (Arc::from(k), Arc::new(v)))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// How an attempt reaches its Cortex session: serialised as the command agent's
/// `cortex: {url, session_id, workspace_id}` (and `AXON_CORTEX_*` in its environment).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CortexAccess {
    /// The Cortex server's base URL.
    pub url: String,
    /// The attempt's Cortex session.
    pub session_id: String,
    /// The Cortex workspace the session is on.
    pub workspace_id: String,
    /// The API key, only for agents whose agents file opts in (`cortex_api_key: true`);
    /// never serialised, never shown by `Debug`.
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl CortexAccess {
    /// The same access without the API key.
    pub fn without_key(&self) -> Self {
        Self {
            api_key: None,
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for CortexAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CortexAccess")
            .field("url", &self.url)
            .field("session_id", &self.session_id)
            .field("workspace_id", &self.workspace_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The workflow an attempt belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowRef {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// What a successful attempt produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptOutput {
    /// The task's output, passed to dependents as `upstream`.
    pub output: Option<serde_json::Value>,
    /// The last lines of the agent's log.
    pub log_tail: Vec<String>,
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    /// The attempt failed; `kind` decides whether the retry policy retries it.
    #[error("{message}")]
    Failed {
        /// Failure class.
        kind: ErrorType,
        /// What happened, for people.
        message: String,
        /// The last lines of the agent's log.
        log_tail: Vec<String>,
    },
    /// The attempt was cancelled (run cancelled, or fail-fast); never retried.
    #[error("cancelled")]
    Cancelled,
}

impl AttemptError {
    /// A failure of class `kind`.
    pub fn failed(kind: ErrorType, message: impl Into<String>) -> Self {
        Self::Failed {
            kind,
            message: message.into(),
            log_tail: Vec::new(),
        }
    }

    /// The attempt ran out of time.
    pub fn timed_out(after: Duration) -> Self {
        Self::failed(
            ErrorType::Timeout,
            format!("timed out after {}", axon_core::duration::format(after)),
        )
    }

    /// The failure class, or `None` for a cancellation.
    pub fn kind(&self) -> Option<ErrorType> {
        match self {
            Self::Failed { kind, .. } => Some(*kind),
            Self::Cancelled => None,
        }
    }
}

/// Where an agent reports progress (0.0..=1.0) during an attempt.
#[derive(Debug, Clone)]
pub struct Progress {
    pub(crate) tx: Option<UnboundedSender<crate::run::Msg>>,
    pub(crate) task: u32,
    pub(crate) attempt: u32,
}

impl Progress {
    /// A sink that drops reports (for calling agents outside the engine).
    pub fn discard() -> Self {
        Self {
            tx: None,
            task: 0,
            attempt: 0,
        }
    }

    /// Tells the engine the process id of the agent process started for this attempt (the
    /// leader of its own process group), so a later `resume` can stop it if this engine dies.
    pub fn started_process(&self, pid: u32) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(crate::run::Msg::Spawned {
                task: self.task,
                attempt: self.attempt,
                pid,
            });
        }
    }

    /// Reports progress; values are clamped to 0..=1, non-numbers ignored.
    pub fn report(&self, fraction: f64) {
        if !fraction.is_finite() {
            return;
        }
        if let Some(tx) = &self.tx {
            // The run may already be over; then nobody needs the report.
            let _ = tx.send(crate::run::Msg::Progress {
                task: self.task,
                attempt: self.attempt,
                value: fraction.clamp(0.0, 1.0),
            });
        }
    }
}

/// How the engine drives an agent's attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Each attempt runs in a tokio task of its own, so attempts spread over the runtime's
    /// worker threads. Right for agents that compute between their awaits, and the default.
    #[default]
    Spawned,
    /// The run's dispatcher polls the attempts itself, beside its own work: no task to
    /// create, no hop between threads, and the outcome is handled the moment it is ready.
    /// For agents whose futures only wait (on a network call, a timer, a channel) and return
    /// quickly from every poll: a poll that computes for long delays every other task of the
    /// run. A panic while polling still only fails its attempt.
    Inline,
}

/// Something that can run task attempts.
pub trait Agent: Send + Sync + 'static {
    /// Runs one attempt. The future must end soon after `cancel` fires (returning
    /// [`AttemptError::Cancelled`]), stopping any work it started.
    fn execute(
        &self,
        request: AttemptRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> BoxFuture<Result<AttemptOutput, AttemptError>>;

    /// How the engine drives this agent's attempts ([`Execution::Spawned`] unless the agent
    /// says otherwise).
    fn execution(&self) -> Execution {
        Execution::Spawned
    }
}

/// An in-process agent made from a closure.
///
/// ```
/// use axon_engine::agent::{AttemptOutput, FnAgent};
/// let agent = FnAgent::new(|req, progress, _cancel| async move {
///     progress.report(0.5);
///     Ok(AttemptOutput {
///         output: Some(serde_json::json!({ "task": req.task.id.as_str() })),
///         ..AttemptOutput::default()
///     })
/// });
/// # let _ = agent;
/// ```
pub struct FnAgent<F> {
    f: F,
    execution: Execution,
}

impl<F> FnAgent<F> {
    /// Wraps `f` (the bounds on `new` let closures infer their argument types). Its attempts
    /// are [`Execution::Spawned`].
    pub fn new<Fut>(f: F) -> Self
    where
        F: Fn(AttemptRequest, Progress, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AttemptOutput, AttemptError>> + Send + 'static,
    {
        Self {
            f,
            execution: Execution::Spawned,
        }
    }

    /// Has the run's dispatcher poll this agent's attempts itself ([`Execution::Inline`]):
    /// the cheapest way to run many short attempts whose futures only wait.
    ///
    /// ```
    /// use axon_engine::agent::{Agent, AttemptOutput, Execution, FnAgent};
    /// let agent = FnAgent::new(|_, _, _| async { Ok(AttemptOutput::default()) }).inline();
    /// assert_eq!(agent.execution(), Execution::Inline);
    /// ```
    #[must_use]
    pub fn inline(mut self) -> Self {
        self.execution = Execution::Inline;
        self
    }
}

impl<F, Fut> Agent for FnAgent<F>
where
    F: Fn(AttemptRequest, Progress, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AttemptOutput, AttemptError>> + Send + 'static,
{
    fn execute(
        &self,
        request: AttemptRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> BoxFuture<Result<AttemptOutput, AttemptError>> {
        Box::pin((self.f)(request, progress, cancel))
    }

    fn execution(&self) -> Execution {
        self.execution
    }
}
