//! Deciding where one message goes (DESIGN.md section 8, "Routing, precisely").

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use serde::Serialize;
use switchboard_model::{Address, Channel, Direction};

use crate::config::ConnectorInfo;
use crate::table::{Action, RouteTable};

/// At most this many rewrites in one decision; one more is a [`FailCode::RewriteLoop`].
pub const MAX_REWRITES: usize = 8;

/// Who owns which addresses (the tenants' `addresses` in the config).
pub trait AddressBook {
    /// The tenant that owns `address`, if one does.
    fn owner(&self, address: &Address) -> Option<&str>;
}

impl<S: BuildHasher> AddressBook for HashMap<Address, String, S> {
    fn owner(&self, address: &Address) -> Option<&str> {
        self.get(address).map(String::as_str)
    }
}

impl AddressBook for BTreeMap<Address, String> {
    fn owner(&self, address: &Address) -> Option<&str> {
        self.get(address).map(String::as_str)
    }
}

/// A message entering the gateway, as far as routing cares.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Outbound: submitted by a tenant (REST, or a carrier over our SMPP server).
    /// Inbound: arrived from outside through a channel.
    pub direction: Direction,
    /// Outbound: the submitting tenant. Inbound: the tenant of the listener or connector
    /// it came in on.
    pub tenant: &'a str,
    /// The sender, when known.
    pub from: Option<&'a Address>,
    /// The destination.
    pub to: &'a Address,
    /// Inbound: the channel it came in on (None for outbound).
    pub arrived_on: Option<Channel>,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave through `connector`, to `to` (maybe rewritten), owned by `tenant`.
    Send {
        /// The connector to send through.
        connector: String,
        /// The destination, after any rewrites.
        to: Address,
        /// The tenant that owns the message.
        tenant: String,
        /// The earlier destinations, in order; empty when nothing was rewritten.
        rewritten_from: Vec<Address>,
        /// The index of the route that chose the connector; None when it was the only
        /// connector of the destination's channel.
        route: Option<usize>,
    },
    /// Keep as `received` for `tenant`.
    Receive {
        /// The tenant that owns `to`.
        tenant: String,
        /// The destination, after any rewrites.
        to: Address,
        /// The earlier destinations, in order; empty when nothing was rewritten.
        rewritten_from: Vec<Address>,
        /// Always None today: a message is received only when no route took it.
        route: Option<usize>,
    },
    /// Inbound on the same channel, to an address nobody owns and no route takes: the
    /// adapter refuses it in the channel's own way (SIP 404, SMTP 550, XMPP
    /// item-not-found) or, for an SMPP `deliver_sm`, keeps it as received for its
    /// connector's tenant.
    Unknown {
        /// The destination as it arrived.
        to: Address,
    },
    /// Cannot be routed; `code` is the error code stored on the message.
    Fail {
        /// The code stored on the message.
        code: FailCode,
        /// Words for a human.
        detail: String,
    },
}

/// Why a message cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailCode {
    /// No route applies and the destination's channel has no single connector.
    NoRoute,
    /// Rewrites came back to an earlier destination, or went on too long.
    RewriteLoop,
}

impl FailCode {
    /// The code as stored in the message's `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::NoRoute => "no_route",
            FailCode::RewriteLoop => "rewrite_loop",
        }
    }
}

impl fmt::Display for FailCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RouteTable {
    /// Decides where `request` goes. `book` says who owns which address.
    ///
    /// Routes are tried in order and the first whose match holds decides; a rewrite
    /// without a connector starts again from the first route with the new destination
    /// (same direction, tenant and sender). When no route holds, the defaults of
    /// DESIGN.md section 8 apply, with one addition: an inbound message whose
    /// destination a route rewrote is sent on through the new destination's channel even
    /// when that is the channel it arrived on, since a route asked for it (the
    /// alternative, refusing it as unknown, would make a same-channel forward impossible).
    pub fn decide(&self, request: &RouteRequest<'_>, book: &dyn AddressBook) -> Decision {
        let mut to = request.to.clone();
        let mut rewritten_from: Vec<Address> = Vec::new();
        loop {
            let Some(route) = self
                .routes
                .iter()
                .find(|route| route.match_().holds(request, &to))
            else {
                return self.by_default(request, book, to, rewritten_from);
            };
            match &route.action {
                Action::Send { connector } => {
                    return Decision::Send {
                        connector: connector.clone(),
                        to,
                        tenant: sending_tenant(request, book).to_owned(),
                        rewritten_from,
                        route: Some(route.index()),
                    };
                }
                Action::RewriteAndSend {
                    to: target,
                    connector,
                } => {
                    rewritten_from.push(to);
                    return Decision::Send {
                        connector: connector.clone(),
                        to: target.clone(),
                        tenant: sending_tenant(request, book).to_owned(),
                        rewritten_from,
                        route: Some(route.index()),
                    };
                }
                Action::Rewrite { to: target } => {
                    let seen = *target == to || rewritten_from.contains(target);
                    if seen || rewritten_from.len() >= MAX_REWRITES {
                        let chain = rewritten_from
                            .iter()
                            .chain([&to, target])
                            .map(Address::as_str)
                            .collect::<Vec<_>>()
                            .join(" -> ");
                        let route = route.index();
                        let detail = if seen {
                            format!("rewrite loop at routes[{route}]: {chain}")
                        } else {
                            format!(
                                "too many rewrites at routes[{route}]: {chain} (at most {MAX_REWRITES})"
                            )
                        };
                        return Decision::Fail {
                            code: FailCode::RewriteLoop,
                            detail,
                        };
                    }
                    rewritten_from.push(std::mem::replace(&mut to, target.clone()));
                }
            }
        }
    }

    /// No route holds for `to`.
    fn by_default(
        &self,
        request: &RouteRequest<'_>,
        book: &dyn AddressBook,
        to: Address,
        rewritten_from: Vec<Address>,
    ) -> Decision {
        if request.direction == Direction::Inbound {
            if let Some(owner) = book.owner(&to) {
                return Decision::Receive {
                    tenant: owner.to_owned(),
                    to,
                    rewritten_from,
                    route: None,
                };
            }
            let bridged = request.arrived_on.is_some_and(|c| c != to.channel());
            if !bridged && rewritten_from.is_empty() {
                return Decision::Unknown { to };
            }
        }
        match self.only_connector(to.channel()) {
            Ok(connector) => Decision::Send {
                connector: connector.name.clone(),
                to,
                tenant: sending_tenant(request, book).to_owned(),
                rewritten_from,
                route: None,
            },
            Err(detail) => Decision::Fail {
                code: FailCode::NoRoute,
                detail,
            },
        }
    }

    /// The only connector of `channel`, or why there is not exactly one.
    fn only_connector(&self, channel: Channel) -> Result<&ConnectorInfo, String> {
        let mut of_channel = self.connectors.iter().filter(|c| c.channel == channel);
        match (of_channel.next(), of_channel.count()) {
            (Some(only), 0) => Ok(only),
            (None, _) => Err(format!("no connector for channel {channel}")),
            (Some(_), others) => Err(format!(
                "{} connectors for channel {channel} and no route chooses",
                others + 1
            )),
        }
    }
}

/// The owner of a message that leaves through a connector: the submitting tenant for
/// outbound; for inbound, the owner of the destination as it arrived, else the tenant of
/// the listener or connector it came in on.
fn sending_tenant<'a>(request: &RouteRequest<'a>, book: &'a dyn AddressBook) -> &'a str {
    match request.direction {
        Direction::Outbound => request.tenant,
        Direction::Inbound => book.owner(request.to).unwrap_or(request.tenant),
    }
}
