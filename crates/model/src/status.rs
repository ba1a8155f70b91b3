//! Message statuses (DESIGN.md section 3) and the legal transitions between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a message is in its life. Outbound messages start `queued`; inbound ones are
/// `received` and stay so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Accepted and stored; waiting for its turn (or its `send_at`).
    Queued,
    /// Taken by a connector; the outcome of the attempt is not known yet.
    Sending,
    /// The next hop accepted it (submit_sm_resp OK, SIP 202, XMPP stanza written, SMTP 250).
    Sent,
    /// The far end confirmed it (SMPP receipt DELIVRD, SIP 200, XEP-0184 receipt, DSN success).
    Delivered,
    /// The recipient displayed it, where the channel can tell.
    Read,
    /// The far end reported failure.
    Undelivered,
    /// It never left: a permanent error, no route, or retries exhausted.
    Failed,
    /// Its validity ran out before it was sent or delivered.
    Expired,
    /// Canceled by its tenant while still queued.
    Canceled,
    /// Inbound: received for a tenant.
    Received,
}

/// Every status, in lifecycle order.
pub const ALL_STATUSES: [MessageStatus; 10] = [
    MessageStatus::Queued,
    MessageStatus::Sending,
    MessageStatus::Sent,
    MessageStatus::Delivered,
    MessageStatus::Read,
    MessageStatus::Undelivered,
    MessageStatus::Failed,
    MessageStatus::Expired,
    MessageStatus::Canceled,
    MessageStatus::Received,
];

/// A status change that the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a message cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The status the message has.
    pub from: MessageStatus,
    /// The status that was asked for.
    pub to: MessageStatus,
}

/// A status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl MessageStatus {
    /// The status as it is written in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
            Self::Received => "received",
        }
    }

    /// The name of the event announcing this status: `message.<status>`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Queued => "message.queued",
            Self::Sending => "message.sending",
            Self::Sent => "message.sent",
            Self::Delivered => "message.delivered",
            Self::Read => "message.read",
            Self::Undelivered => "message.undelivered",
            Self::Failed => "message.failed",
            Self::Expired => "message.expired",
            Self::Canceled => "message.canceled",
            Self::Received => "message.received",
        }
    }

    /// No further change is possible, failover aside (see [`MessageStatus::can_become`]).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Failed | Self::Expired | Self::Canceled | Self::Received
        )
    }

    /// Whether the lifecycle allows the move from `self` to `next`.
    ///
    /// Besides the forward path, two moves go back to `queued`: a transient failure of an
    /// attempt (`sending` → `queued`, retried later) and failover to the next step of a
    /// message's plan (`sent`, `undelivered` or `failed` → `queued`). A receipt may skip
    /// `sent` (a SIP 200 is final at once), and `delivered` may be followed by `read`.
    pub fn can_become(self, next: MessageStatus) -> bool {
        use MessageStatus::*;
        match self {
            Queued => matches!(next, Sending | Canceled | Expired | Failed),
            Sending => matches!(
                next,
                Queued | Sent | Delivered | Read | Undelivered | Failed | Expired
            ),
            Sent => matches!(next, Delivered | Read | Undelivered | Expired | Queued),
            Delivered => matches!(next, Read),
            Undelivered => matches!(next, Queued),
            Failed => matches!(next, Queued),
            Read | Expired | Canceled | Received => false,
        }
    }

    /// The move from `self` to `next`, or the error naming both.
    pub fn transition(self, next: MessageStatus) -> Result<MessageStatus, TransitionError> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATUSES
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;
    use super::*;

    #[test]
    fn forward_path_is_legal() {
        let path = [Queued, Sending, Sent, Delivered, Read];
        for pair in path.windows(2) {
            assert_eq!(pair[0].transition(pair[1]), Ok(pair[1]));
        }
    }

    #[test]
    fn illegal_moves_are_errors() {
        let cases = [
            (Queued, Delivered),
            (Queued, Sent),
            (Delivered, Queued),
            (Delivered, Failed),
            (Read, Delivered),
            (Canceled, Queued),
            (Expired, Sending),
            (Received, Sent),
            (Sent, Canceled),
            (Sending, Canceled),
        ];
        for (from, to) in cases {
            let err = from.transition(to).expect_err("must be refused");
            assert_eq!(err, TransitionError { from, to });
            assert_eq!(
                err.to_string(),
                format!("a message cannot go from {from} to {to}")
            );
        }
    }

    #[test]
    fn nothing_leaves_a_final_status_but_failover() {
        for from in ALL_STATUSES.into_iter().filter(|s| s.is_final()) {
            for to in ALL_STATUSES {
                let failover = from == Failed && to == Queued;
                assert_eq!(from.can_become(to), failover, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in ALL_STATUSES {
            assert_eq!(status.as_str().parse::<MessageStatus>(), Ok(status));
            assert_eq!(status.event_type(), format!("message.{status}"));
            let json = serde_json::to_string(&status).expect("serialises");
            assert_eq!(json, format!("\"{status}\""));
        }
        assert!("bogus".parse::<MessageStatus>().is_err());
    }
}
