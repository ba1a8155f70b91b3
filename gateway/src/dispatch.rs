//! Outbound dispatch: workers take due messages from the durable outbox under a lease,
//! route them, send them through their connector's adapter and record every outcome.
//!
//! The order of things makes a crash safe at any point: a message is marked `sending`
//! (an event in its history, the attempt counted in the outbox) in the transaction that
//! takes it, before the adapter sees it; if the gateway dies before the outcome is
//! recorded, the lease runs out and the message is taken again, its history showing the
//! interrupted attempt. On PostgreSQL several instances share the outbox
//! (`FOR UPDATE SKIP LOCKED`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use switchboard_adapter::{
    Adapter, BoxFuture, ConnectorState, OutboundAttachment, Reports, SendOutcome, StatusReport,
};
use switchboard_model::address::ALL_CHANNELS;
use switchboard_model::{Address, Channel, Direction, Message};
use switchboard_router::{AddressBook, Decision, RouteRequest, RouteTable};
use switchboard_store::{
    AttemptResult, Claim, Claimed, Decide, Dispatch, Handoff, Intake, Report, Store,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::DispatchConfig;
use crate::connectors::Connectors;
use crate::state::AppState;
use crate::tenants::Tenants;

/// How long a message whose connector is not up waits before it is looked at again.
const CONNECTOR_DOWN_WAIT: Duration = Duration::from_secs(2);

/// How long a message whose connector has no free send slot waits before it is looked
/// at again (rare: the dispatcher takes no more than the free slots).
const CONNECTOR_BUSY_WAIT: Duration = Duration::from_millis(20);

/// The longest the dispatcher sleeps without looking at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(1);

impl AddressBook for Tenants {
    fn owner(&self, address: &Address) -> Option<&str> {
        Tenants::owner(self, address).map(|t| t.id.as_str())
    }
}

/// Routes a due message: through a running connector, or why not.
pub fn decide(
    routes: &RouteTable,
    tenants: &Tenants,
    connectors: &Connectors,
    message: &Message,
) -> Dispatch {
    // A connector chosen already (by an inbound route that bridged the message) stands.
    if let Some(connector) = &message.connector {
        let (to, channel) = (message.to.clone(), message.channel);
        return through(connectors, message, connector.clone(), to, channel);
    }
    let to = match Address::parse_for(message.channel, &message.to) {
        Ok(to) => to,
        Err(e) => {
            return Dispatch::Fail {
                code: "invalid_address".into(),
                detail: e.to_string(),
            };
        }
    };
    let from = message.from.as_deref().and_then(|f| Address::parse(f).ok());
    let request = RouteRequest {
        direction: Direction::Outbound,
        tenant: &message.tenant,
        from: from.as_ref(),
        to: &to,
        arrived_on: None,
    };
    match routes.decide(&request, tenants) {
        Decision::Send { connector, to, .. } => {
            let channel = to.channel();
            through(connectors, message, connector, to.into_string(), channel)
        }
        Decision::Fail { code, detail } => Dispatch::Fail {
            code: code.as_str().to_owned(),
            detail,
        },
        Decision::Receive { .. } | Decision::Unknown { .. } => Dispatch::Fail {
            code: "no_route".into(),
            detail: format!("no connector sends to {}", message.to),
        },
    }
}

/// Sends through `connector` if it is up and has a free send slot (taken now, so that a
/// message is marked `sending` only when it can go at once); else the message waits.
fn through(
    connectors: &Connectors,
    message: &Message,
    connector: String,
    to: String,
    channel: Channel,
) -> Dispatch {
    match connectors.get(&connector) {
        Some(c) if c.adapter.state() == ConnectorState::Bound => {
            match c.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    connectors.hold(message.id.to_string(), permit);
                    Dispatch::Send {
                        connector,
                        to,
                        channel,
                    }
                }
                Err(_) => Dispatch::Wait(CONNECTOR_BUSY_WAIT),
            }
        }
        // Configured but down (or its adapter is not running): it waits.
        _ => Dispatch::Wait(CONNECTOR_DOWN_WAIT),
    }
}

/// The router of one claim, and the messages it took a send slot for (see [`through`]).
fn recording(decide: &Decide) -> (Decide, Arc<Mutex<Vec<String>>>) {
    let routed = Arc::new(Mutex::new(Vec::new()));
    let (inner, log) = (decide.clone(), routed.clone());
    let decide: Decide = Arc::new(move |m: &Message| {
        let dispatch = inner(m);
        if matches!(dispatch, Dispatch::Send { .. }) {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(m.id.to_string());
        }
        dispatch
    });
    (decide, routed)
}

/// Gives back the send slots the router of a claim took for messages the claim did not
/// hand over: all of them when its transaction failed. (A message it hands over takes
/// its slot with it.)
fn give_back_slots(connectors: &Connectors, routed: &Mutex<Vec<String>>, claimed: &[Claimed]) {
    let routed = std::mem::take(&mut *routed.lock().unwrap_or_else(|p| p.into_inner()));
    let handed: HashSet<&str> = claimed.iter().map(|c| c.message.id.as_str()).collect();
    for id in routed.iter().filter(|id| !handed.contains(id.as_str())) {
        drop(connectors.take_held(id));
    }
}

/// The delay before retry number `attempt` (1-based): `base` doubled per attempt, at
/// most `max`, with ±20% jitter.
pub fn backoff(config: &DispatchConfig, attempt: u32, jitter: f64) -> Duration {
    let base = config.retry_base_ms as f64 / 1000.0;
    let exp = base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let capped = exp.min(config.max_retry_delay_seconds as f64);
    Duration::from_secs_f64((capped * (1.0 + 0.2 * jitter.clamp(-1.0, 1.0))).max(0.0))
}

/// Turns an adapter's outcome into what the store records, applying the retry policy.
pub fn attempt_result(
    config: &DispatchConfig,
    claimed: &Claimed,
    outcome: SendOutcome,
    jitter: f64,
) -> AttemptResult {
    match outcome {
        SendOutcome::Accepted {
            upstream_id,
            status,
            metadata,
            parts,
        } => AttemptResult::Accepted {
            upstream_id,
            status,
            metadata,
            parts,
        },
        SendOutcome::Permanent { code, detail } => AttemptResult::Failed { code, detail },
        SendOutcome::Transient {
            code,
            detail,
            retry_after,
        } => {
            let now = Utc::now();
            let age = (now - claimed.message.created_at)
                .to_std()
                .unwrap_or_default();
            if claimed.attempt >= config.max_attempts {
                return AttemptResult::Failed {
                    code,
                    detail: format!("{detail} (gave up after {} attempts)", claimed.attempt),
                };
            }
            let wait = retry_after.unwrap_or_else(|| backoff(config, claimed.attempt, jitter));
            if age + wait > Duration::from_secs(config.max_age_seconds) {
                return AttemptResult::Failed {
                    code,
                    detail: format!(
                        "{detail} (gave up: no success within {} s)",
                        config.max_age_seconds
                    ),
                };
            }
            let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
            AttemptResult::Retry { at, code, detail }
        }
    }
}

/// Delivery reports from adapters, into the store.
pub struct StoreReports(pub Store);

impl Reports for StoreReports {
    fn report(&self, report: StatusReport) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .report(Report {
                    connector: report.connector,
                    upstream_id: report.upstream_id,
                    status: report.status,
                    error: report.error,
                    at: report.at,
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Starts the dispatcher; it stops when `shutdown` turns true, after the sends in
/// flight have finished and their outcomes are recorded.
///
/// New messages reach it two ways: handed off by the store in the transaction that
/// stores them (see [`Intake`]: no claim, no second read), which is how most do; and
/// claimed from the outbox, for the rest (scheduled, retried, waiting for a connector
/// that was down or busy, left by an instance that stopped).
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let owner = format!("{}-{}", std::process::id(), uuid_like());
        let config = state.config.dispatch.clone();
        let decide = {
            let (routes, tenants, connectors) = (
                state.routes.clone(),
                state.tenants.clone(),
                state.connectors.clone(),
            );
            let decide: Decide =
                Arc::new(move |m: &Message| decide(&routes, &tenants, &connectors, m));
            decide
        };
        let lease = Duration::from_secs(config.lease_seconds);
        let (sink, mut handed) = mpsc::unbounded_channel();
        state.store.set_intake(Some(Intake {
            owner: owner.clone(),
            lease,
            // Every channel, not only those with a connector: a route may send the
            // message on through another channel.
            channels: ALL_CHANNELS.to_vec(),
            decide: decide.clone(),
            sink,
        }));
        let changes = state.store.outbox_changes();
        let mut in_flight = JoinSet::new();
        let mut intake_open = true;
        let start = |in_flight: &mut JoinSet<()>, handoff: Handoff| match handoff {
            Handoff::Take(claimed) => {
                let (state, config) = (state.clone(), config.clone());
                in_flight.spawn(async move { send(&state, &config, *claimed).await });
            }
            Handoff::Drop(id) => drop(state.connectors.take_held(&id)),
        };
        // Registered before the first look, and again each time it fires, so that no
        // commit is missed between two looks.
        let mut notified = Box::pin(changes.notified());
        // Whether the outbox may hold work due now. True at the start, after a commit
        // that left some, when the next due time comes, and when a send ends while the
        // last look was cut short by the connectors' free slots. A hand-off or a send
        // that ends otherwise is no reason to look: claims that find nothing would
        // take a place in most of the store's commits.
        let mut look = true;
        let mut short_of_slots = false;
        let mut next_look = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(handoff) = handed.try_recv() {
                start(&mut in_flight, handoff);
            }
            while in_flight.try_join_next().is_some() {
                look |= short_of_slots;
            }
            if look {
                look = false;
                // No more than the connectors can start now: what is taken is `sending`.
                // With no connector at all, every due message is taken, to fail with
                // `no_route`.
                let free = if state.connectors.is_empty() {
                    config.batch
                } else {
                    state.connectors.free_slots().min(config.batch as usize) as u32
                };
                // Until a claim shows there is nothing more due, a send that ends
                // (freeing a slot) is a reason to look again.
                short_of_slots = true;
                let wait = if free == 0 {
                    // A send that ends frees a slot.
                    IDLE_POLL
                } else {
                    let (decide, routed) = recording(&decide);
                    let claim = Claim {
                        owner: owner.clone(),
                        lease,
                        limit: free,
                        // Every channel, not only those with a connector: a route may
                        // send the message on through another channel, and one that no
                        // connector can send fails with `no_route` instead of waiting
                        // forever.
                        channels: ALL_CHANNELS.to_vec(),
                        decide,
                    };
                    let result = state.store.claim(claim).await;
                    give_back_slots(
                        &state.connectors,
                        &routed,
                        result.as_deref().unwrap_or_default(),
                    );
                    match result {
                        Ok(claimed) => {
                            let full = claimed.len() as u32 >= free;
                            for claimed in claimed {
                                start(&mut in_flight, Handoff::Take(Box::new(claimed)));
                            }
                            if full {
                                look = true;
                                continue;
                            }
                            short_of_slots = false;
                            match state.store.next_due(&ALL_CHANNELS).await {
                                Ok(Some(due)) => {
                                    let now = Utc::now().timestamp_micros();
                                    Duration::from_micros(u64::try_from(due - now).unwrap_or(0))
                                        .min(IDLE_POLL)
                                        .max(Duration::from_millis(1))
                                }
                                _ => IDLE_POLL,
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot take work from the outbox");
                            IDLE_POLL
                        }
                    }
                };
                next_look = tokio::time::Instant::now() + wait;
            }
            tokio::select! {
                handoff = handed.recv(), if intake_open => match handoff {
                    Some(handoff) => start(&mut in_flight, handoff),
                    // Another dispatcher of this store took the intake over.
                    None => intake_open = false,
                },
                _ = &mut notified => {
                    notified = Box::pin(changes.notified());
                    look = true;
                }
                _ = in_flight.join_next(), if !in_flight.is_empty() => look |= short_of_slots,
                _ = tokio::time::sleep_until(next_look) => look = true,
                _ = shutdown.changed() => {}
            }
        }
        // Stop taking hand-offs; once a write issued after that is answered, every
        // hand-off still to come is in the channel.
        state.store.set_intake(None);
        let barrier = Claim {
            owner,
            lease,
            limit: 0,
            channels: Vec::new(),
            decide,
        };
        if let Err(e) = state.store.claim(barrier).await {
            tracing::warn!(error = %e, "cannot confirm the last hand-offs; their leases will run out");
        }
        while let Ok(handoff) = handed.try_recv() {
            start(&mut in_flight, handoff);
        }
        while in_flight.join_next().await.is_some() {}
    })
}

/// One attempt: within the connector's limits, send, then record the outcome.
async fn send(state: &AppState, config: &DispatchConfig, claimed: Claimed) {
    let Some(name) = claimed.message.connector.clone() else {
        return;
    };
    let Some(connector) = state.connectors.get(&name) else {
        return;
    };
    let id = claimed.message.id.to_string();
    let permit = match state.connectors.take_held(&id) {
        Some(permit) => permit,
        None => match connector.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return,
        },
    };
    if let Some(rate) = &connector.rate {
        while let Err(wait) = rate.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    connector.counters.attempts.fetch_add(1, Ordering::Relaxed);
    let outcome = match attachments(state, connector.adapter.as_ref(), &claimed.message).await {
        Ok(None) => connector.adapter.send(&claimed.message).await,
        Ok(Some(parts)) => {
            connector
                .adapter
                .send_with_attachments(&claimed.message, &parts)
                .await
        }
        Err(outcome) => outcome,
    };
    // The send slot is the adapter's: free it now, not once the outcome is committed,
    // or the connector's window would wait on the store's commits as well.
    drop(permit);
    let counter = match &outcome {
        SendOutcome::Accepted { .. } => &connector.counters.accepted,
        SendOutcome::Transient { .. } => &connector.counters.retried,
        SendOutcome::Permanent { .. } => &connector.counters.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let result = attempt_result(config, &claimed, outcome, jitter);
    state
        .metrics
        .dispatch_attempt(&name, &result, &claimed.message);
    // The outcome must be recorded; keep trying through a database hiccup. If the
    // gateway stops first, the lease runs out and the message is taken again.
    let mut delay = Duration::from_millis(100);
    while let Err(e) = state.store.record_outcome(&id, &name, result.clone()).await {
        tracing::error!(error = %e, %id, "cannot record a send outcome; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The attachment bytes to send `message` with: `None` when it has none or `adapter`
/// does not carry attachments (it sends the text alone); loaded from the store, where
/// they were put under the message's id before the message itself (by the API or by
/// ingest, for a forwarded or bridged message). Bytes that are not all there are a
/// permanent `attachment_missing`; a store error is transient.
async fn attachments(
    state: &AppState,
    adapter: &dyn Adapter,
    message: &Message,
) -> Result<Option<Vec<OutboundAttachment>>, SendOutcome> {
    if message.attachments.is_empty() || !adapter.carries_attachments() {
        return Ok(None);
    }
    let id = message.id.as_str();
    let stored = state.store.attachments_of(id).await.map_err(|e| {
        tracing::error!(error = %e, %id, "cannot read a message's attachments");
        SendOutcome::Transient {
            code: "store".into(),
            detail: "the attachments could not be read".into(),
            retry_after: None,
        }
    })?;
    if stored.len() != message.attachments.len() {
        return Err(SendOutcome::Permanent {
            code: "attachment_missing".into(),
            detail: format!(
                "{} of the message's {} attachments are stored",
                stored.len(),
                message.attachments.len()
            ),
        });
    }
    Ok(Some(
        stored
            .into_iter()
            .map(|a| OutboundAttachment {
                name: a.name,
                content_type: a.content_type,
                data: a.data,
            })
            .collect(),
    ))
}

/// A short random tag to tell dispatcher instances apart in leases.
fn uuid_like() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let config = DispatchConfig {
            retry_base_ms: 1000,
            max_retry_delay_seconds: 10,
            ..DispatchConfig::default()
        };
        let secs = |attempt, jitter| backoff(&config, attempt, jitter).as_secs_f64();
        assert_eq!(secs(1, 0.0), 1.0);
        assert_eq!(secs(2, 0.0), 2.0);
        assert_eq!(secs(4, 0.0), 8.0);
        assert_eq!(secs(5, 0.0), 10.0);
        assert_eq!(secs(50, 0.0), 10.0);
        assert!((secs(1, 1.0) - 1.2).abs() < 1e-9);
        assert!((secs(1, -1.0) - 0.8).abs() < 1e-9);
    }
}
