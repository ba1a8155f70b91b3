//! The writer's transactions as scripts: on SQLite, a script of statements that the
//! writer runs itself, through the connection's handle, on its own thread; on
//! PostgreSQL, a query builder that runs each statement as it is ended.
//!
//! The SQLite driver runs every statement on a thread of its own and answers each
//! with a message, and every answer wakes the writer. The usual batch is one script of
//! about eight statements: run here, it costs one hand-off of the handle instead of a
//! wake-up per statement, and none of the driver's work per statement.

use std::future::Future;

use rusqlite::types::Value;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use crate::StoreError;

/// What the writer builds a transaction's statements in, for its backend.
pub(crate) trait Script {
    /// The connection it runs on.
    type Connection;

    /// Whether statements wait to be run.
    fn has_statements(&self) -> bool;

    /// Runs the statements that wait, and empties the script.
    fn run(&mut self, conn: &mut Self::Connection) -> impl Future<Output = Result<(), StoreError>>;

    /// Lets go of what the script keeps on `conn`, before the connection is closed.
    fn release(&mut self, conn: &mut Self::Connection) -> impl Future<Output = ()>;
}

/// The pools the writer's scripts are made for.
pub(crate) trait ScriptPool {
    /// The script for this pool's backend.
    type Script: Script;

    /// An empty script.
    fn script(&self) -> Self::Script;
}

impl ScriptPool for sqlx::Pool<Sqlite> {
    type Script = SqliteScript;

    fn script(&self) -> SqliteScript {
        SqliteScript::default()
    }
}

impl ScriptPool for sqlx::Pool<Postgres> {
    type Script = QueryBuilder<Postgres>;

    fn script(&self) -> QueryBuilder<Postgres> {
        QueryBuilder::new("")
    }
}

impl Script for QueryBuilder<Postgres> {
    type Connection = sqlx::PgConnection;

    fn has_statements(&self) -> bool {
        !self.sql().as_str().is_empty()
    }

    async fn run(&mut self, conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let result = sqlx::Executor::execute(&mut *conn, self.build()).await;
        self.reset();
        result.map(drop).map_err(StoreError::from)
    }

    async fn release(&mut self, _conn: &mut sqlx::PgConnection) {}
}

/// SQLite statements to run in order, built like a [`QueryBuilder`]: text, with `?`
/// for each bound value. A `;` in pushed text ends a statement (the statements here
/// have none inside a literal); bound values may hold anything.
#[derive(Default)]
pub(crate) struct SqliteScript {
    sql: String,
    values: Vec<Value>,
    /// For each `;` in `sql`: its position, and the number of values before it.
    ends: Vec<(usize, usize)>,
    /// The connection's handle, with the statements prepared on it so far.
    direct: Option<Direct>,
}

/// The writer's view of a connection's handle, and its prepared statements.
struct Direct {
    /// The address of the handle it was made from.
    handle: usize,
    conn: rusqlite::Connection,
}

impl SqliteScript {
    /// Appends text; each `;` in it ends a statement.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        let start = self.sql.len();
        self.sql.push_str(sql);
        let bound = self.values.len();
        let ends = sql.bytes().enumerate().filter(|&(_, b)| b == b';');
        self.ends.extend(ends.map(|(at, _)| (start + at, bound)));
        self
    }

    /// Appends a placeholder, and binds `value` to it.
    pub(crate) fn push_bind<T: Bind>(&mut self, value: T) -> &mut Self {
        self.sql.push('?');
        self.values.push(value.into_value());
        self
    }

    /// A list of values joined by `separator`.
    pub(crate) fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated {
            script: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (...), (...)`: one tuple for each item, filled by `tuple`.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut tuple: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            tuple(self.separated(", "), item);
            self.push(")");
        }
        self
    }

    /// Forgets the statements built so far.
    pub(crate) fn reset(&mut self) -> &mut Self {
        self.sql.clear();
        self.values.clear();
        self.ends.clear();
        self
    }

    /// Runs every statement on `db`, in order, each prepared once per connection.
    fn execute(&mut self, db: *mut rusqlite::ffi::sqlite3) -> Result<(), StoreError> {
        let handle = db as usize;
        let direct = match &mut self.direct {
            Some(direct) if direct.handle == handle => direct,
            slot => {
                // A handle not released (see `release`) may be closed already: its
                // statements are left as they are rather than finalized on it.
                if let Some(stale) = slot.take() {
                    std::mem::forget(stale);
                }
                // Safety: the caller holds the connection's lock (`lock_handle`), so
                // nothing else uses the handle while this runs; the connection made
                // here does not own the handle, and it is dropped (its statements
                // finalized) by `release` before the handle is closed.
                #[allow(unsafe_code)]
                let conn = unsafe { rusqlite::Connection::from_handle(db) }.map_err(sqlite)?;
                // Every shape the writer runs stays prepared.
                conn.set_prepared_statement_cache_capacity(crate::writer::STATEMENT_CACHE);
                slot.insert(Direct { handle, conn })
            }
        };
        let last = (self.sql.len(), self.values.len());
        let (mut start, mut first) = (0, 0);
        for &(end, bound) in self.ends.iter().chain(std::iter::once(&last)) {
            let text = self.sql.get(start..end).unwrap_or_default().trim();
            let values = self.values.get(first..bound).unwrap_or_default();
            start = end + 1;
            first = bound;
            if text.is_empty() {
                continue;
            }
            let mut statement = direct.conn.prepare_cached(text).map_err(sqlite)?;
            if statement.parameter_count() != values.len() {
                return Err(StoreError::Sqlite(format!(
                    "{} values for {} parameters in {text}",
                    values.len(),
                    statement.parameter_count()
                )));
            }
            for (i, value) in values.iter().enumerate() {
                statement.raw_bind_parameter(i + 1, value).map_err(sqlite)?;
            }
            statement.raw_execute().map_err(sqlite)?;
        }
        Ok(())
    }
}

impl Script for SqliteScript {
    type Connection = SqliteConnection;

    fn has_statements(&self) -> bool {
        !self.sql.is_empty()
    }

    async fn run(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let result = match conn.lock_handle().await {
            Ok(mut locked) => self.execute(locked.as_raw_handle().as_ptr()),
            Err(e) => Err(e.into()),
        };
        self.reset();
        result
    }

    async fn release(&mut self, conn: &mut SqliteConnection) {
        if let Some(direct) = self.direct.take() {
            // Finalize the statements while the driver's thread lets go of the handle;
            // if that thread has stopped, nothing else uses the handle.
            let _locked = conn.lock_handle().await;
            drop(direct);
        }
    }
}

/// A list of bound values with a separator between them, as in a tuple of `VALUES`.
pub(crate) struct Separated<'a> {
    script: &'a mut SqliteScript,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    /// Appends the separator (after the first), then a placeholder bound to `value`.
    pub(crate) fn push_bind<T: Bind>(&mut self, value: T) -> &mut Self {
        if !self.first {
            self.script.push(self.separator);
        }
        self.first = false;
        self.script.push_bind(value);
        self
    }
}

/// A value the writer binds in a [`SqliteScript`]: text, an integer, or null.
pub(crate) trait Bind {
    /// The value, owned by the script.
    fn into_value(self) -> Value;
}

impl Bind for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Bind for String {
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}

impl Bind for i64 {
    fn into_value(self) -> Value {
        Value::Integer(self)
    }
}

impl<T: Bind> Bind for Option<T> {
    fn into_value(self) -> Value {
        self.map_or(Value::Null, Bind::into_value)
    }
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e.to_string())
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::{Script, SqliteScript};
    use crate::StoreError;

    async fn connection() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        sqlx::Executor::execute(&mut conn, "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
            .await
            .expect("table");
        conn
    }

    async fn rows(conn: &mut SqliteConnection) -> Vec<(String, Option<i64>)> {
        sqlx::query_as("SELECT k, n FROM t ORDER BY k")
            .fetch_all(conn)
            .await
            .expect("select")
    }

    /// Two inserts of `keys`, as one script: each `;` ends a statement, and each
    /// statement gets the values bound in it.
    fn inserts(q: &mut SqliteScript, keys: [&str; 2]) {
        q.push("BEGIN; INSERT INTO t (k, n) ");
        q.push_values([(keys[0], Some(1i64)), (keys[1], None)], |mut b, (k, n)| {
            b.push_bind(k).push_bind(n);
        });
        q.push("; UPDATE t SET n = ");
        q.push_bind(7i64);
        q.push(" WHERE k = ");
        q.push_bind(keys[1].to_owned());
        q.push("; COMMIT");
    }

    #[tokio::test]
    async fn runs_each_statement_with_its_values() {
        let mut conn = connection().await;
        let mut q = SqliteScript::default();
        inserts(&mut q, ["a", "b"]);
        assert!(q.has_statements());
        q.run(&mut conn).await.expect("script");
        assert!(!q.has_statements(), "a script is empty once run");
        // The same shapes again: prepared statements are reused with new values.
        inserts(&mut q, ["c", "d"]);
        q.run(&mut conn).await.expect("script again");
        let expected = [("a", 1), ("b", 7), ("c", 1), ("d", 7)]
            .map(|(k, n)| (k.to_owned(), Some(n)))
            .to_vec();
        assert_eq!(rows(&mut conn).await, expected);
        q.release(&mut conn).await;
        conn.close().await.expect("close after release");
    }

    #[tokio::test]
    async fn a_failing_statement_stops_the_script_and_leaves_the_connection_usable() {
        let mut conn = connection().await;
        let mut q = SqliteScript::default();
        inserts(&mut q, ["a", "a"]);
        let error = q.run(&mut conn).await.expect_err("duplicate key");
        assert!(
            matches!(&error, StoreError::Sqlite(text) if text.contains("UNIQUE")),
            "{error}"
        );
        assert!(!q.has_statements());
        // The driver has the handle back: the caller's ROLLBACK goes through it.
        sqlx::Executor::execute(&mut conn, "ROLLBACK")
            .await
            .expect("rollback");
        assert!(rows(&mut conn).await.is_empty(), "nothing of it stayed");
        inserts(&mut q, ["a", "b"]);
        q.run(&mut conn).await.expect("the next script");
        assert_eq!(rows(&mut conn).await.len(), 2);
        q.release(&mut conn).await;
    }

    #[tokio::test]
    async fn a_script_released_from_one_connection_runs_on_another() {
        let mut first = connection().await;
        let mut q = SqliteScript::default();
        inserts(&mut q, ["a", "b"]);
        q.run(&mut first).await.expect("first connection");
        q.release(&mut first).await;
        first.close().await.expect("close");
        let mut second = connection().await;
        inserts(&mut q, ["c", "d"]);
        q.run(&mut second).await.expect("second connection");
        assert_eq!(rows(&mut second).await.len(), 2);
        q.release(&mut second).await;
    }
}
