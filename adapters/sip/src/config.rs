//! The `[sip]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use std::net::SocketAddr;
use switchboard_adapter::ConfigProblem;

/// `[sip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Address and port for UDP and TCP.
    pub listen: SocketAddr,
    /// Our SIP domain.
    pub domain: String,
    /// The owner of traffic entering here for no tenant's address.
    pub tenant: String,
}

impl SipConfig {
    /// What is wrong in `[sip]` beyond what serde checks (the tenant is checked by the
    /// gateway).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.domain.is_empty() {
            problems.push(ConfigProblem::new("sip.domain", "a domain is needed"));
        }
        problems
    }
}
