//! `/v1/messages`: send, read, list and cancel messages.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_model::{
    Address, Attachment, Channel, Direction, FailoverStep, Message, MessageStatus,
};
use switchboard_store::{
    AttachmentData, CancelOutcome, IdempotencyKey, InsertOutcome, ListQuery, NewMessage,
};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The destination: E.164 number, short code, `sip:` URI, `xmpp:` JID or email address.
    #[schema(example = "+14155550100")]
    pub to: String,
    /// The body as text.
    #[schema(example = "Your code is 123456")]
    pub text: String,
    /// The sender; defaults to the tenant's first address on the destination's channel.
    pub from: Option<String>,
    /// `sms`, `sip`, `xmpp` or `email`; inferred from `to` when left out, and needed only
    /// where the form is ambiguous (`bob@example.org` as a JID).
    pub channel: Option<String>,
    /// Email or XMPP subject.
    pub subject: Option<String>,
    /// Your own reference, echoed in every event (at most 128 characters).
    pub client_ref: Option<String>,
    /// Your own key-value pairs (at most 32; keys up to 64, values up to 512 characters).
    pub metadata: Option<BTreeMap<String, String>>,
    /// Not before this time (RFC 3339).
    pub send_at: Option<DateTime<Utc>>,
    /// Give up (`expired`) if not sent within this many seconds of `send_at` (or now).
    pub validity_seconds: Option<u64>,
    /// Where to try next when this destination does not work.
    pub failover: Option<Vec<FailoverRequest>>,
    /// Files to send with the text (email only: the mail goes as `multipart/mixed`).
    /// Their base64 counts against `[http] max_body_bytes` with the rest of the body.
    pub attachments: Option<Vec<AttachmentRequest>>,
}

/// One attachment of a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    /// The file name (1 to 255 characters, no control characters).
    #[schema(example = "invoice.pdf")]
    pub name: String,
    /// The MIME type, `type/subtype` with optional parameters; `application/octet-stream`
    /// when left out.
    #[schema(example = "application/pdf")]
    pub content_type: Option<String>,
    /// The bytes, base64 (RFC 4648, with padding).
    #[schema(example = "JVBERi0xLjQK")]
    pub data: String,
}

/// One failover step of a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The next destination.
    pub to: String,
    /// Its channel, when the form is ambiguous.
    pub channel: Option<String>,
    /// Move on when the previous step is not delivered within this many seconds.
    pub after_seconds: u64,
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    /// The messages, newest first.
    pub data: Vec<Message>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are read one by one for precise errors.
pub struct ListParams {
    /// `outbound` or `inbound`.
    direction: Option<String>,
    /// `sms`, `sip`, `xmpp` or `email`.
    channel: Option<String>,
    /// A status, e.g. `queued` or `delivered`.
    status: Option<String>,
    /// Sender address (normalised before matching).
    from: Option<String>,
    /// Destination address (normalised before matching).
    to: Option<String>,
    /// Words that must all appear in the text or subject.
    q: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const MAX_CLIENT_REF: usize = 128;
const MAX_METADATA: usize = 32;
const MAX_FAILOVER: usize = 5;
const MAX_ATTACHMENTS: usize = 16;
const MAX_ATTACHMENT_NAME: usize = 255;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

fn parse_channel(
    field: &str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<Channel> {
    let value = value?;
    value
        .parse::<Channel>()
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

fn parse_address(
    field: &str,
    value: &str,
    channel: Option<Channel>,
    errors: &mut Vec<FieldError>,
) -> Option<Address> {
    let parsed = match channel {
        Some(channel) => Address::parse_for(channel, value),
        None => Address::parse(value),
    };
    parsed
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

/// Whether `value` is a MIME type: `type/subtype` of token characters, then optional
/// `; parameter` parts.
fn is_mime_type(value: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    value.is_ascii()
        && !value.bytes().any(|b| b.is_ascii_control())
        && essence
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// Checks the attachments of a request for a message on `channel`: their bytes, in
/// order, described as the message will describe them.
fn check_attachments(
    requests: Vec<AttachmentRequest>,
    channel: Option<Channel>,
    errors: &mut Vec<FieldError>,
) -> Vec<AttachmentData> {
    if requests.is_empty() {
        return Vec::new();
    }
    if let Some(channel) = channel
        && channel != Channel::Email
    {
        errors.push(FieldError::new(
            "attachments",
            format!("only email carries attachments; this message goes by {channel}"),
        ));
    }
    if requests.len() > MAX_ATTACHMENTS {
        errors.push(FieldError::new(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let mut parts = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let chars = request.name.chars().count();
        if chars == 0 || chars > MAX_ATTACHMENT_NAME || request.name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                format!("attachments[{i}].name"),
                format!("1 to {MAX_ATTACHMENT_NAME} characters, no control characters"),
            ));
        }
        let content_type = request
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        if !is_mime_type(&content_type) {
            errors.push(FieldError::new(
                format!("attachments[{i}].content_type"),
                "a MIME type: type/subtype, optionally with parameters",
            ));
        }
        match STANDARD.decode(request.data.as_bytes()) {
            Ok(data) => parts.push(AttachmentData {
                name: Some(request.name),
                content_type,
                data,
            }),
            Err(e) => errors.push(FieldError::new(
                format!("attachments[{i}].data"),
                format!("not base64: {e}"),
            )),
        }
    }
    parts
}

/// Checks a send request and turns it into a queued message, with the bytes of its
/// attachments (to be stored under the message's id before the message).
pub(crate) fn build_message(
    state: &AppState,
    caller: &Caller,
    request: SendMessage,
    now: DateTime<Utc>,
) -> Result<(Message, Vec<AttachmentData>), ApiError> {
    let limits = &state.config.messages;
    let mut errors = Vec::new();
    let channel = parse_channel("channel", request.channel.as_deref(), &mut errors);
    let to = parse_address("to", &request.to, channel, &mut errors);
    let channel = to.as_ref().map(Address::channel).or(channel);
    let from = match (&request.from, channel) {
        (Some(from), Some(channel)) => {
            parse_address("from", from, Some(channel), &mut errors).map(Address::into_string)
        }
        (Some(from), None) => {
            parse_address("from", from, None, &mut errors).map(Address::into_string)
        }
        (None, Some(channel)) => caller
            .0
            .default_from(channel)
            .map(|a| a.as_str().to_owned()),
        (None, None) => None,
    };
    let chars = request.text.chars().count();
    if request.text.is_empty() {
        errors.push(FieldError::new("text", "must not be empty"));
    } else if chars > limits.max_text_chars {
        errors.push(FieldError::new(
            "text",
            format!(
                "{chars} characters is over the limit of {}",
                limits.max_text_chars
            ),
        ));
    }
    if request
        .subject
        .as_ref()
        .is_some_and(|s| s.chars().count() > 998)
    {
        errors.push(FieldError::new("subject", "at most 998 characters"));
    }
    if request
        .client_ref
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_CLIENT_REF)
    {
        errors.push(FieldError::new(
            "client_ref",
            format!("at most {MAX_CLIENT_REF} characters"),
        ));
    }
    let metadata = request.metadata.unwrap_or_default();
    if metadata.len() > MAX_METADATA {
        errors.push(FieldError::new(
            "metadata",
            format!("at most {MAX_METADATA} entries"),
        ));
    }
    for (key, value) in &metadata {
        if key.is_empty() || key.chars().count() > 64 {
            errors.push(FieldError::new(
                format!("metadata.{key}"),
                "keys are 1 to 64 characters",
            ));
        }
        if value.chars().count() > 512 {
            errors.push(FieldError::new(
                format!("metadata.{key}"),
                "values are at most 512 characters",
            ));
        }
    }
    // Kept to the microsecond, as stored.
    let start = request
        .send_at
        .and_then(|at| DateTime::from_timestamp_micros(at.timestamp_micros()))
        .filter(|at| *at > now);
    if let Some(at) = start
        && at > now + Duration::days(365)
    {
        errors.push(FieldError::new("send_at", "at most a year ahead"));
    }
    let validity = request
        .validity_seconds
        .or((limits.default_validity_seconds > 0).then_some(limits.default_validity_seconds));
    if let Some(v) = validity
        && (v == 0 || v > limits.max_validity_seconds)
    {
        errors.push(FieldError::new(
            "validity_seconds",
            format!("1 to {} seconds", limits.max_validity_seconds),
        ));
    }
    let steps = request.failover.unwrap_or_default();
    if steps.len() > MAX_FAILOVER {
        errors.push(FieldError::new(
            "failover",
            format!("at most {MAX_FAILOVER} steps"),
        ));
    }
    let mut failover = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let channel = parse_channel(
            &format!("failover[{i}].channel"),
            step.channel.as_deref(),
            &mut errors,
        );
        if step.after_seconds == 0 || step.after_seconds > 7 * 24 * 3600 {
            errors.push(FieldError::new(
                format!("failover[{i}].after_seconds"),
                "1 to 604800 seconds",
            ));
        }
        if let Some(address) =
            parse_address(&format!("failover[{i}].to"), &step.to, channel, &mut errors)
        {
            failover.push(FailoverStep {
                channel: address.channel(),
                to: address.into_string(),
                after_seconds: step.after_seconds,
            });
        }
    }
    let attachments = check_attachments(
        request.attachments.unwrap_or_default(),
        channel,
        &mut errors,
    );
    let (Some(to), Some(channel), true) = (to, channel, errors.is_empty()) else {
        return Err(ApiError::Validation(FieldError::summary(&errors), errors));
    };
    let expires_at = validity
        .and_then(|v| i64::try_from(v).ok())
        .map(|v| start.unwrap_or(now) + Duration::seconds(v));
    let mut message = Message::new(
        caller.0.id.clone(),
        Direction::Outbound,
        channel,
        to.into_string(),
        request.text,
        MessageStatus::Queued,
        now,
    );
    message.from = from;
    message.subject = request.subject;
    message.client_ref = request.client_ref;
    message.metadata = metadata;
    message.failover = failover;
    message.send_at = start;
    message.expires_at = expires_at;
    message.attachments = attachments
        .iter()
        .map(|a| Attachment::of(a.name.as_deref(), &a.content_type, &a.data))
        .collect();
    Ok((message, attachments))
}

/// Takes the `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                vec![FieldError::new(
                    "Idempotency-Key",
                    "1 to 255 visible ASCII characters",
                )],
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Holds an idempotency key as in flight until dropped.
struct InFlight<'a> {
    state: &'a AppState,
    key: (String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = self
            .state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
}

fn accepted(body: String, id: &str) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/messages/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Send a message.
///
/// The message is stored (with its outbox entry) before the answer: a `202` means it
/// will not be lost. A repeat with the same `Idempotency-Key` and body returns the
/// first answer; with another body it is refused.
#[utoipa::path(
    operation_id = "send_message",
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a repeat returns the first response")),
    responses(
        (status = 202, description = "Accepted and stored", body = Message),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this Idempotency-Key is still in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's rate; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<SendMessage>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    // Stored times have microsecond precision; answer with what GET will show.
    let now = Utc::now();
    let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let (message, attachments) = build_message(&state, &caller, body.value, now)?;
    let response = serde_json::to_string(&message).map_err(|e| ApiError::Internal(e.into()))?;
    let _guard = match &key {
        Some(key) => {
            let entry = (caller.0.id.clone(), key.clone());
            let mut set = state.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(entry.clone()) {
                return Err(ApiError::Conflict(
                    "a request with this Idempotency-Key is still being handled".into(),
                ));
            }
            Some(InFlight {
                state: &state,
                key: entry,
            })
        }
        None => None,
    };
    let idempotency = key.map(|key| IdempotencyKey {
        key,
        request_hash: hex::encode(Sha256::digest(body.canonical.to_string().as_bytes())),
        response: response.clone(),
    });
    let id = message.id.to_string();
    let channel = message.channel;
    // The bytes are committed before the message that refers to them (which the
    // dispatcher may take as soon as it is committed), both before the 202.
    state.store.put_attachments(&id, &attachments).await?;
    let outcome = state
        .store
        .insert_message(NewMessage {
            message,
            enqueue: true,
            idempotency,
        })
        .await;
    if !attachments.is_empty() && !matches!(outcome, Ok(InsertOutcome::Created)) {
        // A repeat answered with the first message, or no message: these bytes are
        // nobody's.
        if let Err(e) = state.store.delete_attachments(&id).await {
            tracing::warn!(error = %e, %id, "cannot remove the attachments of a message not stored");
        }
    }
    match outcome? {
        InsertOutcome::Created => {
            state.metrics.message_accepted(channel);
            Ok(accepted(response, &id))
        }
        InsertOutcome::Replayed {
            message_id,
            response,
        } => Ok(accepted(response, &message_id)),
        InsertOutcome::KeyReused { message_id } => Err(ApiError::Validation(
            format!(
                "this Idempotency-Key was first used with another request body (message {message_id})"
            ),
            vec![FieldError::new(
                "Idempotency-Key",
                "already used with another request body",
            )],
        )),
    }
}

/// Get a message with its events.
#[utoipa::path(
    operation_id = "get_message",
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "The message and its events", body = Message),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    state
        .store
        .get_message(&caller.0.id, &id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no message {id:?}"))
}

/// Cancel a message that is still queued.
#[utoipa::path(
    operation_id = "cancel_message",
    delete,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "Canceled; the message as it is now", body = Message),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Past queued: too late to cancel", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    match state
        .store
        .cancel_message(&caller.0.id, &id, Some("canceled through the API".into()))
        .await?
    {
        CancelOutcome::Canceled => get(State(state), caller, Path(id)).await,
        CancelOutcome::NotFound => Err(not_found(&id)),
        CancelOutcome::TooLate(status) => Err(ApiError::Conflict(format!(
            "the message is {status}; only a queued message can be canceled"
        ))),
    }
}

/// Download an attachment of a message (email parts, CPIM) as it arrived.
#[utoipa::path(
    operation_id = "get_message_attachment",
    get,
    path = "/v1/messages/{id}/attachments/{index}",
    tag = "messages",
    params(
        ("id" = String, Path, description = "The message id"),
        ("index" = u32, Path, description = "The attachment's place in `attachments`, from 0"),
    ),
    responses(
        (status = 200, description = "The attachment's bytes, with its content type"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message or attachment for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, index)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    let attachment = state
        .store
        .get_attachment(&caller.0.id, &id, index)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no attachment {index} of message {id:?}")))?;
    let content_type = HeaderValue::from_str(&attachment.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = (StatusCode::OK, attachment.data).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    if let Some(name) = attachment.name {
        let safe: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .collect();
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// List messages, newest first.
#[utoipa::path(
    operation_id = "list_messages",
    get,
    path = "/v1/messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessageList),
        (status = 400, description = "A bad filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<MessageList>, ApiError> {
    let now = Utc::now();
    let (mut query, filters) = list_query(&params)?;
    if let Some(cursor) = params.get("cursor") {
        let last = state
            .cursor_key
            .open(cursor, &filters, now.timestamp())
            .map_err(|e| {
                ApiError::BadRequest(
                    e.to_string(),
                    vec![FieldError::new("cursor", e.to_string())],
                )
            })?;
        query.before_id = Some(last);
    }
    let limit = query.limit;
    query.limit = limit + 1;
    let mut data = state.store.list_messages(&caller.0.id, &query).await?;
    let next_cursor = if data.len() > limit as usize {
        data.truncate(limit as usize);
        data.last().map(|m| {
            state
                .cursor_key
                .issue(m.id.as_str(), &filters, now.timestamp())
        })
    } else {
        None
    };
    Ok(Json(MessageList { data, next_cursor }))
}

/// Reads the list parameters one by one, so each error names its parameter. Also
/// returns the filters in a canonical text form, which the cursor is bound to.
fn list_query(params: &HashMap<String, String>) -> Result<(ListQuery, String), ApiError> {
    let mut errors = Vec::new();
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    let time = |name: &str, value: &str, errors: &mut Vec<FieldError>| {
        DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
            .map_err(|_| errors.push(FieldError::new(name, "expected an RFC 3339 time")))
            .ok()
    };
    for (name, value) in params {
        match name.as_str() {
            "direction" => match Direction::parse(value) {
                Some(d) => query.direction = Some(d),
                None => errors.push(FieldError::new(name, "expected outbound or inbound")),
            },
            "channel" => query.channel = parse_channel(name, Some(value), &mut errors),
            "status" => match value.parse::<MessageStatus>() {
                Ok(s) => query.status = Some(s),
                Err(e) => errors.push(FieldError::new(name, e.to_string())),
            },
            "from" => {
                query.from = parse_address(name, value, None, &mut errors).map(Address::into_string)
            }
            "to" => {
                query.to = parse_address(name, value, None, &mut errors).map(Address::into_string)
            }
            "q" => {
                if value.chars().count() > 256 {
                    errors.push(FieldError::new(name, "at most 256 characters"));
                } else {
                    query.q = Some(value.clone());
                }
            }
            "since" => query.since = time(name, value, &mut errors),
            "until" => query.until = time(name, value, &mut errors),
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => query.limit = n,
                _ => errors.push(FieldError::new(name, format!("expected 1 to {MAX_LIMIT}"))),
            },
            "cursor" => {}
            _ => errors.push(FieldError::new(name, "unknown parameter")),
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        return Err(ApiError::BadRequest(FieldError::summary(&errors), errors));
    }
    let mut filters: Vec<_> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "cursor" | "limit"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    filters.sort();
    Ok((query, filters.join("&")))
}
