//! Tenants: who is calling (API keys), what they own (addresses), and how fast they may go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchboard_model::{Address, Channel};

use crate::config::Config;
use crate::rate::TokenBucket;

/// The tenant of the embedded default, when the config names none.
pub const DEFAULT_TENANT: &str = "default";

/// The SHA-256 of an API key: keys are looked up by digest, never compared in clear.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A hex digest from `api_key_sha256`.
pub fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_digest.trim()).ok()?;
    bytes.try_into().ok()
}

/// A tenant as the API sees it.
#[derive(Debug)]
pub struct Tenant {
    /// Its id.
    pub id: String,
    /// Its addresses, normalised, in config order.
    pub addresses: Vec<Address>,
    limiter: Option<TokenBucket>,
}

impl Tenant {
    /// The default sender on `channel`: the tenant's first address of that channel.
    pub fn default_from(&self, channel: Channel) -> Option<&Address> {
        self.addresses.iter().find(|a| a.channel() == channel)
    }

    /// Takes one request from the tenant's rate; when there is none left, how long until
    /// there is.
    pub fn admit(&self) -> Result<(), Duration> {
        match &self.limiter {
            Some(bucket) => bucket.take(Instant::now()),
            None => Ok(()),
        }
    }
}

/// Every tenant, by API key digest and by owned address.
#[derive(Debug, Default)]
pub struct Tenants {
    by_key: HashMap<[u8; 32], Arc<Tenant>>,
    by_address: HashMap<String, Arc<Tenant>>,
    by_id: HashMap<String, Arc<Tenant>>,
}

impl Tenants {
    /// The tenants of a checked config. `default_key` is the key of the embedded
    /// default tenant, used when the config names no tenant.
    pub fn from_config(config: &Config, default_key: Option<&str>) -> Tenants {
        let mut tenants = Tenants::default();
        for t in &config.tenants {
            let tenant = Arc::new(Tenant {
                id: t.id.clone(),
                addresses: t
                    .addresses
                    .iter()
                    .filter_map(|a| Address::parse(a).ok())
                    .collect(),
                limiter: (t.rate_limit_per_second > 0)
                    .then(|| TokenBucket::new(t.rate_limit_per_second, t.rate_limit_burst)),
            });
            let digests = t
                .api_keys
                .iter()
                .map(|k| hash_key(k))
                .chain(t.api_key_sha256.iter().filter_map(|d| parse_digest(d)));
            for digest in digests {
                tenants.by_key.insert(digest, tenant.clone());
            }
            tenants.by_id.insert(tenant.id.clone(), tenant.clone());
            for address in &tenant.addresses {
                tenants
                    .by_address
                    .insert(address.as_str().to_owned(), tenant.clone());
            }
        }
        if config.tenants.is_empty()
            && let Some(key) = default_key
        {
            let tenant = Arc::new(Tenant {
                id: DEFAULT_TENANT.to_owned(),
                addresses: Vec::new(),
                limiter: None,
            });
            tenants.by_key.insert(hash_key(key), tenant.clone());
            tenants.by_id.insert(tenant.id.clone(), tenant);
        }
        tenants
    }

    /// The tenant an API key belongs to.
    pub fn by_api_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_key.get(&hash_key(key))
    }

    /// The tenant with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// The tenant that owns `address`.
    pub fn owner(&self, address: &Address) -> Option<&Arc<Tenant>> {
        self.by_address.get(address.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let digest = hash_key("sk_test_123");
        assert_eq!(parse_digest(&hex::encode(digest)), Some(digest));
        assert_eq!(parse_digest("abc"), None);
    }
}
