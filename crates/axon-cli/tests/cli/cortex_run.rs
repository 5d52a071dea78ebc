//! `axon run` / `axon resume` / `axon cortex sync` / `axon status` against the fake Cortex
//! server (`axon-testkit`, contract-faithful, with faults): what a user of `--cortex-url` sees
//! on the server and on their terminal.
//!
//! Every test has its own fake server and its own temporary directory holding a workspace
//! (`ws`, a git repository where the test needs one) and, outside it, a `tools` directory with
//! the agents file, the agent script, the workflow and whatever the agents record (its path is
//! in their environment as `TOOLS`, since a task's worktree is removed after the task). The
//! state database is the workspace's default one, `ws/.axon/axon.db`. The agent script saves
//! its stdin document, the `AXON_CORTEX_*` variables it got and, when it holds the API key, the
//! Cortex session it was given as the server describes it (`curl`), then runs the test's body.
//! Judgements are made from the fake's state and recorded requests, from what the agents
//! recorded, and from `axon`'s own outputs; waits poll for conditions, never for time.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use axon_testkit::cortex::{Episode, SessionChanges, Snapshot, Task, TaskStatus};
use serde_json::Value;
use tempfile::TempDir;

use crate::fake_cortex::Cortex;
use crate::run::{alive, run_id_of, summary, task, wait_until};
use crate::{Rng, assert_exit, assert_no_crash, axon, stderr, stdout};

/// What every agent does before the test's body: record its pid, its stdin document, its
/// Cortex environment and (when it may use the key) its Cortex session, then `start`.
/// `waitfor NAME` waits (up to 60 s) for `$TOOLS/NAME` to exist.
const PRELUDE: &str = r#"#!/bin/sh
echo $$ >> "$TOOLS/pids"
T="$AXON_TASK_ID.$AXON_ATTEMPT"
cat > "$TOOLS/stdin.$T.json"
if [ -n "${AXON_CORTEX_API_KEY+x}" ]; then key="set:$AXON_CORTEX_API_KEY"; else key=unset; fi
printf 'url=%s\nsession=%s\nworkspace=%s\nkey=%s\n' "${AXON_CORTEX_URL-}" "${AXON_CORTEX_SESSION_ID-}" "${AXON_CORTEX_WORKSPACE_ID-}" "$key" > "$TOOLS/env.$T"
if [ -n "${AXON_CORTEX_SESSION_ID-}" ] && [ -n "${AXON_CORTEX_API_KEY-}" ]; then
  curl -s -m 20 --noproxy '*' -H "Authorization: ApiKey $AXON_CORTEX_API_KEY" \
    "$AXON_CORTEX_URL/api/v1/sessions/$AXON_CORTEX_SESSION_ID" > "$TOOLS/session.$T.json"
fi
waitfor() { i=0; while [ ! -e "$TOOLS/$1" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; }
echo "start $T" >> "$TOOLS/events"
"#;

/// One agent of an agents file: id, capabilities, slots, whether it gets the API key.
struct Agent<'a> {
    id: &'a str,
    caps: &'a str,
    slots: u32,
    key: bool,
}

/// One agent `worker`, capability `shell`, with the key.
const WORKER: Agent<'static> = Agent {
    id: "worker",
    caps: "shell",
    slots: 3,
    key: true,
};

/// A workspace and a tools directory beside it (outside it), in one temporary directory.
struct Setup {
    _tmp: TempDir,
    ws: PathBuf,
    tools: PathBuf,
}

impl Setup {
    /// `<tmp>/ws` (a git repository with `files` as its one commit when `git`) and
    /// `<tmp>/tools`.
    fn new(git: bool, files: &[(&str, &str)]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("axon-cortex-")
            .tempdir()
            .unwrap();
        let ws = tmp.path().join("ws");
        let tools = tmp.path().join("tools");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        let setup = Self {
            _tmp: tmp,
            ws,
            tools,
        };
        for (path, text) in files {
            let path = setup.ws.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        if git {
            setup.git(&["init", "--quiet", "-b", "main"]);
            setup.git(&["config", "user.name", "Axon Test"]);
            setup.git(&["config", "user.email", "axon-test@example.com"]);
            setup.git(&["config", "commit.gpgsign", "false"]);
            setup.git(&["add", "-A"]);
            setup.git(&["commit", "--quiet", "-m", "initial"]);
        }
        setup
    }

    #[track_caller]
    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.ws)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.tools.join(name)
    }

    /// A tools file's text, empty if it does not exist.
    fn read_tool(&self, name: &str) -> String {
        std::fs::read_to_string(self.tool(name)).unwrap_or_default()
    }

    /// Creates `tools/NAME` (what `waitfor NAME` waits for).
    fn touch(&self, name: &str) {
        std::fs::write(self.tool(name), "").unwrap();
    }

    /// `tools/agent.sh` ([`PRELUDE`], then `body`, then `end`) and `tools/agents.yaml` with
    /// `agents`, all running it.
    fn agents(&self, agents: &[Agent<'_>], body: &str) {
        let path = self.tool("agent.sh");
        std::fs::write(
            &path,
            format!("{PRELUDE}{body}\necho \"end $T\" >> \"$TOOLS/events\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A JSON string is a valid YAML scalar, whatever the path holds.
        let tools = serde_json::to_string(self.tools.to_str().unwrap()).unwrap();
        let mut yaml = String::from("agents:\n");
        for a in agents {
            yaml.push_str(&format!(
                "  - id: {}\n    capabilities: [{}]\n    max_concurrent_tasks: {}\n    command: [\"./agent.sh\"]\n    cortex_api_key: {}\n    env: {{ TOOLS: {tools}, AGENT: {} }}\n",
                a.id, a.caps, a.slots, a.key, a.id
            ));
        }
        std::fs::write(self.tool("agents.yaml"), yaml).unwrap();
    }

    /// Writes `tools/wf.yaml` and returns its path.
    fn workflow(&self, yaml: &str) -> PathBuf {
        let path = self.tool("wf.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// The workspace's default state database.
    fn db(&self) -> PathBuf {
        self.ws.join(".axon/axon.db")
    }

    /// `run tools/wf.yaml --agents tools/agents.yaml --workspace ws --json EXTRA...`.
    fn run_args(&self, extra: &[String]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "run".into(),
            self.tool("wf.yaml").into(),
            "--agents".into(),
            self.tool("agents.yaml").into(),
            "--workspace".into(),
            self.ws.clone().into(),
            "--json".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args
    }

    /// `axon run ...` from the tools directory.
    fn run(&self, extra: &[String]) -> Output {
        self.run_with_env(extra, &[])
    }

    /// The same with extra environment variables for `axon`.
    fn run_with_env(&self, extra: &[String], env: &[(&str, &str)]) -> Output {
        let mut cmd = axon();
        cmd.args(self.run_args(extra))
            .current_dir(&self.tools)
            .timeout(Duration::from_secs(180));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// `axon --db ws/.axon/axon.db ARGS...` from the tools directory.
    fn axon(&self, args: &[&str]) -> Output {
        axon()
            .arg("--db")
            .arg(self.db())
            .args(args)
            .current_dir(&self.tools)
            .timeout(Duration::from_secs(180))
            .output()
            .unwrap()
    }

    /// `axon status RUN --json`.
    fn status_json(&self, run_id: &str) -> Value {
        let out = self.axon(&["status", run_id, "--json"]);
        assert_exit(&out, 0);
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    /// The `cortex: ...` line of `axon status RUN`.
    fn status_cortex_line(&self, run_id: &str) -> String {
        let out = self.axon(&["status", run_id]);
        assert_exit(&out, 0);
        stdout(&out)
            .lines()
            .find(|l| l.starts_with("cortex: "))
            .unwrap_or_else(|| panic!("no `cortex:` line in\n{}", stdout(&out)))
            .to_owned()
    }

    /// Starts `axon ARGS` (standard output and error into `tools/axon.stdout|stderr`).
    fn spawn(&self, args: Vec<OsString>, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_axon"));
        cmd.args(args)
            .current_dir(&self.tools)
            .env_remove("RUST_BACKTRACE")
            .env_remove("AXON_DB")
            .stdin(Stdio::null())
            .stdout(File::create(self.tool("axon.stdout")).unwrap())
            .stderr(File::create(self.tool("axon.stderr")).unwrap());
        for var in [
            "AXON_CORTEX_URL",
            "AXON_CORTEX_API_KEY",
            "AXON_CORTEX_TIMEOUT",
            "AXON_CORTEX_ROLES",
            "AXON_CORTEX_WORKSPACE",
            "AXON_CORTEX_OPTIONAL",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            stderr: self.tool("axon.stderr"),
        }
    }

    /// `(kind, task, attempt)` of the agents' `start`/`end` records.
    fn events(&self) -> Vec<(String, String, u32)> {
        self.read_tool("events")
            .lines()
            .filter_map(|l| {
                let (kind, rest) = l.split_once(' ')?;
                let (task, attempt) = rest.rsplit_once('.')?;
                Some((kind.to_owned(), task.to_owned(), attempt.parse().ok()?))
            })
            .collect()
    }

    /// The tasks whose agent recorded `kind` (any attempt).
    fn tasks_with(&self, kind: &str) -> BTreeSet<String> {
        self.events()
            .into_iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, t, _)| t)
            .collect()
    }

    /// The stdin document of `task`'s attempt `attempt`.
    fn stdin_of(&self, task: &str, attempt: u32) -> Value {
        let text = self.read_tool(&format!("stdin.{task}.{attempt}.json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdin of {task}: {e}: {text:?}"))
    }

    /// The `AXON_CORTEX_*` variables `task`'s attempt saw (`url`, `session`, `workspace`, and
    /// `key`: `unset` or `set:VALUE`).
    fn env_of(&self, task: &str, attempt: u32) -> BTreeMap<String, String> {
        self.read_tool(&format!("env.{task}.{attempt}"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The pids the agents recorded.
    fn pids(&self) -> Vec<u32> {
        self.read_tool("pids")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // No agent outlives its test, whatever happened.
        for pid in self.pids() {
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// An `axon` process a test started; dropping it kills it.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The run id from its `run <uuid> started` line, waiting for the line.
    fn run_id(&mut self) -> String {
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

    /// Waits (up to 3 minutes) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "axon did not exit:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for it to be gone.
    fn kill_9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), None, "axon was not killed: {status}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `--cortex-url URL --cortex-api-key KEY EXTRA...`.
fn flags(cortex: &Cortex, extra: &[&str]) -> Vec<String> {
    let mut f = vec![
        "--cortex-url".to_owned(),
        cortex.fake.url(),
        "--cortex-api-key".to_owned(),
        cortex.fake.api_key().to_owned(),
    ];
    f.extend(extra.iter().map(|s| (*s).to_owned()));
    f
}

/// `--cortex-url URL EXTRA...` (no key).
fn url_flags(cortex: &Cortex, extra: &[&str]) -> Vec<String> {
    let mut f = vec!["--cortex-url".to_owned(), cortex.fake.url()];
    f.extend(extra.iter().map(|s| (*s).to_owned()));
    f
}

/// The one workflow Cortex task of `run_id`, asserting its tags are exactly `axon` and
/// `axon-run:<run_id>`.
#[track_caller]
fn workflow_task<'a>(state: &'a Snapshot, run_id: &str) -> &'a Task {
    let run_tag = format!("axon-run:{run_id}");
    let found: Vec<&Task> = state
        .tasks
        .iter()
        .filter(|t| t.tags.contains(&run_tag))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one workflow task: {:#?}",
        state.tasks
    );
    assert_eq!(found[0].tags, ["axon".to_owned(), run_tag]);
    found[0]
}

/// The Cortex tasks of the Axon tasks of `run_id`, by Axon task id, asserting that every
/// Cortex task of the server is the workflow's or one of these, each tagged exactly
/// `axon-parent:<workflow task id>` and `axon-task:<task id>`, with no Axon task twice.
#[track_caller]
fn cortex_tasks(state: &Snapshot, run_id: &str) -> BTreeMap<String, Task> {
    let parent = workflow_task(state, run_id).id.clone();
    let parent_tag = format!("axon-parent:{parent}");
    let mut by_task = BTreeMap::new();
    for t in state.tasks.iter().filter(|t| t.id != parent) {
        assert_eq!(t.tags.len(), 2, "{t:#?}");
        assert_eq!(t.tags[0], parent_tag, "{t:#?}");
        let id = t.tags[1]
            .strip_prefix("axon-task:")
            .unwrap_or_else(|| panic!("no axon-task tag: {t:#?}"));
        assert!(
            by_task.insert(id.to_owned(), t.clone()).is_none(),
            "two Cortex tasks for {id}: {:#?}",
            state.tasks
        );
    }
    by_task
}

/// The Cortex statuses of `tasks`.
fn statuses(tasks: &BTreeMap<String, Task>) -> BTreeMap<String, TaskStatus> {
    tasks.iter().map(|(k, t)| (k.clone(), t.status)).collect()
}

/// How many requests `method path` the fake recorded (paths compared exactly).
fn count(cortex: &Cortex, method: &str, path: &str) -> usize {
    cortex
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

/// The bodies of the session creates Axon sent to Cortex, in order.
fn session_creates(cortex: &Cortex) -> Vec<Value> {
    cortex
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/sessions")
        .map(|r| r.body_json().unwrap())
        .collect()
}

/// A run id of a summary.
fn run_id(s: &Value) -> String {
    s["run_id"].as_str().unwrap().to_owned()
}

/// One task line of a workflow file (needing capability `shell` unless `fields` say which).
fn task_line(id: &str, fields: &str) -> String {
    let caps = if fields.contains("capabilities:") {
        ""
    } else {
        "capabilities: [shell], "
    };
    format!("  {id}: {{ {caps}estimated_duration: 1s, {fields} }}\n")
}

// ---------------------------------------------------------------------------------------------
// 1. A full run with tracking, sessions and memory.
// ---------------------------------------------------------------------------------------------

/// A git repository, every role: a task that fails with exit 3 (its dependent is skipped),
/// two tasks editing the same committed line (one loses its git merge), and one whose Cortex
/// merge is `partial`. Cortex ends up with one workflow task and one task per Axon task,
/// tagged and in the mapped statuses; every session was deleted; each agent got its live
/// session; seeded Cortex memory reached the tasks whose names share a word with it; and
/// `axon status` says everything was delivered.
#[test]
fn a_full_run_tracks_every_task_and_leaves_no_session() {
    let cortex = Cortex::start();
    cortex.fake.seed_memory([
        Episode::new("ep-parser", "Grammar notes for the parser", "feature"),
        Episode::new("ep-greeting", "Why the greeting line matters", "bugfix"),
        Episode::new("ep-unrelated", "Tuning the database pool", "task"),
    ]);
    // The Cortex side of `notes`' session conflicts (a file it modified is gone there).
    cortex.fake.set_session_changes(
        "/notes/",
        SessionChanges {
            modified: 1,
            conflicts: vec!["docs/notes.md".into()],
        },
    );
    let setup = Setup::new(
        true,
        &[("shared.txt", "original line\n"), ("README.md", "hello\n")],
    );
    setup.agents(
        &[WORKER],
        r#"case "$AXON_TASK_ID" in
  plan) mkdir -p docs; echo "the plan" > docs/plan.md ;;
  left|right)
    # Both worktrees exist (cut from the same tip) before either changes anything.
    touch "$TOOLS/ready.$AXON_TASK_ID"; waitfor ready.left; waitfor ready.right
    echo "changed by $AXON_TASK_ID" > shared.txt ;;
  broken) echo "error: cannot find symbol parse_expr" >&2; exit 3 ;;
  notes) echo "notes" > NOTES.md ;;
esac"#,
    );
    let mut wf = String::from("name: Cortex full run\ndescription: every role at once\ntasks:\n");
    wf.push_str(&task_line(
        "plan",
        "name: Plan parser work, type: development, language: rust",
    ));
    wf.push_str(&task_line(
        "left",
        "name: Edit greeting left, type: custom, handler: sh, depends_on: [plan]",
    ));
    wf.push_str(&task_line(
        "right",
        "name: Edit greeting right, type: custom, handler: sh, depends_on: [plan]",
    ));
    wf.push_str(&task_line(
        "broken",
        "name: Compile broken module, type: custom, handler: sh",
    ));
    wf.push_str(&task_line(
        "after_broken",
        "name: Package module, type: custom, handler: sh, depends_on: [broken]",
    ));
    wf.push_str(&task_line(
        "notes",
        "name: Write release summary, type: documentation, format: markdown",
    ));
    setup.workflow(&wf);

    let out = setup.run(&flags(&cortex, &[]));
    assert_exit(&out, 1);
    let s = summary(&out);
    let run = run_id(&s);
    let err = stderr(&out);
    eprintln!("{err}"); // shown when the test fails

    // What the run itself says.
    assert_eq!(s["status"], "failed", "{s:#}");
    assert_eq!(task(&s, "plan")["status"], "succeeded");
    assert_eq!(task(&s, "broken")["status"], "failed");
    assert_eq!(task(&s, "broken")["error"], "agent exited with code 3");
    assert_eq!(task(&s, "after_broken")["status"], "skipped");
    let notes = task(&s, "notes");
    assert_eq!(notes["status"], "failed", "{notes:#}");
    assert_eq!(notes["error_kind"], "merge_conflict", "{notes:#}");
    let notes_error = notes["error"].as_str().unwrap().to_owned();
    assert!(
        notes_error.contains("merge conflict in Cortex session"),
        "{notes_error}"
    );
    let (winner, loser) = match (
        task(&s, "left")["status"].as_str().unwrap(),
        task(&s, "right")["status"].as_str().unwrap(),
    ) {
        ("succeeded", "failed") => ("left", "right"),
        ("failed", "succeeded") => ("right", "left"),
        other => panic!("expected one of left/right to lose its merge: {other:?}\n{s:#}"),
    };
    assert_eq!(task(&s, loser)["error_kind"], "merge_conflict");
    let loser_error = task(&s, loser)["error"].as_str().unwrap().to_owned();
    assert!(
        loser_error.starts_with("merge conflict in shared.txt"),
        "{loser_error}"
    );

    // Cortex: one workflow task, one task per Axon task, in the mapped statuses.
    let state = cortex.fake.state();
    assert_eq!(state.tasks.len(), 7, "{:#?}", state.tasks);
    assert!(state.deleted_tasks.is_empty(), "{:#?}", state.deleted_tasks);
    let wf_task = workflow_task(&state, &run);
    assert_eq!(wf_task.title, "Cortex full run");
    assert_eq!(wf_task.description, "every role at once");
    assert_eq!(wf_task.status, TaskStatus::Blocked, "the run failed");
    let tasks = cortex_tasks(&state, &run);
    let expected: BTreeMap<String, TaskStatus> = [
        ("plan", TaskStatus::Done),
        (winner, TaskStatus::Done),
        (loser, TaskStatus::Blocked),
        ("broken", TaskStatus::Blocked),
        ("after_broken", TaskStatus::Cancelled),
        ("notes", TaskStatus::Blocked),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(statuses(&tasks), expected, "{tasks:#?}");
    let names = [
        ("plan", "Plan parser work"),
        ("left", "Edit greeting left"),
        ("right", "Edit greeting right"),
        ("broken", "Compile broken module"),
        ("after_broken", "Package module"),
        ("notes", "Write release summary"),
    ];
    for (id, name) in names {
        assert_eq!(tasks[id].title, name, "{:#?}", tasks[id]);
    }
    for id in ["plan", winner] {
        let t = &tasks[id];
        assert_eq!(t.progress, 1.0, "{t:#?}");
        assert!(t.actual_hours.is_some_and(|h| h >= 0.0), "{t:#?}");
        assert_eq!(t.assigned_to, ["worker"], "{t:#?}");
    }
    let note = |id: &str| tasks[id].completion_note.clone().unwrap_or_default();
    assert!(
        note("broken").contains("agent exited with code 3"),
        "{:#?}",
        tasks["broken"]
    );
    assert!(
        note(loser).contains("merge conflict in shared.txt"),
        "{:#?}",
        tasks[loser]
    );
    assert!(
        note("notes").contains("merge conflict in Cortex session"),
        "{:#?}",
        tasks["notes"]
    );

    // Sessions: one per attempt that ran, named and typed after its task, every one deleted;
    // merged exactly when the agent succeeded.
    assert!(
        state.sessions.is_empty(),
        "sessions left on Cortex: {:#?}",
        state.sessions
    );
    let created = session_creates(&cortex);
    let created_names: BTreeSet<String> = created
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    let ran = ["plan", "left", "right", "broken", "notes"];
    let expected_names: BTreeSet<String> =
        ran.iter().map(|t| format!("axon/{run}/{t}/1")).collect();
    assert_eq!(created_names, expected_names, "{created:#?}");
    assert_eq!(created.len(), 5, "{created:#?}");
    let workspace_id = state.workspaces[0].id.clone();
    assert_eq!(state.workspaces.len(), 1, "{:#?}", state.workspaces);
    for body in &created {
        let name = body["name"].as_str().unwrap();
        let kind = if name.ends_with("/plan/1") {
            "development"
        } else if name.ends_with("/notes/1") {
            "documentation"
        } else {
            "custom"
        };
        assert_eq!(body["agent_type"], kind, "{body}");
        assert_eq!(body["workspace_id"], workspace_id.as_str(), "{body}");
    }
    let deleted: BTreeSet<&str> = state.deleted_sessions.iter().map(String::as_str).collect();
    let mut merged = BTreeSet::new();
    for m in &state.merges {
        assert!(merged.insert(m.session_id.clone()), "merged twice: {m:#?}");
    }
    assert_eq!(merged.len(), 4, "{:#?}", state.merges);

    // Each agent's stdin and environment name its live session and the workspace.
    let mut session_of = BTreeMap::new();
    for t in ran {
        let stdin = setup.stdin_of(t, 1);
        let c = &stdin["cortex"];
        assert_eq!(c["url"], cortex.fake.url().as_str(), "{t}: {stdin:#}");
        assert_eq!(c["workspace_id"], workspace_id.as_str(), "{t}: {c:#}");
        let sid = c["session_id"].as_str().unwrap().to_owned();
        assert!(
            c.get("api_key").is_none(),
            "{t}: the key is in stdin: {c:#}"
        );
        let env = setup.env_of(t, 1);
        assert_eq!(env["url"], cortex.fake.url(), "{t}");
        assert_eq!(env["session"], sid, "{t}");
        assert_eq!(env["workspace"], workspace_id, "{t}");
        // As Cortex described it while the agent ran: live, and the attempt's.
        let live: Value = serde_json::from_str(&setup.read_tool(&format!("session.{t}.1.json")))
            .unwrap_or_else(|e| panic!("{t}: no session recorded: {e}"));
        assert_eq!(live["data"]["id"], sid.as_str(), "{t}: {live:#}");
        assert_eq!(
            live["data"]["name"],
            format!("axon/{run}/{t}/1"),
            "{live:#}"
        );
        assert_eq!(live["data"]["status"], "active", "{live:#}");
        assert!(
            deleted.contains(sid.as_str()),
            "{t}: session {sid} not deleted"
        );
        session_of.insert(t, sid);
    }
    let merged_tasks: BTreeSet<&str> = session_of
        .iter()
        .filter(|(_, sid)| merged.contains(*sid))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        merged_tasks,
        BTreeSet::from(["plan", "left", "right", "notes"]),
        "only agents that succeeded get their session merged"
    );
    for m in &state.merges {
        assert_eq!(
            m.strategy,
            axon_testkit::cortex::MergeStrategy::Auto,
            "{m:#?}"
        );
    }
    // The skipped task never ran.
    assert!(!setup.tasks_with("start").contains("after_broken"));

    // Memory: seeded episodes sharing a word with a task's name are in its context.
    let cortex_context = |t: &str| -> Vec<Value> {
        setup.stdin_of(t, 1)["context"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["source"] == "cortex")
            .cloned()
            .collect()
    };
    let plan_ctx = cortex_context("plan");
    assert_eq!(plan_ctx.len(), 1, "{plan_ctx:#?}");
    assert_eq!(plan_ctx[0]["id"], "ep-parser");
    assert_eq!(plan_ctx[0]["content"], "Grammar notes for the parser");
    assert_eq!(plan_ctx[0]["episode_type"], "feature");
    assert_eq!(plan_ctx[0]["importance"], 0.5);
    assert!(plan_ctx[0]["created_at"].is_string(), "{plan_ctx:#?}");
    for t in ["left", "right"] {
        let ids: Vec<Value> = cortex_context(t).iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids, [Value::from("ep-greeting")], "{t}");
    }
    assert!(cortex_context("broken").is_empty());
    assert!(cortex_context("notes").is_empty());
    for t in ran {
        for e in setup.stdin_of(t, 1)["context"].as_array().unwrap() {
            assert!(
                e["source"] == "axon" || e["source"] == "cortex",
                "{t}: context entry without its source: {e:#}"
            );
        }
    }

    // `axon status` says where the run is tracked and that nothing is owed.
    let status = setup.status_json(&run);
    let c = &status["cortex"];
    assert_eq!(c["server"], cortex.fake.url().as_str(), "{c:#}");
    assert_eq!(c["workflow_task_id"], wf_task.id.as_str(), "{c:#}");
    assert_eq!(c["undelivered"], 0, "{c:#}");
    assert_eq!(c["failing"], 0, "{c:#}");
    assert_eq!(c["open_sessions"], 0, "{c:#}");
    assert_eq!(c["last_error"], Value::Null, "{c:#}");
    assert_eq!(c["oldest_undelivered_at"], Value::Null, "{c:#}");
    assert_eq!(
        setup.status_cortex_line(&run),
        format!(
            "cortex: tracked on {} as task {}, every update delivered",
            cortex.fake.url(),
            wf_task.id
        )
    );
    assert!(
        err.contains(&format!(
            "tracked on Cortex at {} as task {}",
            cortex.fake.url(),
            wf_task.id
        )),
        "{err}"
    );
    assert!(!err.contains("not delivered yet"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 2. Cortex down mid-run, then `axon cortex sync`.
// ---------------------------------------------------------------------------------------------

/// A chain with a fan-out: `first` -> {`b`, `c`} -> `d`; `first` holds until `tools/go`.
fn diamond() -> String {
    let mut wf = String::from("name: Diamond\ntasks:\n");
    wf.push_str(&task_line(
        "first",
        "name: First step, type: custom, handler: sh",
    ));
    wf.push_str(&task_line(
        "b",
        "name: Second step, type: custom, handler: sh, depends_on: [first]",
    ));
    wf.push_str(&task_line(
        "c",
        "name: Third step, type: custom, handler: sh, depends_on: [first]",
    ));
    wf.push_str(&task_line(
        "d",
        "name: Last step, type: custom, handler: sh, depends_on: [b, c]",
    ));
    wf
}

/// Cortex goes down once the run's Cortex tasks exist and its first task is `inprogress`
/// there. Only the tracking role is on: the bridge documents that tracking calls "never block
/// or fail the run" (they are queued in the store's outbox), while a session or a memory
/// search needs Cortex at the moment of the call (a session that cannot be created fails its
/// attempt). So the run succeeds on the embedded side, says how many updates it still owes and
/// how to deliver them; `axon status` shows them; `axon cortex sync` refuses while Cortex is
/// down and, once it is up, delivers every update exactly once (no task created twice) and a
/// second sync has nothing left to do.
#[test]
fn cortex_down_mid_run_queues_updates_that_sync_delivers_once() {
    let cortex = Cortex::start();
    let setup = Setup::new(false, &[]);
    setup.agents(
        &[WORKER],
        r#"if [ "$AXON_TASK_ID" = first ]; then waitfor go; fi"#,
    );
    setup.workflow(&diamond());
    let mut engine = setup.spawn(
        setup.run_args(&url_flags(&cortex, &["--cortex-roles", "tracking"])),
        &[],
    );
    let run = engine.run_id();
    wait_until("the run's 5 Cortex tasks, `first` in progress", || {
        let state = cortex.fake.state();
        state.tasks.len() == 5
            && state.tasks.iter().any(|t| {
                t.tags.contains(&"axon-task:first".to_owned()) && t.status == TaskStatus::InProgress
            })
    });
    assert!(setup.tasks_with("start").contains("first"));
    let posts_before = count(&cortex, "POST", "/api/v1/tasks");
    assert_eq!(posts_before, 5);
    cortex.block_on(cortex.fake.faults().set_down(true));
    setup.touch("go");
    let status = engine.wait();
    let err = engine.stderr();
    eprintln!("{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    assert_no_crash(&err);
    let s: Value = serde_json::from_str(setup.read_tool("axon.stdout").trim()).unwrap();
    assert_eq!(s["status"], "succeeded", "{s:#}");
    assert_eq!(
        setup.tasks_with("end"),
        BTreeSet::from(["first", "b", "c", "d"].map(String::from))
    );
    let note = err
        .lines()
        .find(|l| l.contains("Cortex tracking updates are not delivered yet"))
        .unwrap_or_else(|| panic!("no undelivered note:\n{err}"));
    assert!(note.contains("note: "), "{note}");
    assert!(
        note.contains(&format!("`axon cortex sync {run}`")),
        "{note}"
    );
    let owed: u64 = note
        .split("note: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the note does not say how many: {note}"));
    // (How many calls the updates take is the courier's business: at most `first` done,
    // `b`, `c` and `d` in progress then done, the workflow done. The same count must show
    // everywhere.)
    assert!((1..=8).contains(&owed), "{note}");

    // `axon status` shows what is owed, and why.
    let st = setup.status_json(&run);
    let c = &st["cortex"];
    assert_eq!(c["server"], cortex.fake.url().as_str(), "{c:#}");
    assert_eq!(c["undelivered"], owed, "{c:#}");
    assert!(c["failing"].as_u64().unwrap() > 0, "{c:#}");
    assert!(c["oldest_undelivered_at"].is_string(), "{c:#}");
    assert!(
        c["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{c:#}"
    );
    let line = setup.status_cortex_line(&run);
    assert!(
        line.contains(&format!("; {owed} updates not delivered yet")),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(": `axon cortex sync {run}` delivers them")),
        "{line}"
    );

    // A sync while Cortex is still down delivers nothing and says so.
    let early = setup.axon(&["cortex", "sync", &run]);
    assert_exit(&early, 1);
    assert!(stderr(&early).contains("stay queued"), "{}", stderr(&early));
    assert_eq!(setup.status_json(&run)["cortex"]["undelivered"], owed);

    // Cortex is back: sync (the server is the one the run was tracked on) delivers it all.
    cortex.block_on(cortex.fake.faults().set_down(false));
    let sync = setup.axon(&["cortex", "sync", &run]);
    assert_exit(&sync, 0);
    let text = stdout(&sync);
    assert!(
        text.contains(&format!("run {run}: {owed} updates delivered, 0 left")),
        "{text}"
    );
    assert!(text.contains("nothing left"), "{text}");
    let state = cortex.fake.state();
    assert_eq!(state.tasks.len(), 5, "{:#?}", state.tasks);
    assert!(state.deleted_tasks.is_empty(), "{:#?}", state.deleted_tasks);
    assert_eq!(
        count(&cortex, "POST", "/api/v1/tasks"),
        5,
        "a task was created twice"
    );
    assert_eq!(workflow_task(&state, &run).status, TaskStatus::Done);
    let tasks = cortex_tasks(&state, &run);
    assert_eq!(tasks.len(), 4);
    for (id, t) in &tasks {
        assert_eq!(t.status, TaskStatus::Done, "{id}: {t:#?}");
        assert_eq!(t.progress, 1.0, "{id}: {t:#?}");
    }
    let st = setup.status_json(&run);
    assert_eq!(st["cortex"]["undelivered"], 0, "{st:#}");
    assert_eq!(st["cortex"]["failing"], 0, "{st:#}");
    assert!(
        setup
            .status_cortex_line(&run)
            .ends_with(", every update delivered")
    );

    // Nothing is left: a second sync, of the run or of everything, changes nothing.
    let writes = |c: &Cortex| {
        c.fake
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && r.path.starts_with("/api/v1/tasks"))
            .count()
    };
    let before = writes(&cortex);
    let again = setup.axon(&["cortex", "sync", &run]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains(&format!("run {run}: 0 updates delivered, 0 left")),
        "{}",
        stdout(&again)
    );
    let all = setup.axon(&["cortex", "sync"]);
    assert_exit(&all, 0);
    assert!(
        stdout(&all).contains("nothing to deliver"),
        "{}",
        stdout(&all)
    );
    assert_eq!(writes(&cortex), before, "a second sync delivered something");
    assert_eq!(cortex.fake.state().tasks, state.tasks);
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 mid-run, then `axon resume`.
// ---------------------------------------------------------------------------------------------

/// The tasks of `resume.yaml` (`a` -> {`b`, `c`, `d`} -> `e` -> `f`), in an order that respects
/// their dependencies, with their prerequisites.
const RESUMABLE: [(&str, &[&str]); 6] = [
    ("a", &[]),
    ("b", &["a"]),
    ("c", &["a"]),
    ("d", &["a"]),
    ("e", &["b", "c", "d"]),
    ("f", &["e"]),
];

/// The tasks of `axon status RUN --json` with status `succeeded`.
fn succeeded(setup: &Setup, run: &str) -> BTreeSet<String> {
    setup.status_json(run)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `axon resume RUN --json` with the flags of [`flags`].
fn resume(setup: &Setup, cortex: &Cortex, run: &str) -> Output {
    let mut args = vec!["resume".to_owned(), run.to_owned(), "--json".to_owned()];
    args.extend(flags(cortex, &[]));
    setup.axon(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// What must hold once a killed run was resumed to success: exactly one Cortex task per Axon
/// task plus the workflow's, none created twice (nor created and deleted), all `done`; no
/// Cortex session left; never two sessions for one attempt; nothing owed.
#[track_caller]
fn assert_resumed_cleanly(setup: &Setup, cortex: &Cortex, run: &str, context: &str) {
    let state = cortex.fake.state();
    assert_eq!(
        state.tasks.len(),
        7,
        "{context}: expected 7 Cortex tasks: {:#?}",
        state.tasks
    );
    assert!(
        state.deleted_tasks.is_empty(),
        "{context}: a duplicate task was created (and deleted): {:#?}",
        state.deleted_tasks
    );
    assert_eq!(
        workflow_task(&state, run).status,
        TaskStatus::Done,
        "{context}"
    );
    let tasks = cortex_tasks(&state, run);
    assert_eq!(
        tasks.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "f"],
        "{context}"
    );
    for (id, t) in &tasks {
        assert_eq!(t.status, TaskStatus::Done, "{context}: {id}: {t:#?}");
    }
    assert!(
        state.sessions.is_empty(),
        "{context}: sessions left on Cortex: {:#?}",
        state.sessions
    );
    let names: Vec<String> = session_creates(cortex)
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{context}: {names:#?}");
    let st = setup.status_json(run);
    assert_eq!(st["status"], "succeeded", "{context}: {st:#}");
    assert_eq!(st["cortex"]["undelivered"], 0, "{context}: {st:#}");
    assert_eq!(st["cortex"]["open_sessions"], 0, "{context}: {st:#}");
}

/// The engine, with every role on, is killed with SIGKILL at three random points of a run:
/// after 0 to 4 tasks succeeded, plus up to 250 ms, while the running agents wait for the
/// test (so the kill lands while tracking calls may be in flight, but no session call is:
/// kills inside a session call are the tests below). `axon resume` with the same
/// Cortex flags then finishes the run, and Cortex holds exactly what the run did once.
#[test]
fn kill_9_then_resume_creates_no_duplicate_and_leaves_no_session() {
    let mut rng = Rng::from_clock();
    for round in 0..3 {
        let released = usize::try_from(rng.below(5)).unwrap();
        let extra = Duration::from_millis(rng.below(250));
        let context = format!("round {round}: kill after {released} tasks + {extra:?}");
        eprintln!("{context}");
        let cortex = Cortex::start();
        let setup = Setup::new(false, &[]);
        setup.agents(
            &[WORKER],
            r#"echo "::axon progress 0.5"
touch "$TOOLS/mid.$T"
waitfor "go.$AXON_TASK_ID""#,
        );
        std::fs::copy(crate::run::workflow("resume.yaml"), setup.tool("wf.yaml")).unwrap();
        let mut engine = setup.spawn(setup.run_args(&flags(&cortex, &[])), &[]);
        let run = engine.run_id();
        let done: BTreeSet<String> = RESUMABLE[..released]
            .iter()
            .map(|(t, _)| (*t).to_owned())
            .collect();
        for t in &done {
            setup.touch(&format!("go.{t}"));
        }
        // Those succeeded; every task they made ready runs, waiting for the test.
        let waiting: Vec<&str> = RESUMABLE
            .iter()
            .filter(|(t, deps)| !done.contains(*t) && deps.iter().all(|d| done.contains(*d)))
            .map(|(t, _)| *t)
            .collect();
        wait_until("the released tasks to succeed and the next to wait", || {
            waiting
                .iter()
                .all(|t| setup.tool(&format!("mid.{t}.1")).exists())
                && succeeded(&setup, &run) == done
        });
        std::thread::sleep(extra);
        engine.kill_9();
        let before = setup.status_json(&run);
        assert_eq!(before["status"], "interrupted", "{context}: {before:#}");
        for (t, _) in RESUMABLE {
            setup.touch(&format!("go.{t}"));
        }
        let out = resume(&setup, &cortex, &run);
        let err = stderr(&out);
        assert_exit(&out, 0);
        let s = summary(&out);
        assert_eq!(s["status"], "succeeded", "{context}: {s:#}\n{err}");
        assert!(!err.contains("not delivered yet"), "{context}: {err}");
        // Tasks that had succeeded did not run again.
        for t in &done {
            assert!(
                !setup.tool(&format!("stdin.{t}.2.json")).exists(),
                "{context}: {t} ran again"
            );
        }
        assert_resumed_cleanly(&setup, &cortex, &run, &context);
    }
}

/// The same at truly random kill points (after 0 to 4 tasks finished, plus up to 250 ms, the
/// agents running free), twelve times: a kill can then land inside a session call, and two
/// windows show (each reproduced deterministically by the tests below).
#[test]
fn kill_9_at_any_point_then_resume_leaves_no_session_and_fails_nothing() {
    let mut rng = Rng::from_clock();
    for round in 0..12 {
        let finished_before_kill = usize::try_from(rng.below(5)).unwrap();
        let extra = Duration::from_millis(rng.below(250));
        let context = format!("round {round}: kill after {finished_before_kill} tasks + {extra:?}");
        eprintln!("{context}");
        let cortex = Cortex::start();
        let setup = Setup::new(false, &[]);
        // About 0.3 s a task (the fan-in `e` 0.8 s), progress halfway.
        setup.agents(
            &[WORKER],
            r#"sleep 0.15
echo "::axon progress 0.5"
if [ "$AXON_TASK_ID" = e ]; then sleep 0.65; else sleep 0.15; fi"#,
        );
        std::fs::copy(crate::run::workflow("resume.yaml"), setup.tool("wf.yaml")).unwrap();
        let mut engine = setup.spawn(setup.run_args(&flags(&cortex, &[])), &[]);
        let run = engine.run_id();
        wait_until("tasks to finish before the kill", || {
            !setup.tasks_with("start").is_empty()
                && setup.tasks_with("end").len() >= finished_before_kill
        });
        std::thread::sleep(extra);
        engine.kill_9();
        let out = resume(&setup, &cortex, &run);
        assert_exit(&out, 0);
        assert_resumed_cleanly(&setup, &cortex, &run, &context);
    }
}

/// A session Cortex created but whose answer was lost (the connection dropped mid-body: the
/// handler ran) is never known to Axon, so nothing ever deletes it, though the bridge says
/// sessions are "deleted afterwards, whatever happened" (`GET /api/v1/sessions` lists them by
/// name, `axon/<run>/<task>/<attempt>`, so Axon could find it). A `kill -9` between a create
/// and its record leaks the same way.
#[test]
fn a_session_whose_create_answer_was_lost_is_deleted_all_the_same() {
    let cortex = Cortex::start();
    // The first request on the sessions routes is the start's key probe, `GET` of a session
    // that cannot exist: a 404 is what it expects. The second is the first create.
    cortex
        .fake
        .faults()
        .on("/api/v1/sessions")
        .fail_next(1, 404)
        .drop_mid_body_next(1);
    let setup = Setup::new(false, &[]);
    setup.agents(&[WORKER], "");
    setup.workflow(&format!(
        "name: Lost answer\ntasks:\n{}",
        task_line("a", "name: Only step, type: custom, handler: sh")
    ));
    let out = setup.run(&flags(&cortex, &[]));
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(cortex.fake.faults().pending(), 0);
    let s = summary(&out);
    let run = run_id(&s);
    // The create whose answer was lost did create a session.
    let created = session_creates(&cortex);
    assert!(
        created
            .iter()
            .any(|b| b["name"] == format!("axon/{run}/a/1").as_str()),
        "{created:#?}"
    );
    let sync = setup.axon(&[
        "cortex",
        "sync",
        &run,
        "--cortex-api-key",
        cortex.fake.api_key(),
    ]);
    eprintln!("{}{}", stdout(&sync), stderr(&sync));
    let state = cortex.fake.state();
    assert!(
        state.sessions.is_empty(),
        "sessions left on Cortex after the run and a sync: {:#?}",
        state.sessions
    );
}

/// `kill -9` while a task's Cortex merge is in flight (the attempt is durably `merging`), and
/// the session is gone from Cortex before the resume: what a crash leaves when it lands after
/// the engine's own `DELETE` of the merged session reached Cortex but before it recorded the
/// deletion (the random kill points above hit it). Resume then merges the recorded session
/// again, gets 404, and fails the task (skipping its dependents), though its agent succeeded
/// and nothing conflicted. A session that no longer exists should not fail the recovery.
#[test]
fn resume_after_a_kill_mid_merge_does_not_fail_a_task_whose_session_is_gone() {
    let cortex = Cortex::start();
    let setup = Setup::new(false, &[]);
    setup.agents(
        &[WORKER],
        r#"if [ "$AXON_TASK_ID" = a ]; then waitfor go; fi"#,
    );
    setup.workflow(&format!(
        "name: Merge then die\ntasks:\n{}{}",
        task_line("a", "name: First step, type: custom, handler: sh"),
        task_line(
            "b",
            "name: Next step, type: custom, handler: sh, depends_on: [a]"
        )
    ));
    let mut engine = setup.spawn(setup.run_args(&flags(&cortex, &[])), &[]);
    let run = engine.run_id();
    wait_until("`a` to start", || setup.tasks_with("start").contains("a"));
    let sid = setup.env_of("a", 1)["session"].clone();
    assert!(!sid.is_empty());
    // `a`'s merge hangs, so the engine is killed with the merge in flight.
    let merge = format!("/api/v1/sessions/{sid}/merge");
    cortex
        .fake
        .faults()
        .on(merge.clone())
        .set_delay(Duration::from_secs(300));
    setup.touch("go");
    wait_until("`a`'s merge to reach Cortex", || {
        count(&cortex, "POST", &merge) == 1
    });
    engine.kill_9();
    cortex.fake.faults().on(merge).set_delay(Duration::ZERO);
    // The session goes, as the crashed engine's own DELETE would have taken it.
    let (status, body) = crate::cortex_real::http(
        &cortex.fake.url(),
        "DELETE",
        &format!("/api/v1/sessions/{sid}"),
        Some(cortex.fake.api_key()),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    let out = resume(&setup, &cortex, &run);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded", "{s:#}");
    assert_eq!(task(&s, "a")["status"], "succeeded");
    assert_eq!(task(&s, "b")["status"], "succeeded");
    assert!(cortex.fake.state().sessions.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. A Cortex that is not usable at start.
// ---------------------------------------------------------------------------------------------

/// Two independent quick tasks.
fn two_tasks() -> String {
    format!(
        "name: Two steps\ntasks:\n{}{}",
        task_line("one", "name: Step one, type: custom, handler: sh"),
        task_line("two", "name: Step two, type: custom, handler: sh")
    )
}

/// How a Cortex is made unusable, what the error (and the `--cortex-optional` note) must say,
/// and what only the error adds.
struct Unusable {
    what: &'static str,
    key: Option<&'static str>,
    says: &'static [&'static str],
    hint: Option<&'static str>,
}

/// Down (connection refused), unhealthy, a wrong key, no key (sessions and memory need one):
/// `axon run` exits 1 before anything runs, naming the URL and the cause, and creates nothing
/// on Cortex and no run. With `--cortex-optional` (as a flag, or `AXON_CORTEX_OPTIONAL` with
/// the URL and key in the environment) the same run succeeds on the embedded implementation,
/// says so in a `note:`, and Cortex gets nothing.
#[test]
fn an_unusable_cortex_stops_the_run_before_anything_runs() {
    let cases = [
        Unusable {
            what: "down",
            key: None,
            says: &["connection refused"],
            hint: None,
        },
        Unusable {
            what: "unhealthy",
            key: None,
            says: &["unhealthy"],
            hint: None,
        },
        Unusable {
            what: "wrong key",
            key: Some("ctx-wrong-0123456789"),
            says: &["401", "Invalid API key"],
            hint: Some(
                "sessions and memory need an API key Cortex accepts: pass --cortex-api-key or set AXON_CORTEX_API_KEY",
            ),
        },
        Unusable {
            what: "no key",
            key: Some(""),
            says: &["401", "Authentication required"],
            hint: Some(
                "sessions and memory need an API key Cortex accepts: pass --cortex-api-key or set AXON_CORTEX_API_KEY",
            ),
        },
    ];
    for case in cases {
        for optional in [false, true] {
            let context = format!("{} (optional: {optional})", case.what);
            let cortex = Cortex::start();
            match case.what {
                "down" => cortex.block_on(cortex.fake.faults().set_down(true)),
                "unhealthy" => {
                    cortex.fake.faults().set_unhealthy(true);
                }
                _ => {}
            }
            let setup = Setup::new(false, &[]);
            setup.agents(&[WORKER], "");
            setup.workflow(&two_tasks());
            let url = cortex.fake.url();
            let key = case.key.unwrap_or(cortex.fake.api_key()).to_owned();
            let out = if optional && case.what == "down" {
                // Everything from the environment this time.
                setup.run_with_env(
                    &[],
                    &[
                        ("AXON_CORTEX_URL", &url),
                        ("AXON_CORTEX_API_KEY", &key),
                        ("AXON_CORTEX_OPTIONAL", "true"),
                    ],
                )
            } else {
                let mut f = url_flags(&cortex, &[]);
                if !key.is_empty() {
                    f.extend(["--cortex-api-key".to_owned(), key.clone()]);
                }
                if optional {
                    f.push("--cortex-optional".to_owned());
                }
                setup.run(&f)
            };
            let err = stderr(&out);
            if !key.is_empty() {
                assert!(
                    !err.contains(&key) && !stdout(&out).contains(&key),
                    "{context}: the key was printed:\n{err}"
                );
            }
            if case.what == "down" {
                cortex.block_on(cortex.fake.faults().set_down(false));
            }
            let state = cortex.fake.state();
            assert!(state.tasks.is_empty(), "{context}: {:#?}", state.tasks);
            assert!(
                state.sessions.is_empty() && state.workspaces.is_empty(),
                "{context}: {state:#?}"
            );
            assert_eq!(count(&cortex, "POST", "/api/v1/tasks"), 0, "{context}");
            if optional {
                assert_exit(&out, 0);
                assert!(
                    err.contains(&format!("note: Cortex at {url} is not usable (")),
                    "{context}:\n{err}"
                );
                assert!(
                    err.contains(
                        "running on the embedded implementation instead (--cortex-optional)"
                    ),
                    "{context}:\n{err}"
                );
                for says in case.says {
                    assert!(err.contains(says), "{context}: no `{says}` in\n{err}");
                }
                assert_eq!(
                    setup.tasks_with("end"),
                    BTreeSet::from(["one".to_owned(), "two".to_owned()]),
                    "{context}"
                );
                let s = summary(&out);
                assert_eq!(s["status"], "succeeded", "{context}: {s:#}");
                // The agents got no Cortex session, and the run is tracked nowhere.
                assert_eq!(setup.stdin_of("one", 1).get("cortex"), None, "{context}");
                let env = setup.env_of("one", 1);
                assert_eq!(env["session"], "", "{context}");
                assert_eq!(env["workspace"], "", "{context}");
                if case.what != "down" {
                    // (Given in the engine's environment, `AXON_CORTEX_URL` is inherited by
                    // the agents as it is, session or not.)
                    assert_eq!(env["url"], "", "{context}");
                }
                let st = setup.status_json(&run_id(&s));
                assert!(st.get("cortex").is_none(), "{context}: {st:#}");
                continue;
            }
            assert_exit(&out, 1);
            assert!(
                err.contains(&format!("axon: error: Cortex at {url} is not usable: ")),
                "{context}:\n{err}"
            );
            for says in case.says {
                assert!(err.contains(says), "{context}: no `{says}` in\n{err}");
            }
            if let Some(hint) = case.hint {
                assert!(err.contains(hint), "{context}: no hint in\n{err}");
            }
            assert!(err.contains("nothing ran"), "{context}:\n{err}");
            assert!(err.contains("--cortex-optional"), "{context}:\n{err}");
            assert!(
                stdout(&out).trim().is_empty(),
                "{context}: {}",
                stdout(&out)
            );
            assert!(
                setup.events().is_empty(),
                "{context}: an agent ran: {:?}",
                setup.events()
            );
            if setup.db().exists() {
                let runs = setup.axon(&["runs", "--json"]);
                assert_exit(&runs, 0);
                assert_eq!(stdout(&runs).trim(), "[]", "{context}: a run was recorded");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The API key stays secret.
// ---------------------------------------------------------------------------------------------

/// The files under `dir` (recursively, `.git`, `.axon`, the database and its `-wal`/`-shm`
/// files and worktrees included) whose bytes contain `secret`.
fn files_containing(dir: &Path, secret: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// The names of the files in `dir/.axon` (the state database and its companions), for
/// failure messages.
fn db_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".axon"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Two agents, `opted` (`cortex_api_key: true`) and `plain`, each running the task that needs
/// its capability; every role on, in a git repository. A successful run (key as a flag) and a
/// failing one (key from the engine's environment, an agent exiting 3 with a log, a `partial`
/// Cortex merge, failing memory searches): the key appears in no output of `axon` (run, status,
/// runs), in no stdin document, in no file under the workspace, while agents wait mid-run and
/// after each run; only `opted` gets `AXON_CORTEX_API_KEY`, the engine's own environment
/// variable included.
#[test]
fn the_api_key_reaches_only_opted_in_agents_and_no_file_or_output() {
    let cortex = Cortex::start();
    let key = cortex.fake.api_key().to_owned();
    let setup = Setup::new(true, &[("README.md", "hello\n")]);
    setup.agents(
        &[
            Agent {
                id: "opted",
                caps: "shell, opt",
                slots: 2,
                key: true,
            },
            Agent {
                id: "plain",
                caps: "shell, plain",
                slots: 2,
                key: false,
            },
        ],
        r#"echo "working on $AXON_TASK_ID in $(pwd)"
echo "$AXON_TASK_ID" > "$AXON_TASK_ID.txt"
touch "$TOOLS/mid.$T"
waitfor "go.$AXON_TASK_ID"
if [ "$AXON_TASK_ID" = broken ]; then echo "error: the build failed" >&2; exit 3; fi"#,
    );
    let with_key = task_line(
        "with_key",
        "name: Keyed step, type: custom, handler: sh, capabilities: [opt]",
    );
    let without_key = task_line(
        "without_key",
        "name: Plain step, type: custom, handler: sh, capabilities: [plain]",
    );
    setup.workflow(&format!("name: Secret\ntasks:\n{with_key}{without_key}"));
    let assert_secret = |what: &str, texts: &[String]| {
        for t in texts {
            assert!(!t.contains(&key), "{what}: the key leaked in\n{t}");
        }
        let files = files_containing(&setup.ws, &key);
        assert!(
            files.is_empty(),
            "{what}: the key is in {files:#?} (state files: {:?})",
            db_files(&setup.ws)
        );
        for name in std::fs::read_dir(&setup.tools).unwrap().flatten() {
            let name = name.file_name().to_string_lossy().into_owned();
            if name.starts_with("stdin.") {
                assert!(
                    !setup.read_tool(&name).contains(&key),
                    "{what}: the key is in {name}"
                );
            }
        }
    };

    // A run that succeeds, the key given as a flag; judged mid-run too.
    let mut engine = setup.spawn(setup.run_args(&flags(&cortex, &[])), &[]);
    let run = engine.run_id();
    wait_until("both agents to wait mid-run", || {
        setup.tool("mid.with_key.1").exists() && setup.tool("mid.without_key.1").exists()
    });
    assert_secret("mid-run", &[engine.stderr()]);
    assert!(
        setup.db().exists(),
        "no database at {}",
        setup.db().display()
    );
    setup.touch("go.with_key");
    setup.touch("go.without_key");
    let status = engine.wait();
    assert_eq!(status.code(), Some(0), "{}", engine.stderr());
    assert_eq!(
        setup.env_of("with_key", 1)["key"],
        format!("set:{key}"),
        "the opted-in agent did not get the key"
    );
    assert_eq!(
        setup.env_of("without_key", 1)["key"],
        "unset",
        "an agent that did not opt in got the key"
    );
    for t in ["with_key", "without_key"] {
        let env = setup.env_of(t, 1);
        assert_eq!(env["url"], cortex.fake.url(), "{t}");
        assert!(!env["session"].is_empty(), "{t}: no session");
        assert!(!env["workspace"].is_empty(), "{t}: no workspace");
    }
    let outputs = |run: &str| -> Vec<String> {
        let mut texts = vec![
            setup.read_tool("axon.stdout"),
            setup.read_tool("axon.stderr"),
        ];
        for args in [
            vec!["status", run],
            vec!["status", run, "--json"],
            vec!["runs", "--json"],
        ] {
            let out = setup.axon(&args);
            assert_exit(&out, 0);
            texts.push(stdout(&out));
            texts.push(stderr(&out));
        }
        texts
    };
    assert_secret("after a successful run", &outputs(&run));

    // A run that fails, the key in the engine's environment.
    cortex.fake.set_session_changes(
        "/notes/",
        SessionChanges {
            modified: 0,
            conflicts: vec!["NOTES.md".into()],
        },
    );
    cortex.fake.faults().on("/api/v1/memory").fail_next(40, 500);
    let broken = task_line(
        "broken",
        "name: Broken step, type: custom, handler: sh, capabilities: [plain]",
    );
    let notes = task_line(
        "notes",
        "name: Notes step, type: custom, handler: sh, capabilities: [plain]",
    );
    setup.workflow(&format!(
        "name: Secret failing\ntasks:\n{with_key}{without_key}{broken}{notes}"
    ));
    for t in ["with_key", "without_key", "broken", "notes"] {
        setup.touch(&format!("go.{t}"));
    }
    let mut engine = setup.spawn(
        setup.run_args(&url_flags(&cortex, &[])),
        &[("AXON_CORTEX_API_KEY", &key)],
    );
    let failing = engine.run_id();
    let status = engine.wait();
    let err = engine.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("agent exited with code 3"), "{err}");
    assert!(err.contains("merge conflict in Cortex session"), "{err}");
    assert!(err.contains("cortex memory search failed"), "{err}");
    assert_eq!(
        setup.env_of("with_key", 1)["key"],
        format!("set:{key}"),
        "the opted-in agent did not get the key from the engine's environment"
    );
    for t in ["without_key", "broken", "notes"] {
        let env = setup.env_of(t, 1);
        assert_eq!(
            env["key"], "unset",
            "{t}: the engine's AXON_CORTEX_API_KEY leaked into an agent that did not opt in"
        );
        assert!(!env["session"].is_empty(), "{t}: no session");
    }
    assert_secret("after a failing run", &outputs(&failing));
    assert!(cortex.fake.state().sessions.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. Faults while tracking.
// ---------------------------------------------------------------------------------------------

/// Every role on; the tasks routes answer with bursts of 503 and 429 (`Retry-After: 1`) at the
/// start, while the first task runs and while the last one finishes (so the end-of-run drain
/// meets them), and the very first create's answer is cut short (the task is created; the
/// courier must find it rather than create it again). The run succeeds and, when `axon` exits,
/// every Cortex task has its final status, none twice, nothing owed.
#[test]
fn tracking_rides_out_503_bursts_and_429s_and_the_drain_delivers_everything() {
    let cortex = Cortex::start();
    let tasks_route = cortex.fake.faults().on("/api/v1/tasks");
    tasks_route
        .malformed_json_next(1)
        .fail_next(2, 503)
        .throttle_next(1, Duration::from_secs(1));
    let setup = Setup::new(false, &[]);
    setup.agents(
        &[WORKER],
        r#"case "$AXON_TASK_ID" in first) waitfor go.first ;; d) waitfor go.d ;; esac"#,
    );
    setup.workflow(&diamond());
    let mut engine = setup.spawn(setup.run_args(&flags(&cortex, &[])), &[]);
    let run = engine.run_id();
    // Each burst waits until Cortex got through the one before (else they all land on the
    // same call, whose backoff then outlasts the end-of-run drain: 10 s).
    let in_progress = |task: &str| {
        let tag = format!("axon-task:{task}");
        let state = cortex.fake.state();
        state.tasks.len() == 5
            && state
                .tasks
                .iter()
                .any(|t| t.tags.contains(&tag) && t.status == TaskStatus::InProgress)
    };
    wait_until("every Cortex task, `first` in progress", || {
        in_progress("first")
    });
    assert_eq!(cortex.fake.faults().pending(), 0);
    tasks_route
        .fail_next(2, 503)
        .throttle_next(1, Duration::from_secs(1));
    setup.touch("go.first");
    wait_until("`d` in progress on Cortex", || in_progress("d"));
    assert_eq!(cortex.fake.faults().pending(), 0);
    // The last burst meets the last updates: `d` done and the workflow done, in the drain.
    tasks_route
        .fail_next(3, 503)
        .throttle_next(1, Duration::from_secs(1));
    setup.touch("go.d");
    let status = engine.wait();
    let err = engine.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_no_crash(&err);
    assert!(!err.contains("not delivered yet"), "{err}");
    assert_eq!(
        cortex.fake.faults().pending(),
        0,
        "not every fault was met: the test proves less than it says"
    );
    let state = cortex.fake.state();
    assert_eq!(state.tasks.len(), 5, "{:#?}", state.tasks);
    assert!(state.deleted_tasks.is_empty(), "{:#?}", state.deleted_tasks);
    assert_eq!(workflow_task(&state, &run).status, TaskStatus::Done);
    let tasks = cortex_tasks(&state, &run);
    assert_eq!(tasks.len(), 4);
    for (id, t) in &tasks {
        assert_eq!(t.status, TaskStatus::Done, "{id}: {t:#?}");
        assert_eq!(t.progress, 1.0, "{id}: {t:#?}");
    }
    assert!(state.sessions.is_empty(), "{:#?}", state.sessions);
    let st = setup.status_json(&run);
    assert_eq!(st["cortex"]["undelivered"], 0, "{st:#}");
    assert!(
        setup
            .status_cortex_line(&run)
            .ends_with(", every update delivered")
    );
}

/// The shipped Cortex tour (`examples/cortex/`) runs against a Cortex server as its README
/// says: every task tracked and `done`, each in a Cortex session that is gone at the end, the
/// Cortex memory in the agents' context, and only `checker` (whose entry opts in) able to ask
/// Cortex about its own session.
#[test]
fn the_cortex_example_runs_as_its_readme_says() {
    let cortex = Cortex::start();
    cortex.fake.seed_memory([Episode::new(
        "ep-1",
        "release notes drafted from the changelog of 0.9",
        "task",
    )]);
    let dir = TempDir::new().unwrap();
    let root = crate::workspace_root();
    let mut args: Vec<String> = vec![
        "run".into(),
        root.join("examples/cortex/workflow.yaml")
            .display()
            .to_string(),
        "--agents".into(),
        root.join("examples/cortex/agents.yaml")
            .display()
            .to_string(),
        "--workspace".into(),
        dir.path().join("ws").display().to_string(),
        "--json".into(),
    ];
    args.extend(flags(&cortex, &[]));
    let out = axon().args(&args).output().unwrap();
    assert_exit(&out, 0);
    let s = summary(&out);
    let outputs: BTreeMap<String, Value> = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["output"].clone()))
        .collect();
    for (id, output) in &outputs {
        assert!(output["cortex_session"].is_string(), "{id}: {output}");
        assert_eq!(
            output["context_from_cortex"][0], "release notes drafted from the changelog of 0.9",
            "{id}: {output}"
        );
    }
    assert_eq!(outputs["check"]["session_status"], "active");
    assert!(
        outputs["draft"].get("session_status").is_none(),
        "no key, no call"
    );
    let state = cortex.fake.state();
    let tasks = cortex_tasks(&state, &run_id(&s));
    assert_eq!(tasks.len(), 3, "{tasks:#?}");
    assert!(statuses(&tasks).values().all(|st| *st == TaskStatus::Done));
    assert!(state.sessions.is_empty(), "{:#?}", state.sessions);
    assert!(!stdout(&out).contains(cortex.fake.api_key()));
    assert!(!stderr(&out).contains(cortex.fake.api_key()));
}
