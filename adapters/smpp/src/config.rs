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
    /// The largest PDU (command_length) a bind may send; a longer one is refused with
    /// generic_nack ESME_RINVCMDLEN and that session is closed, without allocating it.
    #[serde(default = "default_max_pdu_bytes")]
    pub max_pdu_bytes: u32,
    /// A bind that sends nothing (not even enquire_link) for this long is unbound.
    #[serde(default = "default_inactivity_seconds")]
    pub inactivity_timeout_seconds: u64,
    /// How long the parts of a concatenated submit wait for the missing ones; then the
    /// held parts are answered ESME_RSUBMITFAIL.
    #[serde(default = "default_reassembly_seconds")]
    pub reassembly_timeout_seconds: u64,
    /// How long a deliver_sm waits for its deliver_sm_resp before it is given up and the
    /// notice is handed out again.
    #[serde(default = "default_response_seconds")]
    pub response_timeout_seconds: u64,
}

fn default_max_pdu_bytes() -> u32 {
    65_536
}

fn default_inactivity_seconds() -> u64 {
    120
}

fn default_reassembly_seconds() -> u64 {
    60
}

fn default_response_seconds() -> u64 {
    30
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
    /// Source IP addresses it may bind from (empty: any); others get ESME_RBINDFAIL.
    #[serde(default)]
    pub allowed_ips: Vec<std::net::IpAddr>,
    /// How many binds it may hold at once; one more gets ESME_RBINDFAIL.
    #[serde(default = "default_max_binds")]
    pub max_binds: u32,
    /// Per bind: the most submits we hold unanswered (one more gets ESME_RTHROTTLED), and
    /// the most deliver_sm we send it without a response.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Segments a second the account may submit across its binds; over it a submit gets
    /// ESME_RTHROTTLED. 0: no limit.
    #[serde(default)]
    pub throughput: u32,
    /// Submits in progress (being stored, or parts waiting for the rest of their message)
    /// across its binds; one more gets ESME_RMSGQFUL.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: u32,
    /// How long receipts and inbound messages are kept for it while none of its receiver
    /// binds is up; older ones are dropped.
    #[serde(default = "default_receipt_expiry_seconds")]
    pub receipt_expiry_seconds: u64,
}

fn default_max_binds() -> u32 {
    10
}

fn default_window() -> u32 {
    100
}

fn default_queue_limit() -> u32 {
    10_000
}

fn default_receipt_expiry_seconds() -> u64 {
    72 * 3600
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
                if account.max_binds == 0 {
                    problems.push(ConfigProblem::new(key("max_binds"), "at least 1"));
                }
                if account.window == 0 {
                    problems.push(ConfigProblem::new(key("window"), "at least 1"));
                }
                if account.queue_limit == 0 {
                    problems.push(ConfigProblem::new(key("queue_limit"), "at least 1"));
                }
                if account.receipt_expiry_seconds == 0 {
                    problems.push(ConfigProblem::new(
                        key("receipt_expiry_seconds"),
                        "at least 1",
                    ));
                }
            }
            if !(64..=16_777_216).contains(&server.max_pdu_bytes) {
                problems.push(ConfigProblem::new(
                    "smpp.server.max_pdu_bytes",
                    "from 64 to 16777216",
                ));
            }
            for (k, v) in [
                (
                    "inactivity_timeout_seconds",
                    server.inactivity_timeout_seconds,
                ),
                (
                    "reassembly_timeout_seconds",
                    server.reassembly_timeout_seconds,
                ),
                ("response_timeout_seconds", server.response_timeout_seconds),
            ] {
                if v == 0 {
                    problems.push(ConfigProblem::new(format!("smpp.server.{k}"), "at least 1"));
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
