//! The router: for a message entering the gateway, decides where it goes (DESIGN.md
//! section 8, "Routing, precisely").
//!
//! Pure: no I/O, no async. The gateway builds a [`RouteTable`] from the `[[routes]]` of
//! its config and the connectors it has ([`RouteTable::new`] reports every problem at
//! once, each with its key), then asks [`RouteTable::decide`] for each message, with an
//! [`AddressBook`] saying which tenant owns which address.
//!
//! ```
//! use std::collections::HashMap;
//! use switchboard_model::{Address, Channel, Direction};
//! use switchboard_router::{ConnectorInfo, Decision, MatchConfig, RouteConfig, RouteRequest, RouteTable};
//!
//! let routes = [RouteConfig {
//!     match_: MatchConfig { to: Some("+1555*".into()), ..MatchConfig::default() },
//!     connector: Some("upstream-a".into()),
//!     ..RouteConfig::default()
//! }];
//! let connectors = [ConnectorInfo::new("upstream-a", Channel::Sms)];
//! let table = RouteTable::new(&routes, &connectors).expect("valid routes");
//!
//! let to = Address::parse("+1 555 0100 123").expect("valid address");
//! let request = RouteRequest {
//!     direction: Direction::Outbound,
//!     tenant: "acme",
//!     from: None,
//!     to: &to,
//!     arrived_on: None,
//! };
//! let book: HashMap<Address, String> = HashMap::new();
//! assert!(matches!(
//!     table.decide(&request, &book),
//!     Decision::Send { connector, route: Some(0), .. } if connector == "upstream-a"
//! ));
//! ```

mod config;
mod decide;
mod glob;
mod table;

pub use config::{ConnectorInfo, MatchConfig, MatchDirection, RouteConfig};
pub use decide::{AddressBook, Decision, FailCode, MAX_REWRITES, RouteRequest};
pub use glob::{Glob, GlobError};
pub use table::{Route, RouteConfigError, RouteMatch, RouteTable};
