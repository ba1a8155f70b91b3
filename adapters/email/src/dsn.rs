//! Delivery status notifications (RFC 3464): the `message/delivery-status` fields that
//! say what became of a mail we sent, and VERP return paths (`bounces+<id>@domain`)
//! that name the mail a bounce is about.

/// What a DSN reports about the first recipient it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `Original-Envelope-Id` (per-message field), if given.
    pub envelope_id: Option<String>,
    /// `Action`: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: Option<String>,
    /// `Status`, the enhanced status code (`5.1.1`).
    pub status: Option<String>,
    /// `Diagnostic-Code` without its type (`smtp; 550 5.1.1 no such user` gives
    /// `550 5.1.1 no such user`).
    pub diagnostic: Option<String>,
    /// `Final-Recipient` without its type.
    pub recipient: Option<String>,
    /// The `Message-ID` of the returned mail (from its `message/rfc822` or
    /// `text/rfc822-headers` part), without angle brackets.
    pub original_message_id: Option<String>,
}

/// What a DSN means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The mail reached the recipient's mailbox (`delivered`, `relayed`, `expanded`).
    Delivered,
    /// It will not (`failed`).
    Failed,
    /// Nothing final yet (`delayed`, or no action).
    Pending,
}

impl Dsn {
    /// What the report means.
    pub fn verdict(&self) -> Verdict {
        match self
            .action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("failed") => Verdict::Failed,
            Some("delivered" | "relayed" | "expanded") => Verdict::Delivered,
            _ => Verdict::Pending,
        }
    }
}

/// Reads the fields of a `message/delivery-status` body: one per-message block, then
/// one block per recipient, separated by blank lines (RFC 3464 section 2.1). The first
/// recipient block with an `Action` is the one reported. Never panics.
pub fn parse_status(body: &[u8]) -> Dsn {
    let text = String::from_utf8_lossy(body);
    let mut dsn = Dsn::default();
    let mut recipient_seen = false;
    for block in blocks(&text) {
        let fields = unfold(&block);
        let has_action = fields.iter().any(|(n, _)| n == "action");
        for (name, value) in &fields {
            match name.as_str() {
                "original-envelope-id" if dsn.envelope_id.is_none() => {
                    dsn.envelope_id = Some(value.clone());
                }
                _ => {}
            }
        }
        if has_action && !recipient_seen {
            recipient_seen = true;
            for (name, value) in fields {
                match name.as_str() {
                    "action" => dsn.action = Some(value),
                    "status" => {
                        dsn.status = value.split_whitespace().next().map(str::to_owned);
                    }
                    "diagnostic-code" => dsn.diagnostic = Some(without_type(&value)),
                    "final-recipient" => dsn.recipient = Some(without_type(&value)),
                    _ => {}
                }
            }
        }
    }
    dsn
}

/// Splits on blank lines.
fn blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The header fields of one block, names lower-cased, folded lines joined.
fn unfold(block: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    fields
}

/// `rfc822; bob@example.org` gives `bob@example.org`.
fn without_type(value: &str) -> String {
    match value.split_once(';') {
        Some((_, rest)) => rest.trim().to_owned(),
        None => value.trim().to_owned(),
    }
}

/// The VERP envelope sender for message `id`: `local+id@domain` for the return path
/// `local@domain`.
pub fn verp_address(return_path: &str, id: &str) -> String {
    match return_path.rsplit_once('@') {
        Some((local, domain)) => format!("{local}+{id}@{domain}"),
        None => return_path.to_owned(),
    }
}

/// Whether `recipient` is the return path or one of its VERP forms; with the token
/// (the message id) of a VERP form.
pub fn match_return_path(return_path: &str, recipient: &str) -> Option<Option<String>> {
    let (local, domain) = return_path.rsplit_once('@')?;
    let (r_local, r_domain) = recipient.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(r_domain) {
        return None;
    }
    if r_local.eq_ignore_ascii_case(local) {
        return Some(None);
    }
    let token = r_local
        .get(..local.len())
        .filter(|head| head.eq_ignore_ascii_case(local))
        .and_then(|_| r_local.get(local.len()..))
        .and_then(|rest| rest.strip_prefix('+'))
        .filter(|token| !token.is_empty())?;
    Some(Some(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_recipient_block() {
        let body = b"Reporting-MTA: dns; mx.example.org\r\nOriginal-Envelope-Id: env-1\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.org>:\r\n  no such user\r\n\r\nFinal-Recipient: rfc822; carol@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n";
        let dsn = parse_status(body);
        assert_eq!(dsn.envelope_id.as_deref(), Some("env-1"));
        assert_eq!(dsn.verdict(), Verdict::Failed);
        assert_eq!(dsn.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            dsn.diagnostic.as_deref(),
            Some("550 5.1.1 <bob@example.org>: no such user")
        );
        assert_eq!(dsn.recipient.as_deref(), Some("bob@example.org"));
    }

    #[test]
    fn verp_round_trip() {
        let verp = verp_address("bounces@mail.example.test", "0194-abc");
        assert_eq!(verp, "bounces+0194-abc@mail.example.test");
        assert_eq!(
            match_return_path("bounces@mail.example.test", &verp),
            Some(Some("0194-abc".to_owned()))
        );
        assert_eq!(
            match_return_path("bounces@mail.example.test", "BOUNCES@Mail.Example.Test"),
            Some(None)
        );
        assert_eq!(
            match_return_path("bounces@mail.example.test", "bouncesx@mail.example.test"),
            None
        );
        assert_eq!(
            match_return_path("bounces@mail.example.test", "bounces+x@other.test"),
            None
        );
    }
}
