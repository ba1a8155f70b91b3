//! MESSAGE bodies: `text/plain` and `message/cpim` (RFC 3862) are taken; inside CPIM a
//! part that is not text is kept as an attachment. Other outer content types are
//! refused (`415` with `Accept`).

use switchboard_adapter::InboundAttachment;

/// The content types a MESSAGE may carry, for `Accept`.
pub const ACCEPT: &str = "text/plain, message/cpim";

/// What a body came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    /// The text.
    pub text: String,
    /// CPIM headers kept as metadata (`sip.cpim.from`, `sip.cpim.to`, `sip.cpim.datetime`).
    pub metadata: Vec<(String, String)>,
    /// A CPIM part that is not text.
    pub attachments: Vec<InboundAttachment>,
}

/// A content type we do not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// The media type of a `Content-Type` value, lower-case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Text in the charset a `Content-Type` names (UTF-8 unless ISO-8859-1 is said); bytes
/// that are not valid are replaced.
fn text_of(content_type: &str, body: &[u8]) -> String {
    let latin1 = content_type.split(';').skip(1).any(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("charset")
                && matches!(
                    v.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                    "iso-8859-1" | "latin1"
                )
        })
    });
    if latin1 {
        switchboard_model::text::decode_latin1(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Reads a body with its `Content-Type` (none: an empty body or plain text).
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Content, Unsupported> {
    let content_type = content_type.unwrap_or("text/plain");
    match media_type(content_type).as_str() {
        "text/plain" => Ok(Content {
            text: text_of(content_type, body),
            ..Content::default()
        }),
        "message/cpim" => Ok(cpim(body)),
        other => Err(Unsupported(other.to_owned())),
    }
}

/// Splits at the first blank line (CRLF CRLF, or LF LF from lenient senders).
fn split_blank(bytes: &[u8]) -> (&[u8], &[u8]) {
    for (i, w) in bytes.windows(2).enumerate() {
        if w == b"\n\n" {
            return (&bytes[..i], &bytes[i + 2..]);
        }
        if w == b"\r\n" && bytes.get(i + 2..i + 4) == Some(b"\r\n") {
            return (&bytes[..i], &bytes[i + 4..]);
        }
    }
    (bytes, &[])
}

fn header_lines(block: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(block)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

/// `message/cpim`: CPIM message headers, a blank line, MIME headers, a blank line, the
/// content.
fn cpim(body: &[u8]) -> Content {
    let (message_headers, rest) = split_blank(body);
    let (mime_headers, content) = split_blank(rest);
    let mut out = Content::default();
    for (name, value) in header_lines(message_headers) {
        let key = match name.as_str() {
            "from" => "sip.cpim.from",
            "to" => "sip.cpim.to",
            "datetime" => "sip.cpim.datetime",
            _ => continue,
        };
        out.metadata.push((key.to_owned(), value));
    }
    let inner_type = header_lines(mime_headers)
        .into_iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "text/plain".to_owned());
    if media_type(&inner_type) == "text/plain" {
        out.text = text_of(&inner_type, content);
    } else {
        out.attachments.push(InboundAttachment {
            name: None,
            content_type: inner_type,
            data: content.to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text() {
        let c = decode(Some("text/plain; charset=UTF-8"), "héllo".as_bytes()).expect("text");
        assert_eq!(c.text, "héllo");
        let c = decode(Some("Text/Plain;charset=ISO-8859-1"), b"h\xe9").expect("latin1");
        assert_eq!(c.text, "hé");
        assert_eq!(decode(None, b"").expect("empty").text, "");
    }

    #[test]
    fn cpim_text_and_headers() {
        let body = "From: Alice <sip:alice@example.org>\r\nTo: <sip:bob@example.org>\r\n\
            DateTime: 2026-01-01T10:00:00Z\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi there";
        let c = decode(Some("message/cpim"), body.as_bytes()).expect("cpim");
        assert_eq!(c.text, "hi there");
        assert!(c.metadata.contains(&(
            "sip.cpim.datetime".to_owned(),
            "2026-01-01T10:00:00Z".to_owned()
        )));
        assert!(c.metadata.iter().any(|(k, _)| k == "sip.cpim.from"));
        assert!(c.attachments.is_empty());
    }

    #[test]
    fn cpim_other_content_is_an_attachment() {
        let body = b"From: <sip:a@x>\r\n\r\nContent-Type: image/png\r\n\r\n\x89PNG";
        let c = decode(Some("message/cpim"), body).expect("cpim");
        assert_eq!(c.text, "");
        assert_eq!(c.attachments.len(), 1);
        assert_eq!(c.attachments[0].content_type, "image/png");
        assert_eq!(c.attachments[0].data, b"\x89PNG");
    }

    #[test]
    fn other_types_are_refused() {
        assert_eq!(
            decode(Some("application/im-iscomposing+xml"), b"<x/>"),
            Err(Unsupported("application/im-iscomposing+xml".into()))
        );
    }
}
