//! The SIP wire format (RFC 3261 section 7): requests and responses read from bytes with
//! `rsip`, the headers a transaction needs picked out (long and compact names), stream
//! framing by `Content-Length`, and responses written back. Pure functions, no I/O.

use std::fmt::Write as _;

use rsip::headers::UntypedHeader;

/// The largest request or response head we read (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The largest request sent over UDP, and the largest body taken over UDP (RFC 3261
/// section 18.1.1, RFC 3428 section 4).
pub const UDP_MAX_BYTES: usize = 1300;

/// A SIP message read from the wire.
#[derive(Debug)]
pub enum Incoming {
    /// A request (to the server side).
    Request(Box<Request>),
    /// A response (to a client transaction).
    Response(Response),
}

/// Why bytes could not be read as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not SIP at all, or a request without the headers needed to answer it: dropped.
    Unanswerable(String),
    /// A request we can answer, but not take: answered `400 Bad Request`.
    Malformed {
        /// What is needed to answer.
        echo: Box<Echo>,
        /// What is wrong, for the reason phrase and the log.
        reason: String,
    },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Unanswerable(why) => write!(f, "unanswerable: {why}"),
            WireError::Malformed { reason, .. } => write!(f, "malformed: {reason}"),
        }
    }
}

/// The headers a response copies from its request (RFC 3261 section 8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// Every `Via` value, in order.
    pub vias: Vec<String>,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Call-ID`.
    pub call_id: String,
    /// `CSeq`.
    pub cseq: String,
}

/// A request, with what a non-INVITE server transaction and the MESSAGE handler need.
#[derive(Debug)]
pub struct Request {
    /// The method, upper-case as sent (`MESSAGE`, `OPTIONS`, ...).
    pub method: String,
    /// The Request-URI.
    pub uri: rsip::Uri,
    /// The Request-URI as written on the request line (what a digest `uri` repeats).
    pub uri_text: String,
    /// What a response copies.
    pub echo: Echo,
    /// The `branch` of the top `Via`.
    pub branch: Option<String>,
    /// The `From` URI.
    pub from_uri: rsip::Uri,
    /// The `From` tag.
    pub from_tag: Option<String>,
    /// The number in `CSeq`.
    pub cseq_number: u32,
    /// `Max-Forwards`, when present.
    pub max_forwards: Option<u32>,
    /// `Content-Type`, when present.
    pub content_type: Option<String>,
    /// `Authorization`, when present.
    pub authorization: Option<String>,
    /// The body (cut to `Content-Length`).
    pub body: Vec<u8>,
}

/// A response, with what a client transaction needs.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The `branch` of the top `Via`.
    pub branch: Option<String>,
    /// `Call-ID`.
    pub call_id: String,
    /// `Retry-After` in seconds, when present.
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` values.
    pub www_authenticate: Vec<String>,
    /// `Proxy-Authenticate` values.
    pub proxy_authenticate: Vec<String>,
}

/// Header names with their compact forms (RFC 3261 section 7.3.3).
const COMPACT: [(&str, &str); 7] = [
    ("via", "v"),
    ("from", "f"),
    ("to", "t"),
    ("call-id", "i"),
    ("content-length", "l"),
    ("content-type", "c"),
    ("cseq", ""),
];

/// The long lower-case name of a header name (compact forms expanded).
fn long_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    COMPACT
        .iter()
        .find(|(_, short)| !short.is_empty() && *short == lower)
        .map(|(long, _)| (*long).to_owned())
        .unwrap_or(lower)
}

/// Lines of the head as (lower-case long name, value), for any bytes: invalid UTF-8 and
/// lines without a colon are skipped. Header values that list several (`Via: a, b`) are
/// split on commas outside quotes and angle brackets for `via`.
fn lenient_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out = Vec::new();
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = long_name(name);
        let value = value.trim();
        if name == "via" {
            out.extend(split_list(value).into_iter().map(|v| (name.clone(), v)));
        } else {
            out.push((name, value.to_owned()));
        }
    }
    out
}

/// Splits a comma-separated header value, leaving commas in quotes and `<...>` alone.
fn split_list(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn all(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// The echo headers of `headers` (those missing left empty).
fn echo_of(headers: &[(String, String)]) -> Echo {
    let get = |name| first(headers, name).unwrap_or_default().to_owned();
    Echo {
        vias: all(headers, "via"),
        from: get("from"),
        to: get("to"),
        call_id: get("call-id"),
        cseq: get("cseq"),
    }
}

/// Where a message ends in a stream buffer (RFC 3261 section 18.3): `Ok(None)` while
/// incomplete. A head over [`MAX_HEAD_BYTES`], a missing or bad `Content-Length`, or a
/// body over `max_body` is an error (the stream cannot be resynchronised).
pub fn frame_len(buf: &[u8], max_body: usize) -> Result<Option<usize>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(format!("no end of headers in {MAX_HEAD_BYTES} bytes"));
        }
        return Ok(None);
    };
    if head_end > MAX_HEAD_BYTES {
        return Err(format!("headers longer than {MAX_HEAD_BYTES} bytes"));
    }
    let headers = lenient_headers(&buf[..head_end]);
    let length = match first(&headers, "content-length") {
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| format!("bad Content-Length {value:?}"))?,
        None => return Err("no Content-Length on a stream".into()),
    };
    if length > max_body {
        return Err(format!("a body of {length} bytes is over {max_body}"));
    }
    let total = head_end + 4 + length;
    Ok((buf.len() >= total).then_some(total))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one SIP message from a datagram or a framed stream message. Never panics.
pub fn parse(bytes: &[u8]) -> Result<Incoming, WireError> {
    let head_end = find(bytes, b"\r\n\r\n")
        .ok_or_else(|| WireError::Unanswerable("no blank line after the headers".into()))?;
    if head_end > MAX_HEAD_BYTES {
        return Err(WireError::Unanswerable("headers too long".into()));
    }
    let headers = lenient_headers(&bytes[..head_end]);
    let raw_body = &bytes[head_end + 4..];
    let start = bytes.get(..4).unwrap_or(bytes);
    if start == b"SIP/" {
        return parse_response(bytes, &headers);
    }
    if !looks_like_request_line(&bytes[..head_end]) {
        return Err(WireError::Unanswerable("no SIP/2.0 request line".into()));
    }
    // Whatever is missing, the answer goes back where the request came from.
    let echo = echo_of(&headers);
    let malformed = |reason: String| WireError::Malformed {
        echo: Box::new(echo.clone()),
        reason,
    };
    if echo.vias.is_empty() {
        return Err(malformed("missing Via header".into()));
    }
    for (name, value) in [
        ("From", &echo.from),
        ("To", &echo.to),
        ("Call-ID", &echo.call_id),
        ("CSeq", &echo.cseq),
    ] {
        if value.is_empty() {
            return Err(malformed(format!("missing {name} header")));
        }
    }
    let body = match first(&headers, "content-length") {
        Some(value) => {
            let length: usize = value
                .parse()
                .map_err(|_| malformed(format!("bad Content-Length {value:?}")))?;
            if length > raw_body.len() {
                return Err(malformed(format!(
                    "Content-Length {length} but {} bytes of body",
                    raw_body.len()
                )));
            }
            &raw_body[..length]
        }
        None => raw_body,
    };
    // rsip reads the request line, the URI and every header (long names only, so the
    // body and the compact forms are handled above).
    let request = rsip::Request::try_from(&bytes[..head_end + 4])
        .map_err(|e| malformed(format!("unreadable request: {e}")))?;
    let (cseq_number, cseq_method) =
        parse_cseq(&echo.cseq).ok_or_else(|| malformed(format!("bad CSeq {:?}", echo.cseq)))?;
    let method = request.method.to_string();
    if !cseq_method.eq_ignore_ascii_case(&method) {
        return Err(malformed("the CSeq method is not the request's".into()));
    }
    let (from_uri, from_tag) =
        name_addr(&echo.from).ok_or_else(|| malformed(format!("bad From {:?}", echo.from)))?;
    if name_addr(&echo.to).is_none() {
        return Err(malformed(format!("bad To {:?}", echo.to)));
    }
    let max_forwards = match first(&headers, "max-forwards") {
        Some(value) => Some(
            value
                .parse()
                .map_err(|_| malformed(format!("bad Max-Forwards {value:?}")))?,
        ),
        None => None,
    };
    let branch = param(&echo.vias[0], "branch");
    let rsip_uri = request.uri;
    Ok(Incoming::Request(Box::new(Request {
        method,
        uri: rsip_uri,
        uri_text: request_uri_text(&bytes[..head_end]),
        branch,
        from_uri,
        from_tag,
        cseq_number,
        max_forwards,
        content_type: first(&headers, "content-type").map(str::to_owned),
        authorization: first(&headers, "authorization").map(str::to_owned),
        body: body.to_vec(),
        echo,
    })))
}

/// The Request-URI of a request line that [`looks_like_request_line`].
fn request_uri_text(head: &[u8]) -> String {
    let line = &head[..find(head, b"\r\n").unwrap_or(head.len())];
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    parts.next();
    parts.next().unwrap_or_default().to_owned()
}

/// `METHOD SP anything SP SIP/2.0` on the first line.
fn looks_like_request_line(head: &[u8]) -> bool {
    let line = &head[..find(head, b"\r\n").unwrap_or(head.len())];
    let token = line.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    token > 0 && line.get(token) == Some(&b' ') && line.ends_with(b" SIP/2.0")
}

fn parse_response(bytes: &[u8], headers: &[(String, String)]) -> Result<Incoming, WireError> {
    let line_end = find(bytes, b"\r\n").unwrap_or(bytes.len());
    let line = std::str::from_utf8(&bytes[..line_end])
        .map_err(|_| WireError::Unanswerable("status line is not UTF-8".into()))?;
    let mut parts = line.splitn(3, ' ');
    let (Some("SIP/2.0"), Some(code)) = (parts.next(), parts.next()) else {
        return Err(WireError::Unanswerable(format!("bad status line {line:?}")));
    };
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..700).contains(c))
        .ok_or_else(|| WireError::Unanswerable(format!("bad status code {code:?}")))?;
    let via = first(headers, "via").unwrap_or_default();
    Ok(Incoming::Response(Response {
        status,
        reason: parts.next().unwrap_or_default().to_owned(),
        branch: param(via, "branch"),
        call_id: first(headers, "call-id").unwrap_or_default().to_owned(),
        retry_after: first(headers, "retry-after").and_then(|v| {
            v.split([';', '(', ' '])
                .next()
                .and_then(|n| n.trim().parse().ok())
        }),
        www_authenticate: all(headers, "www-authenticate"),
        proxy_authenticate: all(headers, "proxy-authenticate"),
    }))
}

/// `CSeq: 4711 MESSAGE` → (4711, "MESSAGE").
fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let mut parts = value.split_whitespace();
    let number = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    parts.next().is_none().then_some((number, method))
}

/// The URI and tag of a `From`/`To` value (`"Bob" <sip:bob@x>;tag=1` or `sip:bob@x;tag=1`).
pub fn name_addr(value: &str) -> Option<(rsip::Uri, Option<String>)> {
    let (uri, params) = match value.find('<') {
        Some(open) => {
            let rest = &value[open + 1..];
            let close = rest.find('>')?;
            (&rest[..close], &rest[close + 1..])
        }
        None => match value.find(';') {
            Some(semi) => (&value[..semi], &value[semi..]),
            None => (value, ""),
        },
    };
    let uri = rsip::Uri::try_from(uri.trim()).ok()?;
    Some((uri, param(params, "tag")))
}

/// The value of `;name=value` in a header's parameters.
pub fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (key, v) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The reason phrase of the status codes we send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        483 => "Too Many Hops",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// Writes the response `status` to a request with `echo` headers, adding a `To` tag
/// when there is none, and `extra` headers (name, value).
pub fn response(
    echo: &Echo,
    status: u16,
    reason: Option<&str>,
    to_tag: &str,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let mut headers: Vec<rsip::Header> = echo
        .vias
        .iter()
        .map(|v| rsip::Header::Via(rsip::headers::Via::new(v.clone())))
        .collect();
    // A 400 for a request that lacks one of these leaves it out.
    if !echo.from.is_empty() {
        headers.push(rsip::Header::From(rsip::headers::From::new(
            echo.from.clone(),
        )));
    }
    if !echo.to.is_empty() {
        let to = if status > 100 && param(after_uri(&echo.to), "tag").is_none() {
            format!("{};tag={to_tag}", echo.to)
        } else {
            echo.to.clone()
        };
        headers.push(rsip::Header::To(rsip::headers::To::new(to)));
    }
    if !echo.call_id.is_empty() {
        headers.push(rsip::Header::CallId(rsip::headers::CallId::new(
            echo.call_id.clone(),
        )));
    }
    if !echo.cseq.is_empty() {
        headers.push(rsip::Header::CSeq(rsip::headers::CSeq::new(
            echo.cseq.clone(),
        )));
    }
    for (name, value) in extra {
        headers.push(rsip::Header::Other((*name).to_owned(), value.clone()));
    }
    headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::new("0"),
    ));
    let reason = reason
        .map(|r| r.replace(['\r', '\n'], " "))
        .unwrap_or_else(|| reason_phrase(status).to_owned());
    let response = rsip::Response {
        status_code: rsip::StatusCode::Other(status, reason),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    };
    response.to_string().into_bytes()
}

/// The part of a `From`/`To` value after its URI (where the tag is).
fn after_uri(value: &str) -> &str {
    match value.find('>') {
        Some(close) => &value[close..],
        None => value,
    }
}

/// An outbound request, written out.
pub struct OutgoingRequest<'a> {
    /// `MESSAGE`.
    pub method: &'a str,
    /// The Request-URI.
    pub uri: &'a str,
    /// `SIP/2.0/UDP` or `SIP/2.0/TCP`.
    pub transport: &'a str,
    /// Our `host:port` for `Via`.
    pub sent_by: &'a str,
    /// The `branch`.
    pub branch: &'a str,
    /// `Route` (a loose-routing outbound proxy), when any.
    pub route: Option<&'a str>,
    /// `From` (with its tag).
    pub from: &'a str,
    /// `To`.
    pub to: &'a str,
    /// `Call-ID`.
    pub call_id: &'a str,
    /// The `CSeq` number.
    pub cseq: u32,
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// More headers (`Authorization`, ...).
    pub extra: &'a [(&'a str, String)],
    /// `Content-Type` of the body.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
}

impl OutgoingRequest<'_> {
    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        let _ = write!(
            head,
            "{} {} SIP/2.0\r\nVia: {} {};branch={};rport\r\nMax-Forwards: 70\r\n",
            self.method, self.uri, self.transport, self.sent_by, self.branch
        );
        if let Some(route) = self.route {
            let _ = write!(head, "Route: {route}\r\n");
        }
        let _ = write!(
            head,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nUser-Agent: {}\r\n",
            self.from, self.to, self.call_id, self.cseq, self.method, self.user_agent
        );
        for (name, value) in self.extra {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(
            head,
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            self.content_type,
            self.body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "MESSAGE sip:+15550100@gw.example.test SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776sgdkse\r\n\
        Max-Forwards: 70\r\n\
        From: \"Alice\" <sip:alice@example.org>;tag=49583\r\n\
        To: <sip:+15550100@gw.example.test>\r\n\
        Call-ID: asd88asd77a@1.2.3.4\r\n\
        CSeq: 1 MESSAGE\r\n\
        Content-Type: text/plain\r\n\
        Content-Length: 5\r\n\r\nhello";

    #[test]
    fn reads_a_message() {
        let Ok(Incoming::Request(request)) = parse(MESSAGE.as_bytes()) else {
            panic!("not read");
        };
        assert_eq!(request.method, "MESSAGE");
        assert_eq!(request.body, b"hello");
        assert_eq!(request.branch.as_deref(), Some("z9hG4bK776sgdkse"));
        assert_eq!(request.from_tag.as_deref(), Some("49583"));
        assert_eq!(request.from_uri.to_string(), "sip:alice@example.org");
        assert_eq!(request.uri.user(), Some("+15550100"));
        assert_eq!(request.cseq_number, 1);
        assert_eq!(request.max_forwards, Some(70));
    }

    #[test]
    fn compact_headers_and_short_content_length() {
        let text = "MESSAGE sip:bob@example.org SIP/2.0\r\n\
            v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
            f: sip:alice@example.org;tag=1\r\nt: sip:bob@example.org\r\ni: x@y\r\n\
            CSeq: 7 MESSAGE\r\nc: text/plain\r\nl: 2\r\n\r\nhi and more";
        let Ok(Incoming::Request(request)) = parse(text.as_bytes()) else {
            panic!("not read");
        };
        assert_eq!(request.echo.vias.len(), 2);
        assert_eq!(request.body, b"hi");
        assert_eq!(request.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn malformed_requests_are_answerable_when_they_can_be() {
        let no_call_id = MESSAGE.replace("Call-ID: asd88asd77a@1.2.3.4\r\n", "");
        assert!(matches!(
            parse(no_call_id.as_bytes()),
            Err(WireError::Malformed { .. })
        ));
        let no_via = MESSAGE.replace(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776sgdkse\r\n",
            "",
        );
        assert!(matches!(
            parse(no_via.as_bytes()),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(WireError::Unanswerable(_))
        ));
        let long = MESSAGE.replace("Content-Length: 5", "Content-Length: 50");
        assert!(matches!(
            parse(long.as_bytes()),
            Err(WireError::Malformed { .. })
        ));
        let bad_cseq = MESSAGE.replace("CSeq: 1 MESSAGE", "CSeq: one MESSAGE");
        assert!(matches!(
            parse(bad_cseq.as_bytes()),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn responses_echo_the_request() {
        let Ok(Incoming::Request(request)) = parse(MESSAGE.as_bytes()) else {
            panic!("not read");
        };
        let bytes = response(&request.echo, 200, None, "abc", &[]);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(text.contains("To: <sip:+15550100@gw.example.test>;tag=abc\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        let Ok(Incoming::Response(parsed)) = parse(&bytes) else {
            panic!("response not read back");
        };
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.branch.as_deref(), Some("z9hG4bK776sgdkse"));
        assert_eq!(parsed.call_id, "asd88asd77a@1.2.3.4");
    }

    #[test]
    fn frames_a_stream() {
        let two = format!("{MESSAGE}{MESSAGE}");
        let first = frame_len(two.as_bytes(), 1024).expect("framed");
        assert_eq!(first, Some(MESSAGE.len()));
        assert_eq!(frame_len(&MESSAGE.as_bytes()[..40], 1024), Ok(None));
        assert!(frame_len(MESSAGE.as_bytes(), 2).is_err());
        assert!(frame_len(&[b'x'; MAX_HEAD_BYTES + 1], 1024).is_err());
    }
}
