//! Property tests of `axon-core`: the DAG index, the planner, cycle reporting, the schedule
//! simulation and the parse → validate → plan pipeline, on generated inputs; and the shipped
//! examples (YAML equals builder, JSON Schema).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod cycle_props;
mod examples;
mod graphs;
mod pipeline;
mod plan_props;
mod schedule_props;
