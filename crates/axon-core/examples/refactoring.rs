//! The spec's refactoring workflow, built with the builder DSL.
//!
//! It is the same workflow as `examples/refactoring.yaml` (a test checks that the two are
//! equal). Run it with `cargo run --example refactoring`.

use std::time::Duration;

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{Capability, OptimizationLevel, Priority, TestType, Workflow};
use axon_core::validate::InvalidWorkflow;

const MINUTE: Duration = Duration::from_secs(60);

/// Builds the workflow with the given timeout (the spec leaves the default 1h; the chain
/// needs 1h 10m).
pub fn refactoring_workflow(timeout: Duration) -> Result<Workflow, InvalidWorkflow> {
    let analyze = TaskBuilder::custom("analyze", "Analyze Code", "code_analyzer")
        .config(serde_json::json!({ "metrics": ["complexity", "duplication", "coverage"] }))
        .capability(Capability::CodeAnalysis)
        .estimated_duration(10 * MINUTE);
    let refactor =
        TaskBuilder::refactoring("refactor", "Refactor Code", OptimizationLevel::Aggressive)
            .capability(Capability::Refactoring)
            .estimated_duration(40 * MINUTE)
            .depends_on(["analyze"]);
    let verify = TaskBuilder::testing("verify", "Verify Changes", TestType::Regression, 0.9)
        .capability(Capability::Testing)
        .estimated_duration(20 * MINUTE)
        .depends_on(["refactor"]);

    WorkflowBuilder::new("Refactoring: Improve Code Quality")
        .description("Analyze, refactor, and verify code improvements")
        .priority(Priority::Medium)
        .timeout(timeout)
        .task(analyze)
        .task(refactor)
        .task(verify)
        .build()
}

#[allow(dead_code)] // `main` is unused when a test includes this file.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workflow = refactoring_workflow(Duration::from_secs(90 * 60))?;
    let plan = axon_core::validate(&workflow, None)
        .plan
        .ok_or("a valid workflow has a plan")?;
    println!(
        "{}: {} tasks, estimated {}",
        workflow.name,
        workflow.tasks.len(),
        axon_core::duration::format(plan.makespan)
    );
    if let Err(e) = refactoring_workflow(axon_core::model::DEFAULT_WORKFLOW_TIMEOUT) {
        println!("with the spec's default 1h timeout: {e}");
    }
    Ok(())
}
