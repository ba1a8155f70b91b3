//! XMPP external component (XEP-0114) with presence.
//!
//! The gateway connects to an XMPP server (Prosody, ejabberd) as the component
//! `[xmpp] component`, the way XMPP transports do: every JID of that domain is an
//! address of the gateway (`+14155550100@sms.localhost` is that number, see
//! [`address`]). One connector, `xmpp`, sends outbound messages; one service, `xmpp`,
//! keeps the component stream ([`connection`], [`session`]) and reconnects with backoff
//! and jitter when it breaks. Stanzas are read and written apart from I/O in
//! [`stanza`]; what needs the core (messages, receipts, presence) is in [`inbound`].

pub mod address;
mod config;
mod connection;
mod inbound;
mod session;
pub mod stanza;

pub use crate::config::*;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use switchboard_adapter::{
    Adapter, BoxFuture, ChannelSet, ConnectorState, Core, SendOutcome, Service,
};
use switchboard_model::{Channel, Message, MessageStatus};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;

use crate::address::node_of_address;
use crate::inbound::CONNECTOR;
use crate::session::End;

/// How many stanzas may wait to be written.
const QUEUE: usize = 4096;

/// The adapters and services of this channel for its part of the configuration. Nothing
/// connects here: the service connects when it runs, and keeps connecting while the
/// server is away.
pub fn build(config: &XmppConfig) -> Result<ChannelSet, String> {
    let problems = config.problems();
    if let Some(problem) = problems.first() {
        return Err(format!("{}: {}", problem.key, problem.message));
    }
    let shared = Shared::new(config.clone());
    Ok(ChannelSet {
        adapters: vec![Arc::new(XmppConnector(shared.clone()))],
        services: vec![Arc::new(XmppComponent(shared))],
    })
}

/// A stanza waiting to be written, with whoever waits to know it was.
pub(crate) struct Outgoing {
    element: Element,
    written: Option<oneshot::Sender<bool>>,
}

impl Outgoing {
    fn done(self, written: bool) {
        if let Some(tx) = self.written {
            let _ = tx.send(written);
        }
    }
}

/// What the connector and the service share: the configuration, the connection state
/// and the queue of stanzas to write.
pub(crate) struct Shared {
    config: XmppConfig,
    state: AtomicU8,
    queue: mpsc::Sender<Outgoing>,
    receiver: Mutex<Option<mpsc::Receiver<Outgoing>>>,
}

impl Shared {
    fn new(config: XmppConfig) -> Arc<Shared> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        Arc::new(Shared {
            config,
            state: AtomicU8::new(state_code(ConnectorState::Connecting)),
            queue,
            receiver: Mutex::new(Some(receiver)),
        })
    }

    fn state(&self) -> ConnectorState {
        match self.state.load(Ordering::Relaxed) {
            0 => ConnectorState::Bound,
            1 => ConnectorState::Connecting,
            _ => ConnectorState::Down,
        }
    }

    fn set_state(&self, state: ConnectorState) {
        self.state.store(state_code(state), Ordering::Relaxed);
    }

    /// Queues an answer (a receipt, an error) for the stream; dropped when the stream is
    /// gone before it is written.
    async fn answer(&self, element: Element) {
        let _ = self
            .queue
            .send(Outgoing {
                element,
                written: None,
            })
            .await;
    }

    /// Sends one outbound message: `Sent` once the stanza is written to the stream.
    async fn send(&self, message: &Message) -> SendOutcome {
        if self.state() != ConnectorState::Bound {
            return transient("not-connected", "the component is not connected");
        }
        let component = &self.config.component;
        let to = message.to.strip_prefix("xmpp:").unwrap_or(&message.to);
        let to = match Jid::new(to) {
            Ok(jid) => jid.to_string(),
            Err(e) => {
                return SendOutcome::Permanent {
                    code: "jid-malformed".into(),
                    detail: format!("{to:?}: {e}"),
                };
            }
        };
        let node = message
            .from
            .as_deref()
            .and_then(|from| node_of_address(from, component))
            .unwrap_or_else(|| self.config.default_node.clone());
        let from = format!("{node}@{component}");
        let id = uuid::Uuid::now_v7().simple().to_string();
        let element = stanza::Outbound {
            from: &from,
            to: &to,
            id: &id,
            body: &message.text,
            subject: message.subject.as_deref(),
            thread: message.metadata.get("xmpp.thread").map(String::as_str),
            request_receipt: self.config.request_receipts,
        }
        .to_element();
        let (tx, rx) = oneshot::channel();
        let queued = self
            .queue
            .send(Outgoing {
                element,
                written: Some(tx),
            })
            .await;
        if queued.is_err() || !rx.await.unwrap_or(false) {
            return transient(
                "stream-closed",
                "the component stream closed before the write",
            );
        }
        SendOutcome::Accepted {
            upstream_id: Some(id.clone()),
            status: MessageStatus::Sent,
            metadata: vec![("xmpp.id".into(), id), ("xmpp.from".into(), from)],
            parts: Vec::new(),
        }
    }

    /// Keeps the component stream until the gateway stops.
    async fn run(self: Arc<Self>, core: Core) {
        let taken = self.receiver.lock().map(|mut r| r.take()).ok().flatten();
        let Some(mut outgoing) = taken else {
            tracing::warn!("xmpp: the service was started twice");
            return;
        };
        let mut shutdown = core.shutdown.clone();
        let min = Duration::from_millis(self.config.reconnect_min_ms);
        let max = Duration::from_millis(self.config.reconnect_max_ms);
        let mut backoff = min;
        while !shutdown.is_stopping() {
            self.set_state(ConnectorState::Connecting);
            let connected = tokio::select! {
                _ = shutdown.stopped() => break,
                connected = connection::connect(&self.config) => connected,
            };
            match connected {
                Ok(stream) => {
                    tracing::info!(
                        component = %self.config.component, server = %self.config.server,
                        "xmpp: component connected"
                    );
                    self.set_state(ConnectorState::Bound);
                    backoff = min;
                    let end =
                        session::run(&self, &core, stream, &mut outgoing, &mut shutdown).await;
                    self.set_state(ConnectorState::Down);
                    match end {
                        End::Shutdown => break,
                        End::Broken(why) => {
                            tracing::warn!(server = %self.config.server, %why, "xmpp: component stream lost");
                        }
                    }
                }
                Err(why) => {
                    self.set_state(ConnectorState::Down);
                    tracing::warn!(server = %self.config.server, %why, "xmpp: cannot connect");
                }
            }
            // Nothing is written while away: senders learn it at once and retry later.
            while let Ok(item) = outgoing.try_recv() {
                item.done(false);
            }
            let wait = jitter(backoff);
            tokio::select! {
                _ = shutdown.stopped() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(max);
        }
        self.set_state(ConnectorState::Down);
    }
}

fn state_code(state: ConnectorState) -> u8 {
    match state {
        ConnectorState::Bound => 0,
        ConnectorState::Connecting => 1,
        ConnectorState::Down => 2,
    }
}

/// `wait` ± 25%.
fn jitter(wait: Duration) -> Duration {
    let factor = rand::rng().random_range(0.75..1.25);
    wait.mul_f64(factor)
}

fn transient(code: &str, detail: &str) -> SendOutcome {
    SendOutcome::Transient {
        code: code.into(),
        detail: detail.into(),
        retry_after: None,
    }
}

/// The `xmpp` connector: outbound messages to `xmpp:` addresses.
pub struct XmppConnector(Arc<Shared>);

impl Adapter for XmppConnector {
    fn name(&self) -> &str {
        CONNECTOR
    }

    fn channel(&self) -> Channel {
        Channel::Xmpp
    }

    fn state(&self) -> ConnectorState {
        self.0.state()
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.0.send(message))
    }

    fn concurrency(&self) -> usize {
        self.0.config.concurrency
    }
}

/// The `xmpp` service: the component stream, reconnected while the gateway runs.
pub struct XmppComponent(Arc<Shared>);

impl Service for XmppComponent {
    fn name(&self) -> &str {
        CONNECTOR
    }

    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()> {
        Box::pin(self.0.clone().run(core))
    }
}
