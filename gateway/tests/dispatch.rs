//! Outbound dispatch through the adapter interface, with adapters defined here (the
//! gateway ships none of these): retries, permanent failures, delivery reports that
//! come early, failover, expiry, scheduling, cancel, routing and connector limits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchboard::dispatch::StoreReports;
use switchboard::state::AppState;
use switchboard_adapter::{
    Adapter, BoxFuture, ConnectorState, OutboundAttachment, Reports, SendOutcome, StatusReport,
};
use switchboard_model::{Channel, Message, MessageStatus};
use tower::ServiceExt;

const KEY: &str = "sk_dispatch_test";

/// What a test adapter answers, in turn; when the script runs out, `sent`.
#[derive(Clone)]
enum Step {
    Sent,
    Delivered,
    Transient,
    Permanent(&'static str),
    /// Report `delivered` for the upstream id before answering (the report wins the race).
    ReportFirst,
    /// Never answer (a send that hangs).
    Hang,
}

struct TestAdapter {
    name: &'static str,
    channel: Channel,
    script: Mutex<VecDeque<Step>>,
    sent: Mutex<Vec<Message>>,
    up: std::sync::atomic::AtomicBool,
    /// How many times its state was asked: the router asks it for each message it
    /// routes through this connector.
    looked: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    concurrency: usize,
    reports: Mutex<Option<Arc<dyn Reports>>>,
    counter: AtomicUsize,
    /// Whether it says it carries attachments (as the email connector does).
    carries: std::sync::atomic::AtomicBool,
    /// The attachment bytes each `send_with_attachments` got, in order.
    parts: Mutex<Vec<Vec<OutboundAttachment>>>,
}

impl TestAdapter {
    fn new(name: &'static str, channel: Channel, script: Vec<Step>) -> Arc<TestAdapter> {
        Arc::new(TestAdapter {
            name,
            channel,
            script: Mutex::new(script.into()),
            sent: Mutex::new(Vec::new()),
            up: std::sync::atomic::AtomicBool::new(true),
            looked: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            concurrency: 64,
            reports: Mutex::new(None),
            counter: AtomicUsize::new(0),
            carries: std::sync::atomic::AtomicBool::new(false),
            parts: Mutex::new(Vec::new()),
        })
    }

    fn sent_to(&self) -> Vec<String> {
        self.sent
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m.to.clone())
            .collect()
    }
}

impl Adapter for TestAdapter {
    fn name(&self) -> &str {
        self.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    fn state(&self) -> ConnectorState {
        self.looked.fetch_add(1, Ordering::SeqCst);
        if self.up.load(Ordering::SeqCst) {
            ConnectorState::Bound
        } else {
            ConnectorState::Down
        }
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn carries_attachments(&self) -> bool {
        self.carries.load(Ordering::SeqCst)
    }

    fn send_with_attachments<'a>(
        &'a self,
        message: &'a Message,
        attachments: &'a [OutboundAttachment],
    ) -> BoxFuture<'a, SendOutcome> {
        self.parts.lock().expect("lock").push(attachments.to_vec());
        self.send(message)
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let step = self
                .script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(Step::Sent);
            let upstream = format!(
                "{}-{}",
                self.name,
                self.counter.fetch_add(1, Ordering::SeqCst)
            );
            // Let other sends overlap, to measure concurrency.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let outcome = match step {
                Step::Sent => SendOutcome::sent(upstream),
                Step::Delivered => SendOutcome::Accepted {
                    upstream_id: Some(upstream),
                    status: MessageStatus::Delivered,
                    metadata: vec![("call_id".into(), "abc@test".into())],
                    parts: vec![],
                },
                Step::Transient => SendOutcome::Transient {
                    code: "busy".into(),
                    detail: "try later".into(),
                    retry_after: Some(Duration::from_millis(20)),
                },
                Step::Permanent(code) => SendOutcome::Permanent {
                    code: code.into(),
                    detail: "refused by the far side".into(),
                },
                Step::ReportFirst => {
                    let reports = self.reports.lock().expect("lock").clone().expect("reports");
                    reports
                        .report(StatusReport {
                            connector: self.name.into(),
                            upstream_id: upstream.clone(),
                            status: MessageStatus::Delivered,
                            error: None,
                            at: chrono::Utc::now(),
                        })
                        .await
                        .expect("report kept");
                    SendOutcome::sent(upstream)
                }
                Step::Hang => std::future::pending().await,
            };
            self.sent.lock().expect("lock").push(message.clone());
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            outcome
        })
    }
}

struct Gateway {
    state: AppState,
    stop: tokio::sync::watch::Sender<bool>,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

async fn gateway_at(
    url: &str,
    extra: &str,
    adapters: Vec<Arc<TestAdapter>>,
    dir: Option<tempfile::TempDir>,
) -> Gateway {
    let toml = format!(
        r#"
[database]
url = "{url}"
[dispatch]
retry_base_ms = 10
max_attempts = 4
lease_seconds = 5
[[tenants]]
id = "acme"
api_keys = ["{KEY}"]
{extra}
"#
    );
    let config = switchboard::config::parse(&toml, []).expect("config");
    let dyn_adapters: Vec<Arc<dyn Adapter>> = adapters
        .iter()
        .map(|a| a.clone() as Arc<dyn Adapter>)
        .collect();
    let state = switchboard::build_state_with(config, dyn_adapters)
        .await
        .expect("state");
    let reports: Arc<dyn Reports> = Arc::new(StoreReports(state.store.clone()));
    for adapter in &adapters {
        *adapter.reports.lock().expect("lock") = Some(reports.clone());
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let dispatcher = Some(switchboard::dispatch::spawn(state.clone(), stopping));
    Gateway {
        state,
        stop,
        dispatcher,
        _dir: dir,
    }
}

async fn gateway(extra: &str, adapters: Vec<Arc<TestAdapter>>) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    gateway_at(&url, extra, adapters, Some(dir)).await
}

impl Gateway {
    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = switchboard::api::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("call");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn send(&self, body: Value) -> String {
        let request = Request::post("/v1/messages")
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let (status, message) = self.call(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{message}");
        message["id"].as_str().expect("id").to_owned()
    }

    async fn get(&self, uri: &str) -> Value {
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .body(Body::empty())
            .expect("request");
        self.call(request).await.1
    }

    /// Waits (on store commits, with a deadline) until the message has `status`.
    async fn until(&self, id: &str, status: &str) -> Value {
        let changes = self.state.store.changes();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = changes.notified();
            let message = self.get(&format!("/v1/messages/{id}")).await;
            if message["status"] == status {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still {} instead of {status}: {message:#}",
                message["status"]
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(d) = self.dispatcher.take() {
            d.await.expect("dispatcher");
        }
    }
}

fn statuses(message: &Value) -> Vec<String> {
    message["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sent_then_delivered_by_report() {
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![Step::Sent]);
    let gw = gateway("", vec![sms.clone()]).await;
    let id = gw.send(json!({"to": "+14155550100", "text": "hi"})).await;
    let sent = gw.until(&id, "sent").await;
    assert_eq!(sent["connector"], "upstream-a");
    assert_eq!(sent["upstream_id"], "upstream-a-0");
    StoreReports(gw.state.store.clone())
        .report(StatusReport {
            connector: "upstream-a".into(),
            upstream_id: "upstream-a-0".into(),
            status: MessageStatus::Delivered,
            error: None,
            at: chrono::Utc::now(),
        })
        .await
        .expect("report");
    let delivered = gw.until(&id, "delivered").await;
    assert_eq!(
        statuses(&delivered),
        ["queued", "sending", "sent", "delivered"]
    );
    assert_eq!(sms.sent_to(), ["+14155550100"]);
    // A duplicate report changes nothing.
    let again = gw
        .state
        .store
        .report(switchboard_store::Report {
            connector: "upstream-a".into(),
            upstream_id: "upstream-a-0".into(),
            status: MessageStatus::Delivered,
            error: None,
            at: chrono::Utc::now(),
        })
        .await
        .expect("report");
    assert!(
        matches!(again, switchboard_store::ReportOutcome::Ignored(_)),
        "{again:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_then_sent() {
    let sms = TestAdapter::new(
        "upstream-a",
        Channel::Sms,
        vec![Step::Transient, Step::Transient, Step::Delivered],
    );
    let gw = gateway("", vec![sms.clone()]).await;
    let id = gw.send(json!({"to": "+14155550100", "text": "hi"})).await;
    let done = gw.until(&id, "delivered").await;
    assert_eq!(
        statuses(&done),
        [
            "queued",
            "sending",
            "queued",
            "sending",
            "queued",
            "sending",
            "delivered"
        ]
    );
    assert_eq!(done["metadata"]["call_id"], "abc@test");
    assert!(
        done["events"][2]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("busy"),
        "{done:#}"
    );
    assert_eq!(sms.sent.lock().expect("lock").len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn permanent_failure_and_retries_exhausted_fail() {
    let sms = TestAdapter::new(
        "upstream-a",
        Channel::Sms,
        vec![
            Step::Permanent("0x0000000B"),
            Step::Transient,
            Step::Transient,
            Step::Transient,
            Step::Transient,
        ],
    );
    let gw = gateway("", vec![sms.clone()]).await;
    let first = gw.send(json!({"to": "+14155550100", "text": "a"})).await;
    let failed = gw.until(&first, "failed").await;
    assert_eq!(failed["error"]["code"], "0x0000000B");
    let second = gw.send(json!({"to": "+14155550101", "text": "b"})).await;
    let exhausted = gw.until(&second, "failed").await;
    assert_eq!(exhausted["error"]["code"], "busy");
    assert!(
        exhausted["error"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("gave up after 4 attempts"),
        "{exhausted:#}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_report_before_the_outcome_is_kept_and_applied() {
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![Step::ReportFirst]);
    let gw = gateway("", vec![sms.clone()]).await;
    let id = gw.send(json!({"to": "+14155550100", "text": "race"})).await;
    let delivered = gw.until(&id, "delivered").await;
    assert_eq!(
        statuses(&delivered),
        ["queued", "sending", "sent", "delivered"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn failover_on_failure_and_on_timeout() {
    let sms = TestAdapter::new(
        "upstream-a",
        Channel::Sms,
        vec![Step::Permanent("rejected"), Step::Sent],
    );
    let xmpp = TestAdapter::new("xmpp", Channel::Xmpp, vec![Step::Sent, Step::Sent]);
    let gw = gateway("", vec![sms.clone(), xmpp.clone()]).await;

    // Fails on SMS, moves on to XMPP.
    let id = gw
        .send(json!({"to": "+14155550100", "text": "x", "failover": [{"to": "xmpp:alice@example.org", "after_seconds": 60}]}))
        .await;
    let sent = gw.until(&id, "sent").await;
    assert_eq!(sent["to"], "xmpp:alice@example.org");
    assert_eq!(sent["channel"], "xmpp");
    assert_eq!(
        statuses(&sent),
        ["queued", "sending", "failed", "queued", "sending", "sent"]
    );

    // Sent on SMS but not delivered within a second: on to XMPP.
    let id = gw
        .send(json!({"to": "+14155550102", "text": "y", "failover": [{"to": "xmpp:bob@example.org", "after_seconds": 1}]}))
        .await;
    gw.until(&id, "sent").await;
    let moved = gw.until(&id, "queued").await;
    assert!(
        statuses(&moved).contains(&"undelivered".to_owned()),
        "{moved:#}"
    );
    let sent = gw.until(&id, "sent").await;
    assert_eq!(sent["to"], "xmpp:bob@example.org");
    assert_eq!(
        xmpp.sent_to(),
        ["xmpp:alice@example.org", "xmpp:bob@example.org"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn validity_expires_while_the_connector_is_down() {
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    sms.up.store(false, Ordering::SeqCst);
    let gw = gateway("", vec![sms.clone()]).await;
    let id = gw
        .send(json!({"to": "+14155550100", "text": "x", "validity_seconds": 1}))
        .await;
    let expired = gw.until(&id, "expired").await;
    assert_eq!(expired["error"]["code"], "expired");
    assert!(sms.sent_to().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn scheduled_and_canceled_messages() {
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    sms.up.store(false, Ordering::SeqCst);
    let gw = gateway("", vec![sms.clone()]).await;
    // Queued while the connector is down, then canceled: never sent.
    let canceled = gw
        .send(json!({"to": "+14155550100", "text": "never"}))
        .await;
    let request = Request::delete(format!("/v1/messages/{canceled}"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(gw.call(request).await.0, StatusCode::OK);
    // Scheduled: not sent before its time.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let scheduled = gw
        .send(json!({"to": "+14155550101", "text": "later", "send_at": at.to_rfc3339()}))
        .await;
    sms.up.store(true, Ordering::SeqCst);
    let sent = gw.until(&scheduled, "sent").await;
    let sending_at: chrono::DateTime<chrono::Utc> = sent["events"][1]["at"]
        .as_str()
        .expect("at")
        .parse()
        .expect("time");
    // Times are kept to the microsecond.
    assert!(
        sending_at.timestamp_micros() >= at.timestamp_micros(),
        "sent at {sending_at}, scheduled for {at}"
    );
    assert_eq!(sms.sent_to(), ["+14155550101"]);
    assert_eq!(
        gw.get(&format!("/v1/messages/{canceled}")).await["status"],
        "canceled"
    );
    gw.stop().await;
}

#[tokio::test]
async fn routing_decides_the_connector_or_fails_with_no_route() {
    let a = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    let b = TestAdapter::new("upstream-b", Channel::Sms, vec![]);
    // The two SMS connectors are configured (the test adapters stand in for them), and
    // one route chooses between them.
    let routes = r#"
[[smpp.connectors]]
name = "upstream-a"
address = "127.0.0.1:1"
system_id = "a"
password = "a"
tenant = "acme"

[[smpp.connectors]]
name = "upstream-b"
address = "127.0.0.1:1"
system_id = "b"
password = "b"
tenant = "acme"

[[routes]]
match = { to = "+1555*" }
connector = "upstream-b"
"#;
    let gw = gateway(routes, vec![a.clone(), b.clone()]).await;
    let routed = gw.send(json!({"to": "+15550001234", "text": "x"})).await;
    assert_eq!(gw.until(&routed, "sent").await["connector"], "upstream-b");
    // Two SMS connectors and no route for this number: no_route.
    let lost = gw.send(json!({"to": "+442079460958", "text": "x"})).await;
    let failed = gw.until(&lost, "failed").await;
    assert_eq!(failed["error"]["code"], "no_route");
    let connectors = gw.get("/v1/connectors").await;
    let names: Vec<_> = connectors["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("upstream-a"), json!("upstream-b")]);
    assert_eq!(connectors["data"][1]["accepted"], 1);
    let table = gw.get("/v1/routes").await;
    assert_eq!(table["data"][0]["connector"], "upstream-b");
    gw.stop().await;
}

#[tokio::test]
async fn a_channel_without_a_connector_fails_with_no_route() {
    // No connector at all: an SMS cannot go anywhere.
    let gw = gateway("", vec![]).await;
    let sms = gw.send(json!({"to": "+14155550100", "text": "x"})).await;
    assert_eq!(gw.until(&sms, "failed").await["error"]["code"], "no_route");
    gw.stop().await;

    // An XMPP connector only: an SMS still fails, a message to a JID goes, and an SMS
    // that a route rewrites to a JID goes through the XMPP connector.
    let xmpp = TestAdapter::new("xmpp", Channel::Xmpp, vec![]);
    let routes = r#"
[[routes]]
match = { to = "+1555*" }
rewrite_to = "xmpp:alice@localhost"
"#;
    let gw = gateway(routes, vec![xmpp.clone()]).await;
    let sms = gw.send(json!({"to": "+14155550100", "text": "x"})).await;
    let jid = gw
        .send(json!({"to": "xmpp:bob@localhost", "text": "x"}))
        .await;
    let rewritten = gw.send(json!({"to": "+15550001234", "text": "x"})).await;
    assert_eq!(gw.until(&sms, "failed").await["error"]["code"], "no_route");
    assert_eq!(gw.until(&jid, "sent").await["connector"], "xmpp");
    let rewritten = gw.until(&rewritten, "sent").await;
    assert_eq!(rewritten["to"], "xmpp:alice@localhost");
    assert_eq!(rewritten["connector"], "xmpp");
    gw.stop().await;
}

#[tokio::test]
async fn a_connector_never_has_more_in_flight_than_its_concurrency() {
    let mut adapter = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    Arc::get_mut(&mut adapter).expect("unique").concurrency = 3;
    let gw = gateway("", vec![adapter.clone()]).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            gw.send(json!({"to": format!("+1415555{i:04}"), "text": "x"}))
                .await,
        );
    }
    for id in &ids {
        gw.until(id, "sent").await;
    }
    assert_eq!(adapter.sent.lock().expect("lock").len(), 30);
    let max = adapter.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max} sends in flight at once");
    gw.stop().await;
}

#[tokio::test]
async fn a_claim_that_fails_gives_back_the_send_slot_its_router_took() {
    let mut adapter = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    Arc::get_mut(&mut adapter).expect("unique").concurrency = 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let gw = gateway_at(&url, "", vec![adapter.clone()], Some(dir)).await;
    // Every claim's transaction fails while this trigger is there: it refuses the
    // lease the claim writes on the outbox row.
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("second connection");
    sqlx::Executor::execute(
        &mut db,
        "CREATE TRIGGER refuse_lease BEFORE UPDATE OF lease_owner ON outbox \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .await
    .expect("trigger");
    // Due shortly, so that a claim takes it, not the hand-off at accept.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let id = gw
        .send(json!({"to": "+14155550100", "text": "x", "send_at": at.to_rfc3339()}))
        .await;
    // The router has taken the connector's one slot for it, inside a claim.
    let changes = gw.state.store.changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while adapter.looked.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no claim routed it");
        let _ = tokio::time::timeout(Duration::from_millis(50), changes.notified()).await;
    }
    // Dropping the trigger waits for the write lock, so for that claim to fail.
    sqlx::Executor::execute(&mut db, "DROP TRIGGER refuse_lease")
        .await
        .expect("drop trigger");
    let sent = gw.until(&id, "sent").await;
    assert_eq!(statuses(&sent), ["queued", "sending", "sent"]);
    assert_eq!(adapter.sent_to(), ["+14155550100"]);
    gw.stop().await;
}

#[tokio::test]
async fn an_interrupted_attempt_is_taken_again_after_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    // The first gateway's send hangs: it dies (is dropped) without an outcome.
    let hang = TestAdapter::new("upstream-a", Channel::Sms, vec![Step::Hang]);
    let first = gateway_at(&url, "", vec![hang.clone()], None).await;
    let id = first.send(json!({"to": "+14155550100", "text": "x"})).await;
    first.until(&id, "sending").await;
    if let Some(d) = &first.dispatcher {
        d.abort();
    }
    drop(first);
    // A second gateway on the same database takes it once the 5 s lease has run out.
    let ok = TestAdapter::new("upstream-a", Channel::Sms, vec![Step::Sent]);
    let second = gateway_at(&url, "", vec![ok.clone()], Some(dir)).await;
    let sent = second.until(&id, "sent").await;
    assert_eq!(statuses(&sent), ["queued", "sending", "sending", "sent"]);
    assert!(
        sent["events"][2]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{sent:#}"
    );
    assert_eq!(ok.sent_to(), ["+14155550100"]);
    second.stop().await;
}

/// The same dispatch path on PostgreSQL (leases with `FOR UPDATE SKIP LOCKED`), when
/// `TEST_DATABASE_URL` points at one.
#[tokio::test]
async fn postgres_dispatch_retries_fails_over_and_applies_reports() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL run skipped");
        return;
    };
    let schema = format!("dispatch_{}", uuid_hex());
    let admin = sqlx::PgPool::connect(&base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let sms = TestAdapter::new(
        "upstream-a",
        Channel::Sms,
        vec![Step::Transient, Step::ReportFirst, Step::Permanent("gone")],
    );
    let xmpp = TestAdapter::new("xmpp", Channel::Xmpp, vec![]);
    let gw = gateway_at(&url, "", vec![sms.clone(), xmpp.clone()], None).await;
    let first = gw.send(json!({"to": "+14155550100", "text": "a"})).await;
    let delivered = gw.until(&first, "delivered").await;
    assert_eq!(
        statuses(&delivered),
        [
            "queued",
            "sending",
            "queued",
            "sending",
            "sent",
            "delivered"
        ]
    );
    let second = gw
        .send(json!({"to": "+14155550101", "text": "b", "failover": [{"to": "xmpp:carol@example.org", "after_seconds": 30}]}))
        .await;
    let sent = gw.until(&second, "sent").await;
    assert_eq!(sent["to"], "xmpp:carol@example.org");
    gw.stop().await;
}

fn uuid_hex() -> String {
    format!("{:016x}{:08x}", rand_u64(), std::process::id())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    h.finish()
}

fn inbound(channel: Channel, from: &str, to: &str) -> switchboard_adapter::Inbound {
    switchboard_adapter::Inbound {
        channel,
        connector: channel.as_str().into(),
        tenant: "acme".into(),
        from: from.into(),
        to: to.into(),
        text: "hello from outside".into(),
        subject: None,
        metadata: vec![("thread".into(), "t1".into())],
        keep_unmatched: false,
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn inbound_messages_are_received_bridged_or_refused() {
    use switchboard_adapter::{Ingest, IngestOutcome};
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    let xmpp = TestAdapter::new("xmpp", Channel::Xmpp, vec![]);
    let extra = r#"
[[tenants]]
id = "globex"
api_keys = ["sk_globex_dispatch"]
addresses = ["+15550100"]
"#;
    let gw = gateway(extra, vec![sms.clone(), xmpp.clone()]).await;
    let ingest = switchboard::ingest::GatewayIngest(gw.state.clone());

    // To an address a tenant owns: received by that tenant.
    let owned = ingest
        .receive(inbound(Channel::Sms, "+14155550123", "+15550100"))
        .await
        .expect("ingest");
    let IngestOutcome::Received { id } = owned else {
        panic!("{owned:?}")
    };
    let stored = gw
        .state
        .store
        .get_message("globex", &id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(stored.status, MessageStatus::Received);
    assert_eq!(
        stored.metadata.get("source").map(String::as_str),
        Some("sms")
    );

    // An XMPP user writing to an SMS number: bridged out through SMS for the listener's tenant.
    let bridged = ingest
        .receive(inbound(
            Channel::Xmpp,
            "xmpp:alice@example.org",
            "+14155550100",
        ))
        .await
        .expect("ingest");
    let IngestOutcome::Forwarded { id } = bridged else {
        panic!("{bridged:?}")
    };
    let sent = gw.until(&id, "sent").await;
    assert_eq!(sent["tenant"], "acme");
    // SMS cannot carry an XMPP sender, and acme has no SMS address of its own.
    assert_eq!(sent["from"], Value::Null);
    assert_eq!(sent["metadata"]["original_from"], "xmpp:alice@example.org");
    assert_eq!(sent["metadata"]["source"], "xmpp");
    assert_eq!(sms.sent_to(), ["+14155550100"]);

    // Same channel, nobody's address: refused in the channel's own way, or kept when asked.
    let unknown = ingest
        .receive(inbound(Channel::Sms, "+14155550123", "+14155559999"))
        .await
        .expect("ingest");
    assert_eq!(unknown, IngestOutcome::Unknown);
    let mut keep = inbound(Channel::Sms, "+14155550123", "+14155559999");
    keep.keep_unmatched = true;
    assert!(matches!(
        ingest.receive(keep).await.expect("ingest"),
        IngestOutcome::Received { .. }
    ));

    // Garbage: refused, never stored.
    let bad = ingest
        .receive(inbound(Channel::Sms, "+14155550123", "not an address!"))
        .await
        .expect("ingest");
    assert!(
        matches!(bad, IngestOutcome::Refused { ref code, .. } if code == "invalid_address"),
        "{bad:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn core_handles_for_channel_sessions() {
    use switchboard_adapter::{
        Availability, ChangeOutcome, NoticeKind, PresenceUpdate, Recipient, Submission,
        SubmitOutcome,
    };
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![Step::Delivered]);
    let gw = gateway("addresses = [\"+15550100\"]", vec![sms.clone()]).await;
    let (_stop, shutdown) = switchboard_adapter::Shutdown::pair();
    let core = switchboard::core::core(&gw.state, shutdown);
    let recipient = Recipient {
        key: "smpp:carrier1".into(),
        tenant: "acme".into(),
    };
    core.notices.register(&recipient).await.expect("register");

    // A submission asking for a receipt: stored, sent, and its final status noticed.
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("notify".to_owned(), "smpp:carrier1".to_owned());
    let submitted = core
        .submit
        .submit(Submission {
            tenant: "acme".into(),
            from: Some("+15550100".into()),
            to: "+1 415 555 0100".into(),
            text: "receipt please".into(),
            metadata,
            ..Submission::default()
        })
        .await
        .expect("submit");
    let SubmitOutcome::Accepted { id } = submitted else {
        panic!("{submitted:?}")
    };
    let delivered = gw.until(&id, "delivered").await;
    assert_eq!(delivered["to"], "+14155550100");
    let lease = Duration::from_secs(60);
    let day = Duration::from_secs(86_400);
    let notices = core
        .notices
        .take(&recipient, 10, lease, day)
        .await
        .expect("take");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].kind, NoticeKind::Status);
    assert_eq!(notices[0].message.id.as_str(), id);
    assert_eq!(notices[0].message.status, MessageStatus::Delivered);
    let ids: Vec<String> = notices.iter().map(|n| n.id.clone()).collect();
    core.notices.done(&ids).await.expect("done");
    assert!(
        core.notices
            .take(&recipient, 10, lease, day)
            .await
            .expect("take")
            .is_empty()
    );

    // Refusals, in our own codes.
    let refused = |outcome: SubmitOutcome| match outcome {
        SubmitOutcome::Refused { code, .. } => code,
        other => panic!("{other:?}"),
    };
    let bad_to = Submission {
        tenant: "acme".into(),
        to: "not a number!".into(),
        text: "x".into(),
        ..Submission::default()
    };
    assert_eq!(
        refused(core.submit.submit(bad_to).await.expect("submit")),
        "invalid_address"
    );
    let nobody = Submission {
        tenant: "nobody".into(),
        to: "+14155550100".into(),
        text: "x".into(),
        ..Submission::default()
    };
    assert_eq!(
        refused(core.submit.submit(nobody).await.expect("submit")),
        "unknown_tenant"
    );

    // Query, replace and cancel, each only for the owning tenant and while queued.
    assert!(
        core.submit
            .query("acme", &id)
            .await
            .expect("query")
            .is_some()
    );
    assert!(
        core.submit
            .query("globex", &id)
            .await
            .expect("query")
            .is_none()
    );
    assert_eq!(
        core.submit.cancel("acme", &id).await.expect("cancel"),
        ChangeOutcome::TooLate
    );
    let later = Submission {
        tenant: "acme".into(),
        to: "+14155550101".into(),
        text: "first words".into(),
        send_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..Submission::default()
    };
    let SubmitOutcome::Accepted { id: later } = core.submit.submit(later).await.expect("submit")
    else {
        panic!("not accepted")
    };
    assert_eq!(
        core.submit
            .replace("acme", &later, "second words".into())
            .await
            .expect("replace"),
        ChangeOutcome::Done
    );
    let replaced = core
        .submit
        .query("acme", &later)
        .await
        .expect("query")
        .expect("found");
    assert_eq!(replaced.text, "second words");
    assert_eq!(
        core.submit.cancel("globex", &later).await.expect("cancel"),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        core.submit.cancel("acme", &later).await.expect("cancel"),
        ChangeOutcome::Done
    );
    gw.until(&later, "canceled").await;

    // Presence, served by the API.
    core.presence
        .update(PresenceUpdate {
            tenant: "acme".into(),
            address: "xmpp:alice@localhost".into(),
            availability: Availability::Away,
            status: Some("lunch".into()),
            at: chrono::Utc::now(),
        })
        .await
        .expect("presence");
    let presence = gw.get("/v1/presence/xmpp:alice@localhost").await;
    assert_eq!(presence["status"], "away");
    assert_eq!(presence["note"], "lunch");
    assert_eq!(presence["address"], "xmpp:alice@localhost");
    assert!(presence["updated_at"].is_string(), "{presence}");
    let unknown = gw.get("/v1/presence/xmpp:bob@localhost").await;
    assert_eq!(unknown["status"], "unknown", "{unknown}");
    assert_eq!(unknown["address"], "xmpp:bob@localhost");
    assert!(unknown["note"].is_null() && unknown["updated_at"].is_null());

    // An inbound message with an attachment: the bytes come back from the API.
    let mut with_file = inbound(Channel::Sms, "+14155550123", "+15550100");
    with_file.attachments = vec![switchboard_adapter::InboundAttachment {
        name: Some("notes.txt".into()),
        content_type: "text/plain".into(),
        data: b"attached bytes".to_vec(),
    }];
    let received = core.ingest.receive(with_file).await.expect("ingest");
    let switchboard_adapter::IngestOutcome::Received { id: received } = received else {
        panic!("{received:?}")
    };
    let message = gw.get(&format!("/v1/messages/{received}")).await;
    assert_eq!(message["attachments"][0]["name"], "notes.txt");
    assert_eq!(message["attachments"][0]["size"], 14);
    let response = switchboard::api::app(gw.state.clone())
        .oneshot(
            Request::get(format!("/v1/messages/{received}/attachments/0"))
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&bytes[..], b"attached bytes");
    gw.stop().await;
}

#[tokio::test]
async fn replies_to_bridged_conversations_go_back() {
    use switchboard_adapter::{Ingest, IngestOutcome};
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    let email = TestAdapter::new("email", Channel::Email, vec![]);
    let xmpp = TestAdapter::new("xmpp", Channel::Xmpp, vec![]);
    let extra = r#"addresses = ["+15550100"]
[[routes]]
match = { to = "+15550199", direction = "inbound" }
rewrite_to = "xmpp:alice@localhost"
"#;
    let gw = gateway(extra, vec![sms.clone(), email.clone(), xmpp.clone()]).await;
    let ingest = switchboard::ingest::GatewayIngest(gw.state.clone());
    let forwarded = |outcome: IngestOutcome| match outcome {
        IngestOutcome::Forwarded { id } => id,
        other => panic!("{other:?}"),
    };

    // A mail to an SMS number leaves as SMS from the tenant's own number...
    let mut mail = inbound(Channel::Email, "bob@example.org", "+14155550100");
    mail.metadata = vec![("email.message_id".into(), "<m1@example.org>".into())];
    let id = forwarded(ingest.receive(mail).await.expect("ingest"));
    let sms_out = gw.until(&id, "sent").await;
    assert_eq!(sms_out["from"], "+15550100");
    assert_eq!(sms_out["metadata"]["original_from"], "bob@example.org");

    // ...and the SMS answer to that number goes back to the mail's sender, threaded.
    let answer = inbound(Channel::Sms, "+14155550100", "+15550100");
    let id = forwarded(ingest.receive(answer).await.expect("ingest"));
    let mail_out = gw.until(&id, "sent").await;
    assert_eq!(mail_out["to"], "bob@example.org");
    assert_eq!(mail_out["from"], "+14155550100");
    assert_eq!(
        mail_out["metadata"]["email.in_reply_to"],
        "<m1@example.org>"
    );
    assert_eq!(email.sent_to(), ["bob@example.org"]);

    // An SMS bridged to XMPP by a route; the XMPP user's answer leaves as SMS from the
    // number first written to.
    let sms_in = inbound(Channel::Sms, "+14155550123", "+15550199");
    let id = forwarded(ingest.receive(sms_in).await.expect("ingest"));
    let to_xmpp = gw.until(&id, "sent").await;
    assert_eq!(to_xmpp["to"], "xmpp:alice@localhost");
    assert_eq!(to_xmpp["from"], "+14155550123");
    let reply = inbound(Channel::Xmpp, "xmpp:alice@localhost", "+14155550123");
    let id = forwarded(ingest.receive(reply).await.expect("ingest"));
    let back = gw.until(&id, "sent").await;
    assert_eq!(back["to"], "+14155550123");
    assert_eq!(back["from"], "+15550199");

    // Someone else writing to the tenant's number is simply received.
    let other = inbound(Channel::Sms, "+14155550999", "+15550100");
    assert!(matches!(
        ingest.receive(other).await.expect("ingest"),
        IngestOutcome::Received { .. }
    ));
    gw.stop().await;
}

#[tokio::test]
async fn attachments_go_only_to_connectors_that_carry_them() {
    use switchboard_adapter::{InboundAttachment, Ingest, IngestOutcome};
    let email = TestAdapter::new("email", Channel::Email, vec![]);
    email.carries.store(true, Ordering::SeqCst);
    let sms = TestAdapter::new("upstream-a", Channel::Sms, vec![]);
    let gw = gateway("", vec![email.clone(), sms.clone()]).await;

    // Through the API: the bytes as posted, with their names and types.
    let id = gw
        .send(json!({"to": "bob@example.org", "text": "see attached",
            "attachments": [{"name": "a.bin", "content_type": "application/octet-stream", "data": "AAEC/w=="},
                            {"name": "b.txt", "content_type": "text/plain", "data": "aGk="}]}))
        .await;
    gw.until(&id, "sent").await;
    let parts = email.parts.lock().expect("lock").clone();
    assert_eq!(
        parts,
        [vec![
            OutboundAttachment {
                name: Some("a.bin".into()),
                content_type: "application/octet-stream".into(),
                data: vec![0, 1, 2, 255],
            },
            OutboundAttachment {
                name: Some("b.txt".into()),
                content_type: "text/plain".into(),
                data: b"hi".to_vec(),
            },
        ]]
    );

    // Bridged from SIP (a CPIM attachment) to a mail address: the bytes stored at
    // ingest, under the forwarded message's id, go with it.
    let ingest = switchboard::ingest::GatewayIngest(gw.state.clone());
    let mut cpim = inbound(Channel::Sip, "sip:alice@example.org", "carol@example.org");
    cpim.attachments = vec![InboundAttachment {
        name: None,
        content_type: "image/png".into(),
        data: vec![0x89, b'P', b'N', b'G'],
    }];
    let IngestOutcome::Forwarded { id } = ingest.receive(cpim).await.expect("ingest") else {
        panic!("not forwarded")
    };
    gw.until(&id, "sent").await;
    let last = email.parts.lock().expect("lock").last().cloned();
    assert_eq!(
        last,
        Some(vec![InboundAttachment {
            name: None,
            content_type: "image/png".into(),
            data: vec![0x89, b'P', b'N', b'G'],
        }])
    );

    // A mail with an attachment to an SMS number: SMS carries the text alone.
    let mut mail = inbound(Channel::Email, "dave@example.org", "+14155550100");
    mail.attachments = vec![InboundAttachment {
        name: Some("x.pdf".into()),
        content_type: "application/pdf".into(),
        data: b"%PDF".to_vec(),
    }];
    let IngestOutcome::Forwarded { id } = ingest.receive(mail).await.expect("ingest") else {
        panic!("not forwarded")
    };
    let sent = gw.until(&id, "sent").await;
    assert_eq!(sent["attachments"][0]["name"], "x.pdf");
    assert_eq!(sms.sent_to(), ["+14155550100"]);
    assert_eq!(email.parts.lock().expect("lock").len(), 2);

    // Bytes that are gone by the time it goes: failed, attachment_missing.
    email.up.store(false, Ordering::SeqCst);
    let id = gw
        .send(json!({"to": "bob@example.org", "text": "lost",
            "attachments": [{"name": "a.bin", "data": "AAEC"}]}))
        .await;
    gw.state
        .store
        .delete_attachments(&id)
        .await
        .expect("delete");
    email.up.store(true, Ordering::SeqCst);
    let failed = gw.until(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "attachment_missing", "{failed}");
    assert_eq!(email.parts.lock().expect("lock").len(), 2);
    gw.stop().await;
}
