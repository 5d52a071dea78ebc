//! `axon run --metrics-addr`: Prometheus text at `/metrics` while the run lives; and the
//! adapter for AI coding CLIs, driven with a stand-in tool.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::run::{Ws, one_agent, wait_until, workflow};
use crate::{assert_exit, workspace_root};

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`, or `None` while nothing answers.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn metrics_are_served_while_the_run_lives() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("a", 3),
        "echo $$ >> \"$AXON_SESSION_DIR/pids\"\nexec sleep 30",
    );
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_axon"))
        .arg("run")
        .arg(workflow("sleepers.yaml"))
        .arg("--agents")
        .arg(ws.file("agents.yaml"))
        .arg("--workspace")
        .arg(ws.path())
        .arg("--db")
        .arg(ws.db())
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    wait_until(
        "the three agents to start and /metrics to count their attempts",
        || match scrape(port) {
            Some(t) if t.contains("axon_task_attempts_total 3") => {
                text = t;
                true
            }
            _ => false,
        },
    );
    assert!(text.starts_with("HTTP/1."), "{text}");
    assert!(text.contains("axon_task_queue_wait_seconds"), "{text}");
    // Cancel; the exporter goes away with the process.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut status = None;
    wait_until("axon to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(130));
    assert!(scrape(port).is_none(), "metrics still served after the run");
}

#[test]
fn the_cli_adapter_prompts_the_tool_with_the_task() {
    let ws = Ws::new();
    let adapter = workspace_root().join("examples/adapters/agent_cli.py");
    // A stand-in for an AI CLI: writes its prompt argument to a file.
    let agents = format!(
        "agents:\n  - id: ai\n    capabilities: [shell]\n    command: [{:?}, \"python3\", \"-c\", \"import sys; open('prompt.txt', 'w').write(sys.argv[1]); print('did it')\", \"{{prompt}}\"]\n",
        adapter.display().to_string()
    );
    ws.write("agents.yaml", &agents);
    ws.write(
        "wf.yaml",
        "name: Adapter\ntasks:\n  write:\n    name: Write hello\n    type: custom\n    handler: ai\n    capabilities: [shell]\n    estimated_duration: 1m\n    input: { prompt: \"Create hello.txt saying hi\" }\n",
    );
    let out = ws.axon([
        "run",
        "wf.yaml",
        "--agents",
        "agents.yaml",
        "--workspace",
        ".",
        "--json",
    ]);
    assert_exit(&out, 0);
    let prompt = ws.read("prompt.txt");
    assert!(prompt.contains("\"Write hello\" (custom)"), "{prompt}");
    assert!(prompt.contains("Create hello.txt saying hi"), "{prompt}");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(summary["tasks"][0]["output"]["tool"], "python3");
    assert_eq!(summary["tasks"][0]["output"]["tail"][0], "did it");

    // Without the tool, the task fails saying so, and is not retried.
    let agents = agents.replace("\"python3\", \"-c\"", "\"no-such-ai-tool\", \"-c\"");
    ws.write("agents.yaml", &agents);
    let out = ws.axon([
        "run",
        "wf.yaml",
        "--agents",
        "agents.yaml",
        "--workspace",
        ".",
    ]);
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`no-such-ai-tool` is not installed"), "{err}");
}
