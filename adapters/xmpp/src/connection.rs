//! Opening the component stream (XEP-0114): TCP to the server's component port, the
//! stream header in `jabber:component:accept`, and the SHA-1 handshake over the stream
//! id and the secret.
//!
//! tokio-xmpp's `Component` is not used as a whole: its stream ends on a read timeout and
//! on the first stanza its parsers reject, and reconnecting is left to the user anyway.
//! Its XML stream (`xmlstream`) is used instead, reading every stanza as a plain
//! [`Element`] so that bad stanzas are answered rather than fatal.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};

use crate::config::XmppConfig;
use crate::stanza::NS_COMPONENT;

/// An open, authenticated component stream.
pub type ComponentStream = XmlStream<BufStream<TcpStream>, Element>;

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `[xmpp] server` and authenticates as `[xmpp] component`.
pub async fn connect(config: &XmppConfig) -> Result<ComponentStream, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(config))
        .await
        .map_err(|_| format!("no handshake within {CONNECT_TIMEOUT:?}"))?
}

async fn connect_now(config: &XmppConfig) -> Result<ComponentStream, String> {
    let tcp = TcpStream::connect(&config.server)
        .await
        .map_err(|e| format!("connect to {}: {e}", config.server))?;
    let _ = tcp.set_nodelay(true);
    let keepalive = Duration::from_secs(config.keepalive_seconds);
    let timeouts = Timeouts {
        read_timeout: keepalive,
        response_timeout: keepalive,
    };
    let header = StreamHeader {
        from: None,
        to: Some(Cow::Borrowed(config.component.as_str())),
        id: None,
    };
    let mut pending =
        xmlstream::initiate_stream(BufStream::new(tcp), NS_COMPONENT, header, timeouts)
            .await
            .map_err(|e| format!("stream header: {e}"))?;
    let stream_id = pending
        .take_header()
        .id
        .map(Cow::into_owned)
        .ok_or("the server's stream header has no id")?;
    let mut stream: ComponentStream = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    stream
        .send(&handshake)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    loop {
        match stream.next().await {
            Some(Ok(element)) if element.name() == "handshake" => return Ok(stream),
            Some(Ok(element)) if element.name() == "error" => {
                let condition = element
                    .children()
                    .next()
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default();
                return Err(format!("the server refused the handshake: {condition}"));
            }
            Some(Ok(element)) => {
                return Err(format!(
                    "unexpected <{}/> before the handshake",
                    element.name()
                ));
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(e)) => return Err(format!("handshake: {e}")),
            None => return Err("the server closed the stream during the handshake".into()),
        }
    }
}
