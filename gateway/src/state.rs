//! What every request handler shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use switchboard_adapter::Service;
use switchboard_store::Store;

use crate::api::cursor::CursorKey;
use crate::config::Config;
use crate::connectors::Connectors;
use crate::metrics::Metrics;
use crate::tenants::Tenants;
use switchboard_router::RouteTable;

/// The state of the REST API. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The checked configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// Tenants by API key and address.
    pub tenants: Arc<Tenants>,
    /// The key that signs list cursors.
    pub cursor_key: Arc<CursorKey>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The route table in force.
    pub routes: Arc<RouteTable>,
    /// The running connectors.
    pub connectors: Arc<Connectors>,
    /// `Idempotency-Key`s whose first request is still being handled (tenant, key).
    pub in_flight: Arc<Mutex<HashSet<(String, String)>>>,
    /// The channel services (listeners, connections) to run beside the API.
    pub services: Arc<Vec<Arc<dyn Service>>>,
}
