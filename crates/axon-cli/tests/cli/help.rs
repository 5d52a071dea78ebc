//! `--help` of the binary and of each subcommand: exit 0, on stdout, with examples.

use crate::{assert_exit, axon, stdout};

fn help(args: &[&str]) -> String {
    let out = axon().args(args).output().unwrap();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l == "Examples:"),
        "`axon {}` has no Examples: section\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn top_level_help_has_examples_and_lists_the_commands() {
    let text = help(&["--help"]);
    for command in ["validate", "plan", "schema", "episodes"] {
        assert!(text.contains(command), "{command} missing\n{text}");
    }
    assert!(
        text.contains("axon validate examples/feature/workflow.yaml"),
        "{text}"
    );
}

#[test]
fn every_subcommand_help_has_examples() {
    for command in ["validate", "plan", "schema", "episodes"] {
        let text = help(&[command, "--help"]);
        assert!(text.contains(&format!("axon {command}")), "{text}");
        assert_eq!(text, help(&["help", command]), "`help {command}` differs");
    }
}

#[test]
fn help_mentions_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["plan", "--help"],
        &["episodes", "search", "--help"],
        &["cortex", "check", "--help"],
    ] {
        let text = help(args);
        assert!(text.contains("Exit codes:"), "{args:?}\n{text}");
    }
}

#[test]
fn version_exits_0() {
    let out = axon().arg("--version").output().unwrap();
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("axon "));
}

#[test]
fn no_command_is_a_usage_error() {
    let out = axon().output().unwrap();
    assert_exit(&out, 2);
}

#[test]
fn cortex_check_help_lists_its_checks_and_hides_what_does_not_apply() {
    let text = help(&["cortex", "check", "--help"]);
    for check in ["health", "auth", "tasks", "sessions", "memory"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("  {check} "))),
            "{check}\n{text}"
        );
    }
    assert!(text.contains("axon-cortex-check"), "{text}");
    assert!(!text.contains("--cortex-optional"), "{text}");
}
