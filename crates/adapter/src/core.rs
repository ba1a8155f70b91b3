//! What the core hands a channel when the gateway starts, and what a channel hands the
//! core: the adapters the dispatcher sends through and the services (listeners,
//! connections) that run beside them.

use std::sync::Arc;

use tokio::sync::watch;

use crate::notices::{Notices, Recipient};
use crate::presence::PresenceSink;
use crate::submit::Submit;
use crate::{Adapter, BoxFuture, Ingest, Reports};

/// Says when the gateway is stopping.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Wraps the gateway's stop signal (`true` means stop).
    pub fn new(receiver: watch::Receiver<bool>) -> Shutdown {
        Shutdown(receiver)
    }

    /// A signal that never fires, with the sender that fires it (for tests).
    pub fn pair() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether the gateway is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the gateway starts stopping (at once if it already has).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The core's handles, given to every [`Service`] when it starts.
#[derive(Clone)]
pub struct Core {
    /// Inbound messages from outside (routed, stored, then acknowledged).
    pub ingest: Arc<dyn Ingest>,
    /// Delivery reports for messages a connector sent.
    pub reports: Arc<dyn Reports>,
    /// Messages submitted by a tenant through a channel (an SMPP server bind).
    pub submit: Arc<dyn Submit>,
    /// Durable notices owed to a channel session (receipts and messages for an SMPP
    /// account whose receiver may not be bound).
    pub notices: Arc<dyn Notices>,
    /// Presence of contacts (XMPP).
    pub presence: Arc<dyn PresenceSink>,
    /// Fires when the gateway stops.
    pub shutdown: Shutdown,
}

/// Something a channel runs for as long as the gateway runs: a listener (the SIP, SMTP
/// or SMPP server) or a connection it keeps (an SMPP bind, the XMPP component stream).
pub trait Service: Send + Sync {
    /// A name for logs.
    fn name(&self) -> &str;

    /// Where it listens, as URLs (`udp://127.0.0.1:5060`), once built: the gateway
    /// prints them at start. Services that bind listeners do so when they are built,
    /// so a port taken is an error at start and port 0 resolves before this is asked.
    fn listening(&self) -> Vec<String> {
        Vec::new()
    }

    /// The notice recipients it serves (SMPP accounts). The gateway registers them
    /// before any service runs, so no notice is missed while a service starts.
    fn notice_recipients(&self) -> Vec<Recipient> {
        Vec::new()
    }

    /// Runs until `core.shutdown` fires, then stops taking new work and returns.
    /// Errors of one session or connection are handled (logged, retried) inside.
    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()>;
}

/// What one channel crate contributes, built from its part of the configuration.
#[derive(Default, Clone)]
pub struct ChannelSet {
    /// The connectors the dispatcher sends through.
    pub adapters: Vec<Arc<dyn Adapter>>,
    /// What runs beside them.
    pub services: Vec<Arc<dyn Service>>,
}

impl ChannelSet {
    /// Adds everything of `other`.
    pub fn extend(&mut self, other: ChannelSet) {
        self.adapters.extend(other.adapters);
        self.services.extend(other.services);
    }
}

/// One problem in a channel's part of the configuration, named by its full key
/// (`sip.listen`, `smpp.connectors[0].window`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Whether `s` is `host:port` with a port above 0.
pub fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

impl From<Vec<Arc<dyn Adapter>>> for ChannelSet {
    fn from(adapters: Vec<Arc<dyn Adapter>>) -> ChannelSet {
        ChannelSet {
            adapters,
            services: Vec::new(),
        }
    }
}
