//! The core's handles for the channel services ([`switchboard_adapter::Core`]):
//! submissions from an SMPP server bind, durable notices for SMPP accounts, presence.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchboard_adapter::{
    BoxFuture, ChangeOutcome, Core, Notice, NoticeKind, Notices, PresenceSink, PresenceUpdate,
    Recipient, Shutdown, Submission, Submit, SubmitOutcome,
};
use switchboard_model::Message;
use switchboard_store::{CancelOutcome, InsertOutcome, NewMessage};
use tokio::sync::Notify;

use crate::api::auth::Caller;
use crate::api::messages::{SendMessage, build_message};
use crate::api::problem::ApiError;
use crate::dispatch::StoreReports;
use crate::ingest::GatewayIngest;
use crate::state::AppState;

/// The handles every channel service gets.
pub fn core(state: &AppState, shutdown: Shutdown) -> Core {
    Core {
        ingest: Arc::new(GatewayIngest(state.clone())),
        reports: Arc::new(StoreReports(state.store.clone())),
        submit: Arc::new(GatewaySubmit(state.clone())),
        notices: Arc::new(GatewayNotices(state.clone())),
        presence: Arc::new(GatewayPresence(state.clone())),
        shutdown,
    }
}

/// Submissions, checked like a `POST /v1/messages` of the same tenant.
pub struct GatewaySubmit(pub AppState);

fn refused(code: &str, detail: impl Into<String>) -> SubmitOutcome {
    SubmitOutcome::Refused {
        code: code.to_owned(),
        detail: detail.into(),
    }
}

impl Submit for GatewaySubmit {
    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<SubmitOutcome, String>> {
        Box::pin(async move {
            let state = &self.0;
            let Some(tenant) = state.tenants.by_id(&submission.tenant) else {
                return Ok(refused(
                    "unknown_tenant",
                    format!("no tenant {:?}", submission.tenant),
                ));
            };
            let now = Utc::now();
            let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
            let validity_seconds = submission.expires_at.map(|at| {
                let start = submission.send_at.unwrap_or(now).max(now);
                u64::try_from((at - start).num_seconds())
                    .unwrap_or(0)
                    .max(1)
            });
            let request = SendMessage {
                to: submission.to,
                text: submission.text,
                from: submission.from,
                channel: None,
                subject: None,
                client_ref: submission.client_ref,
                metadata: Some(submission.metadata),
                send_at: submission.send_at,
                validity_seconds,
                failover: None,
                attachments: None,
            };
            // An SMPP submission has no attachments: nothing to store beside it.
            let message = match build_message(state, &Caller(tenant.clone()), request, now) {
                Ok((message, _)) => message,
                Err(ApiError::Validation(summary, errors)) => {
                    let code = match errors.first().map(|e| e.field.as_str()) {
                        Some("to") | Some("from") => "invalid_address",
                        Some("text") => "invalid_text",
                        _ => "invalid",
                    };
                    return Ok(refused(code, summary));
                }
                Err(other) => return Err(format!("{other:?}")),
            };
            let id = message.id.to_string();
            let channel = message.channel;
            let outcome = state
                .store
                .insert_message(NewMessage {
                    message,
                    enqueue: true,
                    idempotency: None,
                })
                .await
                .map_err(|e| e.to_string())?;
            if outcome != InsertOutcome::Created {
                return Err("the store did not create the message".into());
            }
            state.metrics.message_accepted(channel);
            Ok(SubmitOutcome::Accepted { id })
        })
    }

    fn query<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, String>> {
        Box::pin(async move {
            self.0
                .store
                .get_message(tenant, id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn cancel<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async move {
            let outcome = self
                .0
                .store
                .cancel_message(tenant, id, Some("canceled by cancel_sm".into()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(change_outcome(outcome))
        })
    }

    fn replace<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        text: String,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async move {
            let outcome = self
                .0
                .store
                .replace_text(tenant, id, &text)
                .await
                .map_err(|e| e.to_string())?;
            Ok(change_outcome(outcome))
        })
    }
}

/// A change the store made (or could not make) to a queued message.
fn change_outcome(outcome: CancelOutcome) -> ChangeOutcome {
    match outcome {
        CancelOutcome::Canceled => ChangeOutcome::Done,
        CancelOutcome::NotFound => ChangeOutcome::NotFound,
        CancelOutcome::TooLate(_) => ChangeOutcome::TooLate,
    }
}

/// Notices kept by the store.
pub struct GatewayNotices(pub AppState);

impl Notices for GatewayNotices {
    fn register<'a>(&'a self, recipient: &'a Recipient) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .store
                .register_notice_recipient(&recipient.key, &recipient.tenant)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn take<'a>(
        &'a self,
        recipient: &'a Recipient,
        limit: usize,
        lease: Duration,
        expiry: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notice>, String>> {
        Box::pin(async move {
            let taken = self
                .0
                .store
                .take_notices(&recipient.key, limit, lease, expiry)
                .await
                .map_err(|e| e.to_string())?;
            Ok(taken
                .into_iter()
                .map(|notice| Notice {
                    id: notice.id,
                    kind: if notice.kind == "received" {
                        NoticeKind::Received
                    } else {
                        NoticeKind::Status
                    },
                    message: notice.message,
                })
                .collect())
        })
    }

    fn done<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .store
                .notices_done(ids)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn changed(&self) -> Arc<Notify> {
        self.0.store.changes()
    }
}

/// Presence kept by the store.
pub struct GatewayPresence(pub AppState);

impl PresenceSink for GatewayPresence {
    fn update(&self, update: PresenceUpdate) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .store
                .update_presence(switchboard_store::PresenceRow {
                    tenant: update.tenant,
                    address: update.address,
                    availability: update.availability.as_str().to_owned(),
                    status: update.status,
                    at: update.at,
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
