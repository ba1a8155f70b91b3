//! The group-commit writer: one task takes every write that is waiting, applies them
//! in one transaction, commits once, then answers each.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use switchboard_model::{Channel, ErrorInfo, Message, MessageStatus};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::StoreError;
use crate::backend::{Pool, on_pool};
use crate::rows::{MessageRow, to_json};
use crate::time::{from_micros, to_micros};

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

/// How the dispatcher wants a due message handled; decided by its router inside the
/// claim's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// Send it through `connector` to `to` (maybe rewritten by a route).
    Send {
        /// The connector.
        connector: String,
        /// The destination, normalised.
        to: String,
        /// Its channel.
        channel: Channel,
    },
    /// It cannot be routed: `failed` with this code (or the next failover step).
    Fail {
        /// The error code (`no_route`, `rewrite_loop`).
        code: String,
        /// Words for a human.
        detail: String,
    },
    /// Leave it queued for this long (its connector is not up).
    Wait(Duration),
}

/// The router of a claim: called once for each due message, inside the transaction.
pub type Decide = Arc<dyn Fn(&Message) -> Dispatch + Send + Sync>;

/// A request for due outbound work.
#[derive(Clone)]
pub struct Claim {
    /// Who takes it (for the lease).
    pub owner: String,
    /// How long the taker may hold a message before another may take it again.
    pub lease: Duration,
    /// The most messages to take.
    pub limit: u32,
    /// Only messages to these channels (those with a running adapter).
    pub channels: Vec<Channel>,
    /// The router.
    pub decide: Decide,
}

/// A message taken for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The message, `sending`, with its connector and (routed) destination set.
    pub message: Message,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
}

/// What became of one attempt to send, as the dispatcher records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The next hop took it (`sent`), or the far end confirmed it (`delivered`).
    Accepted {
        /// The far side's id, which reports will refer to.
        upstream_id: Option<String>,
        /// `Sent` or `Delivered`.
        status: MessageStatus,
        /// Channel details to keep in the message's metadata.
        metadata: Vec<(String, String)>,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// The protocol's code.
        code: String,
        /// Words for a human.
        detail: String,
    },
    /// It will not go this way: `failed`, or the next failover step.
    Failed {
        /// The protocol's code (or ours, e.g. `retries_exhausted`).
        code: String,
        /// Words for a human.
        detail: String,
    },
}

/// A delivery report from the far side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The connector it came through.
    pub connector: String,
    /// The far side's id of the message.
    pub upstream_id: String,
    /// `Delivered`, `Read`, `Undelivered` or `Expired`.
    pub status: MessageStatus,
    /// The far side's code and words, for a failure.
    pub error: Option<(String, String)>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Applied to the message with this id.
    Applied(String),
    /// No message has that upstream id yet: kept, and applied when the send outcome
    /// that names it is recorded.
    Kept,
    /// The message is past that status (a duplicate or late report); nothing changed.
    Ignored(String),
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
    Claim(
        Box<Claim>,
        oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
    ),
    Outcome {
        id: String,
        connector: String,
        result: AttemptResult,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Report(
        Box<Report>,
        oneshot::Sender<Result<ReportOutcome, StoreError>>,
    ),
}

impl WriteOp {
    /// Answers a write that could not be attempted.
    fn fail(self, error: &str) {
        let err = || StoreError::Write(error.to_owned());
        match self {
            WriteOp::Insert(_, reply) => drop(reply.send(Err(err()))),
            WriteOp::Cancel { reply, .. } => drop(reply.send(Err(err()))),
            WriteOp::Claim(_, reply) => drop(reply.send(Err(err()))),
            WriteOp::Outcome { reply, .. } => drop(reply.send(Err(err()))),
            WriteOp::Report(_, reply) => drop(reply.send(Err(err()))),
        }
    }
}

/// An answer held back until the transaction commits.
enum Pending {
    Insert(oneshot::Sender<Result<InsertOutcome, StoreError>>, InsertOutcome),
    Cancel(oneshot::Sender<Result<CancelOutcome, StoreError>>, CancelOutcome),
    Claim(oneshot::Sender<Result<Vec<Claimed>, StoreError>>, Vec<Claimed>),
    Outcome(oneshot::Sender<Result<(), StoreError>>),
    Report(oneshot::Sender<Result<ReportOutcome, StoreError>>, ReportOutcome),
}

impl Pending {
    fn answer(self) {
        // A caller that gave up waiting no longer needs the answer.
        match self {
            Pending::Insert(reply, outcome) => drop(reply.send(Ok(outcome))),
            Pending::Cancel(reply, outcome) => drop(reply.send(Ok(outcome))),
            Pending::Claim(reply, claimed) => drop(reply.send(Ok(claimed))),
            Pending::Outcome(reply) => drop(reply.send(Ok(()))),
            Pending::Report(reply, outcome) => drop(reply.send(Ok(outcome))),
        }
    }

    fn fail(self, error: &str) {
        let err = || StoreError::Write(error.to_owned());
        match self {
            Pending::Insert(reply, _) => drop(reply.send(Err(err()))),
            Pending::Cancel(reply, _) => drop(reply.send(Err(err()))),
            Pending::Claim(reply, _) => drop(reply.send(Err(err()))),
            Pending::Outcome(reply) => drop(reply.send(Err(err()))),
            Pending::Report(reply, _) => drop(reply.send(Err(err()))),
        }
    }
}

/// A change of status to record in the message's history, and to announce to the
/// tenant's webhook subscriptions, in the transaction that makes it.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    message_id: String,
    tenant: String,
    status: MessageStatus,
    at: i64,
    detail: Option<String>,
    event_id: String,
}

impl EventRecord {
    fn new(message: &Message, status: MessageStatus, at: i64, detail: Option<String>) -> Self {
        EventRecord {
            message_id: message.id.to_string(),
            tenant: message.tenant.clone(),
            status,
            at,
            detail,
            event_id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        }
    }
}

/// Rows to insert per statement: well under both backends' limits on bound values.
/// Every row count up to this is a statement shape of its own; the writer's statement
/// cache holds them all (see [`STATEMENT_CACHE`]), so a batch costs one round trip per
/// table instead of one per row, and no statement is prepared twice.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// Prepared statements the writer's connection keeps: every multi-row shape of the
/// insert statements, and the rest.
pub(crate) const STATEMENT_CACHE: usize = ROWS_PER_STATEMENT * 6 + 64;

/// A message read inside a transaction, with the failover step it is on.
struct Loaded {
    message: Message,
    step: usize,
}

/// Moves `loaded` to `status`, recording the event; false (and nothing changes) when
/// the lifecycle does not allow it.
fn change(
    loaded: &mut Loaded,
    status: MessageStatus,
    at: i64,
    detail: Option<String>,
    events: &mut Vec<EventRecord>,
) -> bool {
    let message = &mut loaded.message;
    if !message.status.can_become(status) {
        tracing::debug!(id = %message.id, from = %message.status, to = %status, "status change refused");
        return false;
    }
    message.status = status;
    message.updated_at = from_micros(at);
    events.push(EventRecord::new(message, status, at, detail));
    true
}

/// After a failure (`failed`, `undelivered`, `expired`) of the step in flight: on to the
/// next failover step if there is one (back to `queued`, due now), else the message
/// keeps the failure. Returns whether it failed over.
fn fail_or_failover(
    loaded: &mut Loaded,
    status: MessageStatus,
    code: &str,
    detail: &str,
    at: i64,
    events: &mut Vec<EventRecord>,
) -> bool {
    if !change(loaded, status, at, Some(format!("{code}: {detail}")), events) {
        return false;
    }
    loaded.message.error = Some(ErrorInfo {
        code: code.to_owned(),
        detail: detail.to_owned(),
    });
    let Some(next) = loaded.message.failover.get(loaded.step).cloned() else {
        return false;
    };
    loaded.step += 1;
    let note = format!(
        "failover to step {} of {}: {}",
        loaded.step + 1,
        loaded.message.failover.len() + 1,
        next.to
    );
    if change(loaded, MessageStatus::Queued, at, Some(note), events) {
        let m = &mut loaded.message;
        m.to = next.to;
        m.channel = next.channel;
        m.connector = None;
        m.upstream_id = None;
        true
    } else {
        false
    }
}

pub(crate) async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    commits: Arc<AtomicU64>,
    changes: Arc<Notify>,
) {
    // SQLite's driver runs on a thread of its own: there, a batch of inserts goes as
    // one script (see below).
    let one_trip = matches!(pool, Pool::Sqlite(_));
    let postgres = matches!(pool, Pool::Postgres(_));
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
                        if push_outbox!(q, chunk) {
                            q.push("; ");
                        }
                        let events = first_events(chunk);
                        if !events.is_empty() {
                            push_history!(q, events);
                            q.push("; ");
                            push_fanout!(q, events);
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
                    let mut events: Vec<EventRecord> = Vec::new();
                    let now = to_micros(Utc::now());
                    while let Some(op) = todo.pop_front() {
                        if !matches!(op, WriteOp::Insert(..)) {
                            // Later operations must see the messages inserted before them.
                            flush_inserts!(tx, &mut inserts, &mut events);
                        }
                        match op {
                            WriteOp::Insert(new, reply) => {
                                let outcome = classify_insert!(&mut *tx, &new, &mut keys);
                                if outcome == InsertOutcome::Created {
                                    inserts.push(new);
                                }
                                pending.push(Pending::Insert(reply, outcome));
                            }
                            WriteOp::Cancel { tenant, id, detail, reply } => {
                                let outcome = match load!(tx, &id) {
                                    Some(loaded) if loaded.message.tenant != tenant => CancelOutcome::NotFound,
                                    None => CancelOutcome::NotFound,
                                    Some(mut loaded) => {
                                        if change(&mut loaded, MessageStatus::Canceled, now, detail, &mut events) {
                                            save!(tx, &loaded);
                                            delete_outbox!(tx, &id);
                                            CancelOutcome::Canceled
                                        } else {
                                            CancelOutcome::TooLate(loaded.message.status)
                                        }
                                    }
                                };
                                pending.push(Pending::Cancel(reply, outcome));
                            }
                            WriteOp::Claim(claim, reply) => {
                                let claimed = claim!(tx, &claim, now, postgres, &mut events);
                                pending.push(Pending::Claim(reply, claimed));
                            }
                            WriteOp::Outcome { id, connector, result, reply } => {
                                outcome!(tx, &id, &connector, result, now, &mut events);
                                pending.push(Pending::Outcome(reply));
                            }
                            WriteOp::Report(report, reply) => {
                                let outcome = report!(tx, &report, now, &mut events);
                                pending.push(Pending::Report(reply, outcome));
                            }
                        }
                    }
                    flush_inserts!(tx, &mut inserts, &mut events);
                    if !events.is_empty() {
                        for chunk in events.chunks(ROWS_PER_STATEMENT) {
                            let mut q = QueryBuilder::new("");
                            push_history!(q, chunk);
                            q.build().execute(&mut *tx).await?;
                            q.reset();
                            push_fanout!(q, chunk);
                            q.build().execute(&mut *tx).await?;
                        }
                    }
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
                    changes.notify_waiters();
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

/// The first events of new messages, to record with them.
fn first_events(chunk: &[Box<NewMessage>]) -> Vec<EventRecord> {
    chunk
        .iter()
        .flat_map(|new| {
            let m = &new.message;
            m.events
                .iter()
                .flatten()
                .map(move |e| EventRecord::new(m, e.status, to_micros(e.at), e.detail.clone()))
        })
        .collect()
}

/// Reads a message and its failover step inside the transaction.
macro_rules! load {
    ($tx:expr, $id:expr) => {{
        let row: Option<MessageRow> = sqlx::query_as("SELECT * FROM messages WHERE id = $1")
            .bind($id)
            .fetch_optional(&mut *$tx)
            .await?;
        match row {
            Some(row) => {
                let step = usize::try_from(row.failover_step).unwrap_or_default();
                Some(Loaded {
                    message: row.into_message()?,
                    step,
                })
            }
            None => None,
        }
    }};
}
use load;

/// Writes back what the writer changes on a message.
macro_rules! save {
    ($tx:expr, $loaded:expr) => {{
        let loaded: &Loaded = $loaded;
        let m = &loaded.message;
        sqlx::query(
            "UPDATE messages SET status = $1, to_addr = $2, channel = $3, connector = $4, \
             upstream_id = $5, error_code = $6, error_detail = $7, metadata = $8, \
             failover_step = $9, updated_at = $10 WHERE id = $11",
        )
        .bind(m.status.as_str())
        .bind(m.to.as_str())
        .bind(m.channel.as_str())
        .bind(m.connector.as_deref())
        .bind(m.upstream_id.as_deref())
        .bind(m.error.as_ref().map(|e| e.code.as_str()))
        .bind(m.error.as_ref().map(|e| e.detail.as_str()))
        .bind(to_json(&m.metadata))
        .bind(i64::try_from(loaded.step).unwrap_or_default())
        .bind(to_micros(m.updated_at))
        .bind(m.id.as_str())
        .execute(&mut *$tx)
        .await?;
    }};
}
use save;

macro_rules! delete_outbox {
    ($tx:expr, $id:expr) => {{
        sqlx::query("DELETE FROM outbox WHERE message_id = $1")
            .bind($id)
            .execute(&mut *$tx)
            .await?;
    }};
}
use delete_outbox;

/// Puts the message in the outbox as `kind`, due at `due`, with no lease.
macro_rules! schedule {
    ($tx:expr, $id:expr, $kind:expr, $due:expr) => {{
        sqlx::query(
            "INSERT INTO outbox (message_id, due_at, kind) VALUES ($1, $2, $3) \
             ON CONFLICT (message_id) DO UPDATE SET due_at = excluded.due_at, \
             kind = excluded.kind, lease_owner = NULL, lease_until = NULL",
        )
        .bind($id)
        .bind($due)
        .bind($kind)
        .execute(&mut *$tx)
        .await?;
    }};
}
use schedule;

/// Takes due outbox rows: expires what ran out of validity, checks failover deadlines,
/// routes the rest and marks them `sending` under a lease.
macro_rules! claim {
    ($tx:expr, $claim:expr, $now:expr, $postgres:expr, $events:expr) => {{
        let claim: &Claim = $claim;
        let now: i64 = $now;
        let events: &mut Vec<EventRecord> = $events;
        let mut claimed = Vec::new();
        if !claim.channels.is_empty() {
            let mut q = QueryBuilder::new(
                "SELECT o.message_id, o.kind, o.attempts FROM outbox o JOIN messages m ON m.id = o.message_id \
                 WHERE o.due_at <= ",
            );
            q.push_bind(now);
            q.push(" AND (o.lease_until IS NULL OR o.lease_until < ");
            q.push_bind(now);
            q.push(") AND m.channel IN (");
            let mut list = q.separated(", ");
            for channel in &claim.channels {
                list.push_bind(channel.as_str());
            }
            q.push(") ORDER BY o.due_at LIMIT ");
            q.push_bind(i64::from(claim.limit));
            if $postgres {
                q.push(" FOR UPDATE OF o SKIP LOCKED");
            }
            let due: Vec<(String, String, i64)> = q.build_query_as().fetch_all(&mut *$tx).await?;
            let lease_until = now + i64::try_from(claim.lease.as_micros()).unwrap_or(i64::MAX / 2);
            for (id, kind, attempts) in due {
                let Some(mut loaded) = load!($tx, &id) else {
                    delete_outbox!($tx, &id);
                    continue;
                };
                let status = loaded.message.status;
                if kind == "failover" {
                    if status == MessageStatus::Sent {
                        let after = loaded
                            .message
                            .failover
                            .get(loaded.step)
                            .map(|s| s.after_seconds)
                            .unwrap_or_default();
                        let detail = format!("not delivered within {after} s");
                        if fail_or_failover(&mut loaded, MessageStatus::Undelivered, "failover_timeout", &detail, now, events) {
                            schedule!($tx, &id, "send", now);
                        } else {
                            delete_outbox!($tx, &id);
                        }
                        save!($tx, &loaded);
                    } else {
                        delete_outbox!($tx, &id);
                    }
                    continue;
                }
                if !matches!(status, MessageStatus::Queued | MessageStatus::Sending) {
                    delete_outbox!($tx, &id);
                    continue;
                }
                if loaded.message.expires_at.is_some_and(|at| to_micros(at) <= now) {
                    change(&mut loaded, MessageStatus::Expired, now, Some("validity ran out before it was sent".into()), events);
                    loaded.message.error = Some(ErrorInfo {
                        code: "expired".into(),
                        detail: "validity ran out before it was sent".into(),
                    });
                    save!($tx, &loaded);
                    delete_outbox!($tx, &id);
                    continue;
                }
                match (claim.decide)(&loaded.message) {
                    Dispatch::Send { connector, to, channel } => {
                        let attempt = attempts + 1;
                        if to != loaded.message.to {
                            let from = std::mem::replace(&mut loaded.message.to, to);
                            loaded.message.metadata.entry("routed_from".into()).or_insert(from);
                            loaded.message.channel = channel;
                        }
                        let detail = format!("attempt {attempt} through {connector}");
                        if status == MessageStatus::Sending {
                            // The worker that held it stopped before recording an outcome.
                            events.push(EventRecord::new(
                                &loaded.message,
                                MessageStatus::Sending,
                                now,
                                Some(format!("{detail}, after an interrupted attempt")),
                            ));
                        } else {
                            change(&mut loaded, MessageStatus::Sending, now, Some(detail), events);
                        }
                        loaded.message.connector = Some(connector);
                        loaded.message.updated_at = from_micros(now);
                        save!($tx, &loaded);
                        sqlx::query(
                            "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = $3 WHERE message_id = $4",
                        )
                        .bind(claim.owner.as_str())
                        .bind(lease_until)
                        .bind(attempt)
                        .bind(id.as_str())
                        .execute(&mut *$tx)
                        .await?;
                        claimed.push(Claimed {
                            message: loaded.message,
                            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        });
                    }
                    Dispatch::Fail { code, detail } => {
                        if fail_or_failover(&mut loaded, MessageStatus::Failed, &code, &detail, now, events) {
                            schedule!($tx, &id, "send", now);
                        } else {
                            delete_outbox!($tx, &id);
                        }
                        save!($tx, &loaded);
                    }
                    Dispatch::Wait(wait) => {
                        let due = now + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 2);
                        sqlx::query("UPDATE outbox SET due_at = $1, lease_owner = NULL, lease_until = NULL WHERE message_id = $2")
                            .bind(due)
                            .bind(id.as_str())
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
            }
        }
        claimed
    }};
}
use claim;

/// Records the outcome of an attempt.
macro_rules! outcome {
    ($tx:expr, $id:expr, $connector:expr, $result:expr, $now:expr, $events:expr) => {{
        let id: &str = $id;
        let now: i64 = $now;
        let events: &mut Vec<EventRecord> = $events;
        match load!($tx, id) {
            Some(mut loaded) if loaded.message.status == MessageStatus::Sending => {
                match $result {
                    AttemptResult::Accepted { upstream_id, status, metadata } => {
                        loaded.message.upstream_id = upstream_id.clone();
                        loaded.message.metadata.extend(metadata);
                        let via = match &upstream_id {
                            Some(u) => format!("accepted by {} as {u}", $connector),
                            None => format!("accepted by {}", $connector),
                        };
                        change(&mut loaded, status, now, Some(via), events);
                        let deadline = loaded.message.failover.get(loaded.step).map(|s| s.after_seconds);
                        match deadline {
                            Some(after) if loaded.message.status == MessageStatus::Sent => {
                                let after = i64::try_from(after).unwrap_or(i64::MAX / 2_000_000);
                                schedule!($tx, id, "failover", now + after * 1_000_000);
                            }
                            _ => delete_outbox!($tx, id),
                        }
                        if let Some(upstream_id) = &upstream_id {
                            let early: Vec<(i64, String, i64, Option<String>, Option<String>)> = sqlx::query_as(
                                "SELECT seq, status, at, error_code, error_detail FROM early_reports \
                                 WHERE connector = $1 AND upstream_id = $2 ORDER BY seq",
                            )
                            .bind($connector)
                            .bind(upstream_id.as_str())
                            .fetch_all(&mut *$tx)
                            .await?;
                            for (seq, status, at, code, detail) in early {
                                if let Ok(status) = status.parse::<MessageStatus>() {
                                    let error = code.map(|c| (c, detail.unwrap_or_default()));
                                    apply_report!($tx, &mut loaded, status, error, at, events);
                                }
                                sqlx::query("DELETE FROM early_reports WHERE seq = $1")
                                    .bind(seq)
                                    .execute(&mut *$tx)
                                    .await?;
                            }
                        }
                    }
                    AttemptResult::Retry { at, code, detail } => {
                        let note = format!("{code}: {detail}; next attempt at {}", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                        change(&mut loaded, MessageStatus::Queued, now, Some(note), events);
                        schedule!($tx, id, "send", to_micros(at));
                    }
                    AttemptResult::Failed { code, detail } => {
                        if fail_or_failover(&mut loaded, MessageStatus::Failed, &code, &detail, now, events) {
                            schedule!($tx, id, "send", now);
                        } else {
                            delete_outbox!($tx, id);
                        }
                    }
                }
                save!($tx, &loaded);
            }
            Some(loaded) => {
                tracing::warn!(%id, status = %loaded.message.status, "an outcome for a message that is not sending; ignored");
            }
            None => tracing::warn!(%id, "an outcome for an unknown message; ignored"),
        }
    }};
}
use outcome;

/// Applies a report's status to a loaded message (failing over when it says the step
/// in flight failed); returns whether it changed anything.
macro_rules! apply_report {
    ($tx:expr, $loaded:expr, $status:expr, $error:expr, $at:expr, $events:expr) => {{
        let loaded: &mut Loaded = $loaded;
        let status: MessageStatus = $status;
        let error: Option<(String, String)> = $error;
        let at: i64 = $at;
        let events: &mut Vec<EventRecord> = $events;
        let id = loaded.message.id.to_string();
        match status {
            MessageStatus::Undelivered | MessageStatus::Expired => {
                let (code, detail) = error.unwrap_or_else(|| (status.as_str().to_owned(), "reported by the far side".to_owned()));
                if !loaded.message.status.can_become(status) {
                    false
                } else {
                    if fail_or_failover(loaded, status, &code, &detail, at, events) {
                        schedule!($tx, &id, "send", at);
                    } else {
                        delete_outbox!($tx, &id);
                    }
                    true
                }
            }
            _ => {
                let changed = change(loaded, status, at, Some("reported by the far side".into()), events);
                if changed {
                    // Delivered: no failover deadline any more.
                    delete_outbox!($tx, &id);
                }
                changed
            }
        }
    }};
}
use apply_report;

/// Applies a delivery report, or keeps it until its message is known.
macro_rules! report {
    ($tx:expr, $report:expr, $now:expr, $events:expr) => {{
        let report: &Report = $report;
        let events: &mut Vec<EventRecord> = $events;
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM messages WHERE connector = $1 AND upstream_id = $2",
        )
        .bind(report.connector.as_str())
        .bind(report.upstream_id.as_str())
        .fetch_optional(&mut *$tx)
        .await?;
        match found {
            Some((id,)) => match load!($tx, &id) {
                Some(mut loaded) => {
                    let at = to_micros(report.at).min($now);
                    if apply_report!($tx, &mut loaded, report.status, report.error.clone(), at, events) {
                        save!($tx, &loaded);
                        ReportOutcome::Applied(id)
                    } else {
                        ReportOutcome::Ignored(id)
                    }
                }
                None => ReportOutcome::Kept,
            },
            None => {
                sqlx::query(
                    "INSERT INTO early_reports (connector, upstream_id, status, at, error_code, error_detail, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(report.connector.as_str())
                .bind(report.upstream_id.as_str())
                .bind(report.status.as_str())
                .bind(to_micros(report.at))
                .bind(report.error.as_ref().map(|e| e.0.as_str()))
                .bind(report.error.as_ref().map(|e| e.1.as_str()))
                .bind($now)
                .execute(&mut *$tx)
                .await?;
                ReportOutcome::Kept
            }
        }
    }};
}
use report;

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
    ($tx:expr, $inserts:expr, $events:expr) => {{
        let inserts: &mut Vec<Box<NewMessage>> = $inserts;
        for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
            // Empty at first, so that reset() between statements empties it again.
            let mut q = QueryBuilder::new("");
            push_messages!(q, chunk);
            q.build().execute(&mut *$tx).await?;
            q.reset();
            if push_outbox!(q, chunk) {
                q.build().execute(&mut *$tx).await?;
            }
            $events.extend(first_events(chunk));
        }
        inserts.clear();
    }};
}
use flush_inserts;

/// Appends the history rows of `$events` to `$q`.
macro_rules! push_history {
    ($q:expr, $events:expr) => {{
        $q.push("INSERT INTO message_events (message_id, status, at, detail) ");
        $q.push_values($events.iter(), |mut b, e| {
            b.push_bind(e.message_id.as_str())
                .push_bind(e.status.as_str())
                .push_bind(e.at)
                .push_bind(e.detail.as_deref());
        });
    }};
}
use push_history;

/// Appends the webhook fan-out of `$events` to `$q`: one pending delivery for each
/// enabled subscription of the message's tenant whose filter takes the event (`*`, the
/// event's type, or `message.*`).
macro_rules! push_fanout {
    ($q:expr, $events:expr) => {{
        $q.push("WITH ev (event_id, event_type, message_id, tenant, at) AS (");
        $q.push_values($events.iter(), |mut b, e| {
            b.push_bind(e.event_id.as_str())
                .push_bind(e.status.event_type())
                .push_bind(e.message_id.as_str())
                .push_bind(e.tenant.as_str())
                .push_bind(e.at);
        });
        $q.push(
            ") INSERT INTO webhook_deliveries (id, subscription_id, tenant, event_id, event_type, \
             message_id, event_at, state, attempts, next_attempt_at) \
             SELECT ev.event_id || ':' || s.id, s.id, s.tenant, ev.event_id, ev.event_type, \
             ev.message_id, ev.at, 'pending', 0, ev.at \
             FROM ev JOIN webhook_subscriptions s ON s.tenant = ev.tenant \
             WHERE s.disabled_at IS NULL AND (s.filter LIKE '%,*,%' \
             OR s.filter LIKE '%,' || ev.event_type || ',%' OR s.filter LIKE '%,message.*,%')",
        );
    }};
}
use push_fanout;
