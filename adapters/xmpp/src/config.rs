//! The `[xmpp]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use switchboard_adapter::{ConfigProblem, is_host_port};

/// `[xmpp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The component's domain.
    pub component: String,
    /// The XMPP server's component port, host:port.
    pub server: String,
    /// The component secret.
    pub secret: String,
    /// The owner of traffic entering here for no tenant's address.
    pub tenant: String,
}

impl XmppConfig {
    /// What is wrong in `[xmpp]` beyond what serde checks (the tenant is checked by the
    /// gateway).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !is_host_port(&self.server) {
            problems.push(ConfigProblem::new(
                "xmpp.server",
                format!("{:?} is not host:port", self.server),
            ));
        }
        problems
    }
}
