//! `axon plan FILE [--agents FILE] [--format text|json|mermaid|dot]`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use axon_core::DagIndex;
use axon_core::agents::AgentSpec;
use axon_core::duration;
use axon_core::model::Workflow;
use axon_core::plan::Plan;
use axon_core::schedule::{Schedule, simulate};
use serde::Serialize;

use crate::Status;
use crate::cli::{PlanArgs, PlanFormat};
use crate::input::{check_workflow, load_agents};
use crate::output::{plural, print_report, print_stdout};

/// Validates the workflow (and feasibility on the agents), then prints the plan.
pub fn run(args: &PlanArgs) -> anyhow::Result<Status> {
    let agents = match &args.agents {
        Some(path) => {
            let (agents, report) = load_agents(path);
            print_report(&report);
            match agents {
                Some(a) if !report.has_errors() => Some(a),
                _ => return Ok(Status::Invalid),
            }
        }
        None => None,
    };
    let checked = check_workflow(&args.file, agents.as_deref());
    print_report(&checked.report);
    if checked.report.has_errors() {
        return Ok(Status::Invalid);
    }
    let Some((parsed, validation)) = checked.checked else {
        return Ok(Status::Invalid);
    };
    let Some(plan) = validation.plan.as_ref() else {
        return Ok(Status::Invalid);
    };
    let w = &parsed.workflow;
    let schedule = match &agents {
        Some(agents) => match simulate(w, &validation.index, plan, agents) {
            Ok(s) => Some((agents.as_slice(), s)),
            // Feasibility was checked above, so this cannot happen; say so if it does.
            Err(_) => anyhow::bail!("a task has no suitable agent"),
        },
        None => None,
    };
    let view = PlanView {
        workflow: w,
        index: &validation.index,
        plan,
        schedule: schedule.as_ref().map(|(a, s)| (*a, s)),
    };
    let text = match args.format {
        PlanFormat::Text => view.text(),
        PlanFormat::Json => {
            let mut s = serde_json::to_string_pretty(&view.json())?;
            s.push('\n');
            s
        }
        PlanFormat::Mermaid => view.mermaid(),
        PlanFormat::Dot => view.dot(),
    };
    print_stdout(&text)?;
    Ok(Status::Success)
}

struct PlanView<'a> {
    workflow: &'a Workflow,
    index: &'a DagIndex,
    plan: &'a Plan,
    schedule: Option<(&'a [AgentSpec], &'a Schedule)>,
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl PlanView<'_> {
    fn id(&self, i: u32) -> &str {
        self.workflow.tasks[i as usize].id.as_str()
    }

    fn critical_edges(&self) -> HashSet<(u32, u32)> {
        self.plan
            .critical_path
            .windows(2)
            .map(|w| (w[0], w[1]))
            .collect()
    }

    /// Every edge as (prerequisite, dependent), dependents in plan order.
    fn edges(&self) -> Vec<(u32, u32)> {
        self.plan
            .order
            .iter()
            .flat_map(|&d| {
                self.index
                    .prerequisites(d as usize)
                    .iter()
                    .map(move |&p| (p, d))
            })
            .collect()
    }

    fn text(&self) -> String {
        let w = self.workflow;
        let mut head = vec![
            "#", "level", "task", "type", "estimate", "earliest", "slack",
        ];
        if self.schedule.is_some() {
            head.extend(["agent", "start"]);
        }
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(w.tasks.len());
        for (pos, &i) in self.plan.order.iter().enumerate() {
            let t = &w.tasks[i as usize];
            let tp = &self.plan.tasks[i as usize];
            let mut row = vec![
                (pos + 1).to_string(),
                tp.level.to_string(),
                t.id.to_string(),
                t.task_type.kind().to_string(),
                duration::format(t.requirements.estimated_duration),
                duration::format(tp.earliest_start()),
                duration::format(tp.slack()),
            ];
            if let Some((agents, s)) = self.schedule {
                let slot = s.slots[i as usize];
                row.push(agents[slot.agent as usize].id.to_string());
                row.push(duration::format(ms(slot.start_ms)));
            }
            row.push(if tp.is_critical() {
                "*".into()
            } else {
                String::new()
            });
            rows.push(row);
        }
        let mut out = String::new();
        let _ = writeln!(out, "{} ({})", w.name, w.id);
        let _ = writeln!(
            out,
            "{} in {}, priority {}, timeout {}, failure policy {}",
            plural(w.tasks.len(), "task"),
            plural(self.plan.levels.len(), "level"),
            w.priority,
            duration::format(w.timeout),
            w.failure_policy
        );
        out.push('\n');
        let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (k, cell) in row.iter().enumerate().take(head.len()) {
                widths[k] = widths[k].max(cell.chars().count());
            }
        }
        // Numbers and durations right-aligned, names left-aligned.
        let right = |k: usize| !matches!(head.get(k), Some(&"task" | &"type" | &"agent"));
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (k, cell) in cells.iter().enumerate() {
                if k > 0 {
                    s.push_str("  ");
                }
                if k < head.len() {
                    let pad = widths[k].saturating_sub(cell.chars().count());
                    if right(k) {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(cell);
                    } else {
                        s.push_str(cell);
                        s.push_str(&" ".repeat(pad));
                    }
                } else {
                    s.push_str(cell);
                }
            }
            s.trim_end().to_owned()
        };
        let header: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
        let _ = writeln!(out, "{}", line(&header));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out.push('\n');
        let path: Vec<&str> = self
            .plan
            .critical_path
            .iter()
            .map(|&i| self.id(i))
            .collect();
        let _ = writeln!(
            out,
            "critical path (*): {} ({})",
            path.join(" -> "),
            duration::format(self.plan.makespan)
        );
        if let Some((agents, s)) = self.schedule {
            let _ = writeln!(out, "\nschedule on {}:", plural(agents.len(), "agent"));
            let width = agents
                .iter()
                .map(|a| a.id.as_str().len())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = writeln!(
                out,
                "  {:<width$}  {:>5}  {:>9}  {:>11}",
                "agent", "tasks", "busy", "utilisation"
            );
            for (a, u) in agents.iter().zip(&s.agents) {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:>5}  {:>9}  {:>10.0}%",
                    a.id.as_str(),
                    u.tasks,
                    duration::format(ms(u.busy_ms)),
                    u.utilisation * 100.0
                );
            }
            let _ = writeln!(
                out,
                "\nestimated duration: {} on these agents, {} with unlimited agents (timeout {})",
                duration::format(s.makespan),
                duration::format(self.plan.makespan),
                duration::format(w.timeout)
            );
        } else {
            let _ = writeln!(
                out,
                "estimated duration: {} with unlimited agents (timeout {})",
                duration::format(self.plan.makespan),
                duration::format(w.timeout)
            );
        }
        out
    }

    fn json(&self) -> JsonPlan<'_> {
        let w = self.workflow;
        let ids = |v: &[u32]| -> Vec<&str> { v.iter().map(|&i| self.id(i)).collect() };
        JsonPlan {
            workflow: JsonWorkflow {
                id: w.id.as_str(),
                name: &w.name,
                priority: w.priority.as_str(),
                timeout_secs: secs(w.timeout),
            },
            order: ids(&self.plan.order),
            levels: self.plan.levels.iter().map(|l| ids(l)).collect(),
            critical_path: JsonCriticalPath {
                tasks: ids(&self.plan.critical_path),
                duration_secs: secs(self.plan.makespan),
            },
            estimated_duration_secs: secs(self.plan.makespan),
            tasks: self
                .plan
                .order
                .iter()
                .map(|&i| {
                    let t = &w.tasks[i as usize];
                    let tp = &self.plan.tasks[i as usize];
                    JsonTask {
                        id: t.id.as_str(),
                        name: &t.name,
                        task_type: t.task_type.kind().as_str(),
                        level: tp.level,
                        depends_on: t.depends_on.iter().map(|d| d.as_str()).collect(),
                        estimated_duration_secs: secs(t.requirements.estimated_duration),
                        earliest_start_secs: secs(tp.earliest_start()),
                        latest_start_secs: secs(tp.latest_start()),
                        slack_secs: secs(tp.slack()),
                        critical: tp.is_critical(),
                    }
                })
                .collect(),
            schedule: self.schedule.map(|(agents, s)| JsonSchedule {
                makespan_secs: secs(s.makespan),
                agents: agents
                    .iter()
                    .zip(&s.agents)
                    .map(|(a, u)| JsonAgentUsage {
                        id: a.id.as_str(),
                        tasks: u.tasks,
                        busy_secs: secs(ms(u.busy_ms)),
                        utilisation: u.utilisation,
                    })
                    .collect(),
                tasks: self
                    .plan
                    .order
                    .iter()
                    .map(|&i| {
                        let slot = s.slots[i as usize];
                        JsonSlot {
                            id: self.id(i),
                            agent: agents[slot.agent as usize].id.as_str(),
                            start_secs: secs(ms(slot.start_ms)),
                            finish_secs: secs(ms(slot.finish_ms)),
                        }
                    })
                    .collect(),
            }),
        }
    }

    fn mermaid(&self) -> String {
        let w = self.workflow;
        let esc = |s: &str| {
            s.replace('"', "#quot;")
                .replace('<', "#lt;")
                .replace('>', "#gt;")
                .replace(['\n', '\r'], " ")
        };
        let mut out = String::from("flowchart LR\n");
        for &i in &self.plan.order {
            let t = &w.tasks[i as usize];
            let _ = writeln!(
                out,
                "    n{i}[\"{}<br/>{}<br/>{}\"]",
                esc(t.id.as_str()),
                esc(&t.name),
                duration::format(t.requirements.estimated_duration)
            );
        }
        let critical = self.critical_edges();
        let mut critical_links = Vec::new();
        for (k, (p, d)) in self.edges().into_iter().enumerate() {
            let _ = writeln!(out, "    n{p} --> n{d}");
            if critical.contains(&(p, d)) {
                critical_links.push(k.to_string());
            }
        }
        if !self.plan.critical_path.is_empty() {
            out.push_str("    classDef critical stroke:#d33,stroke-width:3px\n");
            let nodes: Vec<String> = self
                .plan
                .critical_path
                .iter()
                .map(|i| format!("n{i}"))
                .collect();
            let _ = writeln!(out, "    class {} critical", nodes.join(","));
        }
        if !critical_links.is_empty() {
            let _ = writeln!(
                out,
                "    linkStyle {} stroke:#d33,stroke-width:3px",
                critical_links.join(",")
            );
        }
        out
    }

    fn dot(&self) -> String {
        let w = self.workflow;
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(['\n', '\r'], " ")
        };
        let on_path: HashSet<u32> = self.plan.critical_path.iter().copied().collect();
        let critical = self.critical_edges();
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", esc(w.id.as_str()));
        let _ = writeln!(out, "    label=\"{}\";", esc(&w.name));
        out.push_str("    rankdir=LR;\n    node [shape=box, style=rounded];\n");
        for &i in &self.plan.order {
            let t = &w.tasks[i as usize];
            let style = if on_path.contains(&i) {
                ", color=\"#dd3333\", penwidth=3"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\\n{}\\n{}\"{style}];",
                esc(t.id.as_str()),
                esc(t.id.as_str()),
                esc(&t.name),
                duration::format(t.requirements.estimated_duration)
            );
        }
        for (p, d) in self.edges() {
            let style = if critical.contains(&(p, d)) {
                " [color=\"#dd3333\", penwidth=3]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\"{style};",
                esc(self.id(p)),
                esc(self.id(d))
            );
        }
        out.push_str("}\n");
        out
    }
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    workflow: JsonWorkflow<'a>,
    order: Vec<&'a str>,
    levels: Vec<Vec<&'a str>>,
    critical_path: JsonCriticalPath<'a>,
    estimated_duration_secs: f64,
    tasks: Vec<JsonTask<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<JsonSchedule<'a>>,
}

#[derive(Serialize)]
struct JsonWorkflow<'a> {
    id: &'a str,
    name: &'a str,
    priority: &'a str,
    timeout_secs: f64,
}

#[derive(Serialize)]
struct JsonCriticalPath<'a> {
    tasks: Vec<&'a str>,
    duration_secs: f64,
}

#[derive(Serialize)]
struct JsonTask<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    level: u32,
    depends_on: Vec<&'a str>,
    estimated_duration_secs: f64,
    earliest_start_secs: f64,
    latest_start_secs: f64,
    slack_secs: f64,
    critical: bool,
}

#[derive(Serialize)]
struct JsonSchedule<'a> {
    makespan_secs: f64,
    agents: Vec<JsonAgentUsage<'a>>,
    tasks: Vec<JsonSlot<'a>>,
}

#[derive(Serialize)]
struct JsonAgentUsage<'a> {
    id: &'a str,
    tasks: u32,
    busy_secs: f64,
    utilisation: f64,
}

#[derive(Serialize)]
struct JsonSlot<'a> {
    id: &'a str,
    agent: &'a str,
    start_secs: f64,
    finish_secs: f64,
}
