//! The configuration file (DESIGN.md section 8): serde structs with a doc comment on
//! every key, `SWITCHBOARD_<SECTION>__<KEY>` environment overrides, and a check that
//! reports every problem at once, each with its key.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use switchboard_email::EmailConfig;
use switchboard_model::{Address, Channel};
use switchboard_router::{ConnectorInfo, RouteConfig, RouteConfigError, RouteTable};
use switchboard_sip::SipConfig;
use switchboard_smpp::SmppConfig;
use switchboard_xmpp::XmppConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[http]`: the REST API listener.
    pub http: HttpConfig,
    /// `[database]`: where messages are stored.
    pub database: DatabaseConfig,
    /// `[messages]`: limits on what is accepted.
    pub messages: MessagesConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[dispatch]`: outbound retries and workers.
    pub dispatch: DispatchConfig,
    /// `[webhooks]`: delivery of events to subscribers.
    pub webhooks: WebhooksConfig,
    /// `[[tenants]]`: who may use the API, and which addresses each owns.
    pub tenants: Vec<TenantConfig>,
    /// `[smpp]`: SMPP server accounts and upstream connectors.
    pub smpp: SmppConfig,
    /// `[sip]`: the SIP MESSAGE channel.
    pub sip: Option<SipConfig>,
    /// `[xmpp]`: the XMPP component.
    pub xmpp: Option<XmppConfig>,
    /// `[email]`: the SMTP listener and relay.
    pub email: Option<EmailConfig>,
    /// `[[routes]]`: the ordered route table; the first route that matches decides.
    pub routes: Vec<RouteConfig>,
}

impl Config {
    /// Every connector the router may send through: one per `[[smpp.connectors]]`, and
    /// one for each of the SIP, XMPP and email channels that is configured.
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        let mut connectors: Vec<ConnectorInfo> = self
            .smpp
            .connectors
            .iter()
            .map(|c| ConnectorInfo::new(c.name.clone(), Channel::Sms))
            .collect();
        if self.sip.is_some() {
            connectors.push(ConnectorInfo::new("sip", Channel::Sip));
        }
        if self.xmpp.is_some() {
            connectors.push(ConnectorInfo::new("xmpp", Channel::Xmpp));
        }
        if self.email.as_ref().is_some_and(|e| e.relay.is_some()) {
            connectors.push(ConnectorInfo::new("email", Channel::Email));
        }
        connectors
    }

    /// The route table of this config (already checked by [`load`]).
    pub fn route_table(&self) -> Result<RouteTable, Vec<RouteConfigError>> {
        RouteTable::new(&self.routes, &self.connectors())
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port of the REST API.
    pub listen: SocketAddr,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (embedded) or `postgres://user@host/db`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

/// The embedded default database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchboard-data/switchboard.db";

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: 8,
        }
    }
}

/// `[messages]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Longest `text` accepted, in characters.
    pub max_text_chars: usize,
    /// Validity given to a message that does not ask for one (0: none).
    pub default_validity_seconds: u64,
    /// Longest validity a message may ask for.
    pub max_validity_seconds: u64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            max_text_chars: 4096,
            default_validity_seconds: 0,
            max_validity_seconds: 7 * 24 * 3600,
        }
    }
}

/// `[dispatch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// First retry delay after a transient failure, in milliseconds; it doubles with
    /// every attempt (with ±20% jitter) up to `max_retry_delay_seconds`.
    pub retry_base_ms: u64,
    /// Longest delay between two attempts, in seconds.
    pub max_retry_delay_seconds: u64,
    /// Give up (`failed`) after this many attempts.
    pub max_attempts: u32,
    /// Give up (`failed`) when a message is still not sent this long after it was
    /// accepted, in seconds.
    pub max_age_seconds: u64,
    /// How long a worker holds a message it took before another may take it again,
    /// in seconds (a send that outlives it is retried).
    pub lease_seconds: u64,
    /// Messages taken from the outbox at a time.
    pub batch: u32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            retry_base_ms: 1000,
            max_retry_delay_seconds: 600,
            max_attempts: 20,
            max_age_seconds: 24 * 3600,
            lease_seconds: 60,
            batch: 256,
        }
    }
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Refuse subscription URLs that are (or resolve to) loopback, private, link-local
    /// or other internal addresses: SSRF protection for multi-tenant deployments. Off
    /// by default, so a receiver on the same host works.
    pub refuse_private_targets: bool,
    /// Disable a subscription whose deliveries have all failed for this many hours.
    pub disable_after_hours: u64,
    /// Deliveries in flight at once, over all subscriptions.
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            refuse_private_targets: false,
            disable_after_hours: 72,
            concurrency: 64,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `switchboard=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[[tenants]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name; messages are owned by it.
    pub id: String,
    /// API keys in clear.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// API keys as lower-case hex SHA-256 digests (`switchboard apikey new` prints both).
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    /// Addresses the tenant owns: inbound traffic to them is theirs, and the first one of
    /// a channel is the default `from` on that channel.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Most API requests per second (0: no limit).
    #[serde(default)]
    pub rate_limit_per_second: u32,
    /// Requests allowed in a burst above the rate (default: one second's worth).
    #[serde(default)]
    pub rate_limit_burst: u32,
}

/// One problem in the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `tenants[1].addresses[0]`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Reads the file at `path` (or nothing: the embedded default), applies the environment
/// overrides in `env`, and checks the result.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: path.display().to_string(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?,
        None => EMBEDDED_DEFAULT.to_owned(),
    };
    parse(&text, env)
}

/// The configuration with no file at all (DESIGN.md section 8): SQLite in
/// `./switchboard-data/`, the REST API on 127.0.0.1:8080, and the channel listeners on
/// loopback: SMPP on 2775 (bind with an account added to `[[smpp.server.accounts]]`),
/// SIP on 5060 and SMTP on 2525 for the domain `localhost`, owned by the embedded
/// default tenant.
pub const EMBEDDED_DEFAULT: &str = r#"
[smpp.server]
listen = "127.0.0.1:2775"

[sip]
listen = "127.0.0.1:5060"
domain = "localhost"
tenant = "default"

[email]
listen = "127.0.0.1:2525"
domains = ["localhost"]
tenant = "default"
"#;

/// Parses TOML `text`, applies the environment overrides and checks the result.
pub fn parse(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let key = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!("line {line}")
            })
            .unwrap_or_else(|| "file".to_owned());
        ConfigErrors(vec![ConfigError {
            key,
            message: e.message().to_owned(),
        }])
    })?;
    let mut errors = Vec::new();
    apply_env(&mut root, env, &mut errors);
    let config = read(root, &mut errors);
    check(&config, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Applies `SWITCHBOARD_<SECTION>__<KEY>=value` overrides. Parts are separated by `__`;
/// a numeric part indexes an array (`SWITCHBOARD_TENANTS__0__API_KEYS`). The value is
/// read as TOML when it parses as a TOML value (`8080`, `true`, `["a", "b"]`) and as a
/// string otherwise.
fn apply_env(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut Vec<ConfigError>,
) {
    let mut overrides: Vec<_> = env
        .into_iter()
        .filter_map(|(name, value)| {
            // SWITCHBOARD_CONFIG and SWITCHBOARD_LOG name no key: only SECTION__KEY does.
            let path = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
            path.contains("__").then_some((name, path, value))
        })
        .collect();
    overrides.sort();
    for (name, path, value) in overrides {
        let parts: Vec<&str> = path.split("__").collect();
        if parts.iter().any(|p| p.is_empty()) {
            errors.push(ConfigError {
                key: name,
                message: "expected SWITCHBOARD_<SECTION>__<KEY>".into(),
            });
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        if let Err(message) = set_path(root, &parts, parsed) {
            errors.push(ConfigError { key: name, message });
        }
    }
}

fn set_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) -> Result<(), String> {
    let (first, rest) = parts.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert((*first).to_owned(), value);
        return Ok(());
    }
    let next = table
        .entry((*first).to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(next, rest, value)
}

fn set_in_value(node: &mut toml::Value, parts: &[&str], value: toml::Value) -> Result<(), String> {
    match node {
        toml::Value::Table(table) => set_path(table, parts, value),
        toml::Value::Array(items) => {
            let (index, rest) = parts.split_first().ok_or("empty key")?;
            let index: usize = index
                .parse()
                .map_err(|_| format!("{index:?} is not an index into an array"))?;
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("there is no item {index} to override"))?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_in_value(item, rest, value)
            }
        }
        _ => Err("this key is not a section".to_owned()),
    }
}

/// Deserialises `value` as a `T`, recording an error under `key` when it does not fit.
fn take<T: DeserializeOwned>(
    value: toml::Value,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{path}")
            };
            errors.push(ConfigError {
                key,
                message: e.into_inner().to_string(),
            });
            None
        }
    }
}

/// Each item of the array at `key` (a missing key is an empty array), one by one so a
/// mistake in one does not hide the others.
fn take_items<T: DeserializeOwned>(
    value: Option<toml::Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<T> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| take(item, &format!("{key}[{i}]"), errors))
            .collect(),
        Some(_) => {
            errors.push(ConfigError {
                key: key.to_owned(),
                message: format!("expected an array of tables ([[{key}]])"),
            });
            Vec::new()
        }
    }
}

fn take_table(root: &mut toml::Table, key: &str) -> Option<toml::Value> {
    root.remove(key)
}

fn read(mut root: toml::Table, errors: &mut Vec<ConfigError>) -> Config {
    let mut config = Config::default();
    if let Some(v) = take_table(&mut root, "http") {
        config.http = take(v, "http", errors).unwrap_or_default();
    }
    if let Some(v) = take_table(&mut root, "database") {
        config.database = take(v, "database", errors).unwrap_or_default();
    }
    if let Some(v) = take_table(&mut root, "messages") {
        config.messages = take(v, "messages", errors).unwrap_or_default();
    }
    if let Some(v) = take_table(&mut root, "log") {
        config.log = take(v, "log", errors).unwrap_or_default();
    }
    if let Some(v) = take_table(&mut root, "dispatch") {
        config.dispatch = take(v, "dispatch", errors).unwrap_or_default();
    }
    if let Some(v) = take_table(&mut root, "webhooks") {
        config.webhooks = take(v, "webhooks", errors).unwrap_or_default();
    }
    config.tenants = take_items(take_table(&mut root, "tenants"), "tenants", errors);
    if let Some(mut smpp) = take_table(&mut root, "smpp") {
        let (connectors, accounts) = match &mut smpp {
            toml::Value::Table(t) => {
                let connectors = t.remove("connectors");
                let accounts = match t.get_mut("server") {
                    Some(toml::Value::Table(server)) => server.remove("accounts"),
                    _ => None,
                };
                (connectors, accounts)
            }
            _ => (None, None),
        };
        config.smpp = take(smpp, "smpp", errors).unwrap_or_default();
        config.smpp.connectors = take_items(connectors, "smpp.connectors", errors);
        let accounts = take_items(accounts, "smpp.server.accounts", errors);
        if let Some(server) = &mut config.smpp.server {
            server.accounts = accounts;
        }
    }
    config.sip = take_table(&mut root, "sip").and_then(|v| take(v, "sip", errors));
    config.xmpp = take_table(&mut root, "xmpp").and_then(|v| take(v, "xmpp", errors));
    config.email = take_table(&mut root, "email").and_then(|v| take(v, "email", errors));
    config.routes = take_items(take_table(&mut root, "routes"), "routes", errors);
    for key in root.keys() {
        errors.push(ConfigError {
            key: key.clone(),
            message: "unknown section; expected http, database, messages, log, dispatch, \
                      webhooks, tenants, smpp, sip, xmpp, email or routes"
                .into(),
        });
    }
    config
}

/// Checks what serde cannot: values that must parse, names that must be unique, and
/// references that must resolve.
fn check(config: &Config, errors: &mut Vec<ConfigError>) {
    let mut error = |key: String, message: String| errors.push(ConfigError { key, message });
    let url = &config.database.url;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        error(
            "database.url".into(),
            format!("{url:?} is neither sqlite://... nor postgres://..."),
        );
    }
    if config.http.max_body_bytes < 1024 {
        error("http.max_body_bytes".into(), "must be at least 1024".into());
    }
    if config.messages.max_text_chars == 0 {
        error(
            "messages.max_text_chars".into(),
            "must be at least 1".into(),
        );
    }
    let dispatch = &config.dispatch;
    for (key, bad) in [
        ("dispatch.retry_base_ms", dispatch.retry_base_ms == 0),
        (
            "dispatch.max_retry_delay_seconds",
            dispatch.max_retry_delay_seconds == 0,
        ),
        ("dispatch.max_attempts", dispatch.max_attempts == 0),
        ("dispatch.max_age_seconds", dispatch.max_age_seconds == 0),
        ("dispatch.lease_seconds", dispatch.lease_seconds < 5),
        (
            "dispatch.batch",
            dispatch.batch == 0 || dispatch.batch > 4096,
        ),
        ("webhooks.concurrency", config.webhooks.concurrency == 0),
        (
            "webhooks.disable_after_hours",
            config.webhooks.disable_after_hours == 0,
        ),
    ] {
        if bad {
            error(
                key.into(),
                "out of range; see deploy/switchboard.example.toml".into(),
            );
        }
    }
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        error(
            "log.level".into(),
            format!("{:?} is not a log filter", config.log.level),
        );
    }

    let mut tenant_ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut owned = HashSet::new();
    for (i, tenant) in config.tenants.iter().enumerate() {
        let at = |field: &str| format!("tenants[{i}].{field}");
        let valid_id = !tenant.id.is_empty()
            && tenant.id.len() <= 64
            && tenant
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            error(at("id"), "1 to 64 letters, digits, '-' or '_'".into());
        } else if !tenant_ids.insert(tenant.id.as_str()) {
            error(at("id"), format!("tenant {:?} is defined twice", tenant.id));
        }
        if tenant.api_keys.is_empty() && tenant.api_key_sha256.is_empty() {
            error(at("api_keys"), "a tenant needs at least one API key".into());
        }
        for (k, key) in tenant.api_keys.iter().enumerate() {
            if key.len() < 8 {
                error(
                    at(&format!("api_keys[{k}]")),
                    "an API key needs at least 8 characters".into(),
                );
            } else if !keys.insert(crate::tenants::hash_key(key)) {
                error(
                    at(&format!("api_keys[{k}]")),
                    "this key is used twice".into(),
                );
            }
        }
        for (k, digest) in tenant.api_key_sha256.iter().enumerate() {
            match crate::tenants::parse_digest(digest) {
                Some(d) if !keys.insert(d) => error(
                    at(&format!("api_key_sha256[{k}]")),
                    "this key is used twice".into(),
                ),
                Some(_) => {}
                None => error(
                    at(&format!("api_key_sha256[{k}]")),
                    "expected 64 hexadecimal digits".into(),
                ),
            }
        }
        for (a, address) in tenant.addresses.iter().enumerate() {
            match Address::parse(address) {
                Ok(parsed) => {
                    if !owned.insert(parsed.as_str().to_owned()) {
                        error(
                            at(&format!("addresses[{a}]")),
                            format!("{parsed} is owned by two tenants (or listed twice)"),
                        );
                    }
                }
                Err(e) => error(at(&format!("addresses[{a}]")), e.to_string()),
            }
        }
    }

    let known = |tenant: &str| {
        tenant_ids.contains(tenant)
            || config.tenants.is_empty() && tenant == crate::tenants::DEFAULT_TENANT
    };
    let unknown_tenant = |key: String, tenant: &str| {
        (!known(tenant)).then(|| ConfigError {
            key,
            message: format!("unknown tenant {tenant:?}"),
        })
    };
    if let Some(server) = &config.smpp.server {
        for (i, account) in server.accounts.iter().enumerate() {
            errors.extend(unknown_tenant(
                format!("smpp.server.accounts[{i}].tenant"),
                &account.tenant,
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, connector) in config.smpp.connectors.iter().enumerate() {
        errors.extend(unknown_tenant(
            format!("smpp.connectors[{i}].tenant"),
            &connector.tenant,
        ));
        if connector.name.is_empty() || ["sip", "xmpp", "email"].contains(&connector.name.as_str())
        {
            errors.push(ConfigError {
                key: format!("smpp.connectors[{i}].name"),
                message: "a name other than sip, xmpp and email is needed".into(),
            });
        } else if !names.insert(connector.name.as_str()) {
            errors.push(ConfigError {
                key: format!("smpp.connectors[{i}].name"),
                message: format!("connector {:?} is defined twice", connector.name),
            });
        }
    }
    let mut problems = config.smpp.problems();
    if let Some(sip) = &config.sip {
        errors.extend(unknown_tenant("sip.tenant".into(), &sip.tenant));
        for (i, table) in sip.auth.iter().flat_map(|a| a.tenants.iter()).enumerate() {
            errors.extend(unknown_tenant(
                format!("sip.auth.tenants[{i}].tenant"),
                &table.tenant,
            ));
        }
        problems.extend(sip.problems());
    }
    if let Some(xmpp) = &config.xmpp {
        errors.extend(unknown_tenant("xmpp.tenant".into(), &xmpp.tenant));
        problems.extend(xmpp.problems());
    }
    if let Some(email) = &config.email {
        errors.extend(unknown_tenant("email.tenant".into(), &email.tenant));
        problems.extend(email.problems());
    }
    errors.extend(problems.into_iter().map(|p| ConfigError {
        key: p.key,
        message: p.message,
    }));

    if let Err(problems) = config.route_table() {
        errors.extend(problems.into_iter().map(|p| ConfigError {
            key: p.key,
            message: p.message,
        }));
    }
}

/// The directory the gateway keeps its own files in (the generated API key of the
/// embedded default): next to an SQLite database, else `./switchboard-data`.
pub fn data_dir(config: &Config) -> PathBuf {
    config
        .database
        .url
        .strip_prefix("sqlite://")
        .or_else(|| config.database.url.strip_prefix("sqlite:"))
        .map(|path| path.split('?').next().unwrap_or_default())
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("switchboard-data"))
}
