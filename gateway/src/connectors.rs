//! The connectors the gateway sends through: the registered adapters, their limits and
//! their counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use switchboard_adapter::Adapter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use crate::rate::TokenBucket;

/// One running connector.
pub struct Connector {
    /// The adapter.
    pub adapter: Arc<dyn Adapter>,
    /// Sends in flight at once.
    pub permits: Arc<Semaphore>,
    /// Sends per second, when limited.
    pub rate: Option<TokenBucket>,
    /// Counters for `GET /v1/connectors`.
    pub counters: Counters,
}

/// What a connector has done since the gateway started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Accepted by the next hop.
    pub accepted: AtomicU64,
    /// Transient failures (retried).
    pub retried: AtomicU64,
    /// Permanent failures.
    pub failed: AtomicU64,
}

/// A connector as `GET /v1/connectors` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorView {
    /// The connector's name.
    pub name: String,
    /// Its channel.
    pub channel: switchboard_model::Channel,
    /// `bound`, `connecting` or `down` (`not_running` when configured but its adapter
    /// is not part of this gateway).
    pub state: String,
    /// Attempts made since start.
    pub attempts: u64,
    /// Accepted by the next hop.
    pub accepted: u64,
    /// Transient failures (retried).
    pub retried: u64,
    /// Permanent failures.
    pub failed: u64,
}

/// Every running connector, by name.
#[derive(Default)]
pub struct Connectors {
    by_name: BTreeMap<String, Connector>,
    /// Send slots taken by the router for messages it marked `sending`, until their send
    /// task takes them over.
    held: Mutex<HashMap<String, OwnedSemaphorePermit>>,
}

impl Connectors {
    /// The registry of `adapters`.
    pub fn new(adapters: Vec<Arc<dyn Adapter>>) -> Connectors {
        let by_name = adapters
            .into_iter()
            .map(|adapter| {
                let connector = Connector {
                    permits: Arc::new(Semaphore::new(adapter.concurrency().max(1))),
                    rate: adapter
                        .max_per_second()
                        .filter(|r| *r > 0)
                        .map(|r| TokenBucket::new(r, r)),
                    counters: Counters::default(),
                    adapter,
                };
                (connector.adapter.name().to_owned(), connector)
            })
            .collect();
        Connectors {
            by_name,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps the send slot taken for message `id`.
    pub fn hold(&self, id: String, permit: OwnedSemaphorePermit) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, permit);
    }

    /// The send slot taken for message `id`, if any.
    pub fn take_held(&self, id: &str) -> Option<OwnedSemaphorePermit> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Send slots free now, over all connectors.
    pub fn free_slots(&self) -> usize {
        self.iter().map(|c| c.permits.available_permits()).sum()
    }

    /// The connector called `name`.
    pub fn get(&self, name: &str) -> Option<&Connector> {
        self.by_name.get(name)
    }

    /// Every connector.
    pub fn iter(&self) -> impl Iterator<Item = &Connector> {
        self.by_name.values()
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The view of one connector.
    pub fn view(&self, connector: &Connector) -> ConnectorView {
        let c = &connector.counters;
        ConnectorView {
            name: connector.adapter.name().to_owned(),
            channel: connector.adapter.channel(),
            state: connector.adapter.state().as_str().to_owned(),
            attempts: c.attempts.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}
