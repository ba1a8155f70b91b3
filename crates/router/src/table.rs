//! The route table in force: the `[[routes]]` of the config, checked against the
//! connectors that exist, with every problem reported at once.

use serde::{Serialize, Serializer};
use switchboard_model::{Address, Channel};

use crate::config::{ConnectorInfo, MatchDirection, RouteConfig};
use crate::decide::RouteRequest;
use crate::glob::Glob;

/// A problem in the route table, naming the key, e.g. key `routes[2].connector`,
/// message `unknown connector "upstream-z"`. Routes are counted from 0, as in
/// `GET /v1/routes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RouteConfigError {
    /// The config key at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// The route table in force. It serializes for `GET /v1/routes` as
/// `{"routes": [...], "connectors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RouteTable {
    pub(crate) routes: Vec<Route>,
    pub(crate) connectors: Vec<ConnectorInfo>,
}

/// One checked route. It serializes as `index`, `name`, `match` (with the direction and
/// any implied channel written out), `connector` and `rewrite_to` (normalised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    index: usize,
    name: Option<String>,
    match_: RouteMatch,
    pub(crate) action: Action,
}

/// When a route applies: every field that is set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteMatch {
    /// A glob on the normalised destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Glob>,
    /// A glob on the normalised sender; does not hold when there is no sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Glob>,
    /// The destination's channel. A route with a `connector` and no `rewrite_to` has its
    /// connector's channel here even when the config left it out: a route never sends an
    /// address through a connector of another channel (`+1555*` also matches the email
    /// address `+15550100@sms.example.test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The request's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The request's direction.
    pub direction: MatchDirection,
}

/// What a route does once its match holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Leave through the connector.
    Send { connector: String },
    /// Change the destination and route again from the top.
    Rewrite { to: Address },
    /// Change the destination and leave through the connector.
    RewriteAndSend { to: Address, connector: String },
}

impl RouteTable {
    /// Checks `routes` against `connectors` and builds the table, or reports every
    /// problem found, each with its key.
    pub fn new(
        routes: &[RouteConfig],
        connectors: &[ConnectorInfo],
    ) -> Result<RouteTable, Vec<RouteConfigError>> {
        let mut errors = Vec::new();
        for (i, connector) in connectors.iter().enumerate() {
            let key = format!("connectors[{i}].name");
            if connector.name.is_empty() {
                errors.push(error(key, "the connector name is empty"));
            } else if connectors[..i].iter().any(|c| c.name == connector.name) {
                errors.push(error(
                    key,
                    format!("duplicate connector name {:?}", connector.name),
                ));
            }
        }
        let mut table = Vec::with_capacity(routes.len());
        for (index, config) in routes.iter().enumerate() {
            if let Some(route) = check_route(index, config, connectors, &mut errors) {
                table.push(route);
            }
            if let Some(name) = &config.name
                && let Some(first) = routes[..index]
                    .iter()
                    .position(|r| r.name.as_ref() == Some(name))
            {
                errors.push(error(
                    format!("routes[{index}].name"),
                    format!("duplicate route name {name:?}, also routes[{first}]"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RouteTable {
            routes: table,
            connectors: connectors.to_vec(),
        })
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The connectors the table was checked against.
    pub fn connectors(&self) -> &[ConnectorInfo] {
        &self.connectors
    }
}

impl Route {
    /// Its position in `[[routes]]`, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its name, if the config gave one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// When it applies.
    pub fn match_(&self) -> &RouteMatch {
        &self.match_
    }

    /// The connector it sends through, if any.
    pub fn connector(&self) -> Option<&str> {
        match &self.action {
            Action::Send { connector } | Action::RewriteAndSend { connector, .. } => {
                Some(connector)
            }
            Action::Rewrite { .. } => None,
        }
    }

    /// The destination it rewrites to, if any.
    pub fn rewrite_to(&self) -> Option<&Address> {
        match &self.action {
            Action::Rewrite { to } | Action::RewriteAndSend { to, .. } => Some(to),
            Action::Send { .. } => None,
        }
    }
}

impl Serialize for Route {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            index: usize,
            name: Option<&'a str>,
            #[serde(rename = "match")]
            match_: &'a RouteMatch,
            connector: Option<&'a str>,
            rewrite_to: Option<&'a str>,
        }
        View {
            index: self.index,
            name: self.name(),
            match_: &self.match_,
            connector: self.connector(),
            rewrite_to: self.rewrite_to().map(Address::as_str),
        }
        .serialize(serializer)
    }
}

impl RouteMatch {
    /// Whether the match holds for `request` with its destination currently `to` (which
    /// differs from `request.to` after a rewrite).
    pub(crate) fn holds(&self, request: &RouteRequest<'_>, to: &Address) -> bool {
        self.direction.holds(request.direction)
            && self.channel.is_none_or(|c| c == to.channel())
            && self.tenant.as_deref().is_none_or(|t| t == request.tenant)
            && self.to.as_ref().is_none_or(|g| g.matches(to.as_str()))
            && self
                .from
                .as_ref()
                .is_none_or(|g| request.from.is_some_and(|from| g.matches(from.as_str())))
    }
}

fn error(key: String, message: impl Into<String>) -> RouteConfigError {
    RouteConfigError {
        key,
        message: message.into(),
    }
}

/// Checks one route, pushing its problems onto `errors`; the route when it has none.
fn check_route(
    index: usize,
    config: &RouteConfig,
    connectors: &[ConnectorInfo],
    errors: &mut Vec<RouteConfigError>,
) -> Option<Route> {
    let before = errors.len();
    let key = |field: &str| format!("routes[{index}].{field}");
    let m = &config.match_;

    let mut glob = |field: &str, pattern: &Option<String>| -> Option<Glob> {
        let pattern = pattern.as_deref()?;
        if let Some(problem) = unnormalised_prefix(pattern) {
            errors.push(error(key(field), problem));
            return None;
        }
        Glob::new(pattern)
            .map_err(|e| errors.push(error(key(field), e.to_string())))
            .ok()
    };
    let to = glob("match.to", &m.to);
    let from = glob("match.from", &m.from);

    if m.tenant.as_deref() == Some("") {
        errors.push(error(key("match.tenant"), "the tenant is empty"));
    }

    let connector = config.connector.as_deref().and_then(|name| {
        let found = connectors.iter().find(|c| c.name == name);
        if found.is_none() {
            errors.push(error(
                key("connector"),
                format!("unknown connector {name:?}"),
            ));
        }
        found
    });

    let rewrite_to = config.rewrite_to.as_deref().and_then(|input| {
        Address::parse(input)
            .map_err(|e| errors.push(error(key("rewrite_to"), e.to_string())))
            .ok()
    });

    if config.connector.is_none() && config.rewrite_to.is_none() {
        errors.push(error(
            format!("routes[{index}]"),
            "the route has neither connector nor rewrite_to: give one or both",
        ));
    }

    // The connector must carry the address it is handed: the rewritten one when there
    // is a rewrite, else the one the match selects.
    if let Some(connector) = connector {
        match (&rewrite_to, m.channel) {
            (Some(target), _) if target.channel() != connector.channel => {
                errors.push(error(
                    key("connector"),
                    format!(
                        "connector {:?} is on channel {} but rewrite_to {:?} is on channel {}",
                        connector.name,
                        connector.channel,
                        target.as_str(),
                        target.channel()
                    ),
                ));
            }
            (None, Some(channel)) if channel != connector.channel => {
                errors.push(error(
                    key("connector"),
                    format!(
                        "connector {:?} is on channel {} but match.channel is {channel}",
                        connector.name, connector.channel
                    ),
                ));
            }
            _ => {}
        }
    }

    if errors.len() > before {
        return None;
    }
    let (action, implied_channel) = match (connector, rewrite_to) {
        (Some(c), None) => (
            Action::Send {
                connector: c.name.clone(),
            },
            Some(c.channel),
        ),
        (None, Some(to)) => (Action::Rewrite { to }, None),
        (Some(c), Some(to)) => (
            Action::RewriteAndSend {
                to,
                connector: c.name.clone(),
            },
            None,
        ),
        // Reported above.
        (None, None) => return None,
    };
    Some(Route {
        index,
        name: config.name.clone(),
        match_: RouteMatch {
            to,
            from,
            channel: m.channel.or(implied_channel),
            tenant: m.tenant.clone(),
            direction: m.direction.unwrap_or_default(),
        },
        action,
    })
}

/// A pattern that starts with a scheme no normalised address has (`mailto:`, `tel:`,
/// `sips:`, or `SIP:` in capitals) can never match: say so rather than let the route
/// silently never apply.
fn unnormalised_prefix(pattern: &str) -> Option<String> {
    let (scheme, _) = pattern.split_once(':')?;
    let lower = scheme.to_ascii_lowercase();
    let written_as = match lower.as_str() {
        "mailto" => "with no mailto: (bob@example.org)",
        "tel" => "as E.164 with no tel: (+14155550100)",
        "sips" => "with sip: (sip:bob@example.org)",
        "sip" | "xmpp" if scheme != lower => "with the scheme in lower case",
        _ => return None,
    };
    Some(format!(
        "{pattern:?} can never match: addresses are matched in their normalised form, written {written_as}"
    ))
}
