//! The server side: a MESSAGE is decoded, handed to the core, and answered `200 OK`
//! only once the core has committed it; everything else gets its clear status
//! (`400`, `401`, `404`, `405`, `413`, `415`, `483`, `503`). `OPTIONS` is answered `200`.

use std::sync::Arc;
use std::time::Instant;

use switchboard_adapter::{Inbound, IngestOutcome};
use switchboard_model::{Address, Channel};

use crate::body;
use crate::digest::Verdict;
use crate::endpoint::{Endpoint, Reply, random_token};
use crate::transaction::{self, Begin};
use crate::wire::{self, Request, UDP_MAX_BYTES};

/// The methods we answer, for `Allow`.
pub const ALLOW: &str = "MESSAGE, OPTIONS";

/// A status with its extra headers, before it is written out.
struct Answer {
    status: u16,
    extra: Vec<(&'static str, String)>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer {
            status,
            extra: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.extra.push((name, value.into()));
        self
    }
}

/// Handles one request inside its server transaction.
pub async fn handle_request(endpoint: &Arc<Endpoint>, request: Request, reply: Reply) {
    if request.method == "ACK" {
        // ACK is never answered; there are no INVITE transactions here.
        return;
    }
    let key = transaction::key(&request);
    let timer_f = endpoint.config.t1() * 64;
    let begin = match endpoint.server_transactions.lock() {
        Ok(mut table) => table.begin(&key, Instant::now(), timer_f),
        Err(_) => Begin::Full,
    };
    match begin {
        Begin::New => {}
        Begin::InProgress => {
            tracing::debug!(call_id = %request.echo.call_id, "sip: retransmission absorbed");
            return;
        }
        Begin::Answered(bytes) => {
            tracing::debug!(call_id = %request.echo.call_id, "sip: retransmission answered again");
            endpoint.send(&reply, bytes.to_vec()).await;
            return;
        }
        Begin::Full => {
            tracing::warn!("sip: server transaction table full, answered 503");
            let answer = wire::response(
                &request.echo,
                503,
                None,
                &random_token(),
                &[("Retry-After", "5".to_owned())],
            );
            endpoint.send(&reply, answer).await;
            return;
        }
    }
    let answer = answer(endpoint, &request, &reply).await;
    let mut extra: Vec<(&str, String)> = vec![("Server", endpoint.config.user_agent.clone())];
    extra.extend(answer.extra.iter().map(|(n, v)| (*n, v.clone())));
    let bytes: Arc<[u8]> = Arc::from(wire::response(
        &request.echo,
        answer.status,
        None,
        &random_token(),
        &extra,
    ));
    let linger = if reply.is_stream() {
        std::time::Duration::ZERO
    } else {
        timer_f
    };
    if let Ok(mut table) = endpoint.server_transactions.lock() {
        table.complete(&key, Instant::now(), bytes.clone(), linger);
    }
    endpoint.send(&reply, bytes.to_vec()).await;
}

/// What to answer `request`.
async fn answer(endpoint: &Endpoint, request: &Request, reply: &Reply) -> Answer {
    let call_id = request.echo.call_id.as_str();
    match request.method.as_str() {
        "OPTIONS" => {
            return Answer::new(200)
                .with("Allow", ALLOW)
                .with("Accept", body::ACCEPT);
        }
        "MESSAGE" => {}
        other => {
            tracing::info!(
                method = other,
                call_id,
                "sip: method not allowed, answered 405"
            );
            return Answer::new(405).with("Allow", ALLOW);
        }
    }
    if request.max_forwards == Some(0) {
        tracing::info!(call_id, "sip: Max-Forwards 0, answered 483");
        return Answer::new(483);
    }
    let limit = if reply.is_stream() {
        endpoint.config.max_body_bytes
    } else {
        endpoint.config.max_body_bytes.min(UDP_MAX_BYTES)
    };
    if request.body.len() > limit {
        tracing::info!(
            call_id,
            bytes = request.body.len(),
            limit,
            "sip: body too large, answered 413"
        );
        return Answer::new(413);
    }
    let Some(core) = endpoint.core.get() else {
        return Answer::new(503).with("Retry-After", "5");
    };
    let Some(to) = destination(&request.uri, &endpoint.config.domain, endpoint.local.ip()) else {
        tracing::info!(call_id, uri = %request.uri, "sip: Request-URI not a SIP address, answered 416");
        return Answer::new(416);
    };
    if let Some(guards) = &endpoint.guards {
        let owner = if guards.per_tenant() {
            core.ingest
                .owner(Channel::Sip, &endpoint.config.tenant, &to)
        } else {
            None
        };
        if let Some(verifier) = guards.for_tenant(owner.as_deref()) {
            let verdict = verifier.check(
                request.authorization.as_deref(),
                &request.method,
                &request.uri_text,
            );
            if verdict != Verdict::Good {
                if request.authorization.is_some() {
                    tracing::info!(
                        call_id,
                        %to,
                        realm = verifier.realm(),
                        ?verdict,
                        "sip: digest credentials refused, answered 401"
                    );
                }
                let mut answer = Answer::new(401);
                for challenge in verifier.challenges(verdict == Verdict::Stale) {
                    answer = answer.with("WWW-Authenticate", challenge);
                }
                return answer;
            }
        }
    }
    let content = match body::decode(request.content_type.as_deref(), &request.body) {
        Ok(content) => content,
        Err(body::Unsupported(kind)) => {
            tracing::info!(call_id, content_type = %kind, "sip: content type refused, answered 415");
            return Answer::new(415).with("Accept", body::ACCEPT);
        }
    };
    let mut metadata = vec![
        ("sip.call_id".to_owned(), request.echo.call_id.clone()),
        ("sip.cseq".to_owned(), request.cseq_number.to_string()),
    ];
    if let Some(tag) = &request.from_tag {
        metadata.push(("sip.from_tag".to_owned(), tag.clone()));
    }
    metadata.extend(content.metadata);
    let inbound = Inbound {
        channel: Channel::Sip,
        connector: "sip".to_owned(),
        tenant: endpoint.config.tenant.clone(),
        from: plain_uri(&request.from_uri),
        to,
        text: content.text,
        subject: None,
        metadata,
        keep_unmatched: false,
        attachments: content.attachments,
    };
    let to = inbound.to.clone();
    match core.ingest.receive(inbound).await {
        Ok(IngestOutcome::Received { id } | IngestOutcome::Forwarded { id }) => {
            tracing::info!(call_id, %to, message_id = %id, "sip: MESSAGE stored, answered 200");
            Answer::new(200)
        }
        Ok(IngestOutcome::Unknown) => {
            tracing::info!(call_id, %to, "sip: unknown recipient, answered 404");
            Answer::new(404)
        }
        Ok(IngestOutcome::Refused { code, detail }) => {
            tracing::info!(call_id, %to, %code, %detail, "sip: refused, answered 404");
            Answer::new(404)
        }
        Err(e) => {
            tracing::error!(call_id, error = %e, "sip: the core could not store the MESSAGE, answered 503");
            Answer::new(503).with("Retry-After", "5")
        }
    }
}

/// `sip:user@host[:port]` of a URI, without parameters.
fn plain_uri(uri: &rsip::Uri) -> String {
    let scheme = match &uri.scheme {
        Some(rsip::Scheme::Sips) => "sips",
        _ => "sip",
    };
    let host = uri.host_with_port.to_string().to_ascii_lowercase();
    match uri.user() {
        Some(user) => format!("{scheme}:{user}@{host}"),
        None => format!("{scheme}:{host}"),
    }
}

/// The address a Request-URI means: the number of `sip:+15550100@<our domain or
/// address>` (a bridge to SMS), else `sip:user@host` with our own address written as our
/// domain. None for a URI that is not `sip:`/`sips:`/`tel:`.
pub fn destination(uri: &rsip::Uri, domain: &str, local_ip: std::net::IpAddr) -> Option<String> {
    let text = uri.to_string();
    if let Some(number) = text.strip_prefix("tel:") {
        return Some(number.split(';').next().unwrap_or_default().to_owned());
    }
    if !matches!(
        uri.scheme,
        None | Some(rsip::Scheme::Sip) | Some(rsip::Scheme::Sips)
    ) {
        return None;
    }
    let host = uri.host().to_string().to_ascii_lowercase();
    let ours = host.eq_ignore_ascii_case(domain)
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == local_ip);
    match uri.user() {
        Some(user) if ours => {
            let number = user.strip_prefix('+').unwrap_or(user);
            if !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && let Ok(address) = Address::parse(user)
                && address.channel() == Channel::Sms
            {
                return Some(address.into_string());
            }
            Some(format!("sip:{user}@{}", domain.to_ascii_lowercase()))
        }
        _ => Some(plain_uri(uri)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(uri: &str) -> Option<String> {
        let uri = rsip::Uri::try_from(uri).expect("uri");
        destination(&uri, "gw.example.test", "127.0.0.1".parse().expect("ip"))
    }

    #[test]
    fn numbers_at_our_domain_are_sms() {
        assert_eq!(
            dest("sip:+15550100@gw.example.test").as_deref(),
            Some("+15550100")
        );
        assert_eq!(
            dest("sip:+15550100@127.0.0.1:5060").as_deref(),
            Some("+15550100")
        );
        assert_eq!(dest("sip:12345@gw.example.test").as_deref(), Some("12345"));
        assert_eq!(
            dest("sip:support@127.0.0.1:5060").as_deref(),
            Some("sip:support@gw.example.test")
        );
        assert_eq!(
            dest("sip:+15550100@elsewhere.example.org").as_deref(),
            Some("sip:+15550100@elsewhere.example.org")
        );
        assert_eq!(
            dest("sip:bob@Example.ORG:5070;transport=tcp").as_deref(),
            Some("sip:bob@example.org:5070")
        );
    }
}
