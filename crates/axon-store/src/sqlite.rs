//! The embedded SQLite store: one file (default `.axon/axon.db`), WAL mode, `synchronous =
//! FULL` so a committed transition survives power loss, versioned migrations embedded from
//! `migrations/sqlite/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use axon_core::model::{ErrorType, RunStatus, TaskStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::{Batch, EventRecord, Lease, RunRecord, RunSummary, Store, StoreError, TaskRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `path` and brings its
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created, the file cannot be opened, or a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    /// Opens a private in-memory database (for tests and embedding without a file).
    ///
    /// # Errors
    ///
    /// When SQLite cannot be initialised.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: every connection to `:memory:` is a different database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(Box::new(e)))?;
        Ok(Self { pool })
    }
}

fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.into(),
    }
}

fn u32_of(v: i64, table: &'static str, col: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(table, format!("{col} = {v} is out of range")))
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    let id: String = row.try_get("run_id")?;
    let status: String = row.try_get("status")?;
    Ok(RunRecord {
        run_id: Uuid::parse_str(&id).map_err(|e| corrupt("runs", format!("run_id {id}: {e}")))?,
        workflow_id: row.try_get("workflow_id")?,
        workflow_name: row.try_get("workflow_name")?,
        status: status.parse().map_err(|e: String| corrupt("runs", e))?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        workspace: row.try_get("workspace")?,
        workflow_source: row.try_get("workflow_source")?,
        workflow_format: row.try_get("workflow_format")?,
        agents_source: row.try_get("agents_source")?,
        agents_format: row.try_get("agents_format")?,
        agents_dir: row.try_get("agents_dir")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
    })
}

fn lease_from_row(row: &SqliteRow) -> Result<Option<Lease>, StoreError> {
    let host: Option<String> = row.try_get("lease_host")?;
    let pid: Option<i64> = row.try_get("lease_pid")?;
    let expires: Option<i64> = row.try_get("lease_expires_ms")?;
    Ok(match (host, pid, expires) {
        (Some(host), Some(pid), Some(expires_at_ms)) => Some(Lease {
            host,
            pid: u32_of(pid, "runs", "lease_pid")?,
            expires_at_ms,
        }),
        _ => None,
    })
}

fn task_from_row(row: &SqliteRow) -> Result<TaskRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let kind: Option<String> = row.try_get("error_kind")?;
    let output: Option<String> = row.try_get("output")?;
    Ok(TaskRecord {
        task_id: row.try_get("task_id")?,
        position: u32_of(row.try_get("position")?, "tasks", "position")?,
        name: row.try_get("name")?,
        status: status.parse().map_err(|e: String| corrupt("tasks", e))?,
        attempts: u32_of(row.try_get("attempts")?, "tasks", "attempts")?,
        agent: row.try_get("agent")?,
        agent_pid: row
            .try_get::<Option<i64>, _>("agent_pid")?
            .map(|p| u32_of(p, "tasks", "agent_pid"))
            .transpose()?,
        progress: row.try_get("progress")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        error: row.try_get("error")?,
        error_kind: kind
            .map(|k| k.parse::<ErrorType>())
            .transpose()
            .map_err(|e| corrupt("tasks", e))?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt("tasks", format!("output is not JSON: {e}")))?,
    })
}

async fn upsert_task(
    tx: &mut Transaction<'_, Sqlite>,
    run_id: &str,
    t: &TaskRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tasks (run_id, task_id, position, name, status, attempts, agent, agent_pid,
                            progress, started_at_ms, finished_at_ms, error, error_kind, output)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (run_id, task_id) DO UPDATE SET
            status = excluded.status, attempts = excluded.attempts, agent = excluded.agent,
            agent_pid = excluded.agent_pid,
            progress = excluded.progress, started_at_ms = excluded.started_at_ms,
            finished_at_ms = excluded.finished_at_ms, error = excluded.error,
            error_kind = excluded.error_kind, output = excluded.output",
    )
    .bind(run_id)
    .bind(&t.task_id)
    .bind(i64::from(t.position))
    .bind(&t.name)
    .bind(t.status.as_str())
    .bind(i64::from(t.attempts))
    .bind(&t.agent)
    .bind(t.agent_pid.map(i64::from))
    .bind(t.progress)
    .bind(t.started_at_ms)
    .bind(t.finished_at_ms)
    .bind(&t.error)
    .bind(t.error_kind.map(|k| k.as_str()))
    .bind(t.output.as_ref().map(|o| o.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn append_event(
    tx: &mut Transaction<'_, Sqlite>,
    run_id: &str,
    e: &EventRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (run_id, task_id, kind, attempt, agent, at_ms, data)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run_id)
    .bind(&e.task_id)
    .bind(&e.kind)
    .bind(e.attempt.map(i64::from))
    .bind(&e.agent)
    .bind(e.at_ms)
    .bind(if e.data.is_null() {
        None
    } else {
        Some(e.data.to_string())
    })
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(
        &self,
        run: &RunRecord,
        tasks: &[TaskRecord],
        holder: &Lease,
    ) -> Result<(), StoreError> {
        let id = run.run_id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO runs (run_id, workflow_id, workflow_name, status, created_at_ms,
                               finished_at_ms, workspace, workflow_source, workflow_format,
                               agents_source, agents_format, agents_dir, cancel_requested,
                               lease_host, lease_pid, lease_expires_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&run.workflow_id)
        .bind(&run.workflow_name)
        .bind(run.status.as_str())
        .bind(run.created_at_ms)
        .bind(run.finished_at_ms)
        .bind(&run.workspace)
        .bind(&run.workflow_source)
        .bind(&run.workflow_format)
        .bind(&run.agents_source)
        .bind(&run.agents_format)
        .bind(&run.agents_dir)
        .bind(i64::from(run.cancel_requested))
        .bind(&holder.host)
        .bind(i64::from(holder.pid))
        .bind(holder.expires_at_ms)
        .execute(&mut *tx)
        .await?;
        for t in tasks {
            upsert_task(&mut tx, &id, t).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn commit(&self, run_id: Uuid, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let id = run_id.to_string();
        let mut tx = self.pool.begin().await?;
        for e in &batch.events {
            append_event(&mut tx, &id, e).await?;
        }
        for t in &batch.tasks {
            upsert_task(&mut tx, &id, t).await?;
        }
        if let Some((status, finished)) = batch.run_status {
            let done =
                sqlx::query("UPDATE runs SET status = ?, finished_at_ms = ? WHERE run_id = ?")
                    .bind(status.as_str())
                    .bind(finished)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NoSuchRun(run_id));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn run(&self, run_id: Uuid) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE run_id = ?")
            .bind(run_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn tasks(&self, run_id: Uuid) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE run_id = ? ORDER BY position")
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn runs(&self, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM runs ORDER BY created_at_ms DESC, run_id DESC LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let run = run_from_row(row)?;
            let lease = lease_from_row(row)?;
            let count_rows = sqlx::query(
                "SELECT status, COUNT(*) AS n FROM tasks WHERE run_id = ? GROUP BY status ORDER BY status",
            )
            .bind(run.run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
            let mut counts = Vec::with_capacity(count_rows.len());
            for r in &count_rows {
                let status: String = r.try_get("status")?;
                let status: TaskStatus = status.parse().map_err(|e: String| corrupt("tasks", e))?;
                counts.push((status, u32_of(r.try_get("n")?, "tasks", "count")?));
            }
            out.push(RunSummary { run, lease, counts });
        }
        Ok(out)
    }

    async fn events(
        &self,
        run_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(run_id.to_string())
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let data: Option<String> = row.try_get("data")?;
                let attempt: Option<i64> = row.try_get("attempt")?;
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    run_id,
                    task_id: row.try_get("task_id")?,
                    kind: row.try_get("kind")?,
                    attempt: attempt
                        .map(|a| u32_of(a, "events", "attempt"))
                        .transpose()?,
                    agent: row.try_get("agent")?,
                    at_ms: row.try_get("at_ms")?,
                    data: match data {
                        Some(d) => serde_json::from_str(&d)
                            .map_err(|e| corrupt("events", format!("data is not JSON: {e}")))?,
                        None => serde_json::Value::Null,
                    },
                })
            })
            .collect()
    }

    async fn lease(&self, run_id: Uuid) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query(
            "SELECT lease_host, lease_pid, lease_expires_ms FROM runs WHERE run_id = ?",
        )
        .bind(run_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NoSuchRun(run_id))?;
        lease_from_row(&row)
    }

    async fn swap_lease(
        &self,
        run_id: Uuid,
        expected: Option<&Lease>,
        new: &Lease,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET lease_host = ?, lease_pid = ?, lease_expires_ms = ?
             WHERE run_id = ? AND lease_host IS ? AND lease_pid IS ? AND lease_expires_ms IS ?",
        )
        .bind(&new.host)
        .bind(i64::from(new.pid))
        .bind(new.expires_at_ms)
        .bind(run_id.to_string())
        .bind(expected.map(|l| l.host.as_str()))
        .bind(expected.map(|l| i64::from(l.pid)))
        .bind(expected.map(|l| l.expires_at_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_lease(
        &self,
        run_id: Uuid,
        host: &str,
        pid: u32,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET lease_expires_ms = ? WHERE run_id = ? AND lease_host = ? AND lease_pid = ?",
        )
        .bind(expires_at_ms)
        .bind(run_id.to_string())
        .bind(host)
        .bind(i64::from(pid))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, run_id: Uuid, host: &str, pid: u32) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET lease_host = NULL, lease_pid = NULL, lease_expires_ms = NULL
             WHERE run_id = ? AND lease_host = ? AND lease_pid = ?",
        )
        .bind(run_id.to_string())
        .bind(host)
        .bind(i64::from(pid))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn request_cancel(&self, run_id: Uuid) -> Result<bool, StoreError> {
        let Some(run) = self.run(run_id).await? else {
            return Err(StoreError::NoSuchRun(run_id));
        };
        if run.status != RunStatus::Running {
            return Ok(false);
        }
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?")
            .bind(run_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    async fn cancel_requested(&self, run_id: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT cancel_requested FROM runs WHERE run_id = ?")
            .bind(run_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NoSuchRun(run_id))?;
        Ok(row.try_get::<i64, _>("cancel_requested")? != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_record(id: Uuid) -> RunRecord {
        RunRecord {
            run_id: id,
            workflow_id: "wf".into(),
            workflow_name: "Workflow".into(),
            status: RunStatus::Running,
            created_at_ms: 1_000,
            finished_at_ms: None,
            workspace: "/tmp/ws".into(),
            workflow_source: "name: x".into(),
            workflow_format: "yaml".into(),
            agents_source: None,
            agents_format: None,
            agents_dir: None,
            cancel_requested: false,
        }
    }

    fn lease(pid: u32, expires: i64) -> Lease {
        Lease {
            host: "h".into(),
            pid,
            expires_at_ms: expires,
        }
    }

    #[tokio::test]
    async fn a_committed_batch_is_read_back_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sub/axon.db"))
            .await
            .unwrap();
        let id = Uuid::now_v7();
        let tasks = vec![
            TaskRecord::pending("a", 0, "A"),
            TaskRecord::pending("b", 1, "B"),
        ];
        store
            .create_run(&run_record(id), &tasks, &lease(1, 5_000))
            .await
            .unwrap();

        let mut done = tasks[0].clone();
        done.status = TaskStatus::Succeeded;
        done.attempts = 2;
        done.output = Some(serde_json::json!({"files": 3}));
        done.error_kind = Some(ErrorType::Network);
        let batch = Batch {
            events: vec![EventRecord {
                seq: 0,
                run_id: id,
                task_id: Some("a".into()),
                kind: "task_succeeded".into(),
                attempt: Some(2),
                agent: Some("dev".into()),
                at_ms: 2_000,
                data: serde_json::Value::Null,
            }],
            tasks: vec![done.clone()],
            run_status: Some((RunStatus::Succeeded, Some(3_000))),
        };
        store.commit(id, &batch).await.unwrap();

        // A second handle on the same file sees everything (it was committed, not cached).
        let again = SqliteStore::open(&dir.path().join("sub/axon.db"))
            .await
            .unwrap();
        let read = again.tasks(id).await.unwrap();
        assert_eq!(read[0], done);
        assert_eq!(read[1].status, TaskStatus::Pending);
        let run = again.run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.finished_at_ms, Some(3_000));
        let events = again.events(id, 0, 100).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["task_succeeded"]);
        let runs = again.runs(10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].counts.contains(&(TaskStatus::Succeeded, 1)));
    }

    #[tokio::test]
    async fn lease_swap_is_compare_and_set() {
        let store = SqliteStore::in_memory().await.unwrap();
        let id = Uuid::now_v7();
        let first = lease(1, 5_000);
        store
            .create_run(&run_record(id), &[], &first)
            .await
            .unwrap();
        assert_eq!(store.lease(id).await.unwrap(), Some(first.clone()));

        let second = lease(2, 9_000);
        // Someone else's view of the lease is stale: refused.
        assert!(
            !store
                .swap_lease(id, Some(&lease(1, 4_000)), &second)
                .await
                .unwrap()
        );
        assert!(store.swap_lease(id, Some(&first), &second).await.unwrap());
        // The old holder can no longer renew.
        assert!(!store.renew_lease(id, "h", 1, 10_000).await.unwrap());
        assert!(store.renew_lease(id, "h", 2, 10_000).await.unwrap());
        store.release_lease(id, "h", 2).await.unwrap();
        assert_eq!(store.lease(id).await.unwrap(), None);
        assert!(store.swap_lease(id, None, &first).await.unwrap());
    }

    #[tokio::test]
    async fn cancel_requests_only_apply_to_running_runs() {
        let store = SqliteStore::in_memory().await.unwrap();
        let id = Uuid::now_v7();
        store
            .create_run(&run_record(id), &[], &lease(1, 1))
            .await
            .unwrap();
        assert!(!store.cancel_requested(id).await.unwrap());
        assert!(store.request_cancel(id).await.unwrap());
        assert!(store.cancel_requested(id).await.unwrap());
        store
            .commit(
                id,
                &Batch {
                    run_status: Some((RunStatus::Cancelled, Some(2))),
                    ..Batch::default()
                },
            )
            .await
            .unwrap();
        assert!(!store.request_cancel(id).await.unwrap());
        assert!(matches!(
            store.request_cancel(Uuid::now_v7()).await,
            Err(StoreError::NoSuchRun(_))
        ));
    }
}
