//! `axon schema [workflow|agents]`: the printed JSON Schemas accept every shipped example and
//! reject what the validator rejects at the file level.

use serde_json::{Value, json};

use crate::{assert_exit, axon, stderr, workspace_root};

/// The schema printed by `axon schema ARGS`, parsed.
fn schema(args: &[&str]) -> Value {
    let out = axon().arg("schema").args(args).output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An example file as a JSON value (YAML read with the same YAML library as Axon).
fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples").join(name)).unwrap();
    if name.ends_with(".json") {
        serde_json::from_str(&text).unwrap()
    } else {
        serde_saphyr::from_str(&text).unwrap()
    }
}

fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn workflow_schema_accepts_every_shipped_workflow() {
    let schema = schema(&[]);
    assert_eq!(
        schema,
        self::schema(&["workflow"]),
        "workflow is the default"
    );
    assert_eq!(schema["title"], "Axon workflow");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for name in example_files() {
        let is_workflow = (name.ends_with(".yaml") || name.ends_with(".json"))
            && !name.rsplit('/').next().unwrap_or("").starts_with("agents");
        if !is_workflow {
            continue;
        }
        let errors = errors(&validator, &example(&name));
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example workflows found");
}

#[test]
fn workflow_schema_rejects_file_level_mistakes() {
    let validator = jsonschema::validator_for(&schema(&[])).unwrap();
    for bad in [
        json!({"name": "x", "tasks": {"a": {"type": "development", "timeoutt": "5m"}}}),
        json!({"name": "x", "tasks": {"a": {"type": "developmnt"}}}),
        json!({"name": "x", "tasks": {"my task": {"type": "review"}}}),
        json!({"name": "x", "tasks": {"a": {"type": "testing", "coverage_threshold": 1.5}}}),
        json!({"tasks": {}}),
        example("feature/agents.yaml"),
    ] {
        assert!(!validator.is_valid(&bad), "accepted {bad}");
    }
}

#[test]
fn agents_schema_accepts_the_shipped_agents() {
    let schema = schema(&["agents"]);
    assert_eq!(schema["title"], "Axon agents");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors = errors(&validator, &example("feature/agents.yaml"));
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(!validator.is_valid(&example("feature/workflow.yaml")));
    assert!(!validator.is_valid(&json!({"agents": [{"id": "a", "bogus": 1}]})));
}

#[test]
fn unknown_schema_kind_is_a_usage_error() {
    let out = axon().args(["schema", "bogus"]).output().unwrap();
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty());
}

/// Every file under `examples/`, as paths relative to it (`feature/workflow.yaml`).
fn example_files() -> Vec<String> {
    let root = workspace_root().join("examples");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(
                    path.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}
