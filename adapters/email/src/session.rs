//! One inbound SMTP session (RFC 5321) over any byte stream: commands read with
//! `smtp-proto`'s request parser, answered in order, several at once when the client
//! pipelines them (RFC 2920): answers are written when no complete command is left in
//! what was read. The message data is taken with `smtp-proto`'s DATA receiver (dot
//! unstuffing, the end marker), and `250` is answered only once the core has committed
//! the message for every recipient.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ProtoError, MailFrom, RcptTo, Request};
use switchboard_adapter::{Ingest, Reports, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::EmailConfig;
use crate::deliver::{self, Recipient};

/// How many bad commands a client may send before it is disconnected.
const MAX_ERRORS: usize = 20;

/// The longest command line taken, with its CRLF (RFC 5321 section 4.5.3.1.4 says 512;
/// extensions' parameters make it longer, so more is allowed). Longer lines get
/// `500 5.5.6` and are skipped.
const MAX_COMMAND_LINE: usize = 4096;

/// What a session needs from its listener.
pub struct Context {
    /// The configuration.
    pub config: EmailConfig,
    /// Our host name (greeting, EHLO answer).
    pub hostname: String,
    /// Whether STARTTLS is offered.
    pub starttls: bool,
    /// The core's ingest handle.
    pub ingest: Arc<dyn Ingest>,
    /// The core's reports handle (bounces).
    pub reports: Arc<dyn Reports>,
    /// Fires when the gateway stops.
    pub shutdown: Shutdown,
}

/// How a session ended.
pub enum End<S> {
    /// The client quit, went away, timed out or was disconnected.
    Closed,
    /// The client asked for STARTTLS and was told to go ahead: the caller does the TLS
    /// handshake on the stream and goes on with [`serve`] over TLS.
    StartTls(S),
}

/// The state of a session that survives STARTTLS (nothing does but the peer's name for
/// logs, RFC 3207 section 4.2).
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Whether the stream is TLS.
    pub tls: bool,
    /// Whether the greeting was sent.
    pub greeted: bool,
    /// The peer's address, for logs.
    pub peer: String,
    helo: Option<String>,
    authenticated: Option<String>,
    mail_from: Option<String>,
    recipients: Vec<Recipient>,
    errors: usize,
}

impl Session {
    /// A new session with the peer at `peer`.
    pub fn new(peer: String) -> Session {
        Session {
            peer,
            ..Session::default()
        }
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }
}

/// Where the reader is.
enum Mode {
    Command,
    Data {
        receiver: DataReceiver,
        buf: Vec<u8>,
        too_big: bool,
    },
    /// AUTH waiting for a line: the PLAIN response, or the LOGIN user name / password.
    Auth {
        mechanism: u64,
        username: Option<String>,
    },
}

/// Serves one session on `stream` until it ends. I/O errors end it quietly (logged).
pub async fn serve<S>(mut stream: S, ctx: &Context, mut session: Session) -> End<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut out: Vec<u8> = Vec::new();
    if !session.greeted {
        session.greeted = true;
        reply(
            &mut out,
            220,
            &format!("{} ESMTP Switchboard", ctx.hostname),
        );
    }
    let mut requests = RequestReceiver::default();
    // Bytes of the command line being read that came in earlier reads, and whether it
    // is over the limit (then skipped up to its end).
    let mut partial = 0usize;
    let mut overlong = false;
    let mut mode = Mode::Command;
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                tracing::debug!(peer = %session.peer, error = %e, "smtp: write failed");
                return End::Closed;
            }
            out.clear();
            if let Err(e) = stream.flush().await {
                tracing::debug!(peer = %session.peer, error = %e, "smtp: flush failed");
                return End::Closed;
            }
        }
        let timeout = match mode {
            Mode::Data { .. } => ctx.config.data_timeout(),
            _ => ctx.config.command_timeout(),
        };
        let read = tokio::select! {
            read = tokio::time::timeout(timeout, stream.read(&mut chunk)) => read,
            () = shutdown.stopped() => {
                reply(&mut out, 421, "4.3.2 Service shutting down, closing connection");
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return End::Closed;
            }
        };
        let n = match read {
            Err(_) => {
                tracing::info!(peer = %session.peer, "smtp: client timed out");
                reply(&mut out, 421, "4.4.2 Timeout, closing connection");
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return End::Closed;
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %session.peer, error = %e, "smtp: read failed");
                return End::Closed;
            }
            Ok(Ok(0)) => return End::Closed,
            Ok(Ok(n)) => n,
        };
        let bytes = chunk.get(..n).unwrap_or_default();
        let mut iter = bytes.iter();
        while !iter.as_slice().is_empty() {
            if session.errors >= MAX_ERRORS {
                tracing::info!(peer = %session.peer, "smtp: too many errors, disconnecting");
                reply(&mut out, 421, "4.7.0 Too many errors, closing connection");
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return End::Closed;
            }
            match &mut mode {
                Mode::Data {
                    receiver,
                    buf,
                    too_big,
                } => {
                    let done = receiver.ingest(&mut iter, buf);
                    if buf.len() > ctx.config.max_message_bytes {
                        *too_big = true;
                        buf.clear();
                    }
                    if done {
                        let data = std::mem::take(buf);
                        let too_big = *too_big;
                        mode = Mode::Command;
                        // Everything answered so far goes out before the commit,
                        // which may take a while.
                        if !out.is_empty() {
                            if stream.write_all(&out).await.is_err()
                                || stream.flush().await.is_err()
                            {
                                return End::Closed;
                            }
                            out.clear();
                        }
                        if too_big {
                            tracing::info!(peer = %session.peer, "smtp: message over SIZE refused");
                            reply(&mut out, 552, "5.3.4 Message too big");
                        } else {
                            let answer = deliver::deliver(
                                ctx,
                                session.mail_from.as_deref().unwrap_or_default(),
                                &session.recipients,
                                &data,
                            )
                            .await;
                            out.extend_from_slice(answer.as_bytes());
                        }
                        session.reset();
                    }
                }
                Mode::Auth {
                    mechanism,
                    username,
                } => {
                    if !take_line(&mut iter, &mut line) {
                        if line.len() > 8192 {
                            line.clear();
                            mode = Mode::Command;
                            reply(&mut out, 500, "5.5.6 Authentication line too long");
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line).trim().to_owned();
                    line.clear();
                    let mechanism = *mechanism;
                    let username = username.take();
                    mode = auth_step(ctx, &mut session, &mut out, mechanism, username, &text);
                }
                Mode::Command => {
                    let rest = iter.as_slice();
                    let end = rest.iter().position(|&b| b == b'\n');
                    let here = end.map_or(rest.len(), |p| p + 1);
                    if overlong || partial + here > MAX_COMMAND_LINE {
                        // Skip the line; answer once its end has come.
                        iter = rest.get(here..).unwrap_or_default().iter();
                        if end.is_some() {
                            overlong = false;
                            partial = 0;
                            requests = RequestReceiver::default();
                            session.errors += 1;
                            reply(&mut out, 500, "5.5.6 Line too long");
                        } else {
                            overlong = true;
                        }
                        continue;
                    }
                    partial = if end.is_some() { 0 } else { partial + here };
                    let request = requests.ingest(&mut iter).map(Request::into_owned);
                    match request {
                        Err(ProtoError::NeedsMoreData { .. }) => {}
                        Err(e) => {
                            session.errors += 1;
                            protocol_error(&mut out, &e);
                        }
                        Ok(Request::StartTls) => {
                            if session.tls || !ctx.starttls {
                                reply(&mut out, 502, "5.5.1 STARTTLS not available");
                            } else {
                                reply(&mut out, 220, "2.0.0 Ready to start TLS");
                                if stream.write_all(&out).await.is_err()
                                    || stream.flush().await.is_err()
                                {
                                    return End::Closed;
                                }
                                // Whatever the client sent after STARTTLS is dropped
                                // (RFC 3207 section 4.2: no plaintext injection).
                                return End::StartTls(stream);
                            }
                        }
                        Ok(Request::Quit) => {
                            reply(&mut out, 221, "2.0.0 Bye");
                            let _ = stream.write_all(&out).await;
                            let _ = stream.shutdown().await;
                            return End::Closed;
                        }
                        Ok(request) => {
                            mode = command(ctx, &mut session, &mut out, request);
                        }
                    }
                }
            }
        }
    }
}

/// Appends one reply line.
fn reply(out: &mut Vec<u8>, code: u16, text: &str) {
    out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
}

/// Moves bytes up to and including a line feed into `line`; whether the line is whole.
fn take_line(iter: &mut std::slice::Iter<'_, u8>, line: &mut Vec<u8>) -> bool {
    let rest = iter.as_slice();
    match rest.iter().position(|&b| b == b'\n') {
        Some(pos) => {
            line.extend_from_slice(rest.get(..pos).unwrap_or_default());
            *iter = rest.get(pos + 1..).unwrap_or_default().iter();
            true
        }
        None => {
            line.extend_from_slice(rest);
            *iter = [].iter();
            false
        }
    }
}

fn protocol_error(out: &mut Vec<u8>, error: &ProtoError) {
    match error {
        ProtoError::UnknownCommand => reply(out, 500, "5.5.1 Unknown command"),
        ProtoError::InvalidSenderAddress => reply(out, 501, "5.1.7 Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => {
            reply(out, 501, "5.1.3 Bad recipient address syntax");
        }
        ProtoError::SyntaxError { syntax } => reply(out, 501, &format!("5.5.4 Syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            reply(out, 501, &format!("5.5.4 Invalid parameter {param:?}"));
        }
        ProtoError::UnsupportedParameter { param } => {
            reply(out, 555, &format!("5.5.4 Unsupported parameter {param:?}"));
        }
        ProtoError::ResponseTooLong => reply(out, 500, "5.5.6 Line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            reply(out, 500, "5.5.2 Syntax error");
        }
    }
}

/// Whether AUTH is offered now: users are configured, and the stream is TLS when TLS
/// is available.
fn auth_offered(ctx: &Context, session: &Session) -> bool {
    !ctx.config.auth_users.is_empty() && (session.tls || !ctx.starttls)
}

fn command(
    ctx: &Context,
    session: &mut Session,
    out: &mut Vec<u8>,
    request: Request<String>,
) -> Mode {
    match request {
        Request::Ehlo { host } => {
            session.reset();
            session.helo = Some(host);
            let mut lines = vec![
                ctx.hostname.clone(),
                format!("SIZE {}", ctx.config.max_message_bytes),
                "8BITMIME".to_owned(),
                "PIPELINING".to_owned(),
                "SMTPUTF8".to_owned(),
                "ENHANCEDSTATUSCODES".to_owned(),
            ];
            if ctx.starttls && !session.tls {
                lines.push("STARTTLS".to_owned());
            }
            if auth_offered(ctx, session) && session.authenticated.is_none() {
                lines.push("AUTH PLAIN LOGIN".to_owned());
            }
            let last = lines.len() - 1;
            for (i, line) in lines.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
            }
        }
        Request::Helo { host } | Request::Lhlo { host } => {
            session.reset();
            session.helo = Some(host);
            reply(out, 250, &ctx.hostname);
        }
        Request::Mail { from } => mail(ctx, session, out, from),
        Request::Rcpt { to } => rcpt(ctx, session, out, to),
        Request::Data => {
            if session.mail_from.is_none() {
                reply(out, 503, "5.5.1 MAIL first");
            } else if session.recipients.is_empty() {
                reply(out, 554, "5.5.1 No valid recipients");
            } else {
                reply(out, 354, "Start mail input; end with <CRLF>.<CRLF>");
                return Mode::Data {
                    receiver: DataReceiver::new(),
                    buf: Vec::new(),
                    too_big: false,
                };
            }
        }
        Request::Rset => {
            session.reset();
            reply(out, 250, "2.0.0 OK");
        }
        Request::Noop { .. } => reply(out, 250, "2.0.0 OK"),
        Request::Vrfy { .. } => reply(out, 252, "2.5.0 Cannot verify, send some mail"),
        Request::Help { .. } => reply(out, 214, "2.0.0 See RFC 5321"),
        Request::Auth {
            mechanism,
            initial_response,
        } => return auth(ctx, session, out, mechanism, initial_response),
        Request::Bdat { .. } => reply(out, 502, "5.5.1 CHUNKING not offered"),
        Request::StartTls | Request::Quit => {}
        Request::Expn { .. }
        | Request::Etrn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. } => reply(out, 502, "5.5.1 Command not implemented"),
    }
    Mode::Command
}

fn mail(ctx: &Context, session: &mut Session, out: &mut Vec<u8>, from: MailFrom<String>) {
    if session.helo.is_none() {
        reply(out, 503, "5.5.1 EHLO or HELO first");
    } else if !ctx.config.auth_users.is_empty() && session.authenticated.is_none() {
        reply(out, 530, "5.7.0 Authentication required");
    } else if session.mail_from.is_some() {
        reply(out, 503, "5.5.1 Nested MAIL command");
    } else if from.size > ctx.config.max_message_bytes {
        reply(
            out,
            552,
            "5.3.4 Message size exceeds fixed maximum message size",
        );
    } else {
        session.mail_from = Some(from.address);
        reply(out, 250, "2.1.0 OK");
    }
}

fn rcpt(ctx: &Context, session: &mut Session, out: &mut Vec<u8>, to: RcptTo<String>) {
    if session.mail_from.is_none() {
        reply(out, 503, "5.5.1 MAIL first");
        return;
    }
    if session.recipients.len() >= ctx.config.max_recipients {
        reply(out, 452, "4.5.3 Too many recipients");
        return;
    }
    match deliver::recipient(ctx, &to.address) {
        Ok(recipient) => {
            session.recipients.push(recipient);
            reply(out, 250, "2.1.5 OK");
        }
        Err(answer) => {
            tracing::info!(peer = %session.peer, rcpt = %to.address, "smtp: recipient refused");
            out.extend_from_slice(answer.as_bytes());
        }
    }
}

fn auth(
    ctx: &Context,
    session: &mut Session,
    out: &mut Vec<u8>,
    mechanism: u64,
    initial: String,
) -> Mode {
    if !auth_offered(ctx, session) {
        reply(out, 503, "5.5.1 AUTH not available");
        return Mode::Command;
    }
    if session.authenticated.is_some() {
        reply(out, 503, "5.5.1 Already authenticated");
        return Mode::Command;
    }
    if session.mail_from.is_some() {
        reply(out, 503, "5.5.1 AUTH not allowed during a mail transaction");
        return Mode::Command;
    }
    match mechanism {
        AUTH_PLAIN if !initial.is_empty() => {
            auth_step(ctx, session, out, AUTH_PLAIN, None, &initial)
        }
        AUTH_PLAIN => {
            reply(out, 334, "");
            Mode::Auth {
                mechanism,
                username: None,
            }
        }
        AUTH_LOGIN if !initial.is_empty() => {
            auth_step(ctx, session, out, AUTH_LOGIN, None, &initial)
        }
        AUTH_LOGIN => {
            reply(out, 334, "VXNlcm5hbWU6");
            Mode::Auth {
                mechanism,
                username: None,
            }
        }
        _ => {
            reply(out, 504, "5.5.4 Unrecognized authentication type");
            Mode::Command
        }
    }
}

/// One line of an AUTH exchange.
fn auth_step(
    ctx: &Context,
    session: &mut Session,
    out: &mut Vec<u8>,
    mechanism: u64,
    username: Option<String>,
    line: &str,
) -> Mode {
    if line == "*" {
        reply(out, 501, "5.0.0 Authentication canceled");
        return Mode::Command;
    }
    let Ok(decoded) = BASE64.decode(line) else {
        reply(out, 501, "5.5.2 Cannot decode the response");
        return Mode::Command;
    };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let credentials = match (mechanism, username) {
        (AUTH_PLAIN, _) => {
            // authzid NUL authcid NUL passwd
            let mut fields = decoded.split('\0');
            let _authzid = fields.next();
            match (fields.next(), fields.next()) {
                (Some(user), Some(password)) => Some((user.to_owned(), password.to_owned())),
                _ => None,
            }
        }
        (_, None) => {
            reply(out, 334, "UGFzc3dvcmQ6");
            return Mode::Auth {
                mechanism,
                username: Some(decoded),
            };
        }
        (_, Some(user)) => Some((user, decoded)),
    };
    let valid = credentials.as_ref().is_some_and(|(user, password)| {
        ctx.config
            .auth_users
            .iter()
            .any(|u| &u.username == user && &u.password == password)
    });
    match credentials {
        Some((user, _)) if valid => {
            tracing::info!(peer = %session.peer, user = %user, "smtp: authenticated");
            session.authenticated = Some(user);
            reply(out, 235, "2.7.0 Authentication successful");
        }
        _ => {
            session.errors += 1;
            tracing::info!(peer = %session.peer, "smtp: authentication failed");
            reply(out, 535, "5.7.8 Authentication credentials invalid");
        }
    }
    Mode::Command
}

/// Parses SMTP command lines as the session does, for fuzzing and tests: never panics.
pub fn parse_commands(bytes: &[u8]) -> usize {
    let mut requests = RequestReceiver::default();
    let mut iter = bytes.iter();
    let mut count = 0;
    while !iter.as_slice().is_empty() {
        match requests.ingest(&mut iter) {
            Ok(request) => {
                let _: Request<Cow<'_, str>> = request;
                count += 1;
            }
            Err(ProtoError::NeedsMoreData { .. }) => break,
            Err(_) => count += 1,
        }
    }
    count
}
