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
    /// system_type sent in the bind (empty by default).
    #[serde(default)]
    pub system_type: String,
    /// How many binds (TCP sessions) to keep open to the SMSC.
    #[serde(default = "default_binds")]
    pub binds: u32,
    /// Per bind: the most submit_sm sent without their submit_sm_resp yet.
    #[serde(default = "default_connector_window")]
    pub window: u32,
    /// Segments (submit_sm PDUs) a second across the connector's binds; 0: no limit.
    #[serde(default)]
    pub throughput: u32,
    /// Seconds between enquire_link PDUs on an idle bind.
    #[serde(default = "default_enquire_link_interval")]
    pub enquire_link_interval_seconds: u64,
    /// Seconds to wait for any response (bind, submit_sm, enquire_link) before the PDU
    /// counts as lost; a lost enquire_link closes the bind.
    #[serde(default = "default_connector_response_timeout")]
    pub response_timeout_seconds: u64,
    /// The first delay before reconnecting, in milliseconds; doubled on every failed
    /// attempt up to `reconnect_max_ms`, with ±20% jitter.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// The longest delay between reconnect attempts, in milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// The text coding: `auto` (GSM 7-bit, else Latin-1, else UCS-2, whichever the text
    /// fits), or always `gsm7`, `latin1` or `ucs2`.
    #[serde(default)]
    pub coding: SmppCoding,
    /// Send GSM 7-bit text packed (8 septets in 7 octets) instead of one septet per octet.
    #[serde(default)]
    pub gsm_packed: bool,
    /// How a text too long for one short_message goes: `udh` (concatenated parts with a
    /// user data header), `sar` (parts with the sar_* TLVs) or `payload` (one submit_sm
    /// with the whole text in message_payload).
    #[serde(default)]
    pub long_messages: SmppLongMessages,
    /// The size of the concatenation reference in the UDH: 8 or 16 bits.
    #[serde(default = "default_udh_reference_bits")]
    pub udh_reference_bits: u8,
    /// registered_delivery in every submit_sm (1: a receipt for the final outcome).
    #[serde(default = "default_registered_delivery")]
    pub registered_delivery: u8,
    /// How a message's validity (`validity_seconds` on the API, validity_period from a
    /// carrier) is passed on in validity_period: `relative` (the time left when the part
    /// is sent, `YYMMDDhhmmss000R`, immune to clock and zone differences), `absolute`
    /// (the expiry in UTC, `YYMMDDhhmmsst00+`), or `none` (empty: the SMSC's default).
    #[serde(default)]
    pub validity_period: SmppValidity,
    /// How message ids are compared between submit_sm_resp and receipts: `auto` (case,
    /// blanks and leading zeros ignored), `hex` or `decimal` (both are numbers in that
    /// base), `hex_submit_decimal_receipt`, `decimal_submit_hex_receipt`, or `exact`.
    #[serde(default)]
    pub receipt_id_format: crate::receipt::IdFormat,
    /// command_status values (hex, as `0x00000058`) after which the same part is sent
    /// again on the same bind after a pause; others fail the message.
    #[serde(default = "default_retry_statuses")]
    pub retry_statuses: Vec<String>,
    /// How many times one part is sent again after a `retry_statuses` answer before the
    /// message is handed back to the outbox to be retried later.
    #[serde(default = "default_part_retries")]
    pub part_retries: u32,
    /// The first pause of a bind after ESME_RTHROTTLED (or another retried status), in
    /// milliseconds; doubled on each one in a row, at most 10 s.
    #[serde(default = "default_throttle_pause_ms")]
    pub throttle_pause_ms: u64,
    /// source_addr when a message has no sender.
    #[serde(default)]
    pub default_source: Option<String>,
    /// source_addr_ton; unset: from the address (1 for `+` numbers, 5 for alphanumeric,
    /// else 0).
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// source_addr_npi; unset: 1 for numbers, 0 for alphanumeric.
    #[serde(default)]
    pub source_npi: Option<u8>,
    /// dest_addr_ton; unset: 1 for `+` numbers, else 0.
    #[serde(default)]
    pub destination_ton: Option<u8>,
    /// dest_addr_npi; unset: 1.
    #[serde(default)]
    pub destination_npi: Option<u8>,
    /// The largest PDU (command_length) read from the SMSC; a longer one closes the bind.
    #[serde(default = "default_max_pdu_bytes")]
    pub max_pdu_bytes: u32,
    /// Seconds the parts of an inbound concatenated message wait for the rest; then the
    /// held parts are answered ESME_RX_T_APPN (so the SMSC sends them again).
    #[serde(default = "default_reassembly_seconds")]
    pub reassembly_timeout_seconds: u64,
    /// The most inbound parts held waiting for the rest of their message; one more is
    /// answered ESME_RX_T_APPN.
    #[serde(default = "default_reassembly_parts")]
    pub reassembly_max_parts: u32,
}

fn default_binds() -> u32 {
    1
}

fn default_connector_window() -> u32 {
    10
}

fn default_enquire_link_interval() -> u64 {
    30
}

fn default_connector_response_timeout() -> u64 {
    10
}

fn default_reconnect_min_ms() -> u64 {
    500
}

fn default_reconnect_max_ms() -> u64 {
    60_000
}

fn default_udh_reference_bits() -> u8 {
    8
}

fn default_registered_delivery() -> u8 {
    1
}

fn default_retry_statuses() -> Vec<String> {
    // ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR
    ["0x00000058", "0x00000014", "0x00000008"]
        .map(String::from)
        .to_vec()
}

fn default_part_retries() -> u32 {
    5
}

fn default_throttle_pause_ms() -> u64 {
    200
}

fn default_reassembly_parts() -> u32 {
    10_000
}

/// `[[smpp.connectors]] coding`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppCoding {
    /// GSM 7-bit when the text fits, else Latin-1, else UCS-2.
    #[default]
    Auto,
    /// Always GSM 7-bit (a text that does not fit fails).
    Gsm7,
    /// Always Latin-1 (a text that does not fit fails).
    Latin1,
    /// Always UCS-2.
    Ucs2,
}

/// `[[smpp.connectors]] validity_period`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppValidity {
    /// The time left, in the relative form.
    #[default]
    Relative,
    /// The expiry, in the absolute form in UTC.
    Absolute,
    /// Always empty.
    None,
}

/// `[[smpp.connectors]] long_messages`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppLongMessages {
    /// Concatenated parts with a user data header (esm_class UDHI).
    #[default]
    Udh,
    /// Parts with sar_msg_ref_num, sar_total_segments, sar_segment_seqnum TLVs.
    Sar,
    /// One submit_sm, the whole text in the message_payload TLV.
    Payload,
}

impl SmppConnectorConfig {
    /// The command_status values that are retried on the same bind.
    pub fn retry_status_values(&self) -> Vec<u32> {
        self.retry_statuses
            .iter()
            .filter_map(|s| parse_status(s))
            .collect()
    }
}

/// Reads a command_status written as hex (`0x00000058`) or decimal (`88`).
fn parse_status(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
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
            let key = |k: &str| format!("smpp.connectors[{i}].{k}");
            if !is_host_port(&connector.address) {
                problems.push(ConfigProblem::new(
                    key("address"),
                    format!("{:?} is not host:port", connector.address),
                ));
            }
            if connector.system_id.is_empty() || connector.system_id.len() > 15 {
                problems.push(ConfigProblem::new(
                    key("system_id"),
                    "1 to 15 characters (SMPP 3.4 system_id)",
                ));
            }
            if connector.password.len() > 8 {
                problems.push(ConfigProblem::new(
                    key("password"),
                    "at most 8 characters (SMPP 3.4 password)",
                ));
            }
            if connector.system_type.len() > 12 {
                problems.push(ConfigProblem::new(
                    key("system_type"),
                    "at most 12 characters (SMPP 3.4 system_type)",
                ));
            }
            for (k, v) in [
                ("binds", u64::from(connector.binds)),
                ("window", u64::from(connector.window)),
                (
                    "enquire_link_interval_seconds",
                    connector.enquire_link_interval_seconds,
                ),
                (
                    "response_timeout_seconds",
                    connector.response_timeout_seconds,
                ),
                ("reconnect_min_ms", connector.reconnect_min_ms),
                (
                    "reassembly_timeout_seconds",
                    connector.reassembly_timeout_seconds,
                ),
                (
                    "reassembly_max_parts",
                    u64::from(connector.reassembly_max_parts),
                ),
            ] {
                if v == 0 {
                    problems.push(ConfigProblem::new(key(k), "at least 1"));
                }
            }
            if connector.reconnect_max_ms < connector.reconnect_min_ms {
                problems.push(ConfigProblem::new(
                    key("reconnect_max_ms"),
                    "at least reconnect_min_ms",
                ));
            }
            if !matches!(connector.udh_reference_bits, 8 | 16) {
                problems.push(ConfigProblem::new(key("udh_reference_bits"), "8 or 16"));
            }
            if !(64..=16_777_216).contains(&connector.max_pdu_bytes) {
                problems.push(ConfigProblem::new(
                    key("max_pdu_bytes"),
                    "from 64 to 16777216",
                ));
            }
            for (j, status) in connector.retry_statuses.iter().enumerate() {
                if parse_status(status).is_none() {
                    problems.push(ConfigProblem::new(
                        format!("smpp.connectors[{i}].retry_statuses[{j}]"),
                        format!("{status:?} is not a command_status (0x00000058)"),
                    ));
                }
            }
            if let Some(source) = &connector.default_source
                && (source.is_empty() || source.len() > 20)
            {
                problems.push(ConfigProblem::new(
                    key("default_source"),
                    "1 to 20 characters",
                ));
            }
        }
        problems
    }
}
