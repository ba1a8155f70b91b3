//! The `[email]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use std::net::SocketAddr;
use switchboard_adapter::{ConfigProblem, is_host_port};

/// `[email]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Address and port of the SMTP listener.
    pub listen: SocketAddr,
    /// Domains we accept mail for.
    pub domains: Vec<String>,
    /// The relay for outbound mail: `smtp://host:port` or `smtps://host:port`.
    pub relay: Option<String>,
    /// The owner of traffic entering here for no tenant's address.
    pub tenant: String,
}

impl EmailConfig {
    /// What is wrong in `[email]` beyond what serde checks (the tenant is checked by the
    /// gateway).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(relay) = &self.relay {
            let valid = ["smtp://", "smtps://"]
                .iter()
                .any(|scheme| relay.strip_prefix(scheme).is_some_and(is_host_port));
            if !valid {
                problems.push(ConfigProblem::new(
                    "email.relay",
                    format!("{relay:?} is not smtp://host:port or smtps://host:port"),
                ));
            }
        }
        problems
    }
}
