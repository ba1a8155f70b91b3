//! SIP MESSAGE (RFC 3428) over UDP and TCP.
//!
//! One endpoint ([`endpoint`]) binds UDP and TCP on `[sip] listen` and carries both
//! directions: the `sip` service takes inbound MESSAGEs ([`server`]) and the `sip`
//! connector sends outbound ones ([`client`]). `rsip` reads and writes the wire format
//! ([`wire`]); the non-INVITE transactions (timers E, F, J) are our own
//! ([`transaction`], [`client`]).

mod auth;
mod body;
mod client;
mod config;
mod digest;
mod endpoint;
mod server;
mod transaction;
pub mod wire;

pub use crate::config::*;

use std::sync::Arc;

use switchboard_adapter::{Adapter, BoxFuture, ChannelSet, Core, SendOutcome, Service};
use switchboard_model::{Channel, Message};

use crate::endpoint::Endpoint;

/// The adapters and services of this channel for its part of the configuration. The
/// UDP and TCP sockets are bound here, so a port taken is an error at start.
pub fn build(config: &SipConfig) -> Result<ChannelSet, String> {
    let endpoint = Arc::new(Endpoint::bind(config)?);
    Ok(ChannelSet {
        adapters: vec![Arc::new(SipConnector(endpoint.clone()))],
        services: vec![Arc::new(SipListener(endpoint))],
    })
}

/// The `sip` connector: outbound MESSAGEs.
pub struct SipConnector(Arc<Endpoint>);

impl Adapter for SipConnector {
    fn name(&self) -> &str {
        "sip"
    }

    fn channel(&self) -> Channel {
        Channel::Sip
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(client::send(&self.0, message))
    }

    fn concurrency(&self) -> usize {
        self.0.config.concurrency
    }
}

/// The `sip` service: the UDP and TCP listener for inbound MESSAGEs.
pub struct SipListener(Arc<Endpoint>);

impl Service for SipListener {
    fn name(&self) -> &str {
        "sip"
    }

    fn listening(&self) -> Vec<String> {
        vec![
            format!("udp://{}", self.0.local),
            format!("tcp://{}", self.0.local),
        ]
    }

    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let endpoint = self.0.clone();
            let mut shutdown = core.shutdown.clone();
            if endpoint.core.set(core).is_err() {
                tracing::warn!("sip: the service was started twice");
                return;
            }
            if let Err(e) = endpoint.ensure_udp_loop() {
                tracing::error!(error = %e, "sip: cannot use the UDP socket");
            }
            let tcp = tokio::spawn(endpoint.clone().tcp_loop());
            shutdown.stopped().await;
            endpoint.stop();
            let _ = tcp.await;
        })
    }
}

/// Reads one datagram or framed stream message as the listener does, for fuzzing and
/// tests: never panics, whatever the bytes.
pub fn parse_for_fuzzing(bytes: &[u8]) {
    if let Ok(wire::Incoming::Request(request)) = wire::parse(bytes) {
        let _ = body::decode(request.content_type.as_deref(), &request.body);
        let _ = server::destination(
            &request.uri,
            "gw.example.test",
            std::net::Ipv4Addr::LOCALHOST.into(),
        );
        let _ = transaction::key(&request);
        if let Some(auth) = &request.authorization {
            let _ = digest::Challenge::parse(auth);
        }
    }
    let _ = wire::frame_len(bytes, 65_536);
}
