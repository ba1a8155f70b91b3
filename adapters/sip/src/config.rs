//! The `[sip]` section of the configuration file (DESIGN.md section 8).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_adapter::{ConfigProblem, is_host_port};

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
    /// Send every outbound MESSAGE to this `host:port` (with a `Route` header for it)
    /// instead of the host of the destination URI.
    #[serde(default)]
    pub outbound_proxy: Option<String>,
    /// Outbound transport: `udp`, `tcp`, or `auto` (UDP unless the request is larger
    /// than 1300 bytes, RFC 3261 section 18.1.1).
    #[serde(default)]
    pub transport: TransportChoice,
    /// The largest body taken or sent, in bytes (over UDP the limit is 1300 bytes
    /// whatever this says, RFC 3428 section 4).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The user name answered to a `401`/`407` challenge on outbound MESSAGEs.
    #[serde(default)]
    pub username: Option<String>,
    /// The password answered to a `401`/`407` challenge on outbound MESSAGEs.
    #[serde(default)]
    pub password: Option<String>,
    /// When set, inbound MESSAGEs must carry digest credentials of one of these users
    /// (RFC 8760 SHA-256 or MD5); others are challenged with `401`.
    #[serde(default)]
    pub auth: Option<SipAuthConfig>,
    /// The `User-Agent` and `Server` header value.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Timer T1 (round-trip estimate) in milliseconds; timer F is 64*T1.
    #[serde(default = "default_t1_ms")]
    pub t1_ms: u64,
    /// Timer T2 (longest retransmit interval) in milliseconds.
    #[serde(default = "default_t2_ms")]
    pub t2_ms: u64,
    /// How many outbound MESSAGE transactions may be open at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// `[sip.auth]`: digest authentication of inbound senders. `users` guard every MESSAGE
/// whose tenant has no table of its own in `tenants`; with no `users`, only the tenants
/// listed are guarded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipAuthConfig {
    /// The realm named in challenges (the domain when not set).
    #[serde(default)]
    pub realm: Option<String>,
    /// Who may send to a tenant without a table of its own.
    #[serde(default)]
    pub users: Vec<SipUser>,
    /// The digest algorithms offered in a `401`, in order of preference: `SHA-256`,
    /// `MD5` (one `WWW-Authenticate` each). Some clients read only the first.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// `[[sip.auth.tenants]]`: a realm and users of one tenant, for MESSAGEs to the
    /// addresses it owns (or that a route takes on its behalf).
    #[serde(default)]
    pub tenants: Vec<SipTenantAuth>,
}

/// `[[sip.auth.tenants]]`: who may send to one tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTenantAuth {
    /// The tenant id.
    pub tenant: String,
    /// The realm of its challenges (`<tenant>@<domain>` when not set).
    #[serde(default)]
    pub realm: Option<String>,
    /// Who may send to it.
    pub users: Vec<SipUser>,
    /// The algorithms offered (those of `[sip.auth]` when not set).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

impl SipAuthConfig {
    /// The realm of the challenges for tenants without a table of their own.
    pub fn realm_or(&self, domain: &str) -> String {
        self.realm.clone().unwrap_or_else(|| domain.to_owned())
    }
}

impl SipTenantAuth {
    /// The realm of this tenant's challenges.
    pub fn realm_or(&self, domain: &str) -> String {
        self.realm
            .clone()
            .unwrap_or_else(|| format!("{}@{domain}", self.tenant))
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".to_owned(), "MD5".to_owned()]
}

/// One inbound sender's credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipUser {
    /// The digest user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Outbound transport selection (`sip.transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// UDP unless the request is larger than 1300 bytes, then TCP.
    #[default]
    Auto,
    /// Always UDP (larger requests fail with `413`).
    Udp,
    /// Always TCP.
    Tcp,
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}

fn default_user_agent() -> String {
    format!("Switchboard/{}", env!("CARGO_PKG_VERSION"))
}

fn default_t1_ms() -> u64 {
    500
}

fn default_t2_ms() -> u64 {
    4000
}

fn default_concurrency() -> usize {
    256
}

/// What is wrong in `[sip.auth]`.
fn auth_problems(auth: &SipAuthConfig, domain: &str, problems: &mut Vec<ConfigProblem>) {
    if auth.realm.as_deref() == Some("") {
        problems.push(ConfigProblem::new(
            "sip.auth.realm",
            "leave it out to use the domain",
        ));
    }
    if auth.users.is_empty() && auth.tenants.is_empty() {
        problems.push(ConfigProblem::new(
            "sip.auth.users",
            "at least one user is needed (here or in [[sip.auth.tenants]])",
        ));
    }
    algorithm_problems("sip.auth.algorithms", &auth.algorithms, problems);
    user_problems("sip.auth.users", &auth.users, problems);
    let mut realms = vec![auth.realm_or(domain)];
    for (i, table) in auth.tenants.iter().enumerate() {
        let key = format!("sip.auth.tenants[{i}]");
        if auth.tenants[..i].iter().any(|t| t.tenant == table.tenant) {
            problems.push(ConfigProblem::new(
                format!("{key}.tenant"),
                format!("tenant {:?} has a table already", table.tenant),
            ));
        }
        let realm = table.realm_or(domain);
        if realm.is_empty() {
            problems.push(ConfigProblem::new(
                format!("{key}.realm"),
                "leave it out to use <tenant>@<domain>",
            ));
        } else if realms.contains(&realm) {
            problems.push(ConfigProblem::new(
                format!("{key}.realm"),
                format!("realm {realm:?} is used already: a sender could not tell which credentials to answer with"),
            ));
        }
        realms.push(realm);
        if table.users.is_empty() {
            problems.push(ConfigProblem::new(
                format!("{key}.users"),
                "at least one user is needed",
            ));
        }
        user_problems(&format!("{key}.users"), &table.users, problems);
        if let Some(algorithms) = &table.algorithms {
            algorithm_problems(&format!("{key}.algorithms"), algorithms, problems);
        }
    }
}

fn algorithm_problems(key: &str, algorithms: &[String], problems: &mut Vec<ConfigProblem>) {
    if algorithms.is_empty() {
        problems.push(ConfigProblem::new(
            key,
            "at least one of SHA-256 and MD5 is needed",
        ));
    }
    for (i, algorithm) in algorithms.iter().enumerate() {
        if !["SHA-256", "MD5"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(algorithm))
        {
            problems.push(ConfigProblem::new(
                format!("{key}[{i}]"),
                "expected SHA-256 or MD5",
            ));
        }
    }
}

fn user_problems(key: &str, users: &[SipUser], problems: &mut Vec<ConfigProblem>) {
    for (i, user) in users.iter().enumerate() {
        if user.username.is_empty() {
            problems.push(ConfigProblem::new(
                format!("{key}[{i}].username"),
                "a user name is needed",
            ));
        }
    }
}

impl SipConfig {
    /// Timer T1.
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }

    /// Timer T2.
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }

    /// What is wrong in `[sip]` beyond what serde checks (the tenant is checked by the
    /// gateway).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.domain.is_empty() {
            problems.push(ConfigProblem::new("sip.domain", "a domain is needed"));
        }
        if let Some(proxy) = &self.outbound_proxy
            && !is_host_port(proxy)
        {
            problems.push(ConfigProblem::new(
                "sip.outbound_proxy",
                "expected host:port, e.g. 127.0.0.1:5060",
            ));
        }
        if self.max_body_bytes == 0 {
            problems.push(ConfigProblem::new(
                "sip.max_body_bytes",
                "must be at least 1",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            let key = if self.username.is_some() {
                "sip.password"
            } else {
                "sip.username"
            };
            problems.push(ConfigProblem::new(
                key,
                "sip.username and sip.password go together",
            ));
        }
        if let Some(auth) = &self.auth {
            auth_problems(auth, &self.domain, &mut problems);
        }
        if self.t1_ms == 0 {
            problems.push(ConfigProblem::new("sip.t1_ms", "must be at least 1"));
        }
        if self.t2_ms < self.t1_ms {
            problems.push(ConfigProblem::new(
                "sip.t2_ms",
                "must be at least sip.t1_ms",
            ));
        }
        if self.concurrency == 0 {
            problems.push(ConfigProblem::new("sip.concurrency", "must be at least 1"));
        }
        if self.user_agent.chars().any(|c| c.is_control()) {
            problems.push(ConfigProblem::new(
                "sip.user_agent",
                "control characters are not allowed",
            ));
        }
        problems
    }
}
