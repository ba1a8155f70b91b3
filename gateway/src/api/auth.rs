//! The calling tenant, from `Authorization: Bearer <api key>`, within its rate.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::problem::ApiError;
use crate::state::AppState;
use crate::tenants::Tenant;

/// The tenant that made the request. Extracting it checks the API key and takes one
/// request from the tenant's rate.
pub struct Caller(pub Arc<Tenant>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "send an API key as Authorization: Bearer <key>",
            ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, key) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be Bearer <key>",
            ))?;
        let tenant = state
            .tenants
            .by_api_key(key)
            .ok_or(ApiError::Unauthorized("unknown API key"))?;
        tenant.admit().map_err(ApiError::RateLimited)?;
        Ok(Caller(tenant.clone()))
    }
}
