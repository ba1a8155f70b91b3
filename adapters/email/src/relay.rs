//! The `email` connector: outbound mail through `[email] relay` with `lettre` (pooled
//! connections, STARTTLS or implicit TLS with rustls, AUTH). Each message becomes an
//! RFC 5322 mail with a Message-ID of its own (`<message id>@<hostname>`, also its
//! upstream id, so bounces find it), Date, From with a display name, threading headers
//! from `email.in_reply_to` / `email.references`, and MIME encoding for non-ASCII.
//! A message with attachments goes as `multipart/mixed`: the text part, then each
//! attachment base64-encoded with its content type and file name (RFC 2231 for a
//! non-ASCII name).

use std::sync::OnceLock;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, Message as Mail, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};
use switchboard_adapter::{Adapter, BoxFuture, OutboundAttachment, SendOutcome};
use switchboard_model::{Address, Channel, Message};

use crate::config::{EmailConfig, StartTlsPolicy};
use crate::dsn;

/// The `email` connector.
pub struct Relay {
    config: EmailConfig,
    hostname: String,
    host: String,
    port: u16,
    implicit_tls: bool,
    root: Option<Vec<u8>>,
    transport: OnceLock<Result<AsyncSmtpTransport<Tokio1Executor>, String>>,
}

impl Relay {
    /// The connector for `config.relay` (checked by `problems()`); the CA file is read
    /// here so a missing file is an error at start.
    pub fn new(config: &EmailConfig, relay: &str) -> Result<Relay, String> {
        let (implicit_tls, rest) = if let Some(rest) = relay.strip_prefix("smtps://") {
            (true, rest)
        } else if let Some(rest) = relay.strip_prefix("smtp://") {
            (false, rest)
        } else {
            return Err(format!("email.relay: {relay:?} is not smtp:// or smtps://"));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("email.relay: {relay:?} has no host:port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let root = match &config.relay_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                format!("email.relay_ca_file: cannot read {}: {e}", path.display())
            })?),
            None => None,
        };
        Ok(Relay {
            config: config.clone(),
            hostname: config.hostname(),
            host,
            port,
            implicit_tls,
            root,
            transport: OnceLock::new(),
        })
    }

    /// The pooled transport, made on first use (its pool needs the runtime).
    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>, String> {
        self.transport
            .get_or_init(|| self.make_transport())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn make_transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut tls = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.root {
            let certificate = Certificate::from_pem(pem)
                .map_err(|e| format!("email.relay_ca_file: not a PEM certificate: {e}"))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("cannot set up TLS for the relay: {e}"))?;
        let tls = if self.implicit_tls {
            Tls::Wrapper(tls)
        } else {
            match self.config.relay_starttls {
                StartTlsPolicy::Opportunistic => Tls::Opportunistic(tls),
                StartTlsPolicy::Required => Tls::Required(tls),
                StartTlsPolicy::Never => Tls::None,
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .hello_name(ClientId::Domain(self.hostname.clone()))
            .timeout(Some(Duration::from_secs(self.config.relay_timeout_secs)))
            .pool_config(
                PoolConfig::new()
                    .max_size(u32::try_from(self.config.concurrency).unwrap_or(u32::MAX)),
            );
        if let (Some(user), Some(password)) =
            (&self.config.relay_username, &self.config.relay_password)
        {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }

    /// The mail for `message` with `attachments` (their bytes, in order), with its
    /// envelope and Message-ID (without brackets).
    pub fn compose(
        &self,
        message: &Message,
        attachments: &[OutboundAttachment],
    ) -> Result<(Mail, String), SendOutcome> {
        let permanent = |code: &str, detail: String| SendOutcome::Permanent {
            code: code.to_owned(),
            detail,
        };
        let to: lettre::Address = message.to.parse().map_err(|e| {
            permanent(
                "invalid_address",
                format!("{:?} is not a mail address: {e}", message.to),
            )
        })?;
        let from = self
            .sender(message)
            .map_err(|detail| permanent("invalid_address", detail))?;
        let message_id = format!("{}@{}", message.id, self.hostname);
        let mut builder = Mail::builder()
            .from(from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(
                message
                    .subject
                    .clone()
                    .unwrap_or_else(|| self.config.default_subject.clone()),
            )
            .message_id(Some(format!("<{message_id}>")))
            .date_now()
            .user_agent(format!("Switchboard/{}", env!("CARGO_PKG_VERSION")));
        let in_reply_to = message.metadata.get("email.in_reply_to");
        if let Some(parent) = in_reply_to {
            builder = builder.in_reply_to(bracketed(parent));
        }
        let mut references: Vec<String> = message
            .metadata
            .get("email.references")
            .map(|r| r.split_whitespace().map(bracketed).collect())
            .unwrap_or_default();
        if let Some(parent) = in_reply_to {
            let parent = bracketed(parent);
            if !references.contains(&parent) {
                references.push(parent);
            }
        }
        if !references.is_empty() {
            builder = builder.references(references.join(" "));
        }
        let envelope_from = match &self.config.return_path {
            Some(return_path) => dsn::verp_address(return_path, &message.id.to_string())
                .parse()
                .map_err(|e| permanent("invalid_address", format!("return path: {e}")))?,
            None => from.email.clone(),
        };
        let envelope = Envelope::new(Some(envelope_from), vec![to])
            .map_err(|e| permanent("invalid_address", e.to_string()))?;
        let builder = builder.envelope(envelope);
        let mail = if attachments.is_empty() {
            builder
                .header(ContentType::TEXT_PLAIN)
                .body(message.text.clone())
        } else {
            let mixed = attachments.iter().enumerate().fold(
                MultiPart::mixed().singlepart(SinglePart::plain(message.text.clone())),
                |mixed, (i, attachment)| mixed.singlepart(attachment_part(i, attachment)),
            );
            builder.multipart(mixed)
        }
        .map_err(|e| permanent("invalid_message", e.to_string()))?;
        Ok((mail, message_id))
    }

    /// The From mailbox: a mail address as it is, named `email.from_name` when the
    /// message has it (a forwarded mail keeps its sender's name; an API caller may set
    /// it); an SMS number as
    /// `<number>@<first sms domain>` named `from_name` (or the number); anything else,
    /// or nothing, as `default_from` named after the original sender.
    fn sender(&self, message: &Message) -> Result<Mailbox, String> {
        let parsed = message.from.as_deref().and_then(|f| Address::parse(f).ok());
        let (name, address) = match &parsed {
            Some(a) if a.channel() == Channel::Email => (
                message
                    .metadata
                    .get("email.from_name")
                    .filter(|n| !n.trim().is_empty())
                    .cloned(),
                a.as_str().to_owned(),
            ),
            Some(a) if a.channel() == Channel::Sms => {
                let domain = self
                    .config
                    .sms_domains()
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.hostname.clone());
                (
                    Some(
                        self.config
                            .from_name
                            .clone()
                            .unwrap_or_else(|| a.as_str().to_owned()),
                    ),
                    format!("{}@{domain}", a.as_str()),
                )
            }
            other => (
                other.as_ref().map(|a| a.as_str().to_owned()),
                self.default_from(),
            ),
        };
        let email: lettre::Address = address
            .parse()
            .map_err(|e| format!("sender {address:?} is not a mail address: {e}"))?;
        Ok(Mailbox::new(name, email))
    }

    fn default_from(&self) -> String {
        self.config.default_from.clone().unwrap_or_else(|| {
            let domain = self
                .config
                .domains
                .first()
                .or(self.config.sms_domains.first())
                .cloned()
                .unwrap_or_else(|| self.hostname.clone());
            format!("postmaster@{domain}")
        })
    }

    async fn send_message(
        &self,
        message: &Message,
        attachments: &[OutboundAttachment],
    ) -> SendOutcome {
        let (mail, message_id) = match self.compose(message, attachments) {
            Ok(composed) => composed,
            Err(outcome) => return outcome,
        };
        let transport = match self.transport() {
            Ok(transport) => transport,
            Err(detail) => {
                return SendOutcome::Permanent {
                    code: "relay_config".to_owned(),
                    detail,
                };
            }
        };
        match transport.send(mail).await {
            Ok(response) => {
                tracing::debug!(id = %message.id, code = %response.code(), "email: relay accepted the mail");
                SendOutcome::Accepted {
                    upstream_id: Some(message_id.clone()),
                    status: switchboard_model::MessageStatus::Sent,
                    metadata: vec![("email.message_id".to_owned(), message_id)],
                    parts: Vec::new(),
                }
            }
            Err(e) => outcome_of(&e),
        }
    }
}

/// Attachment `index` (0-based) as a MIME part: base64 (always, so the bytes arrive as
/// they are, whatever they look like), its content type (`application/octet-stream` when it does not parse), and
/// `Content-Disposition: attachment` with its file name, or `attachment-<n>` for a
/// part that came without one.
fn attachment_part(index: usize, attachment: &OutboundAttachment) -> SinglePart {
    let content_type = ContentType::parse(&attachment.content_type)
        .or_else(|_| ContentType::parse("application/octet-stream"))
        .unwrap_or(ContentType::TEXT_PLAIN);
    let name = attachment
        .name
        .clone()
        .unwrap_or_else(|| format!("attachment-{}", index + 1));
    let data = attachment.data.clone();
    let body =
        Body::new_with_encoding(data, ContentTransferEncoding::Base64).unwrap_or_else(Body::new);
    Attachment::new(name).body(body, content_type)
}

/// The send outcome for a relay error: 5xx is permanent with `"<code> <enhanced code>"`,
/// anything else (4xx, no connection, TLS, timeout) is transient.
fn outcome_of(error: &lettre::transport::smtp::Error) -> SendOutcome {
    let text = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    let code = match error.status() {
        Some(status) => {
            let enhanced = text
                .split_whitespace()
                .next()
                .filter(|w| is_enhanced_code(w));
            match enhanced {
                Some(enhanced) => format!("{status} {enhanced}"),
                None => status.to_string(),
            }
        }
        None => "connection".to_owned(),
    };
    let detail = if text.is_empty() {
        error.to_string()
    } else {
        text
    };
    if error.is_permanent() {
        tracing::info!(code = %code, detail = %detail, "email: relay refused the mail");
        SendOutcome::Permanent { code, detail }
    } else {
        tracing::info!(code = %code, detail = %detail, "email: relay not reachable or busy");
        SendOutcome::Transient {
            code,
            detail,
            retry_after: None,
        }
    }
}

/// `5.1.1`, `4.2.0`: class, subject, detail.
fn is_enhanced_code(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && matches!(parts.first(), Some(&("2" | "4" | "5")))
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `id@host` as `<id@host>`.
fn bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

impl Adapter for Relay {
    fn name(&self) -> &str {
        "email"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_message(message, &[]))
    }

    fn carries_attachments(&self) -> bool {
        true
    }

    fn send_with_attachments<'a>(
        &'a self,
        message: &'a Message,
        attachments: &'a [OutboundAttachment],
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_message(message, attachments))
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        assert!(is_enhanced_code("5.1.1"));
        assert!(is_enhanced_code("4.7.100"));
        assert!(!is_enhanced_code("550"));
        assert!(!is_enhanced_code("5.1"));
        assert!(!is_enhanced_code("x.1.1"));
    }

    fn config(extra: &str) -> EmailConfig {
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndomains = [\"mail.example.test\", \"sms.example.test\"]\n\
             sms_domains = [\"sms.example.test\"]\ntenant = \"acme\"\n\
             hostname = \"gw.example.test\"\n{extra}"
        );
        toml::from_str(&text).expect("config")
    }

    fn message(from: Option<&str>, to: &str) -> Message {
        let mut message = Message::new(
            "acme",
            switchboard_model::Direction::Outbound,
            Channel::Email,
            to,
            "Ja, gern.",
            switchboard_model::MessageStatus::Queued,
            chrono::Utc::now(),
        );
        message.from = from.map(str::to_owned);
        message
            .metadata
            .insert("email.in_reply_to".into(), "m1@example.org".into());
        message
    }

    fn formatted(relay: &Relay, message: &Message) -> String {
        let (mail, id) = relay.compose(message, &[]).expect("composed");
        assert_eq!(id, format!("{}@gw.example.test", message.id));
        String::from_utf8(mail.formatted()).expect("utf-8")
    }

    #[test]
    fn an_sms_sender_writes_from_its_number_at_the_sms_domain() {
        let config =
            config("from_name = \"Acme SMS\"\nreturn_path = \"bounces@mail.example.test\"\n");
        let relay = Relay::new(&config, "smtp://127.0.0.1:25").expect("relay");
        let message = message(Some("+15550100"), "alice@example.org");
        let mail = formatted(&relay, &message);
        assert!(
            mail.contains("From: \"Acme SMS\" <+15550100@sms.example.test>\r\n"),
            "{mail}"
        );
        assert!(mail.contains("In-Reply-To: <m1@example.org>\r\n"), "{mail}");
        assert!(mail.contains("References: <m1@example.org>\r\n"), "{mail}");
        assert!(mail.contains("Subject: Message\r\n"), "{mail}");
        let (envelope_from, _) = relay
            .compose(&message, &[])
            .map(|(m, _)| (m.envelope().from().map(ToString::to_string), ()))
            .expect("composed");
        assert_eq!(
            envelope_from,
            Some(format!("bounces+{}@mail.example.test", message.id))
        );
    }

    #[test]
    fn other_senders_use_the_default_sender_named_after_them() {
        let relay = Relay::new(&config(""), "smtp://127.0.0.1:25").expect("relay");
        let mail = formatted(
            &relay,
            &message(Some("xmpp:juliet@example.com"), "a@example.org"),
        );
        assert!(
            // The name "xmpp:juliet@example.com" as an encoded word (it has specials).
            mail.contains(
                "From: =?utf-8?b?eG1wcDpqdWxpZXRAZXhhbXBsZS5jb20=?= <postmaster@mail.example.test>"
            ),
            "{mail}"
        );
        let mail = formatted(&relay, &message(None, "a@example.org"));
        assert!(
            mail.contains("From: postmaster@mail.example.test\r\n"),
            "{mail}"
        );
        let refused = relay.compose(&message(None, "not a mail address"), &[]);
        assert!(matches!(refused, Err(SendOutcome::Permanent { .. })));
    }

    #[test]
    fn a_mail_sender_is_named_after_email_from_name() {
        let relay = Relay::new(&config(""), "smtp://127.0.0.1:25").expect("relay");
        let mut message = message(Some("jurgen@example.org"), "a@example.org");
        message
            .metadata
            .insert("email.from_name".into(), "Jürgen Müller".into());
        let mail = formatted(&relay, &message);
        assert!(
            mail.contains("From: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <jurgen@example.org>\r\n"),
            "{mail}"
        );
    }

    #[test]
    fn attachments_go_as_multipart_mixed_in_base64_with_their_names() {
        let relay = Relay::new(&config(""), "smtp://127.0.0.1:25").expect("relay");
        let message = message(Some("support@mail.example.test"), "a@example.org");
        let attachments = [
            OutboundAttachment {
                name: Some("Bericht ü.pdf".into()),
                content_type: "application/pdf".into(),
                data: vec![0x25, 0x50, 0x44, 0x46, 0x00, 0xff],
            },
            OutboundAttachment {
                name: None,
                content_type: "not a type".into(),
                data: b"plain".to_vec(),
            },
        ];
        let (mail, _) = relay.compose(&message, &attachments).expect("composed");
        let mail = String::from_utf8(mail.formatted()).expect("utf-8");
        assert!(mail.contains("Content-Type: multipart/mixed;"), "{mail}");
        assert!(
            mail.contains("Content-Type: text/plain; charset=utf-8"),
            "{mail}"
        );
        assert!(mail.contains("Ja, gern."), "{mail}");
        assert!(mail.contains("Content-Type: application/pdf\r\n"), "{mail}");
        assert!(mail.contains("JVBERgD/"), "the PDF bytes in base64: {mail}");
        // A non-ASCII name per RFC 2231.
        assert!(mail.contains("filename*"), "{mail}");
        assert!(
            mail.contains("Content-Type: application/octet-stream\r\n"),
            "{mail}"
        );
        assert!(mail.contains("filename=\"attachment-2\""), "{mail}");
        assert!(
            mail.contains("cGxhaW4="),
            "ASCII bytes in base64 too: {mail}"
        );
        assert!(mail.is_ascii(), "{mail}");
    }

    #[test]
    fn brackets() {
        assert_eq!(bracketed("a@b"), "<a@b>");
        assert_eq!(bracketed("<a@b>"), "<a@b>");
    }
}
