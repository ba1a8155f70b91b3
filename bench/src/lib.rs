//! A closed-loop HTTP/1.1 load generator for Switchboard's `POST /v1/messages`.
//!
//! [`run`] opens `concurrency` keep-alive connections and keeps exactly one request in flight
//! on each until the run ends, then returns a [`Report`]: requests, accepted (202) messages,
//! errors by status, accepted messages per second and the latency distribution.
//!
//! Only requests *started* after the warmup are counted; the measured time runs from the end
//! of the warmup to the last counted response.

pub mod body;
pub mod cli;
pub mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::{BufMut as _, Bytes, BytesMut};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

pub use body::{BodyTemplate, destination};
pub use report::{ErrorSample, Percentiles, Report, TransportError};

/// How long a run lasts (after the warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Start requests for this long.
    Duration(Duration),
    /// Make this many requests in total.
    Requests(u64),
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080` (plain http only).
    pub url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Connections, each with one request in flight.
    pub concurrency: usize,
    pub load: Load,
    /// Load before measuring starts, not counted.
    pub warmup: Duration,
    /// Destinations are this followed by a zero-padded counter.
    pub to_prefix: String,
    /// One destination for every request instead (`to_prefix` is then unused).
    pub to: Option<String>,
    pub text: String,
    /// Added to the body as `"channel"`.
    pub channel: Option<String>,
    /// Send a unique `Idempotency-Key` with every request.
    pub idempotency: bool,
    /// Limit for connecting, and for a whole request/response exchange.
    pub timeout: Duration,
}

impl Config {
    /// The command line's defaults: 64 connections, 10 s after a 2 s warmup.
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            concurrency: 64,
            load: Load::Duration(Duration::from_secs(10)),
            warmup: Duration::from_secs(2),
            to_prefix: "+1555".into(),
            to: None,
            text: "Benchmark message".into(),
            channel: None,
            idempotency: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Keep at most this many distinct error samples.
const MAX_ERROR_SAMPLES: usize = 5;
/// Keep at most this much of an error body.
const MAX_ERROR_BODY: usize = 300;
/// Workers hand latencies to the shared histogram in batches of this many.
const LATENCY_BATCH: usize = 256;
/// Pause after a failed connection attempt, so a dead server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(50);

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Where requests go, from the base URL.
#[derive(Debug)]
struct Target {
    /// Host name or address, without IPv6 brackets, for resolution.
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// `<base path>/v1/messages`, in origin form.
    uri: Uri,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let base: Uri = url
            .parse()
            .with_context(|| format!("invalid --url `{url}`"))?;
        match base.scheme_str() {
            Some("http") => {}
            Some(other) => {
                bail!("unsupported scheme `{other}` in --url `{url}`: only http is supported")
            }
            None => bail!("--url `{url}` must start with http://"),
        }
        let authority = base
            .authority()
            .with_context(|| format!("--url `{url}` has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            bail!("--url `{url}` has no host");
        }
        let path = format!("{}/v1/messages", base.path().trim_end_matches('/'));
        Ok(Self {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())
                .with_context(|| format!("invalid host in --url `{url}`"))?,
            uri: Uri::from_maybe_shared(path)
                .with_context(|| format!("invalid path in --url `{url}`"))?,
        })
    }
}

/// A client connection; its driver task is stopped when it is dropped.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
        Err(_) => return Err(format!("connect to {addr}: timed out after {timeout:?}")),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY on connection to {addr}: {e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(async move {
        // Errors surface on the request that was in flight.
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

/// State shared by all workers.
struct Shared {
    addr: SocketAddr,
    uri: Uri,
    host: HeaderValue,
    auth: HeaderValue,
    content_type: HeaderValue,
    template: BodyTemplate,
    /// `<unique per run>-`, when sending idempotency keys.
    idempotency_prefix: Option<Bytes>,
    timeout: Duration,
    /// Requests started from here on are counted.
    measure_start: Instant,
    /// Duration mode: start no request from here on.
    end: Option<Instant>,
    /// Requests mode: how many counted requests to make.
    limit: Option<u64>,
    /// Counted requests started so far (requests mode).
    started: AtomicU64,
    /// Numbers each request (destination, client_ref, idempotency key).
    seq: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    samples: Mutex<Vec<ErrorSample>>,
    samples_full: AtomicBool,
}

/// A lock that survives a panicked holder (the data is plain counters).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn request(
        &self,
        n: u64,
        body_buf: &mut BytesMut,
        key_buf: &mut BytesMut,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.template.body(n, body_buf)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.reserve(5);
        headers.insert(HOST, self.host.clone());
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert(CONTENT_TYPE, self.content_type.clone());
        if let Some(prefix) = &self.idempotency_prefix {
            key_buf.clear();
            key_buf.reserve(prefix.len() + 20);
            key_buf.put_slice(prefix);
            body::put_padded(key_buf, n, 0);
            // Always valid: the prefix and the digits are visible ASCII.
            if let Ok(key) = HeaderValue::from_maybe_shared(key_buf.split().freeze()) {
                headers.insert(IDEMPOTENCY_KEY.clone(), key);
            }
        }
        req
    }

    /// Keeps `status`/`body` if it is one of the first few distinct errors.
    fn note_error(&self, status: Option<u16>, body: impl FnOnce() -> String) {
        if self.samples_full.load(Relaxed) {
            return;
        }
        let body = body();
        let mut samples = lock(&self.samples);
        if samples.len() < MAX_ERROR_SAMPLES
            && !samples.iter().any(|s| s.status == status && s.body == body)
        {
            samples.push(ErrorSample { status, body });
        }
        if samples.len() >= MAX_ERROR_SAMPLES {
            self.samples_full.store(true, Relaxed);
        }
    }

    fn flush_latencies(&self, batch: &mut Vec<u64>) {
        if batch.is_empty() {
            return;
        }
        let mut h = lock(&self.latency_us);
        for &us in batch.iter() {
            h.saturating_record(us);
        }
        batch.clear();
    }
}

/// An error body as text: lossy UTF-8, trimmed, at most [`MAX_ERROR_BODY`] bytes.
fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
    let text = text.trim();
    let ellipsis = if body.len() > MAX_ERROR_BODY {
        "…"
    } else {
        ""
    };
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        format!("{text}{ellipsis}")
    }
}

/// How one request ended.
enum Outcome {
    Response {
        status: u16,
        latency: Duration,
        /// The body, for anything but 202.
        error_body: Option<Bytes>,
    },
    Failed(TransportError, String),
}

/// Why an exchange failed.
enum ExchangeError {
    /// The connection was unusable before the request was written: it can be retried.
    NotSent(Box<Request<Full<Bytes>>>, hyper::Error),
    Failed(String),
}

/// Sends `req` and reads the whole response.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Option<Bytes>), ExchangeError> {
    let resp = match sender.try_send_request(req).await {
        Ok(resp) => resp,
        Err(mut e) => {
            return Err(match e.take_message() {
                Some(req) => ExchangeError::NotSent(Box::new(req), e.into_error()),
                None => ExchangeError::Failed(e.into_error().to_string()),
            });
        }
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status == 202 {
        // Drain without keeping anything: the connection is reusable once the body is read.
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| ExchangeError::Failed(format!("reading response body: {e}")))?;
        }
        Ok((status, None))
    } else {
        let bytes = body
            .collect()
            .await
            .map_err(|e| ExchangeError::Failed(format!("reading response body: {e}")))?
            .to_bytes();
        Ok((status, Some(bytes)))
    }
}

/// Per-worker counters, merged at the end.
#[derive(Default)]
struct WorkerStats {
    requests: u64,
    accepted: u64,
    statuses: BTreeMap<u16, u64>,
    transport: BTreeMap<TransportError, u64>,
    reconnects: u64,
    warmup: u64,
    last_done: Option<Instant>,
}

/// Makes one request on `conn`, (re)connecting first if needed. A request that never left
/// because the connection had just been closed is retried once on a new connection.
async fn attempt(
    sh: &Shared,
    conn: &mut Option<Conn>,
    stats: &mut WorkerStats,
    mut req: Request<Full<Bytes>>,
) -> Outcome {
    let mut retried = false;
    loop {
        if conn.as_ref().is_some_and(|c| c.sender.is_closed()) {
            *conn = None;
        }
        let c = match conn {
            Some(c) => c,
            None => match connect(sh.addr, sh.timeout).await {
                Ok(new) => {
                    stats.reconnects += 1;
                    conn.insert(new)
                }
                Err(e) => return Outcome::Failed(TransportError::Connect, e),
            },
        };
        if c.sender.ready().await.is_err() {
            *conn = None;
            if retried {
                return Outcome::Failed(TransportError::Io, "connection closed".into());
            }
            retried = true;
            continue;
        }
        let t0 = Instant::now();
        match tokio::time::timeout(sh.timeout, exchange(&mut c.sender, req)).await {
            Ok(Ok((status, error_body))) => {
                return Outcome::Response {
                    status,
                    latency: t0.elapsed(),
                    error_body,
                };
            }
            Ok(Err(ExchangeError::NotSent(r, e))) => {
                *conn = None;
                if retried {
                    return Outcome::Failed(TransportError::Io, e.to_string());
                }
                retried = true;
                req = *r;
            }
            Ok(Err(ExchangeError::Failed(e))) => {
                *conn = None;
                return Outcome::Failed(TransportError::Io, e);
            }
            Err(_) => {
                *conn = None;
                return Outcome::Failed(
                    TransportError::Timeout,
                    format!("no complete response within {:?}", sh.timeout),
                );
            }
        }
    }
}

/// One connection's closed loop.
async fn worker(sh: Arc<Shared>, mut conn: Option<Conn>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut body_buf = BytesMut::new();
    let mut key_buf = BytesMut::new();
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    loop {
        let now = Instant::now();
        if sh.end.is_some_and(|end| now >= end) {
            break;
        }
        let counted = now >= sh.measure_start;
        if counted
            && let Some(limit) = sh.limit
            && sh.started.fetch_add(1, Relaxed) >= limit
        {
            break;
        }
        let n = sh.seq.fetch_add(1, Relaxed);
        let req = sh.request(n, &mut body_buf, &mut key_buf);
        let outcome = attempt(&sh, &mut conn, &mut stats, req).await;
        let done = Instant::now();

        let mut backoff = false;
        match &outcome {
            Outcome::Response { status: 202, .. } => {}
            Outcome::Response {
                status, error_body, ..
            } => {
                sh.note_error(Some(*status), || {
                    body_text(error_body.as_deref().unwrap_or_default())
                });
            }
            Outcome::Failed(kind, msg) => {
                backoff = *kind == TransportError::Connect;
                sh.note_error(None, || format!("{}: {msg}", kind.as_str()));
            }
        }
        if counted {
            stats.requests += 1;
            stats.last_done = Some(done);
            match outcome {
                Outcome::Response {
                    status: 202,
                    latency,
                    ..
                } => {
                    stats.accepted += 1;
                    latencies.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                    if latencies.len() >= LATENCY_BATCH {
                        sh.flush_latencies(&mut latencies);
                    }
                }
                Outcome::Response { status, .. } => *stats.statuses.entry(status).or_default() += 1,
                Outcome::Failed(kind, _) => *stats.transport.entry(kind).or_default() += 1,
            }
        } else {
            stats.warmup += 1;
        }
        if backoff {
            let pause = match sh.end {
                Some(end) => CONNECT_BACKOFF.min(end.saturating_duration_since(done)),
                None => CONNECT_BACKOFF,
            };
            tokio::time::sleep(pause).await;
        }
    }
    sh.flush_latencies(&mut latencies);
    stats
}

/// Something unique to this run, so idempotency keys never match an earlier run's.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("bench-{:x}-{:x}-", nanos as u64, std::process::id())
}

/// Runs the benchmark described by `config` on the current tokio runtime.
///
/// Fails (without sending anything) if the URL or key is unusable or no connection to the
/// server can be made; everything that goes wrong after that is counted in the [`Report`].
pub async fn run(config: Config) -> anyhow::Result<Report> {
    if config.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    if config.load == Load::Requests(0) {
        bail!("the number of requests must be at least 1");
    }
    let target = Target::parse(&config.url)?;
    let mut auth = HeaderValue::try_from(format!("Bearer {}", config.api_key))
        .context("the API key contains characters not allowed in an HTTP header")?;
    auth.set_sensitive(true);

    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("cannot resolve `{}`", target.host))?
        .collect();
    // The first address that accepts a connection is used for all of them.
    let mut first = None;
    let mut last_error = format!("`{}` resolved to no address", target.host);
    for addr in addrs {
        match connect(addr, config.timeout).await {
            Ok(conn) => {
                first = Some((addr, conn));
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let Some((addr, first_conn)) = first else {
        bail!(
            "cannot connect to {}: {last_error} (is the server running?)",
            config.url
        );
    };

    let samples = Mutex::new(Vec::new());
    let mut conns = vec![Some(first_conn)];
    let mut opening = JoinSet::new();
    for _ in 1..config.concurrency {
        opening.spawn(connect(addr, config.timeout));
    }
    while let Some(result) = opening.join_next().await {
        match result {
            Ok(Ok(conn)) => conns.push(Some(conn)),
            Ok(Err(e)) => {
                // That worker connects when it starts; note why it could not now.
                let mut s = lock(&samples);
                if s.len() < MAX_ERROR_SAMPLES && !s.iter().any(|x: &ErrorSample| x.body == e) {
                    s.push(ErrorSample {
                        status: None,
                        body: e,
                    });
                }
                conns.push(None);
            }
            Err(e) => bail!("opening connections: {e}"),
        }
    }

    let start = Instant::now();
    let measure_start = start
        .checked_add(config.warmup)
        .context("the warmup is too long")?;
    let (end, limit) = match config.load {
        Load::Duration(d) => (
            Some(
                measure_start
                    .checked_add(d)
                    .context("the duration is too long")?,
            ),
            None,
        ),
        Load::Requests(n) => (None, Some(n)),
    };
    let shared = Arc::new(Shared {
        addr,
        uri: target.uri,
        host: target.authority,
        auth,
        content_type: HeaderValue::from_static("application/json"),
        template: match &config.to {
            Some(to) => BodyTemplate::fixed(to, &config.text, config.channel.as_deref()),
            None => BodyTemplate::new(&config.to_prefix, &config.text, config.channel.as_deref()),
        },
        idempotency_prefix: config.idempotency.then(|| Bytes::from(run_id())),
        timeout: config.timeout,
        measure_start,
        end,
        limit,
        started: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        latency_us: Mutex::new(report::new_histogram()),
        samples,
        samples_full: AtomicBool::new(false),
    });

    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(worker(Arc::clone(&shared), conn)))
        .collect();
    let mut total = WorkerStats::default();
    for w in workers {
        let s = w.await.context("a worker task failed")?;
        total.requests += s.requests;
        total.accepted += s.accepted;
        total.reconnects += s.reconnects;
        total.warmup += s.warmup;
        for (status, n) in s.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in s.transport {
            *total.transport.entry(kind).or_default() += n;
        }
        total.last_done = total.last_done.max(s.last_done);
    }

    let elapsed = total
        .last_done
        .map(|t| t.saturating_duration_since(measure_start))
        .unwrap_or_default();
    let latency_us = std::mem::replace(&mut *lock(&shared.latency_us), report::new_histogram());
    let error_samples = std::mem::take(&mut *lock(&shared.samples));
    Ok(Report {
        concurrency: config.concurrency,
        requests: total.requests,
        accepted: total.accepted,
        errors_by_status: total.statuses,
        transport_errors: total.transport,
        reconnects: total.reconnects,
        warmup_requests: total.warmup,
        elapsed,
        latency_us,
        error_samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() -> anyhow::Result<()> {
        let t = Target::parse("http://127.0.0.1:8080")?;
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.uri, "/v1/messages");

        let t = Target::parse("http://gw.example/api/")?;
        assert_eq!((t.host.as_str(), t.port), ("gw.example", 80));
        assert_eq!(t.authority, "gw.example");
        assert_eq!(t.uri, "/api/v1/messages");

        let t = Target::parse("http://[::1]:9000/")?;
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority, "[::1]:9000");
        Ok(())
    }

    #[test]
    fn rejects_bad_targets() {
        for url in [
            "https://127.0.0.1",
            "127.0.0.1:8080",
            "/v1",
            "http://",
            "not a url",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn error_bodies() {
        assert_eq!(body_text(b"  {\"error\":\"x\"}\n"), "{\"error\":\"x\"}");
        assert_eq!(body_text(b""), "(empty body)");
        let long = vec![b'a'; MAX_ERROR_BODY + 10];
        let text = body_text(&long);
        assert!(text.ends_with('…'));
        assert_eq!(text.len(), MAX_ERROR_BODY + '…'.len_utf8());
    }

    #[test]
    fn requests_carry_headers() -> anyhow::Result<()> {
        let now = Instant::now();
        let sh = Shared {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            uri: Uri::from_static("/v1/messages"),
            host: HeaderValue::from_static("localhost:1"),
            auth: HeaderValue::from_static("Bearer k"),
            content_type: HeaderValue::from_static("application/json"),
            template: BodyTemplate::new("+1555", "hi", None),
            idempotency_prefix: Some(Bytes::from_static(b"run-")),
            timeout: Duration::from_secs(1),
            measure_start: now,
            end: None,
            limit: None,
            started: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            latency_us: Mutex::new(report::new_histogram()),
            samples: Mutex::new(Vec::new()),
            samples_full: AtomicBool::new(false),
        };
        let (mut b, mut k) = (BytesMut::new(), BytesMut::new());
        let req = sh.request(7, &mut b, &mut k);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/v1/messages");
        assert_eq!(req.headers()[HOST], "localhost:1");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer k");
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(req.headers()["idempotency-key"], "run-7");

        for i in 0..10 {
            sh.note_error(Some(500), || format!("e{}", i % 2));
        }
        sh.note_error(None, || "connect: refused".into());
        assert_eq!(lock(&sh.samples).len(), 3);
        Ok(())
    }
}
