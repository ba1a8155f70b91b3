//! The one interface between the core and a channel adapter (DESIGN.md section 2).
//!
//! An adapter sends outbound messages with [`Adapter::send`], which reports a typed
//! [`SendOutcome`], and tells the core what the far side later says about them (delivery
//! reports) through the [`Reports`] handle it is given. The core, the router and the
//! dispatcher see only this trait; a channel is one crate in `adapters/` and one line
//! where the gateway registers adapters.

mod core;
mod notices;
mod presence;
mod submit;

pub use crate::core::{ChannelSet, ConfigProblem, Core, Service, Shutdown, is_host_port};
pub use crate::notices::{Notice, NoticeKind, Notices, Recipient};
pub use crate::presence::{Availability, PresenceSink, PresenceUpdate};
pub use crate::submit::{ChangeOutcome, Submission, Submit, SubmitOutcome};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchboard_model::{Channel, Message, MessageStatus};

/// A boxed future, so adapters can be held as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What became of one attempt to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The next hop took it (`sent`), or the far end confirmed it at once (`delivered`,
    /// e.g. a SIP 200 from the user agent).
    Accepted {
        /// The id the far side gave it; delivery reports refer to it.
        upstream_id: Option<String>,
        /// `Sent` or `Delivered`.
        status: MessageStatus,
        /// Channel details worth keeping on the message (a SIP Call-ID, ...).
        metadata: Vec<(String, String)>,
        /// When the message went as several parts, each with its own id (a long SMS):
        /// every part's id in order (`upstream_id` is the first). Reports may name any
        /// part; the message is `delivered` when every part is, `undelivered` as soon as
        /// one part is. Empty for a message that went in one piece.
        parts: Vec<String>,
    },
    /// It did not go now but may later: retried after the delay the adapter asks for,
    /// or the dispatcher's backoff when it asks for none.
    Transient {
        /// The protocol's own code (an SMPP command_status, a SIP status, ...).
        code: String,
        /// Words for a human.
        detail: String,
        /// How long to wait, when the far side said (SIP Retry-After, ...).
        retry_after: Option<Duration>,
    },
    /// It will never go this way: `failed` (or the next failover step).
    Permanent {
        /// The protocol's own code.
        code: String,
        /// Words for a human.
        detail: String,
    },
}

impl SendOutcome {
    /// Sent, with the far side's id.
    pub fn sent(upstream_id: impl Into<String>) -> SendOutcome {
        SendOutcome::Accepted {
            upstream_id: Some(upstream_id.into()),
            status: MessageStatus::Sent,
            metadata: Vec::new(),
            parts: Vec::new(),
        }
    }
}

/// What the far side said later about a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The connector it came through.
    pub connector: String,
    /// The id the far side gave the message when it accepted it.
    pub upstream_id: String,
    /// `Delivered`, `Read`, `Undelivered` or `Expired`.
    pub status: MessageStatus,
    /// For `Undelivered` and `Expired`: the far side's code and words.
    pub error: Option<(String, String)>,
    /// When the far side says it happened.
    pub at: DateTime<Utc>,
}

/// The handle an adapter reports delivery reports through.
pub trait Reports: Send + Sync {
    /// Records a report. It is kept even when it arrives before the send outcome it
    /// refers to was recorded, and applied then.
    fn report(&self, report: StatusReport) -> BoxFuture<'_, Result<(), String>>;
}

/// The state of a connector, as `GET /v1/connectors` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorState {
    /// Connected (bound) and able to send.
    Bound,
    /// Trying to connect.
    Connecting,
    /// Not connected; messages wait in the outbox.
    Down,
}

impl ConnectorState {
    /// `bound`, `connecting` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Bound => "bound",
            ConnectorState::Connecting => "connecting",
            ConnectorState::Down => "down",
        }
    }
}

/// One connector of one channel: what the dispatcher sends through.
pub trait Adapter: Send + Sync {
    /// The connector's name (as routes name it).
    fn name(&self) -> &str;

    /// The channel it carries.
    fn channel(&self) -> Channel;

    /// Whether it can send now. While it cannot, its messages wait in the outbox.
    fn state(&self) -> ConnectorState {
        ConnectorState::Bound
    }

    /// Sends one message (its `to` is already the destination chosen by the router) and
    /// says what became of it. Never panics on the far side's behaviour.
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome>;

    /// Whether this connector carries attachments (email). Only then does the dispatcher
    /// load a message's attachment bytes from the store and call
    /// [`Adapter::send_with_attachments`]; every other connector gets [`Adapter::send`]
    /// and sends the text alone.
    fn carries_attachments(&self) -> bool {
        false
    }

    /// Sends one message with the bytes of its attachments, in the order of
    /// `message.attachments` (one for each). Called instead of [`Adapter::send`] for a
    /// message with attachments through a connector that [carries
    /// them](Adapter::carries_attachments); by default the attachments are left out.
    fn send_with_attachments<'a>(
        &'a self,
        message: &'a Message,
        attachments: &'a [OutboundAttachment],
    ) -> BoxFuture<'a, SendOutcome> {
        let _ = attachments;
        self.send(message)
    }

    /// How many sends the dispatcher may have in flight on this connector at once.
    fn concurrency(&self) -> usize {
        64
    }

    /// At most this many sends a second (None: no limit).
    fn max_per_second(&self) -> Option<u32> {
        None
    }
}

/// A message that arrived from outside through a channel, before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The channel it came in on.
    pub channel: Channel,
    /// The listener or connector it came through (for logs and `metadata.source`).
    pub connector: String,
    /// The tenant of that listener or connector: the owner when no tenant owns `to`.
    pub tenant: String,
    /// The sender, as the channel gives it (normalised by the core).
    pub from: String,
    /// The destination, already translated to the address it means (an XMPP message to
    /// `+14155550100@<component>` is for `+14155550100`).
    pub to: String,
    /// The body.
    pub text: String,
    /// Email or XMPP subject.
    pub subject: Option<String>,
    /// Channel details worth keeping (a SIP Call-ID, an XMPP thread, a Message-ID).
    pub metadata: Vec<(String, String)>,
    /// Keep a message to an address nobody owns as `received` for `tenant` instead of
    /// refusing it (an SMPP `deliver_sm` from an upstream SMSC).
    pub keep_unmatched: bool,
    /// MIME parts that are not the text body (email, CPIM), stored with the message.
    pub attachments: Vec<InboundAttachment>,
}

/// A MIME part of a message that is not its text body, with its bytes: what an inbound
/// message brings in, and what an outbound one takes out through a connector that
/// [carries attachments](Adapter::carries_attachments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAttachment {
    /// The file name, when the sender gave one.
    pub name: Option<String>,
    /// The MIME type.
    pub content_type: String,
    /// The bytes, decoded from their transfer encoding.
    pub data: Vec<u8>,
}

/// An attachment with its bytes, as handed to an adapter for sending (the same shape
/// an inbound attachment arrives in).
pub type OutboundAttachment = InboundAttachment;

/// What the core did with an inbound message. Every outcome but `Refused` and `Unknown`
/// is committed before it is returned, so the adapter may acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored as `received` for its tenant.
    Received {
        /// The message id.
        id: String,
    },
    /// Stored and queued to leave through another channel (a bridge).
    Forwarded {
        /// The message id.
        id: String,
    },
    /// Nobody owns the destination and no route takes it: refuse it in the channel's own
    /// way (SIP 404, SMTP 550, XMPP item-not-found).
    Unknown,
    /// It cannot be taken (an address that does not parse, no route).
    Refused {
        /// Our code (`invalid_address`, `no_route`, ...).
        code: String,
        /// Words for a human.
        detail: String,
    },
}

/// The handle an adapter hands inbound messages to.
pub trait Ingest: Send + Sync {
    /// Routes and stores an inbound message; see [`IngestOutcome`].
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>>;

    /// Whether a message arriving on `channel` through a listener of `tenant` for `to`
    /// (already translated, as in [`Inbound::to`]) would be taken: a tenant owns `to`,
    /// or a route or bridge sends it on. Stores nothing; for refusing early (SMTP at
    /// RCPT, an XMPP `item-not-found`).
    fn accepts(&self, channel: Channel, tenant: &str, to: &str) -> bool;

    /// The tenant a message arriving as in [`accepts`](Ingest::accepts) would belong to:
    /// the owner of `to`, or the tenant a route takes it on for. None when it would not
    /// be taken. For choosing whose credentials to ask for before reading a message.
    fn owner(&self, channel: Channel, tenant: &str, to: &str) -> Option<String> {
        self.accepts(channel, tenant, to).then(|| tenant.to_owned())
    }
}
