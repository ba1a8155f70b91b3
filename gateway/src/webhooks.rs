//! The webhook delivery worker (DESIGN.md section 6).
//!
//! The group-commit writer makes a pending delivery for every subscription an event
//! matches, in the transaction that changes the message. This worker takes due
//! deliveries from the store under a lease ([`Store::claim_deliveries`]: on PostgreSQL
//! several instances share them), sends each in a task of its own, and records every
//! attempt:
//!
//! - 2xx: delivered;
//! - 410 Gone: the subscription is disabled and the delivery fails;
//! - refused before sending (a target the SSRF rule forbids): failed, no retry;
//! - anything else, or no answer in 15 s: retried on the schedule of
//!   [`switchboard_webhooks::schedule`], and failed after 48 h.
//!
//! A subscription whose attempts have all failed for `[webhooks] disable_after_hours`
//! is disabled. At most `[webhooks] concurrency` attempts are under way at once, and at
//! most one per (subscription, message), so the events of a message arrive in order.
//! A slow receiver holds only its own tasks; nothing here is on the message path.
//!
//! Attempts are recorded by one recorder task that writes whatever outcomes are waiting
//! in one transaction: on SQLite, one commit (and one turn at the write lock, which the
//! message writer needs too) for many deliveries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use switchboard_store::{AfterAttempt, AttemptRecord, DeliveryAttempt, DueDelivery, StoreError};
use switchboard_webhooks::{Event, Outcome, Secret, Sender};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::WebhooksConfig;
use crate::state::AppState;

/// The longest the worker sleeps without looking for due deliveries.
const POLL: Duration = Duration::from_millis(250);
/// How long a taken delivery is reserved for its attempt: well over the 15 s an attempt
/// may take. A worker that dies lets it run out, and the delivery is taken again.
const LEASE: Duration = Duration::from_secs(60);
/// The most deliveries taken at once.
const MAX_CLAIM: usize = 256;
/// The most attempts written in one transaction.
const MAX_RECORD_BATCH: usize = 256;

/// The retry schedule: given the failed attempts so far (1 after the first failure) and
/// the time since the first attempt, the delay before the next one, or None to give up.
pub type NextDelay = Arc<dyn Fn(u32, Duration) -> Option<Duration> + Send + Sync>;

/// How the worker runs. [`WorkerOptions::from_config`] gives the production values;
/// tests shorten the schedule and the limits.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Refuse targets that are or resolve to non-public addresses.
    pub refuse_private_targets: bool,
    /// Disable a subscription whose attempts have all failed for this long.
    pub disable_after: Duration,
    /// The time limit of one attempt.
    pub timeout: Duration,
    /// The retry schedule.
    pub next_delay: NextDelay,
    /// The longest the worker sleeps without looking for due deliveries.
    pub poll: Duration,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("concurrency", &self.concurrency)
            .field("refuse_private_targets", &self.refuse_private_targets)
            .field("disable_after", &self.disable_after)
            .field("timeout", &self.timeout)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl WorkerOptions {
    /// The options of `[webhooks]`, with the schedule of DESIGN.md section 6.
    pub fn from_config(config: &WebhooksConfig) -> WorkerOptions {
        WorkerOptions {
            concurrency: config.concurrency.max(1),
            refuse_private_targets: config.refuse_private_targets,
            disable_after: Duration::from_secs(config.disable_after_hours.saturating_mul(3600)),
            timeout: switchboard_webhooks::DELIVERY_TIMEOUT,
            next_delay: Arc::new(switchboard_webhooks::next_delay_random),
            poll: POLL,
        }
    }
}

/// Starts the webhook worker with the options of `[webhooks]`. It stops when
/// `shutdown` turns true, once the attempts under way have finished and are recorded
/// (an attempt takes at most 15 s).
pub fn spawn_worker(state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let options = WorkerOptions::from_config(&state.config.webhooks);
    spawn_worker_with(state, shutdown, options)
}

/// [`spawn_worker`] with explicit options.
pub fn spawn_worker_with(
    state: AppState,
    shutdown: watch::Receiver<bool>,
    options: WorkerOptions,
) -> JoinHandle<()> {
    tokio::spawn(run(state, shutdown, options))
}

/// What every delivery task shares.
struct Context {
    state: AppState,
    options: WorkerOptions,
    sender: Sender,
    recorder: mpsc::Sender<Recording>,
}

/// An attempt to record, and where to answer once it is committed.
struct Recording {
    record: AttemptRecord,
    reply: oneshot::Sender<Result<Option<DateTime<Utc>>, String>>,
}

async fn run(state: AppState, mut shutdown: watch::Receiver<bool>, options: WorkerOptions) {
    let (recorder, queue) = mpsc::channel(options.concurrency.max(1) * 2);
    let recorder_task = tokio::spawn(record_loop(state.clone(), queue));
    let sender = Sender::new(!options.refuse_private_targets).with_timeout(options.timeout);
    let concurrency = options.concurrency.max(1);
    let poll = options.poll;
    let context = Arc::new(Context {
        state: state.clone(),
        options,
        sender,
        recorder,
    });
    let changes = state.store.changes();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Registered before looking, so a commit made while we look is not missed.
        let notified = changes.notified();
        while let Some(done) = in_flight.try_join_next() {
            log_panic(done);
        }
        let free = concurrency.saturating_sub(in_flight.len()).min(MAX_CLAIM);
        let mut full = false;
        let mut wait = poll;
        if free > 0 {
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match state.store.claim_deliveries(Utc::now(), LEASE, limit).await {
                Ok(due) => {
                    failures = 0;
                    full = due.len() >= free;
                    for delivery in due {
                        let context = context.clone();
                        in_flight.spawn(async move { deliver(&context, delivery).await });
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%error, "cannot take webhook deliveries");
                    // Back off while the database is in trouble: up to 5 s.
                    wait = poll.saturating_mul(failures.min(20));
                }
            }
        }
        if full && in_flight.len() < concurrency {
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => log_panic(done),
            changed = shutdown.changed() => {
                // The sender gone counts as a stop: nobody can stop us later.
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        log_panic(done);
    }
    // The last sender goes with the context: the recorder writes what is left and ends.
    drop(context);
    if let Err(error) = recorder_task.await {
        tracing::error!(%error, "the webhook recorder failed");
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "a webhook delivery task failed");
    }
}

/// Writes the attempts that are waiting, many in one transaction, until every sender
/// is gone.
async fn record_loop(state: AppState, mut queue: mpsc::Receiver<Recording>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let records: Vec<AttemptRecord> = batch.iter().map(|r| r.record.clone()).collect();
        match state.store.record_attempts(&records).await {
            Ok(answers) => {
                for (recording, since) in batch.drain(..).zip(answers) {
                    let _ = recording.reply.send(Ok(since));
                }
            }
            Err(error) => {
                let text = error.to_string();
                for recording in batch.drain(..) {
                    let _ = recording.reply.send(Err(text.clone()));
                }
            }
        }
    }
}

/// Records an attempt through the recorder, trying again through database trouble: the
/// attempt happened and must be written. If the gateway stops first, the lease runs out
/// and the delivery is attempted again (at least once).
async fn record(context: &Context, record: AttemptRecord) -> Option<DateTime<Utc>> {
    let mut delay = Duration::from_millis(100);
    loop {
        let (reply, answer) = oneshot::channel();
        let recording = Recording {
            record: record.clone(),
            reply,
        };
        if context.recorder.send(recording).await.is_err() {
            return None;
        }
        match answer.await {
            Ok(Ok(since)) => return since,
            Ok(Err(error)) => {
                tracing::error!(%error, delivery = %record.delivery_id, "cannot record a webhook attempt; retrying");
            }
            Err(_) => return None,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One attempt at one delivery, recorded.
async fn deliver(context: &Context, due: DueDelivery) {
    let started = Utc::now();
    let body = match body(context, &due).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            // Nothing to send, ever: record why and give up.
            let attempt = DeliveryAttempt {
                at: started,
                duration_ms: 0,
                status_code: None,
                error: Some(format!("message {} is no longer stored", due.message_id)),
                response_excerpt: None,
            };
            finish(
                context,
                &due,
                attempt,
                AfterAttempt::GaveUp,
                Outcome::Refused,
            )
            .await;
            return;
        }
        Err(error) => {
            // Our database, not the receiver: the lease runs out and it is taken again.
            tracing::error!(%error, delivery = %due.id, "cannot build a webhook payload");
            return;
        }
    };
    let secret = match Secret::parse(&due.secret) {
        Ok(secret) => secret,
        Err(error) => {
            let attempt = DeliveryAttempt {
                at: started,
                duration_ms: 0,
                status_code: None,
                error: Some(format!("the subscription's secret is not usable: {error}")),
                response_excerpt: None,
            };
            finish(
                context,
                &due,
                attempt,
                AfterAttempt::GaveUp,
                Outcome::Refused,
            )
            .await;
            return;
        }
    };
    let sent = context
        .sender
        .deliver(&due.url, &due.event_id, body, &secret, started.timestamp())
        .await;
    let next = match sent.outcome {
        Outcome::Delivered => AfterAttempt::Delivered,
        Outcome::Gone | Outcome::Refused => AfterAttempt::GaveUp,
        Outcome::Failed => {
            let failed = due.attempts_in_schedule.saturating_add(1);
            let since_first = due
                .first_attempt_at
                .and_then(|first| (started - first).to_std().ok())
                .unwrap_or_default();
            match (context.options.next_delay)(failed, since_first) {
                Some(delay) => AfterAttempt::RetryAt(
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                ),
                None => AfterAttempt::GaveUp,
            }
        }
    };
    let attempt = DeliveryAttempt {
        at: started,
        duration_ms: u64::try_from(sent.duration.as_millis()).unwrap_or(u64::MAX),
        status_code: sent.status,
        error: sent.error,
        response_excerpt: sent.response_excerpt,
    };
    finish(context, &due, attempt, next, sent.outcome).await;
}

/// Logs, counts and records an attempt, and disables the subscription when the
/// attempt says so.
async fn finish(
    context: &Context,
    due: &DueDelivery,
    attempt: DeliveryAttempt,
    next: AfterAttempt,
    outcome: Outcome,
) {
    let state = &context.state;
    state.metrics.webhook_attempt(outcome);
    let retry_at = match next {
        AfterAttempt::RetryAt(at) => Some(at.to_rfc3339()),
        _ => None,
    };
    if outcome == Outcome::Delivered {
        tracing::debug!(
            delivery = %due.id,
            subscription = %due.subscription_id,
            event_type = %due.event_type,
            status = attempt.status_code,
            "webhook delivered"
        );
    } else {
        tracing::info!(
            delivery = %due.id,
            subscription = %due.subscription_id,
            event_type = %due.event_type,
            outcome = outcome.as_str(),
            status = attempt.status_code,
            error = attempt.error.as_deref(),
            retry_at,
            gave_up = next == AfterAttempt::GaveUp,
            "webhook attempt failed"
        );
    }
    // 410 first, so no later event goes to a receiver that asked for none.
    if outcome == Outcome::Gone {
        disable(state, &due.subscription_id, "410 Gone from receiver").await;
    }
    let record = AttemptRecord {
        delivery_id: due.id.clone(),
        attempt,
        next,
    };
    let failing_since = self::record(context, record).await;
    if outcome == Outcome::Delivered {
        return;
    }
    let limit = context.options.disable_after;
    let failing_for = failing_since.and_then(|since| (Utc::now() - since).to_std().ok());
    if failing_for.is_some_and(|failing| failing >= limit) {
        let reason = format!(
            "every delivery attempt failed for {}",
            describe_duration(limit)
        );
        disable(state, &due.subscription_id, &reason).await;
    }
}

async fn disable(state: &AppState, subscription: &str, reason: &str) {
    match state.store.disable_subscription(subscription, reason).await {
        Ok(true) => tracing::warn!(subscription, reason, "webhook subscription disabled"),
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, subscription, "cannot disable a webhook subscription");
        }
    }
}

/// `72 hours`, or seconds for the short limits of tests.
fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} hours", secs / 3600)
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// The signed body: `{id, type, created_at, data}` with the message as stored now,
/// seen at the time of the event. None when the message is gone.
async fn body(context: &Context, due: &DueDelivery) -> Result<Option<Bytes>, StoreError> {
    if let Some(payload) = &due.payload {
        // An event that is not about a message carries its data.
        let data = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
        let event = Event {
            id: due.event_id.clone(),
            kind: due.event_type.clone(),
            created_at: due.event_at,
            data,
        };
        return Ok(Some(Bytes::from(
            serde_json::to_vec(&event).unwrap_or_default(),
        )));
    }
    let Some(message) = context
        .state
        .store
        .get_message(&due.tenant, &due.message_id)
        .await?
    else {
        return Ok(None);
    };
    let event = event(due, message);
    // A message and an event are plain data: serialising them cannot fail.
    Ok(Some(Bytes::from(
        serde_json::to_vec(&event).unwrap_or_default(),
    )))
}

/// The event of a delivery: `data` is the message resource as the API shows it, with
/// the `status` the event announces, `updated_at` at the event's time, and the history
/// up to that time, so that every event describes the message as it was then.
pub fn event(due: &DueDelivery, mut message: switchboard_model::Message) -> Event {
    if let Some(status) = due
        .event_type
        .strip_prefix("message.")
        .and_then(|s| s.parse().ok())
    {
        message.status = status;
    }
    message.updated_at = due.event_at;
    if let Some(events) = &mut message.events {
        events.retain(|e| e.at <= due.event_at);
    }
    let data = serde_json::to_value(&message).unwrap_or_default();
    Event {
        id: due.event_id.clone(),
        kind: due.event_type.clone(),
        created_at: due.event_at,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_model::{Channel, Direction, Message, MessageId, MessageStatus, StatusEvent};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn the_event_shows_the_message_as_it_was() {
        let status_event = |status: MessageStatus, when: &str| StatusEvent {
            status,
            at: at(when),
            detail: None,
        };
        let message = Message {
            id: MessageId::from_stored("m1".into()),
            tenant: "acme".into(),
            direction: Direction::Outbound,
            channel: Channel::Sms,
            from: None,
            to: "+14155550100".into(),
            text: "hi".into(),
            subject: None,
            attachments: vec![],
            client_ref: Some("r1".into()),
            metadata: Default::default(),
            status: MessageStatus::Delivered,
            events: Some(vec![
                status_event(MessageStatus::Queued, "2026-01-01T00:00:00Z"),
                status_event(MessageStatus::Sending, "2026-01-01T00:00:01Z"),
                status_event(MessageStatus::Delivered, "2026-01-01T00:00:02Z"),
            ]),
            segments: Some(1),
            encoding: None,
            connector: None,
            upstream_id: None,
            error: None,
            failover: vec![],
            created_at: at("2026-01-01T00:00:00Z"),
            updated_at: at("2026-01-01T00:00:02Z"),
            send_at: None,
            expires_at: None,
        };
        let due = DueDelivery {
            id: "evt_1:wh_1".into(),
            subscription_id: "wh_1".into(),
            tenant: "acme".into(),
            event_id: "evt_1".into(),
            event_type: "message.sending".into(),
            message_id: "m1".into(),
            event_at: at("2026-01-01T00:00:01Z"),
            url: "http://127.0.0.1:9/".into(),
            secret: String::new(),
            attempts: 0,
            attempts_in_schedule: 0,
            first_attempt_at: None,
            payload: None,
        };
        let event = serde_json::to_value(event(&due, message)).unwrap_or_default();
        assert_eq!(event["id"], "evt_1");
        assert_eq!(event["type"], "message.sending");
        assert_eq!(event["created_at"], "2026-01-01T00:00:01Z");
        assert_eq!(event["data"]["id"], "m1");
        assert_eq!(event["data"]["status"], "sending");
        assert_eq!(event["data"]["updated_at"], "2026-01-01T00:00:01Z");
        assert_eq!(event["data"]["client_ref"], "r1");
        let history = event["data"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[1]["status"], "sending");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(
            describe_duration(Duration::from_secs(72 * 3600)),
            "72 hours"
        );
        assert_eq!(describe_duration(Duration::from_millis(300)), "0.3 s");
    }
}
