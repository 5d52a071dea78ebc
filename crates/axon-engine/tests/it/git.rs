//! Task sessions on real git repositories (`git init` in temporary directories): worktrees,
//! merges and conflicts, crash repair, the user's checkout left alone, `merge_into`, and the
//! awkward cases (detached HEAD, submodules, LFS without git-lfs, unicode paths).

// The helpers below are test code too (clippy's `allow-unwrap-in-tests` only covers `#[test]`s).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use axon_core::model::SessionScope;
use axon_engine::session::{
    GitError, GitRepo, MergeIntoOutcome, MergeOutcome, RunSessions, StartInfo, Worktree, violations,
};
use tempfile::TempDir;

const RUN: &str = "0190a0b0-0000-7000-8000-000000000001";

/// Runs git in `dir` as the test's user; panics on failure; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "core.quotepath=false",
        ])
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository on `main` with one commit: `README.md` ("line one\nline two\n") and
/// `a b.txt`.
fn repo() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    write(dir.path(), "README.md", "line one\nline two\n");
    write(dir.path(), "a b.txt", "a\n");
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    dir
}

/// `git init` with an identity.
fn init(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test User"]);
    git(dir, &["config", "user.email", "test@example.invalid"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

async fn start(dir: &Path) -> (RunSessions, StartInfo) {
    let repo = GitRepo::discover(dir).await.unwrap().unwrap();
    RunSessions::start(repo, RUN).await.unwrap()
}

/// Files on a revision.
fn tree_files(dir: &Path, rev: &str) -> Vec<String> {
    git(dir, &["ls-tree", "-r", "-z", "--name-only", rev])
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn rev(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", rev]).trim().to_owned()
}

/// One attempt: write `files`, commit, merge.
async fn task(s: &RunSessions, id: &str, files: &[(&str, &str)]) -> (Worktree, MergeOutcome) {
    let wt = s.create(id, 1).await.unwrap();
    for (rel, text) in files {
        write(&wt.path, rel, text);
    }
    assert!(s.commit(&wt, id).await.unwrap().is_some());
    let outcome = s.merge(&wt, &format!("merge {id}")).await.unwrap();
    (wt, outcome)
}

#[tokio::test]
async fn parallel_tasks_all_land_on_the_integration_branch() {
    let dir = repo();
    let (s, info) = start(dir.path()).await;
    assert!(!info.resumed);
    assert_eq!(info.head, "branch main");
    assert_eq!(info.base, rev(dir.path(), "HEAD"));
    assert_eq!(s.integration_branch(), format!("axon/{RUN}"));

    let mut wts = Vec::new();
    for i in 0..4 {
        let wt = s.create(&format!("t{i}"), 1).await.unwrap();
        assert!(
            wt.path
                .starts_with(dir.path().join(".axon/worktrees").join(RUN))
        );
        assert_eq!(wt.branch, format!("axon-task/{RUN}/t{i}/1"));
        write(&wt.path, &format!("out/t{i}.txt"), &format!("task {i}\n"));
        s.commit(&wt, &format!("t{i}")).await.unwrap().unwrap();
        wts.push(wt);
    }
    let (a, b, c, d) = tokio::join!(
        s.merge(&wts[0], "m0"),
        s.merge(&wts[1], "m1"),
        s.merge(&wts[2], "m2"),
        s.merge(&wts[3], "m3"),
    );
    for outcome in [a, b, c, d] {
        assert!(matches!(outcome.unwrap(), MergeOutcome::Merged { .. }));
    }
    let tip = s.integration_tip().await.unwrap();
    let files = tree_files(dir.path(), &tip);
    for i in 0..4 {
        assert!(files.contains(&format!("out/t{i}.txt")), "{files:?}");
    }
    // One merge commit per task on the first-parent line.
    let merges = git(
        dir.path(),
        &["rev-list", "--merges", "--first-parent", &tip],
    );
    assert_eq!(merges.lines().count(), 4);
    let author = git(
        dir.path(),
        &["log", "-1", "--format=%an <%ae>|%cn <%ce>", &tip],
    );
    assert_eq!(author.trim(), "axon <axon@localhost>|axon <axon@localhost>");
    for wt in &wts {
        s.remove(wt).await.unwrap();
        assert!(!wt.path.exists());
    }
    assert!(!dir.path().join(".axon/worktrees").join(RUN).exists());
    let branches = git(dir.path(), &["branch", "--list", "axon-task/*"]);
    assert!(branches.is_empty(), "{branches}");
}

#[tokio::test]
async fn same_line_edits_conflict_and_leave_the_tip_unchanged() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let first = s.create("first", 1).await.unwrap();
    let second = s.create("second", 1).await.unwrap();
    write(&first.path, "README.md", "line ONE\nline two\n");
    write(&second.path, "README.md", "line uno\nline two\n");
    write(&second.path, "other.txt", "fine\n");
    s.commit(&first, "first").await.unwrap().unwrap();
    s.commit(&second, "second").await.unwrap().unwrap();
    assert!(matches!(
        s.merge(&first, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    let tip = s.integration_tip().await.unwrap();
    let outcome = s.merge(&second, "m").await.unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::Conflict {
            files: vec!["README.md".to_owned()]
        }
    );
    assert_eq!(s.integration_tip().await.unwrap(), tip);
    assert!(second.path.join("README.md").exists());
    assert_eq!(read(&second.path, "README.md"), "line uno\nline two\n");
    assert!(!s.is_merged("second", 1).await.unwrap());
    assert!(s.is_merged("first", 1).await.unwrap());
}

#[tokio::test]
async fn a_later_worktree_sees_merged_files() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let (_, outcome) = task(&s, "producer", &[("gen/data.txt", "42\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));
    let consumer = s.create("consumer", 1).await.unwrap();
    assert_eq!(read(&consumer.path, "gen/data.txt"), "42\n");
    assert_eq!(consumer.base, s.integration_tip().await.unwrap());
}

/// Everything about the user's checkout that Axon must not change.
#[derive(Debug, PartialEq)]
struct UserState {
    status: String,
    head: String,
    symbolic_head: String,
    branches: String,
    stash: String,
    index: Vec<u8>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn user_state(dir: &Path) -> UserState {
    let branches = git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads/",
        ],
    )
    .lines()
    .filter(|l| !l.starts_with("refs/heads/axon"))
    .collect::<Vec<_>>()
    .join("\n");
    let symbolic_head = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["symbolic-ref", "-q", "HEAD"])
        .output()
        .unwrap()
        .stdout;
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    UserState {
        status: git(
            dir,
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
        ),
        head: rev(dir, "HEAD"),
        symbolic_head: String::from_utf8(symbolic_head).unwrap(),
        branches,
        stash: git(dir, &["stash", "list", "--format=%H %gs"]),
        index: std::fs::read(dir.join(".git/index")).unwrap(),
        files,
    }
}

/// Every file of the working tree except `.git` and `.axon`, with its bytes.
fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let name = e.file_name();
        if dir == root && (name == ".git" || name == ".axon") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            walk(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_owned();
            files.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

#[tokio::test]
async fn the_users_checkout_is_untouched() {
    let dir = repo();
    let d = dir.path();
    git(d, &["branch", "feature"]);
    write(d, "README.md", "stashed change\n");
    git(d, &["stash", "-q"]);
    write(d, "README.md", "line one\nuncommitted edit\n");
    write(d, "notes/untracked file.txt", "mine\n");
    write(d, "a b.txt", "staged\n");
    git(d, &["add", "a b.txt"]);
    let before = user_state(d);

    let (s, info) = start(d).await;
    assert!(info.dirty);
    let (wt, outcome) = task(&s, "one", &[("README.md", "line one\nfrom task\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));
    s.changed_files(&wt).await.unwrap();
    s.remove(&wt).await.unwrap();
    let a = s.create("a", 1).await.unwrap();
    let b = s.create("b", 1).await.unwrap();
    write(&a.path, "x.txt", "a\n");
    write(&b.path, "x.txt", "b\n");
    s.commit(&a, "a").await.unwrap();
    s.commit(&b, "b").await.unwrap();
    s.merge(&a, "a").await.unwrap();
    assert!(matches!(
        s.merge(&b, "b").await.unwrap(),
        MergeOutcome::Conflict { .. }
    ));
    s.repair(|_, _| false).await.unwrap();
    let (s2, info2) = start(d).await;
    assert!(info2.resumed);
    s2.create("c", 2).await.unwrap();

    assert_eq!(user_state(d), before);
    // `.axon/` is ignored by its own `.gitignore`, never by the user's.
    assert_eq!(read(d, ".axon/.gitignore"), "*\n");
    assert!(!d.join(".gitignore").exists());
}

#[tokio::test]
async fn detached_head_works() {
    let dir = repo();
    let d = dir.path();
    git(d, &["checkout", "-q", "--detach"]);
    let head = rev(d, "HEAD");
    let (s, info) = start(d).await;
    assert_eq!(info.head, format!("detached HEAD at {}", &head[..7]));
    assert_eq!(info.base, head);
    let (_, outcome) = task(&s, "t", &[("new.txt", "x\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));
    assert_eq!(rev(d, "HEAD"), head);
    assert!(git(d, &["status", "--porcelain"]).is_empty());
}

#[tokio::test]
async fn submodules_are_initialised_in_task_worktrees() {
    let sub = repo();
    write(sub.path(), "lib.txt", "library\n");
    git(sub.path(), &["add", "-A"]);
    git(sub.path(), &["commit", "-q", "-m", "lib"]);
    let dir = repo();
    let d = dir.path();
    let sub_path = sub.path().to_str().unwrap();
    git(d, &["submodule", "add", "-q", sub_path, "vendor/lib"]);
    git(d, &["commit", "-q", "-m", "add submodule"]);

    let (s, _) = start(d).await;
    let wt = s.create("t", 1).await.unwrap();
    assert_eq!(read(&wt.path, "vendor/lib/lib.txt"), "library\n");
    write(&wt.path, "main.txt", "uses lib\n");
    assert_eq!(s.changed_files(&wt).await.unwrap(), ["main.txt"]);
    s.commit(&wt, "t").await.unwrap().unwrap();
    assert!(matches!(
        s.merge(&wt, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    s.remove(&wt).await.unwrap();
    assert!(!wt.path.exists());
}

#[tokio::test]
async fn lfs_pointer_files_work_without_git_lfs() {
    let dir = repo();
    let d = dir.path();
    let lfs = Command::new("git")
        .args(["lfs", "version"])
        .output()
        .unwrap();
    if lfs.status.success() {
        // With git-lfs installed the smudge filter would want the real object.
        return;
    }
    let pointer = "version https://git-lfs.github.com/spec/v1\n\
                   oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n\
                   size 12345\n";
    write(
        d,
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    write(d, "assets/model.bin", pointer);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "lfs"]);
    // What `git lfs install` leaves in a config: checkouts now need git-lfs.
    git(d, &["config", "filter.lfs.required", "true"]);
    git(
        d,
        &["config", "filter.lfs.process", "git-lfs filter-process"],
    );
    git(d, &["config", "filter.lfs.smudge", "git-lfs smudge -- %f"]);
    git(d, &["config", "filter.lfs.clean", "git-lfs clean -- %f"]);

    let (s, _) = start(d).await;
    let wt = s.create("t", 1).await.unwrap();
    assert_eq!(read(&wt.path, "assets/model.bin"), pointer);
    write(&wt.path, "assets/other.bin", "not a pointer\n");
    write(&wt.path, "code.txt", "x\n");
    assert_eq!(
        s.changed_files(&wt).await.unwrap(),
        ["assets/other.bin", "code.txt"]
    );
    s.commit(&wt, "t").await.unwrap().unwrap();
    assert!(matches!(
        s.merge(&wt, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    s.remove(&wt).await.unwrap();
}

#[tokio::test]
async fn paths_with_spaces_and_unicode() {
    let dir = repo();
    let d = dir.path();
    write(d, "old name.txt", "old\n");
    write(d, "gone.txt", "bye\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "more"]);
    let (s, _) = start(d).await;
    let wt = s.create("t", 1).await.unwrap();
    write(&wt.path, "dir with space/ünïcödé.txt", "new\n");
    write(&wt.path, "a b.txt", "changed\n");
    std::fs::rename(wt.path.join("old name.txt"), wt.path.join("new näme.txt")).unwrap();
    std::fs::remove_file(wt.path.join("gone.txt")).unwrap();
    write(&wt.path, "ignored.log", "x\n");
    write(&wt.path, ".gitignore", "*.log\n");
    let expected = [
        ".gitignore",
        "a b.txt",
        "dir with space/ünïcödé.txt",
        "gone.txt",
        "new näme.txt",
        "old name.txt",
    ];
    assert_eq!(s.changed_files(&wt).await.unwrap(), expected);
    // Committed changes count the same.
    s.commit(&wt, "t").await.unwrap().unwrap();
    assert_eq!(s.changed_files(&wt).await.unwrap(), expected);
    assert!(matches!(
        s.merge(&wt, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    let files = tree_files(d, &s.integration_tip().await.unwrap());
    assert!(files.contains(&"dir with space/ünïcödé.txt".to_owned()));
    assert!(files.contains(&"new näme.txt".to_owned()));
    assert!(!files.contains(&"gone.txt".to_owned()));

    // A conflict on such a path names it exactly.
    let x = s.create("x", 1).await.unwrap();
    let y = s.create("y", 1).await.unwrap();
    write(&x.path, "dir with space/ünïcödé.txt", "x\n");
    write(&y.path, "dir with space/ünïcödé.txt", "y\n");
    s.commit(&x, "x").await.unwrap();
    s.commit(&y, "y").await.unwrap();
    s.merge(&x, "x").await.unwrap();
    assert_eq!(
        s.merge(&y, "y").await.unwrap(),
        MergeOutcome::Conflict {
            files: vec!["dir with space/ünïcödé.txt".to_owned()]
        }
    );
}

#[tokio::test]
async fn discover_outside_a_repository_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(GitRepo::discover(dir.path()).await.unwrap().is_none());
    // Inside `.git` is not a work tree either.
    let r = repo();
    assert!(
        GitRepo::discover(&r.path().join(".git"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn discover_from_a_subdirectory_finds_the_root() {
    let r = repo();
    std::fs::create_dir_all(r.path().join("sub/dir")).unwrap();
    let repo = GitRepo::discover(&r.path().join("sub/dir"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.root(), r.path().canonicalize().unwrap());
    assert_eq!(repo.prefix(), "sub/dir");
}

#[tokio::test]
async fn an_empty_repository_has_no_commits() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let repo = GitRepo::discover(dir.path()).await.unwrap().unwrap();
    let err = RunSessions::start(repo, RUN).await.unwrap_err();
    assert!(matches!(err, GitError::NoCommits), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the repository has no commits yet: commit something before running"
    );
}

#[tokio::test]
async fn merging_twice_is_already_merged() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let (wt, outcome) = task(&s, "t", &[("f.txt", "f\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));
    let tip = s.integration_tip().await.unwrap();
    assert_eq!(
        s.merge(&wt, "again").await.unwrap(),
        MergeOutcome::AlreadyMerged
    );
    assert_eq!(s.integration_tip().await.unwrap(), tip);
    assert!(s.is_merged("t", 1).await.unwrap());

    let idle = s.create("idle", 1).await.unwrap();
    assert_eq!(s.commit(&idle, "nothing").await.unwrap(), None);
    assert_eq!(s.changed_files(&idle).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        s.merge(&idle, "m").await.unwrap(),
        MergeOutcome::NothingToMerge
    );
    assert!(!s.is_merged("missing", 1).await.unwrap());

    // Two tasks making the same change: the second still gets its merge commit.
    let a = s.create("same1", 1).await.unwrap();
    let b = s.create("same2", 1).await.unwrap();
    for wt in [&a, &b] {
        write(&wt.path, "same.txt", "same\n");
        s.commit(wt, &wt.task_id).await.unwrap().unwrap();
    }
    assert!(matches!(
        s.merge(&a, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    let second = s.merge(&b, "m").await.unwrap();
    assert!(matches!(second, MergeOutcome::Merged { .. }), "{second:?}");
    assert!(s.is_merged("same2", 1).await.unwrap());
    assert_eq!(s.merge(&b, "m").await.unwrap(), MergeOutcome::AlreadyMerged);
}

#[tokio::test]
async fn create_replaces_what_a_crashed_attempt_left() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let old = s.create("t", 1).await.unwrap();
    write(&old.path, "half-done.txt", "x\n");
    s.commit(&old, "half").await.unwrap().unwrap();
    write(&old.path, "scratch.txt", "y\n");
    let new = s.create("t", 1).await.unwrap();
    assert_eq!(new.path, old.path);
    assert!(!new.path.join("half-done.txt").exists());
    assert!(!new.path.join("scratch.txt").exists());
    assert_eq!(
        rev(dir.path(), &format!("refs/heads/{}", new.branch)),
        new.base
    );

    // Also when only the directory is left, without git knowing it.
    s.remove(&new).await.unwrap();
    write(&new.path, "junk.txt", "z\n");
    let again = s.create("t", 1).await.unwrap();
    assert!(!again.path.join("junk.txt").exists());
}

#[tokio::test]
async fn repair_removes_leftovers_and_keeps_the_kept() {
    let dir = repo();
    let d = dir.path();
    let (s, _) = start(d).await;
    let deleted = s.create("deleted", 1).await.unwrap();
    let present = s.create("present", 1).await.unwrap();
    let kept = s.create("kept", 2).await.unwrap();
    write(&kept.path, "work.txt", "keep me\n");
    write(&present.path, "work.txt", "drop me\n");
    std::fs::remove_dir_all(&deleted.path).unwrap();
    // A directory git never registered (a crash inside `worktree add`).
    write(&s.worktree_path("orphan", 1), "x", "x\n");
    drop(s);

    // A new engine repairs.
    let (s, info) = start(d).await;
    assert!(info.resumed);
    s.repair(|task, attempt| task == "kept" && attempt == 2)
        .await
        .unwrap();
    assert!(!deleted.path.exists());
    assert!(!present.path.exists());
    assert!(!s.worktree_path("orphan", 1).exists());
    assert_eq!(read(&kept.path, "work.txt"), "keep me\n");
    let branches = git(
        d,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/axon-task/",
        ],
    );
    assert_eq!(branches.trim(), kept.branch);
    let list = git(d, &["worktree", "list", "--porcelain"]);
    assert!(!list.contains("prunable"), "{list}");
    let admin: Vec<_> = std::fs::read_dir(d.join(".git/worktrees"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(admin.len(), 1, "{admin:?}");
    let gitdir = std::fs::read_to_string(admin[0].join("gitdir")).unwrap();
    assert!(Path::new(gitdir.trim()).exists());
}

#[tokio::test]
async fn open_reopens_a_left_attempt_with_its_base() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let (_, outcome) = task(&s, "first", &[("first.txt", "1\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));
    let wt = s.create("t", 1).await.unwrap();
    write(&wt.path, "t.txt", "t\n");
    s.commit(&wt, "t").await.unwrap().unwrap();
    // The tip moves on after `t` was cut.
    let (_, outcome) = task(&s, "later", &[("later.txt", "2\n")]).await;
    assert!(matches!(outcome, MergeOutcome::Merged { .. }));

    assert!(s.open("nope", 1).await.unwrap().is_none());
    let reopened = s.open("t", 1).await.unwrap().unwrap();
    assert_eq!(reopened, wt);

    // Its directory deleted by hand: the worktree comes back on the same branch.
    std::fs::remove_dir_all(&wt.path).unwrap();
    let reopened = s.open("t", 1).await.unwrap().unwrap();
    assert_eq!(reopened, wt);
    assert_eq!(read(&wt.path, "t.txt"), "t\n");
    assert_eq!(s.changed_files(&reopened).await.unwrap(), ["t.txt"]);

    assert!(matches!(
        s.merge(&reopened, "m").await.unwrap(),
        MergeOutcome::Merged { .. }
    ));
    // Merged: the base is still found, and merging again does nothing.
    let reopened = s.open("t", 1).await.unwrap().unwrap();
    assert_eq!(reopened.base, wt.base);
    assert_eq!(
        s.merge(&reopened, "m").await.unwrap(),
        MergeOutcome::AlreadyMerged
    );
}

#[tokio::test]
async fn scope_violations_name_the_offending_files() {
    let dir = repo();
    let (s, _) = start(dir.path()).await;
    let wt = s.create("t", 1).await.unwrap();
    write(&wt.path, "src/lib.rs", "ok\n");
    write(&wt.path, "src/generated/api.rs", "read only\n");
    write(&wt.path, "README.md", "outside\n");
    let changed = s.changed_files(&wt).await.unwrap();
    let scope = SessionScope {
        paths: vec!["src/".to_owned()],
        read_only_paths: vec!["./src/generated".to_owned()],
    };
    assert_eq!(
        violations(&changed, &scope),
        ["README.md", "src/generated/api.rs"]
    );
}

#[tokio::test]
async fn merge_into_a_branch_that_is_not_checked_out() {
    let dir = repo();
    let d = dir.path();
    git(d, &["branch", "behind"]);
    git(d, &["checkout", "-q", "-b", "diverged"]);
    write(d, "side.txt", "side\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "side"]);
    git(d, &["checkout", "-q", "main"]);
    let main = rev(d, "main");

    let (s, _) = start(d).await;
    task(&s, "t", &[("t.txt", "t\n")]).await;
    let tip = s.integration_tip().await.unwrap();

    let out = s.merge_into("behind").await.unwrap();
    assert_eq!(
        out,
        MergeIntoOutcome::FastForwarded {
            branch: "behind".into(),
            from: main.clone(),
            to: tip.clone()
        }
    );
    assert_eq!(rev(d, "behind"), tip);
    assert!(out.to_string().starts_with("fast-forwarded `behind` from"));
    assert_eq!(
        s.merge_into("behind").await.unwrap(),
        MergeIntoOutcome::UpToDate {
            branch: "behind".into()
        }
    );

    let MergeIntoOutcome::Merged { commit, .. } = s.merge_into("diverged").await.unwrap() else {
        panic!("expected a merge");
    };
    assert_eq!(rev(d, "diverged"), commit);
    let files = tree_files(d, "diverged");
    assert!(files.contains(&"side.txt".to_owned()) && files.contains(&"t.txt".to_owned()));

    assert_eq!(
        s.merge_into("fresh").await.unwrap(),
        MergeIntoOutcome::Created {
            branch: "fresh".into(),
            commit: tip.clone()
        }
    );
    // The user's checkout stayed on main, unchanged.
    assert_eq!(rev(d, "HEAD"), main);
    assert!(git(d, &["status", "--porcelain"]).is_empty());
    assert!(matches!(
        s.merge_into("bad..name").await,
        Err(GitError::InvalidBranch(_))
    ));
}

#[tokio::test]
async fn merge_into_the_checked_out_branch() {
    let dir = repo();
    let d = dir.path();
    let (s, _) = start(d).await;
    task(&s, "t", &[("t.txt", "t\n")]).await;
    let tip = s.integration_tip().await.unwrap();
    write(d, "untracked.txt", "does not count\n");

    let out = s.merge_into("main").await.unwrap();
    assert!(
        matches!(out, MergeIntoOutcome::FastForwarded { .. }),
        "{out:?}"
    );
    assert_eq!(rev(d, "HEAD"), tip);
    assert_eq!(read(d, "t.txt"), "t\n");
    assert_eq!(git(d, &["status", "--porcelain"]), "?? untracked.txt\n");

    // Diverged: a real `git merge` in the checkout.
    write(d, "user.txt", "user\n");
    git(d, &["add", "user.txt"]);
    git(d, &["commit", "-q", "-m", "user"]);
    let user = rev(d, "HEAD");
    task(&s, "u", &[("u.txt", "u\n")]).await;
    let MergeIntoOutcome::Merged { commit, .. } = s.merge_into("main").await.unwrap() else {
        panic!("expected a merge");
    };
    assert_eq!(rev(d, "HEAD"), commit);
    assert_eq!(rev(d, "HEAD^1"), user);
    assert_eq!(read(d, "u.txt"), "u\n");
}

#[tokio::test]
async fn merge_into_refuses_local_changes_and_conflicts() {
    let dir = repo();
    let d = dir.path();
    let (s, _) = start(d).await;
    task(&s, "t", &[("README.md", "line one\nfrom task\n")]).await;
    write(d, "a b.txt", "local edit\n");
    let head = rev(d, "HEAD");
    let err = s.merge_into("main").await.unwrap_err();
    match &err {
        GitError::LocalChanges { branch, files, .. } => {
            assert_eq!(branch, "main");
            assert_eq!(files, &["a b.txt"]);
        }
        other => panic!("expected LocalChanges, got {other:?}"),
    }
    assert!(err.to_string().contains("commit or stash them first"));
    assert_eq!(rev(d, "HEAD"), head);
    assert_eq!(read(d, "a b.txt"), "local edit\n");

    // A conflicting commit on main: refused before anything is touched.
    git(d, &["checkout", "-q", "--", "a b.txt"]);
    write(d, "README.md", "line one\nfrom user\n");
    git(d, &["commit", "-q", "-am", "user"]);
    let head = rev(d, "HEAD");
    let err = s.merge_into("main").await.unwrap_err();
    assert!(
        matches!(&err, GitError::MergeConflict { files, .. } if files == &["README.md"]),
        "{err:?}"
    );
    assert_eq!(rev(d, "HEAD"), head);
    assert!(git(d, &["status", "--porcelain"]).is_empty());
}
