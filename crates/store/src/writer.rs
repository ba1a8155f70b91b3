//! The group-commit writer: one task takes every write that is waiting, applies them
//! in one transaction, commits once, then answers each.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sqlx::QueryBuilder;
use switchboard_model::{Message, MessageStatus};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::backend::{Pool, on_pool};
use crate::rows::to_json;
use crate::time::to_micros;

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message, with its status and (optionally) its first event in `events`.
    pub message: Message,
    /// Put it in the outbox, due at its `send_at` (or now).
    pub enqueue: bool,
    /// The `Idempotency-Key` it came with, if any.
    pub idempotency: Option<IdempotencyKey>,
}

/// An `Idempotency-Key` and what to answer when it comes again.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// A hash of the request body: a repeat with another body is refused.
    pub request_hash: String,
    /// The response body given the first time.
    pub response: String,
}

/// What became of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored and committed.
    Created,
    /// The key was used before with the same body: nothing stored, answer as then.
    Replayed {
        /// The message created the first time.
        message_id: String,
        /// The response body given the first time.
        response: String,
    },
    /// The key was used before with another body.
    KeyReused {
        /// The message created the first time.
        message_id: String,
    },
}

/// What became of a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now canceled.
    Canceled,
    /// No such message for this tenant.
    NotFound,
    /// It is past `queued` (the status it has).
    TooLate(MessageStatus),
}

pub(crate) enum WriteOp {
    Insert(
        Box<NewMessage>,
        oneshot::Sender<Result<InsertOutcome, StoreError>>,
    ),
    Cancel {
        tenant: String,
        id: String,
        detail: Option<String>,
        reply: oneshot::Sender<Result<CancelOutcome, StoreError>>,
    },
}

impl WriteOp {
    /// Answers a write that could not be attempted.
    fn fail(self, error: &str) {
        let err = || StoreError::Write(error.to_owned());
        match self {
            WriteOp::Insert(_, reply) => drop(reply.send(Err(err()))),
            WriteOp::Cancel { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// An answer held back until the transaction commits.
enum Pending {
    Insert(
        oneshot::Sender<Result<InsertOutcome, StoreError>>,
        InsertOutcome,
    ),
    Cancel(
        oneshot::Sender<Result<CancelOutcome, StoreError>>,
        CancelOutcome,
    ),
}

impl Pending {
    fn answer(self) {
        // A caller that gave up waiting no longer needs the answer.
        match self {
            Pending::Insert(reply, outcome) => drop(reply.send(Ok(outcome))),
            Pending::Cancel(reply, outcome) => drop(reply.send(Ok(outcome))),
        }
    }

    fn fail(self, error: &str) {
        let err = || StoreError::Write(error.to_owned());
        match self {
            Pending::Insert(reply, _) => drop(reply.send(Err(err()))),
            Pending::Cancel(reply, _) => drop(reply.send(Err(err()))),
        }
    }
}

/// Rows to insert per statement: well under both backends' limits on bound values.
/// Every row count up to this is a statement shape of its own; the writer's statement
/// cache holds them all (see [`STATEMENT_CACHE`]), so a batch costs one round trip per
/// table instead of one per row, and no statement is prepared twice.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// Prepared statements the writer's connection keeps: every multi-row shape of the
/// three insert statements, and the rest.
pub(crate) const STATEMENT_CACHE: usize = ROWS_PER_STATEMENT * 4 + 64;

pub(crate) async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    commits: Arc<AtomicU64>,
) {
    // SQLite's driver runs on a thread of its own: there, a batch of inserts goes as
    // one script (see below).
    let one_trip = matches!(pool, Pool::Sqlite(_));
    on_pool!(&pool, p => {
        let mut ops = Vec::with_capacity(max_batch);
        // The writer holds its connection from batch to batch: going back to the pool
        // between batches costs a task hand-off each time.
        let mut held = None;
        let mut last_batch = 0;
        while queue.recv_many(&mut ops, max_batch).await > 0 {
            // Fewer writes than last time: under load, more are on their way. Give the
            // request threads the processor once and take what they queued, so those
            // writes share this commit instead of waiting a whole commit for the next.
            // (A longer wait was measured to cost more than it gains.)
            if ops.len() < max_batch && last_batch > ops.len() {
                std::thread::yield_now();
                while ops.len() < max_batch {
                    match queue.try_recv() {
                        Ok(op) => ops.push(op),
                        Err(_) => break,
                    }
                }
            }
            last_batch = ops.len();
            let mut todo: VecDeque<WriteOp> = ops.drain(..).collect();
            let mut conn = match held.take() {
                Some(conn) => conn,
                None => match p.acquire().await {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::error!(%error, "the store writer has no connection");
                        let text = error.to_string();
                        todo.into_iter().for_each(|op| op.fail(&text));
                        continue;
                    }
                },
            };
            let mut pending = Vec::with_capacity(todo.len());
            let script = one_trip && todo.iter().all(|op| matches!(op, WriteOp::Insert(..)));
            let result = if script {
                // A batch of inserts on SQLite: the whole transaction is one script, one
                // hand-off to the driver's thread. Keys are looked up first, outside the
                // transaction: this writer is the database's only writer, so what it
                // reads stays true until its commit.
                async {
                    let mut inserts: Vec<Box<NewMessage>> = Vec::new();
                    let mut keys: HashMap<(String, String), (String, String, String)> = HashMap::new();
                    while let Some(WriteOp::Insert(new, reply)) = todo.pop_front() {
                        let outcome = classify_insert!(&mut *conn, &new, &mut keys);
                        if outcome == InsertOutcome::Created {
                            inserts.push(new);
                        }
                        pending.push(Pending::Insert(reply, outcome));
                    }
                    let mut q = QueryBuilder::new("BEGIN; ");
                    for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
                        push_messages!(q, chunk);
                        q.push("; ");
                        if push_events!(q, chunk) {
                            q.push("; ");
                        }
                        if push_outbox!(q, chunk) {
                            q.push("; ");
                        }
                    }
                    if !keys.is_empty() {
                        push_keys!(q, keys);
                        q.push("; ");
                    }
                    q.push("COMMIT");
                    if let Err(error) = q.build().execute(&mut *conn).await {
                        // The script may have stopped inside its transaction.
                        let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
                        return Err(error.into());
                    }
                    Ok::<(), StoreError>(())
                }
                .await
            } else {
            async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let mut inserts: Vec<Box<NewMessage>> = Vec::new();
                let mut keys: HashMap<(String, String), (String, String, String)> = HashMap::new();
                while let Some(op) = todo.pop_front() {
                    match op {
                        WriteOp::Insert(new, reply) => {
                            let outcome = classify_insert!(&mut *tx, &new, &mut keys);
                            if outcome == InsertOutcome::Created {
                                inserts.push(new);
                            }
                            pending.push(Pending::Insert(reply, outcome));
                        }
                        WriteOp::Cancel { tenant, id, detail, reply } => {
                            flush_inserts!(tx, &mut inserts);
                            let now = to_micros(Utc::now());
                            let status: Option<(String,)> = sqlx::query_as(
                                "SELECT status FROM messages WHERE id = $1 AND tenant = $2",
                            )
                            .bind(&id)
                            .bind(&tenant)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let outcome = match status {
                                None => CancelOutcome::NotFound,
                                Some((status,)) if status != MessageStatus::Queued.as_str() => {
                                    let status = status.parse().map_err(|_| StoreError::Corrupt(status))?;
                                    CancelOutcome::TooLate(status)
                                }
                                Some(_) => {
                                    sqlx::query("UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3")
                                        .bind(MessageStatus::Canceled.as_str())
                                        .bind(now)
                                        .bind(&id)
                                        .execute(&mut *tx)
                                        .await?;
                                    sqlx::query("INSERT INTO message_events (message_id, status, at, detail) VALUES ($1, $2, $3, $4)")
                                        .bind(&id)
                                        .bind(MessageStatus::Canceled.as_str())
                                        .bind(now)
                                        .bind(&detail)
                                        .execute(&mut *tx)
                                        .await?;
                                    sqlx::query("DELETE FROM outbox WHERE message_id = $1")
                                        .bind(&id)
                                        .execute(&mut *tx)
                                        .await?;
                                    CancelOutcome::Canceled
                                }
                            };
                            pending.push(Pending::Cancel(reply, outcome));
                        }
                    }
                }
                flush_inserts!(tx, &mut inserts);
                if !keys.is_empty() {
                    let mut q = QueryBuilder::new("");
                    push_keys!(q, keys);
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<(), StoreError>(())
            }
            .await
            };
            match result {
                Ok(()) => {
                    held = Some(conn);
                    commits.fetch_add(1, Ordering::Relaxed);
                    pending.into_iter().for_each(Pending::answer);
                }
                Err(error) => {
                    tracing::error!(%error, writes = pending.len() + todo.len(), "store transaction failed");
                    let text = error.to_string();
                    pending.into_iter().for_each(|p| p.fail(&text));
                    todo.into_iter().for_each(|op| op.fail(&text));
                    // Keep the connection only if it still answers.
                    if sqlx::Connection::ping(&mut *conn).await.is_ok() {
                        held = Some(conn);
                    } else {
                        conn.close_on_drop();
                    }
                }
            }
        }
    });
}

/// Decides what becomes of an insert: created, or answered from its idempotency key
/// (looked up through `$exec`, and among the keys of this batch in `$keys`).
macro_rules! classify_insert {
    ($exec:expr, $new:expr, $keys:expr) => {{
        let new: &NewMessage = $new;
        let keys: &mut HashMap<(String, String), (String, String, String)> = $keys;
        match &new.idempotency {
            None => InsertOutcome::Created,
            Some(key) => {
                let id = (new.message.tenant.clone(), key.key.clone());
                let seen = match keys.get(&id) {
                    Some(found) => Some(found.clone()),
                    None => sqlx::query_as::<_, (String, String, String)>(
                        "SELECT request_hash, message_id, response \
                         FROM idempotency_keys WHERE tenant = $1 AND key = $2",
                    )
                    .bind(&id.0)
                    .bind(&id.1)
                    .fetch_optional($exec)
                    .await?,
                };
                match seen {
                    Some((hash, message_id, response)) if hash == key.request_hash => {
                        InsertOutcome::Replayed { message_id, response }
                    }
                    Some((_, message_id, _)) => InsertOutcome::KeyReused { message_id },
                    None => {
                        keys.insert(
                            id,
                            (key.request_hash.clone(), new.message.id.to_string(), key.response.clone()),
                        );
                        InsertOutcome::Created
                    }
                }
            }
        }
    }};
}
use classify_insert;

/// Appends the multi-row insert of a chunk's messages to `$q`.
macro_rules! push_messages {
    ($q:expr, $chunk:expr) => {{
        $q.push(
            "INSERT INTO messages (id, tenant, direction, channel, from_addr, to_addr, body, \
             subject, client_ref, metadata, attachments, failover, status, segments, encoding, \
             connector, upstream_id, error_code, error_detail, created_at, updated_at, send_at, \
             expires_at) ",
        );
        $q.push_values($chunk, |mut b, new| {
            let m = &new.message;
            b.push_bind(m.id.as_str())
                .push_bind(m.tenant.as_str())
                .push_bind(m.direction.as_str())
                .push_bind(m.channel.as_str())
                .push_bind(m.from.as_deref())
                .push_bind(m.to.as_str())
                .push_bind(m.text.as_str())
                .push_bind(m.subject.as_deref())
                .push_bind(m.client_ref.as_deref())
                .push_bind(to_json(&m.metadata))
                .push_bind(to_json(&m.attachments))
                .push_bind(to_json(&m.failover))
                .push_bind(m.status.as_str())
                .push_bind(m.segments.map(i64::from))
                .push_bind(m.encoding.map(|e| e.as_str()))
                .push_bind(m.connector.as_deref())
                .push_bind(m.upstream_id.as_deref())
                .push_bind(m.error.as_ref().map(|e| e.code.as_str()))
                .push_bind(m.error.as_ref().map(|e| e.detail.as_str()))
                .push_bind(to_micros(m.created_at))
                .push_bind(to_micros(m.updated_at))
                .push_bind(m.send_at.map(to_micros))
                .push_bind(m.expires_at.map(to_micros));
        });
    }};
}
use push_messages;

/// Appends the insert of a chunk's first events to `$q`; false when there are none.
macro_rules! push_events {
    ($q:expr, $chunk:expr) => {{
        let events: Vec<_> = $chunk
            .iter()
            .flat_map(|new| {
                new.message.events.iter().flatten().map(move |e| (new.message.id.as_str(), e))
            })
            .collect();
        let any = !events.is_empty();
        if any {
            $q.push("INSERT INTO message_events (message_id, status, at, detail) ");
            $q.push_values(events, |mut b, (id, e)| {
                b.push_bind(id)
                    .push_bind(e.status.as_str())
                    .push_bind(to_micros(e.at))
                    .push_bind(e.detail.as_deref());
            });
        }
        any
    }};
}
use push_events;

/// Appends the insert of a chunk's outbox rows to `$q`; false when none is to be sent.
macro_rules! push_outbox {
    ($q:expr, $chunk:expr) => {{
        let queued: Vec<_> = $chunk.iter().filter(|new| new.enqueue).collect();
        let any = !queued.is_empty();
        if any {
            $q.push("INSERT INTO outbox (message_id, due_at) ");
            $q.push_values(queued, |mut b, new| {
                let due = new.message.send_at.unwrap_or(new.message.created_at);
                b.push_bind(new.message.id.as_str()).push_bind(to_micros(due));
            });
        }
        any
    }};
}
use push_outbox;

/// Appends the insert of a batch's new idempotency keys to `$q`.
macro_rules! push_keys {
    ($q:expr, $keys:expr) => {{
        let now = to_micros(Utc::now());
        $q.push(
            "INSERT INTO idempotency_keys (tenant, key, request_hash, message_id, response, created_at) ",
        );
        $q.push_values($keys.iter(), |mut b, ((tenant, key), (hash, id, response))| {
            b.push_bind(tenant.as_str())
                .push_bind(key.as_str())
                .push_bind(hash.as_str())
                .push_bind(id.as_str())
                .push_bind(response.as_str())
                .push_bind(now);
        });
    }};
}
use push_keys;

/// Inserts the buffered new messages (rows, first events and outbox rows) with one
/// multi-row statement per table.
macro_rules! flush_inserts {
    ($tx:expr, $inserts:expr) => {{
        let inserts: &mut Vec<Box<NewMessage>> = $inserts;
        for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
            // Empty at first, so that reset() between statements empties it again.
            let mut q = QueryBuilder::new("");
            push_messages!(q, chunk);
            q.build().execute(&mut *$tx).await?;
            q.reset();
            if push_events!(q, chunk) {
                q.build().execute(&mut *$tx).await?;
            }
            q.reset();
            if push_outbox!(q, chunk) {
                q.build().execute(&mut *$tx).await?;
            }
        }
        inserts.clear();
    }};
}
use flush_inserts;
