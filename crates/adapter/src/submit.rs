//! Messages a tenant submits through a channel rather than the REST API: a carrier's
//! `submit_sm` on an SMPP server bind. They are outbound messages like a
//! `POST /v1/messages`, routed and stored before the channel acknowledges them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use switchboard_model::Message;

use crate::BoxFuture;

/// One message submitted by a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submission {
    /// The tenant (an SMPP account's `tenant`).
    pub tenant: String,
    /// The sender as given (normalised by the core).
    pub from: Option<String>,
    /// The destination as given (normalised by the core).
    pub to: String,
    /// The text (already decoded from the channel's encoding, reassembled).
    pub text: String,
    /// The submitter's own reference, echoed in events.
    pub client_ref: Option<String>,
    /// Channel details kept on the message: for SMPP `smpp.system_id` and
    /// `smpp.registered_delivery`, so receipts go back to the right account.
    pub metadata: BTreeMap<String, String>,
    /// Send no earlier than this.
    pub send_at: Option<DateTime<Utc>>,
    /// Give up (`expired`) after this.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What became of a submission. `Accepted` is committed before it is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Stored and queued; the id is the message's API id.
    Accepted {
        /// The message id (the SMPP `message_id`).
        id: String,
    },
    /// Not taken.
    Refused {
        /// Our code: `invalid_address`, `text_too_long`, `rate_limited`, ...
        code: String,
        /// Words for a human.
        detail: String,
    },
}

/// What a change to a stored message (`cancel_sm`, `replace_sm`) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done.
    Done,
    /// No such message for this tenant.
    NotFound,
    /// The message has already left (or ended); it cannot be changed.
    TooLate,
}

/// The core's handle for submissions.
pub trait Submit: Send + Sync {
    /// Routes and stores an outbound message for `submission.tenant`.
    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<SubmitOutcome, String>>;

    /// The tenant's message `id` (`query_sm`).
    fn query<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, String>>;

    /// Cancels the tenant's message `id` while it has not left (`cancel_sm`).
    fn cancel<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>>;

    /// Replaces the text of the tenant's message `id` while it has not left
    /// (`replace_sm`).
    fn replace<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
        text: String,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>>;
}
