//! The client side: one outbound MESSAGE in a non-INVITE client transaction (RFC 3261
//! section 17.1.2): over UDP retransmitted on timer E (T1, doubling up to T2; T2 once a
//! provisional response came) until a final response or timer F (64*T1); over TCP sent
//! once, with timer F as the limit. A `401`/`407` is answered once with digest
//! credentials. The final status becomes the [`SendOutcome`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_adapter::SendOutcome;
use switchboard_model::{Address, Channel, Message, MessageStatus};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::config::TransportChoice;
use crate::digest::Challenge;
use crate::endpoint::{Endpoint, random_token};
use crate::wire::{OutgoingRequest, Response, UDP_MAX_BYTES};

/// Why a transaction ended without a final response.
enum Failure {
    /// Timer F fired.
    Timeout,
    /// The transport failed.
    Transport(String),
}

/// Removes a client transaction from the table when it ends, however it ends.
struct Registered<'a> {
    endpoint: &'a Endpoint,
    branch: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut table) = self.endpoint.client_transactions.lock() {
            table.remove(&self.branch);
        }
    }
}

fn permanent(code: impl Into<String>, detail: impl Into<String>) -> SendOutcome {
    SendOutcome::Permanent {
        code: code.into(),
        detail: detail.into(),
    }
}

fn transient(
    code: impl Into<String>,
    detail: impl Into<String>,
    retry_after: Option<Duration>,
) -> SendOutcome {
    SendOutcome::Transient {
        code: code.into(),
        detail: detail.into(),
        retry_after,
    }
}

/// The user part for our `From`: a SIP sender's user, an SMS sender as it is, else the
/// tenant.
fn from_user(message: &Message) -> String {
    let from = message.from.as_deref().and_then(|f| Address::parse(f).ok());
    match from {
        Some(address) if address.channel() == Channel::Sip => address
            .without_scheme()
            .split('@')
            .next()
            .unwrap_or(&message.tenant)
            .to_owned(),
        Some(address) if address.channel() == Channel::Sms && !address.as_str().contains(' ') => {
            address.into_string()
        }
        _ => message.tenant.clone(),
    }
}

/// `host:port` of a normalised `sip:user@host[:port]`.
fn host_port(uri: &str) -> String {
    let hostport = uri
        .strip_prefix("sip:")
        .unwrap_or(uri)
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let has_port = if let Some(v6) = hostport.strip_prefix('[') {
        v6.contains("]:")
    } else {
        hostport.contains(':')
    };
    if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:5060")
    }
}

/// Sends `message` and says what became of it.
pub async fn send(endpoint: &Arc<Endpoint>, message: &Message) -> SendOutcome {
    let uri = match Address::parse_for(Channel::Sip, &message.to) {
        Ok(address) => address.into_string(),
        Err(e) => return permanent("invalid_address", e.to_string()),
    };
    let config = &endpoint.config;
    let target = config
        .outbound_proxy
        .clone()
        .unwrap_or_else(|| host_port(&uri));
    let peer = match tokio::net::lookup_host(&target).await {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => addr,
            None => return transient("503", format!("{target} has no address"), None),
        },
        Err(e) => return transient("503", format!("cannot resolve {target}: {e}"), None),
    };
    let body = message.text.as_bytes();
    if body.len() > config.max_body_bytes {
        return permanent(
            "413",
            format!("a body of {} bytes is over sip.max_body_bytes", body.len()),
        );
    }
    let route = config
        .outbound_proxy
        .as_ref()
        .map(|proxy| format!("<sip:{proxy};lr>"));
    let from = format!(
        "<sip:{}@{}>;tag={}",
        from_user(message),
        config.domain,
        random_token()
    );
    let to = format!("<{uri}>");
    let call_id = format!("{}@{}", random_token(), config.domain);
    let mut authorization: Option<(&'static str, String)> = None;
    let mut cseq = 1;
    loop {
        // Decide the transport on the size of the request as it will be written.
        let probe = request_bytes(
            endpoint,
            &uri,
            "SIP/2.0/UDP",
            "z9hG4bK0000000000000000",
            route.as_deref(),
            &from,
            &to,
            &call_id,
            cseq,
            authorization.as_ref(),
            body,
        );
        let tcp = match config.transport {
            TransportChoice::Tcp => true,
            TransportChoice::Udp if probe.len() > UDP_MAX_BYTES => {
                return permanent(
                    "413",
                    format!(
                        "a request of {} bytes is too large for UDP (sip.transport = \"udp\")",
                        probe.len()
                    ),
                );
            }
            TransportChoice::Udp => false,
            TransportChoice::Auto => probe.len() > UDP_MAX_BYTES,
        };
        let branch = format!("z9hG4bK{}", random_token());
        let transport = if tcp { "SIP/2.0/TCP" } else { "SIP/2.0/UDP" };
        let bytes = request_bytes(
            endpoint,
            &uri,
            transport,
            &branch,
            route.as_deref(),
            &from,
            &to,
            &call_id,
            cseq,
            authorization.as_ref(),
            body,
        );
        let response = match transaction(endpoint, bytes, branch, peer, tcp).await {
            Ok(response) => response,
            Err(Failure::Timeout) => {
                tracing::info!(%call_id, %peer, "sip: no final response before timer F");
                return transient("408", "no final response before timer F", None);
            }
            Err(Failure::Transport(e)) => {
                tracing::info!(%call_id, %peer, error = %e, "sip: transport error");
                return transient("503", format!("transport error: {e}"), None);
            }
        };
        let retry_after = response.retry_after.map(Duration::from_secs);
        let detail = format!("{} {}", response.status, response.reason);
        tracing::info!(%call_id, status = response.status, "sip: MESSAGE answered");
        match response.status {
            200 | 202 => {
                let status = if response.status == 200 {
                    MessageStatus::Delivered
                } else {
                    MessageStatus::Sent
                };
                return SendOutcome::Accepted {
                    upstream_id: Some(call_id.clone()),
                    status,
                    metadata: vec![
                        ("sip.call_id".to_owned(), call_id),
                        ("sip.cseq".to_owned(), cseq.to_string()),
                    ],
                    parts: Vec::new(),
                };
            }
            201..=299 => {
                return SendOutcome::Accepted {
                    upstream_id: Some(call_id.clone()),
                    status: MessageStatus::Sent,
                    metadata: vec![
                        ("sip.call_id".to_owned(), call_id),
                        ("sip.cseq".to_owned(), cseq.to_string()),
                    ],
                    parts: Vec::new(),
                };
            }
            status @ (401 | 407) if authorization.is_none() => {
                let (Some(username), Some(password)) = (&config.username, &config.password) else {
                    return permanent(
                        status.to_string(),
                        format!("{detail}: no sip.username/sip.password to answer the challenge"),
                    );
                };
                let (challenges, header) = if status == 401 {
                    (&response.www_authenticate, "Authorization")
                } else {
                    (&response.proxy_authenticate, "Proxy-Authorization")
                };
                let Some(challenge) = Challenge::choose(challenges) else {
                    return permanent(
                        status.to_string(),
                        format!("{detail}: no digest challenge we can answer"),
                    );
                };
                let value = challenge.answer("MESSAGE", &uri, username, password, &random_token());
                authorization = Some((header, value));
                cseq += 1;
            }
            408 | 503 => return transient(response.status.to_string(), detail, retry_after),
            status => return permanent(status.to_string(), detail),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn request_bytes(
    endpoint: &Endpoint,
    uri: &str,
    transport: &str,
    branch: &str,
    route: Option<&str>,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    authorization: Option<&(&'static str, String)>,
    body: &[u8],
) -> Vec<u8> {
    let extra: Vec<(&str, String)> = authorization.iter().map(|(n, v)| (*n, v.clone())).collect();
    OutgoingRequest {
        method: "MESSAGE",
        uri,
        transport,
        sent_by: &endpoint.sent_by(),
        branch,
        route,
        from,
        to,
        call_id,
        cseq,
        user_agent: &endpoint.config.user_agent,
        extra: &extra,
        content_type: "text/plain;charset=UTF-8",
        body,
    }
    .to_bytes()
}

/// Runs one client transaction to its final response.
async fn transaction(
    endpoint: &Arc<Endpoint>,
    bytes: Vec<u8>,
    branch: String,
    peer: SocketAddr,
    tcp: bool,
) -> Result<Response, Failure> {
    let (tx, mut rx) = mpsc::channel(8);
    if let Ok(mut table) = endpoint.client_transactions.lock() {
        table.insert(branch.clone(), tx);
    }
    let _registered = Registered { endpoint, branch };
    let t1 = endpoint.config.t1();
    let t2 = endpoint.config.t2();
    let deadline = Instant::now() + t1 * 64;
    let udp = if tcp {
        let connection = endpoint
            .connection_to(peer)
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        connection
            .send(bytes.clone())
            .await
            .map_err(|_| Failure::Transport("the connection closed".into()))?;
        None
    } else {
        endpoint
            .ensure_udp_loop()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let socket = endpoint
            .udp()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        socket
            .send_to(&bytes, peer)
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        Some(socket)
    };
    let mut interval = t1;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            response = rx.recv() => match response {
                Some(response) if response.status < 200 => {
                    // Proceeding: retransmit at T2 only.
                    interval = t2;
                    next = Instant::now() + interval;
                }
                Some(response) => return Ok(response),
                None => return Err(Failure::Transport("the transaction table dropped it".into())),
            },
            () = sleep_until(next), if udp.is_some() => {
                if let Some(socket) = &udp
                    && let Err(e) = socket.send_to(&bytes, peer).await
                {
                    tracing::debug!(%peer, error = %e, "sip: retransmission failed");
                }
                interval = (interval * 2).min(t2);
                next = Instant::now() + interval;
            }
            () = sleep_until(deadline) => return Err(Failure::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_a_uri() {
        assert_eq!(host_port("sip:bob@example.org"), "example.org:5060");
        assert_eq!(host_port("sip:bob@127.0.0.1:5070"), "127.0.0.1:5070");
        assert_eq!(host_port("sip:[::1]"), "[::1]:5060");
        assert_eq!(host_port("sip:bob@[::1]:5070"), "[::1]:5070");
    }
}
