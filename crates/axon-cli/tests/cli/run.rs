//! `axon run` end to end: the real binary, a `TempDir` workspace with its own `--db`, and
//! scripted `sh` agents written at test time. The agents record what they did (with their own
//! timestamps) into files of the workspace, and the tests judge the engine from those records:
//! eager dispatch, retries, failure handling, capacity, timeouts, outputs, feasibility and
//! Ctrl-C.
//!
//! Workflows are fixtures in `tests/fixtures/run/`; agents files are written beside the scripts
//! because they name them. No assertion depends on how fast this machine is, only on orderings
//! with wide margins; waits poll for a condition with a generous deadline.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{assert_exit, assert_no_crash, axon, fixtures_dir, stderr, stdout, workspace_root};

/// The shell function every scripted agent uses to record an event:
/// `KIND TIMESTAMP AGENT TASK ATTEMPT` appended to `events.log` in the workspace (appends of
/// one short line are atomic, so concurrent agents never interleave).
const LOG_FN: &str = r#"log() { echo "$1 $(date +%s.%N) ${AGENT:-agent} $AXON_TASK_ID $AXON_ATTEMPT" >> "$AXON_SESSION_DIR/events.log"; }"#;

/// An agent script: records `start`, runs `body`, records `end`.
pub fn agent_script(body: &str) -> String {
    format!("#!/bin/sh\n{LOG_FN}\nlog start\n{body}\nlog end\n")
}

/// An agents file with one agent `id`, capability `shell`, `slots` slots, running `./agent.sh`.
pub fn one_agent(id: &str, slots: u32) -> String {
    format!(
        "agents:\n  - id: {id}\n    capabilities: [shell]\n    max_concurrent_tasks: {slots}\n    command: [\"./agent.sh\"]\n    env: {{ AGENT: {id} }}\n"
    )
}

/// A fixture workflow of `tests/fixtures/run/`.
pub fn workflow(name: &str) -> PathBuf {
    fixtures_dir().join("run").join(name)
}

/// A throw-away workspace: the agents' working directory, their scripts, the agents file and
/// the state database (`state.db`). Dropping it kills any process whose pid an agent
/// recorded in `pids`, so a failing test leaves no sleeper behind.
pub struct Ws {
    dir: TempDir,
}

impl Ws {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("axon-run-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The state database of the runs in this workspace.
    pub fn db(&self) -> PathBuf {
        self.file("state.db")
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.file(name), text).unwrap();
    }

    /// Writes an executable script.
    pub fn script(&self, name: &str, text: &str) {
        let path = self.file(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `agent.sh` from `body` (see [`agent_script`]) and an agents file `agents.yaml`.
    pub fn agents(&self, agents_yaml: &str, body: &str) {
        self.script("agent.sh", &agent_script(body));
        self.write("agents.yaml", agents_yaml);
    }

    /// A file's text, empty if it does not exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// The events the agents recorded.
    pub fn events(&self) -> Vec<Mark> {
        marks(&self.read("events.log"))
    }

    /// `axon ARGS --db state.db`, run in the workspace.
    pub fn axon<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        axon()
            .args(args)
            .arg("--db")
            .arg(self.db())
            .current_dir(self.path())
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    }

    /// `axon run FIXTURE --agents agents.yaml --workspace WS --db state.db --json`.
    pub fn run(&self, fixture: &str) -> Output {
        self.axon(self.run_args(fixture))
    }

    fn run_args(&self, fixture: &str) -> Vec<std::ffi::OsString> {
        vec![
            "run".into(),
            workflow(fixture).into(),
            "--agents".into(),
            self.file("agents.yaml").into(),
            "--workspace".into(),
            self.path().into(),
            "--json".into(),
        ]
    }

    /// Starts `axon run FIXTURE ...` as a child process (standard error into `axon.stderr`,
    /// standard output into `axon.stdout`), for tests that signal or kill it.
    pub fn spawn_run(&self, fixture: &str) -> Engine {
        let child = Command::new(env!("CARGO_BIN_EXE_axon"))
            .args(self.run_args(fixture))
            .arg("--db")
            .arg(self.db())
            .current_dir(self.path())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(File::create(self.file("axon.stdout")).unwrap())
            .stderr(File::create(self.file("axon.stderr")).unwrap())
            .spawn()
            .unwrap();
        Engine {
            child,
            stderr: self.file("axon.stderr"),
        }
    }

    /// The pids agents recorded in `pids`, one a line.
    pub fn pids(&self) -> Vec<u32> {
        self.read("pids")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        for pid in self.pids() {
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// An `axon` process started by a test. Dropping it kills it, so a failing test leaves no
/// engine behind.
pub struct Engine {
    pub child: Child,
    stderr: PathBuf,
}

impl Engine {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The run id from its `run <uuid> started` line, waiting for the line.
    pub fn run_id(&mut self) -> String {
        let mut id = None;
        wait_until("the engine to print `run <id> started`", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("axon exited early ({status}):\n{}", self.stderr());
            }
            id = run_id_of(&self.stderr());
            id.is_some()
        });
        id.unwrap()
    }

    /// Sends `signal` (a `kill` name such as `INT`) to the engine.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the engine to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("the engine to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The run id in a `run <uuid> started` line.
pub fn run_id_of(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("run ")?;
        let (id, tail) = rest.split_once(' ')?;
        (tail.starts_with("started") && uuid::Uuid::parse_str(id).is_ok()).then(|| id.to_owned())
    })
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` exists and is not a zombie (an exited process nobody reaped yet).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`; COMM may hold spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Asserts that every process of `pids` is gone (allowing a few seconds to die).
pub fn assert_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let stats: Vec<String> = left
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
                .collect();
            panic!("agent processes still alive: {left:?}\n{}", stats.join(""));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One line an agent recorded: `KIND TIMESTAMP AGENT TASK ATTEMPT`.
#[derive(Debug, Clone)]
pub struct Mark {
    pub kind: String,
    pub at: f64,
    pub agent: String,
    pub task: String,
    pub attempt: u32,
}

pub fn marks(text: &str) -> Vec<Mark> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "bad line in events.log: {l:?}");
            Mark {
                kind: f[0].to_owned(),
                at: f[1].parse().unwrap(),
                agent: f[2].to_owned(),
                task: f[3].to_owned(),
                attempt: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// The time `task` recorded `kind` (its last attempt's).
fn at(events: &[Mark], kind: &str, task: &str) -> f64 {
    events
        .iter()
        .rev()
        .find(|m| m.kind == kind && m.task == task)
        .unwrap_or_else(|| panic!("no `{kind}` of {task} in {events:#?}"))
        .at
}

/// The `--json` summary: exactly one JSON object, on the last line of standard output.
pub fn summary(out: &Output) -> Value {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout should be one JSON line, got:\n{text}\nstderr:\n{}",
        stderr(out)
    );
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v.is_object(), "{v}");
    v
}

/// The summary's object for task `id`.
pub fn task<'a>(summary: &'a Value, id: &str) -> &'a Value {
    summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {summary:#}"))
}

/// Asserts `v` is an RFC 3339 timestamp: `2024-01-02T03:04:05`, optional fraction, then `Z` or
/// an offset `+01:00`.
#[track_caller]
pub fn assert_rfc3339(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let shape = |text: &str, pattern: &str| {
        text.len() == pattern.len()
            && text.bytes().zip(pattern.bytes()).all(|(c, p)| {
                if p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
    };
    let (head, rest) = s.split_at(s.len().min(19));
    let rest = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 { "bad" } else { &r[digits..] }
        }
        None => rest,
    };
    let zone_ok = rest == "Z" || shape(&rest.replace('-', "+"), "+99:99");
    assert!(
        shape(head, "9999-99-99T99:99:99") && zone_ok,
        "not RFC 3339: {s}"
    );
}

/// The keys of a task object of the run summary (and of `axon status --json`).
const TASK_KEYS: [&str; 10] = [
    "id",
    "name",
    "status",
    "attempts",
    "agent",
    "started_at",
    "finished_at",
    "duration_secs",
    "error",
    "output",
];

/// Asserts the shape of a run summary (`run --json`, `resume --json`).
#[track_caller]
pub fn assert_summary_shape(s: &Value) {
    for key in [
        "run_id",
        "workflow",
        "status",
        "started_at",
        "finished_at",
        "duration_secs",
        "tasks",
        "metrics",
    ] {
        assert!(s.get(key).is_some(), "summary has no `{key}`: {s:#}");
    }
    assert!(uuid::Uuid::parse_str(s["run_id"].as_str().unwrap()).is_ok());
    assert_rfc3339(&s["started_at"]);
    assert_rfc3339(&s["finished_at"]);
    assert!(s["duration_secs"].as_f64().unwrap() >= 0.0);
    assert!(s["metrics"].is_object(), "{s:#}");
    for t in s["tasks"].as_array().unwrap() {
        for key in TASK_KEYS {
            assert!(t.get(key).is_some(), "task has no `{key}`: {t:#}");
        }
        if t["attempts"].as_u64().unwrap() > 0 {
            assert_rfc3339(&t["started_at"]);
            assert_rfc3339(&t["finished_at"]);
            assert!(t["duration_secs"].as_f64().unwrap() >= 0.0, "{t:#}");
        }
    }
}

/// Eager dispatch: the chain a -> b -> c (0.2 s each) finishes before the independent 3 s task
/// that shares the first level with a. A barrier between levels would make c wait for `long`.
#[test]
fn eager_dispatch_beats_a_level_barrier() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 4),
        r#"case "$AXON_TASK_ID" in long) sleep 3 ;; *) sleep 0.2 ;; esac"#,
    );
    let out = ws.run("eager.yaml");
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded");
    let ev = ws.events();
    // Dependencies are respected...
    assert!(at(&ev, "start", "b") >= at(&ev, "end", "a"), "{ev:#?}");
    assert!(at(&ev, "start", "c") >= at(&ev, "end", "b"), "{ev:#?}");
    // ...and nothing waits for an unrelated task.
    assert!(
        at(&ev, "end", "c") < at(&ev, "end", "long"),
        "c finished after `long`: the chain waited for a level barrier\n{ev:#?}"
    );
    assert!(
        at(&ev, "start", "c") < at(&ev, "end", "long"),
        "c started after `long` ended\n{ev:#?}"
    );
}

/// An agent that exits 75 twice and then succeeds: the task succeeds on attempt 3, and the
/// `--json` summary says so, with every field of the contract.
#[test]
fn exit_75_is_retried_until_success() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 1),
        r#"if [ "$AXON_ATTEMPT" -lt 3 ]; then echo "service busy (attempt $AXON_ATTEMPT)"; log end; exit 75; fi
echo "::axon progress 0.5"
echo '::axon output {"ok": true, "attempt": 3}'"#,
    );
    let out = ws.run("retry.yaml");
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["workflow"]["name"], "Retries");
    let t = task(&s, "flaky");
    assert_eq!(t["name"], "Flaky task");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["attempts"], 3);
    assert_eq!(t["agent"], "worker");
    assert_eq!(t["error"], Value::Null);
    assert_eq!(t["output"], json!({ "ok": true, "attempt": 3 }));
    assert_eq!(s["metrics"]["retries"], 2, "{s:#}");
    assert_eq!(s["metrics"]["attempts"], 3, "{s:#}");
    // The agent ran exactly three times, attempts numbered 1, 2, 3.
    let attempts: Vec<u32> = ws
        .events()
        .iter()
        .filter(|m| m.kind == "start")
        .map(|m| m.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let err = stderr(&out);
    assert!(err.contains("retrying"), "{err}");
}

/// A non-retryable failure (exit 3) skips the failed task's dependents, direct and indirect,
/// while the independent branch finishes; exit 1, the error and the agent's log tail shown.
#[test]
fn a_failure_skips_its_dependents_and_spares_independent_branches() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 2),
        r#"if [ "$AXON_TASK_ID" = broken ]; then
  echo "compiling module auth"
  echo "error: cannot find symbol login_handler" >&2
  log end
  exit 3
fi
sleep 0.1"#,
    );
    let out = ws.run("failure.yaml");
    assert_exit(&out, 1);
    let s = summary(&out);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "failed");
    let broken = task(&s, "broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["attempts"], 1, "exit 3 is not retried by default");
    assert_eq!(broken["error"], "agent exited with code 3");
    for id in ["after_broken", "last"] {
        let t = task(&s, id);
        assert_eq!(t["status"], "skipped", "{t:#}");
        assert_eq!(t["attempts"], 0, "{t:#}");
    }
    for id in ["independent", "after_independent"] {
        assert_eq!(task(&s, id)["status"], "succeeded");
    }
    // Skipped tasks never reached an agent.
    let ran: BTreeSet<String> = ws.events().into_iter().map(|m| m.task).collect();
    assert_eq!(
        ran,
        BTreeSet::from(["broken", "independent", "after_independent"].map(String::from))
    );
    let err = stderr(&out);
    assert!(err.contains("agent exited with code 3"), "{err}");
    assert!(
        err.contains("compiling module auth"),
        "no log tail on stderr:\n{err}"
    );
    assert!(
        err.contains("error: cannot find symbol login_handler"),
        "no log tail on stderr:\n{err}"
    );
}

/// The maximum number of overlapping `[start, end]` intervals among `events`.
fn max_overlap<'a>(events: impl Iterator<Item = &'a Mark>) -> usize {
    let mut points: Vec<(f64, i32)> = events
        .filter_map(|m| match m.kind.as_str() {
            "start" => Some((m.at, 1)),
            "end" => Some((m.at, -1)),
            _ => None,
        })
        .collect();
    // Ends before starts at equal times: a slot freed and reused is no overlap.
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    usize::try_from(max).unwrap()
}

/// `max_concurrent_tasks` and capabilities hold, judged from the agents' own timestamps.
#[test]
fn agent_capacity_and_capabilities_are_never_violated() {
    let ws = Ws::new();
    let agents: [(&str, &[&str], usize); 3] = [
        ("alpha", &["x"], 2),
        ("beta", &["x", "y"], 1),
        ("gamma", &["z"], 2),
    ];
    let mut yaml = String::from("agents:\n");
    for (id, caps, slots) in agents {
        yaml.push_str(&format!(
            "  - id: {id}\n    capabilities: [{}]\n    max_concurrent_tasks: {slots}\n    command: [\"./agent.sh\"]\n    env: {{ AGENT: {id} }}\n",
            caps.join(", ")
        ));
    }
    ws.agents(&yaml, "sleep 0.2");
    let out = ws.run("capacity.yaml");
    assert_exit(&out, 0);
    let s = summary(&out);
    let ev = ws.events();
    assert_eq!(
        ev.iter().filter(|m| m.kind == "start").count(),
        13,
        "{ev:#?}"
    );
    for (id, caps, slots) in agents {
        let mine: Vec<&Mark> = ev.iter().filter(|m| m.agent == id).collect();
        let overlap = max_overlap(mine.iter().copied());
        assert!(
            overlap <= slots,
            "agent {id} ran {overlap} tasks at once with max_concurrent_tasks {slots}\n{mine:#?}"
        );
        for m in mine {
            // The task ids name the capabilities they need: x1 needs x, xy needs x and y.
            let needs = m.task.trim_end_matches(|c: char| c.is_ascii_digit());
            for need in needs.chars() {
                assert!(
                    caps.contains(&need.to_string().as_str()),
                    "task {} (needs {needs}) ran on {id} (has {caps:?})",
                    m.task
                );
            }
        }
    }
    // Something did run in parallel, so the limits were put to the test.
    assert!(max_overlap(ev.iter()) >= 2, "{ev:#?}");
    // The summary names the agent that really ran each task.
    for m in ev.iter().filter(|m| m.kind == "start") {
        assert_eq!(task(&s, &m.task)["agent"], m.agent.as_str());
    }
}

/// A per-task timeout kills the agent's whole process group, grandchildren included, and the
/// task fails with `timed out after 1s`.
#[test]
fn a_timeout_kills_the_agents_process_group() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 1),
        r#"sleep 30 &
echo $! >> "$AXON_SESSION_DIR/pids"
echo $$ >> "$AXON_SESSION_DIR/pids"
sleep 30"#,
    );
    let out = ws.run("timeout.yaml");
    assert_exit(&out, 1);
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    let t = task(&s, "hang");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["attempts"], 1);
    let error = t["error"].as_str().unwrap();
    assert!(error.contains("timed out after 1s"), "{error}");
    let pids = ws.pids();
    assert_eq!(pids.len(), 2, "the agent should have recorded two pids");
    assert_gone(&pids);
    // The agent never got to its end.
    assert!(!ws.events().iter().any(|m| m.kind == "end"));
}

/// Each task's stdin holds its prerequisites' outputs under `upstream` (the last
/// `::axon output` line wins), with its attempt and idempotency key.
#[test]
fn outputs_reach_dependents() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 2),
        r#"cat > "$AXON_SESSION_DIR/$AXON_TASK_ID.stdin.json"
case "$AXON_TASK_ID" in
  a) echo '::axon output {"answer": 42, "words": ["x", "y"], "nested": {"k": null}}' ;;
  b) echo '::axon output {"draft": true}'
     echo "thinking..."
     echo '::axon output {"final": "b", "n": 1.5}' ;;
esac"#,
    );
    let out = ws.run("outputs.yaml");
    assert_exit(&out, 0);
    let s = summary(&out);
    let a_out = json!({ "answer": 42, "words": ["x", "y"], "nested": { "k": null } });
    let b_out = json!({ "final": "b", "n": 1.5 });
    assert_eq!(task(&s, "a")["output"], a_out);
    assert_eq!(task(&s, "b")["output"], b_out);
    assert_eq!(task(&s, "c")["output"], Value::Null);
    let stdin = |id: &str| -> Value {
        serde_json::from_str(&ws.read(&format!("{id}.stdin.json"))).unwrap()
    };
    let run_id = s["run_id"].as_str().unwrap();
    let a = stdin("a");
    assert_eq!(a["upstream"], json!({}));
    let b = stdin("b");
    assert_eq!(b["upstream"], json!({ "a": a_out }));
    assert_eq!(b["task"]["id"], "b");
    assert_eq!(b["attempt"], 1);
    assert_eq!(b["run_id"], run_id);
    assert_eq!(b["idempotency_key"], format!("{run_id}/b/1"));
    let c = stdin("c");
    assert_eq!(c["upstream"], json!({ "a": a_out, "b": b_out }));
}

/// A task no agent can ever run: nothing runs, no run is recorded, exit 1 with the reason.
#[test]
fn an_infeasible_workflow_runs_nothing() {
    let ws = Ws::new();
    ws.agents(&one_agent("dev", 4), "sleep 0.1");
    let out = ws.run("infeasible.yaml");
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("no suitable agent for task translate: no agent has capability translation"),
        "{err}"
    );
    assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
    assert!(ws.events().is_empty(), "an agent ran: {:?}", ws.events());
    assert!(!ws.file("events.log").exists());
    // No run was started: either no database at all, or one without runs.
    if ws.db().exists() {
        let runs = ws.axon(["runs", "--json"]);
        assert_exit(&runs, 0);
        let list: Value = serde_json::from_str(&stdout(&runs)).unwrap();
        assert_eq!(list, json!([]));
    }
}

/// Ctrl-C (SIGINT) cancels the run: agents get SIGTERM (their whole group), the engine exits
/// 130, no agent process or grandchild is left, and the run is recorded as cancelled.
#[test]
fn sigint_cancels_and_leaves_no_agent_behind() {
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
    // Three agents, each with a grandchild.
    wait_until("three agents to record their pids", || ws.pids().len() >= 6);
    let pids = ws.pids();
    engine.signal("INT");
    let status = engine.wait();
    assert_eq!(
        status.code(),
        Some(130),
        "axon exited with {status}\n{}",
        engine.stderr()
    );
    assert_no_crash(&engine.stderr());
    assert_gone(&pids);
    let summary: Value = serde_json::from_str(ws.read("axon.stdout").trim()).unwrap();
    assert_eq!(summary["status"], "cancelled");
    let out = ws.axon(["status", &run_id, "--json"]);
    assert_exit(&out, 0);
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["status"], "cancelled");
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "cancelled", "{t:#}");
    }
}

/// A second Ctrl-C exits at once, without the grace period, and still leaves no agent
/// behind: agents that ignore SIGTERM (and their children) are killed, not orphaned.
#[test]
fn a_second_sigint_exits_now_and_kills_the_agents() {
    let ws = Ws::new();
    ws.agents(
        &one_agent("worker", 2),
        r#"trap '' TERM
sleep 30 &
echo $! >> "$AXON_SESSION_DIR/pids"
echo $$ >> "$AXON_SESSION_DIR/pids"
sleep 30"#,
    );
    let mut engine = ws.spawn_run("sleepers.yaml");
    engine.run_id();
    wait_until("two agents to record their pids", || ws.pids().len() >= 4);
    let pids = ws.pids();
    engine.signal("INT");
    wait_until("the engine to start cancelling", || {
        engine.stderr().contains("cancelling")
    });
    engine.signal("INT");
    let status = engine.wait();
    assert_eq!(
        status.code(),
        Some(130),
        "axon exited with {status}\n{}",
        engine.stderr()
    );
    assert_no_crash(&engine.stderr());
    // The agents ignore SIGTERM: only the engine's SIGKILL can have stopped them, and it did
    // not wait for the grace period to end.
    eprintln!("{}", engine.stderr()); // shown if the test fails
    assert_gone(&pids);
}

/// The README's main command: the shipped example workflow on the shipped example agents
/// succeeds and leaves its files in the workspace.
#[test]
fn the_shipped_example_runs() {
    let ws = Ws::new();
    let out = axon()
        .args([
            "run",
            "examples/feature/workflow.yaml",
            "--agents",
            "examples/feature/agents.yaml",
            "--workspace",
        ])
        .arg(ws.path())
        .current_dir(workspace_root())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    for file in [
        "src/api/DESIGN.md",
        "src/api/auth.py",
        "tests/test_auth.py",
        "docs/auth.md",
    ] {
        let path = ws.file(file);
        assert!(
            path.is_file() && std::fs::metadata(&path).unwrap().len() > 0,
            "the example did not create {file}\n{}",
            stderr(&out)
        );
    }
    // Its state went to the workspace's default database, not the repository's.
    assert!(ws.file(".axon/axon.db").is_file());
}
