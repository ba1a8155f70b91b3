//! The unit of work of one writer transaction, for everything but bulk inserts: the
//! messages it read, what it decided about them, and what it will write. Decisions are
//! plain Rust over loaded messages; the writer reads everything a batch needs with a
//! few queries first and writes it all back with a few multi-row statements at the end,
//! so the cost of a batch hardly grows with its size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use switchboard_model::{ErrorInfo, Message, MessageStatus};

use crate::time::{from_micros, to_micros};
use crate::writer::{
    AttemptResult, CancelOutcome, Claim, Claimed, Dispatch, EventRecord, Report, ReportOutcome,
};

/// A message read inside the transaction, with the failover step it is on.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub message: Message,
    pub step: usize,
}

/// What becomes of a message's outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutboxOp {
    /// Nothing more to do for it.
    Delete,
    /// Due at `due` (µs) for `kind` (`send` or `failover`), with no lease.
    Schedule { kind: &'static str, due: i64 },
    /// Taken by `owner` until `until` (µs); this is attempt `attempts`.
    Lease {
        owner: String,
        until: i64,
        attempts: i64,
    },
    /// Look again at `due` (µs), keeping everything else.
    Defer { due: i64 },
}

/// A delivery report kept until its message is known.
#[derive(Debug, Clone)]
pub(crate) struct EarlyReport {
    pub seq: i64,
    pub status: String,
    pub at: i64,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
}

/// Everything one transaction reads and decides.
#[derive(Default)]
pub(crate) struct Work {
    pub loaded: HashMap<String, Loaded>,
    pub dirty: BTreeSet<String>,
    pub outbox: BTreeMap<String, OutboxOp>,
    /// Reports to keep: (report, received at µs).
    pub early_new: Vec<(Report, i64)>,
    /// Kept reports that were applied.
    pub early_done: Vec<i64>,
    /// Kept reports read for this batch, by (connector, upstream id).
    pub early: HashMap<(String, String), Vec<EarlyReport>>,
    pub events: Vec<EventRecord>,
    /// Parts of multi-part messages read or made in this batch, by (connector, part id).
    pub parts: HashMap<(String, String), Part>,
    /// Parts to insert: (connector, part id).
    pub parts_new: Vec<(String, String)>,
    /// Parts whose status changed: (connector, part id).
    pub parts_changed: BTreeSet<(String, String)>,
}

/// One part of a message that went in several.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub message_id: String,
    pub index: i64,
    /// What the far side reported for it.
    pub status: Option<MessageStatus>,
}

impl Work {
    /// Whether there is anything to write.
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty()
            && self.parts_new.is_empty()
            && self.parts_changed.is_empty()
            && self.outbox.is_empty()
            && self.early_new.is_empty()
            && self.early_done.is_empty()
    }

    /// Whether what it decided leaves outbox work for a claim: a send or failover
    /// deadline scheduled, or a message deferred.
    pub fn leaves_for_claim(&self) -> bool {
        self.outbox
            .values()
            .any(|op| matches!(op, OutboxOp::Schedule { .. } | OutboxOp::Defer { .. }))
    }

    /// Reports it keeps less kept reports it applied.
    pub fn early_balance(&self) -> i64 {
        let kept = i64::try_from(self.early_new.len()).unwrap_or(i64::MAX);
        kept - i64::try_from(self.early_done.len()).unwrap_or(i64::MAX)
    }

    /// Moves message `id` to `status`, recording the event; false (and nothing
    /// changes) when the lifecycle does not allow it.
    fn change(&mut self, id: &str, status: MessageStatus, at: i64, detail: Option<String>) -> bool {
        let Some(loaded) = self.loaded.get_mut(id) else {
            return false;
        };
        let message = &mut loaded.message;
        if !message.status.can_become(status) {
            tracing::debug!(%id, from = %message.status, to = %status, "status change refused");
            return false;
        }
        message.status = status;
        message.updated_at = from_micros(at);
        self.events
            .push(EventRecord::new(message, status, at, detail));
        self.dirty.insert(id.to_owned());
        true
    }

    /// After a failure (`failed`, `undelivered`, `expired`) of the destination in
    /// flight: on to the next failover step if there is one (back to `queued`, due
    /// now), else the message keeps the failure and leaves the outbox.
    fn fail_or_failover(
        &mut self,
        id: &str,
        status: MessageStatus,
        code: &str,
        detail: &str,
        at: i64,
    ) {
        if !self.change(id, status, at, Some(format!("{code}: {detail}"))) {
            return;
        }
        let Some(loaded) = self.loaded.get_mut(id) else {
            return;
        };
        loaded.message.error = Some(ErrorInfo {
            code: code.to_owned(),
            detail: detail.to_owned(),
        });
        let Some(next) = loaded.message.failover.get(loaded.step).cloned() else {
            self.outbox.insert(id.to_owned(), OutboxOp::Delete);
            return;
        };
        loaded.step += 1;
        let note = format!(
            "failover to step {} of {}: {}",
            loaded.step + 1,
            loaded.message.failover.len() + 1,
            next.to
        );
        if self.change(id, MessageStatus::Queued, at, Some(note)) {
            if let Some(loaded) = self.loaded.get_mut(id) {
                let m = &mut loaded.message;
                m.to = next.to;
                m.channel = next.channel;
                m.connector = None;
                m.upstream_id = None;
            }
            self.outbox.insert(
                id.to_owned(),
                OutboxOp::Schedule {
                    kind: "send",
                    due: at,
                },
            );
        }
    }

    /// Cancels a tenant's message while it is queued.
    pub fn cancel(
        &mut self,
        tenant: &str,
        id: &str,
        detail: Option<String>,
        now: i64,
    ) -> CancelOutcome {
        match self.loaded.get(id) {
            Some(loaded) if loaded.message.tenant == tenant => {
                let status = loaded.message.status;
                if self.change(id, MessageStatus::Canceled, now, detail) {
                    self.outbox.insert(id.to_owned(), OutboxOp::Delete);
                    CancelOutcome::Canceled
                } else {
                    CancelOutcome::TooLate(status)
                }
            }
            _ => CancelOutcome::NotFound,
        }
    }

    /// Handles the due outbox rows a claim selected (their messages loaded): expires,
    /// checks failover deadlines, routes and leases.
    pub fn claim(
        &mut self,
        claim: &Claim,
        due: Vec<(String, String, i64)>,
        now: i64,
    ) -> Vec<Claimed> {
        let lease_until = now + i64::try_from(claim.lease.as_micros()).unwrap_or(i64::MAX / 2);
        let mut claimed = Vec::new();
        for (id, kind, attempts) in due {
            let Some(loaded) = self.loaded.get(&id) else {
                self.outbox.insert(id, OutboxOp::Delete);
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
                    self.fail_or_failover(
                        &id,
                        MessageStatus::Undelivered,
                        "failover_timeout",
                        &detail,
                        now,
                    );
                } else {
                    self.outbox.insert(id, OutboxOp::Delete);
                }
                continue;
            }
            if !matches!(status, MessageStatus::Queued | MessageStatus::Sending) {
                self.outbox.insert(id, OutboxOp::Delete);
                continue;
            }
            if loaded
                .message
                .expires_at
                .is_some_and(|at| to_micros(at) <= now)
            {
                let detail = "validity ran out before it was sent";
                self.change(&id, MessageStatus::Expired, now, Some(detail.into()));
                if let Some(loaded) = self.loaded.get_mut(&id) {
                    loaded.message.error = Some(ErrorInfo {
                        code: "expired".into(),
                        detail: detail.into(),
                    });
                }
                self.outbox.insert(id, OutboxOp::Delete);
                continue;
            }
            match (claim.decide)(&loaded.message) {
                Dispatch::Send {
                    connector,
                    to,
                    channel,
                } => {
                    let attempt = attempts + 1;
                    let detail = format!("attempt {attempt} through {connector}");
                    if status == MessageStatus::Sending {
                        // The worker that held it stopped before recording an outcome.
                        let note = format!("{detail}, after an interrupted attempt");
                        self.events.push(EventRecord::new(
                            &loaded.message,
                            MessageStatus::Sending,
                            now,
                            Some(note),
                        ));
                    } else {
                        self.change(&id, MessageStatus::Sending, now, Some(detail));
                    }
                    if let Some(loaded) = self.loaded.get_mut(&id) {
                        let m = &mut loaded.message;
                        if to != m.to {
                            let from = std::mem::replace(&mut m.to, to);
                            m.metadata.entry("routed_from".into()).or_insert(from);
                            m.channel = channel;
                        }
                        m.connector = Some(connector);
                        m.updated_at = from_micros(now);
                        claimed.push(Claimed {
                            message: m.clone(),
                            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        });
                    }
                    self.dirty.insert(id.clone());
                    self.outbox.insert(
                        id,
                        OutboxOp::Lease {
                            owner: claim.owner.clone(),
                            until: lease_until,
                            attempts: attempt,
                        },
                    );
                }
                Dispatch::Fail { code, detail } => {
                    self.fail_or_failover(&id, MessageStatus::Failed, &code, &detail, now);
                }
                Dispatch::Wait(wait) => {
                    let due = now + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 2);
                    self.outbox.insert(id, OutboxOp::Defer { due });
                }
            }
        }
        claimed
    }

    /// Records the outcome of an attempt on a loaded message.
    pub fn outcome(&mut self, id: &str, connector: &str, result: AttemptResult, now: i64) {
        let Some(loaded) = self.loaded.get_mut(id) else {
            tracing::warn!(%id, "an outcome for an unknown message; ignored");
            return;
        };
        if loaded.message.status != MessageStatus::Sending {
            tracing::warn!(%id, status = %loaded.message.status, "an outcome for a message that is not sending; ignored");
            return;
        }
        match result {
            AttemptResult::Accepted {
                upstream_id,
                status,
                metadata,
                parts,
            } => {
                loaded.message.upstream_id = upstream_id.clone();
                loaded.message.metadata.extend(metadata);
                let deadline = loaded
                    .message
                    .failover
                    .get(loaded.step)
                    .map(|s| s.after_seconds);
                let via = match &upstream_id {
                    Some(u) => format!("accepted by {connector} as {u}"),
                    None => format!("accepted by {connector}"),
                };
                self.dirty.insert(id.to_owned());
                self.change(id, status, now, Some(via));
                let op = match deadline {
                    Some(after) if status == MessageStatus::Sent => {
                        let after = i64::try_from(after).unwrap_or(i64::MAX / 2_000_000);
                        OutboxOp::Schedule {
                            kind: "failover",
                            due: now + after * 1_000_000,
                        }
                    }
                    _ => OutboxOp::Delete,
                };
                self.outbox.insert(id.to_owned(), op);
                if parts.len() > 1 {
                    for (index, part) in parts.iter().enumerate() {
                        let key = (connector.to_owned(), part.clone());
                        self.parts.insert(
                            key.clone(),
                            Part {
                                message_id: id.to_owned(),
                                index: i64::try_from(index).unwrap_or_default(),
                                status: None,
                            },
                        );
                        self.parts_new.push(key);
                    }
                    for part in parts {
                        let Some(early) = self.early.remove(&(connector.to_owned(), part.clone()))
                        else {
                            continue;
                        };
                        for report in early {
                            self.early_done.push(report.seq);
                            if let Ok(status) = report.status.parse::<MessageStatus>() {
                                let error = report
                                    .error_code
                                    .map(|c| (c, report.error_detail.unwrap_or_default()));
                                self.apply_part_report(connector, &part, status, error, report.at);
                            }
                        }
                    }
                } else if let Some(upstream_id) = upstream_id
                    && let Some(early) = self.early.remove(&(connector.to_owned(), upstream_id))
                {
                    for report in early {
                        self.early_done.push(report.seq);
                        if let Ok(status) = report.status.parse::<MessageStatus>() {
                            let error = report
                                .error_code
                                .map(|c| (c, report.error_detail.unwrap_or_default()));
                            self.apply_report(id, status, error, report.at);
                        }
                    }
                }
            }
            AttemptResult::Retry { at, code, detail } => {
                let note = format!(
                    "{code}: {detail}; next attempt at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
                self.change(id, MessageStatus::Queued, now, Some(note));
                self.outbox.insert(
                    id.to_owned(),
                    OutboxOp::Schedule {
                        kind: "send",
                        due: to_micros(at),
                    },
                );
            }
            AttemptResult::Failed { code, detail } => {
                self.fail_or_failover(id, MessageStatus::Failed, &code, &detail, now);
            }
        }
    }

    /// Applies a report's status to a loaded message; whether it changed anything.
    fn apply_report(
        &mut self,
        id: &str,
        status: MessageStatus,
        error: Option<(String, String)>,
        at: i64,
    ) -> bool {
        let Some(loaded) = self.loaded.get(id) else {
            return false;
        };
        if !loaded.message.status.can_become(status) {
            return false;
        }
        match status {
            MessageStatus::Undelivered | MessageStatus::Expired => {
                let (code, detail) = error.unwrap_or_else(|| {
                    (
                        status.as_str().to_owned(),
                        "reported by the far side".to_owned(),
                    )
                });
                self.fail_or_failover(id, status, &code, &detail, at);
            }
            _ => {
                self.change(id, status, at, Some("reported by the far side".into()));
                // Delivered: no failover deadline any more.
                if status == MessageStatus::Delivered || status == MessageStatus::Read {
                    self.outbox.insert(id.to_owned(), OutboxOp::Delete);
                }
            }
        }
        true
    }

    /// Applies a report about one part of a multi-part message: a part that failed
    /// fails the message; the message is delivered (or read) once every part is.
    /// Returns the message id when the part is known.
    fn apply_part_report(
        &mut self,
        connector: &str,
        part_id: &str,
        status: MessageStatus,
        error: Option<(String, String)>,
        at: i64,
    ) -> Option<(String, bool)> {
        let key = (connector.to_owned(), part_id.to_owned());
        let part = self.parts.get_mut(&key)?;
        let message_id = part.message_id.clone();
        if part.status != Some(status) {
            part.status = Some(status);
            self.parts_changed.insert(key);
        }
        let changed = match status {
            MessageStatus::Delivered | MessageStatus::Read => {
                let all = self
                    .parts
                    .values()
                    .filter(|p| p.message_id == message_id)
                    .all(|p| matches!(p.status, Some(s) if s == MessageStatus::Delivered || s == MessageStatus::Read));
                all && self.apply_report(&message_id, status, error, at)
            }
            _ => self.apply_report(&message_id, status, error, at),
        };
        Some((message_id, changed))
    }

    /// Applies a delivery report to the loaded message it names, or keeps it.
    pub fn report(&mut self, report: Report, now: i64) -> ReportOutcome {
        let at = to_micros(report.at).min(now);
        if let Some((id, _)) = self.apply_part_report(
            &report.connector,
            &report.upstream_id,
            report.status,
            report.error.clone(),
            at,
        ) {
            return ReportOutcome::Applied(id);
        }
        let found = self
            .loaded
            .iter()
            .find(|(_, l)| {
                l.message.connector.as_deref() == Some(report.connector.as_str())
                    && l.message.upstream_id.as_deref() == Some(report.upstream_id.as_str())
            })
            .map(|(id, _)| id.clone());
        match found {
            Some(id) => {
                let at = to_micros(report.at).min(now);
                if self.apply_report(&id, report.status, report.error, at) {
                    ReportOutcome::Applied(id)
                } else {
                    ReportOutcome::Ignored(id)
                }
            }
            None => {
                self.early_new.push((report, now));
                ReportOutcome::Kept
            }
        }
    }
}
