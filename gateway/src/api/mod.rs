//! The REST API v1 (DESIGN.md section 5).

pub mod auth;
pub mod body;
pub mod connectors;
pub mod cursor;
pub mod messages;
pub mod presence;
pub mod problem;
pub mod system;
pub mod webhooks;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::metrics::HttpLabels;
use crate::state::AppState;
use problem::ApiError;

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Send and receive messages over SMS (SMPP), SIP MESSAGE, XMPP and email through one API.",
        license(name = "Apache-2.0")
    ),
    paths(
        messages::send,
        messages::list,
        messages::get,
        messages::cancel,
        messages::attachment,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::deliveries,
        webhooks::retry,
        connectors::list,
        connectors::routes,
        presence::get,
        system::healthz,
        system::readyz,
        system::metrics,
    ),
    components(schemas(problem::Problem, problem::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Send, read, list and cancel messages"),
        (name = "webhooks", description = "Signed event deliveries to your endpoints"),
        (name = "connectors", description = "Connectors and the route table"),
        (name = "presence", description = "Presence of contacts, as channels report it"),
        (name = "system", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as pretty JSON, as checked in at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// The REST API with its state.
pub fn app(state: AppState) -> Router {
    let limit = state.config.http.max_body_bytes;
    Router::new()
        .route("/v1/messages", get(messages::list).post(messages::send))
        .route(
            "/v1/messages/{id}",
            get(messages::get).delete(messages::cancel),
        )
        .route(
            "/v1/messages/{id}/attachments/{index}",
            get(messages::attachment),
        )
        .route("/v1/presence/{address}", get(presence::get))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route("/v1/connectors", get(connectors::list))
        .route("/v1/routes", get(connectors::routes))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi_json))
        .route("/docs", get(system::docs))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Counts and times every request by route template.
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await.into_response();
    state.metrics.http_request(
        HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        },
        start.elapsed().as_secs_f64(),
    );
    response
}
