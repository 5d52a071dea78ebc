//! The shipped examples: the YAML files equal their builder twins, match the JSON Schema,
//! and the spec's original timeouts are rejected with both durations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axon_core::format::{Format, parse_workflow, workflow_schema};
use axon_core::model::Workflow;

#[path = "../../examples/feature_auth.rs"]
mod feature_auth;
#[path = "../../examples/refactoring.rs"]
mod refactoring;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read_example(name: &str) -> Workflow {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse_workflow(&text, Format::from_path(&path)).unwrap();
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let v = axon_core::validate(&parsed.workflow, Some(&parsed.source_map));
    assert!(v.diagnostics.is_empty(), "{name}: {:?}", v.diagnostics);
    parsed.workflow
}

#[test]
fn feature_yaml_equals_the_builder_workflow() {
    let built = feature_auth::feature_workflow(Duration::from_secs(3 * 3600)).unwrap();
    assert_eq!(read_example("feature/workflow.yaml"), built);
}

#[test]
fn refactoring_yaml_equals_the_builder_workflow() {
    let built = refactoring::refactoring_workflow(Duration::from_secs(90 * 60)).unwrap();
    assert_eq!(read_example("refactoring.yaml"), built);
}

#[test]
fn feature_json_plans_like_the_yaml() {
    let yaml = read_example("feature/workflow.yaml");
    let json = read_example("feature/workflow.json");
    let ids = |w: &Workflow| -> Vec<String> {
        let v = axon_core::validate(w, None);
        let plan = v.plan.unwrap();
        plan.order
            .iter()
            .map(|&i| w.tasks[i as usize].id.to_string())
            .collect()
    };
    assert_eq!(ids(&yaml), ids(&json));
    assert_eq!(yaml.tasks.len(), json.tasks.len());
}

#[test]
fn spec_timeouts_are_rejected_with_both_durations() {
    let err = feature_auth::feature_workflow(Duration::from_secs(2 * 3600)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("takes 2h 15m"), "{msg}");
    assert!(msg.contains("workflow timeout of 2h"), "{msg}");

    let err = refactoring::refactoring_workflow(Duration::from_secs(3600)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("takes 1h 10m"), "{msg}");
    assert!(msg.contains("workflow timeout of 1h"), "{msg}");
}

#[test]
fn spec_timeouts_are_rejected_in_files_too() {
    let path = examples_dir().join("feature/workflow.yaml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("timeout: 3h", "timeout: 2h");
    let parsed = parse_workflow(&text, Format::Yaml).unwrap();
    let v = axon_core::validate(&parsed.workflow, Some(&parsed.source_map));
    let errors: Vec<_> = v.errors().collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("2h 15m") && errors[0].message.contains("of 2h"));
    // It points at the timeout line.
    assert_eq!(errors[0].location.unwrap().line, 11);
}

#[test]
fn every_shipped_workflow_matches_the_json_schema() {
    let schema = workflow_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    let mut dirs = vec![examples_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("agents") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let value: serde_json::Value = match Format::from_path(&path) {
                Format::Json => serde_json::from_str(&text).unwrap(),
                Format::Yaml if name.ends_with(".yaml") || name.ends_with(".yml") => {
                    serde_saphyr::from_str(&text).unwrap()
                }
                Format::Yaml => continue,
            };
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} examples checked");
}

#[test]
fn the_schema_rejects_what_the_reader_rejects() {
    let schema = workflow_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        serde_json::json!({"name": "x", "tasks": {"a": {"type": "development", "timeoutt": "5m"}}}),
        serde_json::json!({"name": "x", "tasks": {"a": {"type": "nonsense"}}}),
        serde_json::json!({"name": "x", "tasks": {"a b": {"type": "review"}}}),
        serde_json::json!({"tasks": {}}),
        serde_json::json!({"name": "x", "tasks": {"a": {"type": "testing", "coverage_threshold": 2}}}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}

#[test]
fn every_shipped_agents_file_matches_its_schema() {
    let schema = axon_core::agents::agents_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(examples_dir().join("feature/agents.yaml")).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
