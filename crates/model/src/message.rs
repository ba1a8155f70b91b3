//! The canonical message (DESIGN.md section 3): one shape for every channel.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::address::Channel;
use crate::status::MessageStatus;
use crate::text::Encoding;

/// A message id: a UUIDv7 in its 32-digit hex form, so ids sort by creation time.
/// It is also the `message_id` a carrier gets in `submit_sm_resp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// A new id, later than every id made before it in this process.
    pub fn generate() -> MessageId {
        MessageId(uuid::Uuid::now_v7().simple().to_string())
    }

    /// Wraps an id read back from the store or a request path.
    pub fn from_stored(id: String) -> MessageId {
        MessageId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way a message went, as seen from the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by a tenant (REST API or a carrier's SMPP bind) and leaving through a connector.
    Outbound,
    /// Received for a tenant from outside.
    Inbound,
}

impl Direction {
    /// The name as written in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    /// Parses `outbound` or `inbound`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "outbound" => Some(Direction::Outbound),
            "inbound" => Some(Direction::Inbound),
            _ => None,
        }
    }
}

/// One change of status, kept in the message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEvent {
    /// The status the message took.
    pub status: MessageStatus,
    /// When (RFC 3339).
    pub at: DateTime<Utc>,
    /// Why, when there is more to say (the connector, an error, a retry time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why a message failed or was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorInfo {
    /// A stable code: the protocol's own (an SMPP command_status, a SIP status, an
    /// SMTP reply code, an XMPP condition) or ours (`no_route`, `expired`).
    pub code: String,
    /// Words for a human.
    pub detail: String,
}

/// A MIME part that is not the text body (email, CPIM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    /// The file name, when the sender gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

impl Attachment {
    /// The description of the bytes `data` named `name`, of type `content_type`.
    pub fn of(name: Option<&str>, content_type: &str, data: &[u8]) -> Attachment {
        Attachment {
            name: name.map(str::to_owned),
            content_type: content_type.to_owned(),
            size: u64::try_from(data.len()).unwrap_or(u64::MAX),
        }
    }
}

/// One step of a failover plan: where to try next when the current attempt does not work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailoverStep {
    /// The next destination (normalised).
    pub to: String,
    /// Its channel.
    pub channel: Channel,
    /// Move to this step when the previous one is not delivered within this many seconds.
    pub after_seconds: u64,
}

/// The canonical message, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// Unique, sortable by creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "0193a5b2c4d87e3f9a1b2c3d4e5f6a7b"))]
    pub id: MessageId,
    /// The tenant that owns it.
    pub tenant: String,
    /// `outbound` or `inbound`.
    pub direction: Direction,
    /// The channel of the `to` address.
    pub channel: Channel,
    /// The sender's address (normalised), when known.
    pub from: Option<String>,
    /// The destination address (normalised).
    pub to: String,
    /// The body as UTF-8 text.
    pub text: String,
    /// Email or XMPP subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Parts that are not the text body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The sender's own reference, echoed in every event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// User metadata and channel details worth keeping.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Where the message is in its life.
    pub status: MessageStatus,
    /// The history of statuses, oldest first (shown on a single message, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<StatusEvent>>,
    /// SMS only: the number of parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// SMS only: the data coding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// The connector that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The id the far side gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    /// Why it failed or was not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Where to try next if this destination does not work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<FailoverStep>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Not to be sent before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    /// `expired` if not sent (or delivered) by this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl Message {
    /// A new message with its first event (`status` at `now`), and for SMS the encoding
    /// chosen for its text and the number of parts; nothing else is set (no sender,
    /// subject, metadata, connector or schedule).
    pub fn new(
        tenant: impl Into<String>,
        direction: Direction,
        channel: Channel,
        to: impl Into<String>,
        text: impl Into<String>,
        status: MessageStatus,
        now: DateTime<Utc>,
    ) -> Message {
        let text = text.into();
        let (segments, encoding) = if channel == Channel::Sms {
            let encoding = crate::text::choose_encoding(&text);
            (
                Some(crate::text::segment_count(&text, encoding).segments),
                Some(encoding),
            )
        } else {
            (None, None)
        };
        Message {
            id: MessageId::generate(),
            tenant: tenant.into(),
            direction,
            channel,
            from: None,
            to: to.into(),
            text,
            subject: None,
            attachments: Vec::new(),
            client_ref: None,
            metadata: BTreeMap::new(),
            status,
            events: Some(vec![StatusEvent {
                status,
                at: now,
                detail: None,
            }]),
            segments,
            encoding,
            connector: None,
            upstream_id: None,
            error: None,
            failover: Vec::new(),
            created_at: now,
            updated_at: now,
            send_at: None,
            expires_at: None,
        }
    }
}
