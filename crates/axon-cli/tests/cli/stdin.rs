//! A workflow piped on standard input is read once, and exactly that text is recorded for
//! `axon resume` (standard input cannot be read a second time).

use axon_store::{SqliteStore, Store};

use crate::assert_exit;
use crate::run::{Ws, one_agent, workflow};

#[test]
fn a_workflow_from_stdin_is_recorded_as_read() {
    let ws = Ws::new();
    ws.agents(&one_agent("a", 2), "true");
    let text = std::fs::read_to_string(workflow("quick.yaml")).unwrap();
    let out = crate::axon()
        .args(["run", "-", "--agents"])
        .arg(ws.file("agents.yaml"))
        .arg("--workspace")
        .arg(ws.path())
        .arg("--db")
        .arg(ws.db())
        .arg("--json")
        .write_stdin(text.clone())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let run_id = uuid::Uuid::parse_str(summary["run_id"].as_str().unwrap()).unwrap();
    let agents = std::fs::read_to_string(ws.file("agents.yaml")).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = SqliteStore::open(&ws.db()).await.unwrap();
            let run = store.run(run_id).await.unwrap().unwrap();
            assert_eq!(run.workflow_source, text);
            assert_eq!(run.workflow_format, "yaml");
            assert_eq!(run.agents_source.as_deref(), Some(agents.as_str()));
        });
}
