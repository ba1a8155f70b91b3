//! switchboard-webhooks
