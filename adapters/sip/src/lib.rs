//! SIP MESSAGE (RFC 3428) over UDP and TCP.

mod config;

pub use crate::config::*;

use switchboard_adapter::ChannelSet;

/// The adapters and services of this channel for its part of the configuration.
pub fn build(_config: &SipConfig) -> Result<ChannelSet, String> {
    Ok(ChannelSet::default())
}
