//! Email: an inbound SMTP listener and an outbound relay.

mod config;

pub use crate::config::*;

use switchboard_adapter::ChannelSet;

/// The adapters and services of this channel for its part of the configuration.
pub fn build(_config: &EmailConfig) -> Result<ChannelSet, String> {
    Ok(ChannelSet::default())
}
