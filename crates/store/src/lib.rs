//! Durable storage for Switchboard: one [`Store`] type with SQLite (the embedded
//! default) or PostgreSQL behind it, chosen by the database URL.
//!
//! Reads go straight to a connection pool. Writes go through one writer task that
//! group-commits them: whatever requests are waiting when a transaction starts share
//! it, so concurrent requests pay for one fsync between them instead of one each
//! (DESIGN.md section 4). A write is answered only after its transaction committed.

mod backend;
mod channels;
mod error;
mod listing;
mod rows;
mod script;
mod time;
mod webhooks;
mod work;
mod writer;

pub use backend::Store;
pub use channels::{AttachmentData, Bridge, PresenceRow, StoredNotice};
pub use error::StoreError;
pub use listing::ListQuery;
pub use time::{from_micros, to_micros};
pub use webhooks::{
    AfterAttempt, AttemptRecord, Delivery, DeliveryAttempt, DeliveryState, DueDelivery,
    Subscription,
};
pub use writer::{
    AttemptResult, CancelOutcome, Claim, Claimed, Decide, Dispatch, Handoff, IdempotencyKey,
    InsertOutcome, Intake, NewMessage, Report, ReportOutcome,
};

/// Tuning for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (and, on PostgreSQL, for the writer too).
    pub max_connections: u32,
    /// The most writes one transaction takes.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            max_batch: 512,
        }
    }
}
