//! Sessions end to end (DESIGN.md, "Sessions, merge and memory without a Cortex server"): the
//! real binary running workflows in a temporary git repository, each task in its own worktree,
//! merged into the integration branch `axon/<run_id>`; scope checks, merge conflicts, retries,
//! `kill -9` and resume, the untouched user checkout, episodes as `context`, and workspaces that
//! are not git repositories.
//!
//! Every test has its repository (`git init -b main`, one initial commit) beside a `tools`
//! directory outside it holding the agents file, the agent scripts, the workflow files and
//! whatever the agents record (the path is in their environment as `TOOLS`): nothing of the
//! test's own ever shows in the repository. The state database is the default one,
//! `<repo>/.axon/axon.db`. Judgements are made from git itself (`ls-tree`, `rev-list`,
//! `worktree list`) and from what the agents recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::run::{alive, assert_gone, run_id_of, summary, task, wait_until};
use crate::{Rng, assert_exit, assert_no_crash, axon, stderr, stdout};

/// A git repository in a temporary directory, and a `tools` directory beside it (outside the
/// repository) for agents, workflows and the agents' records.
struct Repo {
    _tmp: TempDir,
    dir: PathBuf,
    tools: PathBuf,
}

impl Repo {
    /// `<tmp>/repo` and `<tmp>/tools`, both empty.
    fn new() -> Self {
        Self::at("repo", "tools")
    }

    /// `<tmp>/<repo>` and `<tmp>/<tools>` (relative paths, created with their parents).
    fn at(repo: &str, tools: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("axon-sessions-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join(repo);
        let tools = tmp.path().join(tools);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        Self {
            _tmp: tmp,
            dir,
            tools,
        }
    }

    /// `git init -b main`, a local identity, `files` written and committed as the one initial
    /// commit.
    fn init(&self, files: &[(&str, &str)]) {
        self.git(&["init", "--quiet", "-b", "main"]);
        self.git(&["config", "user.name", "Axon Test"]);
        self.git(&["config", "user.email", "axon-test@example.com"]);
        self.git(&["config", "commit.gpgsign", "false"]);
        for (path, text) in files {
            self.write(path, text);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", "initial"]);
    }

    /// Writes a file of the repository's working tree (parents created).
    fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `git ARGS` in the repository, without the quoting of unusual paths.
    fn git_output(&self, args: &[&str]) -> Output {
        Command::new("git")
            .args(["-c", "core.quotepath=false"])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// `git ARGS`, which must succeed; its standard output.
    #[track_caller]
    fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}\n{}",
            out.status,
            stderr(&out)
        );
        stdout(&out)
    }

    /// The paths of the files of the tree of `rev`.
    fn files_at(&self, rev: &str) -> BTreeSet<String> {
        self.git(&["ls-tree", "-r", "-z", "--name-only", rev])
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The text of `path` at `rev`, `None` when it is not there.
    fn show(&self, rev: &str, path: &str) -> Option<String> {
        let out = self.git_output(&["cat-file", "blob", &format!("{rev}:{path}")]);
        out.status.success().then(|| stdout(&out))
    }

    /// A tools file.
    fn tool(&self, name: &str) -> PathBuf {
        self.tools.join(name)
    }

    /// A tools file's text, empty if it does not exist.
    fn read_tool(&self, name: &str) -> String {
        std::fs::read_to_string(self.tool(name)).unwrap_or_default()
    }

    /// Writes an executable script into tools.
    fn script(&self, name: &str, text: &str) {
        let path = self.tool(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `tools/agent.sh` (records its pid in `$TOOLS/pids`, then runs `body`) and
    /// `tools/agents.yaml` with one agent `worker` of `slots` slots running it.
    fn sh_agent(&self, slots: u32, body: &str) {
        self.script(
            "agent.sh",
            &format!("#!/bin/sh\necho $$ >> \"$TOOLS/pids\"\n{body}\n"),
        );
        self.agents_file(slots, "./agent.sh");
    }

    /// `tools/agent.py` (a python3 script) and `tools/agents.yaml` running it.
    fn py_agent(&self, slots: u32, body: &str) {
        self.script(
            "agent.py",
            &format!(
                "#!/usr/bin/env python3\nimport json, os, sys\nwith open(os.path.join(os.environ['TOOLS'], 'pids'), 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n{body}\n"
            ),
        );
        self.agents_file(slots, "./agent.py");
    }

    fn agents_file(&self, slots: u32, command: &str) {
        // A JSON string is a valid YAML scalar, whatever the path holds.
        let tools = serde_json::to_string(self.tools.to_str().unwrap()).unwrap();
        std::fs::write(
            self.tool("agents.yaml"),
            format!(
                "agents:\n  - id: worker\n    capabilities: [shell]\n    max_concurrent_tasks: {slots}\n    command: [\"{command}\"]\n    env: {{ TOOLS: {tools} }}\n"
            ),
        )
        .unwrap();
    }

    /// Writes `tools/<name>` and returns its path.
    fn workflow(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.tool(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// The arguments of `axon run WORKFLOW --agents tools/agents.yaml --workspace REPO --json`.
    fn run_args(&self, workflow: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "run".into(),
            workflow.into(),
            "--agents".into(),
            self.tool("agents.yaml").into(),
            "--workspace".into(),
            self.dir.clone().into(),
            "--json".into(),
        ]
    }

    /// `axon run WORKFLOW ...`, from the tools directory (so only `--workspace` points at the
    /// repository), with the default database.
    fn run(&self, workflow: &Path) -> Output {
        axon()
            .args(self.run_args(workflow))
            .current_dir(&self.tools)
            .env_remove("AXON_DB")
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    }

    /// The default state database of the workspace.
    fn db(&self) -> PathBuf {
        self.dir.join(".axon/axon.db")
    }

    /// `axon ARGS --db <repo>/.axon/axon.db`, from the tools directory.
    fn axon(&self, args: &[&str]) -> Output {
        axon()
            .args(args)
            .arg("--db")
            .arg(self.db())
            .current_dir(&self.tools)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    }

    /// Starts `axon ARGS` as a child process, standard error into `tools/<log>`.
    fn spawn(&self, args: &[std::ffi::OsString], log: &str) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_axon"))
            .args(args)
            .current_dir(&self.tools)
            .env_remove("RUST_BACKTRACE")
            .env_remove("AXON_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.tool(log)).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child,
            stderr: self.tool(log),
        }
    }

    /// The pids the agents recorded.
    fn pids(&self) -> Vec<u32> {
        self.read_tool("pids")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The worktree directory of a run.
    fn worktrees_of(&self, run_id: &str) -> PathBuf {
        self.dir.join(".axon/worktrees").join(run_id)
    }

    /// Asserts that the run left nothing behind: no task worktree directory, no worktree but
    /// the main one, nothing for `git worktree prune` to do, no task branch.
    #[track_caller]
    fn assert_no_leftovers(&self, run_id: &str) {
        let dir = self.worktrees_of(run_id);
        let mut left = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(&dir) {
            for t in tasks {
                let t = t.unwrap().path();
                if t.is_dir() {
                    for a in std::fs::read_dir(&t).unwrap() {
                        left.push(a.unwrap().path());
                    }
                } else {
                    left.push(t);
                }
            }
        }
        assert!(left.is_empty(), "task worktrees left behind: {left:#?}");
        let list = self.git(&["worktree", "list", "--porcelain"]);
        let worktrees: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .collect();
        assert_eq!(
            worktrees.len(),
            1,
            "worktrees other than the main one:\n{list}"
        );
        assert_eq!(
            Path::new(worktrees[0]).canonicalize().unwrap(),
            self.dir.canonicalize().unwrap(),
            "{list}"
        );
        let prune = self.git_output(&["worktree", "prune", "--dry-run", "-v"]);
        assert!(prune.status.success());
        assert!(
            stdout(&prune).trim().is_empty() && stderr(&prune).trim().is_empty(),
            "stale worktree entries:\n{}{}",
            stdout(&prune),
            stderr(&prune)
        );
        let branches = self.git(&["branch", "--list", "axon-task/*"]);
        assert!(
            branches.trim().is_empty(),
            "task branches left behind:\n{branches}"
        );
    }
}

impl Drop for Repo {
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

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL, and waits for it to be gone.
    fn kill_9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap();
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

/// One task line of a workflow: `  ID: { name: ..., type: custom, ..., EXTRA }`.
fn task_yaml(id: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "  {id}: {{ type: custom, handler: sh, capabilities: [shell], estimated_duration: 1s{extra} }}\n"
    )
}

/// A workflow named `name` with the given `(id, extra)` tasks.
fn workflow_yaml(name: &str, head: &str, tasks: &[(&str, &str)]) -> String {
    let mut yaml = format!("name: {name}\n{head}tasks:\n");
    for (id, extra) in tasks {
        yaml.push_str(&task_yaml(id, extra));
    }
    yaml
}

fn run_id(s: &Value) -> String {
    s["run_id"].as_str().unwrap().to_owned()
}

fn integration(run_id: &str) -> String {
    format!("axon/{run_id}")
}

/// Six independent tasks running at once, each writing its own file: all six files land on the
/// integration branch, and the run leaves no worktree, task branch or stale entry behind.
#[test]
fn parallel_tasks_all_land_on_the_integration_branch() {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.sh_agent(
        6,
        r#"echo "start $AXON_TASK_ID" >> "$TOOLS/events"
mkdir -p out
echo "written by $AXON_TASK_ID" > "out/$AXON_TASK_ID.txt"
# Wait (up to 5 s) for all six to have started: they really run at once.
i=0
while [ "$(grep -c start "$TOOLS/events")" -lt 6 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done"#,
    );
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6"];
    let tasks: Vec<(&str, &str)> = ids.iter().map(|id| (*id, "")).collect();
    let wf = repo.workflow("wf.yaml", &workflow_yaml("Parallel", "", &tasks));
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded", "{s:#}");
    let run = run_id(&s);
    let files = repo.files_at(&integration(&run));
    for id in ids {
        let path = format!("out/{id}.txt");
        assert!(
            files.contains(&path),
            "{path} is not on the branch: {files:?}"
        );
        assert_eq!(
            repo.show(&integration(&run), &path).unwrap(),
            format!("written by {id}\n")
        );
    }
    assert_eq!(files.len(), 7, "{files:?}");
    // The six did overlap (else the test proves little).
    let events = repo.read_tool("events");
    assert_eq!(events.lines().count(), 6, "{events}");
    // `main` did not move.
    assert_eq!(
        repo.files_at("main"),
        BTreeSet::from(["README.md".to_owned()])
    );
    repo.assert_no_leftovers(&run);
    assert_eq!(
        std::fs::read_to_string(repo.dir.join(".axon/.gitignore")).unwrap(),
        "*\n"
    );
    assert!(repo.git(&["status", "--porcelain"]).is_empty());
}

/// Two independent tasks, both cut from the same tip, edit the same line of a committed file:
/// one merges, the other fails with `merge conflict in shared.txt`, its worktree kept where the
/// error says; none of the loser's changes (not even its other file) reach the branch.
#[test]
fn a_merge_conflict_fails_one_task_and_keeps_its_worktree() {
    let repo = Repo::new();
    repo.init(&[("shared.txt", "original line\n"), ("README.md", "hello\n")]);
    // A barrier: both attempts exist (their worktrees are cut) before either changes anything.
    repo.sh_agent(
        2,
        r#"touch "$TOOLS/ready.$AXON_TASK_ID"
i=0
while { [ ! -e "$TOOLS/ready.left" ] || [ ! -e "$TOOLS/ready.right" ]; } && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "changed by $AXON_TASK_ID" > shared.txt
echo "only $AXON_TASK_ID" > "$AXON_TASK_ID.txt""#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml("Conflict", "", &[("left", ""), ("right", "")]),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 1);
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    let run = run_id(&s);
    let branch = integration(&run);
    let statuses: Vec<(&str, &str)> = ["left", "right"]
        .iter()
        .map(|id| (*id, task(&s, id)["status"].as_str().unwrap()))
        .collect();
    let failed: Vec<&str> = statuses
        .iter()
        .filter(|(_, st)| *st == "failed")
        .map(|(id, _)| *id)
        .collect();
    let won: Vec<&str> = statuses
        .iter()
        .filter(|(_, st)| *st == "succeeded")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!((failed.len(), won.len()), (1, 1), "{s:#}");
    let (loser, winner) = (failed[0], won[0]);
    let t = task(&s, loser);
    assert_eq!(t["attempts"], 1, "a merge conflict is not retried: {t:#}");
    assert_eq!(t["error_kind"], "merge_conflict", "{t:#}");
    let error = t["error"].as_str().unwrap();
    assert!(
        error.starts_with("merge conflict in shared.txt ("),
        "{error}"
    );
    // `(worktree kept at PATH, branch BRANCH)`
    let kept = error
        .split_once("worktree kept at ")
        .and_then(|(_, rest)| rest.split_once(", branch "))
        .unwrap_or_else(|| panic!("no kept worktree in {error:?}"));
    let (kept_path, kept_branch) = (
        PathBuf::from(kept.0),
        kept.1.trim_end_matches(')').to_owned(),
    );
    assert!(kept_path.is_dir(), "{} does not exist", kept_path.display());
    assert_eq!(
        std::fs::read_to_string(kept_path.join("shared.txt")).unwrap(),
        format!("changed by {loser}\n")
    );
    assert_eq!(kept_branch, format!("axon-task/{run}/{loser}/1"));
    assert!(
        stderr(&out).contains("merge conflict in shared.txt"),
        "{}",
        stderr(&out)
    );
    // The winner's change is on the branch, nothing of the loser's.
    assert_eq!(
        repo.show(&branch, "shared.txt").unwrap(),
        format!("changed by {winner}\n")
    );
    let files = repo.files_at(&branch);
    assert!(files.contains(&format!("{winner}.txt")), "{files:?}");
    assert!(!files.contains(&format!("{loser}.txt")), "{files:?}");
    let not_merged = repo.git_output(&["merge-base", "--is-ancestor", &kept_branch, &branch]);
    assert_eq!(
        not_merged.status.code(),
        Some(1),
        "the conflicting branch was merged"
    );
    // The user's branch did not move.
    assert_eq!(repo.show("main", "shared.txt").unwrap(), "original line\n");
}

/// A task dispatched after its prerequisite merged works in a tree that has the
/// prerequisite's file.
#[test]
fn a_dependent_task_sees_its_prerequisites_files() {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.sh_agent(
        2,
        r#"case "$AXON_TASK_ID" in
  a) mkdir -p gen && echo "from a" > gen/a.txt ;;
  b) if [ -f gen/a.txt ]; then saw=true; text=$(cat gen/a.txt); else saw=false; text=; fi
     echo "b saw a: $saw" > b.txt
     echo "::axon output {\"saw_a\": $saw, \"text\": \"$text\"}" ;;
esac"#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml("Chain", "", &[("a", ""), ("b", "depends_on: [a]")]),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(
        task(&s, "b")["output"],
        json!({ "saw_a": true, "text": "from a" })
    );
    let run = run_id(&s);
    let files = repo.files_at(&integration(&run));
    assert!(
        files.contains("gen/a.txt") && files.contains("b.txt"),
        "{files:?}"
    );
    assert_eq!(
        repo.show(&integration(&run), "b.txt").unwrap(),
        "b saw a: true\n"
    );
    repo.assert_no_leftovers(&run);
}

/// Everything a user can see of their checkout, for before/after comparison.
fn checkout_state(repo: &Repo) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for (key, args) in [
        ("status", &["status", "--porcelain=v1", "-uall"][..]),
        ("head", &["rev-parse", "HEAD"]),
        ("symbolic-ref", &["symbolic-ref", "HEAD"]),
        ("stash list", &["stash", "list"]),
        ("stash show", &["stash", "show", "-p", "stash@{0}"]),
        ("diff", &["diff"]),
        ("diff --cached", &["diff", "--cached"]),
        ("main", &["rev-parse", "refs/heads/main"]),
    ] {
        state.insert(key.to_owned(), repo.git(args));
    }
    // Every file of the checkout, but git's own and Axon's ignored directory.
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel == ".axon" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(
                    format!("file {rel}"),
                    String::from_utf8_lossy(&bytes).into_owned(),
                );
            }
        }
    }
    walk(&repo.dir, &repo.dir, &mut state);
    state
}

/// A dirty checkout (unstaged, staged and untracked changes, a stash entry) is left exactly as
/// it was; the run starts from HEAD, does not see the uncommitted changes, and says so.
#[test]
fn the_users_checkout_is_untouched() {
    let repo = Repo::new();
    repo.init(&[
        ("README.md", "committed readme\n"),
        ("src/lib.rs", "// committed lib\n"),
        ("notes.txt", "committed notes\n"),
    ]);
    repo.write("notes.txt", "stashed notes\n");
    repo.git(&["stash", "push", "--quiet", "-m", "my stash"]);
    repo.write("src/lib.rs", "// staged lib\n");
    repo.git(&["add", "src/lib.rs"]);
    repo.write("src/lib.rs", "// staged lib, then edited\n");
    repo.write("README.md", "my local readme edit\n");
    repo.write("scratch.txt", "untracked scratch\n");
    repo.write("scratch dir/deep.txt", "untracked deep\n");
    let before = checkout_state(&repo);
    assert!(before["status"].contains("scratch.txt"), "{before:#?}");

    repo.sh_agent(
        2,
        r#"if [ -e scratch.txt ]; then scratch=true; else scratch=false; fi
readme=$(cat README.md)
lib=$(cat src/lib.rs)
echo "::axon output {\"saw_scratch\": $scratch, \"readme\": \"$readme\", \"lib\": \"$lib\"}"
echo "agent readme $AXON_TASK_ID" > README.md
echo "agent file" > "agent-$AXON_TASK_ID.txt""#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml("Dirty", "", &[("edit", ""), ("more", "depends_on: [edit]")]),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let s = summary(&out);
    let run = run_id(&s);
    let after = checkout_state(&repo);
    assert_eq!(before, after, "the user's checkout changed");
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("note: the working tree has uncommitted changes")),
        "{err}"
    );
    // The agent saw HEAD, not the user's uncommitted work.
    assert_eq!(
        task(&s, "edit")["output"],
        json!({ "saw_scratch": false, "readme": "committed readme", "lib": "// committed lib" })
    );
    let branch = integration(&run);
    assert_eq!(
        repo.show(&branch, "README.md").unwrap(),
        "agent readme more\n"
    );
    assert_eq!(
        repo.show(&branch, "src/lib.rs").unwrap(),
        "// committed lib\n"
    );
    let files = repo.files_at(&branch);
    assert!(!files.contains("scratch.txt"), "{files:?}");
    assert!(files.contains("agent-edit.txt") && files.contains("agent-more.txt"));
    repo.assert_no_leftovers(&run);
}

/// `scope: [src]` and `read_only: [src/locked]`: a task changing a file outside its scope, or
/// inside a read-only path, fails naming exactly the offending files, is not retried, and
/// none of its changes reach the integration branch; a task within its scope merges.
#[test]
fn scope_violations_fail_the_task_before_merge() {
    let repo = Repo::new();
    repo.init(&[
        ("src/lib.rs", "// lib\n"),
        ("src/locked/key.txt", "locked\n"),
        ("docs/index.md", "# docs\n"),
    ]);
    // One slot: this test is about scopes, not about concurrent worktrees.
    repo.sh_agent(
        1,
        r#"case "$AXON_TASK_ID" in
  outside) echo ok > src/ok.rs; mkdir -p docs; echo x > docs/x.md ;;
  readonly) echo free > src/free.rs; echo changed > src/locked/key.txt ;;
  inside) echo fine > src/fine.rs; mkdir -p src/sub; echo deep > src/sub/deep.rs ;;
esac"#,
    );
    let retry = "retry: { max_attempts: 3, initial_delay: 100ms, max_delay: 100ms }";
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml(
            "Scopes",
            "",
            &[
                ("outside", &format!("scope: [src], {retry}")),
                ("readonly", &format!("read_only: [src/locked], {retry}")),
                ("inside", "scope: [src], read_only: [src/locked]"),
            ],
        ),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 1);
    let s = summary(&out);
    let run = run_id(&s);
    let branch = integration(&run);
    for (id, bad) in [("outside", "docs/x.md"), ("readonly", "src/locked/key.txt")] {
        let t = task(&s, id);
        assert_eq!(t["status"], "failed", "{s:#}");
        assert_eq!(t["attempts"], 1, "a scope violation is not retried: {t:#}");
        assert_eq!(t["error_kind"], "scope_violation", "{t:#}");
        let error = t["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!(
                "changed files its scope does not allow: {bad} (worktree kept at "
            )),
            "{error}"
        );
        let kept = error
            .split_once("worktree kept at ")
            .unwrap()
            .1
            .trim_end_matches(')');
        assert!(Path::new(kept).is_dir(), "{kept} does not exist");
        assert!(Path::new(kept).join(bad).is_file());
    }
    assert_eq!(task(&s, "inside")["status"], "succeeded", "{s:#}");
    let files = repo.files_at(&branch);
    for absent in ["docs/x.md", "src/ok.rs", "src/free.rs"] {
        assert!(!files.contains(absent), "{absent} was merged: {files:?}");
    }
    assert_eq!(
        repo.show(&branch, "src/locked/key.txt").unwrap(),
        "locked\n"
    );
    assert!(files.contains("src/fine.rs") && files.contains("src/sub/deep.rs"));
}

/// A retried attempt starts from a fresh worktree: the first attempt's junk (it exits 75)
/// is neither in the second attempt's directory nor on the branch.
#[test]
fn a_retry_starts_from_a_clean_worktree() {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.sh_agent(
        1,
        r#"pwd -P > "$TOOLS/cwd.$AXON_ATTEMPT"
ls -A > "$TOOLS/ls.$AXON_ATTEMPT"
if [ "$AXON_ATTEMPT" = 1 ]; then echo junk > junk.txt; echo "busy"; exit 75; fi
echo good > good.txt"#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml(
            "Retry",
            "",
            &[(
                "flaky",
                "retry: { max_attempts: 3, initial_delay: 100ms, max_delay: 100ms }",
            )],
        ),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let s = summary(&out);
    let run = run_id(&s);
    assert_eq!(task(&s, "flaky")["attempts"], 2, "{s:#}");
    let files = repo.files_at(&integration(&run));
    assert!(files.contains("good.txt"), "{files:?}");
    assert!(!files.contains("junk.txt"), "{files:?}");
    let ls2 = repo.read_tool("ls.2");
    assert!(
        !ls2.lines().any(|l| l == "junk.txt"),
        "attempt 2 saw attempt 1's junk:\n{ls2}"
    );
    let root = repo.dir.canonicalize().unwrap();
    let wt = |attempt: u32| {
        root.join(".axon/worktrees")
            .join(&run)
            .join("flaky")
            .join(attempt.to_string())
    };
    assert_eq!(repo.read_tool("cwd.1").trim(), wt(1).to_str().unwrap());
    assert_eq!(repo.read_tool("cwd.2").trim(), wt(2).to_str().unwrap());
    repo.assert_no_leftovers(&run);
}

/// The twelve tasks of the kill/resume test and their prerequisites. `t12` changes nothing.
const KILL_TASKS: [(&str, &[&str]); 12] = [
    ("t01", &[]),
    ("t02", &[]),
    ("t03", &[]),
    ("t04", &["t01"]),
    ("t05", &["t01", "t02"]),
    ("t06", &["t03"]),
    ("t07", &["t04"]),
    ("t08", &["t05", "t06"]),
    ("t09", &["t07", "t08"]),
    ("t10", &["t02"]),
    ("t11", &["t09", "t10"]),
    ("t12", &["t11"]),
];

/// A repository with the kill/resume workflow and its agent: each task writes
/// `files/<id>.txt` from its id and its prerequisites' files (so it fails if they are
/// missing), `t03` also edits the committed README, `t12` changes nothing.
fn kill_repo() -> (Repo, PathBuf) {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n"), ("files/.keep", "")]);
    let mut cases = String::new();
    for (id, deps) in KILL_TASKS {
        let body = match id {
            "t12" => "echo nothing to change".to_owned(),
            _ => {
                let cats: String = deps.iter().map(|d| format!(" files/{d}.txt")).collect();
                let cat = if deps.is_empty() {
                    String::new()
                } else {
                    format!("cat{cats}; ")
                };
                let readme = if id == "t03" {
                    "echo \"t03 was here\" >> README.md; "
                } else {
                    ""
                };
                format!(
                    "{{ echo \"{id}\"; {cat}}} > files/{id}.tmp; mv files/{id}.tmp files/{id}.txt; {readme}"
                )
            }
        };
        cases.push_str(&format!("  {id}) {body} ;;\n"));
    }
    repo.sh_agent(
        3,
        &format!(
            "set -e\nsleep 0.2\ncase \"$AXON_TASK_ID\" in\n{cases}esac\necho \"done $AXON_TASK_ID $AXON_ATTEMPT\" >> \"$TOOLS/done\""
        ),
    );
    let tasks: Vec<(String, String)> = KILL_TASKS
        .iter()
        .map(|(id, deps)| {
            let extra = if deps.is_empty() {
                String::new()
            } else {
                format!("depends_on: [{}]", deps.join(", "))
            };
            ((*id).to_owned(), extra)
        })
        .collect();
    let tasks: Vec<(&str, &str)> = tasks
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let wf = repo.workflow("wf.yaml", &workflow_yaml("Twelve", "", &tasks));
    (repo, wf)
}

/// The distinct tasks whose agent ran to its end.
fn tasks_done(repo: &Repo) -> BTreeSet<String> {
    repo.read_tool("done")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// `axon status RUN --json`.
fn status_of(repo: &Repo, run_id: &str) -> Value {
    let out = repo.axon(&["status", run_id, "--json"]);
    assert_exit(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The merge commits of `branch` and their second parents (the merged task commits).
fn merges(repo: &Repo, branch: &str) -> Vec<String> {
    repo.git(&["rev-list", "--merges", "--parents", branch])
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap().to_owned())
        .collect()
}

/// The engine is killed with SIGKILL (only the engine: its agents finish on their own) at
/// three random points, resumed each time, and the final integration tree is the one an
/// uninterrupted run of the same workflow produces from the same files: no task merged
/// twice, none lost, and nothing stale left in git.
#[test]
fn kill_9_during_merges_then_resume_gives_the_same_tree() {
    let mut rng = Rng::from_clock();

    // The reference: an uninterrupted run.
    let (a, wf_a) = kill_repo();
    let out = a.run(&wf_a);
    assert_exit(&out, 0);
    let s = summary(&out);
    let run_a = run_id(&s);
    let tree_a = a.git(&["rev-parse", &format!("{}^{{tree}}", integration(&run_a))]);
    let changing = KILL_TASKS.len() - 1;
    assert_eq!(merges(&a, &integration(&run_a)).len(), changing);
    assert_eq!(
        a.show(&integration(&run_a), "files/t11.txt").unwrap(),
        "t11\nt09\nt07\nt04\nt01\nt08\nt05\nt01\nt02\nt06\nt03\nt10\nt02\n"
    );
    a.assert_no_leftovers(&run_a);

    // The same, killed and resumed.
    let (b, wf_b) = kill_repo();
    assert_eq!(
        b.git(&["rev-parse", "HEAD^{tree}"]),
        a.git(&["rev-parse", "HEAD^{tree}"]),
        "the two repositories do not start from the same files"
    );
    let mut engine = b.spawn(&b.run_args(&wf_b), "engine.0.stderr");
    let mut run_b = None;
    wait_until("the run to start", || {
        run_b = run_id_of(&engine.stderr());
        run_b.is_some() || engine.exited()
    });
    let run_b = run_b.unwrap_or_else(|| panic!("no run id:\n{}", engine.stderr()));
    let mut threshold = 0usize;
    let mut kills = Vec::new();
    for round in 1..=3 {
        threshold += 1 + usize::try_from(rng.below(3)).unwrap();
        let extra = Duration::from_millis(rng.below(300));
        let context = format!("kill {round} after {threshold} tasks done + {extra:?}");
        wait_until(&context, || {
            tasks_done(&b).len() >= threshold || engine.exited()
        });
        std::thread::sleep(extra);
        if engine.exited() {
            eprintln!("{context}: the engine had already finished");
            break;
        }
        engine.kill_9();
        kills.push(context.clone());
        assert_no_crash(&engine.stderr());
        // Its agents were not killed: let them run to their end.
        assert_gone(&b.pids());
        let st = status_of(&b, &run_b);
        assert_eq!(st["status"], "interrupted", "{context}: {st:#}");
        let args: Vec<std::ffi::OsString> = vec![
            "resume".into(),
            run_b.clone().into(),
            "--db".into(),
            b.db().into(),
        ];
        engine = b.spawn(&args, &format!("engine.{round}.stderr"));
    }
    eprintln!("kills: {kills:#?}");
    assert!(!kills.is_empty(), "the run was never killed");
    wait_until("the last engine to finish", || engine.exited());
    let status = engine.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", engine.stderr());
    assert_no_crash(&engine.stderr());

    let st = status_of(&b, &run_b);
    assert_eq!(st["status"], "succeeded", "{st:#}");
    for (id, _) in KILL_TASKS {
        assert_eq!(task(&st, id)["status"], "succeeded", "{st:#}");
    }
    let branch_b = integration(&run_b);
    let tree_b = b.git(&["rev-parse", &format!("{branch_b}^{{tree}}")]);
    if tree_a != tree_b {
        let diff = b.git_output(&["diff", "--stat", &integration(&run_b), "main"]);
        panic!(
            "kills {kills:?}: the resumed run's tree differs from the uninterrupted one\nA files: {:?}\nB files: {:?}\n{}",
            a.files_at(&integration(&run_a)),
            b.files_at(&branch_b),
            stdout(&diff)
        );
    }
    let merged = merges(&b, &branch_b);
    let unique: BTreeSet<&String> = merged.iter().collect();
    assert_eq!(
        (merged.len(), unique.len()),
        (changing, changing),
        "kills {kills:?}: merge commits on {branch_b}:\n{}",
        b.git(&["log", "--merges", "--format=%H %P %s", &branch_b])
    );
    b.assert_no_leftovers(&run_b);
}

/// Runs `a -> b` (each writes its file; `b` also records whether it saw `a.txt`) with a `git`
/// wrapper first on the engine's `PATH` that runs the real git and then, once, kills the
/// engine (its parent) with SIGKILL right after the git command of task `a`'s merge matching
/// the `case` pattern `step`. Then `axon resume` must finish the run as if nothing happened:
/// both tasks succeeded, `a` merged exactly once, the tree as an uninterrupted run leaves it,
/// nothing left behind.
fn kill_after_git_step(step: &str) {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.sh_agent(
        1,
        r#"case "$AXON_TASK_ID" in
  a) echo "from a" > a.txt ;;
  b) if [ -f a.txt ]; then echo "b saw a" > b.txt; else echo "b did not see a" > b.txt; fi ;;
esac"#,
    );
    let real_git = stdout(
        &Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap(),
    )
    .trim()
    .to_owned();
    assert!(!real_git.is_empty(), "no git on PATH");
    std::fs::create_dir_all(repo.tool("bin")).unwrap();
    repo.script(
        "bin/git",
        &format!(
            r#"#!/bin/sh
'{real_git}' "$@"
rc=$?
case "$*" in
  {step})
    if [ ! -e "$KILL_MARK" ]; then
      echo "$*" > "$KILL_MARK"
      kill -9 $PPID
    fi ;;
esac
exit $rc
"#
        ),
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml("Two", "", &[("a", ""), ("b", "depends_on: [a]")]),
    );
    let path = format!(
        "{}:{}",
        repo.tool("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = axon()
        .args(repo.run_args(&wf))
        .current_dir(&repo.tools)
        .env_remove("AXON_DB")
        .env("PATH", &path)
        .env("KILL_MARK", repo.tool("killed"))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let killed = repo.read_tool("killed");
    assert!(
        !killed.is_empty(),
        "no git command matched `{step}`: the engine was not killed\n{}",
        stderr(&out)
    );
    assert_eq!(
        out.status.code(),
        None,
        "the engine was not killed by SIGKILL: {}\n{}",
        out.status,
        stderr(&out)
    );
    let run = run_id_of(&stderr(&out)).unwrap();
    let context = format!("killed after `git {}`", killed.trim());
    let st = status_of(&repo, &run);
    assert_eq!(st["status"], "interrupted", "{context}: {st:#}");
    let branch = integration(&run);
    // Shown if the test fails.
    eprintln!(
        "{context}; files on {branch} before resume: {:?}; task branches: {:?}",
        repo.files_at(&branch),
        repo.git(&["branch", "--list", "axon-task/*"])
    );

    let out = repo.axon(&["resume", &run, "--json"]);
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded", "{context}: {s:#}");
    for id in ["a", "b"] {
        assert_eq!(task(&s, id)["status"], "succeeded", "{context}: {s:#}");
    }
    assert_eq!(
        repo.show(&branch, "a.txt").as_deref(),
        Some("from a\n"),
        "{context}"
    );
    assert_eq!(
        repo.show(&branch, "b.txt").as_deref(),
        Some("b saw a\n"),
        "{context}"
    );
    let merged = merges(&repo, &branch);
    assert_eq!(
        merged.len(),
        2,
        "{context}: merge commits:\n{}",
        repo.git(&["log", "--merges", "--format=%H %P %s", &branch])
    );
    assert_ne!(
        merged[0], merged[1],
        "{context}: a task branch merged twice"
    );
    repo.assert_no_leftovers(&run);
}

/// Killed after the merge's tree was computed, before its commit.
#[test]
fn kill_9_after_merge_tree_then_resume() {
    // The first merge is `a`'s: `b` depends on it.
    kill_after_git_step(r#"*" merge-tree "*"#);
}

/// Killed after the merge commit was made, before the integration branch moved to it.
#[test]
fn kill_9_after_commit_tree_then_resume() {
    kill_after_git_step(r#"*" commit-tree "*"merge task a "*"#);
}

/// Killed right after the integration branch moved: merged, not yet recorded.
#[test]
fn kill_9_after_update_ref_then_resume() {
    kill_after_git_step(r#"*" update-ref "*"/a/1 "*"#);
}

/// Killed after the merged task's worktree was removed, its branch still there.
#[test]
fn kill_9_after_worktree_remove_then_resume() {
    kill_after_git_step(r#"*" worktree remove "*"/a/1"*"#);
}

/// Killed after the merged task's branch was deleted, before its success was recorded.
#[test]
fn kill_9_after_task_branch_delete_then_resume() {
    kill_after_git_step(r#"*" branch -D "*"/a/1"*"#);
}

/// Episodes of a first run reach the agents of a second run (same workspace, same database) as
/// `context`, best match first; `context_limit` caps them (0: none); `axon episodes search`
/// finds them.
#[test]
fn episodes_of_one_run_are_context_for_the_next() {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.py_agent(
        1,
        r#"doc = json.load(sys.stdin)
task = os.environ['AXON_TASK_ID']
with open(os.path.join(os.environ['TOOLS'], task + '.context.json'), 'w') as f:
    json.dump(doc['context'], f)
print('::axon output ' + json.dumps({'task': task, 'seen': len(doc['context'])}))"#,
    );
    let first = repo.workflow(
        "first.yaml",
        &workflow_yaml(
            "Memory one",
            "",
            &[
                ("optimize", "name: \"Optimize database indexes\""),
                ("notes", "name: \"Write release notes\""),
                ("review_notes", "name: \"Review the release notes\""),
            ],
        ),
    );
    let out = repo.run(&first);
    assert_exit(&out, 0);
    let run1 = run_id(&summary(&out));

    let second = repo.workflow(
        "second.yaml",
        &workflow_yaml(
            "Memory two",
            "",
            &[
                ("review", "name: \"Review database indexes\""),
                (
                    "top",
                    "name: \"Review database indexes (top)\", context_limit: 1, depends_on: [review]",
                ),
                (
                    "blind",
                    "name: \"Review database indexes (blind)\", context_limit: 0, depends_on: [review]",
                ),
            ],
        ),
    );
    let out = repo.run(&second);
    assert_exit(&out, 0);
    let run2 = run_id(&summary(&out));
    let context = |id: &str| -> Vec<Value> {
        let text = repo.read_tool(&format!("{id}.context.json"));
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("{id}: bad context {text:?}: {e}"))
            .as_array()
            .unwrap()
            .clone()
    };
    let names = |c: &[Value]| -> Vec<String> {
        c.iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let review = context("review");
    let review_names = names(&review);
    assert_eq!(
        review_names.first().map(String::as_str),
        Some("Optimize database indexes"),
        "{review:#?}"
    );
    assert!(
        !review_names.iter().any(|n| n == "Write release notes"),
        "an unrelated episode is in the context: {review_names:?}"
    );
    assert!(review.len() <= 5, "{review_names:?}");
    let top = &review[0];
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
    assert_eq!(top["run_id"], run1.as_str());
    assert_eq!(top["task_id"], "optimize");
    assert_eq!(top["status"], "succeeded");
    assert_eq!(top["agent"], "worker");
    assert_eq!(top["output"], json!({ "task": "optimize", "seen": 0 }));
    let scores: Vec<f64> = review
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // `context_limit: 1`: only the best, which is now the second run's own `review`.
    let top = context("top");
    assert_eq!(top.len(), 1, "{:?}", names(&top));
    assert_eq!(top[0]["name"], "Review database indexes");
    assert_eq!(top[0]["run_id"], run2.as_str());
    // `context_limit: 0`: nothing, though much would match.
    assert_eq!(context("blind"), Vec::<Value>::new());

    // The default database of the workspace, from the workspace.
    let out = axon()
        .args(["episodes", "search", "database", "--json"])
        .env_remove("AXON_DB")
        .current_dir(&repo.dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let hits: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let hits = hits.as_array().unwrap();
    assert!(
        hits.iter().any(|h| h["name"] == "Optimize database indexes"
            && h["run_id"] == run1.as_str()
            && h["task_id"] == "optimize"),
        "{hits:#?}"
    );
    assert!(
        !hits.iter().any(|h| h["name"] == "Write release notes"),
        "{hits:#?}"
    );
}

/// Not a git repository: tasks run in the directory itself, and the run says so once.
#[test]
fn a_workspace_that_is_no_git_repository_runs_without_isolation() {
    let tmp = tempfile::Builder::new()
        .prefix("axon-sessions-plain-")
        .tempdir()
        .unwrap();
    let repo = Repo {
        dir: tmp.path().join("plain"),
        tools: tmp.path().join("tools"),
        _tmp: tmp,
    };
    std::fs::create_dir_all(&repo.dir).unwrap();
    std::fs::create_dir_all(&repo.tools).unwrap();
    assert!(
        !repo
            .git_output(&["rev-parse", "--git-dir"])
            .status
            .success(),
        "the temporary directory is inside a git repository"
    );
    repo.sh_agent(
        2,
        r#"pwd -P > "$TOOLS/cwd.$AXON_TASK_ID"
case "$AXON_TASK_ID" in
  a) echo a > a.txt ;;
  b) echo b > b.txt ;;
  c) cat a.txt b.txt > c.txt ;;
esac"#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml(
            "Plain",
            "",
            &[("a", ""), ("b", ""), ("c", "depends_on: [a, b]")],
        ),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("without isolation"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("not a git repository"), "{err}");
    let root = repo.dir.canonicalize().unwrap();
    for id in ["a", "b", "c"] {
        assert_eq!(
            repo.read_tool(&format!("cwd.{id}")).trim(),
            root.to_str().unwrap()
        );
    }
    assert_eq!(
        std::fs::read_to_string(repo.dir.join("c.txt")).unwrap(),
        "a\nb\n"
    );
    assert!(!repo.dir.join(".axon/worktrees").exists());
    assert!(!repo.dir.join(".git").exists());
}

/// A workspace inside a git repository that ignores it (as `target/demo` of the README's main
/// command is inside a checkout of Axon): nothing there is tracked, so the tasks run in it
/// directly, the run says so once, and the repository gets no branch and no worktree.
#[test]
fn an_ignored_workspace_inside_a_repository_runs_in_place() {
    let repo = Repo::new();
    repo.init(&[(".gitignore", "target/\n"), ("README", "hi\n")]);
    let ws = repo.dir.join("target/demo");
    std::fs::create_dir_all(&ws).unwrap();
    repo.sh_agent(
        1,
        r#"pwd -P > "$TOOLS/cwd.$AXON_TASK_ID"
echo "$AXON_TASK_ID" > "$AXON_TASK_ID.txt""#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml("Ignored", "", &[("a", ""), ("b", "depends_on: [a]")]),
    );
    let mut args = repo.run_args(&wf);
    let at = args.iter().position(|a| a == "--workspace").unwrap();
    args[at + 1] = ws.clone().into();
    let out = axon()
        .args(args)
        .current_dir(&repo.tools)
        .env_remove("AXON_DB")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let err = stderr(&out);
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("without isolation"))
        .collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("ignored by it"), "{err}");
    let ws = ws.canonicalize().unwrap();
    for id in ["a", "b"] {
        assert_eq!(
            repo.read_tool(&format!("cwd.{id}")).trim(),
            ws.to_str().unwrap()
        );
        assert!(ws.join(format!("{id}.txt")).exists());
    }
    let branches = repo.git(&["branch", "--list", "axon*"]);
    assert!(branches.trim().is_empty(), "{branches}");
    assert!(!ws.join(".axon/worktrees").exists());
    assert_eq!(repo.git(&["worktree", "list"]).lines().count(), 1);
}

/// A workspace whose path has a space and non-ASCII letters, an agents directory likewise, and
/// a file written under such a path: it lands on the integration branch, and the worktrees go.
#[test]
fn paths_with_spaces_and_unicode() {
    let repo = Repo::at("ws dir/ünï", "tööls dir");
    repo.init(&[("README.md", "hello\n")]);
    repo.sh_agent(
        2,
        r#"case "$AXON_TASK_ID" in
  write) mkdir -p "dir with space" && printf 'héllo wörld\n' > "dir with space/ünïcödé.txt" ;;
  read) cat "dir with space/ünïcödé.txt" > "read back.txt" ;;
esac"#,
    );
    let wf = repo.workflow(
        "wörk flow.yaml",
        &workflow_yaml(
            "Ünïcödé",
            "",
            &[("write", ""), ("read", "depends_on: [write]")],
        ),
    );
    let out = repo.run(&wf);
    assert_exit(&out, 0);
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded", "{s:#}");
    let run = run_id(&s);
    let branch = integration(&run);
    let files = repo.files_at(&branch);
    assert!(files.contains("dir with space/ünïcödé.txt"), "{files:?}");
    assert_eq!(
        repo.show(&branch, "dir with space/ünïcödé.txt").unwrap(),
        "héllo wörld\n"
    );
    assert_eq!(
        repo.show(&branch, "read back.txt").unwrap(),
        "héllo wörld\n"
    );
    repo.assert_no_leftovers(&run);
}

/// `--merge-into BRANCH`: a branch that is not checked out is fast-forwarded to the run's
/// branch; the checked-out branch is merged into when its working tree is clean, and refused
/// (exit 1, a message naming it, the branch unchanged) when it has local changes.
#[test]
fn merge_into_brings_a_branch_up_to_the_run_or_refuses_a_dirty_checkout() {
    let repo = Repo::new();
    repo.init(&[("README.md", "hello\n")]);
    repo.git(&["branch", "feature"]);
    repo.sh_agent(1, r#"echo "$AXON_TASK_ID" > "out-$AXON_TASK_ID.txt""#);
    let wf = repo.workflow("wf.yaml", &workflow_yaml("Merge", "", &[("a", "")]));
    let with_merge = |branch: &str| {
        let mut args = repo.run_args(&wf);
        args.push("--merge-into".into());
        args.push(branch.into());
        axon()
            .args(args)
            .current_dir(&repo.tools)
            .env_remove("AXON_DB")
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };

    // Not checked out: fast-forwarded, the checkout untouched.
    let out = with_merge("feature");
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("fast-forwarded `feature`"),
        "{}",
        stderr(&out)
    );
    let run = run_id(&summary(&out));
    assert_eq!(
        repo.git(&["rev-parse", "feature"]),
        repo.git(&["rev-parse", &integration(&run)])
    );
    assert_eq!(
        repo.git(&["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert!(!repo.dir.join("out-a.txt").exists());

    // Checked out with a local change to a tracked file: refused, nothing changed.
    let main_before = repo.git(&["rev-parse", "main"]);
    repo.write("README.md", "edited\n");
    let out = with_merge("main");
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("axon: error:") && err.contains("`main`"),
        "{err}"
    );
    assert!(err.contains("local changes"), "{err}");
    assert_eq!(summary(&out)["status"], "succeeded");
    assert_eq!(repo.git(&["rev-parse", "main"]), main_before);
    assert_eq!(
        std::fs::read_to_string(repo.dir.join("README.md")).unwrap(),
        "edited\n"
    );

    // Checked out and clean: merged, and the checkout shows the run's work.
    repo.git(&["checkout", "--quiet", "--", "README.md"]);
    let out = with_merge("main");
    assert_exit(&out, 0);
    let run = run_id(&summary(&out));
    assert_eq!(
        repo.git(&["rev-parse", "main"]),
        repo.git(&["rev-parse", &integration(&run)])
    );
    assert_eq!(
        std::fs::read_to_string(repo.dir.join("out-a.txt")).unwrap(),
        "a\n"
    );
}

/// A workspace below the repository's root: each task works in the same subdirectory of its
/// worktree, its scope is relative to the workspace, and its files land in that subdirectory.
#[test]
fn a_workspace_below_the_repository_root_keeps_its_place() {
    let repo = Repo::new();
    repo.init(&[("README.md", "root\n"), ("sub/keep.txt", "keep\n")]);
    repo.sh_agent(
        1,
        r#"pwd -P > "$TOOLS/cwd.$AXON_TASK_ID"
case "$AXON_TASK_ID" in
  ok) echo ok > ok.txt ;;
  out) echo no > ../outside.txt ;;
esac"#,
    );
    let wf = repo.workflow(
        "wf.yaml",
        &workflow_yaml(
            "Sub",
            "",
            &[("ok", "scope: [ok.txt]"), ("out", "scope: [ok.txt]")],
        ),
    );
    let mut args = repo.run_args(&wf);
    let ws = args.iter().position(|a| a == "--workspace").unwrap() + 1;
    args[ws] = repo.dir.join("sub").into();
    let out = axon()
        .args(args)
        .current_dir(&repo.tools)
        .env_remove("AXON_DB")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let s = summary(&out);
    assert_eq!(task(&s, "ok")["status"], "succeeded", "{s:#}");
    let cwd = repo.read_tool("cwd.ok");
    assert!(cwd.trim_end().ends_with("/ok/1/sub"), "{cwd}");
    let out_task = task(&s, "out");
    assert_eq!(out_task["error_kind"], "scope_violation", "{s:#}");
    assert!(
        out_task["error"].as_str().unwrap().contains("outside.txt"),
        "{out_task:#}"
    );
    let files = repo.files_at(&integration(&run_id(&s)));
    assert!(files.contains("sub/ok.txt"), "{files:?}");
    assert!(!files.contains("outside.txt"), "{files:?}");
}
