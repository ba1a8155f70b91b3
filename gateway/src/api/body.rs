//! Reading a JSON request body with errors that name the field.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, FieldError};
use crate::state::AppState;

/// A JSON body of type `T`, with its raw bytes (for the idempotency hash).
pub struct JsonBody<T> {
    /// The parsed value.
    pub value: T,
    /// The parsed body as a JSON value, keys sorted: the same request always hashes
    /// the same, whatever its spacing or key order.
    pub canonical: serde_json::Value,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            })
            // A client that says nothing is taken at its word that it sends JSON.
            .unwrap_or(true);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.http.max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(limit)
                } else {
                    ApiError::BadRequest(
                        format!("cannot read the request body: {rejection}"),
                        vec![],
                    )
                }
            })?;
        parse(&bytes)
    }
}

/// Parses `bytes` as JSON and then as a `T`: syntax errors are 400 with the line and
/// column, content that does not fit `T` is 422 naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let canonical: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(
            format!(
                "the body is not valid JSON: {} at line {}, column {}",
                describe(&e),
                e.line(),
                e.column()
            ),
            vec![],
        )
    })?;
    if !canonical.is_object() {
        return Err(ApiError::Validation(
            "the body must be a JSON object".into(),
            vec![FieldError::new("", "expected a JSON object")],
        ));
    }
    let value = serde_path_to_error::deserialize(&canonical).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((name, _)) if field.is_empty() => name.to_owned(),
            Some((name, _)) => format!("{field}.{name}"),
            None => field,
        };
        let detail = if field.is_empty() {
            message.clone()
        } else {
            format!("{field}: {message}")
        };
        ApiError::Validation(detail, vec![FieldError::new(field, message)])
    })?;
    Ok(JsonBody { value, canonical })
}

fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json appends " at line L column C"; we say it our way.
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
