//! [`Script`]: several SQL statements sent to SQLite as one query.
//!
//! sqlx runs each SQLite connection on a thread of its own; every query is a message to that
//! thread and an answer back, two thread wake-ups, which cost more than the small statements
//! of a commit themselves. A script sends a transaction's statements in one message: sqlx
//! prepares (and caches) each statement of the text and binds the anonymous `?` parameters in
//! order across them.

use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteQueryResult};
use sqlx::{Arguments, Encode, Executor, Sqlite, Type};

use crate::StoreError;

/// Statements and their arguments, in order.
#[derive(Default)]
pub(crate) struct Script {
    sql: String,
    args: SqliteArguments,
    statements: usize,
    /// The first value that could not be encoded (reported by [`Script::execute`]).
    error: Option<BoxDynError>,
}

impl Script {
    /// Adds `sql`, one statement whose parameters are all anonymous (`?`): bind them next, in
    /// the order they appear.
    pub(crate) fn statement(&mut self, sql: &str) -> &mut Self {
        debug_assert!(
            !sql.contains("?1"),
            "numbered parameters would not survive a script"
        );
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self.statements += 1;
        self
    }

    /// Binds the next parameter.
    pub(crate) fn bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Sqlite> + Type<Sqlite>,
    {
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
        self
    }

    /// Binds the next parameter to `value` as JSON text.
    pub(crate) fn bind_json(&mut self, value: &impl serde::Serialize) -> &mut Self {
        match serde_json::to_string(value) {
            Ok(text) => self.bind(text),
            Err(e) => {
                self.error.get_or_insert(Box::new(e));
                self
            }
        }
    }

    /// Whether it has no statement.
    pub(crate) fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// Runs every statement on `conn` (a transaction, or a connection for a script of one
    /// statement), stopping at the first that fails. The result counts the rows every
    /// statement changed, and has the last insert's row id.
    ///
    /// # Errors
    /// The first statement's error, or a value that could not be encoded.
    pub(crate) async fn execute<'e>(
        self,
        conn: impl Executor<'e, Database = Sqlite>,
    ) -> Result<SqliteQueryResult, StoreError> {
        if self.is_empty() {
            return Ok(SqliteQueryResult::default());
        }
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e).into());
        }
        // The text is made of this crate's constant statements only; every value is bound.
        Ok(sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args)
            .execute(conn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    /// A database of one connection, with `table` created.
    async fn pool_with(table: &'static str) -> sqlx::SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query(table).execute(&pool).await.unwrap();
        pool
    }

    #[tokio::test]
    async fn statements_run_in_order_with_their_own_arguments() {
        let pool = pool_with("CREATE TABLE t (a INTEGER, b TEXT)").await;
        let mut tx = pool.begin().await.unwrap();
        let mut s = Script::default();
        assert!(s.is_empty());
        s.statement("INSERT INTO t (a, b) VALUES (?, ?)")
            .bind(1_i64)
            .bind("one");
        s.statement("UPDATE t SET b = b || ? WHERE a = ?")
            .bind("!")
            .bind(1_i64);
        s.statement("INSERT INTO t (a, b) VALUES (?, ?)")
            .bind(2_i64)
            .bind(None::<String>);
        s.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as("SELECT a, b FROM t ORDER BY a")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, [(1, Some("one!".to_owned())), (2, None)]);
    }

    #[tokio::test]
    async fn a_failing_statement_stops_the_script_and_its_transaction_rolls_back() {
        let pool = pool_with("CREATE TABLE t (a INTEGER PRIMARY KEY)").await;
        let mut tx = pool.begin().await.unwrap();
        let mut s = Script::default();
        s.statement("INSERT INTO t (a) VALUES (?)").bind(1_i64);
        s.statement("INSERT INTO t (a) VALUES (?)").bind(1_i64);
        s.statement("INSERT INTO t (a) VALUES (?)").bind(2_i64);
        let err = s.execute(&mut *tx).await.unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            cause.as_deref().is_some_and(|c| c.contains("UNIQUE")),
            "{err:?}"
        );
        drop(tx);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
