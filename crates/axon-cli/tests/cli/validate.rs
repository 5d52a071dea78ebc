//! `axon validate`: one fixture per class of problem, each checked for its exit code and its
//! exact `FILE:LINE:COL: error: MESSAGE` line, with the whole of stderr snapshotted.

use crate::{assert_exit, assert_line, axon, fixtures_dir, run_in, stderr, stdout};

/// Runs `axon validate ARGS` in the fixtures directory and asserts the exit code; returns
/// stderr. Validate writes nothing to stdout.
fn validate(args: &[&str], code: i32) -> String {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    let out = run_in(&fixtures_dir(), &all);
    assert_exit(&out, code);
    assert_eq!(stdout(&out), "", "validate printed to stdout");
    stderr(&out)
}

/// `axon validate FILE` for a file that must be rejected.
fn invalid(file: &str) -> String {
    validate(&[file], 1)
}

#[test]
fn syntax_error_is_reported_where_the_parser_stops() {
    let err = invalid("syntax_error.yaml");
    assert_line(
        &err,
        "syntax_error.yaml:5:4: error: while parsing a block mapping, did not find expected key",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_field_suggests_the_near_name() {
    let err = invalid("unknown_field.yaml");
    assert_line(
        &err,
        "unknown_field.yaml:7:5: error: unknown field `timeoutt`, did you mean `timeout`?",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn misspelt_depends_on_suggests_depends_on() {
    let err = invalid("unknown_field_depends_on.yaml");
    assert_line(
        &err,
        "unknown_field_depends_on.yaml:11:5: error: unknown field `depnds_on`, did you mean `depends_on`?",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_task_type_suggests_the_near_type() {
    let err = invalid("unknown_task_type.yaml");
    assert_line(
        &err,
        "unknown_task_type.yaml:4:11: error: unknown value `developmnt`, did you mean `development`?",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn duplicate_task_id_points_at_the_second_and_names_the_first() {
    let err = invalid("duplicate_task_id.yaml");
    assert_line(
        &err,
        "duplicate_task_id.yaml:7:3: error: duplicate task id `build` (first defined at 3:3)",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn duplicate_field_points_at_the_second_occurrence() {
    let err = invalid("duplicate_field.yaml");
    assert_line(
        &err,
        "duplicate_field.yaml:7:5: error: duplicate field `estimated_duration`",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn duplicate_top_level_field_has_a_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("twice.yaml"),
        "name: first\ntasks: {}\nname: second\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["validate", "twice.yaml"]);
    assert_exit(&out, 1);
    assert_line(
        &stderr(&out),
        "twice.yaml:3:1: error: duplicate field `name`",
    );
}

#[test]
fn cycle_is_named_in_full() {
    let err = invalid("cycle.yaml");
    assert_line(
        &err,
        "cycle.yaml:3:3: error: dependency cycle: a -> b -> c -> a (each task depends on the next)",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn self_dependency_points_at_the_entry() {
    let err = invalid("self_dependency.yaml");
    assert_line(
        &err,
        "self_dependency.yaml:7:18: error: task `build` depends on itself",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_dependency_suggests_the_nearest_id() {
    let err = invalid("unknown_dependency.yaml");
    assert_line(
        &err,
        "unknown_dependency.yaml:11:18: error: task `test` depends on unknown task `implemnt`; did you mean `implement`?",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn empty_workflow_is_an_error() {
    let err = invalid("empty_workflow.yaml");
    assert_line(
        &err,
        "empty_workflow.yaml:2:8: error: workflow has no tasks",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn task_without_capabilities_is_an_error() {
    let err = invalid("no_capabilities.yaml");
    assert_line(
        &err,
        "no_capabilities.yaml:3:3: error: task `build` has no capabilities; list what an agent needs to run it",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn zero_and_absurd_resources_are_errors() {
    let err = invalid("bad_resources.yaml");
    for line in [
        "bad_resources.yaml:7:16: error: task `zero` asks for 0 cpu_cores; at least 1 is needed",
        "bad_resources.yaml:7:16: error: task `zero` asks for 0 memory_mb; at least 1 is needed",
        "bad_resources.yaml:13:7: error: task `huge` asks for 100000 cpu_cores; at most 1024 are allowed",
        "bad_resources.yaml:13:7: error: task `huge` asks for 99999999999 memory_mb; at most 16777216 (16 TiB) are allowed",
    ] {
        assert_line(&err, line);
    }
    insta::assert_snapshot!(err);
}

#[test]
fn zero_and_missing_estimates_are_errors() {
    let err = invalid("bad_estimates.yaml");
    assert_line(
        &err,
        "bad_estimates.yaml:6:25: error: task `zero` has an estimated_duration of zero; the planner needs one (e.g. `30m`)",
    );
    assert_line(
        &err,
        "bad_estimates.yaml:7:3: error: task `missing` has no estimated_duration; the planner needs one (e.g. `30m`)",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn coverage_threshold_outside_zero_to_one_is_an_error() {
    let err = invalid("coverage_out_of_range.yaml");
    assert_line(
        &err,
        "coverage_out_of_range.yaml:7:25: error: task `too_high`: coverage_threshold 1.5 is outside 0..=1",
    );
    assert_line(
        &err,
        "coverage_out_of_range.yaml:12:25: error: task `negative`: coverage_threshold -0.1 is outside 0..=1",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn field_of_another_task_type_is_an_error() {
    let err = invalid("field_of_another_type.yaml");
    assert_line(
        &err,
        "field_of_another_type.yaml:7:25: error: task `build`: `coverage_threshold` applies to testing tasks, not to development tasks",
    );
    assert_line(
        &err,
        "field_of_another_type.yaml:8:13: error: task `build`: `format` applies to documentation tasks, not to development tasks",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn invalid_task_ids_are_errors() {
    let err = invalid("invalid_task_id.yaml");
    assert_line(
        &err,
        "invalid_task_id.yaml:3:3: error: task id `my task` contains ` `; ids may only use letters, digits, `_`, `.` and `-`",
    );
    assert_line(
        &err,
        "invalid_task_id.yaml:7:3: error: task id `a/b` contains `/`; ids may only use letters, digits, `_`, `.` and `-`",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn critical_path_longer_than_timeout_names_both_durations() {
    let err = invalid("critical_path_too_long.yaml");
    assert_line(
        &err,
        "critical_path_too_long.yaml:2:10: error: critical path design -> implement takes 1h 10m, longer than the workflow timeout of 1h",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn wide_workflow_is_judged_by_its_critical_path_not_its_sum() {
    // 5 x 50m = 4h 10m of work against a 1h timeout, but only 50m on the critical path.
    let err = validate(&["wide_within_timeout.yaml"], 0);
    assert_eq!(
        err,
        "wide_within_timeout.yaml: valid (5 tasks, critical path 50m within timeout 1h)\n"
    );
}

#[test]
fn warnings_alone_leave_the_file_valid() {
    let err = validate(&["warning_only.yaml"], 0);
    assert_line(
        &err,
        "warning_only.yaml:7:14: warning: task `build`: timeout 10m is shorter than its estimate 30m",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn valid_file_gets_a_one_line_summary() {
    let err = validate(&["valid.yaml"], 0);
    assert_eq!(
        err,
        "valid.yaml: valid (2 tasks, critical path 50m within timeout 2h)\n"
    );
}

#[test]
fn json_workflow_errors_have_positions_in_the_json_file() {
    let err = invalid("json_error.json");
    assert_line(
        &err,
        "json_error.json:8:22: error: task `build` depends on unknown task `biuld`; did you mean `build`?",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn json_syntax_errors_have_positions() {
    let err = invalid("json_syntax_error.json");
    assert_line(
        &err,
        "json_syntax_error.json:8:5: error: invalid JSON: key must be a string",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn missing_capability_on_the_agents_fails_feasibility() {
    let err = validate(
        &[
            "needs_missing_capability.yaml",
            "--agents",
            "agents_small.yaml",
        ],
        1,
    );
    assert_line(
        &err,
        "needs_missing_capability.yaml:7:3: error: no suitable agent for task translate: no agent has capability translation",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn resource_shortfall_on_the_agents_fails_feasibility() {
    let err = validate(
        &["needs_more_resources.yaml", "--agents", "agents_small.yaml"],
        1,
    );
    assert_line(
        &err,
        "needs_more_resources.yaml:7:3: error: no suitable agent for task train: it needs 16 cpu_cores, the most a capable agent has is 4",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn feasible_workflow_says_every_task_has_an_agent() {
    let err = validate(&["valid.yaml", "--agents", "agents_small.yaml"], 0);
    assert_eq!(
        err,
        "valid.yaml: valid (2 tasks, critical path 50m within timeout 2h, every task has a suitable agent)\n"
    );
}

#[test]
fn agents_file_errors_are_all_reported() {
    let err = validate(&["valid.yaml", "--agents", "agents_invalid.yaml"], 1);
    for line in [
        "agents_invalid.yaml:4:27: error: agent `dev-1`: max_concurrent_tasks must be between 1 and 10000, not 0",
        "agents_invalid.yaml:5:9: error: duplicate agent id `dev-1` (first defined at 2:9)",
        "agents_invalid.yaml:7:9: error: agent id `bad id` contains ` `; ids may only use letters, digits, `_`, `.` and `-`",
        "agents_invalid.yaml:7:9: error: agent `bad id`: capability `Not-Snake` is not a snake_case name",
    ] {
        assert_line(&err, line);
    }
    insta::assert_snapshot!(err);
}

#[test]
fn agents_file_given_as_a_workflow_is_recognised() {
    let err = invalid("agents_as_workflow.yaml");
    assert_line(
        &err,
        "agents_as_workflow.yaml:2:1: error: this looks like an agents file, not a workflow; pass it with --agents",
    );
}

#[test]
fn several_files_are_all_reported_and_one_invalid_fails_all() {
    let err = validate(&["valid.yaml", "cycle.yaml", "warning_only.yaml"], 1);
    assert_line(
        &err,
        "cycle.yaml:3:3: error: dependency cycle: a -> b -> c -> a (each task depends on the next)",
    );
    assert_line(
        &err,
        "warning_only.yaml:7:14: warning: task `build`: timeout 10m is shorter than its estimate 30m",
    );
    assert_line(&err, "3 files: 2 valid, 1 invalid (1 error, 1 warning)");
    insta::assert_snapshot!(err);
}

#[test]
fn several_valid_files_pass() {
    let err = validate(&["valid.yaml", "wide_within_timeout.yaml"], 0);
    assert_eq!(err, "2 files: 2 valid, 0 invalid (0 errors, 0 warnings)\n");
}

#[test]
fn stdin_is_read_with_a_dash() {
    let text = std::fs::read(fixtures_dir().join("cycle.yaml")).unwrap();
    let out = axon()
        .args(["validate", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert_line(
        &err,
        "<stdin>:3:3: error: dependency cycle: a -> b -> c -> a (each task depends on the next)",
    );
    insta::assert_snapshot!(err);

    let text = std::fs::read(fixtures_dir().join("valid.yaml")).unwrap();
    let out = axon()
        .args(["validate", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out),
        "<stdin>: valid (2 tasks, critical path 50m within timeout 2h)\n"
    );
}

#[test]
fn nonexistent_file_is_an_error_without_position() {
    let err = invalid("no_such_file.yaml");
    assert_line(
        &err,
        "no_such_file.yaml: error: cannot open file: No such file or directory (os error 2)",
    );
    insta::assert_snapshot!(err);
}

#[test]
fn directory_is_an_error_not_a_crash() {
    let err = invalid(".");
    assert!(err.starts_with(".: error: cannot read file"), "{err}");
}

#[test]
fn control_characters_in_a_message_cannot_split_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("newline.yaml"),
        "name: x\ntasks:\n  \"a\\nb\": {type: review, capabilities: [x], estimated_duration: 1s, depends_on: [\"x\\r\\ny\"]}\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["validate", "newline.yaml"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert_eq!(
        err,
        "newline.yaml:3:3: error: task id `a\\nb` contains `\\n`; ids may only use letters, digits, `_`, `.` and `-`\n\
         newline.yaml:3:82: error: task `a\\nb` depends on unknown task `x\\r\\ny`\n\
         newline.yaml: invalid (2 errors, 0 warnings)\n"
    );
}

#[test]
fn no_file_is_a_usage_error() {
    let err = validate(&[], 2);
    assert!(err.contains("Usage: axon validate"), "{err}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let err = validate(&["--frobnicate", "valid.yaml"], 2);
    assert!(err.contains("unexpected argument '--frobnicate'"), "{err}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = run_in(&fixtures_dir(), &["frobnicate"]);
    assert_exit(&out, 2);
}
