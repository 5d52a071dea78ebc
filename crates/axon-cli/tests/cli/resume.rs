//! Durable runs across processes: `kill -9` of the engine then `axon resume`, `axon cancel`
//! from a second process, and `axon runs` / `axon status` over the state database.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::run::{Ws, assert_gone, assert_summary_shape, one_agent, summary, task, wait_until};
use crate::{Rng, assert_exit, assert_no_crash, stderr, stdout};

/// `(task, attempt)` of every line of `runs.log` starting with `kind`.
fn attempts_logged(ws: &Ws, kind: &str) -> Vec<(String, u32)> {
    ws.read("runs.log")
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == kind).then_some(())?;
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// `axon status RUN --json`.
fn status_of(ws: &Ws, run_id: &str) -> Value {
    let out = ws.axon(["status", run_id, "--json"]);
    assert_exit(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Task id -> (status, attempts) of a status object.
fn task_states(status: &Value) -> BTreeMap<String, (String, u64)> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                (
                    t["status"].as_str().unwrap().to_owned(),
                    t["attempts"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The engine is killed with SIGKILL at several points of a run (after the k-th task finished,
/// plus a random delay), then `axon resume` finishes the run: every task succeeds, a task whose
/// success was recorded never runs again, a task that was running starts over with the next
/// attempt number, and no attempt runs twice.
#[test]
fn kill_9_then_resume_completes_without_rerunning_succeeded_tasks() {
    let mut rng = Rng::from_clock();
    for finished_before_kill in 1..=4usize {
        let extra = Duration::from_millis(rng.below(250));
        let ws = Ws::new();
        // Each task takes about 0.3 s (the fan-in `e` 0.8 s, so that even the latest kill
        // point comes well before the end of the run); it prints progress halfway.
        ws.agents(
            &one_agent("worker", 3),
            r#"echo "start $AXON_TASK_ID $AXON_ATTEMPT" >> "$AXON_SESSION_DIR/runs.log"
sleep 0.15
echo "::axon progress 0.5"
if [ "$AXON_TASK_ID" = e ]; then sleep 0.65; else sleep 0.15; fi
echo "done $AXON_TASK_ID $AXON_ATTEMPT" >> "$AXON_SESSION_DIR/runs.log"
echo "::axon output {\"task\": \"$AXON_TASK_ID\", \"attempt\": $AXON_ATTEMPT}""#,
        );
        let context = format!("kill after {finished_before_kill} tasks + {extra:?}");
        let mut engine = ws.spawn_run("resume.yaml");
        let run_id = engine.run_id();
        wait_until("tasks to finish before the kill", || {
            attempts_logged(&ws, "done").len() >= finished_before_kill
        });
        std::thread::sleep(extra);
        engine.signal("KILL");
        let killed = engine.wait();
        assert_eq!(
            killed.code(),
            None,
            "{context}: axon was not killed: {killed}"
        );

        // The run's engine is gone: it shows as interrupted, with what it had committed.
        let before = status_of(&ws, &run_id);
        assert_eq!(before["status"], "interrupted", "{context}: {before:#}");
        let before = task_states(&before);
        assert!(
            before.values().any(|(s, _)| s != "succeeded"),
            "{context}: the run was over before the kill: {before:?}"
        );

        let out = ws.axon(["resume", &run_id, "--json"]);
        assert_exit(&out, 0);
        let s = summary(&out);
        assert_summary_shape(&s);
        assert_eq!(s["run_id"], run_id.as_str());
        assert_eq!(s["status"], "succeeded", "{context}: {s:#}");
        let after = status_of(&ws, &run_id);
        assert_eq!(after["status"], "succeeded", "{context}: {after:#}");
        let after = task_states(&after);
        let started = attempts_logged(&ws, "start");
        let done = attempts_logged(&ws, "done");
        let log = ws.read("runs.log");
        for (id, (status, attempts)) in &after {
            assert_eq!(status, "succeeded", "{context}: task {id}: {after:?}");
            let (old_status, old_attempts) = &before[id];
            let mine: Vec<u32> = started
                .iter()
                .filter(|(t, _)| t == id)
                .map(|(_, a)| *a)
                .collect();
            // No attempt ran twice.
            let mut unique = mine.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                mine.len(),
                unique.len(),
                "{context}: task {id} ran an attempt twice\n{log}"
            );
            if old_status == "succeeded" {
                assert_eq!(
                    attempts, old_attempts,
                    "{context}: task {id} had succeeded, yet ran again\n{log}"
                );
                assert!(
                    mine.iter().all(|a| u64::from(*a) <= *old_attempts),
                    "{context}: task {id} had succeeded, yet ran again\n{log}"
                );
            }
            if old_status == "running" {
                assert!(
                    attempts > old_attempts,
                    "{context}: task {id} was running at the kill; resume must start attempt {} (got {attempts})\n{log}",
                    old_attempts + 1
                );
            }
            // The attempt that counted really ran to its end.
            assert!(
                done.contains(&(id.clone(), u32::try_from(*attempts).unwrap())),
                "{context}: task {id} succeeded with attempt {attempts}, which never finished\n{log}"
            );
        }
        assert_eq!(after.len(), 6);

        // Nothing left to do: a second resume is refused.
        let again = ws.axon(["resume", &run_id]);
        assert_exit(&again, 1);
        assert!(
            stderr(&again).contains("already succeeded"),
            "{}",
            stderr(&again)
        );
    }
}

/// `axon cancel RUN` from a second process stops a run another `axon run` is executing: that
/// process exits 130, its agents (and their children) are gone, and the run is cancelled.
#[test]
fn cancel_from_another_process_stops_the_run() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 3),
        r#"sleep 30 &
echo $! >> "$AXON_SESSION_DIR/pids"
echo $$ >> "$AXON_SESSION_DIR/pids"
sleep 30"#,
    );
    let mut engine = ws.spawn_run("sleepers.yaml");
    let run_id = engine.run_id();
    wait_until("three agents to record their pids", || ws.pids().len() >= 6);
    let pids = ws.pids();

    let out = ws.axon(["cancel", &run_id]);
    assert_exit(&out, 130);
    let status = engine.wait();
    assert_eq!(
        status.code(),
        Some(130),
        "the running axon exited with {status}\n{}",
        engine.stderr()
    );
    assert_no_crash(&engine.stderr());
    assert_gone(&pids);

    let s = status_of(&ws, &run_id);
    assert_eq!(s["status"], "cancelled");
    for t in s["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "cancelled", "{t:#}");
    }
    // Cancelling a finished run changes nothing.
    let again = ws.axon(["cancel", &run_id]);
    assert_exit(&again, 130);
    assert_eq!(status_of(&ws, &run_id)["status"], "cancelled");
}

/// `axon runs --json` lists runs newest first with their task counts; `axon status` knows
/// every run and refuses unknown (exit 1) and malformed (exit 2) ids; `--db` works before and
/// after the subcommand.
#[test]
fn runs_and_status_report_the_history() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 2),
        r#"if [ "$AXON_TASK_ID" = broken ]; then exit 3; fi"#,
    );
    let first = summary(&ws.run("quick.yaml"));
    let second = summary(&ws.run("failure.yaml"));
    let (first_id, second_id) = (
        first["run_id"].as_str().unwrap(),
        second["run_id"].as_str().unwrap(),
    );

    let out = ws.axon(["runs", "--json"]);
    assert_exit(&out, 0);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    // Newest first.
    assert_eq!(list[0]["run_id"], second_id);
    assert_eq!(list[1]["run_id"], first_id);
    for r in list {
        for key in [
            "run_id",
            "workflow",
            "status",
            "started_at",
            "finished_at",
            "task_counts",
        ] {
            assert!(r.get(key).is_some(), "no `{key}` in {r:#}");
        }
        crate::run::assert_rfc3339(&r["started_at"]);
        crate::run::assert_rfc3339(&r["finished_at"]);
    }
    assert_eq!(list[0]["workflow"]["name"], "Failure skips dependents");
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(
        list[0]["task_counts"],
        json!({ "failed": 1, "skipped": 2, "succeeded": 2 })
    );
    assert_eq!(list[1]["workflow"]["name"], "Quick");
    assert_eq!(list[1]["status"], "succeeded");
    assert_eq!(list[1]["task_counts"], json!({ "succeeded": 2 }));

    // `status` shows the same tasks as the run's own summary.
    let s = status_of(&ws, second_id);
    assert_eq!(s["status"], "failed");
    assert_eq!(s["run_id"], second_id);
    for id in [
        "broken",
        "after_broken",
        "last",
        "independent",
        "after_independent",
    ] {
        let (a, b) = (task(&s, id), task(&second, id));
        for key in ["status", "attempts", "agent", "error", "output"] {
            assert_eq!(a[key], b[key], "task {id}, `{key}`");
        }
    }

    // `--db` before the subcommand gives the same answers.
    let db = ws.db();
    let before = crate::axon()
        .arg("--db")
        .arg(&db)
        .args(["runs", "--json"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&before, 0);
    assert_eq!(stdout(&before), stdout(&out));
    let before = crate::axon()
        .arg("--db")
        .arg(&db)
        .args(["status", first_id])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_exit(&before, 0);
    assert!(stdout(&before).contains("succeeded"), "{}", stdout(&before));

    // An unknown run id, and ids that are no run id at all.
    let unknown = "01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f";
    for cmd in ["status", "resume", "cancel"] {
        let out = ws.axon([cmd, unknown]);
        assert_exit(&out, 1);
        assert!(stderr(&out).contains(unknown), "{cmd}: {}", stderr(&out));
        for bad in ["not-a-run", "01938f2e", ""] {
            let out = ws.axon([cmd, bad]);
            assert_exit(&out, 2);
            assert!(
                stderr(&out).contains("is not a run id"),
                "{cmd} {bad:?}: {}",
                stderr(&out)
            );
        }
    }
}

/// Ensures a killed engine's run can be continued right away (the holder's pid is gone) and
/// that the interrupted state is visible in `axon runs` too.
#[test]
fn an_interrupted_run_is_listed_as_interrupted() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 3),
        r#"echo $$ >> "$AXON_SESSION_DIR/pids"
sleep 30"#,
    );
    let mut engine = ws.spawn_run("sleepers.yaml");
    let run_id = engine.run_id();
    wait_until("three agents to start", || ws.pids().len() >= 3);
    let out = ws.axon(["runs", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[0]["finished_at"], Value::Null);
    engine.signal("KILL");
    engine.wait();
    let out = ws.axon(["runs", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["run_id"], run_id.as_str());
    assert_eq!(list[0]["status"], "interrupted");
    // Cancelling an interrupted run records it as cancelled (nobody runs it).
    let out = ws.axon(["cancel", &run_id]);
    assert_exit(&out, 130);
    assert_eq!(status_of(&ws, &run_id)["status"], "cancelled");
}
