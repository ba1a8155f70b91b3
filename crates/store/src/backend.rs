//! The one store type, with SQLite or PostgreSQL behind it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use switchboard_model::address::ALL_CHANNELS;
use switchboard_model::{Channel, Message, MessageId};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::listing::{Bind, ListQuery};
use crate::rows::{EventRow, MessageRow};
use crate::writer::{
    self, AttemptResult, CancelOutcome, Claim, Claimed, InsertOutcome, Intake, NewMessage, Report,
    ReportOutcome, Signals, WriteOp,
};
use crate::{StoreError, StoreOptions};

/// The pools of one backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same block against whichever pool the store has; the block sees `$pool`
/// typed for its backend, so one piece of query code serves both.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::backend::Pool::Sqlite($p) => $body,
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    writes: mpsc::Sender<WriteOp>,
    signals: Signals,
}

/// Durable storage: messages, their events, idempotency keys and the outbox.
/// Cheap to clone; all clones share one pool and one writer.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl Store {
    /// Opens the database at `url` (`sqlite://path` or `postgres://...`), brings its
    /// schema up to date, and starts the group-commit writer.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let (pool, writer_connect) = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it is acknowledged, even on power loss.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(dir) = connect.get_filename().parent() {
                create_dir(dir)?;
            }
            let readers = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(connect.clone())
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&readers).await?;
            (Pool::Sqlite(readers), WriterConnect::Sqlite(connect))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(connect.clone())
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            (Pool::Postgres(pool), WriterConnect::Postgres(connect))
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let (writes, queue) = mpsc::channel(options.max_batch.max(1) * 4);
        let signals = Signals::default();
        if let Pool::Postgres(pg) = &pool {
            tokio::spawn(listen(pg.clone(), signals.clone()));
        }
        start_writer(
            writer_connect,
            queue,
            options.max_batch.max(1),
            signals.clone(),
        )
        .await?;
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                writes,
                signals,
            }),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.inner.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Takes due outbound work (see [`Claim`]): messages routed and marked `sending`
    /// under a lease, in one transaction.
    pub async fn claim(&self, claim: Claim) -> Result<Vec<Claimed>, StoreError> {
        self.write(|reply| WriteOp::Claim(Box::new(claim), reply))
            .await
    }

    /// Records what became of an attempt to send message `id` through `connector`.
    pub async fn record_outcome(
        &self,
        id: &str,
        connector: &str,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        let (id, connector) = (id.to_owned(), connector.to_owned());
        self.write(|reply| WriteOp::Outcome {
            id,
            connector,
            result,
            reply,
        })
        .await
    }

    /// Applies a delivery report from the far side, or keeps it until the message it
    /// refers to is known.
    pub async fn report(&self, report: Report) -> Result<ReportOutcome, StoreError> {
        self.write(|reply| WriteOp::Report(Box::new(report), reply))
            .await
    }

    /// Notified after every commit of the writer: workers wait on it instead of polling.
    pub fn changes(&self) -> Arc<Notify> {
        self.inner.signals.changes.clone()
    }

    /// Notified after a commit that left outbox work for a claim (a message not handed
    /// off, a retry or a deferral scheduled), and after commits of other instances.
    pub fn outbox_changes(&self) -> Arc<Notify> {
        self.inner.signals.outbox.clone()
    }

    /// Hands new messages straight to a dispatcher from now on (see [`Intake`]), or,
    /// with `None`, no more. Once a write issued after this call is answered, no
    /// hand-off to the previous intake is still to come.
    pub fn set_intake(&self, intake: Option<Intake>) {
        *self
            .inner
            .signals
            .intake
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = intake;
    }

    /// The earliest time an outbox row of a message to one of `channels` (those with a
    /// running adapter) falls due, in microseconds since the epoch.
    pub async fn next_due(&self, channels: &[Channel]) -> Result<Option<i64>, StoreError> {
        if channels.is_empty() {
            return Ok(None);
        }
        // A leased row's `due_at` is the end of its lease.
        let every = ALL_CHANNELS.iter().all(|c| channels.contains(c));
        let (due,): (Option<i64>,) = on_pool!(&self.inner.pool, pool => {
            if every {
                sqlx::query_as("SELECT MIN(due_at) FROM outbox").fetch_one(pool).await?
            } else {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT MIN(o.due_at) FROM outbox o \
                     JOIN messages m ON m.id = o.message_id WHERE m.channel IN (",
                );
                let mut list = q.separated(", ");
                for channel in channels {
                    list.push_bind(channel.as_str());
                }
                q.push(")");
                q.build_query_as().fetch_one(pool).await?
            }
        });
        Ok(due)
    }

    /// Transactions the writer has committed since the store opened.
    pub fn commit_count(&self) -> u64 {
        self.inner.signals.commits.load(Ordering::Relaxed)
    }

    /// Messages waiting in the outbox (due or not).
    pub async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let (depth,): (i64,) = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM outbox").fetch_one(pool).await?
        });
        Ok(u64::try_from(depth).unwrap_or_default())
    }

    /// The value of a named setting, stored as `initial` the first time it is asked for.
    /// Several instances sharing one database agree on the value.
    pub async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError> {
        let (value,): (String,) = on_pool!(&self.inner.pool, pool => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(initial)
                .execute(pool)
                .await?;
            sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        });
        Ok(value)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.inner.pool, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Stores a new message (with its first event, its outbox row when it is to be
    /// sent, and its idempotency key), answering once the commit is done.
    pub async fn insert_message(&self, new: NewMessage) -> Result<InsertOutcome, StoreError> {
        self.write(|reply| WriteOp::Insert(Box::new(new), reply))
            .await
    }

    /// Cancels a tenant's message if it is still queued.
    pub async fn cancel_message(
        &self,
        tenant: &str,
        id: &str,
        detail: Option<String>,
    ) -> Result<CancelOutcome, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(|reply| WriteOp::Cancel {
            tenant,
            id,
            detail,
            reply,
        })
        .await
    }

    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// A tenant's message with its events, or None (also when another tenant owns it).
    pub async fn get_message(&self, tenant: &str, id: &str) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as("SELECT * FROM messages WHERE id = $1 AND tenant = $2")
                .bind(id)
                .bind(tenant)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let events: Vec<EventRow> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT status, at, detail FROM message_events WHERE message_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        let mut message = row.into_message()?;
        message.events = Some(
            events
                .into_iter()
                .map(EventRow::into_event)
                .collect::<Result<_, _>>()?,
        );
        Ok(Some(message))
    }

    /// A page of a tenant's messages, newest first, without their events.
    pub async fn list_messages(
        &self,
        tenant: &str,
        query: &ListQuery,
    ) -> Result<Vec<Message>, StoreError> {
        let postgres = matches!(self.inner.pool, Pool::Postgres(_));
        if !postgres && query.searches_text() {
            // SQLite indexes text in bulk: index what is committed, then search.
            self.write(WriteOp::IndexText).await?;
        }
        let (sql, binds) = query.to_sql(tenant, postgres);
        let rows: Vec<MessageRow> = on_pool!(&self.inner.pool, pool => {
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for bind in binds {
                q = match bind {
                    Bind::Text(text) => q.bind(text),
                    Bind::Int(int) => q.bind(int),
                };
            }
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(MessageRow::into_message).collect()
    }

    /// The id of a stored message, for tests and tools that need to look one up.
    pub async fn message_exists(&self, id: &MessageId) -> Result<bool, StoreError> {
        let found: Option<(String,)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as("SELECT id FROM messages WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }
}

/// How the writer connects: its connection is made on the writer's own thread.
enum WriterConnect {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// Starts the group-commit writer on a thread of its own, with its own single-threaded
/// runtime and one connection that it keeps (its pool never tests the connection before
/// a batch; the writer checks it after a failure). Each statement of a batch is a round
/// trip to the database driver; on the request runtime, every one of those would wait
/// behind the HTTP tasks queued there, and the batch (and every request in it) with it.
async fn start_writer(
    connect: WriterConnect,
    queue: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    signals: Signals,
) -> Result<(), StoreError> {
    let (ready, started) = oneshot::channel();
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(StoreError::Write(format!(
                        "cannot start the writer: {e}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                let pool = match connect {
                    WriterConnect::Sqlite(options) => SqlitePoolOptions::new()
                        .max_connections(1)
                        .test_before_acquire(false)
                        .connect_with(options.statement_cache_capacity(writer::STATEMENT_CACHE))
                        .await
                        .map(Pool::Sqlite),
                    WriterConnect::Postgres(options) => PgPoolOptions::new()
                        .max_connections(1)
                        .test_before_acquire(false)
                        .connect_with(options.statement_cache_capacity(writer::STATEMENT_CACHE))
                        .await
                        .map(Pool::Postgres),
                };
                match pool {
                    Ok(pool) => {
                        let _ = ready.send(Ok(()));
                        writer::run(pool, queue, max_batch, signals).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.into()));
                    }
                }
            });
        })
        .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
    started.await.map_err(|_| StoreError::Closed)?
}

/// Turns commits of other gateway instances on the same PostgreSQL database (announced
/// with NOTIFY) into wake-ups of this one's workers. Reconnects when the connection drops.
async fn listen(pool: PgPool, signals: Signals) {
    let mut delay = Duration::from_millis(200);
    loop {
        let listened: Result<std::convert::Infallible, sqlx::Error> = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(writer::CHANGES_CHANNEL).await?;
            loop {
                listener.recv().await?;
                signals.changes.notify_waiters();
                signals.outbox.notify_waiters();
            }
        }
        .await;
        let Err(e) = listened;
        if matches!(e, sqlx::Error::PoolClosed) {
            return;
        }
        tracing::warn!(error = %e, "lost the PostgreSQL change notifications; reconnecting");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
        path: dir.display().to_string(),
        source,
    })
}
