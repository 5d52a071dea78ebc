//! The domain model of the specification: workflows, tasks, their types and requirements,
//! statuses and error classes.
//!
//! These are plain values. They are produced by the file format ([`crate::format`]) or by the
//! builder DSL ([`crate::builder`]), checked by [`crate::validate()`] and planned by
//! [`crate::plan`]. Nothing here performs I/O.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::id::{TaskId, WorkflowId};
use crate::retry::{RetryOverride, RetryPolicy};

/// The default workflow timeout when a file or builder gives none (the spec's one hour).
pub const DEFAULT_WORKFLOW_TIMEOUT: Duration = Duration::from_secs(3600);

/// How many past episodes an agent gets as `context` when neither workflow nor task says (the
/// spec's `search_episodes(&task.name, 5)`).
pub const DEFAULT_CONTEXT_LIMIT: u32 = 5;

/// A workflow: a named DAG of tasks with workflow-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workflow {
    /// Stable id (from the file's `id`, or derived from the name).
    pub id: WorkflowId,
    /// Human name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Priority against other workflows, and the default priority of its tasks.
    pub priority: Priority,
    /// Deadline of the whole run.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Retry policy for every task unless a task overrides it.
    pub retry: RetryPolicy,
    /// What happens to the rest of the run when a task fails.
    pub failure_policy: FailurePolicy,
    /// How many past episodes an agent gets as `context` (0: none), unless a task says.
    pub context_limit: u32,
    /// The tasks, in file order.
    pub tasks: Vec<Task>,
}

impl Workflow {
    /// The retry policy that applies to `task`: the workflow's, overridden field by field by
    /// the task's own `retry` block.
    pub fn retry_policy_for(&self, task: &Task) -> RetryPolicy {
        match &task.retry {
            Some(o) => self.retry.overridden_by(o),
            None => self.retry.clone(),
        }
    }

    /// How many past episodes `task`'s agent gets as `context`: its own limit, or the
    /// workflow's.
    pub fn context_limit_for(&self, task: &Task) -> u32 {
        task.context_limit.unwrap_or(self.context_limit)
    }

    /// The priority of `task`: its own, or the workflow's.
    pub fn priority_of(&self, task: &Task) -> Priority {
        task.priority.unwrap_or(self.priority)
    }
}

/// One unit of work in a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// Id, unique within the workflow.
    pub id: TaskId,
    /// Human name; also the query used to find past episodes.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The kind of work and its type-specific fields.
    #[serde(flatten)]
    pub task_type: TaskType,
    /// What an agent needs to run this task.
    pub requirements: TaskRequirements,
    /// Paths the task may write, and paths it must not touch.
    pub scope: SessionScope,
    /// Tasks that must succeed before this one starts.
    pub depends_on: Vec<TaskId>,
    /// Deadline of one attempt; `None` means bounded only by the workflow timeout.
    #[serde(with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Overrides of the workflow's retry policy.
    pub retry: Option<RetryOverride>,
    /// Overrides the workflow's priority for ordering ready tasks.
    pub priority: Option<Priority>,
    /// Overrides the workflow's `context_limit` (episodes given to the agent).
    pub context_limit: Option<u32>,
    /// How a Cortex server merges the task's Cortex session when it succeeds (`None`: `auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_strategy: Option<MergeStrategy>,
    /// Free JSON passed to the agent.
    pub input: serde_json::Value,
}

/// The kind of a task, with the fields that only make sense for that kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskType {
    /// Writing code.
    Development {
        /// Main language of the change, if any.
        language: Option<String>,
    },
    /// Reviewing code.
    Review {
        /// What the review looks at.
        review_type: ReviewType,
    },
    /// Writing or running tests.
    Testing {
        /// Which tests.
        test_type: TestType,
        /// Required coverage, 0..=1.
        coverage_threshold: Option<f64>,
    },
    /// Writing documentation.
    Documentation {
        /// Output format.
        format: DocFormat,
    },
    /// Restructuring code without changing behaviour.
    Refactoring {
        /// How far the refactoring may go.
        optimization_level: OptimizationLevel,
    },
    /// Anything else, run by a named handler.
    Custom {
        /// Handler name, interpreted by the agent.
        handler: String,
        /// Free JSON configuration for the handler.
        config: serde_json::Value,
    },
}

impl TaskType {
    /// The `type` keyword of this task type, as written in files.
    pub fn kind(&self) -> TaskKind {
        match self {
            Self::Development { .. } => TaskKind::Development,
            Self::Review { .. } => TaskKind::Review,
            Self::Testing { .. } => TaskKind::Testing,
            Self::Documentation { .. } => TaskKind::Documentation,
            Self::Refactoring { .. } => TaskKind::Refactoring,
            Self::Custom { .. } => TaskKind::Custom,
        }
    }
}

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $kw:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The keyword used in files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $kw,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($kw => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown value `{s}`, expected one of {}",
                        [$($kw),+].join(", ")
                    )),
                }
            }
        }
    };
}

keyword_enum!(
    /// The `type` of a task.
    TaskKind {
        /// `development`
        Development => "development",
        /// `review`
        Review => "review",
        /// `testing`
        Testing => "testing",
        /// `documentation`
        Documentation => "documentation",
        /// `refactoring`
        Refactoring => "refactoring",
        /// `custom`
        Custom => "custom",
    }
);

keyword_enum!(
    /// What a review looks at.
    ReviewType {
        /// Everything.
        Comprehensive => "comprehensive",
        /// Security issues.
        Security => "security",
        /// Performance issues.
        Performance => "performance",
        /// Style and conventions.
        Style => "style",
    }
);

keyword_enum!(
    /// Which tests a testing task writes or runs.
    TestType {
        /// Unit tests.
        Unit => "unit",
        /// Integration tests.
        Integration => "integration",
        /// End-to-end tests.
        E2e => "e2e",
        /// Regression tests.
        Regression => "regression",
        /// Performance tests.
        Performance => "performance",
    }
);

keyword_enum!(
    /// Output format of a documentation task.
    DocFormat {
        /// Markdown.
        Markdown => "markdown",
        /// HTML.
        Html => "html",
        /// Rust doc comments.
        Rustdoc => "rustdoc",
        /// An OpenAPI document.
        Openapi => "openapi",
    }
);

keyword_enum!(
    /// How far a refactoring may go.
    OptimizationLevel {
        /// Small, safe changes.
        Conservative => "conservative",
        /// The usual.
        Moderate => "moderate",
        /// Large restructurings.
        Aggressive => "aggressive",
    }
);

keyword_enum!(
    /// Priority of a workflow or task; higher runs first when several are ready.
    Priority {
        /// Lowest.
        Low => "low",
        /// Default.
        Medium => "medium",
        /// Higher.
        High => "high",
        /// Highest.
        Critical => "critical",
    }
);

keyword_enum!(
    /// How a Cortex server merges a task's Cortex session (the contract's `strategy`).
    MergeStrategy {
        /// Apply what merges cleanly; any conflict makes the merge `partial`, which fails the
        /// task as a merge conflict (the default).
        Auto => "auto",
        /// Stop at the first conflict (Cortex answers 409: a merge conflict).
        Manual => "manual",
        /// Conflicts are resolved in the session's favour.
        Theirs => "theirs",
        /// Conflicting files are skipped.
        Mine => "mine",
    }
);

impl Priority {
    /// A number that orders priorities: `low` = 0 … `critical` = 3.
    pub fn rank(self) -> u8 {
        match self {
            Self::Low => 0,
            Self::Medium => 1,
            Self::High => 2,
            Self::Critical => 3,
        }
    }
}

keyword_enum!(
    /// What happens to the rest of a run when a task fails for good.
    FailurePolicy {
        /// Dependents of the failed task are skipped; independent branches finish.
        Continue => "continue",
        /// Running tasks are cancelled and nothing new starts.
        FailFast => "fail_fast",
    }
);

keyword_enum!(
    /// The state of a task within a run.
    TaskStatus {
        /// Waiting for prerequisites.
        Pending => "pending",
        /// Prerequisites done, waiting for an agent.
        Ready => "ready",
        /// An attempt is running.
        Running => "running",
        /// An attempt failed and the next one waits for its backoff.
        Retrying => "retrying",
        /// Done, successfully.
        Succeeded => "succeeded",
        /// Failed for good.
        Failed => "failed",
        /// Not run because a prerequisite failed.
        Skipped => "skipped",
        /// Stopped by a cancellation.
        Cancelled => "cancelled",
    }
);

keyword_enum!(
    /// The state of a run.
    RunStatus {
        /// An engine is executing it.
        Running => "running",
        /// Every task succeeded.
        Succeeded => "succeeded",
        /// Some task failed or was skipped, or the run timed out.
        Failed => "failed",
        /// It was cancelled.
        Cancelled => "cancelled",
        /// Its engine died while it ran; `axon resume` continues it.
        Interrupted => "interrupted",
    }
);

impl RunStatus {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl TaskStatus {
    /// Whether the task will not change state any more in this run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

keyword_enum!(
    /// Why an attempt failed, as a class that retry policies select on (the spec's
    /// `ErrorType`, plus Axon's `merge_conflict` and `scope_violation`).
    ErrorType {
        /// The agent or a service could not be reached.
        Network => "network",
        /// The attempt ran past its deadline.
        Timeout => "timeout",
        /// A service said it is temporarily unavailable (a command agent's exit 75).
        ServiceUnavailable => "service_unavailable",
        /// The task's input was rejected.
        InvalidInput => "invalid_input",
        /// The agent reported failure.
        AgentError => "agent_error",
        /// Something in Axon or the machine failed.
        SystemError => "system_error",
        /// The task's changes conflict with the integration branch.
        MergeConflict => "merge_conflict",
        /// The task changed files outside its scope.
        ScopeViolation => "scope_violation",
    }
);

/// A capability an agent offers and a task requires: one of the spec's known names, or any
/// other snake_case name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `code_generation`
    CodeGeneration,
    /// `api_design`
    ApiDesign,
    /// `testing`
    Testing,
    /// `code_review`
    CodeReview,
    /// `documentation`
    Documentation,
    /// `code_analysis`
    CodeAnalysis,
    /// `refactoring`
    Refactoring,
    /// Any other snake_case name.
    Other(String),
}

impl Capability {
    /// The spec's known capabilities.
    pub const KNOWN: &'static [Capability] = &[
        Self::CodeGeneration,
        Self::ApiDesign,
        Self::Testing,
        Self::CodeReview,
        Self::Documentation,
        Self::CodeAnalysis,
        Self::Refactoring,
    ];

    /// Parses a name; known names map to their variant, other names to [`Capability::Other`]
    /// (whether they are valid snake_case is checked by [`Capability::is_valid_name`]).
    pub fn from_name(name: &str) -> Self {
        match name {
            "code_generation" => Self::CodeGeneration,
            "api_design" => Self::ApiDesign,
            "testing" => Self::Testing,
            "code_review" => Self::CodeReview,
            "documentation" => Self::Documentation,
            "code_analysis" => Self::CodeAnalysis,
            "refactoring" => Self::Refactoring,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The name as written in files.
    pub fn as_str(&self) -> &str {
        match self {
            Self::CodeGeneration => "code_generation",
            Self::ApiDesign => "api_design",
            Self::Testing => "testing",
            Self::CodeReview => "code_review",
            Self::Documentation => "documentation",
            Self::CodeAnalysis => "code_analysis",
            Self::Refactoring => "refactoring",
            Self::Other(s) => s,
        }
    }

    /// Whether `name` is snake_case: lowercase ASCII letters, digits and single `_`, starting
    /// with a letter, at most 64 characters.
    pub fn is_valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.contains("__")
            && !name.ends_with('_')
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Capability {
    fn from(s: &str) -> Self {
        Self::from_name(s)
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    /// Accepts any string; names that are not snake_case are reported by the validator,
    /// with every other problem, rather than stopping the reader.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|name| Capability::from_name(&name))
    }
}

impl JsonSchema for Capability {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Capability".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A capability: one of the known names (code_generation, api_design, \
                testing, code_review, documentation, code_analysis, refactoring) or any other \
                snake_case name.",
            "type": "string",
            "pattern": "^[a-z][a-z0-9]*(_[a-z0-9]+)*$",
            "maxLength": 64,
            "examples": ["code_generation", "api_design", "testing", "code_review",
                "documentation", "code_analysis", "refactoring"]
        })
    }
}

/// What an agent must offer to run a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRequirements {
    /// Every capability the agent must have.
    pub capabilities: Vec<Capability>,
    /// Expected duration of one attempt; the planner's weight.
    #[serde(rename = "estimated_duration_secs", with = "secs")]
    pub estimated_duration: Duration,
    /// Resources the task holds on its agent while it runs.
    pub resources: ResourceRequirements,
}

/// Resources a task needs on its agent, or an agent offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResourceRequirements {
    /// CPU cores.
    pub cpu_cores: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Whether a GPU is needed (or offered).
    pub gpu: bool,
}

impl Default for ResourceRequirements {
    /// The spec's defaults: one core, 512 MiB, no GPU.
    fn default() -> Self {
        Self {
            cpu_cores: 1,
            memory_mb: 512,
            gpu: false,
        }
    }
}

/// The spec's `SessionScope`: paths a task may write, and paths it must leave alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionScope {
    /// Writable paths (`scope` in files); empty means the task may change anything.
    #[serde(rename = "scope")]
    pub paths: Vec<String>,
    /// Paths the task must not change (`read_only` in files).
    #[serde(rename = "read_only")]
    pub read_only_paths: Vec<String>,
}

/// Durations serialised as seconds (a number), per the `_secs` convention of the CLI contract.
pub(crate) mod secs {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub(crate) mod opt_secs {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::KNOWN {
            assert_eq!(&Capability::from_name(c.as_str()), c);
        }
        assert_eq!(
            Capability::from_name("gpu_inference"),
            Capability::Other("gpu_inference".into())
        );
    }

    #[test]
    fn capability_names_must_be_snake_case() {
        assert!(Capability::is_valid_name("code_generation"));
        assert!(Capability::is_valid_name("x86_64"));
        for bad in ["", "Code", "a-b", "_a", "a_", "a__b", "1a", "a b"] {
            assert!(!Capability::is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn keywords_parse_and_reject_with_the_list() {
        assert_eq!(
            "fail_fast".parse::<FailurePolicy>(),
            Ok(FailurePolicy::FailFast)
        );
        let err = "sometimes".parse::<FailurePolicy>().unwrap_err();
        assert!(err.contains("continue, fail_fast"), "{err}");
        assert!(Priority::Critical.rank() > Priority::Low.rank());
        assert!(TaskStatus::Skipped.is_terminal());
        assert!(!TaskStatus::Retrying.is_terminal());
    }
}
