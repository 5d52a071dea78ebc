//! The git layer of task sessions: the run's integration branch, one worktree per task attempt,
//! merging attempts back without touching any checkout, and the explicit `--merge-into`.
//!
//! # Why the git CLI
//!
//! Every operation shells out to `git` through [`tokio::process::Command`]. `gix` has no
//! `worktree add` (GitoxideLabs/gitoxide#2596), and `git2` (libgit2) adds a C build while its
//! merge does not behave like git's. The CLI *is* the reference behaviour users know, and git
//! 2.47 is on every machine Axon targets (`merge-tree --write-tree` needs git ≥ 2.38).
//!
//! # What every call does
//!
//! - Runs as `git -C DIR …` (never `current_dir`, so a spawn error can only mean git is missing),
//!   with `LC_ALL=C` (messages parse), `GIT_TERMINAL_PROMPT=0` (never waits for a password),
//!   `GIT_OPTIONAL_LOCKS=0` (reading status never rewrites an index), the author and committer
//!   `axon <axon@localhost>`, `-c commit.gpgsign=false` and `-c core.quotepath=false`. Variables
//!   that would point git at another repository (`GIT_DIR`, `GIT_WORK_TREE`, …) are removed, in
//!   case Axon itself runs inside a git hook.
//! - Paths are read from `-z` or porcelain output, so spaces, newlines and unicode survive.
//! - Calls on Axon's own worktrees and refs also pass `-c core.hooksPath=/dev/null` (and
//!   `--no-verify` on commits), `-c core.fsmonitor=false`, `-c gc.auto=0` and
//!   `-c maintenance.auto=false`: the user's hooks, daemons and background gc have no business
//!   in a scratch worktree. The only call that works in a user's checkout, the merge of
//!   [`RunSessions::merge_into`], keeps the user's hooks.
//! - When `git-lfs` is not installed, the `lfs` filter is switched off (`filter.lfs.*` emptied,
//!   not required), so a repository whose config asks for it can still be checked out: LFS
//!   files stay pointer files, which is what a checkout without git-lfs holds anyway.
//!
//! # Layout
//!
//! - Integration branch `axon/<run_id>`, cut from the user's HEAD when the run starts.
//! - Task branch `axon-task/<run_id>/<task_id>/<attempt>` (a separate prefix: git cannot hold
//!   both `axon/<run_id>` and refs below it), cut from the integration tip when the attempt
//!   starts, in the worktree `<root>/.axon/worktrees/<run_id>/<task_id>/<attempt>`.
//! - `<root>/.axon/.gitignore` holds `*`, so none of this shows in the user's `git status`.
//!
//! The user's checkout, index, stash, HEAD and branches are only ever read, except by
//! [`RunSessions::merge_into`], the explicit opt-in.
//!
//! # Cancel safety
//!
//! Dropping a future of this module does not kill the git process it waits for: git finishes
//! in the background (so it never leaves a lock file behind), and the operation may or may
//! not have happened. Every operation can be repeated: [`RunSessions::create`] clears what a
//! previous attempt left, [`RunSessions::merge`] is idempotent and [`RunSessions::repair`]
//! cleans up after a crash.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::process::Command;

/// Name of the author and committer of every commit Axon makes.
const AXON_NAME: &str = "axon";
/// Email of the author and committer of every commit Axon makes.
const AXON_EMAIL: &str = "axon@localhost";
/// Prefix of integration branches: `axon/<run_id>`.
const INTEGRATION_PREFIX: &str = "axon/";
/// Prefix of task branches: `axon-task/<run_id>/<task_id>/<attempt>`.
const TASK_PREFIX: &str = "axon-task/";
/// Environment variables that would make git use another repository than `-C DIR`'s.
const REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
];

/// What went wrong talking to git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// No `git` executable on `PATH`.
    #[error("git is not installed (no `git` on PATH)")]
    NotInstalled,
    /// A git command exited unsuccessfully.
    #[error("git {args} failed: {}", first_line(stderr))]
    Command {
        /// The arguments, without the `-C DIR` and `-c` options Axon adds.
        args: String,
        /// The exit code; `None` when git was killed by a signal.
        code: Option<i32>,
        /// What git printed on stderr.
        stderr: String,
    },
    /// Git printed something this module cannot read.
    #[error("git {args} printed unexpected output: {output:?}")]
    UnexpectedOutput {
        /// The arguments, without the options Axon adds.
        args: String,
        /// The first part of what git printed.
        output: String,
    },
    /// Reading or writing a file or directory failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `remove`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// HEAD is unborn: there is no commit to start a run from.
    #[error("the repository has no commits yet: commit something before running")]
    NoCommits,
    /// A run or task id that cannot be part of a branch name or a path.
    #[error("invalid id `{id}` for a git session: {reason}")]
    InvalidId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A branch name git does not accept, or one Axon owns.
    #[error("invalid branch name `{0}`")]
    InvalidBranch(String),
    /// Merging the integration branch into a user branch would conflict; nothing was changed.
    #[error("merging `{from}` into `{branch}` would conflict in: {}", files.join(", "))]
    MergeConflict {
        /// The user's branch.
        branch: String,
        /// The integration branch.
        from: String,
        /// The conflicting paths.
        files: Vec<String>,
    },
    /// The branch to merge into is checked out with uncommitted changes to tracked files.
    #[error(
        "branch `{branch}` is checked out at {} with local changes ({}): commit or stash them first",
        worktree.display(),
        files.join(", ")
    )]
    LocalChanges {
        /// The user's branch.
        branch: String,
        /// Where it is checked out.
        worktree: PathBuf,
        /// The changed tracked paths.
        files: Vec<String>,
    },
}

impl GitError {
    /// Whether retrying the same operation may succeed: another git process held a lock
    /// (`index.lock`, a ref lock, `packed-refs.lock`).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Command { stderr, .. } => {
                stderr.contains("index.lock")
                    || stderr.contains("cannot lock ref")
                    // Another process adding or removing a worktree at the same moment.
                    || (stderr.contains("failed to read") && stderr.contains("worktrees"))
                    || (stderr.contains("Unable to create") && stderr.contains(".lock"))
            }
            _ => false,
        }
    }
}

/// The first non-empty line of `s`, without git's `fatal: `/`error: ` prefix.
fn first_line(s: &str) -> &str {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.strip_prefix("fatal: ")
        .or_else(|| line.strip_prefix("error: "))
        .unwrap_or(line)
}

/// Whose files a git call works on: decides which of the user's settings it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Axon's worktrees, refs and objects: hooks, fsmonitor and auto-gc off.
    Axon,
    /// The user's checkout (only `merge_into`'s merge): the user's hooks run.
    User,
}

/// A git repository with a work tree, found by [`GitRepo::discover`].
#[derive(Debug, Clone)]
pub struct GitRepo {
    /// The top level of the work tree `discover` was called in (absolute, symlinks resolved).
    root: PathBuf,
    /// The directory shared by all worktrees (`.git` of the main checkout).
    common_dir: PathBuf,
    /// Where `discover`'s directory sits below `root` ('/' separated, empty at the root).
    prefix: String,
    /// `git lfs` could not run: the lfs filter is switched off (see the module docs).
    lfs_missing: bool,
}

impl GitRepo {
    /// Finds the git work tree containing `dir`. `Ok(None)` when `dir` is not inside one (no
    /// repository, or inside a `.git` directory or a bare repository).
    ///
    /// # Errors
    ///
    /// [`GitError::NotInstalled`] without git; [`GitError::Command`] when git refuses the
    /// repository (for example "dubious ownership") or `dir` does not exist.
    pub async fn discover(dir: &Path) -> Result<Option<GitRepo>, GitError> {
        let args = [
            "rev-parse",
            "--path-format=absolute",
            "--is-inside-work-tree",
            "--show-toplevel",
            "--git-common-dir",
            "--show-prefix",
        ];
        let out = exec(dir, args, Owner::Axon, false).await?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("not a git repository")
                || stderr.contains("must be run in a work tree")
            {
                return Ok(None);
            }
            return Err(command_error(args, &out));
        }
        let mut lines = out.stdout.split(|&b| b == b'\n');
        let inside = lines.next().unwrap_or_default();
        if inside != b"true" {
            return Ok(None);
        }
        let (Some(root), Some(common_dir)) = (lines.next(), lines.next()) else {
            return Err(unexpected(args, &out.stdout));
        };
        let prefix = String::from_utf8_lossy(lines.next().unwrap_or_default());
        let lfs = exec(dir, ["lfs", "version"], Owner::Axon, false).await?;
        Ok(Some(GitRepo {
            root: path_from_bytes(root),
            common_dir: path_from_bytes(common_dir),
            prefix: prefix.trim_end_matches('/').to_owned(),
            lfs_missing: !lfs.status.success(),
        }))
    }

    /// Whether git ignores directory `dir` of this work tree (a build directory such as
    /// `target/`): a workspace there holds nothing git tracks, so its tasks cannot work in
    /// worktrees of the repository.
    ///
    /// # Errors
    /// When git cannot tell.
    pub async fn ignores(&self, dir: &Path) -> Result<bool, GitError> {
        let args = ["check-ignore", "-q", "."];
        let out = exec(dir, args, Owner::Axon, self.lfs_missing).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(command_error(args, &out)),
        }
    }

    /// The top level of the work tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The git directory shared by all worktrees of the repository.
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// Where the directory given to [`discover`](Self::discover) sits below [`root`](Self::root),
    /// '/' separated, empty when it is the root: a task of a workspace below the root runs in
    /// the same subdirectory of its worktree.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs git in `dir` and returns its output, whatever the exit code.
    async fn output<I, S>(&self, dir: &Path, args: I, owner: Owner) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        exec(dir, args, owner, self.lfs_missing).await
    }

    /// Runs git in `dir` and returns its stdout; a non-zero exit is an error.
    async fn run<I, S>(&self, dir: &Path, args: I, owner: Owner) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.output(dir, args.clone(), owner).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(command_error(args, &out))
        }
    }

    /// Runs git in the root on Axon's behalf; a non-zero exit is an error.
    async fn git<I, S>(&self, args: I) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        self.run(&self.root, args, Owner::Axon).await
    }

    /// Runs git in the root on Axon's behalf and reads one object id from its stdout.
    async fn git_oid<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.git(args.clone()).await?;
        parse_oid(&out).ok_or_else(|| unexpected(args, &out))
    }

    /// The commit `rev` names, or `None` when it names nothing.
    async fn resolve(&self, rev: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let args = [
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ];
        let out = self.output(&self.root, args, Owner::Axon).await?;
        match out.status.code() {
            Some(0) => parse_oid(&out.stdout)
                .map(Some)
                .ok_or_else(|| unexpected(args, &out.stdout)),
            Some(1) => Ok(None),
            _ => Err(command_error(args, &out)),
        }
    }

    /// The commit and tree each of the branches `refs` (full names) points at, `None` for
    /// those that do not exist, in one call.
    async fn read_refs<const N: usize>(
        &self,
        refs: [&str; N],
    ) -> Result<[Option<RefTarget>; N], GitError> {
        let mut args = vec!["for-each-ref", "--format=%(objectname) %(tree) %(refname)"];
        args.extend(refs);
        let out = self.git(args.clone()).await?;
        let mut found = [const { None }; N];
        for line in String::from_utf8_lossy(&out).lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(commit), Some(tree), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(unexpected(args, &out));
            };
            if let Some(i) = refs.iter().position(|r| *r == name) {
                found[i] = Some(RefTarget {
                    commit: commit.to_owned(),
                    tree: tree.to_owned(),
                });
            }
        }
        Ok(found)
    }

    /// Whether commit `a` is an ancestor of (or equal to) commit `b`.
    async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        let args = ["merge-base", "--is-ancestor", a, b];
        let out = self.output(&self.root, args, Owner::Axon).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(command_error(args, &out)),
        }
    }

    /// Merges commit `theirs` into `ours` in the object database only: the merged tree, or
    /// the conflicting paths.
    async fn merge_trees(&self, ours: &str, theirs: &str) -> Result<TreeMerge, GitError> {
        let args = [
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            ours,
            theirs,
        ];
        let out = self.output(&self.root, args, Owner::Axon).await?;
        let code = out.status.code();
        if code != Some(0) && code != Some(1) {
            return Err(command_error(args, &out));
        }
        let mut items = out.stdout.split(|&b| b == 0);
        let tree = items
            .next()
            .and_then(parse_oid)
            .ok_or_else(|| unexpected(args, &out.stdout))?;
        if code == Some(0) {
            return Ok(TreeMerge::Clean(tree));
        }
        let mut files: Vec<String> = items
            .take_while(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(TreeMerge::Conflict(files))
    }

    /// Makes a commit of `tree` with `parents` and `message`, authored by Axon.
    async fn commit_tree(
        &self,
        tree: &str,
        parents: &[&str],
        message: &str,
    ) -> Result<String, GitError> {
        let mut args = vec!["commit-tree", tree];
        for p in parents {
            args.extend(["-p", p]);
        }
        args.extend(["-m", message]);
        self.git_oid(args).await
    }

    /// Moves `refname` from `old` to `new` (compare-and-swap; `old` empty: must not exist).
    async fn update_ref(
        &self,
        refname: &str,
        new: &str,
        old: &str,
        reason: &str,
    ) -> Result<(), GitError> {
        let args = ["update-ref", "-m", reason, refname, new, old];
        self.git(args).await.map(drop)
    }

    /// Every worktree of the repository, the main one first.
    async fn worktrees(&self) -> Result<Vec<WorktreeEntry>, GitError> {
        let out = self.git(["worktree", "list", "--porcelain", "-z"]).await?;
        Ok(parse_worktree_list(&out))
    }

    /// Whether `branch` (a short name) exists.
    async fn branch_exists(&self, branch: &str) -> Result<bool, GitError> {
        Ok(self
            .resolve(&format!("refs/heads/{branch}"))
            .await?
            .is_some())
    }
}

/// What a branch points at.
struct RefTarget {
    /// The commit.
    commit: String,
    /// Its tree.
    tree: String,
}

/// The result of merging two trees in the object database.
enum TreeMerge {
    /// The merged tree.
    Clean(String),
    /// Paths with conflicts, sorted.
    Conflict(Vec<String>),
}

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorktreeEntry {
    /// Its directory, as git recorded it.
    path: PathBuf,
    /// The full ref it has checked out (`refs/heads/…`), if not detached.
    branch: Option<String>,
}

/// How a run started: what it was cut from and what the user had checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfo {
    /// The commit the integration branch points at when the run starts (HEAD for a new run,
    /// the integration tip for a resumed one).
    pub base: String,
    /// What the user had checked out: `branch main` or `detached HEAD at abc1234`.
    pub head: String,
    /// The user's working tree had changes (tracked or untracked) that the run does not see.
    pub dirty: bool,
    /// The integration branch already existed (the run is resumed).
    pub resumed: bool,
}

/// One task attempt's worktree and branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Its directory, `<root>/.axon/worktrees/<run_id>/<task_id>/<attempt>`.
    pub path: PathBuf,
    /// Its branch (short name), `axon-task/<run_id>/<task_id>/<attempt>`.
    pub branch: String,
    /// The integration tip it was cut from.
    pub base: String,
    /// The task.
    pub task_id: String,
    /// The attempt number.
    pub attempt: u32,
}

/// What [`RunSessions::merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// A merge commit now tops the integration branch.
    Merged {
        /// The merge commit.
        commit: String,
    },
    /// The task branch was merged before (for example by an engine that then crashed).
    AlreadyMerged,
    /// The task branch has no commit of its own.
    NothingToMerge,
    /// The task's changes conflict with the integration branch, which is unchanged.
    Conflict {
        /// The conflicting paths, sorted.
        files: Vec<String>,
    },
}

/// What [`RunSessions::merge_into`] did to the user's branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeIntoOutcome {
    /// The branch did not exist; it was created at the integration tip.
    Created {
        /// The branch.
        branch: String,
        /// Where it points.
        commit: String,
    },
    /// The branch was behind the integration branch and was moved forward.
    FastForwarded {
        /// The branch.
        branch: String,
        /// Where it pointed.
        from: String,
        /// Where it points now.
        to: String,
    },
    /// The branch had diverged; a merge commit joins both.
    Merged {
        /// The branch.
        branch: String,
        /// The merge commit.
        commit: String,
    },
    /// The branch already contained the integration branch.
    UpToDate {
        /// The branch.
        branch: String,
    },
}

impl fmt::Display for MergeIntoOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created { branch, commit } => {
                write!(f, "created branch `{branch}` at {}", short(commit))
            }
            Self::FastForwarded { branch, from, to } => write!(
                f,
                "fast-forwarded `{branch}` from {} to {}",
                short(from),
                short(to)
            ),
            Self::Merged { branch, commit } => {
                write!(f, "merged into `{branch}` ({})", short(commit))
            }
            Self::UpToDate { branch } => write!(f, "`{branch}` was already up to date"),
        }
    }
}

/// The git sessions of one run: its integration branch and its task worktrees.
///
/// Shared by reference (every method takes `&self`); merges are serialised internally.
#[derive(Debug)]
pub struct RunSessions {
    /// The repository.
    repo: GitRepo,
    /// The run's id (checked: safe in a branch name and a path).
    run_id: String,
    /// `axon/<run_id>`.
    branch: String,
    /// `refs/heads/axon/<run_id>`.
    branch_ref: String,
    /// `<root>/.axon/worktrees/<run_id>`.
    worktrees_dir: PathBuf,
    /// Held for the whole of a merge, so that merges of this run never race on the tip.
    merge_lock: tokio::sync::Mutex<()>,
    /// Serialises changes to `.git/worktrees` (adding and removing worktrees): git names a
    /// worktree's admin directory after its path's last component (here the attempt number)
    /// and two concurrent `worktree add`s can pick the same name and fail.
    admin_lock: tokio::sync::Mutex<()>,
}

impl RunSessions {
    /// Prepares the run's sessions: writes `<root>/.axon/.gitignore` containing `*` if absent
    /// (the user's `.gitignore` is never edited), creates the integration branch
    /// `axon/<run_id>` at HEAD if absent (`resumed = false`) or keeps it (`resumed = true`),
    /// and runs `git worktree prune`.
    ///
    /// # Errors
    ///
    /// [`GitError::NoCommits`] when HEAD is unborn; [`GitError::InvalidId`] for a `run_id`
    /// that cannot be part of a branch name; I/O and git failures.
    #[tracing::instrument(skip_all, fields(run_id))]
    pub async fn start(repo: GitRepo, run_id: &str) -> Result<(RunSessions, StartInfo), GitError> {
        check_id(run_id)?;
        let head = repo.resolve("HEAD").await?.ok_or(GitError::NoCommits)?;
        let axon_dir = repo.root.join(".axon");
        ensure_gitignore(&axon_dir).await?;

        let head_desc = {
            let out = repo
                .output(
                    &repo.root,
                    ["symbolic-ref", "--quiet", "--short", "HEAD"],
                    Owner::Axon,
                )
                .await?;
            if out.status.success() {
                format!("branch {}", String::from_utf8_lossy(&out.stdout).trim_end())
            } else {
                format!("detached HEAD at {}", short(&head))
            }
        };
        let status = repo
            .git([
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=normal",
                "--ignore-submodules=untracked",
            ])
            .await?;
        let dirty = !status.is_empty();

        let branch = format!("{INTEGRATION_PREFIX}{run_id}");
        let branch_ref = format!("refs/heads/{branch}");
        let (base, resumed) = match repo.resolve(&branch_ref).await? {
            Some(tip) => (tip, true),
            None => {
                repo.update_ref(&branch_ref, &head, "", "axon: start run")
                    .await?;
                (head, false)
            }
        };
        repo.git(["worktree", "prune"]).await?;
        tracing::debug!(%base, resumed, dirty, "integration branch ready");
        let worktrees_dir = axon_dir.join("worktrees").join(run_id);
        let sessions = RunSessions {
            repo,
            run_id: run_id.to_owned(),
            branch,
            branch_ref,
            worktrees_dir,
            merge_lock: tokio::sync::Mutex::new(()),
            admin_lock: tokio::sync::Mutex::new(()),
        };
        let info = StartInfo {
            base,
            head: head_desc,
            dirty,
            resumed,
        };
        Ok((sessions, info))
    }

    /// The repository.
    pub fn repo(&self) -> &GitRepo {
        &self.repo
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The integration branch, `axon/<run_id>`.
    pub fn integration_branch(&self) -> &str {
        &self.branch
    }

    /// The commit at the tip of the integration branch.
    ///
    /// # Errors
    ///
    /// Git failures, including a deleted integration branch.
    pub async fn integration_tip(&self) -> Result<String, GitError> {
        self.repo.resolve(&self.branch_ref).await?.ok_or_else(|| {
            GitError::InvalidBranch(format!("{} (it no longer exists)", self.branch))
        })
    }

    /// The branch of a task attempt, `axon-task/<run_id>/<task_id>/<attempt>`.
    pub fn task_branch(&self, task_id: &str, attempt: u32) -> String {
        format!("{TASK_PREFIX}{}/{task_id}/{attempt}", self.run_id)
    }

    /// The directory of a task attempt's worktree.
    pub fn worktree_path(&self, task_id: &str, attempt: u32) -> PathBuf {
        self.worktrees_dir.join(task_id).join(attempt.to_string())
    }

    /// Creates the worktree of a task attempt at `<root>/.axon/worktrees/<run_id>/<task_id>/<attempt>`
    /// on a new branch `axon-task/<run_id>/<task_id>/<attempt>` cut from the integration tip.
    /// A worktree or branch of the same attempt left by a crash is removed first. Submodules
    /// are initialised when possible; a failure there is logged and does not fail the call.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidId`] for a bad `task_id`; I/O and git failures.
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id, task_id, attempt))]
    pub async fn create(&self, task_id: &str, attempt: u32) -> Result<Worktree, GitError> {
        check_id(task_id)?;
        let branch = self.task_branch(task_id, attempt);
        let path = self.worktree_path(task_id, attempt);
        // One call for both refs: the tip, and whether the branch was left behind.
        let task_ref = format!("refs/heads/{branch}");
        let [tip, leftover] = self.repo.read_refs([&self.branch_ref, &task_ref]).await?;
        let leftover_branch = leftover.is_some();
        let tip = tip.map(|t| t.commit);
        let tip = tip.ok_or_else(|| {
            GitError::InvalidBranch(format!("{} (it no longer exists)", self.branch))
        })?;
        if leftover_branch || exists(&path).await? {
            tracing::info!("removing a worktree left by a previous engine");
            self.discard(&path, &branch).await?;
        }
        if let Some(parent) = path.parent() {
            create_dir_all(parent).await?;
        }
        {
            // Only registering the worktree is serialised; filling it (the slow part on a
            // large repository) runs in parallel with other tasks'.
            let _admin = self.admin_lock.lock().await;
            self.repo
                .git([
                    OsStr::new("worktree"),
                    OsStr::new("add"),
                    OsStr::new("--quiet"),
                    OsStr::new("--no-checkout"),
                    OsStr::new("-b"),
                    OsStr::new(&branch),
                    path.as_os_str(),
                    OsStr::new(&tip),
                ])
                .await?;
        }
        self.repo
            .run(&path, ["reset", "--hard", "--quiet"], Owner::Axon)
            .await?;
        self.init_submodules(&path).await;
        Ok(Worktree {
            path,
            branch,
            base: tip,
            task_id: task_id.to_owned(),
            attempt,
        })
    }

    /// Initialises the submodules of a fresh worktree, if it has any; failures are logged.
    async fn init_submodules(&self, path: &Path) {
        match tokio::fs::try_exists(path.join(".gitmodules")).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for .gitmodules; submodules not initialised");
                return;
            }
        }
        let args = [
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "update",
            "--init",
            "--recursive",
        ];
        if let Err(e) = self.repo.run(path, args, Owner::Axon).await {
            tracing::warn!(error = %e, "submodules not initialised in the task worktree");
        }
    }

    /// Removes whatever worktree sits at `path` or has `branch` checked out, the directory,
    /// and the branch. Missing pieces are fine.
    async fn discard(&self, path: &Path, branch: &str) -> Result<(), GitError> {
        let full = format!("refs/heads/{branch}");
        for e in self.repo.worktrees().await? {
            if e.path == path || e.branch.as_deref() == Some(full.as_str()) {
                self.remove_worktree(&e.path).await?;
            }
        }
        remove_dir_all(path).await?;
        if self.repo.branch_exists(branch).await? {
            self.repo.git(["branch", "-D", "--quiet", branch]).await?;
        }
        Ok(())
    }

    /// `git worktree remove --force --force PATH` (also when the directory is gone or locked).
    async fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        let _admin = self.admin_lock.lock().await;
        let args = [
            OsStr::new("worktree"),
            OsStr::new("remove"),
            OsStr::new("--force"),
            OsStr::new("--force"),
            path.as_os_str(),
        ];
        self.repo.git(args).await.map(drop)
    }

    /// The paths (relative to the repository root, '/' separated) the attempt changed
    /// relative to its base, committed or not: modified, added, untracked (not ignored),
    /// deleted, and both sides of renames. Sorted, without duplicates. Changes inside a
    /// submodule's own working tree count only once its commit changes. Paths that are not
    /// UTF-8 are converted lossily.
    ///
    /// # Errors
    ///
    /// Git failures (for example a worktree that no longer exists).
    pub async fn changed_files(&self, wt: &Worktree) -> Result<Vec<String>, GitError> {
        let diff = [
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--ignore-submodules=dirty",
            &wt.base,
            "--",
        ];
        let untracked = ["ls-files", "-z", "--others", "--exclude-standard"];
        let (diff, untracked) = tokio::try_join!(
            self.repo.run(&wt.path, diff, Owner::Axon),
            self.repo.run(&wt.path, untracked, Owner::Axon),
        )?;
        let mut files: Vec<String> = diff
            .split(|&b| b == 0)
            .chain(untracked.split(|&b| b == 0))
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Stages everything in the worktree (`git add -A`) and commits it with `message`, as
    /// Axon, without hooks. `Ok(None)` when there was nothing to commit.
    ///
    /// # Errors
    ///
    /// Git failures.
    pub async fn commit(&self, wt: &Worktree, message: &str) -> Result<Option<String>, GitError> {
        let dir = wt.path.as_path();
        self.repo.run(dir, ["add", "-A"], Owner::Axon).await?;
        let args = ["commit", "--quiet", "--no-verify", "-m", message];
        let out = self.repo.output(dir, args, Owner::Axon).await?;
        if !out.status.success() {
            // Exit 1 also means "nothing to commit": tell the two apart only on this path, so
            // the common case costs one call less.
            let staged = ["diff", "--cached", "--quiet", "HEAD", "--"];
            let diff = self.repo.output(dir, staged, Owner::Axon).await?;
            if out.status.code() == Some(1) && diff.status.code() == Some(0) {
                return Ok(None);
            }
            return Err(command_error(args, &out));
        }
        let args = ["rev-parse", "--verify", "HEAD"];
        let out = self.repo.run(dir, args, Owner::Axon).await?;
        parse_oid(&out)
            .map(Some)
            .ok_or_else(|| unexpected(args, &out))
    }

    /// Merges the task branch into the integration branch without touching any checkout:
    /// `git merge-tree --write-tree`, `git commit-tree -p <tip> -p <task>`, then
    /// `git update-ref` from the old tip (compare-and-swap). Merges of one `RunSessions` are
    /// serialised. Always makes a merge commit, so each task's changes stay one unit on the
    /// integration branch.
    ///
    /// Idempotent: a task branch that is already an ancestor of the tip gives
    /// [`MergeOutcome::AlreadyMerged`] (a crash between the merge and its bookkeeping never
    /// merges twice), and one still at its base [`MergeOutcome::NothingToMerge`]. On conflict
    /// the integration branch is unchanged and the worktree is left alone.
    ///
    /// # Errors
    ///
    /// Git failures, including a missing task branch, or the integration branch moved by
    /// someone else during the merge (transient: see [`GitError::is_transient`]).
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id, task_id = %wt.task_id, attempt = wt.attempt))]
    pub async fn merge(&self, wt: &Worktree, message: &str) -> Result<MergeOutcome, GitError> {
        let _serialised = self.merge_lock.lock().await;
        let task_ref = format!("refs/heads/{}", wt.branch);
        let [task, tip] = self.repo.read_refs([&task_ref, &self.branch_ref]).await?;
        let task = task
            .ok_or_else(|| GitError::InvalidBranch(format!("{} (it does not exist)", wt.branch)))?
            .commit;
        if task == wt.base {
            return Ok(MergeOutcome::NothingToMerge);
        }
        let RefTarget {
            commit: tip,
            tree: tip_tree,
        } = tip.ok_or_else(|| {
            GitError::InvalidBranch(format!("{} (it no longer exists)", self.branch))
        })?;
        let tree = match self.repo.merge_trees(&tip, &task).await? {
            // A task branch that is an ancestor of the tip merges into the tip's own tree, so
            // ancestry needs checking only then (another task may also have made the same
            // changes: that still gets its merge commit).
            TreeMerge::Clean(tree)
                if tree == tip_tree && self.repo.is_ancestor(&task, &tip).await? =>
            {
                return Ok(MergeOutcome::AlreadyMerged);
            }
            TreeMerge::Clean(tree) => tree,
            TreeMerge::Conflict(files) => {
                tracing::debug!(?files, "merge conflict");
                return Ok(MergeOutcome::Conflict { files });
            }
        };
        let commit = self
            .repo
            .commit_tree(&tree, &[&tip, &task], message)
            .await?;
        let reason = format!("axon: merge {}", wt.branch);
        self.repo
            .update_ref(&self.branch_ref, &commit, &tip, &reason)
            .await?;
        Ok(MergeOutcome::Merged { commit })
    }

    /// Whether the branch of a task attempt exists and is merged (an ancestor of the
    /// integration tip).
    ///
    /// # Errors
    ///
    /// Git failures.
    pub async fn is_merged(&self, task_id: &str, attempt: u32) -> Result<bool, GitError> {
        let branch = self.task_branch(task_id, attempt);
        let Some(task) = self.repo.resolve(&format!("refs/heads/{branch}")).await? else {
            return Ok(false);
        };
        let tip = self.integration_tip().await?;
        self.repo.is_ancestor(&task, &tip).await
    }

    /// Re-opens the worktree of a task attempt left by a previous engine (for resume), if its
    /// branch exists: the existing worktree, or a new one on that branch when its directory
    /// is gone. Its base is recovered from history: the fork point from the integration
    /// branch, or for a merged branch the fork point from the tip before its merge.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidId`] for a bad `task_id`; I/O and git failures.
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id, task_id, attempt))]
    pub async fn open(&self, task_id: &str, attempt: u32) -> Result<Option<Worktree>, GitError> {
        check_id(task_id)?;
        let branch = self.task_branch(task_id, attempt);
        let full = format!("refs/heads/{branch}");
        let Some(task) = self.repo.resolve(&full).await? else {
            return Ok(None);
        };
        let tip = self.integration_tip().await?;
        let base = self.fork_point(&task, &tip).await?;
        let expected = self.worktree_path(task_id, attempt);
        let mut path = None;
        for e in self.repo.worktrees().await? {
            if e.branch.as_deref() == Some(full.as_str()) {
                if exists(&e.path).await? {
                    path = Some(e.path);
                } else {
                    self.remove_worktree(&e.path).await?;
                }
                break;
            }
        }
        let path = match path {
            Some(p) => p,
            None => {
                remove_dir_all(&expected).await?;
                if let Some(parent) = expected.parent() {
                    create_dir_all(parent).await?;
                }
                self.repo
                    .git([
                        OsStr::new("worktree"),
                        OsStr::new("add"),
                        OsStr::new("--quiet"),
                        expected.as_os_str(),
                        OsStr::new(&branch),
                    ])
                    .await?;
                self.init_submodules(&expected).await;
                expected
            }
        };
        Ok(Some(Worktree {
            path,
            branch,
            base,
            task_id: task_id.to_owned(),
            attempt,
        }))
    }

    /// The commit a task branch at `task` was cut from, given the integration tip.
    async fn fork_point(&self, task: &str, tip: &str) -> Result<String, GitError> {
        if !self.repo.is_ancestor(task, tip).await? {
            return self.repo.git_oid(["merge-base", task, tip]).await;
        }
        // Merged: find the merge commit on the tip's first-parent line whose other parent
        // is `task`; the fork point is then the merge base with that merge's first parent.
        let not_task = format!("^{task}");
        let out = self
            .repo
            .git([
                "rev-list",
                "--first-parent",
                "--parents",
                tip,
                &not_task,
                "--",
            ])
            .await?;
        let text = String::from_utf8_lossy(&out);
        for line in text.lines() {
            let mut oids = line.split(' ').skip(1);
            let Some(first_parent) = oids.next() else {
                continue;
            };
            if oids.any(|p| p == task) {
                return self.repo.git_oid(["merge-base", task, first_parent]).await;
            }
        }
        // Reachable without having been merged: the branch never left its base.
        Ok(task.to_owned())
    }

    /// Removes the worktree (`git worktree remove --force`) and deletes its branch. Missing
    /// pieces are fine; emptied parent directories are removed too.
    ///
    /// # Errors
    ///
    /// I/O and git failures.
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id, task_id = %wt.task_id, attempt = wt.attempt))]
    pub async fn remove(&self, wt: &Worktree) -> Result<(), GitError> {
        let path_exists = exists(&wt.path).await?;
        let removed = if path_exists {
            // The common case, in one call; anything unusual falls back to `discard`.
            self.remove_worktree(&wt.path).await.is_ok()
        } else {
            false
        };
        let deleted = removed
            && self
                .repo
                .git(["branch", "-D", "--quiet", &wt.branch])
                .await
                .is_ok();
        if !deleted {
            self.discard(&wt.path, &wt.branch).await?;
        }
        self.remove_empty_parents(&wt.path).await;
        Ok(())
    }

    /// Removes the worktree (its directory and git's entry) but keeps its branch: after a
    /// merge, the branch is what tells a later [`RunSessions::is_merged`] (or `merge`, which
    /// then answers `AlreadyMerged`) that the attempt's work is in, until the engine has
    /// recorded it. [`RunSessions::repair`] deletes such branches.
    ///
    /// # Errors
    ///
    /// I/O and git failures.
    pub async fn release(&self, wt: &Worktree) -> Result<(), GitError> {
        if exists(&wt.path).await? {
            self.remove_worktree(&wt.path).await?;
        }
        remove_dir_all(&wt.path).await?;
        self.remove_empty_parents(&wt.path).await;
        Ok(())
    }

    /// Removes the now-empty directories between `path` and the run's worktree directory
    /// (inclusive); stops at the first one that is not empty.
    async fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.worktrees_dir) || tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// After a crash: removes every worktree and `axon-task/<run_id>/…` branch of this run
    /// for which `keep(task_id, attempt)` is false, leftover directories under
    /// `.axon/worktrees/<run_id>`, and (`git worktree prune`) stale entries of worktrees whose
    /// directory is gone.
    ///
    /// # Errors
    ///
    /// I/O and git failures.
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id))]
    pub async fn repair(&self, keep: impl Fn(&str, u32) -> bool) -> Result<(), GitError> {
        let prefix = format!("refs/heads/{TASK_PREFIX}{}/", self.run_id);
        let parse = |refname: &str| -> Option<(String, u32)> {
            let rest = refname.strip_prefix(&prefix)?;
            let (task, attempt) = rest.rsplit_once('/')?;
            Some((task.to_owned(), attempt.parse().ok()?))
        };
        for e in self.repo.worktrees().await? {
            let ours = e.branch.as_deref().and_then(&parse);
            let drop_it = match &ours {
                Some((task, attempt)) => !keep(task, *attempt),
                // A worktree in our directory but not on one of our branches is debris.
                None => e.path.starts_with(&self.worktrees_dir),
            };
            if drop_it {
                tracing::info!(path = %e.path.display(), "removing a leftover task worktree");
                self.remove_worktree(&e.path).await?;
            }
        }
        self.repo.git(["worktree", "prune"]).await?;

        let refs = self
            .repo
            .git(["for-each-ref", "--format=%(refname)", &prefix])
            .await?;
        let refs = String::from_utf8_lossy(&refs);
        for refname in refs.lines().filter(|l| !l.is_empty()) {
            let keep_it = parse(refname).is_some_and(|(task, attempt)| keep(&task, attempt));
            if !keep_it {
                let short = refname.strip_prefix("refs/heads/").unwrap_or(refname);
                self.repo.git(["branch", "-D", "--quiet", short]).await?;
            }
        }

        // Directories git does not know (a crash inside `worktree add`, or one pruned above).
        let registered: Vec<PathBuf> = self
            .repo
            .worktrees()
            .await?
            .into_iter()
            .map(|e| e.path)
            .collect();
        for task_dir in read_dir(&self.worktrees_dir).await? {
            let task = task_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for attempt_dir in read_dir(&task_dir).await? {
                let attempt = attempt_dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<u32>().ok());
                let keep_it = attempt.is_some_and(|a| keep(&task, a));
                if !keep_it && !registered.contains(&attempt_dir) {
                    remove_dir_all(&attempt_dir).await?;
                }
            }
            let _ = tokio::fs::remove_dir(&task_dir).await;
        }
        let _ = tokio::fs::remove_dir(&self.worktrees_dir).await;
        Ok(())
    }

    /// At the end of a fully successful run, brings the user's `branch` up to the
    /// integration branch — the only operation that touches the user's branches:
    ///
    /// - `branch` does not exist: created at the integration tip.
    /// - not checked out anywhere: fast-forwarded if possible, else merged in the object
    ///   database (`merge-tree`, `commit-tree`, `update-ref`).
    /// - checked out in a worktree (such as the user's main checkout): refused if that
    ///   worktree has changes to tracked files (untracked files do not count), else
    ///   `git merge --ff --no-edit axon/<run_id>` runs there, with the user's hooks.
    ///
    /// A conflict is found before anything is touched, and refused.
    ///
    /// # Errors
    ///
    /// [`GitError::MergeConflict`], [`GitError::LocalChanges`],
    /// [`GitError::InvalidBranch`] (not a valid name, or one of Axon's), git failures.
    #[tracing::instrument(skip_all, fields(run_id = %self.run_id, branch))]
    pub async fn merge_into(&self, branch: &str) -> Result<MergeIntoOutcome, GitError> {
        let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        let valid = self
            .repo
            .output(
                &self.repo.root,
                ["check-ref-format", "--branch", branch],
                Owner::Axon,
            )
            .await?;
        if !valid.status.success()
            || branch.starts_with(INTEGRATION_PREFIX)
            || branch.starts_with(TASK_PREFIX)
        {
            return Err(GitError::InvalidBranch(branch.to_owned()));
        }
        let full = format!("refs/heads/{branch}");
        let tip = self.integration_tip().await?;
        let Some(current) = self.repo.resolve(&full).await? else {
            self.repo
                .update_ref(
                    &full,
                    &tip,
                    "",
                    &format!("axon: create from {}", self.branch),
                )
                .await?;
            return Ok(MergeIntoOutcome::Created {
                branch: branch.to_owned(),
                commit: tip,
            });
        };
        if self.repo.is_ancestor(&tip, &current).await? {
            return Ok(MergeIntoOutcome::UpToDate {
                branch: branch.to_owned(),
            });
        }
        let fast_forward = self.repo.is_ancestor(&current, &tip).await?;
        let checkout = self
            .repo
            .worktrees()
            .await?
            .into_iter()
            .find(|e| e.branch.as_deref() == Some(full.as_str()));
        let tree = if fast_forward {
            None
        } else {
            match self.repo.merge_trees(&current, &tip).await? {
                TreeMerge::Clean(tree) => Some(tree),
                TreeMerge::Conflict(files) => {
                    return Err(GitError::MergeConflict {
                        branch: branch.to_owned(),
                        from: self.branch.clone(),
                        files,
                    });
                }
            }
        };
        if let Some(wt) = checkout {
            return self
                .merge_in_checkout(branch, &wt.path, &current, fast_forward)
                .await;
        }
        let message = format!("Merge branch '{}' into {branch}", self.branch);
        let new = match tree {
            None => tip.clone(),
            Some(tree) => {
                self.repo
                    .commit_tree(&tree, &[&current, &tip], &message)
                    .await?
            }
        };
        let reason = format!("axon: merge {}", self.branch);
        self.repo.update_ref(&full, &new, &current, &reason).await?;
        Ok(if fast_forward {
            MergeIntoOutcome::FastForwarded {
                branch: branch.to_owned(),
                from: current,
                to: new,
            }
        } else {
            MergeIntoOutcome::Merged {
                branch: branch.to_owned(),
                commit: new,
            }
        })
    }

    /// `git merge --ff --no-edit axon/<run_id>` in the user's worktree `dir`, where `branch`
    /// (at `current`) is checked out; refused when it has changes to tracked files.
    async fn merge_in_checkout(
        &self,
        branch: &str,
        dir: &Path,
        current: &str,
        fast_forward: bool,
    ) -> Result<MergeIntoOutcome, GitError> {
        let status = self
            .repo
            .run(
                dir,
                [
                    "status",
                    "--porcelain=v1",
                    "-z",
                    "--untracked-files=no",
                    "--ignore-submodules=untracked",
                ],
                Owner::Axon,
            )
            .await?;
        let files = parse_status_paths(&status);
        if !files.is_empty() {
            return Err(GitError::LocalChanges {
                branch: branch.to_owned(),
                worktree: dir.to_owned(),
                files,
            });
        }
        let args = ["merge", "--ff", "--no-edit", "--quiet", &self.branch];
        if let Err(e) = self.repo.run(dir, args, Owner::User).await {
            // Never leave the user's checkout mid-merge.
            let merging = self
                .repo
                .output(
                    dir,
                    ["rev-parse", "--quiet", "--verify", "MERGE_HEAD"],
                    Owner::Axon,
                )
                .await?;
            if merging.status.success() {
                let _ = self
                    .repo
                    .output(dir, ["merge", "--abort"], Owner::User)
                    .await;
            }
            return Err(e);
        }
        let new = self
            .repo
            .resolve(&format!("refs/heads/{branch}"))
            .await?
            .ok_or_else(|| GitError::InvalidBranch(branch.to_owned()))?;
        Ok(if fast_forward {
            MergeIntoOutcome::FastForwarded {
                branch: branch.to_owned(),
                from: current.to_owned(),
                to: new,
            }
        } else {
            MergeIntoOutcome::Merged {
                branch: branch.to_owned(),
                commit: new,
            }
        })
    }
}

/// Runs `git -C dir ARGS` with the environment and options of the module docs, whatever
/// its exit code.
async fn exec<I, S>(
    dir: &Path,
    args: I,
    owner: Owner,
    lfs_missing: bool,
) -> Result<Output, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    cmd.args(["-c", "core.quotepath=false", "-c", "commit.gpgsign=false"]);
    if owner == Owner::Axon {
        cmd.args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
        ]);
    }
    if lfs_missing {
        cmd.args([
            "-c",
            "filter.lfs.required=false",
            "-c",
            "filter.lfs.smudge=",
            "-c",
            "filter.lfs.clean=",
            "-c",
            "filter.lfs.process=",
        ]);
    }
    cmd.args(args);
    for var in REPO_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_MERGE_AUTOEDIT", "no")
        .env("GIT_AUTHOR_NAME", AXON_NAME)
        .env("GIT_AUTHOR_EMAIL", AXON_EMAIL)
        .env("GIT_COMMITTER_NAME", AXON_NAME)
        .env("GIT_COMMITTER_EMAIL", AXON_EMAIL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            GitError::NotInstalled
        } else {
            GitError::Io {
                action: "run git in",
                path: dir.to_owned(),
                source: e,
            }
        }
    })
}

/// The arguments of a call, for messages.
fn describe<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`GitError::Command`] for a call that exited unsuccessfully.
fn command_error<I, S>(args: I, out: &Output) -> GitError
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    GitError::Command {
        args: describe(args),
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`GitError::UnexpectedOutput`] for output that does not parse.
fn unexpected<I, S>(args: I, stdout: &[u8]) -> GitError
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let text = String::from_utf8_lossy(stdout);
    GitError::UnexpectedOutput {
        args: describe(args),
        output: text.chars().take(200).collect(),
    }
}

/// An object id (40 or 64 hex digits) from output, ignoring surrounding whitespace.
fn parse_oid(out: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(out).ok()?.trim();
    let ok = matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_owned())
}

/// The first 7 characters of an object id, for messages.
fn short(oid: &str) -> &str {
    oid.get(..7).unwrap_or(oid)
}

/// Parses `git worktree list --porcelain -z`: records of `key value` fields separated by
/// NUL, ended by an empty field.
fn parse_worktree_list(out: &[u8]) -> Vec<WorktreeEntry> {
    let mut entries = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for field in out.split(|&b| b == 0) {
        if field.is_empty() {
            entries.extend(current.take());
        } else if let Some(path) = field.strip_prefix(b"worktree ") {
            entries.extend(current.take());
            current = Some(WorktreeEntry {
                path: path_from_bytes(path),
                branch: None,
            });
        } else if let (Some(e), Some(b)) = (current.as_mut(), field.strip_prefix(b"branch ")) {
            e.branch = Some(String::from_utf8_lossy(b).into_owned());
        }
    }
    entries.extend(current);
    entries
}

/// The paths of `git status --porcelain=v1 -z` (the new side of renames and copies).
fn parse_status_paths(out: &[u8]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut fields = out.split(|&b| b == 0);
    while let Some(f) = fields.next() {
        if f.len() < 4 {
            continue;
        }
        paths.push(String::from_utf8_lossy(&f[3..]).into_owned());
        if matches!(f[0], b'R' | b'C') {
            fields.next();
        }
    }
    paths
}

/// A path from git's raw output bytes.
fn path_from_bytes(b: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(OsStr::from_bytes(b))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(b).into_owned(),
        ))
    }
}

/// Checks a run or task id: it becomes part of a branch name and a path.
fn check_id(id: &str) -> Result<(), GitError> {
    axon_core::id::check_id(id).map_err(|reason| GitError::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// Writes `<axon_dir>/.gitignore` containing `*` unless it exists.
async fn ensure_gitignore(axon_dir: &Path) -> Result<(), GitError> {
    create_dir_all(axon_dir).await?;
    let path = axon_dir.join(".gitignore");
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await;
    match file {
        Ok(mut f) => {
            use tokio::io::AsyncWriteExt;
            f.write_all(b"*\n").await.map_err(io("write", &path))?;
            f.flush().await.map_err(io("write", &path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create", &path)(e)),
    }
}

/// Maps an I/O error on `path` to [`GitError::Io`].
fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GitError + 'a {
    move |source| GitError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Whether `path` exists.
async fn exists(path: &Path) -> Result<bool, GitError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(io("look for", path))
}

/// `mkdir -p`.
async fn create_dir_all(path: &Path) -> Result<(), GitError> {
    tokio::fs::create_dir_all(path)
        .await
        .map_err(io("create", path))
}

/// `rm -rf`: a missing directory is fine.
async fn remove_dir_all(path: &Path) -> Result<(), GitError> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// The subdirectories of `dir`; none when it does not exist.
async fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, GitError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut dirs = Vec::new();
    while let Some(e) = entries.next_entry().await.map_err(io("read", dir))? {
        if e.file_type().await.map_err(io("read", dir))?.is_dir() {
            dirs.push(e.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktree_list_is_parsed_with_odd_paths() {
        let out = b"worktree /r\0HEAD 1111111111111111111111111111111111111111\0branch refs/heads/main\0\0\
worktree /r/.axon/w x\xc3\xbc\0HEAD 2222222222222222222222222222222222222222\0detached\0\0\
worktree /gone\0HEAD 3333333333333333333333333333333333333333\0branch refs/heads/axon-task/r/t/1\0prunable gitdir file points to non-existent location\0\0";
        let entries = parse_worktree_list(out);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].branch.as_deref(), Some("refs/heads/main"));
        assert_eq!(entries[1].path, PathBuf::from("/r/.axon/w xü"));
        assert_eq!(entries[1].branch, None);
        assert_eq!(
            entries[2].branch.as_deref(),
            Some("refs/heads/axon-task/r/t/1")
        );
    }

    #[test]
    fn status_paths_skip_rename_sources() {
        let out = b" M a b.txt\0R  new.txt\0old.txt\0MM c\0";
        assert_eq!(parse_status_paths(out), ["a b.txt", "new.txt", "c"]);
    }

    #[test]
    fn oids_are_checked() {
        let oid = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            parse_oid(format!("{oid}\n").as_bytes()).as_deref(),
            Some(oid)
        );
        assert_eq!(parse_oid(b"HEAD\n"), None);
        assert_eq!(short(oid), "0123456");
    }

    #[test]
    fn lock_contention_is_transient() {
        let err = |stderr: &str| GitError::Command {
            args: "update-ref".into(),
            code: Some(128),
            stderr: stderr.into(),
        };
        assert!(
            err("fatal: cannot lock ref 'refs/heads/axon/x': is at 1 but expected 2")
                .is_transient()
        );
        assert!(err("fatal: Unable to create '/r/.git/index.lock': File exists.").is_transient());
        assert!(!err("fatal: not a valid object name").is_transient());
        assert_eq!(
            err("fatal: not a valid object name\nmore").to_string(),
            "git update-ref failed: not a valid object name"
        );
    }
}
