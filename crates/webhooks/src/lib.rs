//! Webhook delivery for Switchboard: the pure parts plus the HTTP sender.
//!
//! Implements DESIGN.md section 6 ("Webhooks (contract)"):
//!
//! - [`secret`]: `whsec_...` signing secrets;
//! - [`signature`]: Standard Webhooks signing and verification
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
//! - [`schedule`]: the retry schedule (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, then
//!   every 4 h up to 48 h, each with ±20% jitter);
//! - [`payload`]: the event envelope `{id, type, created_at, data}` and subscription filters;
//! - [`target`]: URL validation and SSRF protection;
//! - [`sender`]: the HTTP(S) sender that performs one delivery attempt.
//!
//! Storage of subscriptions and attempts and the worker loop live elsewhere.

#![warn(missing_docs)]

pub mod payload;
pub mod schedule;
pub mod secret;
pub mod sender;
pub mod signature;
pub mod target;

pub use payload::{Event, matches, new_event_id};
pub use schedule::{DELIVERY_TIMEOUT, GIVE_UP_AFTER, next_delay, next_delay_random};
pub use secret::{Secret, SecretError};
pub use sender::{Attempt, Outcome, Sender};
pub use signature::{VerifyError, headers, sign, verify};
pub use target::{Target, TargetError, check_target, parse_url};
