//! Axon's pure domain: the workflow model, its file format and JSON Schema, the builder DSL,
//! the validator, the DAG index and the planner.
//!
//! This crate does no I/O beyond reading a `&str` and knows nothing of tokio, SQL or HTTP;
//! the engine, the store and the CLI build on it. Data flows one way:
//! file text or builder → [`Workflow`] → [`validate()`] (which builds the [`DagIndex`] and
//! the [`Plan`]) → engine.
//!
//! ```
//! use axon_core::format::{Format, parse_workflow};
//! use axon_core::validate::validate;
//!
//! let yaml = r#"
//! name: Tiny
//! timeout: 1h
//! tasks:
//!   build:
//!     type: development
//!     capabilities: [code_generation]
//!     estimated_duration: 20m
//!   test:
//!     type: testing
//!     capabilities: [testing]
//!     estimated_duration: 10m
//!     depends_on: [build]
//! "#;
//! let parsed = parse_workflow(yaml, Format::Yaml)?;
//! let checked = validate(&parsed.workflow, Some(&parsed.source_map));
//! assert!(checked.is_valid());
//! let plan = checked.plan.expect("a valid workflow has a plan");
//! assert_eq!(plan.makespan.as_secs(), 30 * 60);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, in the order data flows through them:
//! - [`model`]: `Workflow`, `Task`, `TaskType`, requirements, statuses, `ErrorType`.
//! - [`id`]: id newtypes and the rules ids follow.
//! - [`duration`], [`retry`]: durations in files; the retry policy.
//! - [`mod@format`]: YAML/JSON reading with file positions, and the JSON Schema.
//! - [`builder`]: the spec's `WorkflowBuilder` / `TaskBuilder`.
//! - [`diagnostic`]: positioned problems.
//! - [`dag`], [`validate()`], [`plan`]: the graph index, every check, the plan.
//! - [`agents`], [`schedule`]: agents files, feasibility, a simulated schedule.

pub mod agents;
pub mod builder;
pub mod dag;
pub mod diagnostic;
pub mod duration;
pub mod format;
pub mod id;
pub mod model;
pub mod plan;
pub mod retry;
pub mod schedule;
pub mod validate;

pub use dag::DagIndex;
pub use diagnostic::{Diagnostic, Location, Severity};
pub use model::{Task, TaskType, Workflow};
pub use plan::Plan;
pub use validate::validate;
