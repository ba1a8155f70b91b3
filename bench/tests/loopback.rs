//! Runs the load loop against a throwaway hyper server on 127.0.0.1:0.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_bench::{Config, Load, TransportError, destination, run};
use tokio::net::TcpListener;

const KEY: &str = "test-key";

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: u64,
    problems: Vec<String>,
    to: HashSet<String>,
    client_refs: HashSet<String>,
    idempotency_keys: HashSet<String>,
    channels: HashSet<String>,
    by_status: BTreeMap<u16, u64>,
}

/// How the server answers its `n`-th request (0-based): status, and whether to close after.
type Policy = fn(u64) -> (StatusCode, bool);

fn always_accept(_: u64) -> (StatusCode, bool) {
    (StatusCode::ACCEPTED, false)
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
    policy: Policy,
) -> Response<Full<Bytes>> {
    let mut problems = Vec::new();
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/messages" {
        problems.push(format!("unexpected {} {}", req.method(), req.uri()));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("authorization").as_deref() != Some("Bearer test-key") {
        problems.push(format!("authorization {:?}", header("authorization")));
    }
    if header("content-type").as_deref() != Some("application/json") {
        problems.push(format!("content-type {:?}", header("content-type")));
    }
    if header("host").is_none() {
        problems.push("no host header".into());
    }
    let key = header("idempotency-key");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            problems.push(format!("body: {e}"));
            Bytes::new()
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        problems.push(format!("invalid JSON {body:?}: {e}"));
        serde_json::Value::Null
    });
    let (status, close) = {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let answer = policy(seen.requests);
        seen.requests += 1;
        let to = json["to"].as_str().unwrap_or_default().to_owned();
        let client_ref = json["client_ref"].as_str().unwrap_or_default().to_owned();
        // Destination n goes with client_ref bench-n.
        let n: Option<u64> = client_ref
            .strip_prefix("bench-")
            .and_then(|n| n.parse().ok());
        if n.map(|n| destination("+1555", n)).as_deref() != Some(to.as_str()) {
            problems.push(format!(
                "to {to:?} does not match client_ref {client_ref:?}"
            ));
        }
        if json["text"] != "Benchmark message" {
            problems.push(format!("text {}", json["text"]));
        }
        if let Some(c) = json["channel"].as_str() {
            seen.channels.insert(c.to_owned());
        }
        if !seen.to.insert(to.clone()) {
            problems.push(format!("duplicate destination {to}"));
        }
        seen.client_refs.insert(client_ref);
        if let Some(k) = key
            && !seen.idempotency_keys.insert(k.clone())
        {
            problems.push(format!("duplicate idempotency key {k}"));
        }
        seen.problems.append(&mut problems);
        *seen.by_status.entry(answer.0.as_u16()).or_default() += 1;
        answer
    };
    let mut resp = Response::new(Full::new(Bytes::from(if status == StatusCode::ACCEPTED {
        r#"{"id":"0193a5b2c4d87e3f9a1b2c3d4e5f6a7b","status":"accepted"}"#.to_owned()
    } else {
        format!(r#"{{"error":"policy says {}"}}"#, status.as_u16())
    })));
    *resp.status_mut() = status;
    if close {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Starts a server answering according to `policy`; returns its base URL.
async fn serve(policy: Policy) -> anyhow::Result<(String, Arc<Mutex<Seen>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(req, state, policy).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}"), seen))
}

fn take(seen: &Arc<Mutex<Seen>>) -> Seen {
    std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()))
}

fn config(url: &str, requests: u64) -> Config {
    let mut c = Config::new(url, KEY);
    c.concurrency = 8;
    c.load = Load::Requests(requests);
    c.warmup = Duration::ZERO;
    c.timeout = Duration::from_secs(10);
    c
}

#[tokio::test]
async fn counts_accepted_requests() -> anyhow::Result<()> {
    let (url, seen) = serve(always_accept).await?;
    let mut c = config(&url, 200);
    c.idempotency = true;
    c.channel = Some("sms".into());
    let report = run(c).await?;
    let seen = take(&seen);

    assert!(seen.problems.is_empty(), "server saw: {:#?}", seen.problems);
    assert_eq!(seen.requests, 200);
    assert_eq!(report.requests, 200);
    assert_eq!(report.accepted, 200);
    assert_eq!(report.errors(), 0);
    assert!(report.errors_by_status.is_empty() && report.transport_errors.is_empty());
    assert!(
        report.error_samples.is_empty(),
        "{:?}",
        report.error_samples
    );
    assert_eq!(report.reconnects, 0);
    assert_eq!(report.warmup_requests, 0);
    assert_eq!(report.concurrency, 8);
    // Every request had its own destination, client_ref and idempotency key.
    assert_eq!(seen.to.len(), 200);
    assert_eq!(seen.client_refs.len(), 200);
    assert_eq!(seen.idempotency_keys.len(), 200);
    assert_eq!(seen.channels, HashSet::from(["sms".to_owned()]));
    // Numbered 0..200 with no gaps.
    assert!((0..200).all(|n| seen.to.contains(&destination("+1555", n))));
    // One latency per accepted request, and sane numbers.
    assert_eq!(report.latency_us.len(), 200);
    assert!(report.elapsed > Duration::ZERO);
    assert!(report.accepted_per_sec() > 0.0);
    let p = report.percentiles().context("no percentiles")?;
    assert!(0.0 < p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    let json = report.to_json();
    assert_eq!(json["accepted"], 200);
    assert!(json["accepted_per_sec"].as_f64().is_some_and(|v| v > 0.0));
    Ok(())
}

/// Every 10th request gets a 503; every 25th response closes its connection.
fn flaky(n: u64) -> (StatusCode, bool) {
    let status = if n % 10 == 9 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::ACCEPTED
    };
    (status, n % 25 == 24)
}

#[tokio::test]
async fn counts_errors_and_reconnects() -> anyhow::Result<()> {
    let (url, seen) = serve(flaky).await?;
    let report = run(config(&url, 200)).await?;
    let seen = take(&seen);

    assert!(seen.problems.is_empty(), "server saw: {:#?}", seen.problems);
    assert_eq!(report.transport_errors, BTreeMap::new());
    assert_eq!(seen.requests, 200);
    assert_eq!(report.requests, 200);
    assert_eq!(report.accepted, 180);
    assert_eq!(report.errors_by_status, BTreeMap::from([(503, 20)]));
    assert_eq!(report.errors(), 20);
    assert_eq!(report.latency_us.len(), 180);
    // 8 connections were closed by the server; those still needed were reopened.
    assert!(
        (1..=8).contains(&report.reconnects),
        "reconnects {}",
        report.reconnects
    );
    assert_eq!(report.error_samples.len(), 1, "{:?}", report.error_samples);
    assert_eq!(report.error_samples[0].status, Some(503));
    assert_eq!(
        report.error_samples[0].body,
        r#"{"error":"policy says 503"}"#
    );
    Ok(())
}

fn reject(_: u64) -> (StatusCode, bool) {
    (StatusCode::UNAUTHORIZED, false)
}

#[tokio::test]
async fn nothing_accepted() -> anyhow::Result<()> {
    let (url, _seen) = serve(reject).await?;
    let report = run(config(&url, 50)).await?;
    assert_eq!(report.requests, 50);
    assert_eq!(report.accepted, 0);
    assert_eq!(report.errors_by_status, BTreeMap::from([(401, 50)]));
    assert!(report.percentiles().is_none());
    assert_eq!(report.accepted_per_sec(), 0.0);
    assert!(report.to_json()["p99_ms"].is_null());
    Ok(())
}

#[tokio::test]
async fn duration_mode_with_warmup() -> anyhow::Result<()> {
    let (url, seen) = serve(always_accept).await?;
    let mut c = config(&url, 1);
    c.concurrency = 4;
    c.warmup = Duration::from_millis(100);
    c.load = Load::Duration(Duration::from_millis(300));
    let report = run(c).await?;
    let seen = take(&seen);

    assert!(seen.problems.is_empty(), "server saw: {:#?}", seen.problems);
    assert!(report.warmup_requests > 0);
    assert!(report.accepted > 0);
    assert_eq!(report.accepted, report.requests);
    // Everything the server saw is either counted or warmup.
    assert_eq!(seen.requests, report.requests + report.warmup_requests);
    let secs = report.elapsed.as_secs_f64();
    assert!((0.29..2.0).contains(&secs), "elapsed {secs}");
    Ok(())
}

#[tokio::test]
async fn no_server_is_an_error() -> anyhow::Result<()> {
    // A port that was just free.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    let Err(e) = run(config(&format!("http://{addr}"), 10)).await else {
        anyhow::bail!("run succeeded without a server");
    };
    let msg = format!("{e:#}");
    assert!(msg.contains("cannot connect"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn bad_urls_are_errors() {
    for url in ["https://127.0.0.1:1", "localhost:8080", "ftp://x"] {
        assert!(run(config(url, 1)).await.is_err(), "{url}");
    }
}

#[tokio::test]
async fn some_connections_fail_midway() -> anyhow::Result<()> {
    // Transport errors are counted, not fatal: a server that goes away after a few requests.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        // Accept the connections, answer nothing, then close everything.
        let mut streams = Vec::new();
        for _ in 0..2 {
            if let Ok((s, _)) = listener.accept().await {
                streams.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(streams);
        drop(listener);
    });
    let mut c = config(&format!("http://{addr}"), 6);
    c.concurrency = 2;
    let report = run(c).await?;
    server.await?;
    assert_eq!(report.requests, 6);
    assert_eq!(report.accepted, 0);
    let io = report
        .transport_errors
        .get(&TransportError::Io)
        .copied()
        .unwrap_or(0);
    let connect = report
        .transport_errors
        .get(&TransportError::Connect)
        .copied()
        .unwrap_or(0);
    assert_eq!(io + connect, 6, "{:?}", report.transport_errors);
    assert!(!report.error_samples.is_empty());
    Ok(())
}

/// Runs the binary with `args`; returns (success, stdout, stderr).
async fn bench_binary(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_end_to_end() -> anyhow::Result<()> {
    let (url, seen) = serve(always_accept).await?;
    let (ok, stdout, stderr) = bench_binary(&[
        "--url",
        &url,
        "--api-key",
        KEY,
        "--requests",
        "100",
        "-c",
        "4",
        "--json",
    ])
    .await?;
    assert!(ok, "stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(json["requests"], 100);
    assert_eq!(json["accepted"], 100);
    assert_eq!(json["errors"], 0);
    for key in [
        "accepted_per_sec",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "elapsed_sec",
    ] {
        assert!(json[key].is_number(), "{key} in {json}");
    }
    assert_eq!(take(&seen).requests, 100);

    // Text output, on a multi-threaded client runtime.
    let (ok, stdout, stderr) = bench_binary(&[
        "--url",
        &url,
        "--api-key",
        KEY,
        "-n",
        "50",
        "-c",
        "2",
        "--threads",
        "2",
    ])
    .await?;
    assert!(ok, "stderr: {stderr}");
    assert!(stdout.contains("accepted      50"), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_fails_without_success() -> anyhow::Result<()> {
    // No server.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    drop(listener);
    let (ok, stdout, stderr) = bench_binary(&["--url", &url, "--api-key", KEY, "-n", "5"]).await?;
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("cannot connect") && !stderr.contains("panicked"),
        "{stderr}"
    );

    // Every request rejected.
    let (url, _seen) = serve(reject).await?;
    let (ok, stdout, stderr) =
        bench_binary(&["--url", &url, "--api-key", "wrong", "-n", "5", "-c", "1"]).await?;
    assert!(!ok);
    assert!(stdout.contains("401: 5"), "{stdout}");
    assert!(
        stderr.contains("HTTP 401: {\"error\":\"policy says 401\"}"),
        "{stderr}"
    );
    assert!(stderr.contains("no request was accepted"), "{stderr}");

    // Bad input is reported by clap, not a panic.
    let (ok, _, stderr) = bench_binary(&["--api-key", KEY, "--duration", "x"]).await?;
    assert!(!ok && !stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = bench_binary(&["-n", "5"]).await?;
    assert!(!ok && stderr.contains("--api-key"), "{stderr}");
    Ok(())
}
