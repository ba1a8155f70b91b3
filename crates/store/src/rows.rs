//! Rows as stored, and their conversion to and from the model.

use std::str::FromStr;

use switchboard_model::text::Encoding;
use switchboard_model::{
    Channel, Direction, ErrorInfo, Message, MessageId, MessageStatus, StatusEvent,
};

use crate::StoreError;
use crate::time::from_micros;

/// A `messages` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub id: String,
    pub tenant: String,
    pub direction: String,
    pub channel: String,
    pub from_addr: Option<String>,
    pub to_addr: String,
    pub body: String,
    pub subject: Option<String>,
    pub client_ref: Option<String>,
    pub metadata: String,
    pub attachments: String,
    pub failover: String,
    pub status: String,
    pub segments: Option<i64>,
    pub encoding: Option<String>,
    pub connector: Option<String>,
    pub upstream_id: Option<String>,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub send_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// The failover step the message is on (0: its first destination).
    pub failover_step: i64,
}

/// A `message_events` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub status: String,
    pub at: i64,
    pub detail: Option<String>,
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(what, text))
}

/// Serialises a column stored as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Maps and vectors of plain data always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

impl MessageRow {
    pub fn into_message(self) -> Result<Message, StoreError> {
        let status =
            MessageStatus::from_str(&self.status).map_err(|_| corrupt("status", &self.status))?;
        let direction = Direction::parse(&self.direction)
            .ok_or_else(|| corrupt("direction", &self.direction))?;
        let channel =
            Channel::from_str(&self.channel).map_err(|_| corrupt("channel", &self.channel))?;
        let encoding = match self.encoding {
            Some(e) => Some(Encoding::from_str(&e).map_err(|_| corrupt("encoding", &e))?),
            None => None,
        };
        let error = self.error_code.map(|code| ErrorInfo {
            code,
            detail: self.error_detail.unwrap_or_default(),
        });
        Ok(Message {
            id: MessageId::from_stored(self.id),
            tenant: self.tenant,
            direction,
            channel,
            from: self.from_addr,
            to: self.to_addr,
            text: self.body,
            subject: self.subject,
            attachments: json("attachments", &self.attachments)?,
            client_ref: self.client_ref,
            metadata: json("metadata", &self.metadata)?,
            status,
            events: None,
            segments: self.segments.and_then(|s| u32::try_from(s).ok()),
            encoding,
            connector: self.connector,
            upstream_id: self.upstream_id,
            error,
            failover: json("failover", &self.failover)?,
            created_at: from_micros(self.created_at),
            updated_at: from_micros(self.updated_at),
            send_at: self.send_at.map(from_micros),
            expires_at: self.expires_at.map(from_micros),
        })
    }
}

impl EventRow {
    pub fn into_event(self) -> Result<StatusEvent, StoreError> {
        Ok(StatusEvent {
            status: MessageStatus::from_str(&self.status)
                .map_err(|_| corrupt("event status", &self.status))?,
            at: from_micros(self.at),
            detail: self.detail,
        })
    }
}
