//! Durable notices for a channel's own sessions: the delivery receipts and inbound
//! messages an SMPP server owes an account's receiver binds. They are written in the
//! same transaction as the status change or inbound message they announce, so they
//! survive a restart and an account that is not bound gets them when it binds again.

use std::sync::Arc;
use std::time::Duration;

use switchboard_model::Message;
use tokio::sync::Notify;

use crate::BoxFuture;

/// Who notices are for: one SMPP server account (its `system_id`) of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The account's key (`smpp:<system_id>`).
    pub key: String,
    /// The tenant whose messages it is told about.
    pub tenant: String,
}

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A status change of a message the recipient submitted (a delivery receipt):
    /// `delivered`, `undelivered`, `expired`, `failed`, `canceled`, `read`.
    Status,
    /// A message received for the recipient's tenant.
    Received,
}

/// One notice, with the message as it was when the notice was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The notice's id (to mark it done).
    pub id: String,
    /// What it announces.
    pub kind: NoticeKind,
    /// The message.
    pub message: Message,
}

/// The core's handle for notices.
pub trait Notices: Send + Sync {
    /// Registers a recipient (at start, for every configured account): from now on the
    /// core keeps notices for it. Calling it again is harmless.
    fn register<'a>(&'a self, recipient: &'a Recipient) -> BoxFuture<'a, Result<(), String>>;

    /// Takes up to `limit` pending notices for `recipient`, oldest first, leased for
    /// `lease` (a notice not marked done by then is handed out again). Notices older
    /// than `expiry` are dropped instead.
    fn take<'a>(
        &'a self,
        recipient: &'a Recipient,
        limit: usize,
        lease: Duration,
        expiry: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notice>, String>>;

    /// Marks notices as delivered (or not wanted): they are not handed out again.
    fn done<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<(), String>>;

    /// Notified when new notices may be pending.
    fn changed(&self) -> Arc<Notify>;
}
