//! `axon cortex check` against the fake Cortex server (`axon-testkit`, contract-faithful, with
//! faults): one line per check, the exit code, `--json`, the cleanup of every scratch record
//! (even when a step fails, even on Ctrl-C), and the API key kept out of every output.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::fake_cortex::Cortex;
use crate::run::wait_until;
use crate::{assert_exit, assert_no_crash, axon, stderr, stdout};

const CHECKS: [&str; 5] = ["health", "auth", "tasks", "sessions", "memory"];

/// `axon cortex check --cortex-url URL [--cortex-api-key KEY] EXTRA...`.
fn check(cortex: &Cortex, key: Option<&str>, extra: &[&str]) -> Output {
    let url = cortex.fake.url();
    let mut cmd = axon();
    cmd.args(["cortex", "check", "--cortex-url", &url]);
    if let Some(key) = key {
        cmd.args(["--cortex-api-key", key]);
    }
    cmd.args(extra)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// The same with the server's own key.
fn check_with_key(cortex: &Cortex, extra: &[&str]) -> Output {
    check(cortex, Some(cortex.fake.api_key()), extra)
}

/// The check lines of text output: `(status, name, detail)`, in order.
fn lines(out: &Output) -> Vec<(String, String, String)> {
    stdout(out)
        .lines()
        .filter(|l| !l.starts_with("cortex at "))
        .map(|l| {
            assert!(l.len() > 16, "not a check line: {l:?}");
            (
                l[..6].trim_end().to_owned(),
                l[6..16].trim_end().to_owned(),
                l[16..].to_owned(),
            )
        })
        .collect()
}

/// The statuses of the five checks, in order, asserting their names.
fn statuses(out: &Output) -> Vec<String> {
    let lines = lines(out);
    let names: Vec<&str> = lines.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, CHECKS, "{}", stdout(out));
    lines.into_iter().map(|(s, _, _)| s).collect()
}

/// The detail of check `name`.
fn detail(out: &Output, name: &str) -> String {
    lines(out)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .map(|(_, _, d)| d)
        .unwrap_or_else(|| panic!("no `{name}` line in\n{}", stdout(out)))
}

/// The summary line.
fn summary(out: &Output) -> String {
    stdout(out)
        .lines()
        .find(|l| l.starts_with("cortex at "))
        .unwrap_or_else(|| panic!("no summary line in\n{}", stdout(out)))
        .to_owned()
}

/// Neither `secret` nor the server's key appears on stdout or stderr.
fn assert_no_key(out: &Output, cortex: &Cortex, secret: Option<&str>) {
    for key in [Some(cortex.fake.api_key()), secret].into_iter().flatten() {
        assert!(
            !stdout(out).contains(key) && !stderr(out).contains(key),
            "the api key leaked:\n{}\n{}",
            stdout(out),
            stderr(out)
        );
    }
}

/// No scratch task or session is left on the server.
fn assert_nothing_left(cortex: &Cortex) {
    let state = cortex.fake.state();
    let tasks: Vec<_> = state
        .tasks
        .iter()
        .filter(|t| t.tags.iter().any(|t| t == "axon-check"))
        .collect();
    assert!(tasks.is_empty(), "scratch tasks left: {tasks:#?}");
    assert!(
        state.sessions.is_empty(),
        "sessions left: {:#?}",
        state.sessions
    );
}

#[test]
fn every_check_passes_against_a_healthy_cortex_and_nothing_is_left() {
    let cortex = Cortex::start();
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 0);
    assert_eq!(statuses(&out), ["ok"; 5], "{}", stdout(&out));
    assert_eq!(
        summary(&out),
        format!("cortex at {}: 5 checks passed", cortex.fake.url())
    );
    assert!(
        detail(&out, "health").starts_with("healthy (version 0.1.0, up "),
        "{}",
        stdout(&out)
    );
    assert!(detail(&out, "sessions").contains("(`no_changes`)"));
    assert!(detail(&out, "sessions").contains("axon-cortex-check"));
    assert!(detail(&out, "sessions").contains("created;"));
    assert_no_key(&out, &cortex, None);
    assert_nothing_left(&cortex);

    // What it did: a tagged scratch task set to `inprogress`, a `custom` session named
    // `axon/check/<uuid>`, merged with `{"strategy":"auto"}`; every one deleted.
    let state = cortex.fake.state();
    assert_eq!(state.deleted_tasks.len(), 1);
    assert_eq!(state.deleted_sessions.len(), 1);
    assert_eq!(state.merges.len(), 1);
    let requests = cortex.fake.requests();
    let body = |method: &str, path: &str| {
        requests
            .iter()
            .find(|r| r.method == method && r.path.starts_with(path))
            .and_then(|r| r.body_json())
            .unwrap_or_else(|| panic!("no {method} {path}"))
    };
    let task = body("POST", "/api/v1/tasks");
    assert!(
        task["title"]
            .as_str()
            .unwrap()
            .starts_with("axon cortex check ")
    );
    assert_eq!(task["tags"], serde_json::json!(["axon-check"]));
    assert_eq!(body("PUT", "/api/v1/tasks/")["status"], "inprogress");
    let session = body("POST", "/api/v1/sessions");
    assert!(session["name"].as_str().unwrap().starts_with("axon/check/"));
    assert_eq!(session["agent_type"], "custom");
    assert_eq!(
        session["workspace_id"].as_str().unwrap(),
        state.workspaces[0].id
    );
    let merge = requests
        .iter()
        .find(|r| r.path.ends_with("/merge"))
        .unwrap();
    assert_eq!(
        merge.body_json().unwrap(),
        serde_json::json!({"strategy": "auto"})
    );

    // A second check reuses the scratch workspace (it cannot be deleted).
    let again = check_with_key(&cortex, &[]);
    assert_exit(&again, 0);
    assert!(detail(&again, "sessions").contains("reused;"));
    let workspaces = cortex.fake.state().workspaces;
    assert_eq!(workspaces.len(), 1, "{workspaces:#?}");
    assert_eq!(workspaces[0].name, "axon-cortex-check");
    assert_nothing_left(&cortex);
}

#[test]
fn the_key_can_come_from_the_environment_and_a_given_workspace_is_used() {
    let cortex = Cortex::start();
    let ws = check_with_key(&cortex, &[]);
    assert_exit(&ws, 0);
    let id = cortex.fake.state().workspaces[0].id.clone();
    let out = axon()
        .args(["cortex", "check", "--cortex-workspace", &id])
        .env("AXON_CORTEX_URL", cortex.fake.url())
        .env("AXON_CORTEX_API_KEY", cortex.fake.api_key())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        detail(&out, "sessions").contains(&format!("on workspace {id}")),
        "{}",
        stdout(&out)
    );
    assert_no_key(&out, &cortex, None);

    // A workspace that does not exist fails the sessions check, and only it.
    let missing = check_with_key(
        &cortex,
        &["--cortex-workspace", "6c1c2f0e-8c53-4a8f-a0c4-0f3d3b8e9e21"],
    );
    assert_exit(&missing, 1);
    assert_eq!(statuses(&missing), ["ok", "ok", "ok", "FAIL", "ok"]);
    assert!(
        detail(&missing, "sessions").contains("404"),
        "{}",
        stdout(&missing)
    );
    assert_nothing_left(&cortex);
}

#[test]
fn a_wrong_key_fails_auth_sessions_and_memory_but_not_tasks() {
    let cortex = Cortex::start();
    let wrong = "ctx-wrong-0123456789";
    let out = check(&cortex, Some(wrong), &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["ok", "FAIL", "ok", "FAIL", "FAIL"]);
    let auth = detail(&out, "auth");
    assert!(auth.contains("missing or wrong"), "{auth}");
    assert!(auth.contains("401"), "{auth}");
    assert!(detail(&out, "sessions").contains("401"));
    assert!(detail(&out, "memory").contains("401"));
    assert_eq!(
        summary(&out),
        format!("cortex at {}: 3 of 5 checks failed", cortex.fake.url())
    );
    assert_no_key(&out, &cortex, Some(wrong));
    assert_nothing_left(&cortex);
}

#[test]
fn no_key_fails_auth_and_skips_sessions_and_memory() {
    let cortex = Cortex::start();
    let out = check(&cortex, None, &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["ok", "FAIL", "ok", "skip", "skip"]);
    assert!(detail(&out, "auth").contains("no API key"));
    assert!(detail(&out, "auth").contains("sessions and memory"));
    // Nothing was sent to the protected routes.
    assert!(
        cortex
            .fake
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/api/v1/sessions")
                && !r.path.starts_with("/api/v1/memory"))
    );

    // Tracking alone needs no key: every check it needs passes.
    let tracking = check(&cortex, None, &["--cortex-roles", "tracking"]);
    assert_exit(&tracking, 0);
    assert_eq!(statuses(&tracking), ["ok", "skip", "ok", "skip", "skip"]);
    assert!(summary(&tracking).ends_with(": 2 checks passed, 3 skipped"));
    assert_nothing_left(&cortex);
}

#[test]
fn an_unhealthy_cortex_fails_health() {
    let cortex = Cortex::start();
    cortex.fake.faults().set_unhealthy(true);
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 1);
    let health = detail(&out, "health");
    assert!(health.contains("unhealthy"), "{health}");
    assert!(health.contains("database connected: no"), "{health}");
    assert_eq!(statuses(&out)[0], "FAIL");
    assert_no_key(&out, &cortex, None);
    assert_nothing_left(&cortex);
}

#[test]
fn a_down_cortex_is_refused_with_its_url_and_the_rest_is_skipped() {
    let cortex = Cortex::start();
    cortex.block_on(cortex.fake.faults().set_down(true));
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["FAIL", "skip", "skip", "skip", "skip"]);
    let health = detail(&out, "health");
    assert!(health.contains("connection refused"), "{health}");
    assert!(
        health.contains(&format!("{}/api/v1/health", cortex.fake.url())),
        "{health}"
    );
    assert!(detail(&out, "tasks").contains("unreachable"));
    assert_eq!(
        summary(&out),
        format!(
            "cortex at {}: 1 of 5 checks failed, 4 skipped",
            cortex.fake.url()
        )
    );
    assert_no_key(&out, &cortex, None);
}

#[test]
fn the_in_progress_typo_fails_tasks_as_a_contract_violation() {
    let cortex = Cortex::start();
    cortex.fake.faults().set_status_typo(true);
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["ok", "ok", "FAIL", "ok", "ok"]);
    let tasks = detail(&out, "tasks");
    assert!(tasks.starts_with("update to `inprogress`: "), "{tasks}");
    assert!(
        tasks.contains("does not follow the cortex contract"),
        "{tasks}"
    );
    assert!(tasks.contains("in_progress"), "{tasks}");
    // The update failed, and the scratch task was deleted all the same.
    assert!(tasks.ends_with("; scratch task deleted"), "{tasks}");
    assert_no_key(&out, &cortex, None);
    assert_nothing_left(&cortex);
}

#[test]
fn a_failing_step_still_deletes_what_was_created() {
    let cortex = Cortex::start();
    // The task's first read and the session's (the auth probe is the first request on
    // `/api/v1/sessions/`, creating a session is not on it) answer 500.
    cortex.fake.faults().on("/api/v1/tasks/").fail_next(1, 500);
    cortex
        .fake
        .faults()
        .on("/api/v1/sessions/")
        .fail_next(2, 500);
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["ok", "FAIL", "FAIL", "FAIL", "ok"]);
    let tasks = detail(&out, "tasks");
    assert!(tasks.starts_with("get: "), "{tasks}");
    assert!(tasks.contains("500"), "{tasks}");
    assert!(tasks.ends_with("; scratch task deleted"), "{tasks}");
    let sessions = detail(&out, "sessions");
    assert!(sessions.starts_with("get: "), "{sessions}");
    assert!(
        sessions.ends_with("; scratch session deleted"),
        "{sessions}"
    );
    assert_eq!(cortex.fake.faults().pending(), 0);
    assert_nothing_left(&cortex);
}

#[test]
fn a_task_created_whose_answer_was_lost_is_found_and_deleted() {
    let cortex = Cortex::start();
    // The server creates the task, the answer is cut short.
    cortex
        .fake
        .faults()
        .on("/api/v1/tasks")
        .malformed_json_next(1);
    let out = check_with_key(&cortex, &[]);
    assert_exit(&out, 1);
    assert_eq!(statuses(&out), ["ok", "ok", "FAIL", "ok", "ok"]);
    let tasks = detail(&out, "tasks");
    assert!(tasks.starts_with("create: "), "{tasks}");
    assert!(tasks.contains("not json"), "{tasks}");
    assert!(tasks.contains("deleted"), "{tasks}");
    assert_eq!(cortex.fake.state().deleted_tasks.len(), 1);
    assert_nothing_left(&cortex);
}

#[test]
fn json_output_parses_and_has_the_documented_keys() {
    let cortex = Cortex::start();
    let out = check_with_key(&cortex, &["--json"]);
    assert_exit(&out, 0);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["checks", "ok", "url"]);
    assert_eq!(report["url"], cortex.fake.url());
    assert_eq!(report["ok"], true);
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS);
    for c in checks {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["detail", "name", "status"]);
        assert_eq!(c["status"], "ok");
        assert!(!c["detail"].as_str().unwrap().is_empty());
    }
    assert_no_key(&out, &cortex, None);

    let wrong = "ctx-wrong-0123456789";
    let failed = check(&cortex, Some(wrong), &["--json"]);
    assert_exit(&failed, 1);
    let report: Value = serde_json::from_str(&stdout(&failed)).unwrap();
    assert_eq!(report["ok"], false);
    let statuses: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "fail", "ok", "fail", "fail"]);
    assert_no_key(&failed, &cortex, Some(wrong));

    cortex.block_on(cortex.fake.faults().set_down(true));
    let down = check_with_key(&cortex, &["--json"]);
    assert_exit(&down, 1);
    let report: Value = serde_json::from_str(&stdout(&down)).unwrap();
    assert_eq!(report["checks"][4]["status"], "skip");
    assert_no_key(&down, &cortex, None);
}

#[test]
fn no_url_or_a_malformed_one_is_a_usage_error() {
    let out = axon()
        .args(["cortex", "check", "--cortex-api-key", "ctx-secret-usage"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("--cortex-url"), "{err}");
    assert!(err.contains("AXON_CORTEX_URL"), "{err}");
    assert!(stdout(&out).is_empty());
    assert!(!err.contains("ctx-secret-usage"));

    for url in [
        "localhost:8080",
        "not a url",
        "ftp://127.0.0.1:1",
        "http://u:p@127.0.0.1:1",
    ] {
        let out = axon()
            .args(["cortex", "check", "--cortex-url", url])
            .args(["--cortex-api-key", "ctx-secret-usage"])
            .output()
            .unwrap();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("invalid cortex configuration"), "{url}: {err}");
        assert!(
            !err.contains("ctx-secret-usage") && !err.contains(":p@"),
            "{err}"
        );
    }
}

/// Kills the child if the test fails before it exits.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn ctrl_c_deletes_the_scratch_task_it_interrupted() {
    let cortex = Cortex::start();
    // Reads of the scratch task hang, so the check is caught with the task created.
    cortex
        .fake
        .faults()
        .on("/api/v1/tasks/")
        .set_delay(Duration::from_secs(300));
    let child = Command::new(env!("CARGO_BIN_EXE_axon"))
        .args(["cortex", "check", "--cortex-url", &cortex.fake.url()])
        .args(["--cortex-timeout", "300s"])
        .env("AXON_CORTEX_API_KEY", cortex.fake.api_key())
        .env_remove("AXON_CORTEX_ROLES")
        .env_remove("AXON_CORTEX_WORKSPACE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    wait_until("the check to read its scratch task", || {
        cortex
            .fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.starts_with("/api/v1/tasks/"))
    });
    assert_eq!(cortex.fake.state().tasks.len(), 1);
    // The cleanup's delete must not hang.
    cortex
        .fake
        .faults()
        .on("/api/v1/tasks/")
        .set_delay(Duration::ZERO);
    let pid = running.0.as_ref().unwrap().id();
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_no_crash(&err);
    assert!(err.contains("cancelled; scratch task deleted"), "{err}");
    assert_no_key(&out, &cortex, None);
    assert_nothing_left(&cortex);
    assert!(cortex.fake.state().tasks.is_empty());
}
