//! `GET /v1/connectors` and `GET /v1/routes`: what the gateway sends through, and how
//! it chooses.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use crate::connectors::ConnectorView;
use crate::state::AppState;

/// Every connector.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorList {
    /// The connectors, by name.
    pub data: Vec<ConnectorView>,
    /// Always null: the list is never paged.
    pub next_cursor: Option<String>,
}

/// The route table in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteList {
    /// The routes in order: `{index, name, match: {to, from, channel, tenant, direction},
    /// connector, rewrite_to}`; the first whose match holds decides.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
    /// Always null: the list is never paged.
    pub next_cursor: Option<String>,
}

/// Every connector with its state and counters.
#[utoipa::path(
    operation_id = "list_connectors",
    get,
    path = "/v1/connectors",
    tag = "connectors",
    responses(
        (status = 200, description = "The connectors", body = ConnectorList),
        (status = 401, description = "Missing or unknown API key", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Json<ConnectorList> {
    let mut data: Vec<ConnectorView> = state
        .connectors
        .iter()
        .map(|c| state.connectors.view(c))
        .collect();
    for info in state.routes.connectors() {
        if state.connectors.get(&info.name).is_none() {
            data.push(ConnectorView {
                name: info.name.clone(),
                channel: info.channel,
                state: "not_running".into(),
                attempts: 0,
                accepted: 0,
                retried: 0,
                failed: 0,
            });
        }
    }
    data.sort_by(|a, b| a.name.cmp(&b.name));
    Json(ConnectorList {
        data,
        next_cursor: None,
    })
}

/// The route table in force, in order.
#[utoipa::path(
    operation_id = "list_routes",
    get,
    path = "/v1/routes",
    tag = "connectors",
    responses(
        (status = 200, description = "The routes", body = RouteList),
        (status = 401, description = "Missing or unknown API key", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn routes(State(state): State<AppState>, _caller: Caller) -> Json<RouteList> {
    let data = state
        .routes
        .routes()
        .iter()
        .filter_map(|route| serde_json::to_value(route).ok())
        .collect();
    Json(RouteList {
        data,
        next_cursor: None,
    })
}
