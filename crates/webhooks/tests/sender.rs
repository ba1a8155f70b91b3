//! Delivery against local HTTP servers.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use switchboard_webhooks::signature::DEFAULT_TOLERANCE_SECS;
use switchboard_webhooks::{Outcome, Secret, Sender, verify};
use tokio::sync::Mutex;

const NOW: i64 = 1_700_000_000;

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    secret: Secret,
    received: Arc<Mutex<Vec<Received>>>,
}

/// Verifies the Standard Webhooks signature of what it receives; 204 if valid, 401 if not.
async fn verifying(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    rx.received.lock().await.push(Received {
        headers: headers.clone(),
        body: body.clone(),
    });
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        get("webhook-id"),
        get("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        get("webhook-signature"),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    match verify(&rx.secret, id, ts, &body, sig, NOW, DEFAULT_TOLERANCE_SECS) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn verifying_server(secret: Secret) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/hook", post(verifying))
        .with_state(Receiver {
            secret,
            received: received.clone(),
        });
    (serve(app).await, received)
}

async fn fixed_server(status: StatusCode, body: &'static str) -> SocketAddr {
    serve(Router::new().route("/hook", post(move || async move { (status, body) }))).await
}

fn body() -> Bytes {
    Bytes::from_static(br#"{"id":"evt_1","type":"message.delivered","created_at":"2024-05-01T12:00:00Z","data":{}}"#)
}

#[tokio::test]
async fn delivered_and_verified() {
    let secret = Secret::generate();
    let (addr, received) = verifying_server(secret.clone()).await;
    let sender = Sender::new(true);
    let url = format!("http://{addr}/hook");
    let attempt = sender.deliver(&url, "evt_1", body(), &secret, NOW).await;
    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    assert_eq!(attempt.status, Some(204));
    assert_eq!(attempt.error, None);
    assert_eq!(attempt.response_excerpt, None);
    assert!(attempt.duration < Duration::from_secs(5));

    let received = received.lock().await;
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.body, body());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.headers["user-agent"],
        format!("Switchboard-Webhooks/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(r.headers["webhook-id"], "evt_1");
    assert_eq!(r.headers["webhook-timestamp"], NOW.to_string());
    assert!(
        r.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1,")
    );
    drop(received);

    // A second delivery reuses the pooled client; a wrong secret is rejected by the receiver.
    let attempt = sender
        .deliver(&url, "evt_2", body(), &Secret::generate(), NOW)
        .await;
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, Some(401));
}

#[tokio::test]
async fn gone() {
    let addr = fixed_server(StatusCode::GONE, "subscription removed").await;
    let attempt = Sender::new(true)
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Gone, "{attempt:?}");
    assert_eq!(attempt.status, Some(410));
    assert_eq!(
        attempt.response_excerpt.as_deref(),
        Some("subscription removed")
    );
}

#[tokio::test]
async fn server_error_is_failed_with_status() {
    let addr = fixed_server(StatusCode::INTERNAL_SERVER_ERROR, "boom").await;
    let attempt = Sender::new(true)
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, Some(500));
    assert!(attempt.error.as_deref().unwrap().contains("500"));
    assert_eq!(attempt.response_excerpt.as_deref(), Some("boom"));
}

#[tokio::test]
async fn response_excerpt_is_truncated() {
    static LONG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "é".repeat(1000));
    let app = Router::new().route("/hook", post(|| async { (StatusCode::OK, LONG.as_str()) }));
    let addr = serve(app).await;
    let attempt = Sender::new(true)
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    let excerpt = attempt.response_excerpt.unwrap();
    assert_eq!(excerpt, "é".repeat(256));
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let app = Router::new().route(
        "/hook",
        post(|| async {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", "http://10.0.0.1/")],
            )
        }),
    );
    let addr = serve(app).await;
    let attempt = Sender::new(true)
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, Some(307));
}

#[tokio::test]
async fn nothing_listening_is_failed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let attempt = Sender::new(true)
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, None);
    let error = attempt.error.unwrap();
    assert!(!error.is_empty());
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts connections and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sender = Sender::new(true).with_timeout(Duration::from_millis(300));
    assert_eq!(sender.timeout(), Duration::from_millis(300));
    let started = Instant::now();
    let attempt = sender
        .deliver(
            &format!("http://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, None);
    assert!(attempt.error.is_some());
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(attempt.duration >= Duration::from_millis(300));
}

#[tokio::test]
async fn tls_to_plain_http_server_fails_cleanly() {
    // Exercises the rustls path: the handshake fails against a plain HTTP server.
    let addr = fixed_server(StatusCode::OK, "").await;
    let attempt = Sender::new(true)
        .with_timeout(Duration::from_secs(5))
        .deliver(
            &format!("https://{addr}/hook"),
            "evt_1",
            body(),
            &Secret::generate(),
            NOW,
        )
        .await;
    assert_eq!(attempt.outcome, Outcome::Failed, "{attempt:?}");
    assert_eq!(attempt.status, None);
    assert!(attempt.error.is_some());
}

#[tokio::test]
async fn private_target_is_refused() {
    let secret = Secret::generate();
    let (addr, received) = verifying_server(secret.clone()).await;
    let sender = Sender::new(false);
    for url in [
        format!("http://{addr}/hook"),
        format!("http://localhost:{}/hook", addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hook", addr.port()),
    ] {
        let attempt = sender.deliver(&url, "evt_1", body(), &secret, NOW).await;
        assert_eq!(attempt.outcome, Outcome::Refused, "{url}: {attempt:?}");
        assert_eq!(attempt.status, None);
        assert!(attempt.error.is_some());
    }
    assert!(
        received.lock().await.is_empty(),
        "nothing may reach the server"
    );
}
