//! The embedded SQLite store: one file (default `.axon/axon.db`), WAL mode, `synchronous =
//! FULL` so a committed transition survives power loss, versioned migrations embedded from
//! `migrations/sqlite/`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use axon_core::model::{ErrorType, RunStatus, TaskStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use crate::episode::query_words;
use crate::search::{self, Parallel, Plan, Ranked, Ranker, WordStats};
use crate::{
    Batch, CortexIdRecord, CortexSessionRecord, EpisodeHit, EpisodeRecord, EventRecord, Lease,
    NewOutboxItem, OutboxCounts, OutboxItem, OutboxRun, RunRecord, RunSummary, Store, StoreError,
    TaskRecord, TrackRecord, TrackUpdate,
};

mod cortex;
mod script;

use self::script::Script;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite implementation of [`Store`].
///
/// Reads go through a pool of connections (WAL lets them run beside a write). Writes go
/// through one connection of their own: writers of this process queue for it and are handed
/// it the moment it is free, instead of meeting SQLite's write lock and sleeping in its busy
/// handler (which backs off in steps of milliseconds: a commit that met the courier's write
/// waited for the next step, not for the write). Other processes' writers still meet the lock
/// and wait up to the busy timeout.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// How a search may split a big ranking across the pool's connections.
    parallel: Parallel,
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
            .connect_with(options.clone())
            .await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        // Rankings are not split unless asked (`with_parallel_search`).
        Self::migrated(pool, writer, Parallel::NEVER).await
    }

    /// Lets an episode search split a ranking that may score 8,000 episodes or more into
    /// `parts` rowid ranges ranked at the same time on the pool's connections (at most 4;
    /// 1 never splits; the answer is the same either way). Worth it where cores are idle
    /// while searches run: it cut the slowest searches by a third on an idle 2-core machine,
    /// and made them slower on a busy one (`crate` docs of the search, BENCHMARKS.md). A store
    /// in memory has one connection and never splits.
    #[must_use]
    pub fn with_parallel_search(mut self, parts: usize) -> Self {
        if self.pool.options().get_max_connections() > 1 {
            self.parallel = Parallel {
                parts: parts.clamp(1, 4),
                min_rows: 8_000,
            };
        }
        self
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
        Self::migrated(pool.clone(), pool, Parallel::NEVER).await
    }

    async fn migrated(
        pool: SqlitePool,
        writer: SqlitePool,
        parallel: Parallel,
    ) -> Result<Self, StoreError> {
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migration(Box::new(e)))?;
        Ok(Self {
            pool,
            writer,
            parallel,
        })
    }
}

/// How a search found its answer (for tests).
#[derive(Debug, Default)]
#[cfg_attr(not(test), allow(dead_code, reason = "read by tests"))]
struct Trace {
    /// How each ranking was found.
    plans: Vec<Plan>,
    /// How many rankings were split across connections.
    splits: usize,
    /// How many ranges of those were ranked again, a write having come in between.
    reranked: usize,
}

impl Trace {
    fn of(ranker: &Ranker<'_>, plans: Vec<Plan>) -> Self {
        Self {
            plans,
            splits: ranker.splits,
            reranked: ranker.reranked,
        }
    }
}

impl SqliteStore {
    /// The search behind [`Store::search_episodes`], and how it found its answer.
    ///
    /// It answers as of one snapshot (its transaction's): the document counts its bounds rest
    /// on must be those of the rows it ranks. Rankings split across connections check that
    /// they read the same index (see [`search`](crate::search)).
    async fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<EpisodeHit>, Trace), StoreError> {
        let words = query_words(query);
        if words.is_empty() || limit == 0 {
            return Ok((Vec::new(), Trace::default()));
        }
        // Deferred: it only reads, so it takes no lock and never holds up a writer (WAL).
        let mut tx = self.pool.begin().await?;
        let mut plans = Vec::new();
        // One word needs no counts (there is nothing to leave out and nothing to bound), only
        // the highest id: where the ranges of a split ranking end.
        let stats = if words.len() > 1 {
            WordStats::read(&mut tx, &words).await?
        } else {
            WordStats::read_last_id(&mut tx).await?
        };
        let mut ranker = Ranker::new(&mut tx, &self.pool, self.parallel);
        // A word in at least half of all episodes has a bm25 weight of (nearly) zero (FTS5
        // clamps its IDF), so it hardly changes the order of episodes matching another word,
        // but ranking every episode it matches would be most of the cost of a search. Search
        // without such words first; only if that finds too few, with them (they may then fill
        // the list).
        let common = stats.common(&words);
        if !common.is_empty() && common.len() < words.len() {
            let rare: Vec<String> = words
                .iter()
                .filter(|w| !common.contains(w))
                .cloned()
                .collect();
            let (ranked, plan) = search::best(&mut ranker, &rare, &stats, limit).await?;
            plans.push(plan);
            let hits = hits(ranker.conn(), &ranked).await?;
            if hits.len() >= limit as usize {
                let trace = Trace::of(&ranker, plans);
                tx.commit().await?;
                return Ok((hits, trace));
            }
        }
        let (ranked, plan) = search::best(&mut ranker, &words, &stats, limit).await?;
        plans.push(plan);
        let hits = hits(ranker.conn(), &ranked).await?;
        let trace = Trace::of(&ranker, plans);
        tx.commit().await?;
        Ok((hits, trace))
    }
}

/// The episodes of `ranked`, in its order, with their scores (an id whose episode is gone is
/// left out).
async fn hits(
    conn: &mut SqliteConnection,
    ranked: &[Ranked],
) -> Result<Vec<EpisodeHit>, StoreError> {
    if ranked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = ranked.iter().map(|r| r.id).collect();
    let rows = sqlx::query("SELECT * FROM episodes WHERE id IN (SELECT value FROM json_each(?))")
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut episodes = HashMap::with_capacity(rows.len());
    for row in &rows {
        let episode = episode_from_row(row)?;
        episodes.insert(episode.id, episode);
    }
    Ok(ranked
        .iter()
        .filter_map(|r| {
            episodes.remove(&r.id).map(|episode| EpisodeHit {
                episode,
                // bm25 is lower-is-better (and negative); `0.0 -` keeps a zero from printing
                // as `-0`.
                score: 0.0 - r.rank,
            })
        })
        .collect())
}

/// `n` copies of `one` (a placeholder like `?` or `(?, ?, ?)`), comma-separated: the list of a
/// statement built for a chunk of values (only placeholders are pasted in; values are bound).
pub(crate) fn placeholders(one: &str, n: usize) -> String {
    vec![one; n].join(", ")
}

pub(crate) fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
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
        merging: row.try_get::<i64, _>("merging")? != 0,
    })
}

/// Task rows written per script when a run is created (a script's statements are prepared
/// and cached together).
const TASKS_PER_SCRIPT: usize = 64;

/// Inserts or replaces a task's row (see [`upsert_task`]).
const UPSERT_TASK: &str =
    "INSERT INTO tasks (run_id, task_id, position, name, status, attempts, agent,
                       agent_pid, progress, started_at_ms, finished_at_ms, error, error_kind,
                       output, merging)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (run_id, task_id) DO UPDATE SET
       status = excluded.status, attempts = excluded.attempts, agent = excluded.agent,
       agent_pid = excluded.agent_pid,
       progress = excluded.progress, started_at_ms = excluded.started_at_ms,
       finished_at_ms = excluded.finished_at_ms, error = excluded.error,
       error_kind = excluded.error_kind, output = excluded.output,
       merging = excluded.merging";

/// Adds the statement that writes task record `t` of `run_id` to `script`.
fn upsert_task(script: &mut Script, run_id: &str, t: &TaskRecord) {
    script
        .statement(UPSERT_TASK)
        .bind(run_id)
        .bind(t.task_id.as_str())
        .bind(i64::from(t.position))
        .bind(t.name.as_str())
        .bind(t.status.as_str())
        .bind(i64::from(t.attempts))
        .bind(t.agent.as_deref())
        .bind(t.agent_pid.map(i64::from))
        .bind(t.progress)
        .bind(t.started_at_ms)
        .bind(t.finished_at_ms)
        .bind(t.error.as_deref())
        .bind(t.error_kind.map(|k| k.as_str()))
        .bind(t.output.as_ref().map(|o| o.to_string()))
        .bind(i64::from(t.merging));
}

/// Adds the statement that appends event `e` of `run_id` to `script`.
fn append_event(script: &mut Script, run_id: &str, e: &EventRecord) {
    script
        .statement(
            "INSERT INTO events (run_id, task_id, kind, attempt, agent, at_ms, data)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(e.task_id.as_deref())
        .bind(e.kind.as_str())
        .bind(e.attempt.map(i64::from))
        .bind(e.agent.as_deref())
        .bind(e.at_ms)
        .bind(if e.data.is_null() {
            None
        } else {
            Some(e.data.to_string())
        });
}

fn uuid_of(text: &str, table: &'static str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| corrupt(table, format!("run_id {text}: {e}")))
}

/// Inserts an episode (its full-text index follows by trigger).
const INSERT_EPISODE: &str =
    "INSERT INTO episodes (run_id, task_id, attempt, name, task_type, status,
                          agent, output, log_tail, error, duration_ms, finished_at_ms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Adds the statement that inserts episode `ep` to `script`.
fn insert_episode(script: &mut Script, ep: &EpisodeRecord) {
    script
        .statement(INSERT_EPISODE)
        .bind(ep.run_id.to_string())
        .bind(ep.task_id.as_str())
        .bind(i64::from(ep.attempt))
        .bind(ep.name.as_str())
        .bind(ep.task_type.as_str())
        .bind(ep.status.as_str())
        .bind(ep.agent.as_deref())
        .bind(ep.output.as_ref().map(|o| o.to_string()))
        .bind(ep.log_tail.as_deref())
        .bind(ep.error.as_deref())
        .bind(ep.duration_ms)
        .bind(ep.finished_at_ms);
}

fn episode_from_row(row: &SqliteRow) -> Result<EpisodeRecord, StoreError> {
    let run_id: String = row.try_get("run_id")?;
    let status: String = row.try_get("status")?;
    let output: Option<String> = row.try_get("output")?;
    Ok(EpisodeRecord {
        id: row.try_get("id")?,
        run_id: uuid_of(&run_id, "episodes")?,
        task_id: row.try_get("task_id")?,
        attempt: u32_of(row.try_get("attempt")?, "episodes", "attempt")?,
        name: row.try_get("name")?,
        task_type: row.try_get("task_type")?,
        status: status.parse().map_err(|e: String| corrupt("episodes", e))?,
        agent: row.try_get("agent")?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt("episodes", format!("output is not JSON: {e}")))?,
        log_tail: row.try_get("log_tail")?,
        error: row.try_get("error")?,
        duration_ms: row.try_get("duration_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

fn track_from_row(row: &SqliteRow) -> Result<TrackRecord, StoreError> {
    let run_id: String = row.try_get("run_id")?;
    Ok(TrackRecord {
        id: row.try_get("id")?,
        run_id: uuid_of(&run_id, "tracking")?,
        parent_id: row.try_get("parent_id")?,
        task_id: row.try_get("task_id")?,
        title: row.try_get("title")?,
        status: row.try_get("status")?,
        progress: row.try_get("progress")?,
        assigned_to: row.try_get("assigned_to")?,
        note: row.try_get("note")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// The id of the run's workflow record, created (titled after the workflow, with the run's
/// status) if missing.
async fn workflow_record(
    tx: &mut Transaction<'_, Sqlite>,
    run_id: Uuid,
    at_ms: i64,
) -> Result<i64, StoreError> {
    let id = run_id.to_string();
    let existing = sqlx::query("SELECT id FROM tracking WHERE run_id = ? AND task_id IS NULL")
        .bind(&id)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = existing {
        return Ok(row.try_get("id")?);
    }
    let done = sqlx::query(
        "INSERT INTO tracking (run_id, parent_id, task_id, title, status, created_at_ms,
                               updated_at_ms)
         SELECT run_id, NULL, NULL, workflow_name, status, ?, ? FROM runs WHERE run_id = ?",
    )
    .bind(at_ms)
    .bind(at_ms)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NoSuchRun(run_id));
    }
    Ok(done.last_insert_rowid())
}

/// Fails with [`StoreError::NoSuchRun`] unless the run exists.
async fn ensure_run(tx: &mut Transaction<'_, Sqlite>, run_id: Uuid) -> Result<(), StoreError> {
    let found = sqlx::query("SELECT 1 FROM runs WHERE run_id = ?")
        .bind(run_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchRun(run_id)),
    }
}

/// Enqueues one tracking call. It is the head of its (run, task) queue when nothing older of
/// that queue is undelivered (see `is_head` in migration 0005).
const INSERT_OUTBOX_ITEM: &str =
    "INSERT INTO outbox (run_id, task_id, kind, payload, created_at_ms,
                        next_attempt_at_ms, is_head)
    VALUES (?, ?, ?, ?, ?, ?, NOT EXISTS (
        SELECT 1 FROM outbox
        WHERE delivered_at_ms IS NULL AND run_id = ? AND task_id IS ?
    ))";

/// Enqueues tracking calls given as a JSON array of `{t: task, k: kind, p: payload text,
/// d: delay}`, in order. A call is the head of its queue when it is the first of its queue in
/// the array (`row_number`) and no undelivered call of the queue was there before.
const INSERT_OUTBOX_ITEMS: &str =
    "INSERT INTO outbox (run_id, task_id, kind, payload, created_at_ms,
                        next_attempt_at_ms, is_head)
    SELECT ?, c.task_id, c.kind, c.payload, ?, ? + c.delay_ms,
           c.nth = 1 AND NOT EXISTS (
               SELECT 1 FROM outbox AS o
               WHERE o.delivered_at_ms IS NULL AND o.run_id = ? AND o.task_id IS c.task_id
           )
    FROM (
        SELECT j.key AS ord, j.value ->> 't' AS task_id, j.value ->> 'k' AS kind,
               j.value ->> 'p' AS payload, j.value ->> 'd' AS delay_ms,
               row_number() OVER (PARTITION BY j.value ->> 't' ORDER BY j.key) AS nth
        FROM json_each(?) AS j
    ) AS c
    ORDER BY c.ord";

/// Up to this many calls go in one statement each; more go as one array (its window and sort
/// cost about as much as six single inserts).
const OUTBOX_ONE_BY_ONE: usize = 8;

/// A call as [`INSERT_OUTBOX_ITEMS`] reads it.
#[derive(serde::Serialize)]
struct OutboxCall<'a> {
    t: Option<&'a str>,
    k: &'a str,
    p: String,
    d: u32,
}

/// Adds the statements that enqueue tracking calls `items` of `run_id` to `script`, in order,
/// each due `delay_ms` after `at_ms`.
fn insert_outbox_items(script: &mut Script, run_id: &str, items: &[NewOutboxItem], at_ms: i64) {
    if items.len() <= OUTBOX_ONE_BY_ONE {
        for item in items {
            script
                .statement(INSERT_OUTBOX_ITEM)
                .bind(run_id)
                .bind(item.task_id.as_deref())
                .bind(item.kind.as_str())
                .bind(item.payload.to_string())
                .bind(at_ms)
                .bind(at_ms.saturating_add(i64::from(item.delay_ms)))
                .bind(run_id)
                .bind(item.task_id.as_deref());
        }
        return;
    }
    let calls: Vec<OutboxCall<'_>> = items
        .iter()
        .map(|i| OutboxCall {
            t: i.task_id.as_deref(),
            k: &i.kind,
            p: i.payload.to_string(),
            d: i.delay_ms,
        })
        .collect();
    script
        .statement(INSERT_OUTBOX_ITEMS)
        .bind(run_id)
        .bind(at_ms)
        .bind(at_ms)
        .bind(run_id)
        .bind_json(&calls);
}

/// Makes the next undelivered call of each queue that a call of the JSON array `?` (ids) is
/// in, other than those calls, the queue's head: run before [`DELETE_OUTBOX_ITEMS`] deletes
/// them. (A queue whose head stays, because a call behind it was delivered first, keeps it.)
const NEXT_OUTBOX_HEADS: &str = "UPDATE outbox SET is_head = 1 WHERE id IN (
        SELECT (
            SELECT min(o.id) FROM outbox AS o
            WHERE o.delivered_at_ms IS NULL AND o.run_id = d.run_id AND o.task_id IS d.task_id
              AND o.id NOT IN (SELECT value FROM json_each(?))
        )
        FROM outbox AS d
        WHERE d.delivered_at_ms IS NULL AND d.id IN (SELECT value FROM json_each(?))
    ) AND is_head = 0";

/// Deletes the undelivered calls of the JSON array `?` (ids): they are delivered.
const DELETE_OUTBOX_ITEMS: &str = "DELETE FROM outbox
    WHERE delivered_at_ms IS NULL AND id IN (SELECT value FROM json_each(?))";

/// Marks calls `ids` delivered in `tx`: makes the next call of each of their queues the queue's
/// head, and deletes them (see [`Store::outbox_delivered`]). Two statements in one script,
/// whatever the number of ids (the ids as one JSON array: the same text, so the same prepared
/// statements), and no row sent back. Deleting a call costs less than rewriting it as
/// delivered, and leaves nothing to prune.
async fn mark_delivered(tx: &mut Transaction<'_, Sqlite>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut script = Script::default();
    script
        .statement(NEXT_OUTBOX_HEADS)
        .bind_json(&ids)
        .bind_json(&ids);
    script.statement(DELETE_OUTBOX_ITEMS).bind_json(&ids);
    script.execute(&mut **tx).await?;
    Ok(())
}

/// The query of the outbox calls an inner `SELECT * FROM outbox ...` finds, as one JSON
/// array (see [`outbox_items`]).
macro_rules! outbox_items_json {
    ($inner:literal) => {
        concat!(
            "SELECT json_group_array(json_array(id, run_id, task_id, kind, payload, attempts,
                                                next_attempt_at_ms, last_error, created_at_ms)
                                     ORDER BY id)
             FROM (",
            $inner,
            ")"
        )
    };
}
pub(crate) use outbox_items_json;

/// An outbox call as [`outbox_items_json`] spells it.
type OutboxRow = (
    i64,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    Option<String>,
    i64,
);

/// Runs `query` (made with [`outbox_items_json`]) and reads its calls. The calls come as one
/// row, one JSON array: a row each would be a message each between SQLite's thread and this
/// one, which cost more than reading them.
pub(crate) async fn outbox_items<'q>(
    query: sqlx::query::QueryScalar<'q, Sqlite, String, sqlx::sqlite::SqliteArguments>,
    pool: &SqlitePool,
) -> Result<Vec<OutboxItem>, StoreError> {
    let text = query.fetch_one(pool).await?;
    let rows: Vec<OutboxRow> = serde_json::from_str(&text)
        .map_err(|e| corrupt("outbox", format!("unreadable calls: {e}")))?;
    rows.into_iter().map(outbox_item_from_row).collect()
}

fn outbox_item_from_row(row: OutboxRow) -> Result<OutboxItem, StoreError> {
    let (id, run_id, task_id, kind, payload, attempts, next_attempt_at_ms, last_error, created) =
        row;
    Ok(OutboxItem {
        id,
        run_id: uuid_of(&run_id, "outbox")?,
        task_id,
        kind,
        payload: serde_json::from_str(&payload)
            .map_err(|e| corrupt("outbox", format!("payload is not JSON: {e}")))?,
        attempts: u32_of(attempts, "outbox", "attempts")?,
        next_attempt_at_ms,
        last_error,
        created_at_ms: created,
    })
}

fn u64_of(v: i64, table: &'static str, col: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(table, format!("{col} = {v} is out of range")))
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
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
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
        // A script per chunk of tasks: one round trip to SQLite's thread each.
        for chunk in tasks.chunks(TASKS_PER_SCRIPT) {
            let mut script = Script::default();
            for t in chunk {
                upsert_task(&mut script, &id, t);
            }
            script.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn commit(&self, run_id: Uuid, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let id = run_id.to_string();
        // Everything but the run's status in one script: one round trip to SQLite's thread.
        let mut script = Script::default();
        for e in &batch.events {
            append_event(&mut script, &id, e);
        }
        for t in &batch.tasks {
            upsert_task(&mut script, &id, t);
        }
        insert_outbox_items(&mut script, &id, &batch.outbox, batch.outbox_at_ms);
        for ep in &batch.episodes {
            insert_episode(&mut script, ep);
        }
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        script.execute(&mut *tx).await?;
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
        .execute(&self.writer)
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
        .execute(&self.writer)
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
        .execute(&self.writer)
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
            .execute(&self.writer)
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

    async fn record_episode(&self, episode: &EpisodeRecord) -> Result<i64, StoreError> {
        let mut script = Script::default();
        insert_episode(&mut script, episode);
        Ok(script.execute(&self.writer).await?.last_insert_rowid())
    }

    async fn search_episodes(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<EpisodeHit>, StoreError> {
        Ok(self.search(query, limit).await?.0)
    }

    async fn track(&self, run_id: Uuid, updates: &[TrackUpdate]) -> Result<(), StoreError> {
        let Some(first) = updates.first() else {
            return Ok(());
        };
        let id = run_id.to_string();
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let parent = workflow_record(&mut tx, run_id, first.at_ms).await?;
        for u in updates {
            match &u.task_id {
                None => {
                    sqlx::query(
                        "UPDATE tracking SET title = ?, status = ?,
                            progress = COALESCE(?, progress),
                            assigned_to = COALESCE(?, assigned_to),
                            note = COALESCE(?, note), updated_at_ms = ?
                         WHERE id = ?",
                    )
                    .bind(&u.title)
                    .bind(&u.status)
                    .bind(u.progress)
                    .bind(&u.assigned_to)
                    .bind(&u.note)
                    .bind(u.at_ms)
                    .bind(parent)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(task_id) => {
                    sqlx::query(
                        "INSERT INTO tracking (run_id, parent_id, task_id, title, status, progress,
                                               assigned_to, note, created_at_ms, updated_at_ms)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT (run_id, task_id) DO UPDATE SET
                            parent_id = excluded.parent_id,
                            title = excluded.title, status = excluded.status,
                            progress = COALESCE(excluded.progress, tracking.progress),
                            assigned_to = COALESCE(excluded.assigned_to, tracking.assigned_to),
                            note = COALESCE(excluded.note, tracking.note),
                            updated_at_ms = excluded.updated_at_ms",
                    )
                    .bind(&id)
                    .bind(parent)
                    .bind(task_id)
                    .bind(&u.title)
                    .bind(&u.status)
                    .bind(u.progress)
                    .bind(&u.assigned_to)
                    .bind(&u.note)
                    .bind(u.at_ms)
                    .bind(u.at_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tracking(&self, run_id: Uuid) -> Result<Vec<TrackRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM tracking WHERE run_id = ? ORDER BY task_id IS NOT NULL, id")
                .bind(run_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(track_from_row).collect()
    }

    async fn outbox_push(
        &self,
        run_id: Uuid,
        items: &[NewOutboxItem],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let id = run_id.to_string();
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        ensure_run(&mut tx, run_id).await?;
        let mut script = Script::default();
        insert_outbox_items(&mut script, &id, items, at_ms);
        script.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_due(
        &self,
        run_id: Option<Uuid>,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        // Heads only: at most one per (run, task), the oldest undelivered of its queue. The
        // `is_head = 1` term matches the partial indexes' condition, so they are used.
        let query = match run_id {
            None => sqlx::query_scalar(outbox_items_json!(
                "SELECT * FROM outbox WHERE is_head = 1 AND next_attempt_at_ms <= ?
                 ORDER BY id LIMIT ?"
            ))
            .bind(now_ms)
            .bind(i64::from(limit)),
            Some(run_id) => sqlx::query_scalar(outbox_items_json!(
                "SELECT * FROM outbox
                 WHERE is_head = 1 AND run_id = ? AND next_attempt_at_ms <= ?
                 ORDER BY id LIMIT ?"
            ))
            .bind(run_id.to_string())
            .bind(now_ms)
            .bind(i64::from(limit)),
        };
        outbox_items(query, &self.pool).await
    }

    async fn outbox_delivered(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        mark_delivered(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_settle(
        &self,
        cortex_ids: &[CortexIdRecord],
        delivered: &[i64],
    ) -> Result<Vec<String>, StoreError> {
        if cortex_ids.is_empty() && delivered.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction (one lock taken, one sync to disk) for what a courier settles at
        // once. IMMEDIATE: take the write lock up front (see `outbox_delivered`).
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let kept = if cortex_ids.is_empty() {
            Vec::new()
        } else {
            cortex::set_ids_in(&mut tx, cortex_ids).await?
        };
        mark_delivered(&mut tx, delivered).await?;
        tx.commit().await?;
        Ok(kept)
    }

    async fn outbox_retry_later(
        &self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at_ms = ?
             WHERE id = ? AND delivered_at_ms IS NULL",
        )
        .bind(error)
        .bind(next_attempt_at_ms)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn outbox_counts(&self, run_id: Uuid) -> Result<OutboxCounts, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS undelivered,
                    count(CASE WHEN attempts > 0 THEN 1 END) AS failing,
                    min(created_at_ms) AS oldest
             FROM outbox WHERE run_id = ? AND delivered_at_ms IS NULL",
        )
        .bind(run_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxCounts {
            undelivered: u64_of(row.try_get("undelivered")?, "outbox", "count")?,
            failing: u64_of(row.try_get("failing")?, "outbox", "count")?,
            oldest_at_ms: row.try_get("oldest")?,
        })
    }

    async fn cortex_id(
        &self,
        run_id: Uuid,
        task_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar(
                "SELECT remote_id FROM cortex_ids WHERE run_id = ? AND task_id IS ?",
            )
            .bind(run_id.to_string())
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn set_cortex_id(
        &self,
        run_id: Uuid,
        task_id: Option<&str>,
        remote: &str,
    ) -> Result<String, StoreError> {
        let id = run_id.to_string();
        // IMMEDIATE: take the write lock up front, so a transaction that reads first never
        // fails to upgrade (SQLITE_BUSY without waiting) when another connection wrote.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        ensure_run(&mut tx, run_id).await?;
        // The first id wins: a conflict on either unique index (tasks, or the workflow
        // record's partial one) keeps the row there.
        sqlx::query(
            "INSERT INTO cortex_ids (run_id, task_id, remote_id) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(task_id)
        .bind(remote)
        .execute(&mut *tx)
        .await?;
        let kept: String = sqlx::query_scalar(
            "SELECT remote_id FROM cortex_ids WHERE run_id = ? AND task_id IS ?",
        )
        .bind(&id)
        .bind(task_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(kept)
    }

    async fn set_cortex_ids(&self, ids: &[CortexIdRecord]) -> Result<Vec<String>, StoreError> {
        cortex::set_ids(&self.writer, ids).await
    }

    async fn outbox_followers(
        &self,
        run_id: Uuid,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        cortex::followers(&self.pool, run_id, limit).await
    }

    async fn outbox_prune(&self, run_id: Uuid) -> Result<u64, StoreError> {
        cortex::outbox_prune(&self.writer, run_id).await
    }

    async fn outbox_runs(&self) -> Result<Vec<OutboxRun>, StoreError> {
        cortex::outbox_runs(&self.pool).await
    }

    async fn set_cortex_server(&self, run_id: Uuid, server: &str) -> Result<String, StoreError> {
        cortex::set_server(&self.writer, run_id, server).await
    }

    async fn cortex_server(&self, run_id: Uuid) -> Result<Option<String>, StoreError> {
        cortex::server(&self.pool, run_id).await
    }

    async fn cortex_session_opened(&self, session: &CortexSessionRecord) -> Result<(), StoreError> {
        cortex::session_opened(&self.writer, session).await
    }

    async fn cortex_session_closed(
        &self,
        run_id: Uuid,
        session_id: &str,
    ) -> Result<(), StoreError> {
        cortex::session_closed(&self.writer, run_id, session_id).await
    }

    async fn cortex_sessions(
        &self,
        run_id: Option<Uuid>,
    ) -> Result<Vec<CortexSessionRecord>, StoreError> {
        cortex::sessions(&self.pool, run_id).await
    }

    async fn cortex_workspace(
        &self,
        server: &str,
        path: &str,
    ) -> Result<Option<String>, StoreError> {
        cortex::workspace(&self.pool, server, path).await
    }

    async fn set_cortex_workspace(
        &self,
        server: &str,
        path: &str,
        workspace_id: &str,
        at_ms: i64,
    ) -> Result<String, StoreError> {
        cortex::set_workspace(&self.writer, server, path, workspace_id, at_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A running run with no agents, for store tests (here and in `sqlite::cortex`).
    pub(crate) fn run_record(id: Uuid) -> RunRecord {
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

    /// A lease of pid `pid` on host `h`.
    pub(crate) fn lease(pid: u32, expires: i64) -> Lease {
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
            ..Batch::default()
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

    fn episode(run_id: Uuid, task_id: &str, name: &str, finished_at_ms: i64) -> EpisodeRecord {
        EpisodeRecord {
            id: 0,
            run_id,
            task_id: task_id.into(),
            attempt: 1,
            name: name.into(),
            task_type: "development".into(),
            status: TaskStatus::Succeeded,
            agent: Some("dev".into()),
            output: None,
            log_tail: None,
            error: None,
            duration_ms: 1_500,
            finished_at_ms,
        }
    }

    /// A store with one run, and that run's id.
    async fn store_with_run() -> (SqliteStore, Uuid) {
        let store = SqliteStore::in_memory().await.unwrap();
        let id = Uuid::now_v7();
        store
            .create_run(&run_record(id), &[], &lease(1, 1))
            .await
            .unwrap();
        (store, id)
    }

    async fn names(store: &SqliteStore, query: &str, limit: u32) -> Vec<String> {
        store
            .search_episodes(query, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.episode.name)
            .collect()
    }

    /// FTS5's own check that the index matches the `episodes` table.
    async fn assert_index_in_sync(store: &SqliteStore) {
        sqlx::query("INSERT INTO episodes_fts (episodes_fts, rank) VALUES ('integrity-check', 1)")
            .execute(&store.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn episodes_committed_with_a_batch_are_searchable() {
        let (store, id) = store_with_run().await;
        let mut failed = episode(id, "b", "Write the login page", 3_000);
        failed.status = TaskStatus::Failed;
        failed.attempt = 2;
        failed.error = Some("connection refused by the backend".into());
        failed.log_tail = Some("npm ERR!\nexit 1".into());
        failed.output = Some(serde_json::json!({"files": ["a.rs"]}));
        let batch = Batch {
            tasks: vec![TaskRecord::pending("b", 0, "Write the login page")],
            episodes: vec![episode(id, "a", "Design the schema", 2_000), failed.clone()],
            ..Batch::default()
        };
        assert!(!batch.is_empty());
        store.commit(id, &batch).await.unwrap();

        let hits = store.search_episodes("login", 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert!(hits[0].score > 0.0, "{}", hits[0].score);
        assert!(hits[0].episode.id > 0);
        assert_eq!(
            EpisodeRecord {
                id: hits[0].episode.id,
                ..failed
            },
            hits[0].episode
        );
        // Errors are searched too; case does not matter.
        assert_eq!(names(&store, "REFUSED", 5).await, ["Write the login page"]);
        // Log tails and outputs are not.
        assert!(names(&store, "npm", 5).await.is_empty());
        assert!(names(&store, "nothing-like-it", 5).await.is_empty());

        let one = store
            .record_episode(&episode(id, "c", "Design the API", 4_000))
            .await
            .unwrap();
        let hits = store.search_episodes("design", 5).await.unwrap();
        assert_eq!(hits[0].episode.id, one, "ties go to the newest");
        assert_eq!(hits[1].episode.name, "Design the schema");
        assert_index_in_sync(&store).await;
    }

    #[tokio::test]
    async fn more_matching_words_in_the_name_rank_higher() {
        let (store, id) = store_with_run().await;
        // A small but ordinary history: several reviews, one other database task.
        let typed = |task_id: &str, name: &str, task_type: &str, at: i64| EpisodeRecord {
            task_type: task_type.into(),
            ..episode(id, task_id, name, at)
        };
        for ep in [
            typed("o", "Optimize database indexes", "refactoring", 1_000),
            typed("r", "Review the release notes", "review", 9_000),
            typed("l", "Review the login flow", "review", 8_000),
            typed("d", "Document the database", "documentation", 2_000),
            typed("w", "Write the login page", "development", 3_000),
            typed("c", "Add a cache", "development", 4_000),
            typed("f", "Fix flaky tests", "testing", 5_000),
            typed("u", "Upgrade the compiler", "development", 6_000),
        ] {
            store.record_episode(&ep).await.unwrap();
        }
        let hits = store
            .search_episodes("Review database indexes", 10)
            .await
            .unwrap();
        let names: Vec<_> = hits.iter().map(|h| h.episode.name.as_str()).collect();
        assert_eq!(names[0], "Optimize database indexes", "{names:?}");
        assert_eq!(names.len(), 4, "{names:?}");
        for only_review in ["Review the release notes", "Review the login flow"] {
            assert!(names.contains(&only_review), "{names:?}");
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }

    fn short(s: &str) -> String {
        s.chars().take(40).collect()
    }

    #[tokio::test]
    async fn no_query_is_a_syntax_error() {
        let (store, id) = store_with_run().await;
        store
            .record_episode(&episode(id, "a", "Fix: the AND-gate \"NEAR\" bug (x*2)", 1))
            .await
            .unwrap();
        let many = "fix ".repeat(5_000) + &(0..5_000).map(|i| format!("w{i} ")).collect::<String>();
        for query in [
            "",
            "   ",
            ":",
            "-",
            "\"",
            "\"\"\"",
            "AND",
            "OR",
            "NOT",
            "NEAR",
            "NEAR(a b)",
            "a AND",
            "*",
            "a*",
            "(",
            ")",
            "name:fix",
            "-fix",
            "^fix",
            "+",
            "🎉",
            "🎉 fix 🎉",
            "ि",
            "\u{0301}",
            "\0",
            "Ⅷ ⅷ",
            "x'; DROP TABLE episodes; --",
            &many,
        ] {
            let hits = store.search_episodes(query, 5).await;
            assert!(hits.is_ok(), "{:?}: {hits:?}", short(query));
        }
        assert!(names(&store, "", 5).await.is_empty());
        assert!(names(&store, "🎉", 5).await.is_empty());
        for query in [
            "AND",
            "near",
            "fix:",
            "\"bug\"",
            "gate-keeping",
            "x*2",
            &many,
        ] {
            assert_eq!(names(&store, query, 5).await.len(), 1, "{:?}", short(query));
        }
    }

    #[tokio::test]
    async fn limit_is_respected_and_ties_go_to_the_newest() {
        let (store, id) = store_with_run().await;
        for i in 0..20 {
            store
                .record_episode(&episode(id, &format!("t{i}"), "Build it", i64::from(i)))
                .await
                .unwrap();
        }
        let hits = store.search_episodes("build", 5).await.unwrap();
        let ids: Vec<_> = hits.iter().map(|h| h.episode.task_id.as_str()).collect();
        assert_eq!(ids, ["t19", "t18", "t17", "t16", "t15"]);
        assert!(store.search_episodes("build", 0).await.unwrap().is_empty());
        assert_eq!(store.search_episodes("build", 100).await.unwrap().len(), 20);
    }

    #[tokio::test]
    async fn words_in_most_episodes_only_fill_up_the_list() {
        let (store, id) = store_with_run().await;
        for i in 0..10 {
            store
                .record_episode(&episode(id, &format!("t{i}"), "Tidy the code", i))
                .await
                .unwrap();
        }
        for (i, name) in ["Build the API", "Build the CLI"].into_iter().enumerate() {
            store
                .record_episode(&episode(id, name, name, 100 + i as i64))
                .await
                .unwrap();
        }
        // `the` is in every episode: the builds come first, then the newest others.
        let found = names(&store, "build the docs", 4).await;
        assert_eq!(
            found,
            [
                "Build the CLI",
                "Build the API",
                "Tidy the code",
                "Tidy the code"
            ]
        );
        let hits = store.search_episodes("build the docs", 4).await.unwrap();
        assert_eq!(hits[2].episode.task_id, "t9");
        assert_eq!(
            names(&store, "build the", 2).await,
            ["Build the CLI", "Build the API"]
        );
        assert_eq!(names(&store, "the", 20).await.len(), 12);
    }

    /// The search as it was before bounds: leave out the words in half of all episodes
    /// (by the `episodes_vocab` counts and the highest id), rank every episode matching the
    /// others with one bm25 query, and only when that finds fewer than `limit`, rank every
    /// episode matching any word. What `search_episodes` must return, score for score.
    async fn plain_search(store: &SqliteStore, query: &str, limit: u32) -> Vec<EpisodeHit> {
        let words = query_words(query);
        if words.is_empty() || limit == 0 {
            return Vec::new();
        }
        let common: Vec<String> = if words.len() < 2 {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT term FROM episodes_vocab
                 WHERE term IN (SELECT value FROM json_each(?))
                   AND doc * 2 >= (SELECT coalesce(max(id), 0) FROM episodes)",
            )
            .bind(serde_json::Value::from(words.clone()).to_string())
            .fetch_all(&store.pool)
            .await
            .unwrap()
        };
        if !common.is_empty() && common.len() < words.len() {
            let rare: Vec<String> = words
                .iter()
                .filter(|w| !common.contains(w))
                .cloned()
                .collect();
            let hits = plain_ranking(store, &rare, limit).await;
            if hits.len() >= limit as usize {
                return hits;
            }
        }
        plain_ranking(store, &words, limit).await
    }

    async fn plain_ranking(store: &SqliteStore, words: &[String], limit: u32) -> Vec<EpisodeHit> {
        let rows = sqlx::query(
            "SELECT e.*, hit.rank FROM (
                 SELECT rowid AS id, bm25(episodes_fts, 10.0, 1.0) AS rank
                 FROM episodes_fts WHERE episodes_fts MATCH ?
                 ORDER BY rank, rowid DESC LIMIT ?
             ) AS hit JOIN episodes e ON e.id = hit.id
             ORDER BY hit.rank, hit.id DESC",
        )
        .bind(crate::episode::fts_query(words).unwrap())
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await
        .unwrap();
        rows.iter()
            .map(|row| EpisodeHit {
                episode: episode_from_row(row).unwrap(),
                score: 0.0 - row.get::<f64, _>("rank"),
            })
            .collect()
    }

    /// SplitMix64, for reproducible data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    /// Words with Zipf frequencies (the i-th word weighs 1/i), the first ones common task-name
    /// words, then made-up ones, and some accented or non-Latin ones among them.
    struct Zipf {
        words: Vec<String>,
        cdf: Vec<u64>,
    }

    impl Zipf {
        fn new(rng: &mut Rng) -> Self {
            let mut words: Vec<String> = [
                "add",
                "fix",
                "update",
                "test",
                "api",
                "refactor",
                "review",
                "database",
                "user",
                "service",
                "docs",
                "login",
                "page",
                "error",
                "cache",
                "build",
                "deploy",
                "auth",
                "größe",
                "café",
                "naïve",
                "日本語",
                "ändern",
                "ⅷ",
                "İstanbul",
                "ﬁx",
                "ि",
                "ǅemal",
            ]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
            const SYLLABLES: &[&str] = &[
                "ba", "ko", "ri", "tu", "ne", "sha", "plo", "dri", "ven", "qua", "zi", "mo",
            ];
            while words.len() < 400 {
                let w: String = (0..2 + rng.below(2))
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                    .collect();
                if !words.contains(&w) {
                    words.push(w);
                }
            }
            let mut total = 0.0;
            let weights: Vec<f64> = (1..=words.len()).map(|i| 1.0 / i as f64).collect();
            let sum: f64 = weights.iter().sum();
            let cdf = weights
                .iter()
                .map(|w| {
                    total += w / sum;
                    (total * u64::MAX as f64) as u64
                })
                .collect();
            Self { words, cdf }
        }

        fn pick(&self, rng: &mut Rng) -> &str {
            let u = rng.next();
            let i = self
                .cdf
                .partition_point(|&c| c < u)
                .min(self.words.len() - 1);
            &self.words[i]
        }

        /// `min..min + spread` words, some capitalised, some glued with punctuation; `the` in
        /// most names.
        fn name(&self, rng: &mut Rng, min: usize, spread: usize, the: bool) -> String {
            let n = min + rng.below(spread);
            let mut out = String::new();
            if the && rng.chance(65) {
                out.push_str("the ");
            }
            for i in 0..n {
                let w = self.pick(rng);
                if i > 0 {
                    out.push_str([" ", " ", " ", "-", ": ", ", ", " (", "/"][rng.below(8)]);
                }
                if rng.chance(20) {
                    out.push_str(&w.to_uppercase());
                } else {
                    out.push_str(w);
                }
            }
            out
        }
    }

    /// A store with `n` Zipf-worded episodes (a tenth with an error) in two runs, then the
    /// second run deleted, so ids have gaps and the highest id is above the count.
    async fn zipf_store(rng: &mut Rng, zipf: &Zipf, n: usize) -> SqliteStore {
        let (store, kept) = store_with_run().await;
        fill_zipf_store(&store, kept, rng, zipf, n).await;
        store
    }

    /// Fills `store` (which holds the run `kept`) as [`zipf_store`] does.
    async fn fill_zipf_store(
        store: &SqliteStore,
        kept: Uuid,
        rng: &mut Rng,
        zipf: &Zipf,
        n: usize,
    ) {
        let gone = Uuid::now_v7();
        store
            .create_run(&run_record(gone), &[], &lease(1, 1))
            .await
            .unwrap();
        let mut batch = Batch::default();
        for i in 0..n {
            let run = if rng.chance(15) { gone } else { kept };
            let mut ep = episode(run, &format!("t{i}"), &zipf.name(rng, 1, 8, true), 0);
            if rng.chance(10) {
                ep.error = Some(zipf.name(rng, 3, 8, false));
            }
            if rng.chance(3) {
                // A word said twice.
                let w = zipf.pick(rng).to_owned();
                ep.name = format!("{w} {} {w}", ep.name);
            }
            batch.episodes.push(ep);
            if batch.episodes.len() == 500 {
                store.commit(run, &batch).await.unwrap();
                batch.episodes.clear();
            }
        }
        store.commit(kept, &batch).await.unwrap();
        sqlx::query("DELETE FROM runs WHERE run_id = ?")
            .bind(gone.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        assert_index_in_sync(store).await;
    }

    /// A query of one kind: common words only, rare only, mixed, repeated words, or
    /// punctuation, case, accents and words no episode holds.
    fn zipf_query(rng: &mut Rng, zipf: &Zipf, kind: usize) -> String {
        let n = 1 + rng.below(4);
        let common = |rng: &mut Rng| zipf.words[rng.below(8)].clone();
        let rare = |rng: &mut Rng| zipf.words[30 + rng.below(370)].clone();
        let words: Vec<String> = match kind {
            0 => (0..n).map(|_| common(rng)).collect(),
            1 => (0..n).map(|_| rare(rng)).collect(),
            2 => (0..n).map(|_| zipf.pick(rng).to_owned()).collect(),
            3 => {
                let w = zipf.pick(rng).to_owned();
                let mut v = vec![w.clone(), common(rng), w.clone()];
                v.truncate(1 + n);
                v.push(w);
                v
            }
            4 => (0..n)
                .map(|_| match rng.below(10) {
                    0 => "the".to_owned(),
                    1 => "GRÖSSE".to_owned(),
                    2 => "cafe".to_owned(),
                    3 => "nowhereword".to_owned(),
                    4 => ["\"add\" AND", "naive", "ISTANBUL", "i̇stanbul", "fix"][rng.below(5)]
                        .to_owned(),
                    5 => "fix* NEAR(".to_owned(),
                    6 => "🎉".to_owned(),
                    7 => rare(rng).to_uppercase(),
                    _ => zipf.pick(rng).to_owned(),
                })
                .collect(),
            _ => {
                let mut v = vec!["the".to_owned(); 1 + rng.below(2)];
                v.extend((0..n).map(|_| zipf.pick(rng).to_owned()));
                v
            }
        };
        let seps = [" ", " ", "-", ", ", ": ", "(", "'"];
        words
            .iter()
            .map(|w| format!("{w}{}", seps[rng.below(seps.len())]))
            .collect()
    }

    #[tokio::test]
    async fn search_ranks_exactly_as_one_bm25_query_of_every_word() {
        let mut rng = Rng(0x5eed_0fe9_150d_e5ed);
        let zipf = Zipf::new(&mut rng);
        let store = zipf_store(&mut rng, &zipf, 3_000).await;
        let mut plans = HashMap::new();
        for i in 0..1_500 {
            let query = zipf_query(&mut rng, &zipf, i % 6);
            let limit = [1, 2, 3, 5, 5, 5, 10, 40][rng.below(8)];
            let (hits, trace) = store.search(&query, limit).await.unwrap();
            let used = trace.plans;
            let expected = plain_search(&store, &query, limit).await;
            let ids = |h: &[EpisodeHit]| {
                h.iter()
                    .map(|h| (h.episode.id, h.score))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                ids(&hits),
                ids(&expected),
                "query {query:?}, limit {limit}, plans {used:?}"
            );
            assert_eq!(hits, expected, "query {query:?}, limit {limit}");
            for plan in used {
                *plans.entry(plan).or_insert(0) += 1;
            }
        }
        // Every way of finding the answer was taken, and proved it.
        assert_every_plan(&plans, &EVERY_PLAN, "taken");
    }

    /// Every plan a search can take, the fallback last.
    const EVERY_PLAN: [Plan; 6] = [
        Plan::OneWord,
        Plan::RareOnly,
        Plan::RareSide,
        Plan::EveryFrequentWord,
        Plan::Groups,
        Plan::Fallback,
    ];

    /// Asserts that each plan of `wanted` is counted in `plans` (`what` it was: taken, split).
    fn assert_every_plan(plans: &HashMap<Plan, usize>, wanted: &[Plan], what: &str) {
        for plan in wanted {
            assert!(plans.contains_key(plan), "{plan:?} never {what}: {plans:?}");
        }
    }

    #[tokio::test]
    async fn parallel_search_is_opt_in_and_never_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        assert_eq!(file.parallel, Parallel::NEVER);
        let file = file.with_parallel_search(9);
        assert_eq!(file.parallel.parts, 4, "at most the pool's connections");
        let memory = SqliteStore::in_memory()
            .await
            .unwrap()
            .with_parallel_search(2);
        assert_eq!(memory.parallel, Parallel::NEVER);
    }

    /// A store in a file (so its pool has several connections), with one run, and that
    /// run's id; the directory must outlive the store.
    async fn file_store_with_run(dir: &tempfile::TempDir) -> (SqliteStore, Uuid) {
        let store = SqliteStore::open(&dir.path().join("axon.db"))
            .await
            .unwrap();
        let id = Uuid::now_v7();
        store
            .create_run(&run_record(id), &[], &lease(1, 1))
            .await
            .unwrap();
        (store, id)
    }

    #[tokio::test]
    async fn split_rankings_rank_exactly_as_one_statement() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, kept) = file_store_with_run(&dir).await;
        let mut rng = Rng(0x5e11_7ab1_e5ea_2c40);
        let zipf = Zipf::new(&mut rng);
        fill_zipf_store(&store, kept, &mut rng, &zipf, 3_000).await;
        let whole = SqliteStore {
            pool: store.pool.clone(),
            writer: store.writer.clone(),
            parallel: Parallel::NEVER,
        };
        let (mut plans, mut splits, mut parts_used) = (HashMap::new(), 0, HashMap::new());
        for i in 0..900 {
            let query = zipf_query(&mut rng, &zipf, i % 6);
            let limit = [1, 2, 3, 5, 5, 5, 10, 40][rng.below(8)];
            // Two or three ranges (the pool has four connections), split from 1 row on or
            // from a few hundred (some rankings split, others not, in one search).
            let parts = 2 + rng.below(2);
            store.parallel = Parallel {
                parts,
                min_rows: [1, 300][rng.below(2)],
            };
            let (hits, trace) = store.search(&query, limit).await.unwrap();
            let (unsplit, unsplit_trace) = whole.search(&query, limit).await.unwrap();
            assert_eq!(unsplit_trace.splits, 0);
            let ids = |h: &[EpisodeHit]| {
                h.iter()
                    .map(|h| (h.episode.id, h.score))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                ids(&hits),
                ids(&unsplit),
                "query {query:?}, limit {limit}, {trace:?}"
            );
            assert_eq!(hits, unsplit, "query {query:?}, limit {limit}");
            assert_eq!(hits, plain_search(&store, &query, limit).await, "{query:?}");
            assert_eq!(trace.reranked, 0, "nothing was written");
            splits += trace.splits;
            if trace.splits > 0 {
                *parts_used.entry(parts).or_insert(0) += 1;
                for plan in trace.plans {
                    *plans.entry(plan).or_insert(0) += 1;
                }
            }
        }
        assert!(splits > 500, "{splits} rankings split");
        assert_eq!(parts_used.len(), 2, "{parts_used:?}");
        // Every plan but the fallback (the last) was split.
        assert_every_plan(&plans, &EVERY_PLAN[..5], "split");
    }

    #[tokio::test]
    async fn a_range_ranked_after_a_write_is_ranked_again_in_the_searchs_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, id) = file_store_with_run(&dir).await;
        let mut batch = Batch::default();
        for i in 0..200 {
            let name = [
                "Deploy the docs",
                "Deploy the long running service",
                "Tidy up",
            ][i % 3];
            batch
                .episodes
                .push(episode(id, &format!("t{i}"), name, i as i64));
        }
        store.commit(id, &batch).await.unwrap();
        store.parallel = Parallel {
            parts: 2,
            min_rows: 1,
        };
        let words = vec!["deploy".to_owned()];
        let (before, _) = store.search("deploy", 5).await.unwrap();

        // The search's snapshot is taken, then an episode is recorded: the range ranked on
        // another connection reads it (the row itself is beyond the ranges, but its word
        // changes bm25's counts), and is ranked again in the search's snapshot.
        let mut tx = store.pool.begin().await.unwrap();
        let stats = WordStats::read_last_id(&mut tx).await.unwrap();
        store
            .record_episode(&episode(id, "new", "Deploy", 1_000))
            .await
            .unwrap();
        let mut ranker = Ranker::new(&mut tx, &store.pool, store.parallel);
        let (ranked, plan) = search::best(&mut ranker, &words, &stats, 5).await.unwrap();
        assert_eq!(plan, Plan::OneWord);
        assert_eq!((ranker.splits, ranker.reranked), (1, 1));
        let hits = hits(ranker.conn(), &ranked).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(hits, before);

        // A search now sees the new episode first, and different scores for the others.
        let (after, trace) = store.search("deploy", 5).await.unwrap();
        assert_eq!((trace.splits, trace.reranked), (1, 0));
        assert_eq!(after[0].episode.task_id, "new");
        assert_eq!(after[1].episode.id, before[0].episode.id);
        assert_ne!(after[1].score, before[0].score);
    }

    #[tokio::test]
    async fn every_write_to_the_index_changes_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = file_store_with_run(&dir).await;
        let version = || async {
            let mut conn = store.pool.acquire().await.unwrap();
            search::IndexVersion::read(&mut conn)
                .await
                .unwrap()
                .unwrap()
        };
        let first = version().await;
        assert_eq!(version().await, first, "no write, same version");
        let mut seen = vec![first];
        let ep = store
            .record_episode(&episode(id, "a", "Deploy the docs", 1))
            .await
            .unwrap();
        seen.push(version().await);
        for name in ["Deploy the code", "Deploy the code", "Deploy the docs"] {
            // A rename, to the same name too, and back.
            sqlx::query("UPDATE episodes SET name = ? WHERE id = ?")
                .bind(name)
                .bind(ep)
                .execute(&store.pool)
                .await
                .unwrap();
            seen.push(version().await);
        }
        sqlx::query("DELETE FROM episodes")
            .execute(&store.pool)
            .await
            .unwrap();
        seen.push(version().await);
        for (i, v) in seen.iter().enumerate() {
            assert!(!seen[..i].contains(v), "version {i} seen before");
        }
    }

    #[tokio::test]
    async fn when_the_bound_proves_nothing_the_frequent_side_is_ranked_in_full() {
        let (store, id) = store_with_run().await;
        // `alpha` and `beta` are frequent (10 of 100 episodes each) and together in one name
        // only; `zeta` is rare (2), in long names that score low.
        let long = format!("zeta {}", "and many more words ".repeat(8));
        let mut names = vec!["alpha one"; 10];
        names.extend(["beta two"; 10]);
        names.push("alpha beta");
        names.extend([long.as_str(); 2]);
        names.extend(["other words"; 77]);
        let mut batch = Batch::default();
        for (i, name) in names.iter().enumerate() {
            batch
                .episodes
                .push(episode(id, &format!("t{i}"), name, i as i64));
        }
        store.commit(id, &batch).await.unwrap();
        for (query, limit) in [
            // Two episodes on the rare side and one holding both frequent words: no k-th
            // score to bound with.
            ("zeta alpha beta", 5),
            // A k-th score, but a frequent word alone may beat it (and no row holds all
            // frequent words while beating it either).
            ("zeta beta alpha", 2),
            ("alpha zeta beta", 3),
        ] {
            let (hits, trace) = store.search(query, limit).await.unwrap();
            assert_eq!(trace.plans, [Plan::Fallback], "{query}");
            assert_eq!(hits, plain_search(&store, query, limit).await, "{query}");
            assert_eq!(hits.len(), limit as usize, "{query}");
            assert_eq!(hits[0].episode.name, "alpha beta", "{query}");
        }
        // The long `zeta` names rank below the short names holding one frequent word, which
        // only the full ranking of the frequent side finds.
        let (hits, _) = store.search("zeta alpha beta", 5).await.unwrap();
        assert!(
            hits[1..]
                .iter()
                .all(|h| ["alpha one", "beta two"].contains(&h.episode.name.as_str())),
            "{hits:?}"
        );
    }

    #[tokio::test]
    async fn ranking_within_rare_rows_does_not_push_the_rowid_list_into_fts5() {
        let store = SqliteStore::in_memory().await.unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            crate::search::RANK_WITHIN
        )))
        .bind("\"a\" OR \"b\"")
        .bind("\"b\"")
        .bind(5_i64)
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        let plan = plan.join("; ");
        // FTS5's index string: `M` for the MATCH; `=` would be a rowid pushed into FTS5, one
        // FTS5 query (and bm25 idf count) per listed row.
        assert!(
            plan.contains("SCAN episodes_fts VIRTUAL TABLE INDEX 0:M"),
            "{plan}"
        );
        assert!(!plan.contains(":="), "{plan}");
        assert!(plan.contains("LIST SUBQUERY"), "{plan}");
    }

    #[tokio::test]
    async fn a_rowid_range_is_a_bound_of_fts5s_walk() {
        let store = SqliteStore::in_memory().await.unwrap();
        // The plan's lines, and FTS5's index string in each scan of the FTS table.
        let explain = |sql: &str, binds: &[&str]| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for b in binds {
                q = q.bind(b.to_string());
            }
            let pool = store.pool.clone();
            async move {
                let lines: Vec<String> = q
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("detail"))
                    .collect();
                let scans: Vec<String> = lines
                    .iter()
                    .filter_map(|l| l.strip_prefix("SCAN episodes_fts VIRTUAL TABLE INDEX 0:"))
                    .map(str::to_owned)
                    .collect();
                (lines.join("; "), scans)
            }
        };
        // `M` (and a column) for the MATCH, then `>` and `<`: both bounds go into FTS5, which
        // starts its walk of each word's rows at the first and stops after the second. No
        // `=`: a rowid pushed in, one FTS5 query per row.
        let (plan, scans) = explain(crate::search::RANK_RANGE, &["\"a\"", "1", "9", "5"]).await;
        assert_eq!(scans.len(), 1, "{plan}");
        assert!(
            scans
                .iter()
                .all(|s| s.starts_with('M') && s.ends_with("><")),
            "{plan}"
        );
        assert!(!plan.contains('='), "{plan}");
        let (plan, scans) = explain(
            crate::search::RANK_WITHIN_RANGE,
            &["\"a\" OR \"b\"", "\"b\"", "1", "9", "5"],
        )
        .await;
        // The ranked rows and the rows of the list.
        assert_eq!(scans.len(), 2, "{plan}");
        assert!(
            scans
                .iter()
                .all(|s| s.starts_with('M') && s.ends_with("><")),
            "{plan}"
        );
        assert!(!plan.contains('='), "{plan}");
        assert!(plan.contains("LIST SUBQUERY"), "{plan}");
    }

    #[tokio::test]
    async fn deleting_a_run_deletes_its_episodes_from_the_index() {
        let (store, gone) = store_with_run().await;
        let kept = Uuid::now_v7();
        store
            .create_run(&run_record(kept), &[], &lease(1, 1))
            .await
            .unwrap();
        store
            .record_episode(&episode(gone, "a", "Deploy the service", 1))
            .await
            .unwrap();
        store
            .record_episode(&episode(kept, "a", "Deploy the docs", 2))
            .await
            .unwrap();
        assert_eq!(names(&store, "deploy", 5).await.len(), 2);
        sqlx::query("DELETE FROM runs WHERE run_id = ?")
            .bind(gone.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(names(&store, "deploy", 5).await, ["Deploy the docs"]);
        assert!(names(&store, "service", 5).await.is_empty());
        // Renaming an episode moves it in the index too.
        sqlx::query("UPDATE episodes SET name = 'Publish the docs'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(names(&store, "deploy", 5).await.is_empty());
        assert_eq!(names(&store, "publish", 5).await, ["Publish the docs"]);
        assert_index_in_sync(&store).await;
    }

    #[tokio::test]
    async fn an_episode_of_an_unknown_run_is_refused() {
        let store = SqliteStore::in_memory().await.unwrap();
        let err = store
            .record_episode(&episode(Uuid::now_v7(), "a", "A", 1))
            .await;
        assert!(matches!(err, Err(StoreError::Database(_))), "{err:?}");
        assert!(names(&store, "a", 5).await.is_empty());
    }

    #[tokio::test]
    async fn tracking_links_every_task_to_one_workflow_record() {
        let (store, id) = store_with_run().await;
        assert!(store.tracking(id).await.unwrap().is_empty());
        // A task update first: the workflow record is created, titled after the workflow.
        let mut started = TrackUpdate::task("b", "Build", "running", 10);
        started.assigned_to = Some("dev".into());
        store.track(id, &[started]).await.unwrap();
        let records = store.tracking(id).await.unwrap();
        assert_eq!(records.len(), 2);
        let (wf, b) = (&records[0], &records[1]);
        assert_eq!(wf.task_id, None);
        assert_eq!(wf.parent_id, None);
        assert_eq!(wf.title, "Workflow");
        assert_eq!(wf.status, "running");
        assert_eq!(b.parent_id, Some(wf.id));
        assert_eq!(b.assigned_to.as_deref(), Some("dev"));

        let mut progress = TrackUpdate::task("b", "Build", "running", 20);
        progress.progress = Some(0.5);
        let mut done = TrackUpdate::task("b", "Build", "succeeded", 30);
        done.progress = Some(1.0);
        let mut failed = TrackUpdate::task("a", "Analyse", "failed", 25);
        failed.note = Some("exit 1".into());
        let finished = TrackUpdate::workflow("Workflow", "failed", 40);
        store
            .track(id, &[progress, failed, done, finished])
            .await
            .unwrap();
        let records = store.tracking(id).await.unwrap();
        let tasks: Vec<_> = records.iter().map(|r| r.task_id.as_deref()).collect();
        assert_eq!(tasks, [None, Some("b"), Some("a")]);
        assert_eq!(records[0].id, wf.id);
        assert_eq!(records[0].status, "failed");
        assert_eq!(records[0].updated_at_ms, 40);
        let b = &records[1];
        assert_eq!(b.status, "succeeded");
        assert_eq!(b.progress, Some(1.0));
        assert_eq!(b.assigned_to.as_deref(), Some("dev"), "kept when not given");
        assert_eq!((b.created_at_ms, b.updated_at_ms), (10, 30));
        assert_eq!(records[2].note.as_deref(), Some("exit 1"));
        assert!(records[1..].iter().all(|r| r.parent_id == Some(wf.id)));
        // Still one workflow record, whatever updates it.
        let dup = sqlx::query(
            "INSERT INTO tracking (run_id, title, status, created_at_ms, updated_at_ms)
             VALUES (?, 'x', 'x', 0, 0)",
        )
        .bind(id.to_string())
        .execute(&store.pool)
        .await;
        assert!(dup.is_err());
    }

    #[tokio::test]
    async fn tracking_an_unknown_run_fails_and_writes_nothing() {
        let store = SqliteStore::in_memory().await.unwrap();
        let id = Uuid::now_v7();
        let err = store
            .track(id, &[TrackUpdate::task("a", "A", "running", 1)])
            .await;
        assert!(
            matches!(err, Err(StoreError::NoSuchRun(r)) if r == id),
            "{err:?}"
        );
        assert!(store.tracking(id).await.unwrap().is_empty());
        store.track(id, &[]).await.unwrap();
    }

    fn call(task_id: Option<&str>, kind: &str, n: i64) -> NewOutboxItem {
        let payload = serde_json::json!({ "n": n });
        match task_id {
            Some(t) => NewOutboxItem::task(t, kind, payload),
            None => NewOutboxItem::workflow(kind, payload),
        }
    }

    /// The due calls, as (task, payload `n`).
    async fn due(store: &SqliteStore, run: Option<Uuid>, now: i64) -> Vec<(Option<String>, i64)> {
        store
            .outbox_due(run, now, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.task_id, i.payload["n"].as_i64().unwrap()))
            .collect()
    }

    fn q(task_id: Option<&str>, n: i64) -> (Option<String>, i64) {
        (task_id.map(String::from), n)
    }

    async fn outbox_rows(store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    /// Every undelivered call of `run`, as (task, payload `n`, is_head), in id order.
    async fn outbox_queue(store: &SqliteStore, run: Uuid) -> Vec<(Option<String>, i64, bool)> {
        sqlx::query_as::<_, (Option<String>, String, bool)>(
            "SELECT task_id, payload, is_head FROM outbox
             WHERE run_id = ? AND delivered_at_ms IS NULL ORDER BY id",
        )
        .bind(run.to_string())
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, p, h)| {
            let p: serde_json::Value = serde_json::from_str(&p).unwrap();
            (t, p["n"].as_i64().unwrap(), h)
        })
        .collect()
    }

    #[tokio::test]
    async fn calls_pushed_together_keep_their_order_and_one_head_per_queue() {
        let (store, id) = store_with_run().await;
        // More calls than go one statement each (one array), the queues interleaved: a, b,
        // the workflow.
        let n = i64::try_from(OUTBOX_ONE_BY_ONE).unwrap() * 5 + 7;
        let items: Vec<NewOutboxItem> = (0..n)
            .map(|i| match i % 3 {
                0 => call(Some("a"), "update_task", i),
                1 => call(Some("b"), "update_task", i).delayed(50),
                _ => call(None, "update_task", i),
            })
            .collect();
        store.outbox_push(id, &items, 100).await.unwrap();
        let queue = outbox_queue(&store, id).await;
        assert_eq!(
            queue.iter().map(|(_, n, _)| *n).collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>(),
            "ids follow the order of the push"
        );
        let heads: Vec<_> = queue.iter().filter(|(.., h)| *h).collect();
        assert_eq!(
            heads,
            [
                &(Some("a".to_owned()), 0, true),
                &(Some("b".to_owned()), 1, true),
                &(None, 2, true)
            ],
            "the first call of each queue is its head"
        );
        // b's calls are due 50 ms later than the others.
        assert_eq!(
            due(&store, Some(id), 100).await,
            [q(Some("a"), 0), q(None, 2)]
        );
        assert_eq!(
            due(&store, Some(id), 150).await,
            [q(Some("a"), 0), q(Some("b"), 1), q(None, 2)]
        );
        // A later push (one statement per call): queues with undelivered calls get no second
        // head, a new queue does.
        store
            .outbox_push(
                id,
                &[call(Some("a"), "x", 1000), call(Some("c"), "x", 1001)],
                200,
            )
            .await
            .unwrap();
        let queue = outbox_queue(&store, id).await;
        assert_eq!(queue[queue.len() - 2], (Some("a".to_owned()), 1000, false));
        assert_eq!(queue[queue.len() - 1], (Some("c".to_owned()), 1001, true));
        // Once a's calls are all delivered, its next call is a head as it is pushed.
        let a_ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM outbox WHERE run_id = ? AND task_id = 'a'")
                .bind(id.to_string())
                .fetch_all(&store.pool)
                .await
                .unwrap();
        store.outbox_delivered(&a_ids).await.unwrap();
        store
            .outbox_push(
                id,
                &[call(Some("a"), "x", 2000), call(Some("a"), "x", 2001)],
                300,
            )
            .await
            .unwrap();
        let queue = outbox_queue(&store, id).await;
        assert_eq!(
            queue[queue.len() - 2..],
            [
                (Some("a".to_owned()), 2000, true),
                (Some("a".to_owned()), 2001, false)
            ]
        );
    }

    #[tokio::test]
    async fn outbox_calls_are_due_until_delivered() {
        let (store, id) = store_with_run().await;
        assert!(store.outbox_due(None, 1_000, 10).await.unwrap().is_empty());
        store
            .outbox_push(
                id,
                &[
                    call(None, "create_workflow", 1),
                    call(Some("a"), "create_task", 2),
                ],
                100,
            )
            .await
            .unwrap();
        assert!(due(&store, None, 99).await.is_empty(), "not due before");
        let items = store.outbox_due(Some(id), 100, 10).await.unwrap();
        assert_eq!(
            items[0],
            OutboxItem {
                id: items[0].id,
                run_id: id,
                task_id: None,
                kind: "create_workflow".into(),
                payload: serde_json::json!({ "n": 1 }),
                attempts: 0,
                next_attempt_at_ms: 100,
                last_error: None,
                created_at_ms: 100,
            }
        );
        assert_eq!(items[1].task_id.as_deref(), Some("a"));
        assert_eq!(items[1].kind, "create_task");
        assert!(items[0].id < items[1].id);
        assert_eq!(store.outbox_due(None, 100, 1).await.unwrap(), items[..1]);
        assert!(
            store
                .outbox_due(Some(Uuid::now_v7()), 100, 10)
                .await
                .unwrap()
                .is_empty()
        );

        store.outbox_delivered(&[items[0].id]).await.unwrap();
        assert_eq!(due(&store, None, 1_000).await, [q(Some("a"), 2)]);
        // Delivering again, or an unknown id, changes nothing.
        store.outbox_delivered(&[items[0].id, 9_999]).await.unwrap();
        store.outbox_delivered(&[items[1].id]).await.unwrap();
        assert!(due(&store, None, 1_000).await.is_empty());
        assert_eq!(
            store.outbox_counts(id).await.unwrap(),
            OutboxCounts::default()
        );
        assert_eq!(
            outbox_rows(&store, "outbox").await,
            0,
            "delivered calls leave the outbox"
        );
        // Pushing nothing writes nothing, even for an unknown run; an unknown run is refused.
        store.outbox_push(Uuid::now_v7(), &[], 1).await.unwrap();
        let other = Uuid::now_v7();
        let err = store.outbox_push(other, &[call(None, "x", 0)], 1).await;
        assert!(
            matches!(err, Err(StoreError::NoSuchRun(r)) if r == other),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_call_holds_back_its_task_only() {
        let (store, id) = store_with_run().await;
        let (a, b) = (Some("a"), Some("b"));
        store
            .outbox_push(
                id,
                &[call(a, "create_task", 1), call(b, "create_task", 2)],
                10,
            )
            .await
            .unwrap();
        store
            .outbox_push(
                id,
                &[
                    call(a, "update_task", 3),
                    call(None, "create_workflow", 4),
                    call(a, "update_task", 5),
                ],
                20,
            )
            .await
            .unwrap();
        // One call per task and the workflow record, oldest first.
        assert_eq!(due(&store, None, 20).await, [q(a, 1), q(b, 2), q(None, 4)]);
        let a1 = store.outbox_due(Some(id), 20, 1).await.unwrap()[0].id;
        store.outbox_retry_later(a1, "refused", 500).await.unwrap();
        // a's later calls wait for a1; b and the workflow record go on.
        assert_eq!(due(&store, Some(id), 100).await, [q(b, 2), q(None, 4)]);
        let ids: Vec<i64> = store
            .outbox_due(Some(id), 100, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        store.outbox_delivered(&ids).await.unwrap();
        assert!(due(&store, None, 499).await.is_empty());
        assert_eq!(due(&store, None, 500).await, [q(a, 1)]);
        // A call of a task pushed while its queue waits joins the back of that queue.
        store
            .outbox_push(id, &[call(b, "update_task", 6), call(a, "x", 7)], 30)
            .await
            .unwrap();
        assert_eq!(due(&store, None, 500).await, [q(a, 1), q(b, 6)]);
        store.outbox_delivered(&[a1]).await.unwrap();
        assert_eq!(due(&store, None, 600).await, [q(a, 3), q(b, 6)]);
        // Delivering a call out of order leaves its queue's head alone.
        let a5: i64 = sqlx::query_scalar("SELECT id FROM outbox WHERE payload = '{\"n\":5}'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        store.outbox_delivered(&[a5]).await.unwrap();
        assert_eq!(due(&store, None, 600).await, [q(a, 3), q(b, 6)]);
        let a3 = store.outbox_due(None, 600, 1).await.unwrap()[0].id;
        store.outbox_delivered(&[a3]).await.unwrap();
        assert_eq!(due(&store, None, 600).await, [q(b, 6), q(a, 7)]);
    }

    #[tokio::test]
    async fn outbox_queues_are_per_run() {
        let (store, first) = store_with_run().await;
        let second = Uuid::now_v7();
        store
            .create_run(&run_record(second), &[], &lease(1, 1))
            .await
            .unwrap();
        store
            .outbox_push(first, &[call(Some("a"), "create_task", 1)], 10)
            .await
            .unwrap();
        store
            .outbox_push(second, &[call(Some("a"), "create_task", 2)], 10)
            .await
            .unwrap();
        let first_a = store.outbox_due(Some(first), 10, 10).await.unwrap();
        store
            .outbox_retry_later(first_a[0].id, "down", 1_000)
            .await
            .unwrap();
        assert_eq!(due(&store, None, 10).await, [q(Some("a"), 2)]);
        assert_eq!(due(&store, Some(second), 10).await, [q(Some("a"), 2)]);
        assert!(due(&store, Some(first), 10).await.is_empty());
    }

    #[tokio::test]
    async fn retry_later_counts_attempts_and_moves_the_due_time() {
        let (store, id) = store_with_run().await;
        store
            .outbox_push(id, &[call(Some("a"), "create_task", 1)], 10)
            .await
            .unwrap();
        let item = store.outbox_due(None, 10, 1).await.unwrap().remove(0);
        store
            .outbox_retry_later(item.id, "connection refused", 100)
            .await
            .unwrap();
        store
            .outbox_retry_later(item.id, "503 service unavailable", 300)
            .await
            .unwrap();
        assert!(store.outbox_due(None, 299, 10).await.unwrap().is_empty());
        let again = store.outbox_due(None, 300, 10).await.unwrap().remove(0);
        assert_eq!(
            again,
            OutboxItem {
                attempts: 2,
                next_attempt_at_ms: 300,
                last_error: Some("503 service unavailable".into()),
                ..item.clone()
            }
        );
        store.outbox_delivered(&[item.id]).await.unwrap();
        // A delivered call is not retried.
        store
            .outbox_retry_later(item.id, "late", 400)
            .await
            .unwrap();
        assert!(store.outbox_due(None, 1_000, 10).await.unwrap().is_empty());
        assert_eq!(store.outbox_counts(id).await.unwrap().undelivered, 0);
    }

    #[tokio::test]
    async fn outbox_calls_commit_with_their_batch() {
        let (store, id) = store_with_run().await;
        let mut running = TaskRecord::pending("a", 0, "A");
        running.status = TaskStatus::Running;
        let batch = Batch {
            tasks: vec![running.clone()],
            outbox: vec![call(Some("a"), "update_task", 1)],
            outbox_at_ms: 42,
            ..Batch::default()
        };
        assert!(!batch.is_empty());
        assert!(
            !Batch {
                outbox: batch.outbox.clone(),
                ..Batch::default()
            }
            .is_empty()
        );
        store.commit(id, &batch).await.unwrap();
        assert_eq!(store.tasks(id).await.unwrap(), [running]);
        let items = store.outbox_due(Some(id), 42, 10).await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].kind, "update_task");
        assert_eq!(items[0].created_at_ms, 42);

        // A batch that fails (its episode names an unknown run) enqueues nothing either.
        let mut done = TaskRecord::pending("a", 0, "A");
        done.status = TaskStatus::Succeeded;
        let failing = Batch {
            tasks: vec![done],
            outbox: vec![call(Some("a"), "update_task", 2)],
            outbox_at_ms: 50,
            episodes: vec![episode(Uuid::now_v7(), "a", "A", 50)],
            ..Batch::default()
        };
        assert!(store.commit(id, &failing).await.is_err());
        assert_eq!(
            store.tasks(id).await.unwrap()[0].status,
            TaskStatus::Running
        );
        assert_eq!(store.outbox_counts(id).await.unwrap().undelivered, 1);
    }

    #[tokio::test]
    async fn outbox_counts_show_what_is_undelivered() {
        let (store, id) = store_with_run().await;
        let none = store.outbox_counts(id).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(none.oldest_at_ms, None);
        store
            .outbox_push(
                id,
                &[call(None, "create_workflow", 1), call(Some("a"), "x", 2)],
                10,
            )
            .await
            .unwrap();
        store
            .outbox_push(id, &[call(Some("b"), "x", 3), call(Some("a"), "x", 4)], 20)
            .await
            .unwrap();
        let items = store.outbox_due(Some(id), 20, 10).await.unwrap();
        store.outbox_delivered(&[items[0].id]).await.unwrap();
        store
            .outbox_retry_later(items[1].id, "down", 60)
            .await
            .unwrap();
        assert_eq!(
            store.outbox_counts(id).await.unwrap(),
            OutboxCounts {
                undelivered: 3,
                failing: 1,
                oldest_at_ms: Some(10),
            }
        );
        assert_eq!(
            store.outbox_counts(Uuid::now_v7()).await.unwrap(),
            OutboxCounts::default()
        );
    }

    #[tokio::test]
    async fn the_first_cortex_id_recorded_is_kept() {
        let (store, id) = store_with_run().await;
        assert_eq!(store.cortex_id(id, None).await.unwrap(), None);
        assert_eq!(store.set_cortex_id(id, None, "wf-1").await.unwrap(), "wf-1");
        assert_eq!(store.set_cortex_id(id, None, "wf-1").await.unwrap(), "wf-1");
        assert_eq!(store.set_cortex_id(id, None, "wf-2").await.unwrap(), "wf-1");
        assert_eq!(
            store.cortex_id(id, None).await.unwrap().as_deref(),
            Some("wf-1")
        );
        assert_eq!(store.cortex_id(id, Some("a")).await.unwrap(), None);
        assert_eq!(
            store.set_cortex_id(id, Some("a"), "t-1").await.unwrap(),
            "t-1"
        );
        assert_eq!(
            store.set_cortex_id(id, Some("a"), "t-2").await.unwrap(),
            "t-1"
        );
        assert_eq!(
            store.set_cortex_id(id, Some("b"), "t-3").await.unwrap(),
            "t-3"
        );
        assert_eq!(
            store.cortex_id(id, Some("a")).await.unwrap().as_deref(),
            Some("t-1")
        );
        assert_eq!(
            store.cortex_id(id, None).await.unwrap().as_deref(),
            Some("wf-1")
        );
        assert_eq!(outbox_rows(&store, "cortex_ids").await, 3);
        // Another run has its own ids.
        let other = Uuid::now_v7();
        store
            .create_run(&run_record(other), &[], &lease(1, 1))
            .await
            .unwrap();
        assert_eq!(store.cortex_id(other, Some("a")).await.unwrap(), None);
        assert_eq!(
            store.set_cortex_id(other, None, "wf-9").await.unwrap(),
            "wf-9"
        );
        let unknown = Uuid::now_v7();
        let err = store.set_cortex_id(unknown, None, "x").await;
        assert!(
            matches!(err, Err(StoreError::NoSuchRun(r)) if r == unknown),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn deleting_a_run_deletes_its_outbox_and_cortex_ids() {
        let (store, gone) = store_with_run().await;
        let kept = Uuid::now_v7();
        store
            .create_run(&run_record(kept), &[], &lease(1, 1))
            .await
            .unwrap();
        for run in [gone, kept] {
            store
                .outbox_push(run, &[call(None, "create_workflow", 1)], 1)
                .await
                .unwrap();
            store.set_cortex_id(run, None, "wf").await.unwrap();
            store.set_cortex_id(run, Some("a"), "t").await.unwrap();
        }
        sqlx::query("DELETE FROM runs WHERE run_id = ?")
            .bind(gone.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(outbox_rows(&store, "outbox").await, 1);
        assert_eq!(outbox_rows(&store, "cortex_ids").await, 2);
        assert_eq!(store.outbox_counts(gone).await.unwrap().undelivered, 0);
        assert_eq!(store.outbox_counts(kept).await.unwrap().undelivered, 1);
        assert_eq!(store.cortex_id(gone, None).await.unwrap(), None);
    }

    #[tokio::test]
    async fn finding_due_calls_reads_queue_heads_through_an_index() {
        let (store, _) = store_with_run().await;
        for (sql, index) in [
            (
                "SELECT * FROM outbox WHERE is_head = 1 AND next_attempt_at_ms <= 1
                 ORDER BY id LIMIT 10",
                "outbox_heads",
            ),
            (
                "SELECT * FROM outbox WHERE is_head = 1 AND run_id = 'r' AND next_attempt_at_ms <= 1
                 ORDER BY id LIMIT 10",
                "outbox_heads_by_run",
            ),
            (
                "SELECT min(id) FROM outbox WHERE delivered_at_ms IS NULL AND run_id = 'r'
                 AND task_id IS 'a'",
                "outbox_queue",
            ),
            // Marking calls delivered: the next heads of their queues, then the calls.
            (NEXT_OUTBOX_HEADS, "outbox_queue"),
            (DELETE_OUTBOX_ITEMS, "INTEGER PRIMARY KEY"),
            // The Cortex ids a courier's record keeps, read back.
            (
                "SELECT remote_id FROM cortex_ids
                 WHERE run_id = 'r' AND task_id IN (SELECT value FROM json_each('[]'))",
                "sqlite_autoindex_cortex_ids_1",
            ),
        ] {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }
}
