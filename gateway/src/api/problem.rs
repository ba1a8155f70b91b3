//! RFC 9457 problem details: the one error type of the REST API.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 `application/problem+json` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// For validation problems: each field and what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a path into the request (`to`, `failover[1].after_seconds`) or the
    /// name of a query parameter or header.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Every error as `field: message`, for a problem's `detail`.
    pub fn summary(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way an API request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request cannot be read (malformed JSON, a bad query parameter or header).
    BadRequest(String, Vec<FieldError>),
    /// 401: no API key, or one we do not know.
    Unauthorized(&'static str),
    /// 404: no such resource for this tenant.
    NotFound(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409: the resource is not in a state that allows this.
    Conflict(String),
    /// 413: the body is over `[http] max_body_bytes`.
    PayloadTooLarge(usize),
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: the request was read but its content is not acceptable.
    Validation(String, Vec<FieldError>),
    /// 429: over the tenant's rate.
    RateLimited(Duration),
    /// 503: a dependency (the database) is not available.
    Unavailable(String),
    /// 500: a fault of ours; logged, never shown.
    Internal(anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(..) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Validation(..) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            ),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem body this error is answered with.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let (detail, errors) = match self {
            ApiError::BadRequest(detail, errors) | ApiError::Validation(detail, errors) => {
                (detail.clone(), errors.clone())
            }
            ApiError::Unauthorized(detail) => ((*detail).to_owned(), vec![]),
            ApiError::NotFound(detail)
            | ApiError::Conflict(detail)
            | ApiError::Unavailable(detail) => (detail.clone(), vec![]),
            ApiError::PayloadTooLarge(limit) => (
                format!("the request body is larger than {limit} bytes"),
                vec![],
            ),
            ApiError::MethodNotAllowed => {
                ("this endpoint does not take this method".to_owned(), vec![])
            }
            ApiError::UnsupportedMediaType => (
                "send the body as JSON, with Content-Type: application/json".to_owned(),
                vec![],
            ),
            ApiError::RateLimited(wait) => (
                format!(
                    "over this tenant's request rate; retry in {} s",
                    retry_after_secs(*wait)
                ),
                vec![],
            ),
            ApiError::Internal(_) => (
                "the gateway failed to handle this request; it has been logged".to_owned(),
                vec![],
            ),
        };
        Problem {
            kind: format!("urn:switchboard:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl From<switchboard_store::StoreError> for ApiError {
    fn from(error: switchboard_store::StoreError) -> Self {
        if error.is_unavailable() {
            tracing::error!(%error, "database unavailable");
            ApiError::Unavailable("the database is not available; retry later".into())
        } else {
            ApiError::Internal(error.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        match &self {
            ApiError::RateLimited(wait) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*wait)),
                );
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"switchboard\""),
                );
            }
            _ => {}
        }
        response
    }
}
