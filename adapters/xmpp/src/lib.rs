//! XMPP external component (XEP-0114) with presence.

mod config;

pub use crate::config::*;

use switchboard_adapter::ChannelSet;

/// The adapters and services of this channel for its part of the configuration.
pub fn build(_config: &XmppConfig) -> Result<ChannelSet, String> {
    Ok(ChannelSet::default())
}
