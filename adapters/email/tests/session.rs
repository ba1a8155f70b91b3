//! SMTP sessions driven over an in-memory stream against a core in memory: the answer to
//! DATA waits for the commit, a failed commit is 451, bounces become reports, AUTH
//! LOGIN, shutdown, and a corpus of nasty input that must get answers, never a panic.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use switchboard_adapter::{
    BoxFuture, Inbound, Ingest, IngestOutcome, Reports, Shutdown, StatusReport,
};
use switchboard_email::EmailConfig;
use switchboard_email::session::{self, Context, End, Session};
use switchboard_model::{Channel, MessageStatus};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::{Semaphore, mpsc, watch};

/// A core in memory: takes every recipient but `nobody@...`; each `receive` is sent on
/// a channel and waits for a permit of `gate` before it answers with `result`.
struct Core {
    received: mpsc::UnboundedSender<Inbound>,
    gate: Arc<Semaphore>,
    fail: bool,
    reports: Mutex<Vec<StatusReport>>,
}

impl Ingest for Core {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async move {
            let _ = self.received.send(inbound);
            let permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            permit.forget();
            if self.fail {
                Err("database is locked".to_owned())
            } else {
                Ok(IngestOutcome::Received { id: "m1".into() })
            }
        })
    }

    fn accepts(&self, channel: Channel, tenant: &str, to: &str) -> bool {
        channel == Channel::Email && tenant == "acme" && !to.starts_with("nobody@")
    }
}

impl Reports for Core {
    fn report(&self, report: StatusReport) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.reports.lock().map_err(|e| e.to_string())?.push(report);
            Ok(())
        })
    }
}

fn config(extra: &str) -> EmailConfig {
    toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ndomains = [\"mail.example.test\", \"sms.example.test\"]\n\
         sms_domains = [\"sms.example.test\"]\ntenant = \"acme\"\n\
         return_path = \"bounces@mail.example.test\"\nmax_message_bytes = 2000\n{extra}"
    ))
    .expect("config")
}

struct Harness {
    client: BufReader<DuplexStream>,
    received: mpsc::UnboundedReceiver<Inbound>,
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    session: tokio::task::JoinHandle<bool>,
}

fn harness(extra: &str, fail: bool, gate_open: bool) -> Harness {
    let (received_tx, received) = mpsc::unbounded_channel();
    let core = Arc::new(Core {
        received: received_tx,
        gate: Arc::new(Semaphore::new(if gate_open {
            Semaphore::MAX_PERMITS
        } else {
            0
        })),
        fail,
        reports: Mutex::new(Vec::new()),
    });
    let (stop, shutdown) = Shutdown::pair();
    let ctx = Context {
        config: config(extra),
        hostname: "gw.example.test".into(),
        starttls: false,
        ingest: core.clone(),
        reports: core.clone(),
        shutdown,
    };
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(async move {
        matches!(
            session::serve(server, &ctx, Session::new("test".into())).await,
            End::Closed
        )
    });
    Harness {
        client: BufReader::new(client),
        received,
        core,
        stop,
        session,
    }
}

impl Harness {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.client.read_line(&mut line).await.expect("read");
        assert!(n > 0, "the session closed");
        line
    }

    /// One whole reply.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let line = self.line().await;
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.client.get_mut().write_all(bytes).await.expect("write");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }
}

const MAIL: &[u8] = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<support@mail.example.test>\r\n\
RCPT TO:<+14155550100@sms.example.test>\r\nDATA\r\nFrom: Alice <alice@example.org>\r\n\
Subject: Hi\r\nMessage-ID: <x1@example.org>\r\n\r\nHello\r\n.\r\n";

#[tokio::test]
async fn data_is_answered_250_only_after_every_recipient_is_committed() {
    let mut h = harness("", false, false);
    assert!(h.reply().await.starts_with("220 gw.example.test"));
    assert!(h.cmd("EHLO c").await.contains("250 ENHANCEDSTATUSCODES"));
    h.send(MAIL).await;
    for expected in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 "] {
        let reply = h.reply().await;
        assert!(reply.starts_with(expected), "{reply}");
    }
    let first = h.received.recv().await.expect("ingest called");
    assert_eq!(first.to, "support@mail.example.test");
    assert_eq!(first.text, "Hello");
    assert_eq!(first.subject.as_deref(), Some("Hi"));
    // The core has not answered: nothing more has been written.
    let mut line = String::new();
    assert!(h.client.read_line(&mut line).now_or_never().is_none());
    h.core.gate.add_permits(1);
    let second = h.received.recv().await.expect("second recipient");
    assert_eq!(second.to, "+14155550100");
    assert_eq!(second.text, "Hi\nHello");
    assert!(
        second
            .metadata
            .contains(&("email.message_id".into(), "x1@example.org".into()))
    );
    assert!(h.client.read_line(&mut line).now_or_never().is_none());
    h.core.gate.add_permits(1);
    let done = h.reply().await;
    assert!(done.starts_with("250 2.0.0 OK queued as m1 m1"), "{done}");
}

#[tokio::test]
async fn a_failed_commit_is_451_so_the_client_retries() {
    let mut h = harness("", true, true);
    h.reply().await;
    h.cmd("EHLO c").await;
    h.send(MAIL).await;
    for _ in 0..4 {
        h.reply().await;
    }
    let answer = h.reply().await;
    assert!(answer.starts_with("451 4.3.0"), "{answer}");
    // The session goes on.
    assert!(h.cmd("NOOP").await.starts_with("250 "));
}

#[tokio::test]
async fn a_dsn_to_a_verp_address_is_a_report_not_a_message() {
    let mut h = harness("", false, true);
    h.reply().await;
    h.cmd("EHLO c").await;
    h.send(
        b"MAIL FROM:<>\r\nRCPT TO:<bounces+0194abc@mail.example.test>\r\nDATA\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n\
Final-Recipient: rfc822; g@x.test\r\nAction: failed\r\nStatus: 5.2.2\r\n\
Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n--b--\r\n.\r\n",
    )
    .await;
    for _ in 0..3 {
        h.reply().await;
    }
    let answer = h.reply().await;
    assert!(
        answer.starts_with("250 2.0.0 OK report recorded"),
        "{answer}"
    );
    let reports = h.core.reports.lock().expect("reports").clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].connector, "email");
    assert_eq!(reports[0].upstream_id, "0194abc@gw.example.test");
    assert_eq!(reports[0].status, MessageStatus::Undelivered);
    assert_eq!(
        reports[0].error,
        Some(("5.2.2".into(), "552 5.2.2 mailbox full".into()))
    );
    assert!(h.received.try_recv().is_err(), "no message stored");
}

#[tokio::test]
async fn auth_login_then_mail() {
    let mut h = harness(
        "[[auth_users]]\nusername = \"app\"\npassword = \"pw\"\n",
        false,
        true,
    );
    h.reply().await;
    let ehlo = h.cmd("EHLO c").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(h.cmd("MAIL FROM:<a@b.test>").await.starts_with("530 5.7.0"));
    assert!(h.cmd("AUTH LOGIN").await.starts_with("334 VXNlcm5hbWU6"));
    assert!(h.cmd("YXBw").await.starts_with("334 UGFzc3dvcmQ6"));
    assert!(h.cmd("cHc=").await.starts_with("235 2.7.0"));
    assert!(h.cmd("MAIL FROM:<a@b.test>").await.starts_with("250 "));
    assert!(h.cmd("AUTH PLAIN AGFwcABwdw==").await.starts_with("503 "));
}

#[tokio::test]
async fn shutdown_is_421() {
    let mut h = harness("", false, true);
    h.reply().await;
    h.cmd("EHLO c").await;
    h.stop.send(true).expect("stop");
    let bye = h.reply().await;
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    assert!(h.session.await.expect("session ended"));
}

/// Nasty input: every chunk gets answers and the session stays up; the parsing entry
/// point of the fuzz target takes all of it too.
#[tokio::test]
async fn nasty_input_gets_answers_and_never_a_panic() {
    let corpus: Vec<Vec<u8>> = vec![
        b"\r\n".to_vec(),
        b"\n".to_vec(),
        b"\0\0\0\r\n".to_vec(),
        b"EHLO\r\n".to_vec(),
        b"MAIL FROM:\r\n".to_vec(),
        b"MAIL FROM:<\r\n".to_vec(),
        b"MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n".to_vec(),
        b"MAIL FROM:<a@b> BODY=\xff\r\n".to_vec(),
        b"RCPT TO:<\xf0\x9f\x98\x80@mail.example.test>\r\n".to_vec(),
        b"RCPT TO:<a@b@c>\r\n".to_vec(),
        b"RCPT TO:<@mail.example.test>\r\n".to_vec(),
        b"RCPT TO:<+1@sms.example.test>\r\n".to_vec(),
        b"AUTH PLAIN =====\r\n".to_vec(),
        b"AUTH XOAUTH2 abc\r\n".to_vec(),
        b"BDAT 10 LAST\r\n".to_vec(),
        b"STARTTLS\r\n".to_vec(),
        b"VRFY root\r\n".to_vec(),
        b"EXPN staff\r\n".to_vec(),
        [b"NOOP ".as_slice(), &[b'a'; 5000], b"\r\n"].concat(),
        [&[b'x'; 70_000][..], b"\r\n"].concat(),
        b"\xff\xfe\xfd\r\n".to_vec(),
        b"RSET\r\n".to_vec(),
    ];
    let mut h = harness("", false, true);
    h.reply().await;
    h.cmd("EHLO c").await;
    for input in &corpus {
        switchboard_email::parse_for_fuzzing(input);
        h.send(input).await;
        let answer = h.reply().await;
        let code: u16 = answer.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!((200..600).contains(&code), "{input:?} got {answer:?}");
        assert_ne!(code, 421, "{input:?} closed the session");
    }
    // Mail bodies that are not what they claim.
    let mails: Vec<&[u8]> = vec![
        b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n--x--\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\ngarbage\r\n",
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n\xff\xfe\r\n",
        b"Subject: =?UTF-8?B?!!!?=\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n",
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n\r\n",
        b"From: <<<@>>>\r\nIn-Reply-To: <<\r\nReferences: >\r\n\r\nx\r\n",
    ];
    for mail in mails {
        switchboard_email::parse_for_fuzzing(mail);
        let reply = h.cmd("MAIL FROM:<a@example.org>").await;
        assert!(reply.starts_with("250 "), "{reply}");
        h.cmd("RCPT TO:<support@mail.example.test>").await;
        h.cmd("DATA").await;
        h.send(mail).await;
        h.send(b".\r\n").await;
        let answer = h.reply().await;
        assert!(
            answer.starts_with("250 ") || answer.starts_with("554 "),
            "{answer}"
        );
    }
    // Too many errors in a row end the session with 421.
    for _ in 0..25 {
        h.send(b"BOGUS\r\n").await;
    }
    let mut last = String::new();
    loop {
        let mut line = String::new();
        if h.client.read_line(&mut line).await.expect("read") == 0 {
            break;
        }
        last = line;
    }
    assert!(last.starts_with("421 4.7.0"), "{last}");
}
