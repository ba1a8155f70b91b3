//! The `[smpp]` section of the configuration file (DESIGN.md section 8).

use std::net::SocketAddr;

use serde::Deserialize;
use switchboard_adapter::{ConfigProblem, is_host_port};

/// `[smpp]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// `[smpp.server]`: carriers bind to us.
    pub server: Option<SmppServerConfig>,
    /// `[[smpp.connectors]]`: we bind to SMSCs (read one by one, the gateway reads them one by one).
    #[serde(skip)]
    pub connectors: Vec<SmppConnectorConfig>,
}

/// `[smpp.server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppServerConfig {
    /// Address and port of the SMPP listener.
    pub listen: SocketAddr,
    /// `[[smpp.server.accounts]]` (read one by one).
    #[serde(skip)]
    pub accounts: Vec<SmppAccountConfig>,
}

/// `[[smpp.server.accounts]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppAccountConfig {
    /// The ESME's system_id.
    pub system_id: String,
    /// Its password.
    pub password: String,
    /// The tenant its messages belong to.
    pub tenant: String,
}

/// `[[smpp.connectors]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConnectorConfig {
    /// The connector's name, used by routes.
    pub name: String,
    /// The SMSC's host:port.
    pub address: String,
    /// Our system_id at the SMSC.
    pub system_id: String,
    /// Our password at the SMSC.
    pub password: String,
    /// `transmitter`, `receiver` or `transceiver`.
    #[serde(default = "default_bind")]
    pub bind: SmppBind,
    /// The tenant that owns what arrives on this connector.
    pub tenant: String,
}

fn default_bind() -> SmppBind {
    SmppBind::Transceiver
}

/// An SMPP bind type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppBind {
    /// Send only.
    Transmitter,
    /// Receive only.
    Receiver,
    /// Both.
    Transceiver,
}

impl SmppConfig {
    /// What is wrong in `[smpp]` beyond what serde checks (tenants are checked by the
    /// gateway).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(server) = &self.server {
            let mut ids = std::collections::HashSet::new();
            for (i, account) in server.accounts.iter().enumerate() {
                let key = |k: &str| format!("smpp.server.accounts[{i}].{k}");
                if account.system_id.is_empty() || account.system_id.len() > 15 {
                    problems.push(ConfigProblem::new(
                        key("system_id"),
                        "1 to 15 characters (SMPP 3.4 system_id)",
                    ));
                } else if !ids.insert(account.system_id.as_str()) {
                    problems.push(ConfigProblem::new(
                        key("system_id"),
                        format!("system_id {:?} is defined twice", account.system_id),
                    ));
                }
                if account.password.len() > 8 {
                    problems.push(ConfigProblem::new(
                        key("password"),
                        "at most 8 characters (SMPP 3.4 password)",
                    ));
                }
            }
        }
        for (i, connector) in self.connectors.iter().enumerate() {
            if !is_host_port(&connector.address) {
                problems.push(ConfigProblem::new(
                    format!("smpp.connectors[{i}].address"),
                    format!("{:?} is not host:port", connector.address),
                ));
            }
        }
        problems
    }
}
