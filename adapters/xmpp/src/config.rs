//! The `[xmpp]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use switchboard_adapter::{ConfigProblem, is_host_port};
use tokio_xmpp::jid::{BareJid, NodePart};

/// `[xmpp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The component's domain (`sms.localhost`): `+14155550100@<component>` is that
    /// number.
    pub component: String,
    /// The XMPP server's component port, host:port.
    pub server: String,
    /// The component secret (XEP-0114 handshake).
    pub secret: String,
    /// The owner of traffic entering here for no tenant's address.
    pub tenant: String,
    /// The first wait before connecting again after the stream broke, in milliseconds;
    /// it doubles (with ±25% jitter) up to `reconnect_max_ms`. Default 500.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// The longest wait between two connection attempts, in milliseconds. Default 30000.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Seconds of silence on the stream before the component pings itself through the
    /// server; no answer within as long again ends the stream (and it reconnects).
    /// Default 60.
    #[serde(default = "default_keepalive_seconds")]
    pub keepalive_seconds: u64,
    /// Inbound bodies longer than this many characters get a `policy-violation` error.
    /// Default 10000.
    #[serde(default = "default_max_body_chars")]
    pub max_body_chars: usize,
    /// Ask for a XEP-0184 receipt (and mark messages XEP-0333 markable) on outbound
    /// messages. Default true.
    #[serde(default = "default_true")]
    pub request_receipts: bool,
    /// The node outbound messages come from when they have no sender, or one that is
    /// not an address the component can carry. Default `gateway`.
    #[serde(default = "default_node")]
    pub default_node: String,
    /// How many inbound stanzas are processed (stored, then answered) at once; more wait
    /// unread on the stream. Default 256.
    #[serde(default = "default_inbound_window")]
    pub inbound_window: usize,
    /// How many outbound sends the dispatcher may have in flight. Default 256.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_reconnect_min_ms() -> u64 {
    500
}

fn default_reconnect_max_ms() -> u64 {
    30_000
}

fn default_keepalive_seconds() -> u64 {
    60
}

fn default_max_body_chars() -> usize {
    10_000
}

fn default_true() -> bool {
    true
}

fn default_node() -> String {
    "gateway".into()
}

fn default_inbound_window() -> usize {
    256
}

fn default_concurrency() -> usize {
    256
}

impl XmppConfig {
    /// A configuration with the four required keys and every default (for tests).
    pub fn new(component: &str, server: &str, secret: &str, tenant: &str) -> XmppConfig {
        XmppConfig {
            component: component.into(),
            server: server.into(),
            secret: secret.into(),
            tenant: tenant.into(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            keepalive_seconds: default_keepalive_seconds(),
            max_body_chars: default_max_body_chars(),
            request_receipts: true,
            default_node: default_node(),
            inbound_window: default_inbound_window(),
            concurrency: default_concurrency(),
        }
    }

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
        match BareJid::new(&self.component) {
            Ok(jid) if jid.node().is_none() => {}
            _ => problems.push(ConfigProblem::new(
                "xmpp.component",
                format!("{:?} is not a domain name", self.component),
            )),
        }
        if self.secret.is_empty() {
            problems.push(ConfigProblem::new("xmpp.secret", "must not be empty"));
        }
        if self.reconnect_min_ms == 0 {
            problems.push(ConfigProblem::new(
                "xmpp.reconnect_min_ms",
                "must be at least 1",
            ));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            problems.push(ConfigProblem::new(
                "xmpp.reconnect_max_ms",
                "must not be less than xmpp.reconnect_min_ms",
            ));
        }
        if self.keepalive_seconds == 0 {
            problems.push(ConfigProblem::new(
                "xmpp.keepalive_seconds",
                "must be at least 1",
            ));
        }
        if self.max_body_chars == 0 {
            problems.push(ConfigProblem::new(
                "xmpp.max_body_chars",
                "must be at least 1",
            ));
        }
        if NodePart::new(&self.default_node).is_err() {
            problems.push(ConfigProblem::new(
                "xmpp.default_node",
                format!("{:?} is not a JID node", self.default_node),
            ));
        }
        if self.inbound_window == 0 {
            problems.push(ConfigProblem::new(
                "xmpp.inbound_window",
                "must be at least 1",
            ));
        }
        if self.concurrency == 0 {
            problems.push(ConfigProblem::new("xmpp.concurrency", "must be at least 1"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named_by_its_key() {
        let mut config = XmppConfig::new("not a domain", "nohost", "", "acme");
        config.reconnect_min_ms = 0;
        config.default_node = "a@b".into();
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "xmpp.server",
                "xmpp.component",
                "xmpp.secret",
                "xmpp.reconnect_min_ms",
                "xmpp.default_node"
            ]
        );
        let good = XmppConfig::new("sms.localhost", "127.0.0.1:5347", "s", "acme");
        assert!(good.problems().is_empty());
    }
}
