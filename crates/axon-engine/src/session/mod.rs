//! Task sessions: each attempt's isolated git worktree, its scope check, and merge-back.
//!
//! DESIGN.md ("Sessions, merge and memory without a Cortex server"): when the workspace is a
//! git repository, a run gets an integration branch `axon/<run_id>` cut from the user's HEAD,
//! and each task attempt its own worktree and branch cut from the integration tip, so a task
//! sees what its prerequisites merged and nothing of its siblings in flight. A finished
//! attempt's changes are checked against its scope ([`scope::violations`]), committed and
//! merged into the integration branch without touching any checkout. The user's checkout and
//! branches are left alone; [`RunSessions::merge_into`] is the explicit opt-in.
//!
//! - [`git`]: the git CLI layer: [`GitRepo`], [`RunSessions`] and their outcomes.
//! - [`scope`]: which changed files a task's `scope`/`read_only` forbid.
//!
//! The engine drives this module; nothing here knows about runs' state or the store.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axon_engine::session::{GitRepo, MergeOutcome, RunSessions};
//!
//! let Some(repo) = GitRepo::discover(std::path::Path::new(".")).await? else {
//!     return Ok(()); // not a git repository: tasks run in place
//! };
//! let (sessions, _info) = RunSessions::start(repo, "0190a0b0-0000-7000-8000-000000000000").await?;
//! let wt = sessions.create("build", 1).await?;
//! std::fs::write(wt.path.join("out.txt"), "done\n")?;
//! sessions.commit(&wt, "build: attempt 1").await?;
//! if let MergeOutcome::Conflict { files } = sessions.merge(&wt, "merge build").await? {
//!     eprintln!("conflict in {files:?}"); // the worktree is kept for inspection
//! } else {
//!     sessions.remove(&wt).await?;
//! }
//! # Ok(())
//! # }
//! ```

pub mod git;
pub mod scope;

pub use git::{
    GitError, GitRepo, MergeIntoOutcome, MergeOutcome, RunSessions, StartInfo, Worktree,
};
pub use scope::violations;
