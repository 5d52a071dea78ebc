//! Property tests of `axon-core`: the DAG index, the planner, cycle reporting, the schedule
//! simulation and the parse → validate → plan pipeline, on generated inputs; and the shipped
//! examples (YAML equals builder, JSON Schema).

mod cycle_props;
mod examples;
mod graphs;
mod pipeline;
mod plan_props;
mod schedule_props;
