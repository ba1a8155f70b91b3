//! The group-commit writer: one task takes every write that is waiting, applies them
//! in one transaction, commits once, then answers each.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use switchboard_model::address::ALL_CHANNELS;
use switchboard_model::{Channel, Message, MessageStatus, StatusEvent};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::StoreError;
use crate::backend::{Pool, on_pool};
use crate::rows::{MessageRow, to_json};
use crate::script::{Script, ScriptPool};
use crate::time::{from_micros, to_micros};
use crate::work::{EarlyReport, Loaded, OutboxOp, Work};

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

/// Where new messages go straight to a dispatcher, with no claim in between: a message
/// inserted due now, to one of `channels`, that `decide` sends, is marked `sending` and
/// leased to `owner` in the transaction that stores it, and handed to `sink` once that
/// transaction has committed. Messages it does not take wait in the outbox for a claim.
#[derive(Clone)]
pub struct Intake {
    /// Who takes them (for the lease).
    pub owner: String,
    /// How long the taker may hold a message before a claim may take it again.
    pub lease: Duration,
    /// Only messages to these channels.
    pub channels: Vec<Channel>,
    /// The router, as in a claim.
    pub decide: Decide,
    /// Where the messages taken go, after the commit.
    pub sink: mpsc::UnboundedSender<Handoff>,
}

/// What a dispatcher's [`Intake`] receives.
#[derive(Debug)]
pub enum Handoff {
    /// A message marked `sending` and leased to it, committed: send it.
    Take(Box<Claimed>),
    /// The transaction that would have handed this message off failed: nothing was
    /// stored; release what the router took for it.
    Drop(String),
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
        /// The ids of the parts, when it went as several (see `SendOutcome`).
        parts: Vec<String>,
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
    /// Bring the full-text index up to date (SQLite; see [`TEXT_INDEX_EVERY`]).
    IndexText(oneshot::Sender<Result<(), StoreError>>),
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
            WriteOp::IndexText(reply) => drop(reply.send(Err(err()))),
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
    Claim(
        oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
        Vec<Claimed>,
    ),
    Outcome(oneshot::Sender<Result<(), StoreError>>),
    Report(
        oneshot::Sender<Result<ReportOutcome, StoreError>>,
        ReportOutcome,
    ),
    Indexed(oneshot::Sender<Result<(), StoreError>>),
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
            Pending::Indexed(reply) => drop(reply.send(Ok(()))),
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
            Pending::Indexed(reply) => drop(reply.send(Err(err()))),
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
    /// The notice recipient the message names (`metadata.notify`), for a status that
    /// is announced to it.
    notify: Option<String>,
}

/// Statuses a notice recipient is told about (a delivery receipt).
const NOTICE_STATUSES: [MessageStatus; 6] = [
    MessageStatus::Delivered,
    MessageStatus::Read,
    MessageStatus::Undelivered,
    MessageStatus::Expired,
    MessageStatus::Failed,
    MessageStatus::Canceled,
];

impl EventRecord {
    /// Whether a notice may follow from it: a message received, or a final status of
    /// a message that names a notice recipient.
    fn has_notice(&self) -> bool {
        self.status == MessageStatus::Received
            || self.notify.is_some() && NOTICE_STATUSES.contains(&self.status)
    }

    pub(crate) fn new(
        message: &Message,
        status: MessageStatus,
        at: i64,
        detail: Option<String>,
    ) -> Self {
        EventRecord {
            message_id: message.id.to_string(),
            tenant: message.tenant.clone(),
            status,
            at,
            detail,
            event_id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            notify: message.metadata.get("notify").cloned(),
        }
    }
}

/// The PostgreSQL notification channel commits are announced on.
pub(crate) const CHANGES_CHANNEL: &str = "switchboard_changes";

/// Rows to insert per statement: well under both backends' limits on bound values.
/// Every row count up to this is a statement shape of its own; the writer's statement
/// cache holds them all (see [`STATEMENT_CACHE`]), so a batch costs one round trip per
/// table instead of one per row, and no statement is prepared twice.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// Prepared statements the writer keeps: every multi-row shape of the insert
/// statements, and the rest (in the driver's cache, and on SQLite in its script's too:
/// see `script`).
pub(crate) const STATEMENT_CACHE: usize = ROWS_PER_STATEMENT * 6 + 64;

/// On SQLite, new messages enter the full-text index in bulk, in the first commit after
/// this many of them, and in the commit before any search (migration 0006): indexing
/// each commit's few messages in that commit wrote about a third of its pages.
pub(crate) const TEXT_INDEX_EVERY: usize = 1024;

/// Indexes the messages after `text_index.indexed_to`, and moves the mark past them.
const TEXT_INDEX_CATCH_UP: &str = "INSERT INTO messages_fts (rowid, body, subject) \
     SELECT rowid, body, subject FROM messages WHERE rowid > (SELECT indexed_to FROM text_index); \
     UPDATE text_index SET indexed_to = max(indexed_to, (SELECT coalesce(max(rowid), 0) FROM messages)); ";

/// What the writer shares with the store's handles.
#[derive(Clone, Default)]
pub(crate) struct Signals {
    /// Transactions committed.
    pub commits: Arc<AtomicU64>,
    /// Notified after every commit that changed something.
    pub changes: Arc<Notify>,
    /// Notified after a commit that left outbox work for a claim: a new message not
    /// handed off, a retry or a deferral scheduled.
    pub outbox: Arc<Notify>,
    /// Where new messages are handed off, if a dispatcher takes them (see [`Intake`]).
    pub intake: Arc<Mutex<Option<Intake>>>,
}

/// The most sending messages the writer remembers (see `leased` in [`run`]); past it,
/// it forgets them all and reads them again.
const LEASED_MEMORY: usize = 100_000;

pub(crate) async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<WriteOp>,
    max_batch: usize,
    signals: Signals,
) {
    // On SQLite a transaction's writes go as one script, run on this thread through
    // the connection's handle (see `script`); reads still go through the driver.
    let one_trip = matches!(pool, Pool::Sqlite(_));
    let postgres = matches!(pool, Pool::Postgres(_));
    // On SQLite this writer is the only one that changes a message once it is past
    // `queued`, so it remembers the messages it left `sending`, as committed: the
    // outcome of a send then needs no read. (On PostgreSQL another instance may take a
    // message whose lease ran out; outcomes there read the message again.)
    let mut leased: HashMap<String, Loaded> = HashMap::new();
    // Likewise the number of reports kept for messages not yet known (only this writer
    // keeps and applies them), when counted: with none kept, an outcome looks none up.
    let mut early_kept: Option<i64> = None;
    // New messages not yet in the full-text index. Unknown after a start: the first
    // commit brings the index up to date.
    let mut unindexed = TEXT_INDEX_EVERY;
    on_pool!(&pool, p => {
        let mut ops = Vec::with_capacity(max_batch);
        // The writer holds its connection from batch to batch: going back to the pool
        // between batches costs a task hand-off each time.
        let mut held = None;
        // The transaction's statements: kept from batch to batch, with the statements
        // prepared for them (see `script`).
        let mut q = p.script();
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
            let intake = signals
                .intake
                .lock()
                .map(|i| i.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            let owner = intake.as_ref().map(|i| i.owner.as_str());
            let mut handed: Vec<Claimed> = Vec::new();
            // Whether the commit leaves work for a claim.
            let mut wake = false;
            // Reports kept less reports applied.
            let mut early_delta = 0i64;
            // Messages this batch creates, and whether its commit brings the full-text
            // index up to date.
            let mut new_rows = 0usize;
            let mut indexed = false;
            let result = async {
                let tx = &mut *conn;
                // On PostgreSQL the transaction begins here. On SQLite it begins with the
                // first write, in the same script (one hand-off of the handle
                // fewer). Keys are looked up before it, outside the transaction: this
                // writer is the only writer of messages and keys, so what it reads stays
                // true until its commit.
                if !one_trip {
                    sqlx::Executor::execute(&mut *tx, "BEGIN").await?;
                }
                let now = to_micros(Utc::now());
                let mut work = Work::default();
                let mut keys: HashMap<(String, String), (String, String, String)> = HashMap::new();
                // Inserts first: what follows in the batch may refer to them.
                let mut inserts: Vec<Box<NewMessage>> = Vec::new();
                let mut rest = Vec::new();
                while let Some(op) = todo.pop_front() {
                    match op {
                        WriteOp::Insert(new, reply) => {
                            let outcome = classify_insert!(&mut *tx, &new, &mut keys);
                            if outcome == InsertOutcome::Created {
                                inserts.push(new);
                            }
                            pending.push(Pending::Insert(reply, outcome));
                        }
                        other => rest.push(other),
                    }
                }
                let leases = match &intake {
                    Some(intake) => {
                        let (taken, leases) = hand_off(intake, &mut inserts, now);
                        handed = taken;
                        leases
                    }
                    None => HashMap::new(),
                };
                wake = left_for_claim(&inserts, &leases);
                // On SQLite, take the write lock at BEGIN: the webhook bookkeeping writes
                // through other connections, and a deferred transaction that has read
                // cannot wait for the lock once another connection has written. The new
                // messages go with it, in a script that waits in `q` until a read needs
                // them written (see `write_pending`): in the usual batch (new messages,
                // and outcomes of leased ones) none does, and the whole transaction is
                // one hand-off of the handle. Their first events are recorded
                // with the batch's other events, in the same statements.
                q.reset();
                if one_trip {
                    q.push("BEGIN IMMEDIATE; ");
                }
                for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
                    push_insert_chunk!(tx, q, chunk, owner, &leases, one_trip);
                }
                work.events = first_events(&inserts);
                new_rows = inserts.len();
                inserts.clear();
                // Cancels and outcomes name their messages: read them all at once,
                // with the reports kept for the upstream ids the outcomes bring.
                let ids: Vec<String> = rest
                    .iter()
                    .filter_map(|op| match op {
                        WriteOp::Cancel { id, .. } | WriteOp::Outcome { id, .. } => Some(id.clone()),
                        _ => None,
                    })
                    .collect();
                if one_trip {
                    for op in &rest {
                        if let WriteOp::Outcome { id, .. } = op
                            && let Some(loaded) = leased.remove(id)
                        {
                            work.loaded.insert(id.clone(), loaded);
                        }
                    }
                }
                let ids: Vec<String> = ids.into_iter().filter(|id| !work.loaded.contains_key(id)).collect();
                if !ids.is_empty() {
                    write_pending!(tx, q);
                    load_where!(tx, work, "id", ids);
                }
                let upstream: Vec<(String, String)> = rest
                    .iter()
                    .flat_map(|op| match op {
                        WriteOp::Outcome { connector, result: AttemptResult::Accepted { upstream_id, parts, .. }, .. } => {
                            upstream_id.iter().chain(parts.iter()).map(|id| (connector.clone(), id.clone())).collect()
                        }
                        _ => Vec::new(),
                    })
                    .collect();
                if one_trip && early_kept.is_none() {
                    write_pending!(tx, q);
                    let (kept,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM early_reports")
                        .fetch_one(&mut *tx)
                        .await?;
                    early_kept = Some(kept);
                }
                if early_kept != Some(0) && !upstream.is_empty() {
                    write_pending!(tx, q);
                    load_early!(tx, work, upstream);
                }
                let mut reports = Vec::new();
                let mut claims = Vec::new();
                for op in rest {
                    match op {
                        WriteOp::Cancel { tenant, id, detail, reply } => {
                            let outcome = work.cancel(&tenant, &id, detail, now);
                            pending.push(Pending::Cancel(reply, outcome));
                        }
                        WriteOp::Outcome { id, connector, result, reply } => {
                            work.outcome(&id, &connector, result, now);
                            pending.push(Pending::Outcome(reply));
                        }
                        WriteOp::Report(report, reply) => reports.push((report, reply)),
                        WriteOp::Claim(claim, reply) => claims.push((claim, reply)),
                        WriteOp::IndexText(reply) => {
                            // Only SQLite indexes in bulk; PostgreSQL's index is
                            // always up to date.
                            indexed |= one_trip;
                            pending.push(Pending::Indexed(reply));
                        }
                        WriteOp::Insert(..) => {}
                    }
                }
                // Reports name their messages by upstream id.
                if !reports.is_empty() {
                    write_pending!(tx, q);
                    let upstream: Vec<(String, String)> =
                        reports.iter().map(|(r, _)| (r.connector.clone(), r.upstream_id.clone())).collect();
                    load_parts!(tx, work, &upstream);
                    let mut ids: Vec<String> = work.parts.values().map(|p| p.message_id.clone()).collect();
                    ids.sort();
                    ids.dedup();
                    load_where!(tx, work, "id", ids.into_iter().filter(|id| !work.loaded.contains_key(id)).collect());
                    load_upstream!(tx, work, &upstream);
                    for (report, reply) in reports {
                        let outcome = work.report(*report, now);
                        pending.push(Pending::Report(reply, outcome));
                    }
                }
                // Claims read the outbox: write what is decided so far first.
                for (claim, reply) in claims {
                    write_pending!(tx, q);
                    if !work.is_clean() {
                        flush_work!(tx, work, q, false);
                        wake |= work.leaves_for_claim();
                        early_delta += work.early_balance();
                        if one_trip {
                            remember_sending(&work, &mut leased);
                        }
                        work = Work { events: std::mem::take(&mut work.events), ..Work::default() };
                    }
                    let due = select_due!(tx, &claim, now, postgres);
                    let ids: Vec<String> = due.iter().map(|(id, _, _)| id.clone()).collect();
                    load_where!(tx, work, "id", ids.into_iter().filter(|id| !work.loaded.contains_key(id)).collect());
                    let claimed = work.claim(&claim, due, now);
                    pending.push(Pending::Claim(reply, claimed));
                }
                // The rest of the transaction, to its COMMIT: on SQLite one script (in
                // the usual batch, the outcomes' updates, outbox deletes, history and
                // fan-out, a shape that depends on their number alone and stays
                // prepared); on PostgreSQL one statement at a time.
                flush_work!(tx, work, q, one_trip);
                wake |= work.leaves_for_claim();
                early_delta += work.early_balance();
                if one_trip {
                    remember_sending(&work, &mut leased);
                }
                push_events!(tx, q, work.events, one_trip);
                if !keys.is_empty() {
                    push_keys!(q, keys);
                    end_statement!(tx, q, one_trip);
                }
                // Whether anything changed that others wait for: a claim that took
                // nothing and decided nothing is not announced, or the dispatcher
                // would wake itself with its own empty claim.
                let changed = !work.events.is_empty()
                    || pending.iter().any(|p| !matches!(p, Pending::Claim(..) | Pending::Indexed(..)));
                if postgres && changed {
                    // Wake the dispatchers of other instances sharing this database
                    // (delivered when, and only if, the transaction commits).
                    sqlx::query("SELECT pg_notify($1, '')")
                        .bind(CHANGES_CHANNEL)
                        .execute(&mut *tx)
                        .await?;
                }
                if one_trip {
                    indexed = push_text_index!(q, indexed, unindexed + new_rows);
                }
                q.push("COMMIT");
                q.run(&mut *tx).await?;
                Ok::<bool, StoreError>(changed)
            }
            .await;
            if result.is_err() {
                // The transaction may have stopped half way.
                let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
            }
            match result {
                Ok(changed) => {
                    held = Some(conn);
                    signals.commits.fetch_add(1, Ordering::Relaxed);
                    if let Some(intake) = &intake {
                        for claimed in handed {
                            let id = claimed.message.id.to_string();
                            if one_trip {
                                let message = claimed.message.clone();
                                leased.insert(id.clone(), Loaded { message, step: 0 });
                            }
                            if intake.sink.send(Handoff::Take(Box::new(claimed))).is_err() {
                                tracing::warn!(%id, "the dispatcher has stopped; the message waits for its lease to run out");
                            }
                        }
                    }
                    if let Some(kept) = &mut early_kept {
                        *kept += early_delta;
                    }
                    // (PostgreSQL's index is always up to date: nothing to count.)
                    unindexed = if indexed || !one_trip { 0 } else { unindexed + new_rows };
                    if leased.len() > LEASED_MEMORY {
                        leased.clear();
                    }
                    pending.into_iter().for_each(Pending::answer);
                    if changed {
                        signals.changes.notify_waiters();
                    }
                    if wake {
                        signals.outbox.notify_waiters();
                    }
                }
                Err(error) => {
                    tracing::error!(%error, writes = pending.len() + todo.len(), "store transaction failed");
                    // What was remembered in this batch did not commit.
                    leased.clear();
                    early_kept = None;
                    if let Some(intake) = &intake {
                        for claimed in handed {
                            let _ = intake.sink.send(Handoff::Drop(claimed.message.id.to_string()));
                        }
                    }
                    let text = error.to_string();
                    pending.into_iter().for_each(|p| p.fail(&text));
                    todo.into_iter().for_each(|op| op.fail(&text));
                    // Keep the connection only if it still answers.
                    if sqlx::Connection::ping(&mut *conn).await.is_ok() {
                        held = Some(conn);
                    } else {
                        q.release(&mut conn).await;
                        conn.close_on_drop();
                    }
                }
            }
        }
        if let Some(mut conn) = held {
            q.release(&mut conn).await;
        }
    });
}

/// Whether new messages wait in the outbox for a claim: those to send that were not
/// handed off (their lease is in `leases`).
fn left_for_claim(inserts: &[Box<NewMessage>], leases: &HashMap<String, i64>) -> bool {
    inserts
        .iter()
        .any(|new| new.enqueue && !leases.contains_key(new.message.id.as_str()))
}

/// Keeps `leased` in step with the messages `work` wrote: one left `sending` is
/// remembered as written, any other forgotten.
fn remember_sending(work: &Work, leased: &mut HashMap<String, Loaded>) {
    for id in &work.dirty {
        match work.loaded.get(id) {
            Some(loaded) if loaded.message.status == MessageStatus::Sending => {
                leased.insert(id.clone(), loaded.clone());
            }
            _ => {
                leased.remove(id);
            }
        }
    }
}

/// Upstream ids grouped by the connector they came through: every look-up by upstream
/// id names its connector, so that it is a seek in the indexes on (connector,
/// upstream id), not a scan of every message.
fn by_connector(pairs: &[(String, String)]) -> std::collections::BTreeMap<&str, Vec<&str>> {
    let mut grouped: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (connector, id) in pairs {
        grouped
            .entry(connector.as_str())
            .or_default()
            .push(id.as_str());
    }
    grouped
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

/// Marks the new messages `intake` takes now as `sending`, first attempt, through the
/// connector it chose (see [`Intake`]); returns them, with the lease each holds (by
/// message id) for their outbox rows.
fn hand_off(
    intake: &Intake,
    inserts: &mut [Box<NewMessage>],
    now: i64,
) -> (Vec<Claimed>, HashMap<String, i64>) {
    let until = now + i64::try_from(intake.lease.as_micros()).unwrap_or(i64::MAX / 2);
    let mut taken = Vec::new();
    let mut leases = HashMap::new();
    for new in inserts.iter_mut() {
        let m = &mut new.message;
        let due = to_micros(m.send_at.unwrap_or(m.created_at));
        if !new.enqueue
            || m.status != MessageStatus::Queued
            || due > now
            || m.expires_at.is_some_and(|at| to_micros(at) <= now)
            || !intake.channels.contains(&m.channel)
        {
            continue;
        }
        let Dispatch::Send {
            connector,
            to,
            channel,
        } = (intake.decide)(m)
        else {
            // Waiting or failing is the claim's to record.
            continue;
        };
        if to != m.to {
            let from = std::mem::replace(&mut m.to, to);
            m.metadata.entry("routed_from".into()).or_insert(from);
            m.channel = channel;
        }
        m.events.get_or_insert_with(Vec::new).push(StatusEvent {
            status: MessageStatus::Sending,
            at: from_micros(now),
            detail: Some(format!("attempt 1 through {connector}")),
        });
        m.connector = Some(connector);
        m.status = MessageStatus::Sending;
        m.updated_at = from_micros(now);
        let mut message = m.clone();
        message.events = None;
        leases.insert(message.id.to_string(), until);
        taken.push(Claimed {
            message,
            attempt: 1,
        });
    }
    (taken, leases)
}

/// Appends the catch-up of the full-text index to `$q` when it is due: `$asked` (before
/// a search), or [`TEXT_INDEX_EVERY`] new messages `$unindexed`; true when appended.
macro_rules! push_text_index {
    ($q:expr, $asked:expr, $unindexed:expr) => {{
        let due = $asked || $unindexed >= TEXT_INDEX_EVERY;
        if due {
            $q.push(TEXT_INDEX_CATCH_UP);
        }
        due
    }};
}
use push_text_index;

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
                    None => {
                        sqlx::query_as::<_, (String, String, String)>(
                            "SELECT request_hash, message_id, response \
                         FROM idempotency_keys WHERE tenant = $1 AND key = $2",
                        )
                        .bind(&id.0)
                        .bind(&id.1)
                        .fetch_optional($exec)
                        .await?
                    }
                };
                match seen {
                    Some((hash, message_id, response)) if hash == key.request_hash => {
                        InsertOutcome::Replayed {
                            message_id,
                            response,
                        }
                    }
                    Some((_, message_id, _)) => InsertOutcome::KeyReused { message_id },
                    None => {
                        keys.insert(
                            id,
                            (
                                key.request_hash.clone(),
                                new.message.id.to_string(),
                                key.response.clone(),
                            ),
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
/// A message handed off (see [`hand_off`]) is leased to `$owner` until the time
/// `$leases` gives for it, its first attempt counted.
macro_rules! push_outbox {
    ($q:expr, $chunk:expr, $owner:expr, $leases:expr) => {{
        let owner: Option<&str> = $owner;
        let leases: &HashMap<String, i64> = $leases;
        let queued: Vec<_> = $chunk.iter().filter(|new| new.enqueue).collect();
        let any = !queued.is_empty();
        if any {
            $q.push("INSERT INTO outbox (message_id, due_at, attempts, lease_owner, lease_until) ");
            $q.push_values(queued, |mut b, new| {
                let lease = leases.get(new.message.id.as_str()).copied();
                // A leased row is looked at again when its lease runs out.
                let due = lease.unwrap_or_else(|| {
                    to_micros(new.message.send_at.unwrap_or(new.message.created_at))
                });
                b.push_bind(new.message.id.as_str())
                    .push_bind(due)
                    .push_bind(if lease.is_some() { 1i64 } else { 0 })
                    .push_bind(lease.and(owner))
                    .push_bind(lease);
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

/// Ends the statement in `$q`: in a script (`$script`, on SQLite) by appending the
/// separator, so that the next statement joins it; otherwise by executing it and
/// emptying `$q` for the next.
macro_rules! end_statement {
    ($tx:expr, $q:expr, $script:expr) => {{
        if $script {
            $q.push("; ");
        } else {
            $q.run(&mut *$tx).await?;
        }
    }};
}
use end_statement;

/// Writes one chunk of new messages: their rows and their outbox rows, each statement
/// ended with [`end_statement`] (so in a script, `$q` holds them all afterwards). Their
/// first events are the caller's to record, with [`push_events`].
macro_rules! push_insert_chunk {
    ($tx:expr, $q:expr, $chunk:expr, $owner:expr, $leases:expr, $script:expr) => {{
        let chunk: &[Box<NewMessage>] = $chunk;
        push_messages!($q, chunk);
        end_statement!($tx, $q, $script);
        if push_outbox!($q, chunk, $owner, $leases) {
            end_statement!($tx, $q, $script);
        }
    }};
}
use push_insert_chunk;

/// Records `$events`: their history rows, webhook fan-out and notices, a chunk of rows
/// per statement, each ended with [`end_statement`].
macro_rules! push_events {
    ($tx:expr, $q:expr, $events:expr, $script:expr) => {{
        for chunk in $events.chunks(ROWS_PER_STATEMENT) {
            push_history!($q, chunk);
            end_statement!($tx, $q, $script);
            push_fanout!($q, chunk);
            end_statement!($tx, $q, $script);
            if push_notices!($q, chunk) {
                end_statement!($tx, $q, $script);
            }
        }
    }};
}
use push_events;

/// Runs what waits in `$q`, a script begun on SQLite, before a read: the read then sees
/// it, inside the transaction. Nothing on PostgreSQL, where each statement has run.
macro_rules! write_pending {
    ($tx:expr, $q:expr) => {{
        if $q.has_statements() {
            $q.run(&mut *$tx).await?;
        }
    }};
}
use write_pending;

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

/// Appends the notices of `$events` to `$q` (see [`EventRecord::has_notice`]): for a
/// message received, one for each recipient of its tenant; for a final status, one for
/// the recipient the message names, if registered. False when no event has one.
macro_rules! push_notices {
    ($q:expr, $events:expr) => {{
        let with: Vec<&EventRecord> = $events.iter().filter(|e| e.has_notice()).collect();
        let any = !with.is_empty();
        if any {
            $q.push("WITH ev (event_id, status, message_id, tenant, notify, at) AS (");
            $q.push_values(with.iter(), |mut b, e| {
                b.push_bind(e.event_id.as_str())
                    .push_bind(e.status.as_str())
                    .push_bind(e.message_id.as_str())
                    .push_bind(e.tenant.as_str())
                    .push_bind(e.notify.as_deref())
                    .push_bind(e.at);
            });
            $q.push(
                ") INSERT INTO notices (id, recipient, message_id, kind, status, created_at) \
                 SELECT ev.event_id || ':' || r.key, r.key, ev.message_id, \
                 CASE WHEN ev.status = 'received' THEN 'received' ELSE 'status' END, \
                 ev.status, ev.at \
                 FROM ev JOIN notice_recipients r ON r.tenant = ev.tenant \
                 AND ((ev.status = 'received') OR (ev.status <> 'received' AND r.key = ev.notify))",
            );
        }
        any
    }};
}
use push_notices;

/// Reads the messages whose `$column` is one of `$values` (and that are not read yet)
/// into the work.
macro_rules! load_where {
    ($tx:expr, $work:expr, $column:literal, $values:expr) => {{
        let values: Vec<String> = $values;
        for chunk in values.chunks(500) {
            let mut q =
                QueryBuilder::new(concat!("SELECT * FROM messages WHERE ", $column, " IN ("));
            let mut list = q.separated(", ");
            for value in chunk {
                list.push_bind(value.as_str());
            }
            q.push(")");
            load_rows!($tx, $work, q);
        }
    }};
}
use load_where;

/// Reads the messages that these (connector, upstream id) pairs name (and that are not
/// read yet) into the work.
macro_rules! load_upstream {
    ($tx:expr, $work:expr, $upstream:expr) => {{
        let upstream: &Vec<(String, String)> = $upstream;
        for (connector, ids) in by_connector(upstream) {
            for chunk in ids.chunks(500) {
                let mut q = QueryBuilder::new("SELECT * FROM messages WHERE ");
                push_upstream!(q, connector, chunk);
                load_rows!($tx, $work, q);
            }
        }
    }};
}
use load_upstream;

/// Runs `$q`, a select of message rows, and keeps those not read yet in the work.
macro_rules! load_rows {
    ($tx:expr, $work:expr, $q:expr) => {{
        let rows: Vec<MessageRow> = $q.build_query_as().fetch_all(&mut *$tx).await?;
        for row in rows {
            if $work.loaded.contains_key(&row.id) {
                continue;
            }
            let step = usize::try_from(row.failover_step).unwrap_or_default();
            let message = row.into_message()?;
            $work
                .loaded
                .insert(message.id.to_string(), Loaded { message, step });
        }
    }};
}
use load_rows;

/// Appends `connector = $connector AND upstream_id IN ($ids)` to `$q`.
macro_rules! push_upstream {
    ($q:expr, $connector:expr, $ids:expr) => {{
        $q.push("connector = ");
        $q.push_bind($connector);
        $q.push(" AND upstream_id IN (");
        let mut list = $q.separated(", ");
        for id in $ids {
            list.push_bind(*id);
        }
        $q.push(")");
    }};
}
use push_upstream;

/// Reads the reports kept for these (connector, upstream id) pairs into the work.
macro_rules! load_early {
    ($tx:expr, $work:expr, $upstream:expr) => {{
        let upstream: Vec<(String, String)> = $upstream;
        for (connector, ids) in by_connector(&upstream) {
            for chunk in ids.chunks(500) {
                let mut q = QueryBuilder::new(
                    "SELECT seq, connector, upstream_id, status, at, error_code, error_detail \
                 FROM early_reports WHERE ",
                );
                push_upstream!(q, connector, chunk);
                q.push(" ORDER BY seq");
                let rows: Vec<(
                    i64,
                    String,
                    String,
                    String,
                    i64,
                    Option<String>,
                    Option<String>,
                )> = q.build_query_as().fetch_all(&mut *$tx).await?;
                for (seq, connector, upstream_id, status, at, error_code, error_detail) in rows {
                    $work
                        .early
                        .entry((connector, upstream_id))
                        .or_default()
                        .push(EarlyReport {
                            seq,
                            status,
                            at,
                            error_code,
                            error_detail,
                        });
                }
            }
        }
    }};
}
use load_early;

/// Reads every part of the multi-part messages that have a part among `$upstream`
/// (connector, upstream id) pairs.
macro_rules! load_parts {
    ($tx:expr, $work:expr, $upstream:expr) => {{
        let upstream: &Vec<(String, String)> = $upstream;
        for (connector, ids) in by_connector(upstream) {
            for chunk in ids.chunks(500) {
                let mut q = QueryBuilder::new(
                    "SELECT connector, upstream_id, message_id, part, status FROM upstream_parts \
                 WHERE message_id IN (SELECT message_id FROM upstream_parts WHERE ",
                );
                push_upstream!(q, connector, chunk);
                q.push(")");
                let rows: Vec<(String, String, String, i64, Option<String>)> =
                    q.build_query_as().fetch_all(&mut *$tx).await?;
                for (connector, part_id, message_id, index, status) in rows {
                    $work
                        .parts
                        .entry((connector, part_id))
                        .or_insert(crate::work::Part {
                            message_id,
                            index,
                            status: status.and_then(|s| s.parse().ok()),
                        });
                }
            }
        }
    }};
}
use load_parts;

/// The outbox rows a claim may take: due, not leased, for its channels.
macro_rules! select_due {
    ($tx:expr, $claim:expr, $now:expr, $postgres:expr) => {{
        let claim: &Claim = $claim;
        let mut due: Vec<(String, String, i64)> = Vec::new();
        if !claim.channels.is_empty() && claim.limit > 0 {
            // A leased row is due when its lease runs out (its `due_at`), so the scan of
            // the index on `due_at` meets only rows that may be taken.
            // Every channel: no need to look at the messages.
            let every = ALL_CHANNELS.iter().all(|c| claim.channels.contains(c));
            let mut q = QueryBuilder::new(if every {
                "SELECT o.message_id, o.kind, o.attempts FROM outbox o WHERE o.due_at <= "
            } else {
                "SELECT o.message_id, o.kind, o.attempts FROM outbox o JOIN messages m ON m.id = o.message_id \
                 WHERE o.due_at <= "
            });
            q.push_bind($now);
            q.push(" AND (o.lease_until IS NULL OR o.lease_until < ");
            q.push_bind($now);
            q.push(")");
            if !every {
                q.push(" AND m.channel IN (");
                let mut list = q.separated(", ");
                for channel in &claim.channels {
                    list.push_bind(channel.as_str());
                }
                q.push(")");
            }
            q.push(" ORDER BY o.due_at LIMIT ");
            q.push_bind(i64::from(claim.limit));
            if $postgres {
                q.push(" FOR UPDATE OF o SKIP LOCKED");
            }
            due = q.build_query_as().fetch_all(&mut *$tx).await?;
        }
        due
    }};
}
use select_due;

/// Writes what the work decided: changed messages, outbox rows and kept reports, with
/// a few multi-row statements.
macro_rules! flush_work {
    ($tx:expr, $work:expr, $q:expr, $script:expr) => {{
        let dirty: Vec<&Loaded> = $work.dirty.iter().filter_map(|id| $work.loaded.get(id)).collect();
        for chunk in dirty.chunks(ROWS_PER_STATEMENT) {
            $q.push(
                "WITH v (id, status, to_addr, channel, connector, upstream_id, error_code, \
                 error_detail, metadata, failover_step, updated_at) AS (",
            );
            $q.push_values(chunk.iter(), |mut b, loaded| {
                let m = &loaded.message;
                b.push_bind(m.id.as_str())
                    .push_bind(m.status.as_str())
                    .push_bind(m.to.as_str())
                    .push_bind(m.channel.as_str())
                    .push_bind(m.connector.as_deref())
                    .push_bind(m.upstream_id.as_deref())
                    .push_bind(m.error.as_ref().map(|e| e.code.as_str()))
                    .push_bind(m.error.as_ref().map(|e| e.detail.as_str()))
                    .push_bind(to_json(&m.metadata))
                    .push_bind(i64::try_from(loaded.step).unwrap_or_default())
                    .push_bind(to_micros(m.updated_at));
            });
            $q.push(
                ") UPDATE messages SET status = v.status, to_addr = v.to_addr, channel = v.channel, \
                 connector = v.connector, upstream_id = v.upstream_id, error_code = v.error_code, \
                 error_detail = v.error_detail, metadata = v.metadata, \
                 failover_step = v.failover_step, updated_at = v.updated_at \
                 FROM v WHERE messages.id = v.id",
            );
            end_statement!($tx, $q, $script);
        }
        let mut deletes = Vec::new();
        let mut schedules = Vec::new();
        let mut leases = Vec::new();
        let mut defers = Vec::new();
        for (id, op) in &$work.outbox {
            match op {
                OutboxOp::Delete => deletes.push(id.as_str()),
                OutboxOp::Schedule { kind, due } => schedules.push((id.as_str(), *kind, *due)),
                OutboxOp::Lease { owner, until, attempts } => leases.push((id.as_str(), owner.as_str(), *until, *attempts)),
                OutboxOp::Defer { due } => defers.push((id.as_str(), *due)),
            }
        }
        for chunk in deletes.chunks(500) {
            $q.push("DELETE FROM outbox WHERE message_id IN (");
            let mut list = $q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            $q.push(")");
            end_statement!($tx, $q, $script);
        }
        for chunk in schedules.chunks(ROWS_PER_STATEMENT) {
            $q.push("INSERT INTO outbox (message_id, kind, due_at) ");
            $q.push_values(chunk.iter(), |mut b, (id, kind, due)| {
                b.push_bind(*id).push_bind(*kind).push_bind(*due);
            });
            $q.push(
                " ON CONFLICT (message_id) DO UPDATE SET due_at = excluded.due_at, \
                 kind = excluded.kind, lease_owner = NULL, lease_until = NULL",
            );
            end_statement!($tx, $q, $script);
        }
        for chunk in leases.chunks(ROWS_PER_STATEMENT) {
            $q.push("WITH v (id, owner, until_at, attempts) AS (");
            $q.push_values(chunk.iter(), |mut b, (id, owner, until, attempts)| {
                b.push_bind(*id).push_bind(*owner).push_bind(*until).push_bind(*attempts);
            });
            $q.push(
                ") UPDATE outbox SET lease_owner = v.owner, lease_until = v.until_at, \
                 due_at = v.until_at, attempts = v.attempts FROM v WHERE outbox.message_id = v.id",
            );
            end_statement!($tx, $q, $script);
        }
        for chunk in defers.chunks(ROWS_PER_STATEMENT) {
            $q.push("WITH v (id, due) AS (");
            $q.push_values(chunk.iter(), |mut b, (id, due)| {
                b.push_bind(*id).push_bind(*due);
            });
            $q.push(
                ") UPDATE outbox SET due_at = v.due, lease_owner = NULL, lease_until = NULL \
                 FROM v WHERE outbox.message_id = v.id",
            );
            end_statement!($tx, $q, $script);
        }
        for chunk in $work.early_new.chunks(ROWS_PER_STATEMENT) {
            $q.push(
                "INSERT INTO early_reports (connector, upstream_id, status, at, error_code, error_detail, received_at) ",
            );
            $q.push_values(chunk.iter(), |mut b, (report, received)| {
                b.push_bind(report.connector.as_str())
                    .push_bind(report.upstream_id.as_str())
                    .push_bind(report.status.as_str())
                    .push_bind(to_micros(report.at))
                    .push_bind(report.error.as_ref().map(|e| e.0.as_str()))
                    .push_bind(report.error.as_ref().map(|e| e.1.as_str()))
                    .push_bind(*received);
            });
            end_statement!($tx, $q, $script);
        }
        let new_parts: Vec<(&(String, String), &crate::work::Part)> = $work
            .parts_new
            .iter()
            .filter_map(|key| $work.parts.get(key).map(|part| (key, part)))
            .collect();
        for chunk in new_parts.chunks(ROWS_PER_STATEMENT) {
            $q.push(
                "INSERT INTO upstream_parts (connector, upstream_id, message_id, part, status) ",
            );
            $q.push_values(chunk.iter(), |mut b, ((connector, part_id), part)| {
                b.push_bind(connector.as_str())
                    .push_bind(part_id.as_str())
                    .push_bind(part.message_id.as_str())
                    .push_bind(part.index)
                    .push_bind(part.status.map(|s| s.as_str()));
            });
            // A part id the far side gave twice keeps its first message.
            $q.push(" ON CONFLICT (connector, upstream_id) DO NOTHING");
            end_statement!($tx, $q, $script);
        }
        let changed_parts: Vec<(&(String, String), &crate::work::Part)> = $work
            .parts_changed
            .iter()
            .filter(|key| !$work.parts_new.contains(key))
            .filter_map(|key| $work.parts.get(key).map(|part| (key, part)))
            .collect();
        for chunk in changed_parts.chunks(ROWS_PER_STATEMENT) {
            $q.push("WITH v (connector, upstream_id, status) AS (");
            $q.push_values(chunk.iter(), |mut b, ((connector, part_id), part)| {
                b.push_bind(connector.as_str())
                    .push_bind(part_id.as_str())
                    .push_bind(part.status.map(|s| s.as_str()));
            });
            $q.push(
                ") UPDATE upstream_parts SET status = v.status FROM v \
                 WHERE upstream_parts.connector = v.connector AND upstream_parts.upstream_id = v.upstream_id",
            );
            end_statement!($tx, $q, $script);
        }
        for chunk in $work.early_done.chunks(500) {
            $q.push("DELETE FROM early_reports WHERE seq IN (");
            let mut list = $q.separated(", ");
            for seq in chunk {
                list.push_bind(*seq);
            }
            $q.push(")");
            end_statement!($tx, $q, $script);
        }
    }};
}
use flush_work;
