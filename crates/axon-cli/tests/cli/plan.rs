//! `axon plan` on the shipped examples, in every format, run from the workspace root so that
//! paths stay relative; and its failures.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{assert_exit, assert_line, fixtures_dir, run_in, stderr, stdout, workspace_root};

const FEATURE: &str = "examples/feature/workflow.yaml";
const REFACTORING: &str = "examples/refactoring.yaml";
const AGENTS: &str = "examples/feature/agents.yaml";

/// Runs `axon plan ARGS` from the workspace root, asserts success and a silent stderr, and
/// returns stdout.
fn plan(args: &[&str]) -> String {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    let out = run_in(&workspace_root(), &all);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "", "plan of a valid example printed problems");
    stdout(&out)
}

/// The tasks of an example and their dependencies, read from the file itself.
fn example_graph(path: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    let value: Value = serde_saphyr::from_str(&text).unwrap();
    value["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, task)| {
            let deps = task["depends_on"]
                .as_array()
                .map(|a| a.iter().map(|d| d.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (id.clone(), deps)
        })
        .collect()
}

/// The plan as JSON, parsed.
fn plan_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&plan(&all)).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn feature_text() {
    insta::assert_snapshot!(plan(&[FEATURE]));
}

#[test]
fn feature_json() {
    insta::assert_snapshot!(plan(&[FEATURE, "--format", "json"]));
}

#[test]
fn feature_mermaid() {
    insta::assert_snapshot!(plan(&[FEATURE, "--format", "mermaid"]));
}

#[test]
fn feature_dot() {
    insta::assert_snapshot!(plan(&[FEATURE, "--format", "dot"]));
}

#[test]
fn refactoring_text() {
    insta::assert_snapshot!(plan(&[REFACTORING]));
}

#[test]
fn refactoring_json() {
    insta::assert_snapshot!(plan(&[REFACTORING, "--format", "json"]));
}

#[test]
fn refactoring_mermaid() {
    insta::assert_snapshot!(plan(&[REFACTORING, "--format", "mermaid"]));
}

#[test]
fn refactoring_dot() {
    insta::assert_snapshot!(plan(&[REFACTORING, "--format", "dot"]));
}

#[test]
fn feature_on_agents_text() {
    insta::assert_snapshot!(plan(&[FEATURE, "--agents", AGENTS]));
}

#[test]
fn feature_on_agents_json() {
    insta::assert_snapshot!(plan(&[FEATURE, "--agents", AGENTS, "--format", "json"]));
}

#[test]
fn json_has_the_contract_keys_and_respects_every_edge() {
    for example in [FEATURE, REFACTORING] {
        let graph = example_graph(example);
        let json = plan_json(&[example]);
        assert_eq!(
            keys(&json),
            BTreeSet::from([
                "workflow",
                "order",
                "levels",
                "critical_path",
                "estimated_duration_secs",
                "tasks",
            ]),
            "{example}"
        );
        for key in ["id", "name", "priority", "timeout_secs"] {
            assert!(
                json["workflow"].get(key).is_some(),
                "{example}: workflow.{key}"
            );
        }
        assert!(json["critical_path"]["duration_secs"].is_f64());
        assert_eq!(
            json["critical_path"]["duration_secs"],
            json["estimated_duration_secs"]
        );

        let order = strings(&json["order"]);
        let position = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert_eq!(
            order.len(),
            graph.len(),
            "{example}: every task once in order"
        );
        for (task, deps) in &graph {
            for dep in deps {
                assert!(
                    position(dep) < position(task),
                    "{example}: {dep} before {task}"
                );
            }
        }
        let levelled: usize = json["levels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_array().unwrap().len())
            .sum();
        assert_eq!(levelled, graph.len(), "{example}: every task in one level");

        let tasks = json["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), graph.len());
        for t in tasks {
            assert_eq!(
                keys(t),
                BTreeSet::from([
                    "id",
                    "name",
                    "type",
                    "level",
                    "depends_on",
                    "estimated_duration_secs",
                    "earliest_start_secs",
                    "latest_start_secs",
                    "slack_secs",
                    "critical",
                ]),
                "{example}"
            );
            let slack = t["slack_secs"].as_f64().unwrap();
            let earliest = t["earliest_start_secs"].as_f64().unwrap();
            let latest = t["latest_start_secs"].as_f64().unwrap();
            assert_eq!(latest - earliest, slack, "{example}: {t}");
            assert_eq!(
                t["critical"].as_bool().unwrap(),
                slack == 0.0,
                "{example}: {t}"
            );
        }
        let critical: Vec<String> = tasks
            .iter()
            .filter(|t| t["critical"] == true)
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        let path = strings(&json["critical_path"]["tasks"]);
        assert!(!path.is_empty());
        for id in &path {
            assert!(
                critical.contains(id),
                "{example}: {id} on the path but not critical"
            );
        }
    }
}

#[test]
fn json_with_agents_has_a_schedule_of_every_task() {
    let json = plan_json(&[FEATURE, "--agents", AGENTS]);
    let schedule = &json["schedule"];
    assert_eq!(
        keys(schedule),
        BTreeSet::from(["makespan_secs", "agents", "tasks"])
    );
    assert!(schedule["makespan_secs"].as_f64().unwrap() > 0.0);
    let agents: Vec<&str> = schedule["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["dev-1", "qa-1", "writer-1"]);
    let slots = schedule["tasks"].as_array().unwrap();
    assert_eq!(slots.len(), example_graph(FEATURE).len());
    for slot in slots {
        assert_eq!(
            keys(slot),
            BTreeSet::from(["id", "agent", "start_secs", "finish_secs"])
        );
        assert!(agents.contains(&slot["agent"].as_str().unwrap()));
        assert!(slot["start_secs"].as_f64().unwrap() < slot["finish_secs"].as_f64().unwrap());
    }
}

#[test]
fn mermaid_shows_every_task_and_edge_and_highlights_the_critical_path() {
    for example in [FEATURE, REFACTORING] {
        let graph = example_graph(example);
        let critical = strings(&plan_json(&[example])["critical_path"]["tasks"]);
        let mermaid = plan(&[example, "--format", "mermaid"]);
        assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
        // Nodes are `nK["task id<br/>name<br/>estimate"]`.
        let node = |id: &str| -> String {
            let label = format!("[\"{id}<br/>");
            let line = mermaid
                .lines()
                .find(|l| l.contains(&label))
                .unwrap_or_else(|| panic!("{example}: no node for {id}\n{mermaid}"));
            line.trim().split('[').next().unwrap().to_owned()
        };
        let links: Vec<&str> = mermaid
            .lines()
            .filter(|l| l.contains(" --> "))
            .map(str::trim)
            .collect();
        let mut edges = 0;
        let mut critical_links = Vec::new();
        for (task, deps) in &graph {
            for dep in deps {
                let link = format!("{} --> {}", node(dep), node(task));
                let k = links
                    .iter()
                    .position(|l| *l == link)
                    .unwrap_or_else(|| panic!("{example}: no edge {dep} -> {task}\n{mermaid}"));
                if critical.windows(2).any(|w| w[0] == *dep && w[1] == *task) {
                    critical_links.push(k);
                }
                edges += 1;
            }
        }
        assert_eq!(links.len(), edges, "{example}: extra edges\n{mermaid}");

        let class_line = mermaid
            .lines()
            .find(|l| l.trim_start().starts_with("class ") && l.ends_with(" critical"))
            .unwrap_or_else(|| panic!("{example}: no critical class\n{mermaid}"));
        let mut highlighted: Vec<&str> = class_line.trim()["class ".len()..]
            .trim_end_matches(" critical")
            .split(',')
            .collect();
        let mut on_path: Vec<String> = critical.iter().map(|id| node(id)).collect();
        highlighted.sort_unstable();
        on_path.sort_unstable();
        assert_eq!(highlighted, on_path, "{example}");

        critical_links.sort_unstable();
        let expected = critical_links
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        assert_line(
            &mermaid,
            &format!("    linkStyle {expected} stroke:#d33,stroke-width:3px"),
        );
    }
}

#[test]
fn dot_shows_every_task_and_edge_and_highlights_the_critical_path() {
    for example in [FEATURE, REFACTORING] {
        let graph = example_graph(example);
        let critical = strings(&plan_json(&[example])["critical_path"]["tasks"]);
        let dot = plan(&[example, "--format", "dot"]);
        assert!(dot.starts_with("digraph "), "{dot}");
        assert!(dot.ends_with("}\n"), "{dot}");
        let red = "color=\"#dd3333\", penwidth=3";
        let mut edges = 0;
        for (task, deps) in &graph {
            let line = dot
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("\"{task}\" [label=")))
                .unwrap_or_else(|| panic!("{example}: no node for {task}\n{dot}"));
            assert_eq!(
                line.contains(red),
                critical.contains(task),
                "{example}: {line}"
            );
            for dep in deps {
                let prefix = format!("\"{dep}\" -> \"{task}\"");
                let line = dot
                    .lines()
                    .find(|l| l.trim_start().starts_with(&prefix))
                    .unwrap_or_else(|| panic!("{example}: no edge {dep} -> {task}\n{dot}"));
                let on_path = critical.windows(2).any(|w| w[0] == *dep && w[1] == *task);
                assert_eq!(line.contains(red), on_path, "{example}: {line}");
                edges += 1;
            }
        }
        assert_eq!(
            dot.matches(" -> ").count(),
            edges,
            "{example}: extra edges\n{dot}"
        );
    }
}

#[test]
fn json_example_plans_like_the_yaml_one() {
    let yaml = plan_json(&[FEATURE]);
    let json = plan_json(&["examples/feature/workflow.json"]);
    for key in [
        "order",
        "levels",
        "critical_path",
        "estimated_duration_secs",
    ] {
        assert_eq!(yaml[key], json[key], "{key}");
    }
}

#[test]
fn stdin_is_planned_with_a_dash() {
    let text = std::fs::read(workspace_root().join(REFACTORING)).unwrap();
    let out = crate::axon()
        .args(["plan", "-", "--format", "json"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(strings(&json["order"]), ["analyze", "refactor", "verify"]);
}

/// `axon plan ARGS` in the fixtures directory, which must fail with exit 1 and print nothing
/// on stdout; returns stderr.
fn plan_fails(args: &[&str]) -> String {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    let out = run_in(&fixtures_dir(), &all);
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "", "a failed plan printed a plan");
    stderr(&out)
}

#[test]
fn invalid_workflow_is_not_planned() {
    for format in ["text", "json", "mermaid", "dot"] {
        let err = plan_fails(&["cycle.yaml", "--format", format]);
        assert_eq!(
            err,
            "cycle.yaml:3:3: error: dependency cycle: a -> b -> c -> a (each task depends on the next)\n"
        );
    }
}

#[test]
fn task_without_a_suitable_agent_is_not_planned() {
    let err = plan_fails(&[
        "needs_missing_capability.yaml",
        "--agents",
        "agents_small.yaml",
    ]);
    assert_eq!(
        err,
        "needs_missing_capability.yaml:7:3: error: no suitable agent for task translate: no agent has capability translation\n"
    );
    let err = plan_fails(&[
        "needs_more_resources.yaml",
        "--agents",
        "agents_small.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(
        err,
        "needs_more_resources.yaml:7:3: error: no suitable agent for task train: it needs 16 cpu_cores, the most a capable agent has is 4\n"
    );
}

#[test]
fn invalid_agents_file_is_not_used() {
    let err = plan_fails(&["valid.yaml", "--agents", "agents_invalid.yaml"]);
    insta::assert_snapshot!(err);
}

#[test]
fn missing_workflow_file_is_an_error() {
    let err = plan_fails(&["no_such_file.yaml"]);
    assert_eq!(
        err,
        "no_such_file.yaml: error: cannot open file: No such file or directory (os error 2)\n"
    );
}

#[test]
fn warnings_are_printed_and_the_plan_still_made() {
    let out = run_in(&fixtures_dir(), &["plan", "warning_only.yaml"]);
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out),
        "warning_only.yaml:7:14: warning: task `build`: timeout 10m is shorter than its estimate 30m\n"
    );
    assert!(stdout(&out).contains("critical path (*): build (30m)"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["plan"][..],
        &["plan", "valid.yaml", "--format", "svg"],
        &["plan", "valid.yaml", "other.yaml"],
        &["plan", "valid.yaml", "--agents"],
    ] {
        let out = run_in(&fixtures_dir(), args);
        assert_exit(&out, 2);
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}
