//! The workflow file format (YAML or JSON), read with positions for every error.
//!
//! Reading goes in two steps. [`parse_workflow`] turns text into the raw file structure
//! ([`WorkflowFile`]); a syntax error, an unknown field (with `did you mean ...`) or a value of
//! the wrong type stops it with one positioned [`Diagnostic`]. The raw structure is then turned
//! into a [`Workflow`] plus a [`SourceMap`] that remembers where each task and field was, so
//! the validator can point at the right line; problems only a file can have (a field that does
//! not belong to the task's type, `max_retries` together with `retry.max_attempts`) are
//! reported at that step, all of them, not just the first.
//!
//! JSON files are first checked by a strict JSON parser (so YAML-only syntax is rejected in a
//! `.json` file), then read by the same YAML reader, which gives JSON the same positions.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::duration::{DurationSchema, FileDuration};
use crate::id::{self, TaskId, WorkflowId};
use crate::model::{
    Capability, DEFAULT_CONTEXT_LIMIT, DEFAULT_WORKFLOW_TIMEOUT, DocFormat, FailurePolicy,
    MergeStrategy, OptimizationLevel, Priority, ResourceRequirements, ReviewType, SessionScope,
    Task, TaskKind, TaskRequirements, TaskType, TestType, Workflow,
};
use crate::retry::{RetryOverride, RetryPolicy};

/// The largest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (also the format of standard input).
    Yaml,
    /// JSON, checked strictly.
    Json,
}

impl Format {
    /// The format a path's extension names: `.json` is JSON, anything else YAML.
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// A workflow file as written: every field, with positions.
///
/// This type exists for reading and for the JSON Schema; programs use [`Workflow`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Axon workflow",
    description = "A DAG of typed tasks run by Axon."
)]
pub struct WorkflowFile {
    /// Stable id of the workflow; derived from `name` when absent.
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    )]
    pub id: Option<Spanned<String>>,
    /// Human name.
    #[schemars(with = "String", length(min = 1))]
    pub name: Spanned<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Priority against other workflows, and the default priority of its tasks.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Deadline of the whole run (default 1h).
    #[serde(default)]
    #[schemars(with = "Option<DurationSchema>")]
    pub timeout: Option<Spanned<FileDuration>>,
    /// Retries after the first attempt, for every task: shorthand for `retry: { max_attempts: N+1 }`.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(max = 99))]
    pub max_retries: Option<Spanned<u32>>,
    /// The workflow-wide retry policy; tasks override it field by field.
    #[serde(default)]
    #[schemars(with = "Option<RetryOverride>")]
    pub retry: Option<Spanned<RetryOverride>>,
    /// `continue` (default: dependents of a failed task are skipped) or `fail_fast`.
    #[serde(default)]
    pub failure_policy: Option<FailurePolicy>,
    /// How many past episodes (best first) each agent gets as `context`; default 5, 0 for none.
    #[serde(default)]
    pub context_limit: Option<u32>,
    /// The tasks, keyed by task id.
    #[schemars(with = "TaskMapSchema")]
    pub tasks: Spanned<TaskMap>,
}

/// The `tasks` mapping, in file order, keeping duplicate keys so they can be reported.
///
/// Each task is converted to the model as soon as it is read, so a large file never holds all
/// of its raw, position-heavy [`TaskFile`]s at once.
#[derive(Debug, Default)]
pub struct TaskMap {
    /// The tasks and where their parts were.
    pub tasks: Vec<(Task, TaskSource)>,
    /// Problems found while converting them (fields of another task type).
    pub diagnostics: Vec<Diagnostic>,
}

impl<'de> Deserialize<'de> for TaskMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = TaskMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping from task id to task")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TaskMap, A::Error> {
                let mut out = TaskMap::default();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let task = map.next_value::<TaskFile>()?;
                    out.tasks
                        .push(convert_task(key, task, &mut out.diagnostics));
                }
                Ok(out)
            }
            fn visit_unit<E: de::Error>(self) -> Result<TaskMap, E> {
                Ok(TaskMap::default())
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

struct TaskMapSchema;

impl JsonSchema for TaskMapSchema {
    fn schema_name() -> Cow<'static, str> {
        "Tasks".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let task = generator.subschema_for::<TaskFile>();
        schemars::json_schema!({
            "description": "The tasks, keyed by task id (1-128 letters, digits, `_`, `.`, `-`).",
            "type": "object",
            "propertyNames": { "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$" },
            "additionalProperties": task
        })
    }
}

/// One task as written in a file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// Human name (default: the task id); also the query for past episodes.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The kind of work.
    #[serde(rename = "type")]
    #[schemars(with = "TaskKind")]
    pub task_type: Spanned<TaskKind>,
    /// `development`: main language of the change.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub language: Option<Spanned<String>>,
    /// `review`: what the review looks at (default `comprehensive`).
    #[serde(default)]
    #[schemars(with = "Option<ReviewType>")]
    pub review_type: Option<Spanned<ReviewType>>,
    /// `testing`: which tests (default `unit`).
    #[serde(default)]
    #[schemars(with = "Option<TestType>")]
    pub test_type: Option<Spanned<TestType>>,
    /// `testing`: required coverage between 0 and 1.
    #[serde(default)]
    #[schemars(with = "Option<f64>", range(min = 0.0, max = 1.0))]
    pub coverage_threshold: Option<Spanned<f64>>,
    /// `documentation`: output format (default `markdown`).
    #[serde(default)]
    #[schemars(with = "Option<DocFormat>")]
    pub format: Option<Spanned<DocFormat>>,
    /// `refactoring`: how far it may go (default `moderate`).
    #[serde(default)]
    #[schemars(with = "Option<OptimizationLevel>")]
    pub optimization_level: Option<Spanned<OptimizationLevel>>,
    /// `custom`: the handler name (required for custom tasks).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub handler: Option<Spanned<String>>,
    /// `custom`: free JSON configuration for the handler.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: Option<Spanned<serde_json::Value>>,
    /// Paths the task may change (empty: anything).
    #[serde(default)]
    pub scope: Vec<String>,
    /// Paths the task must not change.
    #[serde(default)]
    pub read_only: Vec<String>,
    /// Capabilities an agent needs to run the task (at least one).
    #[serde(default)]
    #[schemars(with = "Vec<Capability>")]
    pub capabilities: Option<Spanned<Vec<Capability>>>,
    /// Expected duration of one attempt (required, not zero).
    #[serde(default)]
    #[schemars(with = "DurationSchema")]
    pub estimated_duration: Option<Spanned<FileDuration>>,
    /// Resources the task holds on its agent.
    #[serde(default)]
    #[schemars(with = "Option<ResourcesFile>")]
    pub resources: Option<Spanned<ResourcesFile>>,
    /// Ids of the tasks that must succeed first.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<Spanned<String>>,
    /// Deadline of one attempt.
    #[serde(default)]
    #[schemars(with = "Option<DurationSchema>")]
    pub timeout: Option<Spanned<FileDuration>>,
    /// Overrides of the workflow's retry policy.
    #[serde(default)]
    #[schemars(with = "Option<RetryOverride>")]
    pub retry: Option<Spanned<RetryOverride>>,
    /// Overrides the workflow's priority when several tasks are ready.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Overrides the workflow's `context_limit` for this task's agent.
    #[serde(default)]
    pub context_limit: Option<u32>,
    /// How a Cortex server merges this task's Cortex session when it succeeds (default
    /// `auto`; only used with `--cortex-url`).
    #[serde(default)]
    pub merge_strategy: Option<MergeStrategy>,
    /// Free JSON passed to the agent.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
}

/// The `resources` block of a task (or an agent).
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesFile {
    /// CPU cores (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub cpu_cores: Option<u32>,
    /// Memory in MiB (default 512).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub memory_mb: Option<u64>,
    /// Whether a GPU is needed (default false).
    #[serde(default, alias = "gpu_required")]
    pub gpu: Option<bool>,
}

impl ResourcesFile {
    /// The requirements, with the spec's defaults for absent fields.
    pub fn to_requirements(self) -> ResourceRequirements {
        let d = ResourceRequirements::default();
        ResourceRequirements {
            cpu_cores: self.cpu_cores.unwrap_or(d.cpu_cores),
            memory_mb: self.memory_mb.unwrap_or(d.memory_mb),
            gpu: self.gpu.unwrap_or(d.gpu),
        }
    }
}

/// Where the parts of a workflow were in its file, for positioned diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMap {
    /// The `name` value.
    pub name: Option<Location>,
    /// The `id` value, if given.
    pub id: Option<Location>,
    /// The `timeout` value, if given.
    pub timeout: Option<Location>,
    /// The workflow `retry` block, if given.
    pub retry: Option<Location>,
    /// The `tasks` value.
    pub tasks_block: Option<Location>,
    /// One entry per task, in the order of [`Workflow::tasks`].
    pub tasks: Vec<TaskSource>,
}

/// Where the parts of one task were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSource {
    /// The task's key (its id).
    pub key: Option<Location>,
    /// `capabilities`.
    pub capabilities: Option<Location>,
    /// `estimated_duration`.
    pub estimated_duration: Option<Location>,
    /// `resources`.
    pub resources: Option<Location>,
    /// `coverage_threshold`.
    pub coverage_threshold: Option<Location>,
    /// `handler`.
    pub handler: Option<Location>,
    /// `timeout`.
    pub timeout: Option<Location>,
    /// `retry`.
    pub retry: Option<Location>,
    /// Each `depends_on` entry, in order.
    pub depends_on: Vec<Option<Location>>,
}

impl SourceMap {
    /// The entry of task number `index`, if the workflow came from a file.
    pub fn task(&self, index: usize) -> Option<&TaskSource> {
        self.tasks.get(index)
    }
}

/// A workflow read from a file: the model, where its parts were, and the problems found
/// while converting it (the validator finds the rest).
#[derive(Debug, Clone)]
pub struct ParsedWorkflow {
    /// The workflow.
    pub workflow: Workflow,
    /// Positions of its parts.
    pub source_map: SourceMap,
    /// Problems only a file can have, e.g. a field that does not apply to the task's type.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads a workflow file.
///
/// # Errors
///
/// One positioned diagnostic for a syntax error, an unknown field, a missing required field
/// or a value of the wrong type.
pub fn parse_workflow(text: &str, format: Format) -> Result<ParsedWorkflow, Diagnostic> {
    let file: WorkflowFile = parse_text(text, format)?;
    Ok(convert(file))
}

/// Reads any file of Axon's (workflow or agents) into `T`, with positions.
///
/// # Errors
///
/// One positioned diagnostic for the first syntax, field or type error.
pub(crate) fn parse_text<T: serde::de::DeserializeOwned>(
    text: &str,
    format: Format,
) -> Result<T, Diagnostic> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            None,
            format!(
                "file is {} bytes; at most {MAX_FILE_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(Diagnostic::error(
            None,
            "file is empty; a workflow needs at least `name` and `tasks`",
        ));
    }
    let yaml_text: Cow<'_, str> = match format {
        Format::Yaml => Cow::Borrowed(text),
        Format::Json => {
            // Strict JSON first: YAML syntax is not JSON, and its errors have positions too.
            if let Err(e) = serde_json::from_str::<de::IgnoredAny>(text) {
                let location = (e.line() > 0).then(|| Location {
                    line: e.line() as u64,
                    column: json_char_column(text, e.line(), e.column()),
                    byte_offset: None,
                });
                return Err(Diagnostic::error(location, json_message(&e)));
            }
            // In valid JSON a raw tab can only be whitespace between tokens (tabs inside
            // strings must be escaped), and YAML does not accept tabs everywhere JSON does.
            if text.contains('\t') {
                Cow::Owned(text.replace('\t', " "))
            } else {
                Cow::Borrowed(text)
            }
        }
    };
    serde_saphyr::from_str_with_options(&yaml_text, yaml_options()).map_err(|e| {
        let mut d = yaml_error(&e);
        locate_duplicate_field(&mut d, &yaml_text);
        d
    })
}

/// Points a duplicate field at its second occurrence. serde reports a repeated struct field
/// without a position, so the reader points at the start of the mapping (or nowhere at the
/// top level); reading the text again with duplicate keys rejected finds the repeat.
fn locate_duplicate_field(d: &mut Diagnostic, text: &str) {
    let Some(field) = d
        .message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
    else {
        return;
    };
    let mut options = yaml_options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    if let Err(serde_saphyr::Error::DuplicateMappingKey {
        key: Some(k),
        location,
    }) = serde_saphyr::from_str_with_options::<de::IgnoredAny>(text, options)
        && k == field
        && let Some(at) = Location::from_saphyr(location)
        // The repeat comes after the start of its mapping; anything else is another key.
        && d.location.is_none_or(|m| (at.line, at.column) > (m.line, m.column))
    {
        d.location = Some(at);
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Workflows of a million tasks are legitimate; the limits that remain guard against
    // alias bombs and runaway nesting, not against size.
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options
}

/// serde_json counts columns in bytes; a [`Location`] counts characters. `byte_column` is
/// the 1-based byte of the error on `line` (lines end at `\n`), possibly inside a character.
fn json_char_column(text: &str, line: usize, byte_column: usize) -> u64 {
    let chars = text.split('\n').nth(line - 1).map_or(byte_column, |l| {
        l.char_indices()
            .take_while(|&(i, _)| i < byte_column)
            .count()
    });
    chars.max(1) as u64
}

fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let plain = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    format!("invalid JSON: {plain}")
}

fn yaml_error(e: &serde_saphyr::Error) -> Diagnostic {
    let location = e.location().and_then(Location::from_saphyr);
    let text = e.to_string();
    let first_line = text.lines().next().unwrap_or("");
    let plain = match first_line.rfind(" at line ") {
        Some(i) => &first_line[..i],
        None => first_line,
    };
    Diagnostic::error(location, improve_message(plain))
}

/// Adds `did you mean ...` to serde's unknown field and variant messages, and rewords the
/// ones a user should not have to decode.
fn improve_message(msg: &str) -> String {
    for what in ["field", "variant"] {
        let prefix = format!("unknown {what} `");
        if let Some(rest) = msg.strip_prefix(&prefix)
            && let Some((name, tail)) = rest.split_once('`')
        {
            let expected: Vec<&str> = tail
                .split_once("expected one of ")
                .or_else(|| tail.split_once("expected "))
                .map(|(_, list)| {
                    list.split(", ")
                        .map(|s| s.trim().trim_matches('`'))
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let noun = if what == "field" { "field" } else { "value" };
            let mut out = format!("unknown {noun} `{name}`");
            match did_you_mean(name, expected.iter().copied()) {
                Some(s) => out.push_str(&format!(", did you mean `{s}`?")),
                None if !expected.is_empty() => {
                    out.push_str(&format!(", expected one of {}", expected.join(", ")));
                }
                None => {}
            }
            return out;
        }
    }
    if msg.starts_with("recursion limit exceeded") {
        return "nesting is too deep".to_owned();
    }
    if let Some(what) = msg.strip_prefix("budget breached: ") {
        return if what.starts_with("Depth") {
            "nesting is deeper than 64 levels".to_owned()
        } else if what.starts_with("Documents") {
            "the file holds more than one YAML document (`---`); a file is one workflow".to_owned()
        } else if what.starts_with("Alias")
            || what.starts_with("Anchor")
            || what.starts_with("Recorded")
        {
            "too many anchors or aliases (`&`/`*`); expanding them would be too large".to_owned()
        } else {
            format!(
                "the file exceeds a reader limit ({})",
                what.split([' ', '{']).next().unwrap_or(what)
            )
        };
    }
    msg.to_owned()
}

fn loc<T>(s: &Spanned<T>) -> Option<Location> {
    Location::from_saphyr(s.referenced)
}

/// Turns the raw file into the model, collecting every file-only problem.
fn convert(file: WorkflowFile) -> ParsedWorkflow {
    let mut diags = Vec::new();
    let mut map = SourceMap {
        name: loc(&file.name),
        id: file.id.as_ref().and_then(loc),
        timeout: file.timeout.as_ref().and_then(loc),
        retry: file.retry.as_ref().and_then(loc),
        tasks_block: loc(&file.tasks),
        tasks: Vec::with_capacity(file.tasks.value.tasks.len()),
    };

    let mut retry = RetryPolicy::default();
    if let Some(n) = &file.max_retries {
        retry.max_attempts = n.value.saturating_add(1);
    }
    if let Some(r) = &file.retry {
        if let (Some(n), Some(_)) = (&file.max_retries, r.value.max_attempts) {
            diags.push(Diagnostic::error(
                loc(n),
                "`max_retries` and `retry.max_attempts` both set the number of attempts; keep one",
            ));
        }
        retry = retry.overridden_by(&r.value);
    }

    let name = file.name.value;
    let id = match file.id {
        Some(id) => WorkflowId::new(id.value),
        None => WorkflowId::new(id::slugify(&name)),
    };

    let task_map = file.tasks.value;
    diags.extend(task_map.diagnostics);
    let mut tasks = Vec::with_capacity(task_map.tasks.len());
    for (task, source) in task_map.tasks {
        tasks.push(task);
        map.tasks.push(source);
    }

    let workflow = Workflow {
        id,
        name,
        description: file.description.unwrap_or_default(),
        priority: file.priority.unwrap_or(Priority::Medium),
        timeout: file.timeout.map_or(DEFAULT_WORKFLOW_TIMEOUT, |t| t.value.0),
        retry,
        failure_policy: file.failure_policy.unwrap_or(FailurePolicy::Continue),
        context_limit: file.context_limit.unwrap_or(DEFAULT_CONTEXT_LIMIT),
        tasks,
    };
    ParsedWorkflow {
        workflow,
        source_map: map,
        diagnostics: diags,
    }
}

fn convert_task(
    key: Spanned<String>,
    t: TaskFile,
    diags: &mut Vec<Diagnostic>,
) -> (Task, TaskSource) {
    let id = key.value.clone();
    let kind = t.task_type.value;

    // Type-specific fields that do not belong to this task's type are mistakes, not noise.
    let mut misplaced = |present: Option<Location>, field: &str, owner: TaskKind| {
        if kind != owner {
            diags.push(Diagnostic::error(
                present,
                format!("task `{id}`: `{field}` applies to {owner} tasks, not to {kind} tasks"),
            ));
        }
    };
    if let Some(v) = &t.language {
        misplaced(loc(v), "language", TaskKind::Development);
    }
    if let Some(v) = &t.review_type {
        misplaced(loc(v), "review_type", TaskKind::Review);
    }
    if let Some(v) = &t.test_type {
        misplaced(loc(v), "test_type", TaskKind::Testing);
    }
    if let Some(v) = &t.coverage_threshold {
        misplaced(loc(v), "coverage_threshold", TaskKind::Testing);
    }
    if let Some(v) = &t.format {
        misplaced(loc(v), "format", TaskKind::Documentation);
    }
    if let Some(v) = &t.optimization_level {
        misplaced(loc(v), "optimization_level", TaskKind::Refactoring);
    }
    if let Some(v) = &t.handler {
        misplaced(loc(v), "handler", TaskKind::Custom);
    }
    if let Some(v) = &t.config {
        misplaced(loc(v), "config", TaskKind::Custom);
    }

    let task_type = match kind {
        TaskKind::Development => TaskType::Development {
            language: t.language.as_ref().map(|l| l.value.clone()),
        },
        TaskKind::Review => TaskType::Review {
            review_type: t
                .review_type
                .as_ref()
                .map_or(ReviewType::Comprehensive, |v| v.value),
        },
        TaskKind::Testing => TaskType::Testing {
            test_type: t.test_type.as_ref().map_or(TestType::Unit, |v| v.value),
            coverage_threshold: t.coverage_threshold.as_ref().map(|v| v.value),
        },
        TaskKind::Documentation => TaskType::Documentation {
            format: t.format.as_ref().map_or(DocFormat::Markdown, |v| v.value),
        },
        TaskKind::Refactoring => TaskType::Refactoring {
            optimization_level: t
                .optimization_level
                .as_ref()
                .map_or(OptimizationLevel::Moderate, |v| v.value),
        },
        TaskKind::Custom => TaskType::Custom {
            handler: t
                .handler
                .as_ref()
                .map(|h| h.value.clone())
                .unwrap_or_default(),
            config: t
                .config
                .as_ref()
                .map_or(serde_json::Value::Null, |c| c.value.clone()),
        },
    };

    let source = TaskSource {
        key: loc(&key),
        capabilities: t.capabilities.as_ref().and_then(loc),
        estimated_duration: t.estimated_duration.as_ref().and_then(loc),
        resources: t.resources.as_ref().and_then(loc),
        coverage_threshold: t.coverage_threshold.as_ref().and_then(loc),
        handler: t.handler.as_ref().and_then(loc),
        timeout: t.timeout.as_ref().and_then(loc),
        retry: t.retry.as_ref().and_then(loc),
        depends_on: t.depends_on.iter().map(loc).collect(),
    };

    let task = Task {
        id: TaskId::new(key.value.clone()),
        name: t.name.unwrap_or(key.value),
        description: t.description.unwrap_or_default(),
        task_type,
        requirements: TaskRequirements {
            capabilities: t.capabilities.map(|c| c.value).unwrap_or_default(),
            estimated_duration: t.estimated_duration.map_or(Duration::ZERO, |d| d.value.0),
            resources: t
                .resources
                .map(|r| r.value.to_requirements())
                .unwrap_or_default(),
        },
        scope: SessionScope {
            paths: t.scope,
            read_only_paths: t.read_only,
        },
        depends_on: t
            .depends_on
            .into_iter()
            .map(|d| TaskId::new(d.value))
            .collect(),
        timeout: t.timeout.map(|d| d.value.0),
        retry: t.retry.map(|r| r.value),
        priority: t.priority,
        context_limit: t.context_limit,
        merge_strategy: t.merge_strategy,
        input: t.input.unwrap_or(serde_json::Value::Null),
    };
    (task, source)
}

/// The JSON Schema of workflow files, generated from [`WorkflowFile`].
pub fn workflow_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(WorkflowFile);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> Diagnostic {
        parse_workflow(text, Format::Yaml).unwrap_err()
    }

    #[test]
    fn unknown_field_suggests_the_near_name_with_position() {
        let d = parse_err(
            "name: x\ntasks:\n  a:\n    type: custom\n    handler: h\n    timeoutt: 5m\n",
        );
        assert_eq!(
            d.message,
            "unknown field `timeoutt`, did you mean `timeout`?"
        );
        let l = d.location.unwrap();
        assert_eq!((l.line, l.column), (6, 5));
    }

    #[test]
    fn unknown_type_suggests_the_near_type() {
        let d = parse_err("name: x\ntasks:\n  a:\n    type: developmnt\n");
        assert!(
            d.message.contains("did you mean `development`"),
            "{}",
            d.message
        );
        assert_eq!(d.location.unwrap().line, 4);
    }

    #[test]
    fn duplicate_task_ids_are_kept_for_the_validator() {
        let p = parse_workflow(
            "name: x\ntasks:\n  a:\n    type: review\n  a:\n    type: review\n",
            Format::Yaml,
        )
        .unwrap();
        assert_eq!(p.workflow.tasks.len(), 2);
        assert_eq!(p.source_map.tasks[1].key.unwrap().line, 5);
    }

    #[test]
    fn duplicate_fields_are_errors() {
        let d = parse_err("name: x\nname: y\ntasks: {}\n");
        assert!(d.message.contains("duplicate"), "{}", d.message);
    }

    #[test]
    fn fields_of_another_type_are_reported_all_at_once() {
        let p = parse_workflow(
            "name: x\ntasks:\n  a:\n    type: development\n    coverage_threshold: 0.5\n    format: html\n",
            Format::Yaml,
        )
        .unwrap();
        assert_eq!(p.diagnostics.len(), 2);
        assert!(
            p.diagnostics[0]
                .message
                .contains("`coverage_threshold` applies to testing tasks")
        );
        assert_eq!(p.diagnostics[1].location.unwrap().line, 6);
    }

    #[test]
    fn json_syntax_is_strict_and_positioned() {
        let d = parse_workflow("{\"name\": \"x\",\n \"tasks\": {a: 1}}", Format::Json).unwrap_err();
        assert!(d.message.starts_with("invalid JSON"), "{}", d.message);
        assert_eq!(d.location.unwrap().line, 2);
    }

    #[test]
    fn json_syntax_error_columns_count_characters_not_bytes() {
        let col = |text: &str| {
            let d = parse_workflow(text, Format::Json).unwrap_err();
            d.location.unwrap().column
        };
        // `x` is the 16th character (and the 20th byte) of the line.
        assert_eq!(col("{\"name\": \"\u{65e5}\u{672c}\", x}"), 16);
        assert_eq!(col("{\n\"name\": \"\u{e9}\", x}"), 14);
        // serde_json stops inside the `\u{e9}` after a backslash: still that character.
        assert_eq!(col("{\"a\": \"\\\u{e9}\"}"), 9);
    }

    #[test]
    fn json_semantic_errors_have_positions_too() {
        let d = parse_workflow(
            "{\n\t\"name\": \"x\",\n\t\"tasks\": {\"a\": {\"type\": \"review\", \"bogus\": 1}}\n}",
            Format::Json,
        )
        .unwrap_err();
        assert!(
            d.message.starts_with("unknown field `bogus`"),
            "{}",
            d.message
        );
        assert_eq!(d.location.unwrap().line, 3);
    }

    #[test]
    fn max_retries_is_shorthand_for_attempts() {
        let p = parse_workflow("name: x\nmax_retries: 3\ntasks: {}\n", Format::Yaml).unwrap();
        assert_eq!(p.workflow.retry.max_attempts, 4);
    }

    #[test]
    fn garbage_and_depth_never_panic() {
        for text in [
            "\u{0}\u{1}\u{ff}garbage: [",
            &"[".repeat(100_000),
            &"- ".repeat(100_000),
            "name: [1, 2",
            ": : :",
            "*alias",
        ] {
            assert!(parse_workflow(text, Format::Yaml).is_err());
            assert!(parse_workflow(text, Format::Json).is_err());
        }
    }
}
