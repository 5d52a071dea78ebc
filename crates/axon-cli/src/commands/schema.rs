//! `axon schema [workflow|agents]`.

use crate::Status;
use crate::cli::{SchemaArgs, SchemaKind};
use crate::output::print_stdout;

/// Prints the JSON Schema generated from the file types.
pub fn run(args: &SchemaArgs) -> anyhow::Result<Status> {
    let schema = match args.kind {
        SchemaKind::Workflow => axon_core::format::workflow_schema(),
        SchemaKind::Agents => axon_core::agents::agents_schema(),
    };
    let mut text = serde_json::to_string_pretty(&schema)?;
    text.push('\n');
    print_stdout(&text)?;
    Ok(Status::Success)
}
