//! Webhook subscriptions, deliveries and attempts (DESIGN.md section 6).
//!
//! The group-commit writer creates the `webhook_deliveries` rows, one per matching
//! subscription, in the transaction that changes a message's status. Everything else
//! here — subscriptions, claims, attempts, replays — is written straight through the
//! pool: it is per delivery and off the message hot path. On SQLite such a write takes
//! the write lock at `BEGIN IMMEDIATE`, so it waits for the writer (busy timeout)
//! instead of failing half-way.
//!
//! Ordering: [`Store::claim_deliveries`] takes at most the oldest pending delivery of
//! each (subscription, message), so events of one message reach a subscriber in order:
//! a later event waits until the earlier one is delivered or given up.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, QueryBuilder};

use crate::backend::{Pool, on_pool};
use crate::rows::to_json;
use crate::time::{from_micros, to_micros};
use crate::{Store, StoreError};

/// A webhook subscription: where a tenant's events go, and which ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `wh_` followed by a UUIDv7 in hex.
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The receiver's URL.
    pub url: String,
    /// The event filter: `*`, `message.*` or exact types such as `message.delivered`.
    pub events: Vec<String>,
    /// The signing secret, `whsec_...`.
    pub secret: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was disabled (no more deliveries), if it was.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Since when every attempt to deliver to it has failed (None while healthy).
    pub failing_since: Option<DateTime<Utc>>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: retries ran out, the receiver answered 410, the target was refused, or
    /// the subscription was disabled.
    Failed,
    /// Its subscription was removed before it was delivered.
    Canceled,
}

impl DeliveryState {
    /// The state as stored and shown: `pending`, `delivered`, `failed`, `canceled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            "canceled" => Ok(Self::Canceled),
            other => Err(StoreError::Corrupt(format!("delivery state {other:?}"))),
        }
    }
}

/// One attempt to deliver an event: what was recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// The start of the receiver's answer, for diagnosis.
    pub response_excerpt: Option<String>,
}

/// One event for one subscription, with its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its position in the table: the page position of [`Store::list_deliveries`].
    pub seq: i64,
    /// `<event id>:<subscription id>`.
    pub id: String,
    /// The subscription it is for.
    pub subscription_id: String,
    /// The event id (`evt_...`), sent as `webhook-id` on every attempt and replay.
    pub event_id: String,
    /// The event type, e.g. `message.delivered`.
    pub event_type: String,
    /// The message the event is about.
    pub message_id: String,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made so far (replays included).
    pub attempts: u32,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: DateTime<Utc>,
    /// The HTTP status of the last attempt, when it got one.
    pub last_status_code: Option<u16>,
    /// What went wrong on the last attempt.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// A delivery taken for an attempt by [`Store::claim_deliveries`], with what the
/// worker needs to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// `<event id>:<subscription id>`.
    pub id: String,
    /// The subscription.
    pub subscription_id: String,
    /// The tenant that owns the subscription and the message.
    pub tenant: String,
    /// The event id, the `webhook-id` header.
    pub event_id: String,
    /// The event type, e.g. `message.sent`.
    pub event_type: String,
    /// The message the event is about.
    pub message_id: String,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// The subscription's URL.
    pub url: String,
    /// The subscription's signing secret (`whsec_...`).
    pub secret: String,
    /// Attempts made so far, replays included.
    pub attempts: u32,
    /// Attempts made since the delivery was last replayed (all of them if never): what
    /// the retry schedule counts.
    pub attempts_in_schedule: u32,
    /// When the first attempt since the last replay started, if one did: what the
    /// 48 h limit counts from.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The event's `data` as JSON, for an event that is not about a message
    /// (`presence.changed`: `message_id` is then the contact's address).
    pub payload: Option<String>,
}

/// One attempt to record with [`Store::record_attempts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The delivery attempted.
    pub delivery_id: String,
    /// How the attempt went.
    pub attempt: DeliveryAttempt,
    /// What comes next.
    pub next: AfterAttempt,
}

/// What comes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// It was delivered.
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// No more attempts: the delivery failed.
    GaveUp,
}

/// A `webhook_subscriptions` row.
#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    tenant: String,
    url: String,
    events: String,
    secret: String,
    created_at: i64,
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
}

impl SubscriptionRow {
    fn into_subscription(self) -> Result<Subscription, StoreError> {
        let events = serde_json::from_str(&self.events)
            .map_err(|_| StoreError::Corrupt(format!("subscription events {:?}", self.events)))?;
        Ok(Subscription {
            id: self.id,
            tenant: self.tenant,
            url: self.url,
            events,
            secret: self.secret,
            created_at: from_micros(self.created_at),
            disabled_at: self.disabled_at.map(from_micros),
            disabled_reason: self.disabled_reason,
            failing_since: self.failing_since.map(from_micros),
        })
    }
}

const SUBSCRIPTION_COLUMNS: &str = "id, tenant, url, events, secret, created_at, disabled_at, \
                                    disabled_reason, failing_since";

/// A `webhook_deliveries` row.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    seq: i64,
    id: String,
    subscription_id: String,
    event_id: String,
    event_type: String,
    message_id: String,
    event_at: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
}

/// A `webhook_attempts` row.
#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: String,
    at: i64,
    duration_ms: i64,
    status_code: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
}

/// A due delivery joined with its subscription.
#[derive(sqlx::FromRow)]
struct DueRow {
    seq: i64,
    id: String,
    subscription_id: String,
    tenant: String,
    event_id: String,
    event_type: String,
    message_id: String,
    event_at: i64,
    attempts: i64,
    attempts_before_replay: i64,
    first_attempt_at: Option<i64>,
    url: String,
    secret: String,
    payload: Option<String>,
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn status_code(code: Option<i64>) -> Option<u16> {
    code.and_then(|c| u16::try_from(c).ok())
}

/// Microseconds in `d`, saturating.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The current time as stored: microsecond precision.
pub(crate) fn now() -> DateTime<Utc> {
    from_micros(to_micros(Utc::now()))
}

/// The `filter` column for `events`: `,a,b,`, which the writer's fan-out matches with
/// `LIKE '%,<type>,%'`.
fn filter_column(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

impl Store {
    fn postgres(&self) -> bool {
        matches!(self.inner.pool, Pool::Postgres(_))
    }

    /// The statement that opens a write transaction: on SQLite, `BEGIN IMMEDIATE` takes
    /// the write lock up front (waiting for other writers), so the transaction cannot
    /// fail when it first writes after reading.
    pub(crate) fn begin_write(&self) -> &'static str {
        if self.postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        }
    }

    /// Creates a subscription of `tenant` to `events` at `url`, signed with `secret`.
    /// The caller checks the URL and the event names.
    pub async fn create_subscription(
        &self,
        tenant: &str,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<Subscription, StoreError> {
        let subscription = Subscription {
            id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
            tenant: tenant.to_owned(),
            url: url.to_owned(),
            events: events.to_vec(),
            secret: secret.to_owned(),
            created_at: now(),
            disabled_at: None,
            disabled_reason: None,
            failing_since: None,
        };
        on_pool!(&self.inner.pool, pool => {
            sqlx::query(
                "INSERT INTO webhook_subscriptions \
                 (id, tenant, url, events, filter, secret, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&subscription.id)
            .bind(tenant)
            .bind(url)
            .bind(to_json(&subscription.events))
            .bind(filter_column(events))
            .bind(secret)
            .bind(to_micros(subscription.created_at))
            .execute(pool)
            .await?;
        });
        Ok(subscription)
    }

    /// A tenant's subscriptions, oldest first.
    pub async fn list_subscriptions(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE tenant = $1 \
             ORDER BY created_at, id"
        );
        let rows: Vec<SubscriptionRow> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(SubscriptionRow::into_subscription)
            .collect()
    }

    /// A tenant's subscription, or None (also when another tenant owns it).
    pub async fn get_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1 AND tenant = $2"
        );
        let row: Option<SubscriptionRow> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .bind(tenant)
                .fetch_optional(pool)
                .await?
        });
        row.map(SubscriptionRow::into_subscription).transpose()
    }

    /// Removes a tenant's subscription and cancels its pending deliveries (their
    /// history stays). False when the tenant has no such subscription.
    pub async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let begin = self.begin_write();
        let deleted = on_pool!(&self.inner.pool, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let deleted = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1 AND tenant = $2")
                .bind(id)
                .bind(tenant)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted > 0 {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'canceled', lease_until = NULL \
                     WHERE subscription_id = $1 AND state = 'pending'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            deleted
        });
        Ok(deleted > 0)
    }

    /// Disables a subscription: no more deliveries to it, and its pending ones fail
    /// with `reason`. False when it was already disabled (or is gone).
    pub async fn disable_subscription(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let begin = self.begin_write();
        let at = to_micros(now());
        let error = format!("subscription disabled: {reason}");
        let disabled = on_pool!(&self.inner.pool, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let disabled = sqlx::query(
                "UPDATE webhook_subscriptions SET disabled_at = $2, disabled_reason = $3 \
                 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if disabled > 0 {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'failed', last_error = $2 \
                     WHERE subscription_id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(&error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            disabled
        });
        Ok(disabled > 0)
    }

    /// A page of a subscription's deliveries, newest first, each with its attempts:
    /// at most `limit`, and only those older than `before_seq` when given. Empty when
    /// the tenant has no such subscription.
    pub async fn list_deliveries(
        &self,
        tenant: &str,
        subscription_id: &str,
        limit: u32,
        before_seq: Option<i64>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT seq, id, subscription_id, event_id, event_type, message_id, event_at, \
                 state, attempts, next_attempt_at, last_status_code, last_error \
                 FROM webhook_deliveries \
                 WHERE subscription_id = $1 AND tenant = $2 AND seq < $3 \
                 ORDER BY seq DESC LIMIT $4",
            )
            .bind(subscription_id)
            .bind(tenant)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        let mut attempts: Vec<AttemptRow> = Vec::new();
        for chunk in rows.chunks(500) {
            let found: Vec<AttemptRow> = on_pool!(&self.inner.pool, pool => {
                let mut q = QueryBuilder::new(
                    "SELECT delivery_id, at, duration_ms, status_code, error, response_excerpt \
                     FROM webhook_attempts WHERE delivery_id IN (",
                );
                let mut ids = q.separated(", ");
                for row in chunk {
                    ids.push_bind(row.id.as_str());
                }
                q.push(") ORDER BY seq");
                q.build_query_as().fetch_all(pool).await?
            });
            attempts.extend(found);
        }
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let attempt_log = attempts
                .iter()
                .filter(|a| a.delivery_id == row.id)
                .map(|a| DeliveryAttempt {
                    at: from_micros(a.at),
                    duration_ms: u64::try_from(a.duration_ms).unwrap_or_default(),
                    status_code: status_code(a.status_code),
                    error: a.error.clone(),
                    response_excerpt: a.response_excerpt.clone(),
                })
                .collect();
            deliveries.push(Delivery {
                seq: row.seq,
                state: row.state.parse()?,
                id: row.id,
                subscription_id: row.subscription_id,
                event_id: row.event_id,
                event_type: row.event_type,
                message_id: row.message_id,
                event_at: from_micros(row.event_at),
                attempts: count(row.attempts),
                next_attempt_at: from_micros(row.next_attempt_at),
                last_status_code: status_code(row.last_status_code),
                last_error: row.last_error,
                attempt_log,
            });
        }
        Ok(deliveries)
    }

    /// Takes up to `limit` deliveries due at `now` for an attempt, leasing them for
    /// `lease` so no other worker takes them meanwhile (a worker that dies lets its
    /// lease run out, and the delivery is taken again: at least once).
    ///
    /// Only pending deliveries of enabled subscriptions, and of each (subscription,
    /// message) only the oldest pending one: a later event of a message waits until
    /// the earlier one is delivered or given up. On PostgreSQL the rows are locked with
    /// `FOR UPDATE SKIP LOCKED`, so several gateway instances share the work.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = to_micros(now);
        let until = now.saturating_add(micros(lease));
        let select = "SELECT d.seq, d.id, d.subscription_id, d.tenant, d.event_id, \
             d.event_type, d.message_id, d.event_at, d.attempts, d.attempts_before_replay, \
             d.first_attempt_at, s.url, s.secret, d.payload \
             FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
             AND (d.lease_until IS NULL OR d.lease_until <= $1) \
             AND s.disabled_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                 WHERE e.subscription_id = d.subscription_id AND e.message_id = d.message_id \
                 AND e.state = 'pending' AND e.seq < d.seq) \
             ORDER BY d.next_attempt_at, d.seq LIMIT $2";
        // A look first, outside any transaction: most of the time nothing is due, and
        // then no write lock is taken (on SQLite it is the writer's lock too).
        let due: Option<(i64,)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(AssertSqlSafe(format!("SELECT seq FROM ({select}) due LIMIT 1")))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_optional(pool)
                .await?
        });
        if due.is_none() {
            return Ok(Vec::new());
        }
        let sql = if self.postgres() {
            format!("{select} FOR UPDATE OF d SKIP LOCKED")
        } else {
            select.to_owned()
        };
        let begin = self.begin_write();
        let rows: Vec<DueRow> = on_pool!(&self.inner.pool, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let rows: Vec<DueRow> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            if !rows.is_empty() {
                let mut q = QueryBuilder::new("UPDATE webhook_deliveries SET lease_until = ");
                q.push_bind(until);
                q.push(" WHERE seq IN (");
                let mut seqs = q.separated(", ");
                for row in &rows {
                    seqs.push_bind(row.seq);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            rows
        });
        Ok(rows
            .into_iter()
            .map(|row| DueDelivery {
                id: row.id,
                subscription_id: row.subscription_id,
                tenant: row.tenant,
                event_id: row.event_id,
                event_type: row.event_type,
                message_id: row.message_id,
                event_at: from_micros(row.event_at),
                url: row.url,
                secret: row.secret,
                attempts: count(row.attempts),
                attempts_in_schedule: count(row.attempts - row.attempts_before_replay),
                first_attempt_at: row.first_attempt_at.map(from_micros),
                payload: row.payload,
            })
            .collect())
    }

    /// Records an attempt at a delivery and what comes next, and releases its lease.
    ///
    /// Returns since when every attempt to the delivery's subscription has failed
    /// (None after a success, or when the delivery or subscription is gone): the input
    /// of the rule that disables a subscription failing for too long.
    ///
    /// A delivery that was canceled or failed meanwhile (its subscription removed or
    /// disabled) keeps that state unless this attempt delivered it.
    pub async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &DeliveryAttempt,
        next: AfterAttempt,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let record = AttemptRecord {
            delivery_id: delivery_id.to_owned(),
            attempt: attempt.clone(),
            next,
        };
        let mut since = self.record_attempts(std::slice::from_ref(&record)).await?;
        Ok(since.pop().flatten())
    }

    /// [`Store::record_attempt`] for several attempts in one transaction (one commit
    /// instead of one each); answers in the same order.
    pub async fn record_attempts(
        &self,
        records: &[AttemptRecord],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let begin = self.begin_write();
        let answers: Vec<Option<i64>> = on_pool!(&self.inner.pool, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let mut answers = Vec::with_capacity(records.len());
            for record in records {
                let attempt = &record.attempt;
                let at = to_micros(attempt.at);
                let (state, next_at) = match record.next {
                    AfterAttempt::Delivered => (DeliveryState::Delivered, None),
                    AfterAttempt::RetryAt(t) => (DeliveryState::Pending, Some(to_micros(t))),
                    AfterAttempt::GaveUp => (DeliveryState::Failed, None),
                };
                sqlx::query(
                    "INSERT INTO webhook_attempts \
                     (delivery_id, at, duration_ms, status_code, error, response_excerpt) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(record.delivery_id.as_str())
                .bind(at)
                .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.error.as_deref())
                .bind(attempt.response_excerpt.as_deref())
                .execute(&mut *tx)
                .await?;
                let updated: Option<(String, String, i64)> = sqlx::query_as(
                    "UPDATE webhook_deliveries SET \
                     state = CASE WHEN $2 = 'delivered' OR state = 'pending' THEN $2 ELSE state END, \
                     attempts = attempts + 1, \
                     first_attempt_at = COALESCE(first_attempt_at, $3), \
                     next_attempt_at = COALESCE($4, next_attempt_at), \
                     last_status_code = $5, last_error = $6, lease_until = NULL \
                     WHERE id = $1 RETURNING subscription_id, message_id, seq",
                )
                .bind(record.delivery_id.as_str())
                .bind(state.as_str())
                .bind(at)
                .bind(next_at)
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.error.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
                if let (Some((sub, message, seq)), Some(retry_at)) = (&updated, next_at) {
                    // The later events of the message wait for this one: make them due
                    // no sooner, so the claim does not look at them again and again
                    // while a receiver is down.
                    sqlx::query(
                        "UPDATE webhook_deliveries SET next_attempt_at = $4 \
                         WHERE subscription_id = $1 AND message_id = $2 AND seq > $3 \
                         AND state = 'pending' AND next_attempt_at < $4",
                    )
                    .bind(sub)
                    .bind(message)
                    .bind(seq)
                    .bind(retry_at)
                    .execute(&mut *tx)
                    .await?;
                }
                let subscription = updated.map(|(sub, _, _)| (sub,));
                let failing_since = match (subscription, state) {
                    (None, _) => None,
                    (Some((sub,)), DeliveryState::Delivered) => {
                        sqlx::query(
                            "UPDATE webhook_subscriptions SET failing_since = NULL \
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                        .bind(&sub)
                        .execute(&mut *tx)
                        .await?;
                        None
                    }
                    (Some((sub,)), _) => {
                        let since: Option<(Option<i64>,)> = sqlx::query_as(
                            "UPDATE webhook_subscriptions \
                             SET failing_since = COALESCE(failing_since, $2) \
                             WHERE id = $1 RETURNING failing_since",
                        )
                        .bind(&sub)
                        .bind(at)
                        .fetch_optional(&mut *tx)
                        .await?;
                        since.and_then(|(s,)| s)
                    }
                };
                answers.push(failing_since);
            }
            tx.commit().await?;
            answers
        });
        Ok(answers
            .into_iter()
            .map(|since| since.map(from_micros))
            .collect())
    }

    /// Replays a tenant's delivery: back to pending, due now, with the same event id
    /// and a fresh retry schedule. A pending delivery is made due now, unless an attempt
    /// is under way. False when the tenant has no such delivery for that subscription.
    pub async fn retry_delivery(
        &self,
        tenant: &str,
        subscription_id: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let now = to_micros(now());
        let found: Option<(String,)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $4, \
                 attempts_before_replay = attempts, first_attempt_at = NULL \
                 WHERE id = $1 AND subscription_id = $2 AND tenant = $3 \
                 AND (lease_until IS NULL OR lease_until <= $4)",
            )
            .bind(delivery_id)
            .bind(subscription_id)
            .bind(tenant)
            .bind(now)
            .execute(pool)
            .await?;
            sqlx::query_as(
                "SELECT id FROM webhook_deliveries \
                 WHERE id = $1 AND subscription_id = $2 AND tenant = $3",
            )
            .bind(delivery_id)
            .bind(subscription_id)
            .bind(tenant)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_comma_framed() {
        let events = vec!["message.delivered".to_owned(), "message.failed".to_owned()];
        assert_eq!(filter_column(&events), ",message.delivered,message.failed,");
        assert_eq!(filter_column(&["*".to_owned()]), ",*,");
    }

    #[test]
    fn states_round_trip() {
        for state in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Canceled,
        ] {
            assert_eq!(state.as_str().parse::<DeliveryState>().ok(), Some(state));
        }
        assert!("nope".parse::<DeliveryState>().is_err());
    }
}
