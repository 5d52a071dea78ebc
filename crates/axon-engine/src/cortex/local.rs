//! The embedded bridge: git worktree sessions ([`crate::session`]), episodes and tracking in
//! the store. No server to run (DESIGN.md, "Sessions, merge and memory without a Cortex
//! server").

use std::sync::Arc;

use async_trait::async_trait;
use axon_core::model::{ErrorType, SessionScope};
use axon_store::{Store, StoreError, TrackUpdate};
use uuid::Uuid;

use super::{BridgeError, Context, CortexBridge, Notices, RunBridge, RunInfo, Session};
use crate::error::chain;
use crate::session::{GitError, GitRepo, MergeOutcome, RunSessions, Worktree, violations};

/// The embedded Cortex: sessions in git worktrees when the workspace is a git repository
/// (the workspace itself otherwise), episodes and tracking in the store (none without one).
#[derive(Clone, Default)]
pub struct LocalCortex {
    store: Option<Arc<dyn Store>>,
}

impl LocalCortex {
    /// A bridge keeping episodes and tracking in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store: Some(store) }
    }

    /// A bridge with sessions only (no episodes, no tracking).
    pub fn without_store() -> Self {
        Self::default()
    }
}

pub(super) fn git_error(e: GitError) -> BridgeError {
    classified("session", e.is_transient(), &e)
}

pub(super) fn store_error(e: StoreError) -> BridgeError {
    classified("store", e.is_transient(), &e)
}

/// A failure of `what` as a bridge error: transient ones are retryable
/// (`service_unavailable`), the others are `system_error`s.
fn classified(what: &str, transient: bool, e: &dyn std::error::Error) -> BridgeError {
    let kind = if transient {
        ErrorType::ServiceUnavailable
    } else {
        ErrorType::SystemError
    };
    BridgeError::new(kind, format!("{what}: {}", chain(e)))
}

/// `scope` with its paths made relative to the repository's root, for a workspace at `prefix`
/// below it. An empty writable list stays empty (anything may change).
fn rooted(scope: &SessionScope, prefix: &str) -> SessionScope {
    if prefix.is_empty() {
        return scope.clone();
    }
    let root = |p: &String| format!("{prefix}/{}", p.trim_start_matches("./"));
    SessionScope {
        paths: scope.paths.iter().map(root).collect(),
        read_only_paths: scope.read_only_paths.iter().map(root).collect(),
    }
}

#[async_trait]
impl CortexBridge for LocalCortex {
    async fn open_run(&self, run: &RunInfo) -> Result<Arc<dyn RunBridge>, BridgeError> {
        let mut notices = Vec::new();
        let repo = match GitRepo::discover(&run.workspace).await.map_err(git_error)? {
            Some(repo) if repo.ignores(&run.workspace).await.map_err(git_error)? => {
                notices.push(format!(
                    "{} is inside git repository {} but ignored by it: tasks run in it directly, without isolation",
                    run.workspace.display(),
                    repo.root().display()
                ));
                None
            }
            Some(repo) => Some(repo),
            None => {
                notices.push(format!(
                    "{} is not a git repository: tasks run in it directly, without isolation",
                    run.workspace.display()
                ));
                None
            }
        };
        let sessions = match repo {
            None => None,
            Some(repo) => {
                let (sessions, info) = RunSessions::start(repo, &run.run_id.to_string())
                    .await
                    .map_err(git_error)?;
                let from = if info.resumed {
                    "resumed".to_owned()
                } else {
                    format!("from {}", info.head)
                };
                notices.push(format!(
                    "tasks work in git worktrees under .axon/worktrees; their changes merge into branch `{}` ({from})",
                    sessions.integration_branch()
                ));
                if info.dirty && !info.resumed {
                    notices.push(
                        "the working tree has uncommitted changes: the run starts from HEAD and does not see them"
                            .to_owned(),
                    );
                }
                Some(sessions)
            }
        };
        if let Some(store) = &self.store {
            let now = crate::run::now_ms();
            let mut updates = Vec::with_capacity(run.tasks.len() + 1);
            updates.push(TrackUpdate::workflow(&run.workflow_name, "running", now));
            if !run.resumed {
                updates.extend(
                    run.tasks
                        .iter()
                        .map(|(id, name)| TrackUpdate::task(id, name, "pending", now)),
                );
            }
            store
                .track(run.run_id, &updates)
                .await
                .map_err(store_error)?;
        }
        Ok(Arc::new(LocalRun {
            run_id: run.run_id,
            workspace: run.workspace.clone(),
            sessions,
            store: self.store.clone(),
            notices,
        }))
    }

    async fn search_episodes(&self, query: &str, limit: u32) -> Result<Context, BridgeError> {
        let Some(store) = &self.store else {
            return Ok(Context::default());
        };
        let hits = store
            .search_episodes(query, limit)
            .await
            .map_err(store_error)?;
        Ok(Context {
            episodes: hits
                .iter()
                .map(|h| serde_json::to_value(h).unwrap_or(serde_json::Value::Null))
                .collect(),
            warning: None,
        })
    }
}

struct LocalRun {
    run_id: Uuid,
    workspace: std::path::PathBuf,
    sessions: Option<RunSessions>,
    store: Option<Arc<dyn Store>>,
    notices: Notices,
}

impl LocalRun {
    fn worktree(&self, sessions: &RunSessions, session: &Session) -> Worktree {
        Worktree {
            path: sessions.worktree_path(&session.task_id, session.attempt),
            branch: sessions.task_branch(&session.task_id, session.attempt),
            base: session.base.clone().unwrap_or_default(),
            task_id: session.task_id.clone(),
            attempt: session.attempt,
        }
    }

    async fn merge(&self, sessions: &RunSessions, wt: &Worktree) -> Result<(), BridgeError> {
        let message = format!(
            "axon: merge task {} (attempt {}) of run {}",
            wt.task_id, wt.attempt, self.run_id
        );
        match sessions.merge(wt, &message).await.map_err(git_error)? {
            MergeOutcome::Merged { .. }
            | MergeOutcome::AlreadyMerged
            | MergeOutcome::NothingToMerge => Ok(()),
            MergeOutcome::Conflict { files } => Err(BridgeError::new(
                ErrorType::MergeConflict,
                format!(
                    "merge conflict in {} (worktree kept at {}, branch {})",
                    files.join(", "),
                    wt.path.display(),
                    wt.branch
                ),
            )),
        }
    }
}

#[async_trait]
impl RunBridge for LocalRun {
    fn notices(&self) -> Notices {
        self.notices.clone()
    }

    async fn create_session(&self, task_id: &str, attempt: u32) -> Result<Session, BridgeError> {
        let Some(sessions) = &self.sessions else {
            return Ok(Session {
                task_id: task_id.to_owned(),
                attempt,
                dir: self.workspace.clone(),
                isolated: false,
                base: None,
                cortex: None,
            });
        };
        let wt = sessions.create(task_id, attempt).await.map_err(git_error)?;
        // A workspace below the repository's root: the task works in the same place of its
        // worktree.
        let prefix = sessions.repo().prefix();
        let dir = if prefix.is_empty() {
            wt.path
        } else {
            wt.path.join(prefix)
        };
        Ok(Session {
            task_id: task_id.to_owned(),
            attempt,
            dir,
            isolated: true,
            base: Some(wt.base),
            cortex: None,
        })
    }

    async fn seal_session(
        &self,
        session: &Session,
        scope: &SessionScope,
    ) -> Result<bool, BridgeError> {
        let Some(sessions) = self.sessions.as_ref().filter(|_| session.isolated) else {
            return Ok(false);
        };
        let wt = self.worktree(sessions, session);
        let changed = sessions.changed_files(&wt).await.map_err(git_error)?;
        // Scope paths are relative to the workspace; changed files to the repository's root.
        let bad = violations(&changed, &rooted(scope, sessions.repo().prefix()));
        if !bad.is_empty() {
            return Err(BridgeError::new(
                ErrorType::ScopeViolation,
                format!(
                    "changed files its scope does not allow: {} (worktree kept at {})",
                    bad.join(", "),
                    wt.path.display()
                ),
            ));
        }
        let message = format!(
            "axon: task {} (attempt {}) of run {}",
            session.task_id, session.attempt, self.run_id
        );
        let commit = sessions.commit(&wt, &message).await.map_err(git_error)?;
        Ok(commit.is_some())
    }

    async fn merge_session(&self, session: &Session) -> Result<(), BridgeError> {
        let Some(sessions) = self.sessions.as_ref().filter(|_| session.isolated) else {
            return Ok(());
        };
        let wt = self.worktree(sessions, session);
        self.merge(sessions, &wt).await
    }

    async fn close_session(&self, session: &Session, keep: bool) {
        let Some(sessions) = self.sessions.as_ref().filter(|_| session.isolated) else {
            return;
        };
        if keep {
            return;
        }
        // The branch stays until the run ends: after a crash it is how `recover_merge`
        // knows the work was merged (`RunBridge::repair` deletes it when the run ends).
        let wt = self.worktree(sessions, session);
        if let Err(e) = sessions.release(&wt).await {
            tracing::warn!(task = %session.task_id, error = %e, "could not remove a worktree");
        }
    }

    async fn recover_merge(&self, task_id: &str, attempt: u32) -> Result<(), BridgeError> {
        let Some(sessions) = &self.sessions else {
            return Ok(());
        };
        match sessions.open(task_id, attempt).await.map_err(git_error)? {
            Some(wt) => {
                self.merge(sessions, &wt).await?;
                if let Err(e) = sessions.release(&wt).await {
                    tracing::warn!(task = %task_id, error = %e, "could not remove a worktree");
                }
                Ok(())
            }
            None => Err(BridgeError::new(
                ErrorType::SystemError,
                format!(
                    "the branch of task {task_id} attempt {attempt} is gone: its changes cannot be merged"
                ),
            )),
        }
    }

    async fn repair(&self, keep: &[(String, u32)]) -> Result<(), BridgeError> {
        let Some(sessions) = &self.sessions else {
            return Ok(());
        };
        sessions
            .repair(|task, attempt| keep.iter().any(|(t, a)| t == task && *a == attempt))
            .await
            .map_err(git_error)
    }

    async fn track(&self, updates: Vec<TrackUpdate>) -> Result<(), BridgeError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        store
            .track(self.run_id, &updates)
            .await
            .map_err(store_error)
    }

    async fn close_run(
        &self,
        succeeded: bool,
        merge_into: Option<&str>,
    ) -> Result<Notices, BridgeError> {
        let mut notices = Vec::new();
        let Some(sessions) = &self.sessions else {
            if merge_into.is_some() {
                notices
                    .push("--merge-into ignored: the workspace is not a git repository".to_owned());
            }
            return Ok(notices);
        };
        match (succeeded, merge_into) {
            (true, Some(branch)) => {
                let outcome = sessions.merge_into(branch).await.map_err(git_error)?;
                notices.push(format!("{outcome}"));
            }
            (false, Some(branch)) => notices.push(format!(
                "`{branch}` left unchanged: the run did not fully succeed (its work is on branch `{}`)",
                sessions.integration_branch()
            )),
            (_, None) => notices.push(format!(
                "the run's work is on branch `{}`",
                sessions.integration_branch()
            )),
        }
        Ok(notices)
    }
}
