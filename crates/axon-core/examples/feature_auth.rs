//! The spec's feature-development workflow, built with the builder DSL.
//!
//! It is the same workflow as `examples/feature/workflow.yaml` (a test checks that the two are
//! equal). Run it with `cargo run --example feature_auth`.

use std::time::Duration;

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{Capability, DocFormat, Priority, ReviewType, TestType, Workflow};
use axon_core::validate::InvalidWorkflow;

const MINUTE: Duration = Duration::from_secs(60);

/// Builds the workflow with the given timeout (the spec says 2h; its critical path needs 2h 15m).
pub fn feature_workflow(timeout: Duration) -> Result<Workflow, InvalidWorkflow> {
    let design = TaskBuilder::development("design", "Design API", "rust")
        .scope(["src/api"])
        .capability(Capability::CodeGeneration)
        .capability(Capability::ApiDesign)
        .estimated_duration(30 * MINUTE)
        .input(serde_json::json!({ "prompt": "Design the REST API for login and logout" }));
    let implement = TaskBuilder::development("implement", "Implement API", "rust")
        .scope(["src/api"])
        .capability(Capability::CodeGeneration)
        .estimated_duration(60 * MINUTE)
        .input(serde_json::json!({ "prompt": "Implement the API designed in the previous step" }));
    let test = TaskBuilder::testing("test", "Write Tests", TestType::Unit, 0.8)
        .scope(["tests"])
        .capability(Capability::Testing)
        .estimated_duration(30 * MINUTE);
    let review = TaskBuilder::review("review", "Code Review", ReviewType::Comprehensive)
        .capability(Capability::CodeReview)
        .estimated_duration(15 * MINUTE);
    let docs = TaskBuilder::documentation("docs", "Write Documentation", DocFormat::Markdown)
        .scope(["docs"])
        .capability(Capability::Documentation)
        .estimated_duration(10 * MINUTE);

    WorkflowBuilder::new("Feature: User Authentication")
        .description("Implement user authentication API with tests and documentation")
        .priority(Priority::High)
        .timeout(timeout)
        .max_retries(2)
        .task(design)
        .task(implement)
        .task(test)
        .task(review)
        .task(docs)
        // The spec's form: dependencies added on the workflow builder.
        .depends_on("implement", ["design"])
        .depends_on("test", ["implement"])
        .depends_on("review", ["test"])
        // Documentation runs in parallel with the tests.
        .depends_on("docs", ["implement"])
        .build()
}

#[allow(dead_code)] // `main` is unused when a test includes this file.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workflow = feature_workflow(Duration::from_secs(3 * 3600))?;
    let checked = axon_core::validate(&workflow, None);
    let plan = checked.plan.ok_or("a valid workflow has a plan")?;
    let path: Vec<&str> = plan
        .critical_path
        .iter()
        .map(|&i| workflow.tasks[i as usize].id.as_str())
        .collect();
    println!("{}: {} tasks", workflow.name, workflow.tasks.len());
    println!(
        "critical path: {} ({})",
        path.join(" -> "),
        axon_core::duration::format(plan.makespan)
    );
    for level in &plan.levels {
        let ids: Vec<&str> = level
            .iter()
            .map(|&i| workflow.tasks[i as usize].id.as_str())
            .collect();
        println!("  in parallel: {}", ids.join(", "));
    }

    // As the spec wrote it, with a 2h timeout, the workflow is rejected.
    if let Err(e) = feature_workflow(Duration::from_secs(2 * 3600)) {
        println!("with the spec's 2h timeout: {e}");
    }
    Ok(())
}
