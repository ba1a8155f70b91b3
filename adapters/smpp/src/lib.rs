//! SMPP: an SMSC server for carriers and an ESME client for upstream SMSCs.

mod config;

pub use crate::config::*;

use switchboard_adapter::ChannelSet;

/// The adapters and services of this channel for its part of the configuration.
pub fn build(_config: &SmppConfig) -> Result<ChannelSet, String> {
    Ok(ChannelSet::default())
}
