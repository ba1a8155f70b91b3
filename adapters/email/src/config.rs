//! The `[email]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
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
    /// Domains where a local part that is an E.164 number (`+14155550100`) means that
    /// phone number. Empty (the default): every domain of `domains`. Domains listed here
    /// are taken even when `domains` leaves them out.
    #[serde(default)]
    pub sms_domains: Vec<String>,
    /// The name we give in the greeting, in EHLO to the relay and in Message-IDs.
    /// Default: the machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The largest message taken (SMTP `SIZE`), in bytes; larger ones get `552`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The most recipients taken per message; more get `452`.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// How long a client may stay silent between commands, in seconds (RFC 5321
    /// section 4.5.3.2 suggests 300).
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
    /// How long a client may stay silent while it sends a message's data, in seconds.
    #[serde(default = "default_data_timeout_secs")]
    pub data_timeout_secs: u64,
    /// How many SMTP connections are served at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// PEM certificate chain for STARTTLS; STARTTLS is offered when this and
    /// `tls_key` are set.
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// When set, clients must authenticate (AUTH PLAIN or LOGIN, only after STARTTLS
    /// when STARTTLS is offered) before MAIL: a submission port.
    #[serde(default)]
    pub auth_users: Vec<EmailUser>,
    /// User name for AUTH at the relay.
    #[serde(default)]
    pub relay_username: Option<String>,
    /// Password for AUTH at the relay.
    #[serde(default)]
    pub relay_password: Option<String>,
    /// STARTTLS towards an `smtp://` relay: `opportunistic` (when offered), `required`
    /// or `never`. An `smtps://` relay is TLS from the first byte whatever this says.
    #[serde(default)]
    pub relay_starttls: StartTlsPolicy,
    /// A PEM file of certificates trusted for the relay in addition to the web PKI
    /// roots (a private relay's CA).
    #[serde(default)]
    pub relay_ca_file: Option<PathBuf>,
    /// How long one exchange with the relay may take, in seconds.
    #[serde(default = "default_relay_timeout_secs")]
    pub relay_timeout_secs: u64,
    /// How many messages are sent to the relay at once (pooled connections).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The display name on outbound mail whose sender is not an email address (an SMS
    /// number). Empty: the number itself.
    #[serde(default)]
    pub from_name: Option<String>,
    /// The sender of outbound mail that has none. Default: `postmaster@<first domain>`.
    #[serde(default)]
    pub default_from: Option<String>,
    /// The subject of outbound mail that has none.
    #[serde(default = "default_subject")]
    pub default_subject: String,
    /// The envelope sender of outbound mail, where bounces (DSNs) go, e.g.
    /// `bounces@mail.example.test` (its domain should be one of `domains`). Each mail
    /// goes out with the VERP form `bounces+<message id>@mail.example.test`, so a bounce
    /// names the message even when it quotes nothing of it. Not set: the envelope
    /// sender is the From address and bounces are matched by Message-ID only.
    #[serde(default)]
    pub return_path: Option<String>,
}

/// One user allowed to submit mail (`email.auth_users`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailUser {
    /// The AUTH user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// STARTTLS towards the relay (`email.relay_starttls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTlsPolicy {
    /// Use STARTTLS when the relay offers it.
    #[default]
    Opportunistic,
    /// Refuse to send unless STARTTLS succeeds.
    Required,
    /// Never use STARTTLS.
    Never,
}

fn default_max_message_bytes() -> usize {
    25 * 1024 * 1024
}

fn default_max_recipients() -> usize {
    100
}

fn default_command_timeout_secs() -> u64 {
    300
}

fn default_data_timeout_secs() -> u64 {
    180
}

fn default_max_connections() -> usize {
    1024
}

fn default_relay_timeout_secs() -> u64 {
    60
}

fn default_concurrency() -> usize {
    16
}

fn default_subject() -> String {
    "Message".to_owned()
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
        if self.domains.is_empty() && self.sms_domains.is_empty() {
            problems.push(ConfigProblem::new(
                "email.domains",
                "at least one domain is needed",
            ));
        }
        for (key, list) in [
            ("email.domains", &self.domains),
            ("email.sms_domains", &self.sms_domains),
        ] {
            for domain in list {
                if domain.is_empty() || domain.contains(['@', ' ', '<', '>']) {
                    problems.push(ConfigProblem::new(
                        key,
                        format!("{domain:?} is not a domain"),
                    ));
                }
            }
        }
        let positive = [
            ("email.max_message_bytes", self.max_message_bytes as u64),
            ("email.max_recipients", self.max_recipients as u64),
            ("email.command_timeout_secs", self.command_timeout_secs),
            ("email.data_timeout_secs", self.data_timeout_secs),
            ("email.max_connections", self.max_connections as u64),
            ("email.relay_timeout_secs", self.relay_timeout_secs),
            ("email.concurrency", self.concurrency as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(ConfigProblem::new(key, "must be more than 0"));
            }
        }
        match (&self.tls_certificate, &self.tls_key) {
            (Some(_), None) => problems.push(ConfigProblem::new(
                "email.tls_key",
                "needed when email.tls_certificate is set",
            )),
            (None, Some(_)) => problems.push(ConfigProblem::new(
                "email.tls_certificate",
                "needed when email.tls_key is set",
            )),
            _ => {}
        }
        if self.relay_username.is_some() != self.relay_password.is_some() {
            problems.push(ConfigProblem::new(
                "email.relay_password",
                "email.relay_username and email.relay_password go together",
            ));
        }
        for (key, value) in [
            ("email.return_path", &self.return_path),
            ("email.default_from", &self.default_from),
        ] {
            if let Some(address) = value
                && !is_mailbox(address)
            {
                problems.push(ConfigProblem::new(
                    key,
                    format!("{address:?} is not an email address"),
                ));
            }
        }
        problems
    }

    /// Timeout between commands.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// Timeout while data arrives.
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs)
    }

    /// The domains where an E.164 local part means a phone number.
    pub fn sms_domains(&self) -> &[String] {
        if self.sms_domains.is_empty() {
            &self.domains
        } else {
            &self.sms_domains
        }
    }

    /// Whether mail for `domain` is taken.
    pub fn is_our_domain(&self, domain: &str) -> bool {
        self.domains
            .iter()
            .chain(&self.sms_domains)
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Our host name: `hostname`, or the machine's.
    pub fn hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| lettre::transport::smtp::extension::ClientId::default().to_string())
    }
}

/// Whether `s` looks like `local@domain`.
fn is_mailbox(s: &str) -> bool {
    s.rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !s.contains([' ', '<', '>'])
}
