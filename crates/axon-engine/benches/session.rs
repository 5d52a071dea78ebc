//! Per-task overhead of git task sessions, against the bare git commands they imply, measured
//! in the same run on the same repository.
//!
//! Workloads: a repository of small files in one commit, made once in a temporary directory
//! before anything is timed: `session_10k_files` (100 directories of 100 files, the target
//! workload) and `session_100_files` (10 of 10, where the checkout no longer hides the fixed
//! cost of each git call). Under `cargo test --benches` both use 10 files. Functions, one task
//! per iteration:
//!
//! - `axon`: [`RunSessions::create`] + write one file + [`RunSessions::commit`] +
//!   [`RunSessions::merge`] + [`RunSessions::remove`], on the run's integration branch;
//! - `bare`: the git commands that implies, run one after the other with
//!   `tokio::process::Command` on a branch of its own: `git worktree add -b B PATH TIP`, write
//!   the file, `git -C PATH add -A`, `git -C PATH commit`, `git merge-tree --write-tree`,
//!   `git commit-tree`, `git update-ref`, `git worktree remove --force`, `git branch -D`.
//!
//! Both check out every file in their worktree, which dominates with 10,000 files. After
//! criterion, a summary prints the mean per task, the ratio `axon / bare` and the difference;
//! then each workload runs 10 more rounds of one task per side, alternating which side goes
//! first, and prints the ratio of the totals and the median per-round ratio. On a machine
//! whose file-system cost drifts (a shared VM) the interleaved ratio is the one to trust.
//!
//! Run: `cargo bench -p axon-engine --bench session`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use axon_engine::session::{GitRepo, MergeOutcome, RunSessions};
use criterion::{Criterion, SamplingMode};

/// Group name and shape (directories × files) of each workload.
const WORKLOADS: &[(&str, usize, usize)] = &[
    ("session_10k_files", 100, 100),
    ("session_100_files", 10, 10),
];
const FUNCTIONS: &[&str] = &["axon", "bare"];
/// Rounds of the interleaved comparison that follows criterion (see [`interleaved`]).
const INTERLEAVED_ROUNDS: usize = 10;
const RUN_ID: &str = "0190a0b0-0000-7000-8000-00000000bench";
/// The branch the `bare` sequence merges into (the counterpart of `axon/<run_id>`).
const BARE_REF: &str = "refs/heads/bare-integration";

/// Runs git in `dir` (the test repository's own identity), panicking on failure; stdout.
fn git_sync(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A repository of `dirs` × `files` small files in one commit.
fn make_repo(dirs: usize, files: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path();
    git_sync(root, &["init", "-q", "-b", "main"]);
    git_sync(root, &["config", "user.name", "Bench"]);
    git_sync(root, &["config", "user.email", "bench@example.invalid"]);
    git_sync(root, &["config", "commit.gpgsign", "false"]);
    for d in 0..dirs {
        let dir = root.join(format!("dir{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..files {
            std::fs::write(dir.join(format!("file{f:03}.txt")), format!("{d} {f}\n"))
                .expect("write");
        }
    }
    git_sync(root, &["add", "-A"]);
    git_sync(root, &["commit", "-q", "-m", "10k files"]);
    tmp
}

/// One task through the session layer.
async fn axon_task(s: &RunSessions, n: u32) {
    let task = format!("t{n}");
    let wt = s.create(&task, 1).await.expect("create");
    tokio::fs::write(wt.path.join(format!("out-{n}.txt")), format!("{n}\n"))
        .await
        .expect("write");
    s.commit(&wt, &task)
        .await
        .expect("commit")
        .expect("a change to commit");
    let outcome = s.merge(&wt, &format!("merge {task}")).await.expect("merge");
    assert!(
        matches!(outcome, MergeOutcome::Merged { .. }),
        "{outcome:?}"
    );
    s.remove(&wt).await.expect("remove");
}

/// Runs git in `dir` from a plain tokio process; stdout, trimmed.
async fn git(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .trim()
        .to_owned()
}

/// The same task as bare git commands; returns the new tip of `BARE_REF`.
async fn bare_task(root: &Path, base_dir: &Path, tip: &str, n: u32) -> String {
    let branch = format!("bare-task/{n}");
    let path = base_dir.join(n.to_string());
    let path_str = path.to_str().expect("a utf-8 temp path");
    git(
        root,
        &["worktree", "add", "-q", "-b", &branch, path_str, tip],
    )
    .await;
    tokio::fs::write(path.join(format!("out-{n}.txt")), format!("{n}\n"))
        .await
        .expect("write");
    git(&path, &["add", "-A"]).await;
    git(&path, &["commit", "-q", "-m", &branch]).await;
    let tree = git(root, &["merge-tree", "--write-tree", tip, &branch]).await;
    let message = format!("merge {branch}");
    let new = git(
        root,
        &[
            "commit-tree",
            &tree,
            "-p",
            tip,
            "-p",
            &branch,
            "-m",
            &message,
        ],
    )
    .await;
    git(root, &["update-ref", BARE_REF, &new, tip]).await;
    git(root, &["worktree", "remove", "--force", path_str]).await;
    git(root, &["branch", "-D", "-q", &branch]).await;
    new
}

/// One repository with both sides set up: the run's sessions and the bare branch.
struct Workload {
    group: &'static str,
    /// Keeps the repository alive.
    repo: tempfile::TempDir,
    sessions: RunSessions,
    bare_dir: PathBuf,
    bare_tip: String,
    /// Numbers tasks of both sides, so that no name is used twice.
    counter: u32,
}

impl Workload {
    fn new(rt: &tokio::runtime::Runtime, group: &'static str, dirs: usize, files: usize) -> Self {
        let repo = make_repo(dirs, files);
        let root = repo.path();
        let git_repo = rt
            .block_on(GitRepo::discover(root))
            .expect("discover")
            .expect("a repository");
        let (sessions, _) = rt
            .block_on(RunSessions::start(git_repo, RUN_ID))
            .expect("start");
        let head = git_sync(root, &["rev-parse", "HEAD"]).trim().to_owned();
        git_sync(root, &["update-ref", BARE_REF, &head]);
        let bare_dir = root.join(".axon").join("worktrees").join("bare");
        std::fs::create_dir_all(&bare_dir).expect("mkdir");
        Self {
            group,
            repo,
            sessions,
            bare_dir,
            bare_tip: head,
            counter: 0,
        }
    }

    /// Runs one task on the `axon` side and returns its duration.
    fn axon(&mut self, rt: &tokio::runtime::Runtime) -> Duration {
        self.counter += 1;
        let start = Instant::now();
        rt.block_on(axon_task(&self.sessions, self.counter));
        start.elapsed()
    }

    /// Runs one task on the `bare` side and returns its duration.
    fn bare(&mut self, rt: &tokio::runtime::Runtime) -> Duration {
        self.counter += 1;
        let start = Instant::now();
        self.bare_tip = rt.block_on(bare_task(
            self.repo.path(),
            &self.bare_dir,
            &self.bare_tip,
            self.counter,
        ));
        start.elapsed()
    }
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, w: &mut Workload) {
    let mut g = c.benchmark_group(w.group);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("axon", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| w.axon(rt)).sum());
    });
    g.bench_function("bare", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| w.bare(rt)).sum());
    });
    g.finish();
}

/// `pairs` rounds of one task per side, alternating which side goes first: on a shared
/// machine the load drifts between criterion's groups, and this cancels the drift. Prints the
/// total per side and the median of the per-round ratios.
fn interleaved(rt: &tokio::runtime::Runtime, w: &mut Workload, pairs: usize) {
    let (mut axon, mut bare) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::with_capacity(pairs);
    for round in 0..pairs {
        let (a, b) = if round % 2 == 0 {
            let a = w.axon(rt);
            (a, w.bare(rt))
        } else {
            let b = w.bare(rt);
            (w.axon(rt), b)
        };
        axon += a;
        bare += b;
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(pairs / 2).copied().unwrap_or(f64::NAN);
    let per = |d: Duration| d.as_secs_f64() * 1e3 / pairs as f64;
    println!(
        "{:<20} interleaved, {pairs} rounds: axon {:.1} ms/task, bare {:.1} ms/task, \
         ratio of means {:.2}x, median ratio {:.2}x (load average now {})",
        w.group,
        per(axon),
        per(bare),
        axon.as_secs_f64() / bare.as_secs_f64(),
        median,
        common::load_average()
    );
}

fn summary(dir: &Path, since: SystemTime) {
    println!(
        "\nSummary (criterion means of this run; load average now {}):",
        common::load_average()
    );
    println!(
        "{:<20} {:<8} {:>10} {:>8} {:>16}",
        "workload", "function", "ms/task", "/ bare", "axon - bare ms"
    );
    for (group, _, _) in WORKLOADS {
        let mean = |f: &str| common::criterion_mean_ns(dir, group, f, since);
        let bare = mean("bare");
        for f in FUNCTIONS {
            let Some(m) = mean(f) else { continue };
            let (ratio, extra) = bare.map_or_else(
                || ("-".to_owned(), "-".to_owned()),
                |b| (format!("{:.2}x", m / b), format!("{:+.1}", (m - b) / 1e6)),
            );
            println!(
                "{:<20} {:<8} {:>10.1} {:>8} {:>16}",
                group,
                f,
                m / 1e6,
                ratio,
                extra
            );
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let dir = common::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let rt = common::runtime();
    // The smoke test (`cargo test --benches`) runs every function once on a small repo.
    let mut workloads: Vec<Workload> = WORKLOADS
        .iter()
        .map(|&(group, dirs, files)| {
            let (dirs, files) = if common::full_run() {
                (dirs, files)
            } else {
                (2, 5)
            };
            Workload::new(&rt, group, dirs, files)
        })
        .collect();
    for w in &mut workloads {
        bench(&mut c, &rt, w);
    }
    c.final_summary();
    if common::full_run() {
        summary(&dir, since);
        for w in &mut workloads {
            interleaved(&rt, w, INTERLEAVED_ROUNDS);
        }
    }
}
