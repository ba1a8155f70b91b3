//! Presence of contacts, as a channel that has it (XMPP) reports it. The core keeps the
//! last presence of each contact, serves it at `GET /v1/presence/{address}` and
//! announces changes as `presence.changed` webhook events.

use chrono::{DateTime, Utc};

use crate::BoxFuture;

/// Availability, in XMPP's words (RFC 6121 `<show/>`, plus `available` and
/// `unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Online.
    Available,
    /// Temporarily away.
    Away,
    /// Busy: do not disturb.
    Dnd,
    /// Away for an extended period.
    Xa,
    /// Offline.
    Unavailable,
}

impl Availability {
    /// `available`, `away`, `dnd`, `xa` or `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Away => "away",
            Availability::Dnd => "dnd",
            Availability::Xa => "xa",
            Availability::Unavailable => "unavailable",
        }
    }

    /// Parses the name given by [`Availability::as_str`].
    pub fn parse(s: &str) -> Option<Availability> {
        Some(match s {
            "available" => Availability::Available,
            "away" => Availability::Away,
            "dnd" => Availability::Dnd,
            "xa" => Availability::Xa,
            "unavailable" => Availability::Unavailable,
            _ => return None,
        })
    }
}

/// A contact's new presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// The tenant it is kept for.
    pub tenant: String,
    /// The contact (a normalised address, e.g. `xmpp:alice@localhost`).
    pub address: String,
    /// Their availability.
    pub availability: Availability,
    /// Their status note, if any.
    pub status: Option<String>,
    /// When it changed.
    pub at: DateTime<Utc>,
}

/// The core's handle for presence.
pub trait PresenceSink: Send + Sync {
    /// Keeps the contact's presence; when it changed, emits `presence.changed`.
    fn update(&self, update: PresenceUpdate) -> BoxFuture<'_, Result<(), String>>;
}
