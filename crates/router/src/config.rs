//! The `[[routes]]` section of the config file, as written (DESIGN.md section 8), and the
//! connectors the gateway offers the router.

use serde::{Deserialize, Serialize};
use switchboard_model::{Channel, Direction};

/// One `[[routes]]` entry of the config file, as written. [`RouteTable::new`] checks it.
///
/// [`RouteTable::new`]: crate::RouteTable::new
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// When the route applies: every key it sets must hold. Left out, the route holds
    /// for every outbound message.
    #[serde(rename = "match", default)]
    pub match_: MatchConfig,
    /// Leave through this connector (an SMPP connector's name, or `sip`, `xmpp`, `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Replace the destination with this address. Alone, the message is routed again
    /// from the first route (the new address may be on another channel); with
    /// `connector`, it leaves through that connector without routing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_to: Option<String>,
    /// A name for logs and `GET /v1/routes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The `match` of a route. Globs match the normalised address (`+14155550100`,
/// `sip:bob@example.org`, `xmpp:bob@example.org`, `bob@example.org`): `*` is any run of
/// characters, `?` one character, and matching is case-sensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// A glob on the destination address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A glob on the sender address; it does not hold for a message without a sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The channel of the destination address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The tenant that submitted the message (outbound) or owns the listener or
    /// connector it arrived on (inbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Which messages the route applies to; `outbound` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<MatchDirection>,
}

/// Which way a message must be going for a route to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchDirection {
    /// Submitted by a tenant (the default).
    #[default]
    Outbound,
    /// Arrived from outside through a channel.
    Inbound,
    /// Both.
    Any,
}

impl MatchDirection {
    /// Whether a message going `direction` passes.
    pub fn holds(self, direction: Direction) -> bool {
        match self {
            MatchDirection::Outbound => direction == Direction::Outbound,
            MatchDirection::Inbound => direction == Direction::Inbound,
            MatchDirection::Any => true,
        }
    }

    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchDirection::Outbound => "outbound",
            MatchDirection::Inbound => "inbound",
            MatchDirection::Any => "any",
        }
    }
}

/// A connector the router may send through: its name and channel. The gateway builds
/// the list from the config: SMPP connectors by name; the SIP, XMPP and email channels
/// each have one connector, named `sip`, `xmpp` and `email`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// The name routes refer to.
    pub name: String,
    /// The channel of the addresses it carries.
    pub channel: Channel,
}

impl ConnectorInfo {
    /// A connector named `name` on `channel`.
    pub fn new(name: impl Into<String>, channel: Channel) -> ConnectorInfo {
        ConnectorInfo {
            name: name.into(),
            channel,
        }
    }
}
