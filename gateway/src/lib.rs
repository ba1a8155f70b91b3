//! The Switchboard gateway: configuration, the REST API and the wiring of the store,
//! the router and the channels.

pub mod api;
pub mod config;
pub mod connectors;
pub mod core;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
pub mod rate;
pub mod state;
pub mod tenants;
pub mod webhooks;

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use switchboard_adapter::ChannelSet;
use switchboard_store::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::api::cursor::CursorKey;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::tenants::Tenants;

/// The name of the file holding the embedded default tenant's API key.
pub const DEFAULT_KEY_FILE: &str = "api-key";

/// Opens the store and builds everything the gateway needs, with the channels of this
/// build (see [`channels`]).
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let channels = channels(&config)?;
    build_state_with(config, channels).await
}

/// The channel adapters and services for the configuration: this is the one place
/// channels are registered. A configured connector without an adapter shows as
/// `not_running` in `GET /v1/connectors`, and its messages wait in the outbox.
pub fn channels(config: &Config) -> anyhow::Result<ChannelSet> {
    let mut set = ChannelSet::default();
    let channel = |name: &str, built: Result<ChannelSet, String>| {
        built.map_err(|e| anyhow::anyhow!("cannot start the {name} channel: {e}"))
    };
    set.extend(channel("SMPP", switchboard_smpp::build(&config.smpp))?);
    if let Some(sip) = &config.sip {
        set.extend(channel("SIP", switchboard_sip::build(sip))?);
    }
    if let Some(xmpp) = &config.xmpp {
        set.extend(channel("XMPP", switchboard_xmpp::build(xmpp))?);
    }
    if let Some(email) = &config.email {
        set.extend(channel("email", switchboard_email::build(email))?);
    }
    Ok(set)
}

/// Like [`build_state`], with the given channels (tests bring their own adapters).
pub async fn build_state_with(
    config: Config,
    channels: impl Into<ChannelSet>,
) -> anyhow::Result<AppState> {
    let ChannelSet { adapters, services } = channels.into();
    let mut connectors = config.connectors();
    for adapter in &adapters {
        if !connectors.iter().any(|c| c.name == adapter.name()) {
            connectors.push(switchboard_router::ConnectorInfo::new(
                adapter.name(),
                adapter.channel(),
            ));
        }
    }
    let routes =
        switchboard_router::RouteTable::new(&config.routes, &connectors).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the route table is not valid: {}", text.join("; "))
        })?;
    let store = Store::open(
        &config.database.url,
        StoreOptions {
            max_connections: config.database.max_connections,
            ..StoreOptions::default()
        },
    )
    .await
    .with_context(|| format!("cannot open the database {}", redact(&config.database.url)))?;
    let key_hex = store
        .setting_or_init("cursor_key", &CursorKey::generate_hex())
        .await
        .context("cannot read the cursor key")?;
    let cursor_key = CursorKey::from_hex(&key_hex).context("the stored cursor key is not valid")?;
    let default_key = if config.tenants.is_empty() {
        Some(default_api_key(&config::data_dir(&config))?)
    } else {
        None
    };
    let tenants = Tenants::from_config(&config, default_key.as_deref());
    Ok(AppState {
        config: Arc::new(config),
        store,
        tenants: Arc::new(tenants),
        cursor_key: Arc::new(cursor_key),
        routes: Arc::new(routes),
        connectors: Arc::new(connectors::Connectors::new(adapters)),
        metrics: Arc::new(Metrics::new()),
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        services: Arc::new(services),
    })
}

/// Runs the gateway (the REST API on `listener`, the dispatcher, the webhook worker)
/// until `shutdown` completes; then stops taking requests, lets the sends in flight
/// finish and record their outcomes, and returns.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let dispatcher = dispatch::spawn(state.clone(), stopping.clone());
    let webhooks = webhooks::spawn_worker(state.clone(), stopping.clone());
    let core = core::core(&state, switchboard_adapter::Shutdown::new(stopping.clone()));
    // Before any listener reads: a message received while a service starts must find
    // the recipients it is owed to.
    for recipient in state.services.iter().flat_map(|s| s.notice_recipients()) {
        if let Err(e) = core.notices.register(&recipient).await {
            tracing::error!(error = %e, recipient = %recipient.key, "cannot register a notice recipient; its service retries");
        }
    }
    let services: Vec<_> = state
        .services
        .iter()
        .map(|service| {
            let name = service.name().to_owned();
            (name, tokio::spawn(service.clone().run(core.clone())))
        })
        .collect();
    let http = axum::serve(listener, api::app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed");
    let _ = stop.send(true);
    if let Err(e) = dispatcher.await {
        tracing::error!(error = %e, "the dispatcher failed");
    }
    if let Err(e) = webhooks.await {
        tracing::error!(error = %e, "the webhook worker failed");
    }
    for (name, service) in services {
        if let Err(e) = service.await {
            tracing::error!(error = %e, service = %name, "a channel service failed");
        }
    }
    http
}

/// The embedded default tenant's API key: read from `dir/api-key`, or made and saved
/// there on the first start.
pub fn default_api_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(DEFAULT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = new_api_key();
    write_private(&path, &format!("{key}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// A new random API key: `sk_` and 32 hex digits.
pub fn new_api_key() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("sk_{}", hex::encode(bytes))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
