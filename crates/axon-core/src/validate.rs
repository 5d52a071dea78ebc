//! The validator: every problem of a workflow, not just the first.
//!
//! It checks the graph (duplicate ids, unknown and self dependencies, every cycle), each task
//! (id syntax, capabilities, estimates, resources, type-specific ranges, timeouts, retry
//! policy, scope paths) and the whole (empty workflow, a critical path longer than the
//! workflow timeout). With a [`SourceMap`] from the file reader, each problem points at its
//! line and column.

use std::fmt;
use std::time::Duration;

use crate::dag::{DagIndex, GraphProblem};
use crate::diagnostic::{self, Diagnostic, Location};
use crate::duration;
use crate::format::{SourceMap, TaskSource};
use crate::id::check_id;
use crate::model::{Capability, TaskType, Workflow};
use crate::plan::Plan;

/// Longest estimate or timeout accepted: a year is a typo, not a task.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most CPU cores a task may ask for.
pub const MAX_CPU_CORES: u32 = 1024;
/// Most memory a task may ask for, in MiB (16 TiB).
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;
/// Cycles longer than this are shown with their middle elided.
const CYCLE_SHOWN: usize = 12;

/// The outcome of validating a workflow.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every problem, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The DAG index (bad edges left out).
    pub index: DagIndex,
    /// The plan, when the graph is acyclic.
    pub plan: Option<Plan>,
}

impl Validation {
    /// Whether there is no error (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// A workflow that failed validation, as an error value for library users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidWorkflow {
    /// Every problem found, warnings included.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for InvalidWorkflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid workflow")?;
        let mut sep = ": ";
        for d in self.diagnostics.iter().filter(|d| d.is_error()) {
            write!(f, "{sep}{}", d.message)?;
            sep = "; ";
        }
        Ok(())
    }
}

/// Validates `workflow`; `source` (from [`crate::format::parse_workflow`]) adds positions.
pub fn validate(workflow: &Workflow, source: Option<&SourceMap>) -> Validation {
    let mut v = Validator {
        workflow,
        source,
        out: Vec::new(),
    };
    v.workflow_fields();
    for i in 0..workflow.tasks.len() {
        v.task(i);
    }
    let (index, problems) = DagIndex::build(workflow);
    for p in problems {
        v.graph_problem(p);
    }
    let plan = match Plan::new(workflow, &index) {
        Ok(plan) => {
            v.critical_path(&plan);
            Some(plan)
        }
        Err(cycles) => {
            for c in cycles {
                v.cycle(&c);
            }
            None
        }
    };
    diagnostic::sort(&mut v.out);
    Validation {
        diagnostics: v.out,
        index,
        plan,
    }
}

struct Validator<'a> {
    workflow: &'a Workflow,
    source: Option<&'a SourceMap>,
    out: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn src(&self, task: usize) -> Option<&TaskSource> {
        self.source.and_then(|s| s.task(task))
    }

    /// The position of a task field, falling back to the task's key.
    fn at(&self, task: usize, field: impl Fn(&TaskSource) -> Option<Location>) -> Option<Location> {
        self.src(task).and_then(|s| field(s).or(s.key))
    }

    fn error(&mut self, at: Option<Location>, msg: String) {
        self.out.push(Diagnostic::error(at, msg));
    }

    fn warning(&mut self, at: Option<Location>, msg: String) {
        self.out.push(Diagnostic::warning(at, msg));
    }

    fn workflow_fields(&mut self) {
        let w = self.workflow;
        let name_at = self.source.and_then(|s| s.name);
        if w.name.trim().is_empty() {
            self.error(name_at, "workflow name is empty".into());
        }
        if let Err(e) = check_id(w.id.as_str()) {
            let at = self.source.and_then(|s| s.id.or(s.name));
            self.error(at, format!("workflow {e}"));
        }
        let timeout_at = self.source.and_then(|s| s.timeout);
        if w.timeout.is_zero() {
            self.error(timeout_at, "workflow timeout is zero".into());
        } else if w.timeout > MAX_DURATION {
            self.error(
                timeout_at,
                format!(
                    "workflow timeout {} is longer than a year",
                    duration::format(w.timeout)
                ),
            );
        }
        let retry_at = self.source.and_then(|s| s.retry);
        for p in w.retry.problems() {
            self.error(retry_at, format!("workflow {p}"));
        }
        if w.tasks.is_empty() {
            let at = self.source.and_then(|s| s.tasks_block);
            self.error(at, "workflow has no tasks".into());
        }
    }

    fn task(&mut self, i: usize) {
        let w = self.workflow;
        let t = &w.tasks[i];
        let id = t.id.as_str();
        let key_at = self.src(i).and_then(|s| s.key);
        if let Err(e) = check_id(id) {
            self.error(key_at, format!("task {e}"));
        }
        if t.name.trim().is_empty() {
            self.error(key_at, format!("task `{id}` has an empty name"));
        }

        let caps = &t.requirements.capabilities;
        let caps_at = self.at(i, |s| s.capabilities);
        if caps.is_empty() {
            self.error(
                caps_at,
                format!("task `{id}` has no capabilities; list what an agent needs to run it"),
            );
        }
        for (n, c) in caps.iter().enumerate() {
            if let Capability::Other(name) = c
                && !Capability::is_valid_name(name)
            {
                self.error(
                    caps_at,
                    format!("task `{id}`: capability `{name}` is not a snake_case name"),
                );
            }
            if caps[..n].contains(c) {
                self.warning(caps_at, format!("task `{id}` lists capability `{c}` twice"));
            }
        }

        let est = t.requirements.estimated_duration;
        let est_at = self.at(i, |s| s.estimated_duration);
        if est.is_zero() {
            let has_field = self.src(i).is_some_and(|s| s.estimated_duration.is_some());
            let what = if has_field || self.source.is_none() {
                "an estimated_duration of zero"
            } else {
                "no estimated_duration"
            };
            self.error(
                est_at,
                format!("task `{id}` has {what}; the planner needs one (e.g. `30m`)"),
            );
        } else if est > MAX_DURATION {
            self.error(
                est_at,
                format!(
                    "task `{id}`: estimated_duration {} is longer than a year",
                    duration::format(est)
                ),
            );
        }

        let r = t.requirements.resources;
        let res_at = self.at(i, |s| s.resources);
        if r.cpu_cores == 0 {
            self.error(
                res_at,
                format!("task `{id}` asks for 0 cpu_cores; at least 1 is needed"),
            );
        } else if r.cpu_cores > MAX_CPU_CORES {
            self.error(
                res_at,
                format!(
                    "task `{id}` asks for {} cpu_cores; at most {MAX_CPU_CORES} are allowed",
                    r.cpu_cores
                ),
            );
        }
        if r.memory_mb == 0 {
            self.error(
                res_at,
                format!("task `{id}` asks for 0 memory_mb; at least 1 is needed"),
            );
        } else if r.memory_mb > MAX_MEMORY_MB {
            self.error(
                res_at,
                format!(
                    "task `{id}` asks for {} memory_mb; at most {MAX_MEMORY_MB} (16 TiB) are allowed",
                    r.memory_mb
                ),
            );
        }

        match &t.task_type {
            TaskType::Testing {
                coverage_threshold: Some(c),
                ..
            } if !(0.0..=1.0).contains(c) => {
                let at = self.at(i, |s| s.coverage_threshold);
                self.error(
                    at,
                    format!("task `{id}`: coverage_threshold {c} is outside 0..=1"),
                );
            }
            TaskType::Custom { handler, .. } if handler.trim().is_empty() => {
                let at = self.at(i, |s| s.handler);
                self.error(
                    at,
                    format!("task `{id}` is a custom task without a handler"),
                );
            }
            _ => {}
        }

        if let Some(timeout) = t.timeout {
            let at = self.at(i, |s| s.timeout);
            if timeout.is_zero() {
                self.error(at, format!("task `{id}` has a timeout of zero"));
            } else {
                if timeout < est {
                    self.warning(
                        at,
                        format!(
                            "task `{id}`: timeout {} is shorter than its estimate {}",
                            duration::format(timeout),
                            duration::format(est)
                        ),
                    );
                }
                if timeout > w.timeout {
                    self.warning(
                        at,
                        format!(
                            "task `{id}`: timeout {} is longer than the workflow timeout {}",
                            duration::format(timeout),
                            duration::format(w.timeout)
                        ),
                    );
                }
            }
        }
        if t.retry.is_some() {
            let at = self.at(i, |s| s.retry);
            for p in w.retry_policy_for(t).problems() {
                self.error(at, format!("task `{id}`: {p}"));
            }
        }

        for path in t.scope.paths.iter().chain(&t.scope.read_only_paths) {
            if path.starts_with('/') || path.split(['/', '\\']).any(|c| c == "..") {
                self.error(
                    key_at,
                    format!(
                        "task `{id}`: scope path `{path}` must be relative to the workspace, without `..`"
                    ),
                );
            }
        }
    }

    fn graph_problem(&mut self, p: GraphProblem) {
        let tasks = &self.workflow.tasks;
        let dep_at = |task: usize, position: usize| {
            self.src(task)
                .and_then(|s| s.depends_on.get(position).copied().flatten().or(s.key))
        };
        match p {
            GraphProblem::DuplicateTaskId { index, first } => {
                let at = self.src(index).and_then(|s| s.key);
                let first_at = self
                    .src(first)
                    .and_then(|s| s.key)
                    .map(|l| format!(" (first defined at {l})"))
                    .unwrap_or_default();
                self.error(
                    at,
                    format!("duplicate task id `{}`{first_at}", tasks[index].id),
                );
            }
            GraphProblem::UnknownDependency {
                task,
                position,
                suggestion,
            } => {
                let dep = &tasks[task].depends_on[position];
                let hint = suggestion
                    .map(|s| format!("; did you mean `{}`?", tasks[s].id))
                    .unwrap_or_default();
                let at = dep_at(task, position);
                self.error(
                    at,
                    format!(
                        "task `{}` depends on unknown task `{dep}`{hint}",
                        tasks[task].id
                    ),
                );
            }
            GraphProblem::SelfDependency { task, position } => {
                let at = dep_at(task, position);
                self.error(at, format!("task `{}` depends on itself", tasks[task].id));
            }
            GraphProblem::DuplicateDependency { task, position } => {
                let at = dep_at(task, position);
                self.warning(
                    at,
                    format!(
                        "task `{}` lists dependency `{}` twice",
                        tasks[task].id, tasks[task].depends_on[position]
                    ),
                );
            }
        }
    }

    fn cycle(&mut self, cycle: &[u32]) {
        let tasks = &self.workflow.tasks;
        let name = |i: u32| tasks[i as usize].id.as_str();
        let mut parts: Vec<&str> = Vec::with_capacity(CYCLE_SHOWN + 3);
        let elided;
        if cycle.len() <= CYCLE_SHOWN {
            parts.extend(cycle.iter().map(|&i| name(i)));
        } else {
            let half = CYCLE_SHOWN / 2;
            parts.extend(cycle[..half].iter().map(|&i| name(i)));
            elided = format!("... {} more ...", cycle.len() - CYCLE_SHOWN);
            parts.push(&elided);
            parts.extend(cycle[cycle.len() - half..].iter().map(|&i| name(i)));
        }
        parts.push(name(cycle[0]));
        let at = self.src(cycle[0] as usize).and_then(|s| s.key);
        let msg = if cycle.len() == 1 {
            format!("task `{}` depends on itself", name(cycle[0]))
        } else {
            format!(
                "dependency cycle: {} (each task depends on the next)",
                parts.join(" -> ")
            )
        };
        self.error(at, msg);
    }

    fn critical_path(&mut self, plan: &Plan) {
        let w = self.workflow;
        if plan.makespan <= w.timeout || w.timeout.is_zero() {
            return;
        }
        let ids: Vec<&str> = plan
            .critical_path
            .iter()
            .map(|&i| w.tasks[i as usize].id.as_str())
            .collect();
        let shown = if ids.len() > CYCLE_SHOWN {
            format!(
                "{} -> ... {} more ... -> {}",
                ids[..CYCLE_SHOWN / 2].join(" -> "),
                ids.len() - CYCLE_SHOWN,
                ids[ids.len() - CYCLE_SHOWN / 2..].join(" -> ")
            )
        } else {
            ids.join(" -> ")
        };
        let at = self.source.and_then(|s| s.timeout.or(s.name));
        self.error(
            at,
            format!(
                "critical path {shown} takes {}, longer than the workflow timeout of {}",
                duration::format(plan.makespan),
                duration::format(w.timeout)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TaskBuilder, WorkflowBuilder};
    use crate::format::{Format, parse_workflow};

    fn check(yaml: &str) -> Vec<String> {
        let p = parse_workflow(yaml, Format::Yaml).unwrap();
        let mut all = p.diagnostics.clone();
        all.extend(validate(&p.workflow, Some(&p.source_map)).diagnostics);
        all.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_problem_with_positions() {
        let msgs = check(
            "name: x\ntasks:\n  a:\n    type: review\n    depends_on: [a, bb]\n  b:\n    type: testing\n    coverage_threshold: 1.5\n    capabilities: [testing]\n    estimated_duration: 5m\n",
        );
        let joined = msgs.join("\n");
        assert!(
            joined.contains("3:3: error: task `a` has no capabilities"),
            "{joined}"
        );
        assert!(
            joined.contains("3:3: error: task `a` has no estimated_duration"),
            "{joined}"
        );
        assert!(
            joined.contains("5:18: error: task `a` depends on itself"),
            "{joined}"
        );
        assert!(
            joined
                .contains("5:21: error: task `a` depends on unknown task `bb`; did you mean `b`?"),
            "{joined}"
        );
        assert!(
            joined.contains("8:25: error: task `b`: coverage_threshold 1.5 is outside 0..=1"),
            "{joined}"
        );
    }

    #[test]
    fn wide_workflows_are_judged_by_critical_path_not_sum() {
        let mut b = WorkflowBuilder::new("wide").timeout(Duration::from_secs(3600));
        for i in 0..10 {
            b = b.task(
                TaskBuilder::custom(format!("t{i}"), "t", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(50 * 60)),
            );
        }
        assert!(validate(&b.build_unchecked(), None).is_valid());
    }

    #[test]
    fn long_critical_path_names_both_durations() {
        let w = WorkflowBuilder::new("deep")
            .timeout(Duration::from_secs(3600))
            .task(
                TaskBuilder::custom("a", "a", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(2400)),
            )
            .task(
                TaskBuilder::custom("b", "b", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(1800))
                    .depends_on(["a"]),
            )
            .build_unchecked();
        let v = validate(&w, None);
        let msg = &v.errors().next().unwrap().message;
        assert_eq!(
            msg,
            "critical path a -> b takes 1h 10m, longer than the workflow timeout of 1h"
        );
    }

    #[test]
    fn warnings_do_not_invalidate() {
        let w = WorkflowBuilder::new("w")
            .task(
                TaskBuilder::custom("a", "a", "h")
                    .capability("x")
                    .estimated_duration(Duration::from_secs(600))
                    .timeout(Duration::from_secs(60)),
            )
            .build_unchecked();
        let v = validate(&w, None);
        assert!(v.is_valid());
        assert!(
            v.diagnostics[0]
                .message
                .contains("shorter than its estimate")
        );
    }

    #[test]
    fn empty_workflow_is_an_error() {
        let msgs = check("name: x\ntasks: {}\n");
        assert_eq!(msgs, ["2:8: error: workflow has no tasks"]);
    }
}
