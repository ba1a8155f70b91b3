//! Reading an inbound mail (RFC 5322 + MIME) with `mail-parser`: the text body, the
//! attachments, the threading headers, and whether it is a delivery status notification
//! (RFC 3464), which [`crate::dsn`] reads.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};
use switchboard_adapter::InboundAttachment;

use crate::dsn::{self, Dsn};

/// What we keep of an inbound mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mail {
    /// The first address of `From`, if any.
    pub from: Option<String>,
    /// The display name of `From`, if any.
    pub from_name: Option<String>,
    /// `Subject`, decoded.
    pub subject: Option<String>,
    /// The text body: `text/plain` when there is one, else `text/html` turned into text,
    /// decoded from its charset.
    pub text: String,
    /// `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// `In-Reply-To`, without angle brackets (the first id).
    pub in_reply_to: Option<String>,
    /// `References`, without angle brackets, in order.
    pub references: Vec<String>,
    /// The parts that are not the text body.
    pub attachments: Vec<InboundAttachment>,
    /// When the mail is a delivery status notification: what it reports.
    pub dsn: Option<Dsn>,
}

/// Reads a mail. Never panics; a mail that `mail-parser` cannot read, or that has no
/// header field at all, gives `None`.
pub fn parse(raw: &[u8]) -> Option<Mail> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())?;
    let from = message.from().and_then(|a| a.first());
    let mut mail = Mail {
        from: from.and_then(|a| a.address()).map(str::to_owned),
        from_name: from
            .and_then(|a| a.name())
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        subject: message
            .subject()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        text: message
            .body_text(0)
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default(),
        message_id: message.message_id().map(str::to_owned),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        attachments: Vec::new(),
        dsn: None,
    };
    let is_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case("delivery-status"))
    });
    if is_report {
        mail.dsn = Some(report(&message));
        return Some(mail);
    }
    for part in message.attachments() {
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_owned())
            .to_ascii_lowercase();
        let data = match &part.body {
            // A nested mail is kept as it arrived.
            PartType::Message(_) => raw
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or_default()
                .to_vec(),
            _ => part.contents().to_vec(),
        };
        mail.attachments.push(InboundAttachment {
            name: part.attachment_name().map(str::to_owned),
            content_type,
            data,
        });
    }
    Some(mail)
}

/// The delivery report of a `multipart/report; report-type=delivery-status` mail: the
/// `message/delivery-status` part, and the Message-ID of the returned mail
/// (`message/rfc822` or `text/rfc822-headers`).
fn report(message: &mail_parser::Message<'_>) -> Dsn {
    let mut status = None;
    let mut original_message_id = None;
    for part in message.parts.iter() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let subtype = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") if status.is_none() => {
                status = Some(dsn::parse_status(part.contents()));
            }
            ("message", "rfc822" | "global") if original_message_id.is_none() => {
                original_message_id = part
                    .message()
                    .and_then(|m| m.message_id())
                    .map(str::to_owned);
            }
            ("text", "rfc822-headers") if original_message_id.is_none() => {
                original_message_id = MessageParser::default()
                    .parse(part.contents())
                    .and_then(|m| m.message_id().map(str::to_owned));
            }
            _ => {}
        }
    }
    let mut report = status.unwrap_or_default();
    report.original_message_id = original_message_id;
    report
}

/// Message ids of a header (`In-Reply-To`, `References`) without angle brackets.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The text of a mail for an SMS: the subject and the body, on separate lines, without
/// the quoted earlier message of a reply (lines starting with `>` and the
/// "On ... wrote:" line before them).
pub fn sms_text(subject: Option<&str>, body: &str) -> String {
    let mut lines: Vec<&str> = body
        .lines()
        .filter(|line| !line.trim_start().starts_with('>'))
        .collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    if lines
        .last()
        .is_some_and(|l| l.trim_end().ends_with("wrote:"))
    {
        lines.pop();
    }
    let body = lines.join("\n");
    let body = body.trim();
    // A reply's subject ("Re: ...") says nothing new.
    let subject = subject
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.to_ascii_lowercase().starts_with("re:"));
    match (subject, body.is_empty()) {
        (Some(subject), true) => subject.to_owned(),
        (Some(subject), false) => format!("{subject}\n{body}"),
        (None, _) => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_text_joins_subject_and_body_and_drops_quotes() {
        assert_eq!(sms_text(Some("Hi"), "there\n"), "Hi\nthere");
        assert_eq!(sms_text(None, "just body"), "just body");
        assert_eq!(sms_text(Some("only"), "  \n"), "only");
        assert_eq!(
            sms_text(
                Some("Re: Hi"),
                "Yes please\n\nOn Mon, 1 Jan 2026, +1555 wrote:\n> Hi\n> there\n"
            ),
            "Yes please"
        );
    }

    #[test]
    fn html_alone_becomes_text() {
        let raw = b"From: A <a@x.test>\r\nSubject: S\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>world</b> &amp; you</p>\r\n";
        let mail = parse(raw).expect("parsed");
        assert!(mail.text.contains("Hello world & you"), "{:?}", mail.text);
        assert_eq!(mail.from.as_deref(), Some("a@x.test"));
        assert_eq!(mail.from_name.as_deref(), Some("A"));
    }

    #[test]
    fn charset_is_decoded() {
        let raw = b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nS=FC=DF\r\n";
        let mail = parse(raw).expect("parsed");
        assert_eq!(mail.subject.as_deref(), Some("Grüße"));
        assert_eq!(mail.text, "Süß");
    }
}
