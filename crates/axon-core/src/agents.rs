//! Agents as declared in an agents file, and the plan-time feasibility check: can every
//! task be run by at least one of them?
//!
//! ```yaml
//! agents:
//!   - id: dev-1
//!     capabilities: [code_generation, api_design, refactoring]
//!     max_concurrent_tasks: 2
//!     resources: { cpu_cores: 4, memory_mb: 8192, gpu: false }
//!     command: ["./agents/dev.sh"]
//!     env: { MODEL: fast }
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Location};
use crate::format::{Format, ResourcesFile, SourceMap, parse_text};
use crate::id::{AgentId, check_id};
use crate::model::{Capability, ResourceRequirements, Task, Workflow};

/// Most concurrent tasks one agent may declare.
pub const MAX_CONCURRENT: u32 = 10_000;

/// An agent: what it can do and how much it can hold at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// Unique id.
    pub id: AgentId,
    /// Capabilities it offers.
    pub capabilities: Vec<Capability>,
    /// Tasks it runs at the same time.
    pub max_concurrent_tasks: u32,
    /// Resources it offers, shared by its running tasks. Undeclared cpu and memory are
    /// unlimited; an agent without a `resources` block also offers a GPU.
    pub resources: ResourceRequirements,
    /// Program and arguments run once per task attempt (command agents).
    pub command: Vec<String>,
    /// Extra environment for the command.
    pub env: BTreeMap<String, String>,
    /// Whether the command gets the Cortex API key (`AXON_CORTEX_API_KEY`) when the run uses
    /// a Cortex server. Off by default: agents get the Cortex URL and their session's ids,
    /// never the key, unless their agents file says so.
    pub cortex_api_key: bool,
}

impl AgentSpec {
    /// Whether the agent offers every capability `task` needs.
    pub fn has_capabilities_for(&self, task: &Task) -> bool {
        task.requirements
            .capabilities
            .iter()
            .all(|c| self.capabilities.contains(c))
    }

    /// Whether the agent's total resources cover `task`'s needs.
    pub fn has_resources_for(&self, task: &Task) -> bool {
        let need = task.requirements.resources;
        need.cpu_cores <= self.resources.cpu_cores
            && need.memory_mb <= self.resources.memory_mb
            && (!need.gpu || self.resources.gpu)
    }

    /// Whether the agent could ever run `task`.
    pub fn can_run(&self, task: &Task) -> bool {
        self.has_capabilities_for(task) && self.has_resources_for(task)
    }
}

/// An agents file as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Axon agents")]
pub struct AgentsFile {
    /// The agents.
    pub agents: Vec<AgentFile>,
}

/// One agent as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Unique id.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Capabilities it offers.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Tasks it runs at once (default 1).
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_concurrent_tasks: Option<Spanned<u32>>,
    /// Resources it offers, shared by its running tasks. Undeclared cpu and memory are not
    /// limited (only `max_concurrent_tasks` is); `gpu` defaults to false when the block is
    /// given and to true when it is absent.
    #[serde(default)]
    pub resources: Option<ResourcesFile>,
    /// Program and arguments run once per task attempt.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Give the command the Cortex API key as `AXON_CORTEX_API_KEY` when the run uses a Cortex
    /// server (default false: agents get the Cortex URL and their session's ids, never the key).
    #[serde(default)]
    pub cortex_api_key: bool,
}

/// Agents read from a file, with the problems found.
#[derive(Debug, Clone)]
pub struct ParsedAgents {
    /// The agents, in file order.
    pub agents: Vec<AgentSpec>,
    /// Problems: bad or duplicate ids, zero capacity, no capabilities (all of them).
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads an agents file.
///
/// # Errors
///
/// One positioned diagnostic for a syntax, field or type error.
pub fn parse_agents(text: &str, format: Format) -> Result<ParsedAgents, Diagnostic> {
    let file: AgentsFile = parse_text(text, format)?;
    let mut diagnostics = Vec::new();
    let mut agents: Vec<AgentSpec> = Vec::with_capacity(file.agents.len());
    let mut seen: BTreeMap<String, Option<Location>> = BTreeMap::new();
    if file.agents.is_empty() {
        diagnostics.push(Diagnostic::error(None, "agents file declares no agents"));
    }
    for a in file.agents {
        let at = Location::from_saphyr(a.id.referenced);
        let id = a.id.value;
        if let Err(e) = check_id(&id) {
            diagnostics.push(Diagnostic::error(at, format!("agent {e}")));
        }
        if let Some(first) = seen.get(&id) {
            let first = first
                .map(|l| format!(" (first defined at {l})"))
                .unwrap_or_default();
            diagnostics.push(Diagnostic::error(
                at,
                format!("duplicate agent id `{id}`{first}"),
            ));
        } else {
            seen.insert(id.clone(), at);
        }
        for c in &a.capabilities {
            if !Capability::is_valid_name(c.as_str()) {
                diagnostics.push(Diagnostic::error(
                    at,
                    format!("agent `{id}`: capability `{c}` is not a snake_case name"),
                ));
            }
        }
        if a.capabilities.is_empty() {
            diagnostics.push(Diagnostic::warning(
                at,
                format!("agent `{id}` has no capabilities and can run no task"),
            ));
        }
        let max = match a.max_concurrent_tasks {
            Some(m) => {
                if m.value == 0 || m.value > MAX_CONCURRENT {
                    diagnostics.push(Diagnostic::error(
                        Location::from_saphyr(m.referenced),
                        format!(
                            "agent `{id}`: max_concurrent_tasks must be between 1 and {MAX_CONCURRENT}, not {}",
                            m.value
                        ),
                    ));
                }
                m.value
            }
            None => 1,
        };
        // Resources an agent does not declare are not limited: only its slots are.
        let resources = ResourceRequirements {
            cpu_cores: a.resources.and_then(|r| r.cpu_cores).unwrap_or(u32::MAX),
            memory_mb: a.resources.and_then(|r| r.memory_mb).unwrap_or(u64::MAX),
            gpu: match a.resources {
                Some(r) => r.gpu.unwrap_or(false),
                None => true,
            },
        };
        agents.push(AgentSpec {
            id: AgentId::new(id),
            capabilities: a.capabilities,
            max_concurrent_tasks: max,
            resources,
            command: a.command,
            env: a.env,
            cortex_api_key: a.cortex_api_key,
        });
    }
    Ok(ParsedAgents {
        agents,
        diagnostics,
    })
}

/// The JSON Schema of agents files, generated from [`AgentsFile`].
pub fn agents_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AgentsFile)).unwrap_or(serde_json::Value::Null)
}

/// Checks that every task has at least one agent that could ever run it, reporting each
/// task that has none with what is missing.
pub fn check_feasibility(
    workflow: &Workflow,
    agents: &[AgentSpec],
    source: Option<&SourceMap>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, task) in workflow.tasks.iter().enumerate() {
        if agents.iter().any(|a| a.can_run(task)) {
            continue;
        }
        let at = source.and_then(|s| s.task(i)).and_then(|s| s.key);
        out.push(Diagnostic::error(at, infeasibility_reason(task, agents)));
    }
    out
}

/// Why no agent can run `task` (assuming none can).
pub fn infeasibility_reason(task: &Task, agents: &[AgentSpec]) -> String {
    let id = &task.id;
    let caps = &task.requirements.capabilities;
    if let Some(missing) = caps
        .iter()
        .find(|c| !agents.iter().any(|a| a.capabilities.contains(c)))
    {
        return format!("no suitable agent for task {id}: no agent has capability {missing}");
    }
    let capable: Vec<&AgentSpec> = agents
        .iter()
        .filter(|a| a.has_capabilities_for(task))
        .collect();
    if capable.is_empty() {
        let list: Vec<&str> = caps.iter().map(Capability::as_str).collect();
        return format!(
            "no suitable agent for task {id}: no single agent has all of {}",
            list.join(", ")
        );
    }
    let need = task.requirements.resources;
    let most_cpu = capable
        .iter()
        .map(|a| a.resources.cpu_cores)
        .max()
        .unwrap_or(0);
    if need.cpu_cores > most_cpu {
        return format!(
            "no suitable agent for task {id}: it needs {} cpu_cores, the most a capable agent has is {most_cpu}",
            need.cpu_cores
        );
    }
    let most_mem = capable
        .iter()
        .map(|a| a.resources.memory_mb)
        .max()
        .unwrap_or(0);
    if need.memory_mb > most_mem {
        return format!(
            "no suitable agent for task {id}: it needs {} memory_mb, the most a capable agent has is {most_mem}",
            need.memory_mb
        );
    }
    if need.gpu {
        return format!(
            "no suitable agent for task {id}: it needs a gpu, and no capable agent has one"
        );
    }
    format!(
        "no suitable agent for task {id}: no capable agent has enough cpu_cores, memory_mb and gpu together"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{TaskBuilder, WorkflowBuilder};

    const AGENTS: &str = "agents:\n  - id: dev\n    capabilities: [code_generation]\n    max_concurrent_tasks: 2\n    resources: { cpu_cores: 4, memory_mb: 8192 }\n    command: [./dev.sh]\n  - id: rev\n    capabilities: [code_review]\n";

    #[test]
    fn parses_agents_with_defaults() {
        let p = parse_agents(AGENTS, Format::Yaml).unwrap();
        assert!(p.diagnostics.is_empty());
        assert_eq!(p.agents[0].max_concurrent_tasks, 2);
        assert_eq!(p.agents[1].max_concurrent_tasks, 1);
        assert_eq!(p.agents[1].resources.cpu_cores, u32::MAX);
        assert_eq!(p.agents[0].resources.memory_mb, 8192);
        assert!(!p.agents[0].resources.gpu && p.agents[1].resources.gpu);
    }

    #[test]
    fn bad_agents_are_reported_with_positions() {
        let p = parse_agents(
            "agents:\n  - id: a\n    max_concurrent_tasks: 0\n  - id: a\n    capabilities: [x]\n",
            Format::Yaml,
        )
        .unwrap();
        let msgs: Vec<_> = p.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("3:27: error: agent `a`: max_concurrent_tasks")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("4:9: error: duplicate agent id `a` (first defined at 2:9)")),
            "{msgs:?}"
        );
    }

    #[test]
    fn feasibility_names_the_missing_capability_or_resource() {
        let agents = parse_agents(AGENTS, Format::Yaml).unwrap().agents;
        let w = WorkflowBuilder::new("w")
            .task(TaskBuilder::custom("ok", "ok", "h").capability("code_generation"))
            .task(TaskBuilder::custom("doc", "doc", "h").capability("documentation"))
            .task(
                TaskBuilder::custom("big", "big", "h")
                    .capability("code_generation")
                    .resources(ResourceRequirements {
                        cpu_cores: 8,
                        memory_mb: 1,
                        gpu: false,
                    }),
            )
            .task(
                TaskBuilder::custom("both", "both", "h")
                    .capability("code_generation")
                    .capability("code_review"),
            )
            .build_unchecked();
        let msgs: Vec<_> = check_feasibility(&w, &agents, None)
            .into_iter()
            .map(|d| d.message)
            .collect();
        assert_eq!(
            msgs,
            [
                "no suitable agent for task doc: no agent has capability documentation",
                "no suitable agent for task big: it needs 8 cpu_cores, the most a capable agent has is 4",
                "no suitable agent for task both: no single agent has all of code_generation, code_review",
            ]
        );
    }
}
