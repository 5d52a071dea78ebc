//! The SQLite side of [`crate::cortex`]: runs' Cortex servers, open Cortex sessions, and the
//! Cortex workspace of each workspace directory (migration 0006). The [`Store`](crate::Store)
//! methods of [`SqliteStore`](super::SqliteStore) call these.

use std::collections::HashMap;

use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

/// Bound values per statement, at most (SQLite allows 32,766).
pub(super) const CHUNK: usize = 900;

use super::{ensure_run, outbox_items, outbox_items_json, placeholders, u32_of, u64_of, uuid_of};
use crate::{CortexIdRecord, CortexSessionRecord, OutboxItem, OutboxRun, StoreError};

pub(super) async fn set_ids(
    pool: &SqlitePool,
    ids: &[CortexIdRecord],
) -> Result<Vec<String>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // IMMEDIATE: take the write lock up front (see `outbox_push`).
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let kept = set_ids_in(&mut tx, ids).await?;
    tx.commit().await?;
    Ok(kept)
}

/// Records the Cortex ids `ids` in `tx` (see [`set_ids`]); the ids now recorded, in order.
pub(super) async fn set_ids_in(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[CortexIdRecord],
) -> Result<Vec<String>, StoreError> {
    // A few statements, whatever the number of ids: the write lock this holds is the one the
    // engine's commits wait for.
    let mut runs: Vec<Uuid> = ids.iter().map(|i| i.run_id).collect();
    runs.sort_unstable();
    runs.dedup();
    for &run in &runs {
        ensure_run(tx, run).await?;
    }
    // The first id wins (see `set_cortex_id`), also within one statement.
    for chunk in ids.chunks(CHUNK / 3) {
        let rows = placeholders("(?, ?, ?)", chunk.len());
        let sql = format!(
            "INSERT INTO cortex_ids (run_id, task_id, remote_id) VALUES {rows} ON CONFLICT DO NOTHING"
        );
        // Only generated placeholders are pasted in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q
                .bind(id.run_id.to_string())
                .bind(&id.task_id)
                .bind(&id.remote_id);
        }
        q.execute(&mut **tx).await?;
    }
    // What is recorded now, read back per run as one row (a row each would be a message each
    // between SQLite's thread and this one).
    let mut recorded: HashMap<(Uuid, Option<String>), String> = HashMap::new();
    for &run in &runs {
        let run_text = run.to_string();
        let tasks: Vec<&str> = ids
            .iter()
            .filter(|i| i.run_id == run)
            .filter_map(|i| i.task_id.as_deref())
            .collect();
        if !tasks.is_empty() {
            let text: String = sqlx::query_scalar(
                "SELECT json_group_array(json_array(task_id, remote_id)) FROM cortex_ids
                 WHERE run_id = ? AND task_id IN (SELECT value FROM json_each(?))",
            )
            .bind(&run_text)
            .bind(sqlx::types::Json(&tasks))
            .fetch_one(&mut **tx)
            .await?;
            let rows: Vec<(String, String)> = serde_json::from_str(&text)
                .map_err(|e| super::corrupt("cortex_ids", format!("unreadable ids: {e}")))?;
            for (task, remote) in rows {
                recorded.insert((run, Some(task)), remote);
            }
        }
        if ids.iter().any(|i| i.run_id == run && i.task_id.is_none()) {
            let workflow: String = sqlx::query_scalar(
                "SELECT remote_id FROM cortex_ids WHERE run_id = ? AND task_id IS NULL",
            )
            .bind(&run_text)
            .fetch_one(&mut **tx)
            .await?;
            recorded.insert((run, None), workflow);
        }
    }
    ids.iter()
        .map(|i| {
            recorded
                .get(&(i.run_id, i.task_id.clone()))
                .cloned()
                .ok_or_else(|| super::corrupt("cortex_ids", "an id just recorded is missing"))
        })
        .collect()
}

pub(super) async fn followers(
    pool: &SqlitePool,
    run_id: Uuid,
    limit: u32,
) -> Result<Vec<OutboxItem>, StoreError> {
    // Found through the partial index `outbox_queue` (undelivered calls by run).
    let query = sqlx::query_scalar(outbox_items_json!(
        "SELECT * FROM outbox
         WHERE delivered_at_ms IS NULL AND run_id = ? AND is_head = 0
         ORDER BY id LIMIT ?"
    ))
    .bind(run_id.to_string())
    .bind(i64::from(limit));
    outbox_items(query, pool).await
}

pub(super) async fn set_server(
    pool: &SqlitePool,
    run_id: Uuid,
    server: &str,
) -> Result<String, StoreError> {
    let id = run_id.to_string();
    // IMMEDIATE: take the write lock up front (see `outbox_push`).
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    ensure_run(&mut tx, run_id).await?;
    sqlx::query("INSERT INTO cortex_runs (run_id, server) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(&id)
        .bind(server)
        .execute(&mut *tx)
        .await?;
    let kept: String = sqlx::query_scalar("SELECT server FROM cortex_runs WHERE run_id = ?")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(kept)
}

pub(super) async fn server(pool: &SqlitePool, run_id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT server FROM cortex_runs WHERE run_id = ?")
            .bind(run_id.to_string())
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn outbox_runs(pool: &SqlitePool) -> Result<Vec<OutboxRun>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.run_id AS run_id, c.server AS server, count(*) AS undelivered,
                min(o.id) AS oldest
         FROM outbox o LEFT JOIN cortex_runs c ON c.run_id = o.run_id
         WHERE o.delivered_at_ms IS NULL
         GROUP BY o.run_id ORDER BY oldest",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let run_id: String = row.try_get("run_id")?;
            Ok(OutboxRun {
                run_id: uuid_of(&run_id, "outbox")?,
                server: row.try_get("server")?,
                undelivered: u64_of(row.try_get("undelivered")?, "outbox", "count")?,
            })
        })
        .collect()
}

pub(super) async fn outbox_prune(pool: &SqlitePool, run_id: Uuid) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM outbox WHERE run_id = ? AND delivered_at_ms IS NOT NULL")
        .bind(run_id.to_string())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn session_opened(
    pool: &SqlitePool,
    session: &CortexSessionRecord,
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    ensure_run(&mut tx, session.run_id).await?;
    sqlx::query(
        "INSERT INTO cortex_sessions (run_id, task_id, attempt, session_id, created_at_ms)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(session.run_id.to_string())
    .bind(&session.task_id)
    .bind(i64::from(session.attempt))
    .bind(&session.session_id)
    .bind(session.created_at_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn session_closed(
    pool: &SqlitePool,
    run_id: Uuid,
    session_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM cortex_sessions WHERE run_id = ? AND session_id = ?")
        .bind(run_id.to_string())
        .bind(session_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn sessions(
    pool: &SqlitePool,
    run_id: Option<Uuid>,
) -> Result<Vec<CortexSessionRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM cortex_sessions WHERE ?1 IS NULL OR run_id = ?1
         ORDER BY created_at_ms, rowid",
    )
    .bind(run_id.map(|r| r.to_string()))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let run_id: String = row.try_get("run_id")?;
            Ok(CortexSessionRecord {
                run_id: uuid_of(&run_id, "cortex_sessions")?,
                task_id: row.try_get("task_id")?,
                attempt: u32_of(row.try_get("attempt")?, "cortex_sessions", "attempt")?,
                session_id: row.try_get("session_id")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect()
}

pub(super) async fn workspace(
    pool: &SqlitePool,
    server: &str,
    path: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT workspace_id FROM cortex_workspaces WHERE server = ? AND path = ?",
    )
    .bind(server)
    .bind(path)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn set_workspace(
    pool: &SqlitePool,
    server: &str,
    path: &str,
    workspace_id: &str,
    at_ms: i64,
) -> Result<String, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO cortex_workspaces (server, path, workspace_id, created_at_ms)
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(server)
    .bind(path)
    .bind(workspace_id)
    .bind(at_ms)
    .execute(&mut *tx)
    .await?;
    let kept: String = sqlx::query_scalar(
        "SELECT workspace_id FROM cortex_workspaces WHERE server = ? AND path = ?",
    )
    .bind(server)
    .bind(path)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::{lease, run_record};
    use crate::{NewOutboxItem, SqliteStore, Store, StoreError};

    use super::*;

    async fn store_with_runs(n: usize) -> (SqliteStore, Vec<Uuid>) {
        let store = SqliteStore::in_memory().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = Uuid::now_v7();
            store
                .create_run(&run_record(id), &[], &lease(1, 1))
                .await
                .unwrap();
            ids.push(id);
        }
        (store, ids)
    }

    fn session(run_id: Uuid, task: &str, attempt: u32, id: &str, at: i64) -> CortexSessionRecord {
        CortexSessionRecord {
            run_id,
            task_id: task.into(),
            attempt,
            session_id: id.into(),
            created_at_ms: at,
        }
    }

    #[tokio::test]
    async fn cortex_ids_recorded_together_keep_the_first_of_each() {
        let (store, runs) = store_with_runs(1).await;
        let r = runs[0];
        let rec = |t: Option<&str>, id: &str| CortexIdRecord {
            run_id: r,
            task_id: t.map(str::to_owned),
            remote_id: id.into(),
        };
        store.set_cortex_id(r, Some("b"), "old-b").await.unwrap();
        let kept = store
            .set_cortex_ids(&[rec(None, "w"), rec(Some("a"), "a1"), rec(Some("b"), "b1")])
            .await
            .unwrap();
        assert_eq!(kept, ["w", "a1", "old-b"]);
        // Twice in one call: the first wins there too; so does the workflow's id recorded
        // before.
        let kept = store
            .set_cortex_ids(&[rec(Some("d"), "d1"), rec(None, "w2"), rec(Some("d"), "d2")])
            .await
            .unwrap();
        assert_eq!(kept, ["d1", "w", "d1"]);
        assert_eq!(
            store.cortex_id(r, Some("a")).await.unwrap().as_deref(),
            Some("a1")
        );
        let unknown = CortexIdRecord {
            run_id: Uuid::now_v7(),
            ..rec(Some("c"), "c1")
        };
        let e = store.set_cortex_ids(&[rec(Some("c"), "c1"), unknown]).await;
        assert!(matches!(e, Err(StoreError::NoSuchRun(_))));
        assert_eq!(
            store.cortex_id(r, Some("c")).await.unwrap(),
            None,
            "all or nothing"
        );
    }

    #[tokio::test]
    async fn a_settled_round_records_ids_and_marks_calls_delivered_together() {
        let (store, runs) = store_with_runs(1).await;
        let r = runs[0];
        let item = |t: &str, k: &str| NewOutboxItem::task(t, k, serde_json::json!({}));
        let calls = [
            item("a", "create_task"),
            item("b", "create_task"),
            item("a", "u1"),
        ];
        store.outbox_push(r, &calls, 5).await.unwrap();
        let heads = store.outbox_due(Some(r), 10, 10).await.unwrap();
        assert_eq!(heads.len(), 2);
        let rec = |t: &str, id: &str| CortexIdRecord {
            run_id: r,
            task_id: Some(t.to_owned()),
            remote_id: id.into(),
        };
        store.set_cortex_id(r, Some("b"), "old-b").await.unwrap();
        let ids: Vec<i64> = heads.iter().map(|i| i.id).collect();
        let kept = store
            .outbox_settle(&[rec("a", "a1"), rec("b", "b1")], &ids)
            .await
            .unwrap();
        assert_eq!(kept, ["a1", "old-b"], "the first id recorded wins");
        assert_eq!(
            store.cortex_id(r, Some("a")).await.unwrap().as_deref(),
            Some("a1")
        );
        // a's update is its queue's head now, and the only call left.
        let heads = store.outbox_due(Some(r), 10, 10).await.unwrap();
        let kinds: Vec<&str> = heads.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, ["u1"]);
        assert_eq!(store.outbox_counts(r).await.unwrap().undelivered, 1);
        // Nothing to record: only marks.
        assert!(
            store
                .outbox_settle(&[], &[heads[0].id])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.outbox_counts(r).await.unwrap().undelivered, 0);
        // An unknown run: nothing is recorded, nothing is marked.
        store
            .outbox_push(r, &[item("c", "create_task")], 8)
            .await
            .unwrap();
        let c = store.outbox_due(Some(r), 10, 10).await.unwrap();
        let unknown = CortexIdRecord {
            run_id: Uuid::now_v7(),
            ..rec("c", "c1")
        };
        let e = store.outbox_settle(&[unknown], &[c[0].id]).await;
        assert!(matches!(e, Err(StoreError::NoSuchRun(_))));
        assert_eq!(
            store.outbox_counts(r).await.unwrap().undelivered,
            1,
            "all or nothing"
        );
    }

    #[tokio::test]
    async fn followers_are_the_undelivered_calls_behind_each_queue_head() {
        let (store, runs) = store_with_runs(1).await;
        let r = runs[0];
        let item = |t: &str, k: &str| NewOutboxItem::task(t, k, serde_json::json!({}));
        let first = [item("a", "create_task"), item("b", "x"), item("a", "u1")];
        store.outbox_push(r, &first, 5).await.unwrap();
        let then = [item("a", "u2"), item("b", "y")];
        store.outbox_push(r, &then, 1_000).await.unwrap();
        let kinds = |q: Vec<OutboxItem>| q.into_iter().map(|i| i.kind).collect::<Vec<_>>();
        let followers = store.outbox_followers(r, 10).await.unwrap();
        assert_eq!(kinds(followers), ["u1", "u2", "y"]);
        let heads = store.outbox_due(Some(r), 10, 10).await.unwrap();
        let a = heads.iter().find(|i| i.kind == "create_task").unwrap();
        store.outbox_delivered(&[a.id]).await.unwrap();
        // u1 is a's head now; u2 still follows it.
        let followers = store.outbox_followers(r, 10).await.unwrap();
        assert_eq!(kinds(followers), ["u2", "y"]);
        assert_eq!(kinds(store.outbox_followers(r, 1).await.unwrap()), ["u2"]);
        let none = store.outbox_followers(Uuid::now_v7(), 10).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn the_first_server_recorded_for_a_run_is_kept() {
        let (store, runs) = store_with_runs(1).await;
        assert_eq!(store.cortex_server(runs[0]).await.unwrap(), None);
        let kept = store
            .set_cortex_server(runs[0], "http://a:8080")
            .await
            .unwrap();
        assert_eq!(kept, "http://a:8080");
        let kept = store
            .set_cortex_server(runs[0], "http://b:8080")
            .await
            .unwrap();
        assert_eq!(kept, "http://a:8080");
        assert_eq!(
            store.cortex_server(runs[0]).await.unwrap().as_deref(),
            Some("http://a:8080")
        );
        let unknown = store.set_cortex_server(Uuid::now_v7(), "http://a").await;
        assert!(matches!(unknown, Err(StoreError::NoSuchRun(_))));
    }

    #[tokio::test]
    async fn sessions_are_listed_until_closed() {
        let (store, runs) = store_with_runs(2).await;
        let (a, b) = (runs[0], runs[1]);
        store
            .cortex_session_opened(&session(a, "t1", 1, "s1", 10))
            .await
            .unwrap();
        store
            .cortex_session_opened(&session(b, "t1", 1, "s2", 20))
            .await
            .unwrap();
        store
            .cortex_session_opened(&session(a, "t2", 2, "s3", 30))
            .await
            .unwrap();
        // Recording one twice changes nothing.
        store
            .cortex_session_opened(&session(a, "t1", 1, "s1", 10))
            .await
            .unwrap();
        let all: Vec<String> = store
            .cortex_sessions(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(all, ["s1", "s2", "s3"]);
        let of_a = store.cortex_sessions(Some(a)).await.unwrap();
        assert_eq!(
            of_a,
            [session(a, "t1", 1, "s1", 10), session(a, "t2", 2, "s3", 30)]
        );
        store.cortex_session_closed(a, "s1").await.unwrap();
        store.cortex_session_closed(a, "s2").await.unwrap(); // another run's: ignored
        store.cortex_session_closed(a, "nope").await.unwrap();
        let left: Vec<String> = store
            .cortex_sessions(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(left, ["s2", "s3"]);
        let unknown = store
            .cortex_session_opened(&session(Uuid::now_v7(), "t", 1, "s", 1))
            .await;
        assert!(matches!(unknown, Err(StoreError::NoSuchRun(_))));
    }

    #[tokio::test]
    async fn a_workspace_is_remembered_per_server_and_path_and_the_first_wins() {
        let (store, _) = store_with_runs(0).await;
        assert_eq!(
            store.cortex_workspace("http://a", "/ws").await.unwrap(),
            None
        );
        let kept = store
            .set_cortex_workspace("http://a", "/ws", "w1", 1)
            .await
            .unwrap();
        assert_eq!(kept, "w1");
        let kept = store
            .set_cortex_workspace("http://a", "/ws", "w2", 2)
            .await
            .unwrap();
        assert_eq!(kept, "w1");
        store
            .set_cortex_workspace("http://b", "/ws", "w3", 3)
            .await
            .unwrap();
        store
            .set_cortex_workspace("http://a", "/other", "w4", 4)
            .await
            .unwrap();
        let get = |server: &'static str, path: &'static str| {
            let store = store.clone();
            async move { store.cortex_workspace(server, path).await.unwrap() }
        };
        assert_eq!(get("http://a", "/ws").await.as_deref(), Some("w1"));
        assert_eq!(get("http://b", "/ws").await.as_deref(), Some("w3"));
        assert_eq!(get("http://a", "/other").await.as_deref(), Some("w4"));
    }

    #[tokio::test]
    async fn outbox_runs_lists_runs_with_undelivered_calls_and_prune_clears_only_delivered_ones() {
        let (store, runs) = store_with_runs(3).await;
        let (a, b, c) = (runs[0], runs[1], runs[2]);
        let item = |t: &str| NewOutboxItem::task(t, "update_task", serde_json::json!({}));
        store
            .outbox_push(b, &[item("x"), item("y")], 5)
            .await
            .unwrap();
        store.outbox_push(a, &[item("x")], 6).await.unwrap();
        store.outbox_push(c, &[item("x")], 7).await.unwrap();
        store.set_cortex_server(a, "http://a").await.unwrap();
        // Everything of c is delivered: it is not listed.
        let due = store.outbox_due(Some(c), 100, 10).await.unwrap();
        store.outbox_delivered(&[due[0].id]).await.unwrap();
        let listed = store.outbox_runs().await.unwrap();
        assert_eq!(
            listed,
            [
                OutboxRun {
                    run_id: b,
                    server: None,
                    undelivered: 2
                },
                OutboxRun {
                    run_id: a,
                    server: Some("http://a".into()),
                    undelivered: 1
                },
            ]
        );
        // A delivered call leaves the outbox at once: nothing is left to prune.
        let due = store.outbox_due(Some(b), 100, 10).await.unwrap();
        store.outbox_delivered(&[due[0].id]).await.unwrap();
        assert_eq!(store.outbox_prune(b).await.unwrap(), 0);
        assert_eq!(store.outbox_counts(b).await.unwrap().undelivered, 1);
        // Pruning deletes the delivered calls an earlier version kept, and only those.
        for run in [b, c] {
            sqlx::query(
                "INSERT INTO outbox (run_id, task_id, kind, payload, created_at_ms,
                                     next_attempt_at_ms, delivered_at_ms)
                 VALUES (?, 'old', 'update_task', '{}', 1, 1, 2)",
            )
            .bind(run.to_string())
            .execute(&store.writer)
            .await
            .unwrap();
        }
        assert_eq!(store.outbox_prune(b).await.unwrap(), 1);
        assert_eq!(store.outbox_prune(b).await.unwrap(), 0);
        assert_eq!(store.outbox_counts(b).await.unwrap().undelivered, 1);
        assert_eq!(store.outbox_prune(c).await.unwrap(), 1);
        // A call delivered before is not delivered again, nor made a head.
        assert!(
            store
                .outbox_due(Some(c), i64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
