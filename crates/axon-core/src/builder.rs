//! The builder DSL of the specification: [`WorkflowBuilder`] and [`TaskBuilder`].
//!
//! A workflow built here is the same value as the one read from an equivalent file; both
//! go through the same validator.
//!
//! ```
//! use std::time::Duration;
//! use axon_core::builder::{TaskBuilder, WorkflowBuilder};
//! use axon_core::model::{Capability, TestType};
//!
//! let workflow = WorkflowBuilder::new("Small feature")
//!     .timeout(Duration::from_secs(2 * 3600))
//!     .task(
//!         TaskBuilder::development("implement", "Implement it", "rust")
//!             .capability(Capability::CodeGeneration)
//!             .estimated_duration(Duration::from_secs(3600)),
//!     )
//!     .task(
//!         TaskBuilder::testing("test", "Test it", TestType::Unit, 0.8)
//!             .capability(Capability::Testing)
//!             .estimated_duration(Duration::from_secs(1800))
//!             .depends_on(["implement"]),
//!     )
//!     .build()?;
//! assert_eq!(workflow.tasks.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use crate::id::{self, TaskId, WorkflowId};
use crate::model::{
    Capability, DEFAULT_WORKFLOW_TIMEOUT, DocFormat, FailurePolicy, OptimizationLevel, Priority,
    ResourceRequirements, ReviewType, SessionScope, Task, TaskRequirements, TaskType, TestType,
    Workflow,
};
use crate::retry::{RetryOverride, RetryPolicy};
use crate::validate::{InvalidWorkflow, validate};

/// The estimate a [`TaskBuilder`] starts with (the spec's five minutes).
pub const DEFAULT_ESTIMATE: Duration = Duration::from_secs(300);

/// Builds a [`Workflow`].
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    workflow: Workflow,
}

impl WorkflowBuilder {
    /// A workflow named `name`, with the spec's defaults: medium priority, one hour, the
    /// default retry policy, failure policy `continue`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            workflow: Workflow {
                id: WorkflowId::new(id::slugify(&name)),
                name,
                description: String::new(),
                priority: Priority::Medium,
                timeout: DEFAULT_WORKFLOW_TIMEOUT,
                retry: RetryPolicy::default(),
                failure_policy: FailurePolicy::Continue,
                context_limit: crate::model::DEFAULT_CONTEXT_LIMIT,
                tasks: Vec::new(),
            },
        }
    }

    /// Sets the id (default: derived from the name).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.workflow.id = WorkflowId::new(id);
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.workflow.description = description.into();
        self
    }

    /// Sets how many past episodes each agent gets as `context` (0: none).
    pub fn context_limit(mut self, limit: u32) -> Self {
        self.workflow.context_limit = limit;
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.workflow.priority = priority;
        self
    }

    /// Sets the deadline of the whole run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.workflow.timeout = timeout;
        self
    }

    /// Retries after the first attempt for every task (`max_retries` in files).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.workflow.retry.max_attempts = retries.saturating_add(1);
        self
    }

    /// Overrides fields of the workflow-wide retry policy.
    pub fn retry(mut self, retry: &RetryOverride) -> Self {
        self.workflow.retry = self.workflow.retry.overridden_by(retry);
        self
    }

    /// Sets the failure policy.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.workflow.failure_policy = policy;
        self
    }

    /// Adds a task.
    pub fn task(mut self, task: impl Into<Task>) -> Self {
        self.workflow.tasks.push(task.into());
        self
    }

    /// Adds prerequisites to an already added task (the spec's form). Unknown task ids are
    /// left for [`WorkflowBuilder::build`] to report.
    pub fn depends_on<I, S>(mut self, task: impl AsRef<str>, prerequisites: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<TaskId>,
    {
        if let Some(t) = self
            .workflow
            .tasks
            .iter_mut()
            .find(|t| t.id.as_str() == task.as_ref())
        {
            t.depends_on
                .extend(prerequisites.into_iter().map(Into::into));
        }
        self
    }

    /// Validates and returns the workflow.
    ///
    /// # Errors
    ///
    /// Every problem the validator finds, when any is an error.
    pub fn build(self) -> Result<Workflow, InvalidWorkflow> {
        let v = validate(&self.workflow, None);
        if v.is_valid() {
            Ok(self.workflow)
        } else {
            Err(InvalidWorkflow {
                diagnostics: v.diagnostics,
            })
        }
    }

    /// Returns the workflow without validating it (for tests and tools that validate later).
    pub fn build_unchecked(self) -> Workflow {
        self.workflow
    }
}

/// Builds a [`Task`].
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    task: Task,
}

impl TaskBuilder {
    /// A task with the given id, name and type, the spec's default estimate (5 minutes) and
    /// resources (1 core, 512 MiB, no GPU), and no capabilities yet.
    pub fn new(id: impl Into<String>, name: impl Into<String>, task_type: TaskType) -> Self {
        Self {
            task: Task {
                id: TaskId::new(id),
                name: name.into(),
                description: String::new(),
                task_type,
                requirements: TaskRequirements {
                    capabilities: Vec::new(),
                    estimated_duration: DEFAULT_ESTIMATE,
                    resources: ResourceRequirements::default(),
                },
                scope: SessionScope::default(),
                depends_on: Vec::new(),
                timeout: None,
                retry: None,
                priority: None,
                context_limit: None,
                merge_strategy: None,
                input: serde_json::Value::Null,
            },
        }
    }

    /// A `development` task in `language`.
    pub fn development(
        id: impl Into<String>,
        name: impl Into<String>,
        language: impl Into<String>,
    ) -> Self {
        Self::new(
            id,
            name,
            TaskType::Development {
                language: Some(language.into()),
            },
        )
    }

    /// A `review` task.
    pub fn review(id: impl Into<String>, name: impl Into<String>, review_type: ReviewType) -> Self {
        Self::new(id, name, TaskType::Review { review_type })
    }

    /// A `testing` task with a coverage threshold in 0..=1.
    pub fn testing(
        id: impl Into<String>,
        name: impl Into<String>,
        test_type: TestType,
        coverage_threshold: f64,
    ) -> Self {
        Self::new(
            id,
            name,
            TaskType::Testing {
                test_type,
                coverage_threshold: Some(coverage_threshold),
            },
        )
    }

    /// A `documentation` task.
    pub fn documentation(
        id: impl Into<String>,
        name: impl Into<String>,
        format: DocFormat,
    ) -> Self {
        Self::new(id, name, TaskType::Documentation { format })
    }

    /// A `refactoring` task.
    pub fn refactoring(
        id: impl Into<String>,
        name: impl Into<String>,
        optimization_level: OptimizationLevel,
    ) -> Self {
        Self::new(id, name, TaskType::Refactoring { optimization_level })
    }

    /// A `custom` task run by `handler`.
    pub fn custom(
        id: impl Into<String>,
        name: impl Into<String>,
        handler: impl Into<String>,
    ) -> Self {
        Self::new(
            id,
            name,
            TaskType::Custom {
                handler: handler.into(),
                config: serde_json::Value::Null,
            },
        )
    }

    /// Sets a custom task's handler configuration (ignored for other types).
    pub fn config(mut self, config: serde_json::Value) -> Self {
        if let TaskType::Custom { config: c, .. } = &mut self.task.task_type {
            *c = config;
        }
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.task.description = description.into();
        self
    }

    /// Adds a required capability.
    pub fn capability(mut self, capability: impl Into<Capability>) -> Self {
        self.task.requirements.capabilities.push(capability.into());
        self
    }

    /// Sets the expected duration of one attempt.
    pub fn estimated_duration(mut self, duration: Duration) -> Self {
        self.task.requirements.estimated_duration = duration;
        self
    }

    /// Sets the resources the task holds while it runs.
    pub fn resources(mut self, resources: ResourceRequirements) -> Self {
        self.task.requirements.resources = resources;
        self
    }

    /// Adds writable paths (the session scope).
    pub fn scope<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.task
            .scope
            .paths
            .extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds paths the task must not change.
    pub fn read_only<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.task
            .scope
            .read_only_paths
            .extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds prerequisites by task id.
    pub fn depends_on<I: IntoIterator<Item = S>, S: Into<TaskId>>(mut self, ids: I) -> Self {
        self.task.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Sets the deadline of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.task.timeout = Some(timeout);
        self
    }

    /// Overrides fields of the workflow's retry policy for this task.
    pub fn retry(mut self, retry: RetryOverride) -> Self {
        self.task.retry = Some(retry);
        self
    }

    /// How a Cortex server merges this task's Cortex session (default `auto`).
    pub fn merge_strategy(mut self, strategy: crate::model::MergeStrategy) -> Self {
        self.task.merge_strategy = Some(strategy);
        self
    }

    /// Overrides the workflow's `context_limit` for this task.
    pub fn context_limit(mut self, limit: u32) -> Self {
        self.task.context_limit = Some(limit);
        self
    }

    /// Overrides the workflow's priority for this task.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.task.priority = Some(priority);
        self
    }

    /// Sets the free JSON input passed to the agent.
    pub fn input(mut self, input: serde_json::Value) -> Self {
        self.task.input = input;
        self
    }

    /// The task.
    pub fn build(self) -> Task {
        self.task
    }
}

impl From<TaskBuilder> for Task {
    fn from(b: TaskBuilder) -> Task {
        b.task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_reports_every_problem() {
        let err = WorkflowBuilder::new("bad")
            .task(TaskBuilder::custom("a", "A", "h").depends_on(["missing"]))
            .task(TaskBuilder::custom("b", "B", "").capability("x"))
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no capabilities"), "{text}");
        assert!(text.contains("unknown task `missing`"), "{text}");
        assert!(text.contains("without a handler"), "{text}");
    }

    #[test]
    fn spec_style_depends_on_adds_edges() {
        let w = WorkflowBuilder::new("w")
            .task(TaskBuilder::custom("a", "A", "h").capability("x"))
            .task(TaskBuilder::custom("b", "B", "h").capability("x"))
            .depends_on("b", ["a"])
            .build()
            .unwrap();
        assert_eq!(w.tasks[1].depends_on, vec![TaskId::new("a")]);
    }
}
