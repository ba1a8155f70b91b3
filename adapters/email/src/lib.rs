//! Email: an inbound SMTP listener and an outbound relay.
//!
//! The `email` service ([`listener`]) takes mail for `[email] domains` over ESMTP
//! (SIZE, 8BITMIME, PIPELINING, SMTPUTF8, STARTTLS, optional AUTH): each session
//! ([`session`]) parses commands with `smtp-proto`, asks the core at `RCPT` whether it
//! takes the recipient ([`deliver`]), reads the mail with `mail-parser` ([`mime`]) and
//! answers `250` only after the core committed it. Delivery status notifications to the
//! return path ([`dsn`]) become delivery reports. The `email` connector ([`relay`])
//! sends outbound mail through `[email] relay` with `lettre`.

mod config;
pub mod deliver;
pub mod dsn;
pub mod listener;
pub mod mime;
pub mod relay;
pub mod session;
mod tls;

pub use crate::config::*;

use std::sync::Arc;

use switchboard_adapter::{Adapter, ChannelSet, Service};

/// The adapters and services of this channel for its part of the configuration: the
/// SMTP listener (its socket bound here, so a port taken is an error at start) and,
/// when `relay` is set, the `email` connector.
pub fn build(config: &EmailConfig) -> Result<ChannelSet, String> {
    let listener = listener::SmtpListener::bind(config)?;
    let mut adapters: Vec<Arc<dyn Adapter>> = Vec::new();
    if let Some(relay) = &config.relay {
        adapters.push(Arc::new(relay::Relay::new(config, relay)?));
    }
    let services: Vec<Arc<dyn Service>> = vec![Arc::new(listener)];
    Ok(ChannelSet { adapters, services })
}

/// Reads bytes as the listener does (SMTP command lines, then the same bytes as a
/// mail: MIME, a delivery report), for fuzzing and tests: never panics, whatever the
/// bytes.
pub fn parse_for_fuzzing(bytes: &[u8]) {
    let _ = session::parse_commands(bytes);
    if let Some(mail) = mime::parse(bytes) {
        let _ = mime::sms_text(mail.subject.as_deref(), &mail.text);
    }
    let _ = dsn::parse_status(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = dsn::match_return_path("bounces@mail.example.test", text);
    }
}
