//! The command agent with real processes (real time, kept short): the stdin document, the
//! environment, protocol lines, exit codes, and stopping whole process groups.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axon_core::builder::{TaskBuilder, WorkflowBuilder};
use axon_core::model::{ErrorType, RunStatus, TaskStatus, Workflow};
use axon_core::retry::RetryOverride;
use axon_engine::bus::EventKind;
use axon_engine::command::CommandAgent;
use axon_engine::{Engine, RunOptions, RunReport, pid_alive};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{events_until_finished, ms, pool_of, report_of, secs, task_events, within};

const AGENT: &str = "agents:\n  - id: sh\n    capabilities: [x]\n    max_concurrent_tasks: 4\n";

fn task(id: &str) -> TaskBuilder {
    TaskBuilder::custom(id, format!("Task {id}"), "test")
        .capability("x")
        .estimated_duration(secs(1))
}

/// An engine whose one agent runs `sh -c script`.
fn sh_engine(script: &str, env: BTreeMap<String, String>, grace: Duration) -> Engine {
    let agent = CommandAgent::new(
        &["sh".into(), "-c".into(), script.to_owned()],
        env,
        Path::new("."),
    )
    .expect("a command is given")
    .with_grace(grace);
    Engine::new(pool_of(AGENT, Arc::new(agent)))
}

fn in_dir(dir: &TempDir) -> RunOptions {
    RunOptions {
        workspace: dir.path().to_owned(),
        ..RunOptions::default()
    }
}

async fn run_in(engine: &Engine, workflow: Workflow, dir: &TempDir) -> RunReport {
    within(secs(20), engine.run(workflow, in_dir(dir)))
        .await
        .expect("the run ends")
}

/// Waits (briefly, in real time) for `pid` to be gone; signals are asynchronous.
async fn assert_dies(pid: u32, what: &str) {
    let deadline = tokio::time::Instant::now() + secs(2);
    while pid_alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} (pid {pid}) is still alive"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.trim().parse().expect("a pid")
}

#[tokio::test]
async fn command_agent_gets_the_request_on_stdin_and_speaks_the_protocol() {
    let dir = TempDir::new().unwrap();
    let script = r#"
cat > "$AXON_TASK_ID.stdin.json"
printf '%s\n' "$AXON_RUN_ID" "$AXON_TASK_ID" "$AXON_ATTEMPT" "$AXON_SESSION_DIR" \
  "$AXON_IDEMPOTENCY_KEY" "$GREETING" "$(pwd)" > "$AXON_TASK_ID.env"
echo "::axon progress 0.5"
echo "working on $AXON_TASK_ID"
echo '::axon output {"k":0}'
echo "::axon output {\"k\":1,\"task\":\"$AXON_TASK_ID\"}"
"#;
    let env: BTreeMap<String, String> = [("GREETING".to_owned(), "hello".to_owned())].into();
    let engine = sh_engine(script, env, ms(500));
    let mut rx = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("protocol")
        .task(task("first").input(json!({ "prompt": "do it" })))
        .task(task("second").depends_on(["first"]))
        .build()
        .unwrap();
    let report = run_in(&engine, workflow, &dir).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    let run_id = report.run_id;

    for id in ["first", "second"] {
        let t = report_of(&report, id);
        // The last `::axon output` line wins; protocol lines are not log lines.
        assert_eq!(t.output, Some(json!({ "k": 1, "task": id })), "{id}");
        assert_eq!(t.log_tail, [format!("working on {id}")], "{id}");

        let env = std::fs::read_to_string(dir.path().join(format!("{id}.env"))).unwrap();
        let env: Vec<&str> = env.lines().collect();
        let workspace = dir.path().canonicalize().unwrap();
        assert_eq!(env[0], run_id.to_string());
        assert_eq!(env[1], id);
        assert_eq!(env[2], "1");
        assert_eq!(Path::new(env[3]), dir.path());
        assert_eq!(env[4], format!("{run_id}/{id}/1"));
        assert_eq!(env[5], "hello", "the agent's own env is passed");
        assert_eq!(Path::new(env[6]).canonicalize().unwrap(), workspace, "cwd");
    }

    let stdin: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("second.stdin.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stdin["task"]["id"], "second");
    assert_eq!(stdin["task"]["name"], "Task second");
    assert_eq!(stdin["task"]["type"], "custom");
    assert_eq!(stdin["workflow"]["name"], "protocol");
    assert_eq!(stdin["run_id"], run_id.to_string());
    assert_eq!(stdin["attempt"], 1);
    assert_eq!(stdin["idempotency_key"], format!("{run_id}/second/1"));
    assert_eq!(stdin["context"], json!([]));
    assert_eq!(
        stdin["upstream"],
        json!({ "first": { "k": 1, "task": "first" } })
    );
    let first: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("first.stdin.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(first["task"]["input"], json!({ "prompt": "do it" }));
    assert_eq!(first["upstream"], json!({}));

    let events = events_until_finished(&mut rx).await;
    for id in ["first", "second"] {
        let progress = task_events(&events, id, "task_progress");
        assert_eq!(progress.len(), 1, "{id}");
        assert_eq!(progress[0].kind, EventKind::TaskProgress { progress: 0.5 });
    }
}

#[tokio::test]
async fn command_agent_exit_codes_decide_retries_and_failures_keep_the_log_tail() {
    let dir = TempDir::new().unwrap();
    let script = r#"
case "$AXON_TASK_ID" in
  tempfail)
    if [ "$AXON_ATTEMPT" = 1 ]; then echo "rate limited" >&2; exit 75; fi
    echo '::axon output "second time lucky"' ;;
  broken)
    echo "step 1 ok"
    echo "step 2 failed: disk full" >&2
    echo "giving up"
    exit 3 ;;
esac
"#;
    let engine = sh_engine(script, BTreeMap::new(), ms(500));
    let mut rx = engine.bus().subscribe();
    let quick = RetryOverride {
        initial_delay: Some(ms(10)),
        max_delay: Some(ms(10)),
        ..RetryOverride::default()
    };
    let workflow = WorkflowBuilder::new("exit codes")
        .retry(&quick)
        .task(task("tempfail"))
        .task(task("broken"))
        .build()
        .unwrap();
    let report = run_in(&engine, workflow, &dir).await;
    assert_eq!(report.status, RunStatus::Failed);

    let tempfail = report_of(&report, "tempfail");
    assert_eq!(tempfail.status, TaskStatus::Succeeded);
    assert_eq!(tempfail.attempts, 2, "exit 75 is retried");
    assert_eq!(tempfail.output, Some(json!("second time lucky")));

    let broken = report_of(&report, "broken");
    assert_eq!(broken.status, TaskStatus::Failed);
    assert_eq!(broken.attempts, 1, "agent_error is not retried by default");
    assert_eq!(broken.error_kind, Some(ErrorType::AgentError));
    assert_eq!(broken.error.as_deref(), Some("agent exited with code 3"));
    for line in ["step 1 ok", "step 2 failed: disk full", "giving up"] {
        assert!(
            broken.log_tail.iter().any(|l| l == line),
            "{line:?} missing from {:?}",
            broken.log_tail
        );
    }

    let events = events_until_finished(&mut rx).await;
    let retrying = task_events(&events, "tempfail", "task_retrying");
    assert_eq!(retrying.len(), 1);
    match &retrying[0].kind {
        EventKind::TaskRetrying {
            error_kind, error, ..
        } => {
            assert_eq!(*error_kind, ErrorType::ServiceUnavailable);
            assert!(error.contains("75"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

/// Starts a grandchild that would outlive the agent, records its pid, then waits.
const SPAWNS_A_GRANDCHILD: &str = r#"
[ -n "$IGNORE_TERM" ] && trap '' TERM
sleep 30 &
echo $! > "$AXON_TASK_ID.grandchild"
echo $$ > "$AXON_TASK_ID.agent"
echo "::axon progress 0.1"
wait
"#;

#[tokio::test]
async fn a_timed_out_command_agent_loses_its_whole_process_group() {
    let dir = TempDir::new().unwrap();
    // The agent ignores SIGTERM: only the SIGKILL after the grace period stops it.
    let env: BTreeMap<String, String> = [("IGNORE_TERM".to_owned(), "1".to_owned())].into();
    let engine = sh_engine(SPAWNS_A_GRANDCHILD, env, ms(200));
    let workflow = WorkflowBuilder::new("timeout")
        .task(task("stuck").timeout(secs(1)).retry(RetryOverride {
            max_attempts: Some(1),
            ..RetryOverride::default()
        }))
        .build()
        .unwrap();
    let report = run_in(&engine, workflow, &dir).await;
    assert_eq!(report.status, RunStatus::Failed);
    let stuck = report_of(&report, "stuck");
    assert_eq!(stuck.status, TaskStatus::Failed);
    assert_eq!(stuck.error_kind, Some(ErrorType::Timeout));
    assert_eq!(stuck.error.as_deref(), Some("timed out after 1s"));
    assert_dies(read_pid(&dir.path().join("stuck.agent")), "the agent").await;
    assert_dies(
        read_pid(&dir.path().join("stuck.grandchild")),
        "the grandchild",
    )
    .await;
}

#[tokio::test]
async fn cancelling_a_run_kills_its_command_agents_process_groups() {
    let dir = TempDir::new().unwrap();
    let engine = sh_engine(SPAWNS_A_GRANDCHILD, BTreeMap::new(), ms(500));
    let mut rx = engine.bus().subscribe();
    let workflow = WorkflowBuilder::new("cancel")
        .task(task("busy"))
        .build()
        .unwrap();
    let handle = engine.start(workflow, in_dir(&dir)).await.unwrap();
    // The progress line comes after the pid files are written.
    loop {
        let e = within(secs(10), rx.recv()).await.unwrap();
        if matches!(e.kind, EventKind::TaskProgress { .. }) {
            break;
        }
    }
    let grandchild = read_pid(&dir.path().join("busy.grandchild"));
    assert!(
        pid_alive(grandchild),
        "the grandchild runs before the cancel"
    );
    handle.cancel();
    let report = within(secs(10), handle.wait()).await.unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report_of(&report, "busy").status, TaskStatus::Cancelled);
    assert_dies(read_pid(&dir.path().join("busy.agent")), "the agent").await;
    assert_dies(grandchild, "the grandchild").await;
}

#[tokio::test]
async fn a_missing_program_is_a_system_error() {
    let dir = TempDir::new().unwrap();
    let agent = CommandAgent::new(
        &["axon-test-no-such-program".into()],
        BTreeMap::new(),
        dir.path(),
    )
    .unwrap();
    let engine = Engine::new(pool_of(AGENT, Arc::new(agent)));
    let workflow = WorkflowBuilder::new("missing")
        .task(task("a"))
        .build()
        .unwrap();
    let report = run_in(&engine, workflow, &dir).await;
    assert_eq!(report.status, RunStatus::Failed);
    let a = report_of(&report, "a");
    assert_eq!(a.status, TaskStatus::Failed);
    assert_eq!(a.attempts, 1, "system_error is not retried by default");
    assert_eq!(a.error_kind, Some(ErrorType::SystemError));
    assert!(
        a.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot start `axon-test-no-such-program`")),
        "{:?}",
        a.error
    );
}

#[tokio::test]
async fn without_a_workspace_command_agents_run_in_the_current_directory() {
    let engine = sh_engine(
        r#"echo "::axon output \"$(pwd)\"""#,
        BTreeMap::new(),
        ms(500),
    );
    let workflow = WorkflowBuilder::new("no workspace")
        .task(task("a"))
        .build()
        .unwrap();
    let report = within(secs(20), engine.run(workflow, RunOptions::default()))
        .await
        .unwrap();
    let a = report_of(&report, "a");
    assert_eq!(a.status, TaskStatus::Succeeded, "{:?}", a.error);
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    let seen = a.output.as_ref().and_then(Value::as_str).unwrap();
    assert_eq!(Path::new(seen).canonicalize().unwrap(), cwd);
}
