//! `axon episodes search`: full-text search of the episodes in the state database. The
//! database is filled through `axon_store` directly, as the engine would fill it.

use std::path::Path;

use axon_core::model::{RunStatus, TaskStatus};
use axon_store::{EpisodeRecord, Lease, RunRecord, SqliteStore, Store};
use serde_json::Value;
use uuid::Uuid;

use crate::run::Ws;
use crate::{assert_exit, axon, stdout};

const RUN: &str = "01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f";

fn episode(task_id: &str, name: &str, task_type: &str, finished_at_ms: i64) -> EpisodeRecord {
    EpisodeRecord {
        id: 0,
        run_id: Uuid::parse_str(RUN).unwrap(),
        task_id: task_id.into(),
        attempt: 1,
        name: name.into(),
        task_type: task_type.into(),
        status: TaskStatus::Succeeded,
        agent: Some("dev".into()),
        output: None,
        log_tail: None,
        error: None,
        duration_ms: 12_500,
        finished_at_ms,
    }
}

/// A history of eight episodes: one database refactoring, two reviews, and others.
fn history() -> Vec<EpisodeRecord> {
    let mut failed = episode(
        "login",
        "Review the login flow",
        "review",
        1_795_000_030_000,
    );
    failed.status = TaskStatus::Failed;
    failed.attempt = 3;
    failed.agent = Some("reviewer".into());
    failed.error = Some("connection refused\nwhile fetching the diff".into());
    failed.log_tail = Some("npm ERR!".into());
    let mut optimize = episode(
        "index",
        "Optimize database indexes",
        "refactoring",
        1_795_000_000_000,
    );
    optimize.output = Some(serde_json::json!({"files": 3, "summary": "two new indexes"}));
    vec![
        optimize,
        episode(
            "notes",
            "Review the release notes",
            "review",
            1_795_000_040_000,
        ),
        failed,
        episode(
            "docs",
            "Document the database",
            "documentation",
            1_795_000_010_000,
        ),
        episode(
            "page",
            "Write the login page",
            "development",
            1_795_000_020_000,
        ),
        episode("cache", "Add a cache", "development", 1_795_000_050_000),
        episode("flaky", "Fix flaky tests", "testing", 1_795_000_060_000),
        episode(
            "cc",
            "Upgrade the compiler",
            "development",
            1_795_000_070_000,
        ),
    ]
}

/// Creates the database at `db` with one run holding `episodes`.
fn seed(db: &Path, episodes: &[EpisodeRecord]) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = SqliteStore::open(db).await.unwrap();
            let run = RunRecord {
                run_id: Uuid::parse_str(RUN).unwrap(),
                workflow_id: "wf".into(),
                workflow_name: "Workflow".into(),
                status: RunStatus::Succeeded,
                created_at_ms: 1_795_000_000_000,
                finished_at_ms: Some(1_795_000_070_000),
                workspace: "/tmp".into(),
                workflow_source: String::new(),
                workflow_format: "yaml".into(),
                agents_source: None,
                agents_format: None,
                agents_dir: None,
                cancel_requested: false,
            };
            let holder = Lease {
                host: "h".into(),
                pid: 1,
                expires_at_ms: 0,
            };
            store.create_run(&run, &[], &holder).await.unwrap();
            // Recorded as the engine records them: as they finish.
            let mut episodes = episodes.to_vec();
            episodes.sort_by_key(|e| e.finished_at_ms);
            for e in &episodes {
                store.record_episode(e).await.unwrap();
            }
        });
}

fn seeded() -> Ws {
    let ws = Ws::new();
    seed(&ws.db(), &history());
    ws
}

/// `axon episodes search --db DB ARGS`, which must exit 0.
fn search(ws: &Ws, args: &[&str]) -> String {
    let out = axon()
        .args(["episodes", "search", "--db"])
        .arg(ws.db())
        .args(args)
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    stdout(&out)
}

fn search_json(ws: &Ws, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str::<Value>(&search(ws, &all))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn names(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["name"].as_str().unwrap()).collect()
}

#[test]
fn hits_are_printed_one_block_each_best_first() {
    let ws = seeded();
    let text = search(&ws, &["Review", "database", "indexes"]);
    insta::assert_snapshot!(text);
}

#[test]
fn json_is_a_list_of_episodes_with_scores_best_first() {
    let ws = seeded();
    let hits = search_json(&ws, &["Review database indexes"]);
    assert_eq!(names(&hits)[0], "Optimize database indexes");
    assert_eq!(hits.len(), 4, "{:?}", names(&hits));
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|s| *s > 0.0), "{scores:?}");
    let top = &hits[0];
    let mut keys: Vec<&str> = top
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent",
            "attempt",
            "duration_secs",
            "error",
            "finished_at",
            "id",
            "log_tail",
            "name",
            "output",
            "run_id",
            "score",
            "status",
            "task_id",
            "task_type"
        ]
    );
    assert_eq!(top["run_id"], RUN);
    assert_eq!(top["task_id"], "index");
    assert_eq!(top["task_type"], "refactoring");
    assert_eq!(top["status"], "succeeded");
    assert_eq!(top["duration_secs"], 12.5);
    assert_eq!(top["finished_at"], "2026-11-18T11:06:40Z");
    assert_eq!(top["output"]["files"], 3);

    let failed = search_json(&ws, &["refused"]);
    assert_eq!(names(&failed), ["Review the login flow"]);
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["attempt"], 3);
    assert_eq!(failed[0]["log_tail"], "npm ERR!");
}

#[test]
fn limit_caps_the_hits() {
    let ws = seeded();
    assert_eq!(search_json(&ws, &["the", "--limit", "2"]).len(), 2);
    assert_eq!(search_json(&ws, &["the", "--limit", "0"]).len(), 0);
    // The default shows up to 10.
    let many: Vec<EpisodeRecord> = (0..15)
        .map(|i| episode(&format!("t{i}"), "Build it", "development", i))
        .collect();
    let ws = Ws::new();
    seed(&ws.db(), &many);
    let hits = search_json(&ws, &["build"]);
    assert_eq!(hits.len(), 10);
    // Equal scores: the newest first.
    assert_eq!(hits[0]["task_id"], "t14");
    assert_eq!(hits[9]["task_id"], "t5");
}

#[test]
fn no_match_is_not_an_error() {
    let ws = seeded();
    assert_eq!(
        search(&ws, &["kubernetes"]),
        "no episode matches `kubernetes`\n"
    );
    assert!(search_json(&ws, &["kubernetes"]).is_empty());
}

#[test]
fn query_syntax_is_never_an_error() {
    let ws = seeded();
    for query in [
        "",
        "\"",
        "AND",
        "NEAR(login page)",
        "name:login",
        "login*",
        "(",
        "🎉",
        "x'; DROP TABLE episodes; --",
        "fix: \"the\" AND-gate",
    ] {
        let out = axon()
            .args(["episodes", "search", "--db"])
            .arg(ws.db())
            .args(["--json", "--", query])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let hits: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(hits.is_array(), "{query:?}");
    }
    let hits = search_json(&ws, &["--", "-login:*"]);
    assert_eq!(
        names(&hits)[..2],
        ["Write the login page", "Review the login flow"]
    );
    let long = "login ".repeat(5_000);
    assert_eq!(search_json(&ws, &[&long]).len(), 2);
}

#[test]
fn db_is_found_before_or_after_the_subcommand_and_in_the_environment() {
    let ws = seeded();
    for args in [
        vec!["--db", "state.db", "episodes", "search", "cache"],
        vec!["episodes", "--db", "state.db", "search", "cache"],
        vec!["episodes", "search", "cache", "--db", "state.db"],
    ] {
        let out = axon().args(&args).current_dir(ws.path()).output().unwrap();
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("Add a cache"), "{args:?}");
    }
    let out = axon()
        .args(["episodes", "search", "cache"])
        .env("AXON_DB", ws.db())
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("Add a cache"));
}

#[test]
fn without_a_database_there_are_no_episodes_and_none_is_created() {
    let ws = Ws::new();
    let out = axon()
        .args(["episodes", "search", "anything"])
        .env_remove("AXON_DB")
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("no episodes yet"),
        "{}",
        stdout(&out)
    );
    let out = axon()
        .args(["episodes", "search", "anything", "--json"])
        .env_remove("AXON_DB")
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "[]\n");
    assert!(!ws.file(".axon").exists());
}

#[test]
fn a_missing_query_is_a_usage_error() {
    let out = axon().args(["episodes", "search"]).output().unwrap();
    assert_exit(&out, 2);
    let out = axon()
        .args(["episodes", "search", "x", "--limit", "-1"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
}
