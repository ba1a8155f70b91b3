//! `GET /v1/presence/{address}`: the last presence a channel (XMPP) reported for a
//! contact of the calling tenant; a contact never seen is `unknown`.

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
    /// `available`, `away`, `dnd`, `xa`, `unavailable`, or `unknown` for a contact
    /// never seen.
    pub status: String,
    /// The contact's status note, if any.
    pub note: Option<String>,
    /// When it last changed; absent while `unknown`.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The last presence of a contact.
#[utoipa::path(
    operation_id = "get_presence",
    get,
    path = "/v1/presence/{address}",
    tag = "presence",
    params(("address" = String, Path, description = "The contact, e.g. xmpp:alice@example.org")),
    responses(
        (status = 200, description = "The contact's last presence, or `unknown`", body = Presence),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
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
        .await?;
    Ok(Json(match row {
        Some(row) => Presence {
            address: row.address,
            status: row.availability,
            note: row.status,
            updated_at: Some(row.at),
        },
        None => Presence {
            address: address.as_str().to_owned(),
            status: "unknown".to_owned(),
            note: None,
            updated_at: None,
        },
    }))
}
