//! The REST API, driven in-process (no socket) against a real SQLite store.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchboard::state::AppState;
use tower::ServiceExt;

const ACME: &str = "sk_acme_test_key";
const GLOBEX: &str = "sk_globex_test_key";
const SLOW: &str = "sk_slow_test_key";

struct Api {
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"
[http]
max_body_bytes = 4096

[database]
url = "sqlite://{}/db.sqlite"

[messages]
max_text_chars = 500

[[tenants]]
id = "acme"
api_keys = ["{ACME}"]
addresses = ["+15550100", "ACME", "support@mail.example.test"]

[[tenants]]
id = "globex"
api_keys = ["{GLOBEX}"]

[[tenants]]
id = "slow"
api_keys = ["{SLOW}"]
rate_limit_per_second = 1
rate_limit_burst = 2
"#,
        dir.path().display()
    );
    let config = switchboard::config::parse(&toml, []).expect("config");
    let state = switchboard::build_state(config).await.expect("state");
    Api { state, _dir: dir }
}

impl Api {
    async fn call(&self, request: Request<Body>) -> (StatusCode, Response<Body>, Value) {
        let response = switchboard::api::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, Response::from_parts(parts, Body::empty()), value)
    }

    async fn post(&self, key: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, value) = self.call(post(key, body, None)).await;
        (status, value)
    }

    async fn get(&self, key: &str, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request");
        let (status, _, value) = self.call(request).await;
        (status, value)
    }
}

fn post(key: &str, body: &str, idempotency: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/v1/messages")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = idempotency {
        request = request.header("Idempotency-Key", k);
    }
    request.body(Body::from(body.to_owned())).expect("request")
}

/// The problem's field names, for asserting which fields an error names.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn send_then_read_back_queued_with_events() {
    let api = api().await;
    let (status, sent) = api
        .post(ACME, r#"{"to": "+1 (415) 555-0100", "text": "Hello [world]", "client_ref": "r1", "metadata": {"order": "17"}}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["to"], "+14155550100");
    assert_eq!(
        sent["from"], "+15550100",
        "the tenant's first SMS address is the default sender"
    );
    assert_eq!(sent["channel"], "sms");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["encoding"], "gsm7");
    assert_eq!(sent["segments"], 1);
    assert_eq!(sent["metadata"]["order"], "17");
    let id = sent["id"].as_str().expect("id");
    assert!(id.len() <= 64);

    let (status, got) = api.get(ACME, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, sent, "GET shows what POST answered");
    assert_eq!(got["events"][0]["status"], "queued");

    let (status, _) = api.get(GLOBEX, &format!("/v1/messages/{id}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's id is 404, not 403"
    );
}

#[tokio::test]
async fn channels_are_inferred_and_normalised() {
    let api = api().await;
    let cases = [
        (
            json!({"to": "sip:Bob@Example.ORG", "text": "x"}),
            "sip",
            "sip:Bob@example.org",
        ),
        (
            json!({"to": "xmpp:Alice@Example.org", "text": "x"}),
            "xmpp",
            "xmpp:alice@example.org",
        ),
        (
            json!({"to": "alice@example.org", "channel": "xmpp", "text": "x"}),
            "xmpp",
            "xmpp:alice@example.org",
        ),
        (
            json!({"to": "Bob@Mail.Example.test", "text": "x", "subject": "Hi"}),
            "email",
            "Bob@mail.example.test",
        ),
        (json!({"to": "12345", "text": "x"}), "sms", "12345"),
    ];
    for (body, channel, to) in cases {
        let (status, sent) = api.post(ACME, &body.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {sent}");
        assert_eq!(sent["channel"], channel, "{body}");
        assert_eq!(sent["to"], to, "{body}");
    }
    let (_, ucs2) = api
        .post(
            ACME,
            &json!({"to": "+14155550100", "text": "ç".repeat(71)}).to_string(),
        )
        .await;
    assert_eq!(
        (ucs2["encoding"].as_str(), ucs2["segments"].as_u64()),
        (Some("ucs2"), Some(2))
    );
}

#[tokio::test]
async fn bad_input_gets_precise_problems() {
    let api = api().await;
    let long = "x".repeat(501);
    let cases: Vec<(String, StatusCode, Vec<&str>)> = vec![
        ("{\"to\": ".into(), StatusCode::BAD_REQUEST, vec![]),
        ("[1, 2]".into(), StatusCode::UNPROCESSABLE_ENTITY, vec![""]),
        (r#"{"to": "+14155550100", "text": 12}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["text"]),
        (r#"{"to": "+14155550100"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["text"]),
        (r#"{"to": "+14155550100", "text": "x", "colour": "red"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["colour"]),
        (r#"{"to": "+14155550100", "text": "x", "channel": "fax"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["channel"]),
        (r#"{"to": "not an address!", "text": "x"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["to"]),
        (r#"{"to": "+123", "text": ""}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["text", "to"]),
        (format!(r#"{{"to": "+14155550100", "text": "{long}"}}"#), StatusCode::UNPROCESSABLE_ENTITY, vec!["text"]),
        (r#"{"to": "+14155550100", "text": "x", "channel": "sms", "from": "bob@example.org"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["from"]),
        (r#"{"to": "+14155550100", "text": "x", "send_at": "tomorrow"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["send_at"]),
        (r#"{"to": "+14155550100", "text": "x", "validity_seconds": 0}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["validity_seconds"]),
        (r#"{"to": "+14155550100", "text": "x", "failover": [{"to": "nope!", "after_seconds": 0}]}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, vec!["failover[0].after_seconds", "failover[0].to"]),
    ];
    for (body, expected, expected_fields) in cases {
        let (status, problem) = api.post(ACME, &body).await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert_eq!(problem["status"], expected.as_u16(), "{body}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{problem}"
        );
        let mut got = fields(&problem);
        got.sort();
        assert_eq!(got, expected_fields, "{body}: {problem}");
    }
    // Nothing of that was stored.
    let (_, list) = api.get(ACME, "/v1/messages").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn transport_level_refusals() {
    let api = api().await;
    // Over [http] max_body_bytes.
    let big = json!({"to": "+14155550100", "text": "x".repeat(5000)}).to_string();
    let (status, response, problem) = api.call(post(ACME, &big, None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    // No key, a wrong key, a wrong scheme.
    for auth in [None, Some("Bearer sk_nobody_at_all"), Some("Basic abc")] {
        let mut request = Request::get("/v1/messages");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let (status, response, _) = api
            .call(request.body(Body::empty()).expect("request"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    // Not JSON.
    let request = Request::post("/v1/messages")
        .header(header::AUTHORIZATION, format!("Bearer {ACME}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .expect("request");
    assert_eq!(
        api.call(request).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    // Unknown path and method.
    assert_eq!(api.get(ACME, "/v1/nothing").await.0, StatusCode::NOT_FOUND);
    let request = Request::put("/v1/messages")
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.call(request).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let api = api().await;
    let body = r#"{"to": "+14155550100", "text": "x"}"#;
    assert_eq!(api.post(SLOW, body).await.0, StatusCode::ACCEPTED);
    assert_eq!(api.post(SLOW, body).await.0, StatusCode::ACCEPTED);
    let (status, response, problem) = api.call(post(SLOW, body, None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(retry, 1);
    // Another tenant is not slowed down.
    assert_eq!(api.post(ACME, body).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn idempotency_key_semantics() {
    let api = api().await;
    let body = r#"{"to": "+14155550100", "text": "pay 10"}"#;
    let (s1, _, first) = api.call(post(ACME, body, Some("order-1"))).await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    // Same body (other spacing and key order): the first answer, same id.
    let same = r#"{ "text": "pay 10",  "to": "+14155550100" }"#;
    let (s2, _, second) = api.call(post(ACME, same, Some("order-1"))).await;
    assert_eq!(s2, StatusCode::ACCEPTED);
    assert_eq!(second, first);
    // Another body: refused.
    let (s3, _, problem) = api
        .call(post(
            ACME,
            r#"{"to": "+14155550100", "text": "pay 99"}"#,
            Some("order-1"),
        ))
        .await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["Idempotency-Key"]);
    // The same key is another tenant's own key.
    let (s4, _, theirs) = api.call(post(GLOBEX, body, Some("order-1"))).await;
    assert_eq!(s4, StatusCode::ACCEPTED);
    assert_ne!(theirs["id"], first["id"]);
    // While the first request with a key is in flight, a second one is told so.
    api.state
        .in_flight
        .lock()
        .expect("lock")
        .insert(("acme".into(), "order-2".into()));
    let (s5, _, problem) = api.call(post(ACME, body, Some("order-2"))).await;
    assert_eq!(s5, StatusCode::CONFLICT, "{problem}");
    // A bad key.
    let (s6, _, _) = api.call(post(ACME, body, Some(&"k".repeat(300)))).await;
    assert_eq!(s6, StatusCode::BAD_REQUEST);
    let (_, list) = api.get(ACME, "/v1/messages").await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "one message for all the repeats"
    );
}

#[tokio::test]
async fn attachments_for_email_are_stored_with_the_message() {
    let api = api().await;
    let body = json!({
        "to": "bob@example.org",
        "text": "the invoice",
        "attachments": [
            {"name": "invoice.pdf", "content_type": "application/pdf", "data": "JVBERgD/"},
            {"name": "notes.txt", "data": ""}
        ]
    })
    .to_string();
    let (status, _, sent) = api.call(post(ACME, &body, Some("inv-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(
        sent["attachments"],
        json!([
            {"name": "invoice.pdf", "content_type": "application/pdf", "size": 6},
            {"name": "notes.txt", "content_type": "application/octet-stream", "size": 0}
        ])
    );
    let id = sent["id"].as_str().expect("id");
    let request = Request::get(format!("/v1/messages/{id}/attachments/0"))
        .header(header::AUTHORIZATION, format!("Bearer {ACME}"))
        .body(Body::empty())
        .expect("request");
    let response = switchboard::api::app(api.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/pdf");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(bytes.as_ref(), &[0x25, 0x50, 0x44, 0x46, 0x00, 0xff]);
    let stored = api.state.store.attachments_of(id).await.expect("store");
    assert_eq!(stored.len(), 2);

    // A repeat with the same key and body is the first message; its bytes stay, and
    // the repeat leaves none of its own behind.
    let (status, _, again) = api.call(post(ACME, &body, Some("inv-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again, sent);
    assert_eq!(
        api.state
            .store
            .attachments_of(id)
            .await
            .expect("store")
            .len(),
        2
    );
    let orphans: i64 = {
        let pool = sqlx::SqlitePool::connect(&api.state.config.database.url)
            .await
            .expect("pool");
        sqlx::query_scalar("SELECT COUNT(*) FROM attachments WHERE message_id <> ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    assert_eq!(orphans, 0, "the repeat's bytes were removed");
    // Another attachment under the same key is another body.
    let other = body.replace("JVBERgD/", "JVBERgD+");
    let (status, _, problem) = api.call(post(ACME, &other, Some("inv-1"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["Idempotency-Key"]);
}

#[tokio::test]
async fn bad_attachments_get_precise_problems() {
    let api = api().await;
    let attach = |to: &str, attachment: Value| {
        json!({"to": to, "text": "x", "attachments": [attachment]}).to_string()
    };
    let good = json!({"name": "a.txt", "content_type": "text/plain", "data": "aGk="});
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            attach(
                "bob@example.org",
                json!({"name": "a.txt", "data": "not base64!"}),
            ),
            vec!["attachments[0].data"],
        ),
        (
            attach("bob@example.org", json!({"name": "a.txt", "data": "aGk"})),
            vec!["attachments[0].data"],
        ),
        (attach("+14155550100", good.clone()), vec!["attachments"]),
        (
            attach("sip:bob@example.org", good.clone()),
            vec!["attachments"],
        ),
        (
            attach("xmpp:bob@example.org", good.clone()),
            vec!["attachments"],
        ),
        (
            attach("bob@example.org", json!({"name": "", "data": "aGk="})),
            vec!["attachments[0].name"],
        ),
        (
            attach("bob@example.org", json!({"name": "a\nb", "data": "aGk="})),
            vec!["attachments[0].name"],
        ),
        (
            attach(
                "bob@example.org",
                json!({"name": "a", "content_type": "pdf", "data": "aGk="}),
            ),
            vec!["attachments[0].content_type"],
        ),
        (
            attach(
                "bob@example.org",
                json!({"name": "a", "data": "aGk=", "size": 2}),
            ),
            vec!["attachments[0].size"],
        ),
        (
            attach("bob@example.org", json!({"data": "aGk="})),
            vec!["attachments[0].name"],
        ),
    ];
    for (body, expected_fields) in cases {
        let (status, problem) = api.post(ACME, &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        let mut got = fields(&problem);
        got.sort();
        assert_eq!(got, expected_fields, "{body}: {problem}");
    }
    // The base64 counts against [http] max_body_bytes (4096 here).
    let big = attach(
        "bob@example.org",
        json!({"name": "big.bin", "data": "A".repeat(4096)}),
    );
    let (status, _, problem) = api.call(post(ACME, &big, None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    // Nothing of that was stored.
    let (_, list) = api.get(ACME, "/v1/messages").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn cancel_only_while_queued() {
    let api = api().await;
    let (_, sent) = api
        .post(ACME, r#"{"to": "+14155550100", "text": "x"}"#)
        .await;
    let id = sent["id"].as_str().expect("id");
    let delete = |key: &str| {
        Request::delete(format!("/v1/messages/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(api.call(delete(GLOBEX)).await.0, StatusCode::NOT_FOUND);
    let (status, _, canceled) = api.call(delete(ACME)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["events"][1]["status"], "canceled");
    let (status, _, problem) = api.call(delete(ACME)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
}

#[tokio::test]
async fn list_filters_search_and_cursors() {
    let api = api().await;
    for i in 0..5 {
        api.post(
            ACME,
            &json!({"to": "+14155550100", "text": format!("invoice {i} ready")}).to_string(),
        )
        .await;
        api.post(
            ACME,
            &json!({"to": "sip:bob@example.org", "text": format!("call me {i}")}).to_string(),
        )
        .await;
    }
    api.post(
        GLOBEX,
        r#"{"to": "+14155550100", "text": "invoice elsewhere"}"#,
    )
    .await;

    let (status, page) = api.get(ACME, "/v1/messages?channel=sms&limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let mut seen: Vec<String> = Vec::new();
    let mut page = page;
    loop {
        let data = page["data"].as_array().expect("data");
        assert!(
            data.iter()
                .all(|m| m["channel"] == "sms" && m["tenant"] == "acme")
        );
        seen.extend(
            data.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned)),
        );
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        let (status, next) = api
            .get(
                ACME,
                &format!("/v1/messages?channel=sms&limit=2&cursor={cursor}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{next}");
        page = next;
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let (_, found) = api.get(ACME, "/v1/messages?q=invoice%203").await;
    let found = found["data"].as_array().expect("data");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["text"], "invoice 3 ready");

    let (_, to) = api
        .get(
            ACME,
            "/v1/messages?to=sip:bob@EXAMPLE.org&direction=outbound&status=queued",
        )
        .await;
    assert_eq!(to["data"].as_array().map(Vec::len), Some(5));

    // A cursor is bound to its filters, and cannot be forged.
    let (_, first) = api.get(ACME, "/v1/messages?channel=sms&limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (status, problem) = api
        .get(
            ACME,
            &format!("/v1/messages?channel=sip&limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&problem), ["cursor"]);
    let forged = format!("x{cursor}");
    let (status, problem) = api
        .get(ACME, &format!("/v1/messages?channel=sms&cursor={forged}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&problem), ["cursor"]);

    // Bad filters name themselves.
    let (status, problem) = api
        .get(
            ACME,
            "/v1/messages?status=lost&limit=0&since=yesterday&channel=fax&colour=red",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&problem),
        ["channel", "colour", "limit", "since", "status"]
    );
}

#[tokio::test]
async fn system_endpoints() {
    let api = api().await;
    let (status, _) = api.get(ACME, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = api.get(ACME, "/readyz").await;
    assert_eq!(
        (status, ready["database"].as_str()),
        (StatusCode::OK, Some("sqlite"))
    );
    api.post(ACME, r#"{"to": "+14155550100", "text": "x"}"#)
        .await;
    let request = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    let response = switchboard::api::app(api.state.clone())
        .oneshot(request)
        .await
        .expect("metrics");
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(
        text.contains("switchboard_messages_accepted_total{channel=\"sms\"} 1"),
        "{text}"
    );
    assert!(text.contains("switchboard_outbox_depth 1"), "{text}");
    let (status, spec) = api.get(ACME, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/v1/messages"]["post"].is_object());
    let request = Request::get("/docs").body(Body::empty()).expect("request");
    let (status, _, _) = api.call(request).await;
    assert_eq!(status, StatusCode::OK);
}

/// The checked-in spec is what the code generates. To refresh it:
/// `cargo run -q -p switchboard -- openapi > openapi/openapi.json`
#[test]
fn openapi_file_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == switchboard::api::openapi_json(),
        "openapi/openapi.json is stale: run `cargo run -q -p switchboard -- openapi > openapi/openapi.json`"
    );
}
