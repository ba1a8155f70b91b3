//! The HTTP(S) sender: one signed delivery attempt to one webhook URL.
//!
//! HTTP/1.1 over plain TCP or rustls (ring provider, Mozilla roots from `webpki-roots`),
//! through a pooled hyper-util client. Redirects are not followed (a 3xx is a failure),
//! so a target cannot bounce the request to an internal address.
//!
//! SSRF: when private targets are not allowed, [`Sender::deliver`] runs
//! [`check_target`](crate::target::check_target) first, and the client's resolver applies
//! the same rule to every address it resolves before connecting. The connection therefore
//! only ever goes to an address that passed the check, even if the name's DNS answer
//! changes between the check and the connection (DNS rebinding). The price is a second
//! lookup per new connection (usually answered by the system cache).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::schedule::DELIVERY_TIMEOUT;
use crate::secret::Secret;
use crate::signature;
use crate::target::{self, TargetError};

/// The `user-agent` sent with every delivery.
pub const USER_AGENT_VALUE: &str = concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION"));
/// How much of the response body is kept in [`Attempt::response_excerpt`], in bytes.
pub const EXCERPT_LEN: usize = 512;

/// How one delivery attempt ended, and what the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Any 2xx: delivered.
    Delivered,
    /// 410 Gone: disable the subscription.
    Gone,
    /// Any other status, a timeout or a connection error: retry per the schedule.
    Failed,
    /// Refused before sending (SSRF check, or an invalid URL or event id): do not retry.
    Refused,
}

impl Outcome {
    /// A lower-case name for storage and logs: `delivered`, `gone`, `failed`, `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Gone => "gone",
            Self::Failed => "failed",
            Self::Refused => "refused",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What went wrong; set for every outcome but [`Outcome::Delivered`].
    pub error: Option<String>,
    /// Wall-clock time the attempt took.
    pub duration: Duration,
    /// The first 512 bytes of the response body, as lossy UTF-8 (`None` if empty or absent).
    pub response_excerpt: Option<String>,
}

/// Resolver for the HTTP connector: resolves with the system resolver and, unless
/// private targets are allowed, refuses the answer when any address is forbidden.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_private: bool,
}

type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, TargetError>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = TargetError;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| TargetError::Resolve {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })?
                .collect();
            if addrs.is_empty() {
                return Err(TargetError::NoAddress(host.to_owned()));
            }
            if !allow_private {
                target::check_addrs(&addrs)?;
            }
            Ok(addrs.into_iter())
        })
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Sends signed webhook deliveries. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Sender {
    client: HttpClient,
    allow_private: bool,
    timeout: Duration,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why an attempt ended without a response.
enum Failure {
    Refused(String),
    Failed(String),
}

impl Sender {
    /// A sender for http and https targets with the [`DELIVERY_TIMEOUT`]. With
    /// `allow_private = false`, targets that are or resolve to non-public addresses are
    /// refused (see [`target::forbidden_reason`]).
    pub fn new(allow_private: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_nodelay(true);
        // The ring provider supports rustls' default protocol versions (TLS 1.2 and 1.3),
        // so this cannot fail; it does not depend on input or the network.
        #[allow(clippy::expect_used)]
        let tls = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("the ring provider supports the default TLS versions");
        let https = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        Self {
            client,
            allow_private,
            timeout: DELIVERY_TIMEOUT,
        }
    }

    /// Replaces the per-attempt timeout (default [`DELIVERY_TIMEOUT`], 15 s). It covers
    /// the SSRF check, connecting, and waiting for the response headers.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether private (non-public) targets are allowed.
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// POSTs `body` to `url`, signed for `event_id` at Unix time `now`, with
    /// `content-type: application/json`, the Standard Webhooks headers and
    /// `user-agent: Switchboard-Webhooks/<version>`. Never panics; network errors and
    /// timeouts become [`Outcome::Failed`].
    pub async fn deliver(
        &self,
        url: &str,
        event_id: &str,
        body: Bytes,
        secret: &Secret,
        now: i64,
    ) -> Attempt {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = self.send(url, event_id, body, secret, now, deadline).await;
        let duration = start.elapsed();
        match result {
            Ok((status, response_excerpt)) => {
                let outcome = if status.is_success() {
                    Outcome::Delivered
                } else if status == StatusCode::GONE {
                    Outcome::Gone
                } else {
                    Outcome::Failed
                };
                let error = (outcome != Outcome::Delivered).then(|| format!("HTTP {status}"));
                Attempt {
                    outcome,
                    status: Some(status.as_u16()),
                    error,
                    duration,
                    response_excerpt,
                }
            }
            Err(failure) => {
                let (outcome, error) = match failure {
                    Failure::Refused(e) => (Outcome::Refused, e),
                    Failure::Failed(e) => (Outcome::Failed, e),
                };
                Attempt {
                    outcome,
                    status: None,
                    error: Some(error),
                    duration,
                    response_excerpt: None,
                }
            }
        }
    }

    async fn send(
        &self,
        url: &str,
        event_id: &str,
        body: Bytes,
        secret: &Secret,
        now: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(StatusCode, Option<String>), Failure> {
        let target = target::parse_url(url).map_err(|e| Failure::Refused(e.to_string()))?;
        if !self.allow_private {
            match tokio::time::timeout_at(deadline, target::check_target(&target, false)).await {
                Err(_) => {
                    return Err(Failure::Failed(format!(
                        "timed out resolving {} after {:?}",
                        target.host(),
                        self.timeout
                    )));
                }
                Ok(Err(e)) if e.is_permanent() => return Err(Failure::Refused(e.to_string())),
                Ok(Err(e)) => return Err(Failure::Failed(e.to_string())),
                Ok(Ok(_)) => {}
            }
        }

        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.uri().clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        for (name, value) in signature::headers(secret, event_id, now, &body) {
            let value = HeaderValue::try_from(value)
                .map_err(|_| Failure::Refused(format!("invalid {name} header value")))?;
            headers.insert(HeaderName::from_static(name), value);
        }

        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "no response within {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) => {
                return Err(match forbidden_in_chain(&e) {
                    Some(refusal) => Failure::Refused(refusal.to_string()),
                    None => Failure::Failed(error_chain(&e)),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let excerpt = read_excerpt(response.into_body(), deadline).await;
        Ok((status, excerpt))
    }
}

/// Reads up to [`EXCERPT_LEN`] bytes of the body, stopping at the deadline or on error.
async fn read_excerpt(mut body: Incoming, deadline: tokio::time::Instant) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < EXCERPT_LEN {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(EXCERPT_LEN - buf.len());
                    buf.extend_from_slice(&data[..take]);
                }
            }
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

/// The SSRF refusal raised by [`GuardedResolver`], if that is what made the request fail.
fn forbidden_in_chain<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a TargetError> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(t @ TargetError::Forbidden { .. }) = err.downcast_ref::<TargetError>() {
            return Some(t);
        }
        current = err.source();
    }
    None
}

/// The error and its sources, joined with `: ` (hyper's top-level messages are terse).
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let msg = err.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        current = err.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_agent() {
        assert_eq!(
            USER_AGENT_VALUE,
            format!("Switchboard-Webhooks/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn outcome_names() {
        assert_eq!(Outcome::Delivered.to_string(), "delivered");
        assert_eq!(Outcome::Gone.as_str(), "gone");
        assert_eq!(Outcome::Failed.as_str(), "failed");
        assert_eq!(Outcome::Refused.as_str(), "refused");
    }

    /// The connector's resolver refuses forbidden addresses on its own, so a name that
    /// passed `check_target` but resolves to a private address at connect time (DNS
    /// rebinding) is still refused. Here the client is used directly, bypassing the
    /// check in `deliver`.
    #[tokio::test]
    async fn resolver_refuses_private_addresses_at_connect_time() {
        let sender = Sender::new(false);
        let request = Request::post("http://localhost:9/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = sender.client.request(request).await.unwrap_err();
        match forbidden_in_chain(&err) {
            Some(TargetError::Forbidden { addr, .. }) => assert!(addr.is_loopback()),
            _ => panic!("expected an SSRF refusal, got {}", error_chain(&err)),
        }
    }

    #[tokio::test]
    async fn invalid_inputs_are_refused() {
        let sender = Sender::new(true);
        let secret = Secret::generate();
        for url in [
            "ftp://example.com/",
            "https://u:p@example.com/",
            "not a url",
        ] {
            let a = sender.deliver(url, "evt_1", Bytes::new(), &secret, 0).await;
            assert_eq!(a.outcome, Outcome::Refused, "{url}: {a:?}");
            assert!(a.error.is_some());
        }
        let a = sender
            .deliver("http://127.0.0.1:9/", "evt\n1", Bytes::new(), &secret, 0)
            .await;
        assert_eq!(a.outcome, Outcome::Refused, "{a:?}");
    }
}
