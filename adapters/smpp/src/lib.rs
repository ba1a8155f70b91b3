//! SMPP: an SMSC server for carriers and an ESME client for upstream SMSCs.

pub mod client;
pub mod codec;
pub mod concat;
mod config;
pub mod frame;
pub mod reassembly;
pub mod receipt;
pub mod server;
pub mod time;

pub use crate::config::*;

use std::sync::Arc;

use switchboard_adapter::ChannelSet;

/// The adapters and services of this channel for its part of the configuration.
pub fn build(config: &SmppConfig) -> Result<ChannelSet, String> {
    let mut set = ChannelSet::default();
    if let Some(server) = &config.server {
        set.services
            .push(Arc::new(server::SmppServer::bind(server)?));
    }
    set.extend(client::build(&config.connectors));
    Ok(set)
}
