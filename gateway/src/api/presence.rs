//! `GET /v1/presence/{address}`: the last presence a channel (XMPP) reported for a
//! contact of the calling tenant.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use switchboard_model::Address;
use utoipa::ToSchema;

use super::auth::Caller;
use super::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

/// A contact's presence.
#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    /// The contact, normalised (`xmpp:alice@example.org`).
    pub address: String,
    /// `available`, `away`, `dnd`, `xa` or `unavailable`.
    pub availability: String,
    /// The contact's status note, if any.
    pub status: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The last presence of a contact.
#[utoipa::path(
    operation_id = "get_presence",
    get,
    path = "/v1/presence/{address}",
    tag = "presence",
    params(("address" = String, Path, description = "The contact, e.g. xmpp:alice@example.org")),
    responses(
        (status = 200, description = "The contact's last presence", body = Presence),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No presence is known for this contact", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an address", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
) -> Result<Json<Presence>, ApiError> {
    let address = Address::parse(&address).map_err(|e| {
        let error = FieldError::new("address", e.to_string());
        ApiError::Validation(error.message.clone(), vec![error])
    })?;
    let row = state
        .store
        .get_presence(&caller.0.id, address.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no presence known for {address}")))?;
    Ok(Json(Presence {
        address: row.address,
        availability: row.availability,
        status: row.status,
        updated_at: row.at,
    }))
}
