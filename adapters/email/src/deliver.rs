//! What happens to a recipient at `RCPT` and to a mail at the end of `DATA`: the
//! address a recipient means (`+14155550100@<sms domain>` is the number), the core's
//! verdict on it, and the handing over of the mail (or, for a bounce, of its report)
//! before the answer is given.

use chrono::Utc;
use switchboard_adapter::{Inbound, IngestOutcome, StatusReport};
use switchboard_model::{Channel, MessageStatus};

use crate::dsn::{self, Verdict};
use crate::mime;
use crate::session::Context;

/// The connector name inbound mail and reports carry.
pub const CONNECTOR: &str = "email";

/// A recipient taken at `RCPT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An address the core takes.
    Message {
        /// The address as the client gave it.
        address: String,
        /// The address it means (`+14155550100`, or the bare mail address).
        to: String,
    },
    /// Our return path: bounces come here. With the message id of a VERP address.
    ReturnPath {
        /// The VERP token (our message id), if the address had one.
        token: Option<String>,
    },
}

/// The address a mail recipient means: the phone number of an E.164 local part on an
/// SMS domain, else the address with its domain in lower case.
pub fn translate(ctx: &Context, local: &str, domain: &str) -> String {
    let sms = ctx
        .config
        .sms_domains()
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain));
    if sms && is_e164(local) {
        local.to_owned()
    } else {
        format!("{local}@{}", domain.to_ascii_lowercase())
    }
}

/// `+` and 8 to 15 digits.
fn is_e164(local: &str) -> bool {
    local
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Decides on one `RCPT TO` address: `Ok` with what it means, or the whole reply line.
pub fn recipient(ctx: &Context, address: &str) -> Result<Recipient, String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("550 5.1.3 Recipient address needs a domain\r\n".to_owned());
    };
    if local.is_empty() || !ctx.config.is_our_domain(domain) {
        return Err(format!(
            "550 5.1.1 <{address}>: we do not take mail for this address\r\n"
        ));
    }
    if let Some(return_path) = &ctx.config.return_path
        && let Some(token) = dsn::match_return_path(return_path, address)
    {
        return Ok(Recipient::ReturnPath { token });
    }
    let to = translate(ctx, local, domain);
    if ctx.ingest.accepts(Channel::Email, &ctx.config.tenant, &to) {
        Ok(Recipient::Message {
            address: address.to_owned(),
            to,
        })
    } else {
        Err(format!("550 5.1.1 <{address}>: no such recipient here\r\n"))
    }
}

/// Hands a mail to the core for every recipient (or its report, for a bounce) and
/// returns the reply to `DATA`: `250` once every recipient's message is committed;
/// `451 4.3.0` when the core failed for any of them, so the client sends the whole
/// mail again (a recipient already committed then gets it twice: at least once, never
/// lost); `554` when the core refused every recipient.
pub async fn deliver(
    ctx: &Context,
    mail_from: &str,
    recipients: &[Recipient],
    data: &[u8],
) -> String {
    let Some(mail) = mime::parse(data) else {
        tracing::info!("smtp: message without headers refused");
        return "554 5.6.0 Message could not be read as RFC 5322\r\n".to_owned();
    };
    let token = recipients.iter().find_map(|r| match r {
        Recipient::ReturnPath { token } => token.clone(),
        Recipient::Message { .. } => None,
    });
    let to_return_path = recipients
        .iter()
        .any(|r| matches!(r, Recipient::ReturnPath { .. }));
    if mail.dsn.is_some() || to_return_path {
        return bounce(ctx, &mail, token).await;
    }
    let mut taken = Vec::new();
    let mut refused = 0;
    for recipient in recipients {
        let Recipient::Message { address, to } = recipient else {
            continue;
        };
        let inbound = inbound(ctx, mail_from, to, &mail);
        match ctx.ingest.receive(inbound).await {
            Ok(IngestOutcome::Received { id } | IngestOutcome::Forwarded { id }) => {
                tracing::info!(rcpt = %address, id = %id, "smtp: message committed");
                taken.push(id);
            }
            Ok(IngestOutcome::Unknown) => {
                refused += 1;
                tracing::info!(rcpt = %address, "smtp: the core knows no owner for the recipient");
            }
            Ok(IngestOutcome::Refused { code, detail }) => {
                refused += 1;
                tracing::info!(rcpt = %address, code = %code, detail = %detail, "smtp: the core refused the message");
            }
            Err(e) => {
                tracing::error!(rcpt = %address, error = %e, "smtp: the core could not store the message");
                return "451 4.3.0 Temporary failure storing the message, try again later\r\n"
                    .to_owned();
            }
        }
    }
    if taken.is_empty() && refused > 0 {
        return "554 5.1.1 No recipient could take the message\r\n".to_owned();
    }
    format!("250 2.0.0 OK queued as {}\r\n", taken.join(" "))
}

/// The inbound message for one recipient.
fn inbound(ctx: &Context, mail_from: &str, to: &str, mail: &mime::Mail) -> Inbound {
    let to_number = !to.contains('@');
    let text = if to_number {
        mime::sms_text(mail.subject.as_deref(), &mail.text)
    } else {
        mail.text.clone()
    };
    let mut metadata = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            metadata.push((key.to_owned(), value));
        }
    };
    put("email.message_id", mail.message_id.clone());
    put("email.in_reply_to", mail.in_reply_to.clone());
    put("email.references", Some(mail.references.join(" ")));
    put("email.from_name", mail.from_name.clone());
    put("email.envelope_from", Some(mail_from.to_owned()));
    Inbound {
        channel: Channel::Email,
        connector: CONNECTOR.to_owned(),
        tenant: ctx.config.tenant.clone(),
        from: mail.from.clone().unwrap_or_else(|| mail_from.to_owned()),
        to: to.to_owned(),
        text,
        subject: mail.subject.clone(),
        metadata,
        keep_unmatched: false,
        attachments: mail.attachments.clone(),
    }
}

/// A mail to our return path or a DSN: its report is recorded, never stored as a
/// message. A mail there that reports nothing (an auto-reply) is dropped, logged.
async fn bounce(ctx: &Context, mail: &mime::Mail, token: Option<String>) -> String {
    let Some(report) = &mail.dsn else {
        tracing::info!(message_id = ?mail.message_id, "smtp: mail to the return path that is no delivery report dropped");
        return "250 2.0.0 OK\r\n".to_owned();
    };
    // VERP names our message; then an ENVID we set, then the returned mail's
    // Message-ID.
    let hostname = &ctx.hostname;
    let upstream_id = token
        .map(|id| format!("{id}@{hostname}"))
        .or_else(|| report.envelope_id.clone())
        .or_else(|| report.original_message_id.clone());
    let Some(upstream_id) = upstream_id else {
        tracing::info!("smtp: delivery report naming no message of ours dropped");
        return "250 2.0.0 OK\r\n".to_owned();
    };
    let (status, error) = match report.verdict() {
        Verdict::Failed => (
            MessageStatus::Undelivered,
            Some((
                report.status.clone().unwrap_or_else(|| "5.0.0".to_owned()),
                report.diagnostic.clone().unwrap_or_default(),
            )),
        ),
        Verdict::Delivered => (MessageStatus::Delivered, None),
        Verdict::Pending => {
            tracing::info!(upstream_id = %upstream_id, "smtp: delay report noted");
            return "250 2.0.0 OK\r\n".to_owned();
        }
    };
    let report = StatusReport {
        connector: CONNECTOR.to_owned(),
        upstream_id: upstream_id.clone(),
        status,
        error,
        at: Utc::now(),
    };
    match ctx.reports.report(report).await {
        Ok(()) => {
            tracing::info!(upstream_id = %upstream_id, status = %status.as_str(), "smtp: delivery report recorded");
            "250 2.0.0 OK report recorded\r\n".to_owned()
        }
        Err(e) => {
            tracing::error!(upstream_id = %upstream_id, error = %e, "smtp: the core could not record the report");
            "451 4.3.0 Temporary failure recording the report, try again later\r\n".to_owned()
        }
    }
}
