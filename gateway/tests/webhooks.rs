//! Webhooks end to end with real parts: the REST API in-process on a temporary SQLite
//! database, the delivery worker, and a real HTTP receiver on 127.0.0.1 (an axum server
//! in this file) that answers as each test scripts it. Every request the receiver gets
//! is checked here with an HMAC computed directly with the `hmac` and `sha2` crates, not
//! with our `verify`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::state::AppState;
use switchboard::webhooks::WorkerOptions;
use switchboard_adapter::{Adapter, BoxFuture, SendOutcome};
use switchboard_model::{Channel, Message, MessageStatus};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

const ACME: &str = "sk_acme_webhooks";
const GLOBEX: &str = "sk_globex_webhooks";
/// How long a test waits for something that should happen within a second or two.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// The receiver.

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn event_type(&self) -> String {
        self.json()["type"].as_str().expect("type").to_owned()
    }

    fn message_id(&self) -> String {
        self.json()["data"]["id"]
            .as_str()
            .expect("data.id")
            .to_owned()
    }
}

/// What the receiver answers per path, in turn; 200 when the script runs out.
type Script = Arc<Mutex<HashMap<String, VecDeque<u16>>>>;

#[derive(Clone)]
struct ReceiverState {
    script: Script,
    hits: mpsc::UnboundedSender<Hit>,
}

struct Receiver {
    port: u16,
    script: Script,
    hits: mpsc::UnboundedReceiver<Hit>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a new port.
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Receiver::on(listener)
    }

    fn on(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let script: Script = Arc::default();
        let (tx, hits) = mpsc::unbounded_channel();
        let state = ReceiverState {
            script: script.clone(),
            hits: tx,
        };
        let app = axum::Router::new().fallback(answer).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver");
        });
        Receiver {
            port,
            script,
            hits,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers `statuses` in turn to the next requests on `path`.
    fn script(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// The next request, or a failure after [`PATIENCE`].
    async fn next(&mut self) -> Hit {
        tokio::time::timeout(PATIENCE, self.hits.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    /// Requests until `done` says the collection is complete.
    async fn until(&mut self, mut done: impl FnMut(&[Hit]) -> bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        while !done(&hits) {
            hits.push(self.next().await);
        }
        hits
    }

    /// Nothing more arrives within `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(hit)) = tokio::time::timeout(quiet, self.hits.recv()).await {
            panic!(
                "unexpected webhook request: {} {}",
                hit.path,
                hit.event_type()
            );
        }
    }
}

async fn answer(
    axum::extract::State(state): axum::extract::State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let answered = state
        .script
        .lock()
        .expect("lock")
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    let _ = state.hits.send(Hit {
        path,
        headers,
        body,
        answered,
    });
    StatusCode::from_u16(answered).expect("status")
}

/// Checks a request's Standard Webhooks headers and signature against `secret`,
/// computing the HMAC here, and that the payload is an event whose id is `webhook-id`.
fn check_signed(secret: &str, hit: &Hit) {
    let id = hit.header("webhook-id");
    let timestamp = hit.header("webhook-timestamp");
    let signatures = hit.header("webhook-signature");
    assert_eq!(hit.header("content-type"), "application/json");
    assert!(
        hit.header("user-agent")
            .starts_with("Switchboard-Webhooks/")
    );
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&hit.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "signature {signatures:?} is not {expected:?}"
    );
    let ts: i64 = timestamp.parse().expect("numeric timestamp");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
    let event = hit.json();
    assert_eq!(event["id"], id, "the payload id is the webhook-id");
    assert!(id.starts_with("evt_"));
    assert!(
        event["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("message."))
    );
    chrono::DateTime::parse_from_rfc3339(event["created_at"].as_str().expect("created_at"))
        .expect("created_at is RFC 3339");
    assert!(event["data"]["id"].is_string());
}

// ---------------------------------------------------------------------------------------
// The gateway.

struct Gateway {
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Worker options for tests: the real schedule a thousand times faster, and a short poll.
fn fast() -> WorkerOptions {
    let mut options = WorkerOptions::from_config(&Default::default());
    options.next_delay = Arc::new(|failed, since| {
        switchboard_webhooks::next_delay_random(failed, since).map(|d| d / 1000)
    });
    options.poll = Duration::from_millis(20);
    options
}

async fn gateway(extra: &str, options: WorkerOptions, adapters: Vec<Arc<dyn Adapter>>) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        r#"
[database]
url = "sqlite://{}/db.sqlite"

[[tenants]]
id = "acme"
api_keys = ["{ACME}"]
addresses = ["+15550100"]

[[tenants]]
id = "globex"
api_keys = ["{GLOBEX}"]
{extra}
"#,
        dir.path().display()
    );
    let config = switchboard::config::parse(&toml, []).expect("config");
    let with_adapters = !adapters.is_empty();
    let state = switchboard::build_state_with(config, adapters)
        .await
        .expect("state");
    let (stop, stopping) = watch::channel(false);
    let mut tasks = vec![switchboard::webhooks::spawn_worker_with(
        state.clone(),
        stopping.clone(),
        options,
    )];
    if with_adapters {
        tasks.push(switchboard::dispatch::spawn(state.clone(), stopping));
    }
    Gateway {
        state,
        stop,
        tasks,
        _dir: dir,
    }
}

impl Gateway {
    async fn call(
        &self,
        method: &str,
        key: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = switchboard::api::app(self.state.clone())
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
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

    /// Subscribes `key`'s tenant; returns (id, secret).
    async fn subscribe(&self, key: &str, url: &str, events: &[&str]) -> (String, String) {
        let (status, created) = self
            .call(
                "POST",
                key,
                "/v1/webhooks",
                Some(json!({"url": url, "events": events})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (
            created["id"].as_str().expect("id").to_owned(),
            created["secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// Sends a message (a `message.queued` event); returns its id.
    async fn send(&self, key: &str, text: &str) -> String {
        let (status, sent) = self
            .call(
                "POST",
                key,
                "/v1/messages",
                Some(json!({"to": "+14155550100", "text": text})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        sent["id"].as_str().expect("id").to_owned()
    }

    async fn deliveries(&self, key: &str, subscription: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                "GET",
                key,
                &format!("/v1/webhooks/{subscription}/deliveries?limit=100"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["data"].as_array().expect("data").clone()
    }

    /// Waits until the subscription's deliveries satisfy `done` (polling the API, the
    /// only place the outcome shows for a test).
    async fn deliveries_until(
        &self,
        subscription: &str,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let list = self.deliveries(ACME, subscription).await;
            if done(&list) {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn subscription(&self, key: &str, id: &str) -> Value {
        let (status, list) = self.call("GET", key, "/v1/webhooks", None).await;
        assert_eq!(status, StatusCode::OK);
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Cancels a queued message (a `message.canceled` event).
    async fn cancel(&self, id: &str) {
        let (status, problem) = self
            .call("DELETE", ACME, &format!("/v1/messages/{id}"), None)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "DELETE /v1/messages/{id}: {problem}. A 500 here with \"database is locked\" in \
             the log means a store writer transaction on SQLite began DEFERRED: it must take \
             the write lock up front (BEGIN IMMEDIATE), as the webhook bookkeeping writes \
             through the pool too"
        );
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("stops in time")
                .expect("stops cleanly");
        }
    }
}

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

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_matching_event_arrives_signed() {
    let gw = gateway("", fast(), vec![]).await;
    let mut receiver = Receiver::start().await;
    let (all, all_secret) = gw.subscribe(ACME, &receiver.url("/all"), &["*"]).await;
    let (canceled, canceled_secret) = gw
        .subscribe(ACME, &receiver.url("/canceled"), &["message.canceled"])
        .await;
    // Another tenant's subscription gets nothing of acme's.
    gw.subscribe(GLOBEX, &receiver.url("/globex"), &["*"]).await;

    let first = gw.send(ACME, "one").await;
    let second = gw.send(ACME, "two").await;
    gw.cancel(&second).await;

    // /all: queued for both, canceled for the second; /canceled: the cancel only.
    let hits = receiver.until(|h| h.len() >= 4).await;
    receiver.assert_quiet(Duration::from_millis(300)).await;
    let mut seen: Vec<(String, String, String)> = hits
        .iter()
        .map(|h| (h.path.clone(), h.message_id(), h.event_type()))
        .collect();
    seen.sort();
    let mut expected = vec![
        (
            "/all".to_owned(),
            first.clone(),
            "message.queued".to_owned(),
        ),
        (
            "/all".to_owned(),
            second.clone(),
            "message.queued".to_owned(),
        ),
        (
            "/all".to_owned(),
            second.clone(),
            "message.canceled".to_owned(),
        ),
        (
            "/canceled".to_owned(),
            second.clone(),
            "message.canceled".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    for hit in &hits {
        let secret = if hit.path == "/all" {
            &all_secret
        } else {
            &canceled_secret
        };
        check_signed(secret, hit);
        let event = hit.json();
        // `data` is the message resource as of the event.
        assert_eq!(event["data"]["to"], "+14155550100");
        assert_eq!(
            format!(
                "message.{}",
                event["data"]["status"].as_str().expect("status")
            ),
            event["type"]
        );
        assert_eq!(event["data"]["updated_at"], event["created_at"]);
    }
    // Events of one message arrive in order.
    let second_events: Vec<String> = hits
        .iter()
        .filter(|h| h.path == "/all" && h.message_id() == second)
        .map(Hit::event_type)
        .collect();
    assert_eq!(second_events, vec!["message.queued", "message.canceled"]);
    // One event, one id, whatever the subscription.
    let cancel_ids: Vec<&str> = hits
        .iter()
        .filter(|h| h.event_type() == "message.canceled")
        .map(|h| h.header("webhook-id"))
        .collect();
    assert_eq!(cancel_ids.len(), 2);
    assert_eq!(cancel_ids[0], cancel_ids[1]);

    let delivered = gw
        .deliveries_until(&all, |d| {
            d.len() == 3 && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    for d in &delivered {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status_code"], 200);
        assert_eq!(d["next_attempt_at"], Value::Null);
        assert_eq!(d["attempts_detail"][0]["status_code"], 200);
    }
    assert_eq!(gw.deliveries(ACME, &canceled).await.len(), 1);

    let (_, metrics) = {
        let response = switchboard::api::app(gw.state.clone())
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        ((), String::from_utf8_lossy(&bytes).into_owned())
    };
    assert!(
        metrics.contains("switchboard_webhook_attempts_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_retried_with_the_same_id_and_in_order() {
    let gw = gateway("", fast(), vec![]).await;
    let mut receiver = Receiver::start().await;
    receiver.script("/flaky", &[500, 503, 500]);
    let (sub, secret) = gw
        .subscribe(ACME, &receiver.url("/flaky"), &["message.*"])
        .await;
    let id = gw.send(ACME, "retry me").await;
    gw.cancel(&id).await;

    let hits = receiver.until(|h| h.len() >= 5).await;
    receiver.assert_quiet(Duration::from_millis(300)).await;
    for hit in &hits {
        check_signed(&secret, hit);
    }
    let got: Vec<(String, u16)> = hits.iter().map(|h| (h.event_type(), h.answered)).collect();
    assert_eq!(
        got,
        vec![
            ("message.queued".to_owned(), 500),
            ("message.queued".to_owned(), 503),
            ("message.queued".to_owned(), 500),
            ("message.queued".to_owned(), 200),
            // The cancel waited for the queued event to be delivered.
            ("message.canceled".to_owned(), 200),
        ]
    );
    let retried_ids: Vec<&str> = hits[..4].iter().map(|h| h.header("webhook-id")).collect();
    assert!(
        retried_ids.iter().all(|i| *i == retried_ids[0]),
        "{retried_ids:?}"
    );
    // Each retry is signed afresh (the timestamp is part of the signature), same body.
    assert!(hits[..4].iter().all(|h| h.body == hits[0].body));

    let list = gw
        .deliveries_until(&sub, |d| {
            d.len() == 2 && d.iter().all(|d| d["state"] == "delivered")
        })
        .await;
    let queued = list
        .iter()
        .find(|d| d["event_type"] == "message.queued")
        .expect("queued delivery");
    assert_eq!(queued["attempts"], 4);
    assert_eq!(queued["event_id"], retried_ids[0]);
    assert_eq!(queued["message_id"], id.as_str());
    let codes: Vec<&Value> = queued["attempts_detail"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(
        codes,
        vec![&json!(500), &json!(503), &json!(500), &json!(200)]
    );
    assert_eq!(
        queued["attempts_detail"][0]["error"],
        "HTTP 500 Internal Server Error"
    );
    assert!(queued["attempts_detail"][0]["at"].is_string());
    assert!(queued["attempts_detail"][0]["duration_ms"].is_u64());

    // A replay sends the same event again, with the same webhook-id.
    let delivery = queued["id"].as_str().expect("delivery id");
    let (status, _) = gw
        .call(
            "POST",
            ACME,
            &format!("/v1/webhooks/{sub}/deliveries/{delivery}/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let replay = receiver.next().await;
    check_signed(&secret, &replay);
    assert_eq!(replay.header("webhook-id"), retried_ids[0]);
    assert_eq!(replay.body, hits[0].body);
    gw.deliveries_until(&sub, |d| {
        d.iter()
            .any(|d| d["id"] == delivery && d["attempts"] == 5 && d["state"] == "delivered")
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_was_down_gets_everything() {
    let gw = gateway("", fast(), vec![]).await;
    // A port with nothing listening: connections are refused until the receiver starts.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/late");
    let (sub, secret) = gw.subscribe(ACME, &url, &["*"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(gw.send(ACME, &format!("while down {i}")).await);
    }
    // Wait until every delivery has failed at least twice, then bring the receiver up.
    let failed = gw
        .deliveries_until(&sub, |d| {
            d.len() == 5 && d.iter().all(|d| d["attempts"].as_u64() >= Some(2))
        })
        .await;
    for d in &failed {
        assert_eq!(d["state"], "pending");
        assert!(d["next_attempt_at"].is_string());
        assert_eq!(d["last_status_code"], Value::Null);
        assert!(d["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the port");
    let mut receiver = Receiver::on(listener);
    let hits = receiver.until(|h| h.len() >= 5).await;
    let mut got: Vec<String> = hits.iter().map(Hit::message_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    for hit in &hits {
        check_signed(&secret, hit);
    }
    gw.deliveries_until(&sub, |d| d.iter().all(|d| d["state"] == "delivered"))
        .await;
    let (status, sub_now) = gw
        .call("GET", ACME, &format!("/v1/webhooks/{sub}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sub_now["failing_since"], Value::Null, "healthy again");
    receiver.task.abort();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gone_disables_the_subscription() {
    let gw = gateway("", fast(), vec![]).await;
    let mut receiver = Receiver::start().await;
    receiver.script("/gone", &[410]);
    let (sub, _) = gw.subscribe(ACME, &receiver.url("/gone"), &["*"]).await;
    let (healthy, _) = gw.subscribe(ACME, &receiver.url("/fine"), &["*"]).await;
    let first = gw.send(ACME, "one").await;
    let hits = receiver
        .until(|h| h.iter().any(|h| h.path == "/gone") && h.iter().any(|h| h.path == "/fine"))
        .await;
    assert!(hits.iter().all(|h| h.message_id() == first));

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let disabled = loop {
        let s = gw.subscription(ACME, &sub).await;
        if !s["disabled_at"].is_null() {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "not disabled: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(disabled["disabled_reason"], "410 Gone from receiver");
    assert!(disabled.get("secret").is_none(), "secrets are shown once");
    // The subscription is disabled first, then the attempt recorded.
    let list = gw
        .deliveries_until(&sub, |d| d.len() == 1 && d[0]["last_status_code"] == 410)
        .await;
    assert_eq!(list[0]["state"], "failed");
    assert_eq!(list[0]["attempts"], 1);

    // Nothing more goes to it; the other subscription carries on.
    gw.send(ACME, "two").await;
    let next = receiver.next().await;
    assert_eq!(next.path, "/fine");
    receiver.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(
        gw.subscription(ACME, &healthy).await["disabled_at"],
        Value::Null
    );
    // A replay to a disabled subscription is refused.
    let delivery = list[0]["id"].as_str().expect("id");
    let (status, problem) = gw
        .call(
            "POST",
            ACME,
            &format!("/v1/webhooks/{sub}/deliveries/{delivery}/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_failing_for_too_long_is_disabled() {
    let mut options = fast();
    options.disable_after = Duration::from_millis(300);
    let gw = gateway("", options, vec![]).await;
    let mut receiver = Receiver::start().await;
    receiver.script("/broken", &[500; 1000]);
    let (sub, _) = gw.subscribe(ACME, &receiver.url("/broken"), &["*"]).await;
    gw.send(ACME, "doomed").await;
    receiver.next().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let disabled = loop {
        let s = gw.subscription(ACME, &sub).await;
        if !s["disabled_at"].is_null() {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "not disabled: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!disabled["failing_since"].is_null());
    assert_eq!(
        disabled["disabled_reason"],
        "every delivery attempt failed for 0.3 s"
    );
    let list = gw
        .deliveries_until(&sub, |d| d.len() == 1 && d[0]["state"] == "failed")
        .await;
    assert!(list[0]["attempts"].as_u64() >= Some(2), "{list:?}");
    gw.stop().await;
}

/// A channel adapter that delivers at once: each message goes queued → sending →
/// delivered, three events in quick succession.
struct Delivering;

impl Adapter for Delivering {
    fn name(&self) -> &str {
        "instant"
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            SendOutcome::Accepted {
                upstream_id: Some(format!("up-{}", message.id)),
                status: MessageStatus::Delivered,
                metadata: vec![],
                parts: vec![],
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_each_message_arrive_in_order() {
    let gw = gateway("", fast(), vec![Arc::new(Delivering)]).await;
    let mut receiver = Receiver::start().await;
    // Some failures on the way, so retries have to keep the order too.
    receiver.script("/ordered", &[500, 200, 500, 200, 503]);
    let (_, secret) = gw.subscribe(ACME, &receiver.url("/ordered"), &["*"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(gw.send(ACME, &format!("message {i}")).await);
    }
    // Every message's history ends in delivered: collect until each has its delivered
    // event delivered.
    let hits = receiver
        .until(|hits| {
            ids.iter().all(|id| {
                hits.iter().any(|h| {
                    h.answered == 200
                        && h.message_id() == *id
                        && h.event_type() == "message.delivered"
                })
            })
        })
        .await;
    for hit in &hits {
        check_signed(&secret, hit);
    }
    for id in &ids {
        let (status, message) = gw
            .call("GET", ACME, &format!("/v1/messages/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let history: Vec<String> = message["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| format!("message.{}", e["status"].as_str().expect("status")))
            .collect();
        // What the receiver accepted for this message, in arrival order, is exactly the
        // message's history, in order.
        let accepted: Vec<String> = hits
            .iter()
            .filter(|h| h.answered == 200 && h.message_id() == *id)
            .map(Hit::event_type)
            .collect();
        assert_eq!(accepted, history, "message {id}");
        // No event of a message arrived before an earlier one was accepted.
        let arrivals: Vec<String> = hits
            .iter()
            .filter(|h| h.message_id() == *id)
            .map(Hit::event_type)
            .collect();
        let mut deduped = arrivals.clone();
        deduped.dedup();
        assert_eq!(deduped, history, "message {id}: {arrivals:?}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_do_not_see_each_others_subscriptions() {
    let gw = gateway("", fast(), vec![]).await;
    let receiver = Receiver::start().await;
    let (sub, _) = gw
        .subscribe(ACME, &receiver.url("/acme"), &["message.delivered"])
        .await;

    let (status, list) = gw.call("GET", GLOBEX, "/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({"data": [], "next_cursor": null}));
    for (method, uri) in [
        ("GET", format!("/v1/webhooks/{sub}")),
        ("GET", format!("/v1/webhooks/{sub}/deliveries")),
        ("DELETE", format!("/v1/webhooks/{sub}")),
        (
            "POST",
            format!("/v1/webhooks/{sub}/deliveries/evt_1:{sub}/retry"),
        ),
    ] {
        let (status, problem) = gw.call(method, GLOBEX, &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {problem}");
        assert_eq!(problem["status"], 404);
    }

    let (status, list) = gw.call("GET", ACME, "/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = &list["data"][0];
    assert_eq!(shown["id"], sub.as_str());
    assert_eq!(shown["url"], receiver.url("/acme"));
    assert_eq!(shown["events"], json!(["message.delivered"]));
    assert_eq!(shown["disabled_at"], Value::Null);
    assert_eq!(shown["disabled_reason"], Value::Null);
    assert!(shown["created_at"].is_string());
    assert!(shown.get("secret").is_none());
    assert_eq!(list["next_cursor"], Value::Null);

    let (status, _) = gw
        .call("DELETE", ACME, &format!("/v1/webhooks/{sub}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = gw
        .call("DELETE", ACME, &format!("/v1/webhooks/{sub}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = gw.call("GET", ACME, "/v1/webhooks", None).await;
    assert_eq!(list["data"], json!([]));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_names_the_field() {
    let gw = gateway("", fast(), vec![]).await;
    let ok = "https://hooks.example.com/in";
    for (body, field) in [
        (json!({"url": "ftp://example.com/", "events": ["*"]}), "url"),
        (json!({"url": "not a url", "events": ["*"]}), "url"),
        (
            json!({"url": "https://u:p@example.com/", "events": ["*"]}),
            "url",
        ),
        (json!({"url": ok, "events": []}), "events"),
        (
            json!({"url": ok, "events": ["*", "message.nope"]}),
            "events[1]",
        ),
        (
            json!({"url": ok, "events": ["message.delivered", "bogus"]}),
            "events[1]",
        ),
        (json!({"url": ok}), "events"),
        (json!({"events": ["*"]}), "url"),
        (json!({"url": ok, "events": ["*"], "extra": 1}), "extra"),
        (json!({"url": ok, "events": "*"}), "events"),
    ] {
        let (status, problem) = gw
            .call("POST", ACME, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert!(
            fields(&problem).contains(&field.to_owned()),
            "{body}: expected {field} in {problem}"
        );
        assert_eq!(problem["status"], 422);
    }
    // Both problems at once.
    let (status, problem) = gw
        .call(
            "POST",
            ACME,
            "/v1/webhooks",
            Some(json!({"url": "gopher://x/", "events": ["nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), vec!["url", "events[0]"]);

    // Repeated names are kept once.
    let (status, created) = gw
        .call(
            "POST",
            ACME,
            "/v1/webhooks",
            Some(json!({"url": ok, "events": ["*", "*", "presence.changed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["events"], json!(["*", "presence.changed"]));
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    assert!(created["created_at"].is_string());
    let sub = created["id"].as_str().expect("id");

    let (status, _) = gw.call("DELETE", ACME, "/v1/webhooks/wh_nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = gw
        .call("GET", ACME, "/v1/webhooks/wh_nope/deliveries", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = gw
        .call(
            "POST",
            ACME,
            &format!("/v1/webhooks/{sub}/deliveries/evt_nope:{sub}/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("cursor=zzz", "cursor"),
        ("color=red", "color"),
    ] {
        let (status, problem) = gw
            .call(
                "GET",
                ACME,
                &format!("/v1/webhooks/{sub}/deliveries?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(fields(&problem), vec![field.to_owned()], "{query}");
    }
    let (status, _) = gw.call("GET", "sk_wrong", "/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    gw.stop().await;

    // With private targets refused, a loopback receiver is refused at subscription.
    let strict = gateway(
        "[webhooks]\nrefuse_private_targets = true\n",
        fast(),
        vec![],
    )
    .await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/",
    ] {
        let (status, problem) = strict
            .call(
                "POST",
                ACME,
                "/v1/webhooks",
                Some(json!({"url": url, "events": ["*"]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(fields(&problem), vec!["url"], "{url}");
    }
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_are_paged() {
    let gw = gateway("", fast(), vec![]).await;
    let mut receiver = Receiver::start().await;
    let (sub, _) = gw
        .subscribe(ACME, &receiver.url("/paged"), &["message.queued"])
        .await;
    for i in 0..5 {
        gw.send(ACME, &format!("m{i}")).await;
    }
    receiver.until(|h| h.len() >= 5).await;
    let mut seen = Vec::new();
    let mut uri = format!("/v1/webhooks/{sub}/deliveries?limit=2");
    loop {
        let (status, page) = gw.call("GET", ACME, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|d| d["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/webhooks/{sub}/deliveries?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    gw.stop().await;
}

/// The worker writes (claims, attempts) beside the group-commit writer; on SQLite both
/// must wait for the write lock rather than fail. Messages are sent and canceled while
/// the worker is busy with a flaky receiver: every request must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_writes_are_not_disturbed_by_webhook_bookkeeping() {
    let gw = gateway("", fast(), vec![]).await;
    let mut receiver = Receiver::start().await;
    receiver.script("/busy", &[500; 20]);
    gw.subscribe(ACME, &receiver.url("/busy"), &["*"]).await;
    gw.subscribe(ACME, &receiver.url("/also"), &["message.*"])
        .await;
    for i in 0..20 {
        let id = gw.send(ACME, &format!("busy {i}")).await;
        gw.cancel(&id).await;
    }
    // 20 messages, 2 events each, 2 subscriptions: 80 events, plus the 500s.
    let hits = receiver
        .until(|h| h.iter().filter(|h| h.answered == 200).count() >= 80)
        .await;
    assert!(hits.len() >= 80);
    gw.stop().await;
}
