//! `/v1/webhooks`: subscriptions to a tenant's events, their deliveries, replays.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchboard_model::status::ALL_STATUSES;
use switchboard_store::{Delivery, DeliveryState, Subscription};
use switchboard_webhooks::Secret;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST events: an `http` or `https` URL.
    #[schema(example = "https://hooks.example.com/switchboard")]
    pub url: String,
    /// The events to send: `*` (all), `message.*` (every message event), exact types
    /// such as `message.delivered`, or `presence.changed`.
    #[schema(example = json!(["message.delivered", "message.failed"]))]
    pub events: Vec<String>,
}

/// A new subscription, with its signing secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The subscription id.
    #[schema(example = "wh_0199a6b3c1d27c3e9f4a5b6c7d8e9f01")]
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The events it takes.
    pub events: Vec<String>,
    /// The Standard Webhooks signing secret (`whsec_...`). Keep it: it is not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A subscription (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    /// The subscription id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The events it takes.
    pub events: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was disabled (nothing more is sent to it), or null while it is active.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled: the receiver answered 410 Gone, or every attempt failed
    /// for `[webhooks] disable_after_hours`.
    pub disabled_reason: Option<String>,
    /// Since when every delivery attempt has failed, or null while deliveries succeed.
    pub failing_since: Option<DateTime<Utc>>,
}

impl From<Subscription> for Webhook {
    fn from(s: Subscription) -> Webhook {
        Webhook {
            id: s.id,
            url: s.url,
            events: s.events,
            created_at: s.created_at,
            disabled_at: s.disabled_at,
            disabled_reason: s.disabled_reason,
            failing_since: s.failing_since,
        }
    }
}

/// A tenant's subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The subscriptions, oldest first.
    pub data: Vec<Webhook>,
    /// Always null: the list is not paged.
    pub next_cursor: Option<String>,
}

/// One attempt at a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttemptResource {
    /// When it started.
    pub at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: u64,
    /// The receiver's HTTP status, or null when it did not answer.
    pub status_code: Option<u16>,
    /// What went wrong, or null on success.
    pub error: Option<String>,
    /// The first 512 bytes of the receiver's answer, if any.
    pub response_excerpt: Option<String>,
}

/// One event for one subscription, with every attempt at it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResource {
    /// The delivery id: `<event id>:<subscription id>`.
    pub id: String,
    /// The event id, sent as `webhook-id` on every attempt and replay.
    pub event_id: String,
    /// The event type, e.g. `message.delivered`.
    pub event_type: String,
    /// When the event happened (`created_at` in the payload).
    pub event_at: DateTime<Utc>,
    /// The message the event is about.
    pub message_id: String,
    /// `pending`, `delivered`, `failed` (given up) or `canceled`.
    #[schema(example = "delivered")]
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt.
    pub last_status_code: Option<u16>,
    /// What went wrong on the last attempt.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts_detail: Vec<DeliveryAttemptResource>,
}

impl From<Delivery> for DeliveryResource {
    fn from(d: Delivery) -> DeliveryResource {
        DeliveryResource {
            next_attempt_at: (d.state == DeliveryState::Pending).then_some(d.next_attempt_at),
            state: d.state.as_str().to_owned(),
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            event_at: d.event_at,
            message_id: d.message_id,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            attempts_detail: d
                .attempt_log
                .into_iter()
                .map(|a| DeliveryAttemptResource {
                    at: a.at,
                    duration_ms: a.duration_ms,
                    status_code: a.status_code,
                    error: a.error,
                    response_excerpt: a.response_excerpt,
                })
                .collect(),
        }
    }
}

/// A page of a subscription's deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The deliveries, newest first.
    pub data: Vec<DeliveryResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Parameters of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read one by one for precise errors.
pub struct DeliveryParams {
    /// Page size, 1 to 100 (default 20).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: u32 = 20;
/// How long checking a subscription's host may take when private targets are refused.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_LIMIT: u32 = 100;
/// Event types besides `message.<status>`.
const OTHER_EVENTS: [&str; 3] = ["*", "message.*", "presence.changed"];

/// Checks each event name; answers them without repeats, in the order given.
fn check_events(events: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if events.is_empty() {
        errors.push(FieldError::new(
            "events",
            "name at least one event, or \"*\" for all",
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let known = OTHER_EVENTS.contains(&event.as_str())
            || ALL_STATUSES.iter().any(|s| s.event_type() == event);
        if !known {
            errors.push(FieldError::new(
                format!("events[{i}]"),
                format!(
                    "unknown event {event:?}: expected \"*\", \"message.*\", \"presence.changed\" \
                     or message.<status> with a status such as delivered"
                ),
            ));
        } else if !checked.contains(event) {
            checked.push(event.clone());
        }
    }
    checked
}

fn validation(errors: Vec<FieldError>) -> ApiError {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::Validation(detail, errors)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook subscription {id:?}"))
}

/// Subscribe to events.
///
/// Events are POSTed to `url` as `{id, type, created_at, data}`, signed per Standard
/// Webhooks with the secret in this answer (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`). The secret is shown only here.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Subscribed; the secret is shown only now", body = CreatedWebhook),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL or event name", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateWebhook>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let mut errors = Vec::new();
    match switchboard_webhooks::parse_url(&request.url) {
        Ok(target) if state.config.webhooks.refuse_private_targets => {
            let check = switchboard_webhooks::check_target(&target, false);
            match tokio::time::timeout(RESOLVE_TIMEOUT, check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => errors.push(FieldError::new("url", e.to_string())),
                Err(_) => errors.push(FieldError::new(
                    "url",
                    format!("cannot resolve {} in time", target.host()),
                )),
            }
        }
        Ok(_) => {}
        Err(e) => errors.push(FieldError::new("url", e.to_string())),
    }
    let events = check_events(&request.events, &mut errors);
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    let secret = Secret::generate();
    let subscription = state
        .store
        .create_subscription(&caller.0.id, &request.url, &events, secret.as_str())
        .await?;
    let location = HeaderValue::from_str(&format!("/v1/webhooks/{}", subscription.id)).ok();
    let created = CreatedWebhook {
        id: subscription.id,
        url: subscription.url,
        events: subscription.events,
        secret: subscription.secret,
        created_at: subscription.created_at,
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List subscriptions.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The tenant's subscriptions, oldest first, without secrets", body = WebhookList),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let data = state
        .store
        .list_subscriptions(&caller.0.id)
        .await?
        .into_iter()
        .map(Webhook::from)
        .collect();
    Ok(Json(WebhookList {
        data,
        next_cursor: None,
    }))
}

/// Get a subscription.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription, without its secret", body = Webhook),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    state
        .store
        .get_subscription(&caller.0.id, &id)
        .await?
        .map(|s| Json(s.into()))
        .ok_or_else(|| not_found(&id))
}

/// Remove a subscription.
///
/// Nothing more is sent to it; deliveries still pending are canceled.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_subscription(&caller.0.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// List a subscription's deliveries, newest first, with every attempt.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription id"), DeliveryParams),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryList),
        (status = 400, description = "A bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryList>, ApiError> {
    let now = Utc::now().timestamp();
    let filters = format!("webhook={id}");
    let mut limit = DEFAULT_LIMIT;
    let mut before = None;
    let mut errors = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => errors.push(FieldError::new(name, format!("expected 1 to {MAX_LIMIT}"))),
            },
            "cursor" => match state
                .cursor_key
                .open(value, &filters, now)
                .map_err(|e| e.to_string())
                .and_then(|seq| {
                    seq.parse::<i64>()
                        .map_err(|_| "not a cursor of this list".to_owned())
                }) {
                Ok(seq) => before = Some(seq),
                Err(message) => errors.push(FieldError::new(name, message)),
            },
            _ => errors.push(FieldError::new(name, "unknown parameter")),
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::BadRequest(detail, errors));
    }
    if state
        .store
        .get_subscription(&caller.0.id, &id)
        .await?
        .is_none()
    {
        return Err(not_found(&id));
    }
    let mut page = state
        .store
        .list_deliveries(&caller.0.id, &id, limit + 1, before)
        .await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last()
            .map(|d| state.cursor_key.issue(&d.seq.to_string(), &filters, now))
    } else {
        None
    };
    Ok(Json(DeliveryList {
        data: page.into_iter().map(DeliveryResource::from).collect(),
        next_cursor,
    }))
}

/// Replay a delivery.
///
/// The event is sent again now, with the same `webhook-id`, and retried on the usual
/// schedule if that fails. A delivery being attempted at this moment is left to that
/// attempt.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    operation_id = "retry_webhook_delivery",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The subscription id"),
        ("delivery_id" = String, Path, description = "The delivery id"),
    ),
    responses(
        (status = 202, description = "Due now; see the deliveries list for how it went"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription or delivery for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The subscription is disabled", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let subscription = state
        .store
        .get_subscription(&caller.0.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if subscription.disabled_at.is_some() {
        let reason = subscription.disabled_reason.unwrap_or_default();
        return Err(ApiError::Conflict(format!(
            "the subscription is disabled ({reason}); create a new one to receive events"
        )));
    }
    if state
        .store
        .retry_delivery(&caller.0.id, &id, &delivery_id)
        .await?
    {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::NotFound(format!(
            "no delivery {delivery_id:?} for subscription {id:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        let mut errors = Vec::new();
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ok = check_events(
            &names(&[
                "message.delivered",
                "*",
                "message.*",
                "presence.changed",
                "*",
            ]),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            ok,
            names(&["message.delivered", "*", "message.*", "presence.changed"])
        );
        check_events(
            &names(&["message.delivered", "message.nope", "Message.sent"]),
            &mut errors,
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["events[1]", "events[2]"]);
        errors.clear();
        check_events(&[], &mut errors);
        assert_eq!(errors[0].field, "events");
    }
}
