//! The webhook payload `{id, type, created_at, data}` and subscription event filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One webhook event, as POSTed to subscribers: `{id, type, created_at, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event id (`evt_...`); also sent as the `webhook-id` header, and kept on replays.
    pub id: String,
    /// Event type, e.g. `message.delivered`; serialised as `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// The event's subject, e.g. the message resource.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event of type `kind` with a fresh id, created now.
    pub fn new(kind: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            id: new_event_id(),
            kind: kind.into(),
            created_at: Utc::now(),
            data,
        }
    }
}

/// A fresh event id: `evt_` followed by a UUIDv7 in simple (32 hex digit) form, so ids
/// sort by creation time.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// Whether a subscription's event filter selects events of type `kind`.
///
/// Each entry is `*` (everything), an exact type (`message.delivered`), or a prefix
/// wildcard (`message.*`, matching `message.` followed by at least one character).
/// An empty filter matches nothing.
pub fn matches(filter: &[String], kind: &str) -> bool {
    filter.iter().any(|f| {
        f == "*"
            || f == kind
            || f.strip_suffix('*')
                .filter(|prefix| prefix.ends_with('.'))
                .and_then(|prefix| kind.strip_prefix(prefix))
                .is_some_and(|rest| !rest.is_empty())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_with_type() {
        let ev = Event {
            id: "evt_1".into(),
            kind: "message.delivered".into(),
            created_at: DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            data: json!({"id": "msg_1", "status": "delivered"}),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "evt_1",
                "type": "message.delivered",
                "created_at": "2024-05-01T12:00:00Z",
                "data": {"id": "msg_1", "status": "delivered"},
            })
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn event_ids() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
        let hex = a.strip_prefix("evt_").unwrap();
        assert!(
            hex.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let uuid = uuid::Uuid::parse_str(hex).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert!(a < b, "ids sort by creation: {a} {b}");
        let ev = Event::new("message.sent", json!({}));
        assert!(ev.id.starts_with("evt_"));
        assert_eq!(ev.kind, "message.sent");
    }

    #[test]
    fn filters() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&f(&["*"]), "message.delivered"));
        assert!(matches(&f(&["*"]), "presence.changed"));
        assert!(matches(&f(&["message.delivered"]), "message.delivered"));
        assert!(!matches(&f(&["message.delivered"]), "message.failed"));
        assert!(matches(
            &f(&["message.failed", "message.delivered"]),
            "message.delivered"
        ));
        assert!(matches(&f(&["message.*"]), "message.delivered"));
        assert!(matches(&f(&["message.*"]), "message.read"));
        assert!(!matches(&f(&["message.*"]), "presence.changed"));
        assert!(!matches(&f(&["message.*"]), "message."));
        assert!(!matches(&f(&["message.*"]), "message"));
        assert!(!matches(&f(&["message.*"]), "messages.sent"));
        assert!(!matches(&f(&["mess*"]), "message.sent"));
        assert!(!matches(&f(&[]), "message.sent"));
        assert!(!matches(&f(&["Message.delivered"]), "message.delivered"));
    }
}
