//! The email channel end to end, with peers we did not write: `swaks` sends mail to the
//! gateway's SMTP listener (plain, multipart with an attachment, UTF-8 headers,
//! STARTTLS, AUTH, pipelining, unknown recipients, oversized mail, a bounce), and
//! `aiosmtpd` is the relay outbound mail goes through (tests/peers/email/relay.py
//! writes what arrived, read back with Python's own `email` package). Raw sockets check
//! bad input and idle timeouts.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Gateway;
use serde_json::Value;

const KEY: &str = "sk_email_test";

/// Where the peers are installed (scripts/install-peers).
fn peers_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/switchboard/peers")
        })
}

fn swaks_program() -> PathBuf {
    let path = Path::new("/usr/bin/swaks");
    assert!(
        path.exists(),
        "swaks is not installed: run scripts/install-peers"
    );
    path.to_owned()
}

/// Runs swaks against `server` with `args`; its exit code and its transcript.
fn swaks(server: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(swaks_program())
        .arg("--server")
        .arg(server)
        .args(["--helo", "client.example.org", "--timeout", "30"])
        .args(args)
        // An address starting with + is an option otherwise (PEERS.md).
        .env("POSIXLY_CORRECT", "1")
        .stdin(Stdio::null())
        .output()
        .expect("swaks ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The aiosmtpd relay sink, killed when dropped.
struct Relay {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Relay {
    fn start(dir: &Path) -> Relay {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("tests/peers/email/relay.py"))
            .find(|p| p.exists())
            .expect("tests/peers/email/relay.py");
        let python = peers_dir().join("venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-peers",
            python.display()
        );
        let out = dir.join("relay");
        std::fs::create_dir_all(&out).expect("relay dir");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("relay line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("aiosmtpd said {line:?}"));
        Relay {
            child,
            port,
            dir: out,
        }
    }

    /// The summary of the `n`th mail taken (1-based), once it is written.
    fn mail(&self, n: usize) -> Value {
        let path = self.dir.join(format!("{n}.json"));
        let text = eventually(
            || std::fs::read_to_string(&path).ok(),
            "the relay got the mail",
        );
        serde_json::from_str(&text).expect("summary json")
    }

    /// The raw bytes of the `n`th mail.
    fn raw(&self, n: usize) -> String {
        let path = self.dir.join(format!("{n}.eml"));
        String::from_utf8(std::fs::read(path).expect("eml")).expect("utf-8 mail")
    }

    /// Recipients the relay saw at RCPT, in order.
    fn rcpts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("rcpt.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives a value (30 s at most).
fn eventually<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A self-signed certificate for `localhost` (rcgen, ring), written as PEM files.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    (cert, key)
}

/// A gateway with an `[email]` section (plus `extra` keys), an SMPP connector for SMS
/// (never reached: forwarded SMS wait in its queue) and a tenant owning
/// support@mail.example.test.
struct Setup {
    gateway: Gateway,
    smtp: String,
    _dir: tempfile::TempDir,
}

fn start(relay: Option<&Relay>, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path());
    let relay_line = relay
        .map(|r| format!("relay = \"smtp://127.0.0.1:{}\"\n", r.port))
        .unwrap_or_default();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
         [database]\nurl = \"sqlite://{db}/switchboard.db\"\n\
         [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n\
         addresses = [\"support@mail.example.test\", \"sales@mail.example.test\", \"+15550100\"]\n\
         [smpp]\n[[smpp.connectors]]\nname = \"upstream-a\"\naddress = \"127.0.0.1:9\"\n\
         system_id = \"gw\"\npassword = \"pw\"\ntenant = \"acme\"\n\
         [email]\nlisten = \"127.0.0.1:0\"\n\
         domains = [\"mail.example.test\", \"sms.example.test\"]\n\
         sms_domains = [\"sms.example.test\"]\n\
         tenant = \"acme\"\nhostname = \"gw.example.test\"\n\
         max_message_bytes = 100000\nmax_recipients = 3\n\
         return_path = \"bounces@mail.example.test\"\n\
         tls_certificate = \"{cert}\"\ntls_key = \"{key}\"\n{relay_line}{extra}",
        db = dir.path().display(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config).expect("config");
    let binary = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let gateway = Gateway::start(
        binary,
        &["serve".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[],
        KEY,
    );
    let smtp = gateway
        .listening("email")
        .into_iter()
        .find_map(|url| url.strip_prefix("smtp://").map(str::to_owned))
        .expect("the email service says where it listens");
    Setup {
        gateway,
        smtp,
        _dir: dir,
    }
}

impl Setup {
    fn get(&self, path: &str) -> Value {
        let (status, body) = self.gateway.request("GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// The messages to `to` (URL-encoded by the caller), newest first.
    fn messages_to(&self, to: &str) -> Vec<Value> {
        self.get(&format!("/v1/messages?to={to}"))["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn post(&self, body: &str) -> Value {
        let (status, answer) = self.gateway.request("POST", "/v1/messages", body);
        assert_eq!(status, 202, "{answer}");
        serde_json::from_str(&answer).expect("json")
    }

    /// The message `id` once `done` holds for it.
    fn message_when(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(
            || {
                let message = self.get(&format!("/v1/messages/{id}"));
                done(&message).then_some(message)
            },
            what,
        )
    }
}

/// A raw SMTP client, for what swaks will not send.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut raw = Raw {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = raw.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        raw
    }

    /// One whole reply (all lines of a multi-line one).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read");
            assert!(n > 0, "connection closed after {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn plain_mail_from_swaks_is_stored_after_250_with_threading_headers() {
    let setup = start(None, "");
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--from",
            "alice@example.org",
            "--to",
            "support@mail.example.test",
            "--header",
            "Subject: Order 42",
            "--header",
            "From: Alice Liddell <alice@example.org>",
            "--header",
            "Message-ID: <m1@example.org>",
            "--header",
            "In-Reply-To: <m0@gw.example.test>",
            "--header",
            "References: <r1@example.org> <m0@gw.example.test>",
            "--body",
            "Where is my parcel?",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<-  250 2.0.0 OK queued as "), "{out}");
    // The 250 came after the commit: the message is there as soon as swaks is done.
    let list = setup.messages_to("support@mail.example.test");
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    assert_eq!(m["direction"], "inbound");
    assert_eq!(m["channel"], "email");
    assert_eq!(m["status"], "received");
    assert_eq!(m["from"], "alice@example.org");
    assert_eq!(m["subject"], "Order 42");
    assert_eq!(m["text"], "Where is my parcel?");
    assert_eq!(m["metadata"]["email.message_id"], "m1@example.org");
    assert_eq!(m["metadata"]["email.in_reply_to"], "m0@gw.example.test");
    assert_eq!(
        m["metadata"]["email.references"],
        "r1@example.org m0@gw.example.test"
    );
    assert_eq!(m["metadata"]["email.from_name"], "Alice Liddell");
    let id = m["id"].as_str().expect("id");
    assert!(out.contains(id), "the 250 names the stored id: {out}");
}

#[test]
fn multipart_with_attachment_keeps_the_bytes_and_utf8_headers_are_decoded() {
    let setup = start(None, "");
    let dir = tempfile::tempdir().expect("tempdir");
    let attachment = dir.path().join("report.csv");
    let content = "name;city\nJürgen;Köln\nZoë;Montréal 🚲\n";
    std::fs::write(&attachment, content).expect("attachment");
    let attach = format!("@{}", attachment.display());
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--from",
            "jurgen@example.org",
            "--to",
            "sales@mail.example.test",
            "--header",
            "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g8J+Riw==?=",
            "--header",
            "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.org>",
            "--body",
            "Anbei die Liste.",
            "--attach-type",
            "text/csv",
            "--attach-name",
            "report.csv",
            "--attach",
            &attach,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let list = setup.messages_to("sales@mail.example.test");
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    assert_eq!(m["subject"], "Grüße aus Köln 👋");
    assert_eq!(m["metadata"]["email.from_name"], "Jürgen Müller");
    assert_eq!(m["text"], "Anbei die Liste.");
    let attachments = m["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{m}");
    assert_eq!(attachments[0]["name"], "report.csv");
    assert_eq!(attachments[0]["content_type"], "text/csv");
    assert_eq!(attachments[0]["size"], content.len());
    let id = m["id"].as_str().expect("id");
    let (status, bytes) =
        setup
            .gateway
            .request("GET", &format!("/v1/messages/{id}/attachments/0"), "");
    assert_eq!(status, 200);
    assert_eq!(bytes, content, "the attachment's bytes, as sent");
}

#[test]
fn mail_to_a_number_at_the_sms_domain_becomes_an_sms() {
    let setup = start(None, "");
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--from",
            "alice@example.org",
            "--to",
            "+14155550123@sms.example.test",
            "--header",
            "Subject: Pickup",
            "--body",
            "At 5 pm.\n\nOn Mon, someone wrote:\n> earlier text\n",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let list = setup.messages_to("%2B14155550123");
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    assert_eq!(m["channel"], "sms");
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["status"], "queued");
    assert_eq!(m["text"], "Pickup\nAt 5 pm.");
    assert_eq!(m["metadata"]["source"], "email");
    assert_eq!(m["metadata"]["original_to"].as_str(), None);
}

#[test]
fn unknown_recipients_and_domains_get_550_at_rcpt() {
    let setup = start(None, "");
    // Nobody's mailbox, a domain that is not ours, and a number on a domain that is not
    // an SMS domain (just a mailbox nobody has).
    for to in [
        "nobody@mail.example.test",
        "support@elsewhere.example",
        "+14155550123@mail.example.test",
    ] {
        let (code, out) = swaks(&setup.smtp, &["--from", "a@example.org", "--to", to]);
        assert_ne!(code, 0, "{to}: {out}");
        assert!(out.contains("<** 550 5.1.1"), "{to}: {out}");
    }
    assert!(setup.messages_to("support@mail.example.test").is_empty());
}

#[test]
fn oversized_mail_gets_552_and_the_session_goes_on() {
    let setup = start(None, "");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.txt");
    // About 150 kB, over max_message_bytes = 100000.
    std::fs::write(&file, ("x".repeat(76) + "\n").repeat(2000)).expect("body");
    let body = format!("@{}", file.display());
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--from",
            "a@example.org",
            "--to",
            "support@mail.example.test",
            "--body",
            &body,
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("<** 552 5.3.4"), "{out}");
    assert!(setup.messages_to("support@mail.example.test").is_empty());
    // SIZE declared up front is refused at MAIL.
    let mut raw = Raw::connect(&setup.smtp);
    let ehlo = raw.cmd("EHLO client.example.org");
    assert!(ehlo.contains("250-SIZE 100000"), "{ehlo}");
    let mail = raw.cmd("MAIL FROM:<a@example.org> SIZE=200000");
    assert!(mail.starts_with("552 5.3.4"), "{mail}");
    let mail = raw.cmd("MAIL FROM:<a@example.org> SIZE=2000");
    assert!(mail.starts_with("250 "), "{mail}");
}

#[test]
fn pipelined_session_with_too_many_recipients_answers_each_command_in_order() {
    let setup = start(None, "");
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--pipeline",
            "--from",
            "a@example.org",
            "--to",
            "support@mail.example.test,nobody@mail.example.test,sales@mail.example.test,support@mail.example.test,sales@mail.example.test",
            "--header",
            "Subject: pipelined",
            "--body",
            "one mail, several recipients",
        ],
    );
    assert!(out.contains("PIPELINING"), "{out}");
    assert!(out.contains("550 5.1.1"), "{out}");
    // max_recipients = 3: the fourth taken recipient is refused with 452.
    assert!(out.contains("452 4.5.3"), "{out}");
    assert_eq!(code, 0, "swaks goes on with the recipients taken: {out}");
    assert_eq!(setup.messages_to("support@mail.example.test").len(), 2);
    assert_eq!(setup.messages_to("sales@mail.example.test").len(), 1);

    // Raw pipelining: a whole transaction in one write, the answers in order.
    let mut raw = Raw::connect(&setup.smtp);
    raw.cmd("EHLO client.example.org");
    raw.send(
        b"MAIL FROM:<b@example.org>\r\nRCPT TO:<support@mail.example.test>\r\nDATA\r\n\
          Subject: raw\r\n\r\n..dot-stuffed line\r\n.\r\nQUIT\r\n",
    );
    assert!(raw.reply().starts_with("250 2.1.0"));
    assert!(raw.reply().starts_with("250 2.1.5"));
    assert!(raw.reply().starts_with("354 "));
    let done = raw.reply();
    assert!(done.starts_with("250 2.0.0"), "{done}");
    assert!(raw.reply().starts_with("221 "));
    let list = setup.messages_to("support@mail.example.test");
    assert_eq!(list[0]["text"], ".dot-stuffed line");
}

#[test]
fn starttls_with_swaks_and_auth_when_users_are_configured() {
    let setup = start(
        None,
        "[[email.auth_users]]\nusername = \"app\"\npassword = \"s3cret\"\n",
    );
    // Without TLS, AUTH is not offered and MAIL needs it.
    let mut raw = Raw::connect(&setup.smtp);
    let ehlo = raw.cmd("EHLO client.example.org");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(
        raw.cmd("MAIL FROM:<a@example.org>")
            .starts_with("530 5.7.0")
    );

    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "app",
            "--auth-password",
            "wrong",
            "--from",
            "a@example.org",
            "--to",
            "support@mail.example.test",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");

    for mechanism in ["PLAIN", "LOGIN"] {
        let (code, out) = swaks(
            &setup.smtp,
            &[
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                "app",
                "--auth-password",
                "s3cret",
                "--from",
                "a@example.org",
                "--to",
                "support@mail.example.test",
                "--header",
                &format!("Subject: over TLS with {mechanism}"),
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("TLS started"), "{out}");
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    let list = setup.messages_to("support@mail.example.test");
    assert_eq!(list.len(), 2, "{list:?}");
}

#[test]
fn bad_input_gets_smtp_errors_and_the_session_survives() {
    let setup = start(None, "command_timeout_secs = 2\n");
    let mut raw = Raw::connect(&setup.smtp);
    assert!(
        raw.cmd("MAIL FROM:<a@example.org>")
            .starts_with("503 5.5.1")
    );
    assert!(raw.cmd("HELLO there").starts_with("500 5.5.1"));
    raw.cmd("EHLO client.example.org");
    assert!(
        raw.cmd("RCPT TO:<support@mail.example.test>")
            .starts_with("503 5.5.1")
    );
    assert!(raw.cmd("MAIL FROM:<not an address").starts_with("501 "));
    assert!(raw.cmd("DATA").starts_with("503 5.5.1"));
    let long = format!("NOOP {}", "a".repeat(10_000));
    assert!(raw.cmd(&long).starts_with("500 5.5.6"));
    raw.send(b"\x00\xff\xfe garbage\r\n");
    assert!(raw.reply().starts_with("500 "));
    assert!(
        raw.cmd("MAIL FROM:<a@example.org> FROBNICATE=1")
            .starts_with("555 ")
    );
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250 "));
    assert!(
        raw.cmd("MAIL FROM:<a@example.org>")
            .starts_with("503 5.5.1")
    );
    assert!(raw.cmd("RCPT TO:<@:nodomain>").starts_with("5"));
    assert!(
        raw.cmd("RCPT TO:<support@mail.example.test>")
            .starts_with("250 ")
    );
    assert!(raw.cmd("DATA").starts_with("354 "));
    // Not a mail at all: no header.
    raw.send(b"\r\n.\r\n");
    let answer = raw.reply();
    assert!(answer.starts_with("554 5.6.0"), "{answer}");
    assert!(raw.cmd("STARTTLS").starts_with("220 "));
    // (a client that does not do the handshake after 220 just goes away)
    drop(raw);

    // Another session is unaffected, and an idle one is told 421 and closed.
    let mut idle = Raw::connect(&setup.smtp);
    assert!(idle.cmd("NOOP").starts_with("250 "));
    let bye = idle.reply();
    assert!(bye.starts_with("421 4.4.2"), "{bye}");
    let mut rest = Vec::new();
    let _ = idle.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after 421");
}

#[test]
fn outbound_mail_through_aiosmtpd_is_an_rfc5322_mail_with_threading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(dir.path());
    let setup = start(Some(&relay), "relay_starttls = \"never\"\n");
    let sent = setup.post(
        r#"{"to": "Bob@Example.ORG", "from": "support@mail.example.test",
            "subject": "Grüße 👋", "text": "Hallo Bob,\nschöne Grüße — ünïcödé.\n",
            "metadata": {"email.in_reply_to": "<m1@example.org>", "email.references": "<m0@example.org>"}}"#,
    );
    let id = sent["id"].as_str().expect("id").to_owned();
    let m = setup.message_when(&id, "it was sent", |m| m["status"] == "sent");
    let message_id = format!("{id}@gw.example.test");
    assert_eq!(m["upstream_id"], message_id.as_str());
    assert_eq!(m["connector"], "email");

    let mail = relay.mail(1);
    assert_eq!(
        mail["mail_from"],
        format!("bounces+{id}@mail.example.test").as_str()
    );
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["Bob@example.org"]));
    let headers = &mail["headers"];
    assert_eq!(headers["subject"], "Grüße 👋");
    assert_eq!(headers["from"], "support@mail.example.test");
    assert_eq!(headers["to"], "Bob@example.org");
    assert_eq!(headers["message-id"], format!("<{message_id}>").as_str());
    assert_eq!(headers["in-reply-to"], "<m1@example.org>");
    assert_eq!(headers["references"], "<m0@example.org> <m1@example.org>");
    assert!(headers["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(mail["defects"], serde_json::json!([]));
    let raw = relay.raw(1);
    assert!(
        raw.is_ascii(),
        "non-ASCII is MIME-encoded on the wire: {raw}"
    );
    assert!(raw.contains("Subject: =?utf-8?"), "{raw}");
    let parts = mail["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["charset"], "utf-8");
    assert_eq!(
        parts[0]["text"].as_str().map(|t| t.replace("\r\n", "\n")),
        Some("Hallo Bob,\nschöne Grüße — ünïcödé.\n".to_owned())
    );
}

#[test]
fn relay_5xx_fails_the_message_and_4xx_keeps_it_for_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(dir.path());
    let setup = start(Some(&relay), "relay_starttls = \"never\"\n");
    let sent = setup.post(r#"{"to": "reject-me@example.org", "text": "no"}"#);
    let id = sent["id"].as_str().expect("id").to_owned();
    let m = setup.message_when(&id, "it failed", |m| m["status"] == "failed");
    assert_eq!(m["error"]["code"], "550 5.1.1");
    assert!(
        m["error"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("No such user here")),
        "{m}"
    );

    let sent = setup.post(r#"{"to": "busy-me@example.org", "text": "later"}"#);
    let id = sent["id"].as_str().expect("id").to_owned();
    eventually(
        || {
            relay
                .rcpts()
                .contains(&"busy-me@example.org".to_owned())
                .then_some(())
        },
        "the relay was asked",
    );
    // The relay's 451 is recorded on the message, which waits for its next attempt.
    let m = setup.message_when(&id, "the attempt was recorded", |m| {
        m["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["status"] == "queued"
                    && e["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("451 4.3.0"))
            })
        })
    });
    assert!(m["status"] != "failed" && m["status"] != "sent", "{m}");
}

#[test]
fn a_dsn_to_the_verp_return_path_marks_the_message_undelivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(dir.path());
    let setup = start(Some(&relay), "relay_starttls = \"never\"\n");
    let sent = setup.post(
        r#"{"to": "ghost@example.org", "from": "support@mail.example.test", "text": "hello?"}"#,
    );
    let id = sent["id"].as_str().expect("id").to_owned();
    setup.message_when(&id, "it was sent", |m| m["status"] == "sent");
    let mail = relay.mail(1);
    let return_path = mail["mail_from"].as_str().expect("mail from").to_owned();
    let message_id = mail["headers"]["message-id"]
        .as_str()
        .expect("message-id")
        .to_owned();

    // The far MTA's bounce, as Postfix writes one (RFC 3464).
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.org\r\n\
         To: {return_path}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.org\r\n\
         \r\n\
         Final-Recipient: rfc822; ghost@example.org\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <ghost@example.org>: Recipient address\r\n\
         \x20   rejected: User unknown\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Message-ID: {message_id}\r\n\
         From: support@mail.example.test\r\n\
         To: ghost@example.org\r\n\
         \r\n\
         --B1--\r\n"
    );
    let file = dir.path().join("dsn.eml");
    std::fs::write(&file, dsn).expect("dsn");
    let data = format!("@{}", file.display());
    let (code, out) = swaks(
        &setup.smtp,
        &["--from", "", "--to", &return_path, "--data", &data],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("250 2.0.0 OK report recorded"), "{out}");
    let m = setup.get(&format!("/v1/messages/{id}"));
    assert_eq!(m["status"], "undelivered", "{m}");
    assert_eq!(m["error"]["code"], "5.1.1");
    assert!(
        m["error"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("User unknown")),
        "{m}"
    );
    // The bounce is no message of its own.
    let (_, list) = setup
        .gateway
        .request("GET", "/v1/messages?direction=inbound", "");
    assert!(!list.contains("Undelivered Mail"), "{list}");
}

/// Every byte value, and then some: bytes no text encoding would carry as they are.
fn binary_attachment() -> Vec<u8> {
    (0..=255u8).chain([0, 13, 10, 46, 13, 10, 255]).collect()
}

#[test]
fn an_api_message_with_attachments_goes_through_aiosmtpd_as_multipart_mixed() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(dir.path());
    let setup = start(Some(&relay), "relay_starttls = \"never\"\n");
    let pdf = binary_attachment();
    let csv = "name;city\nJürgen;Köln\n";
    let body = serde_json::json!({
        "to": "bob@example.org",
        "from": "support@mail.example.test",
        "subject": "Rechnung 7",
        "text": "Hallo Bob,\nanbei die Rechnung — schöne Grüße.\n",
        "metadata": {"email.from_name": "Acme Support"},
        "attachments": [
            {"name": "Rechnung 7.pdf", "content_type": "application/pdf", "data": STANDARD.encode(&pdf)},
            {"name": "liste.csv", "content_type": "text/csv; charset=utf-8", "data": STANDARD.encode(csv)}
        ]
    });
    let sent = setup.post(&body.to_string());
    let id = sent["id"].as_str().expect("id").to_owned();
    assert_eq!(sent["attachments"][0]["size"], pdf.len());
    let m = setup.message_when(&id, "it was sent", |m| m["status"] == "sent");
    let message_id = format!("{id}@gw.example.test");
    assert_eq!(m["upstream_id"], message_id.as_str());

    let mail = relay.mail(1);
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["bob@example.org"]));
    assert_eq!(mail["defects"], serde_json::json!([]));
    let headers = &mail["headers"];
    assert_eq!(headers["message-id"], format!("<{message_id}>").as_str());
    assert_eq!(headers["from"], "Acme Support <support@mail.example.test>");
    assert_eq!(headers["subject"], "Rechnung 7");
    assert!(headers["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(
        headers["content-type"]
            .as_str()
            .is_some_and(|c| c.starts_with("multipart/mixed")),
        "{headers}"
    );
    let raw = relay.raw(1);
    assert!(raw.is_ascii(), "everything MIME-encoded on the wire: {raw}");
    let parts = mail["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3, "{mail}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[0]["filename"], Value::Null);
    assert_eq!(
        parts[0]["text"].as_str().map(|t| t.replace("\r\n", "\n")),
        Some("Hallo Bob,\nanbei die Rechnung — schöne Grüße.\n".to_owned())
    );
    for (part, (name, content_type, bytes)) in parts[1..].iter().zip([
        ("Rechnung 7.pdf", "application/pdf", pdf.as_slice()),
        ("liste.csv", "text/csv", csv.as_bytes()),
    ]) {
        assert_eq!(part["filename"], name, "{part}");
        assert_eq!(part["content_type"], content_type, "{part}");
        assert_eq!(part["transfer_encoding"], "base64", "{part}");
        let decoded = STANDARD
            .decode(part["base64"].as_str().expect("payload"))
            .expect("base64");
        assert_eq!(decoded, bytes, "{name}: the bytes as posted");
    }
}

#[test]
fn a_mail_with_an_attachment_forwarded_by_a_route_arrives_at_the_relay_with_it() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(dir.path());
    let setup = start(
        Some(&relay),
        "relay_starttls = \"never\"\n\
         [[routes]]\nmatch = { to = \"forward@mail.example.test\", direction = \"inbound\" }\n\
         rewrite_to = \"carol@example.org\"\nconnector = \"email\"\n",
    );
    let file = dir.path().join("scan.bin");
    let bytes = binary_attachment();
    std::fs::write(&file, &bytes).expect("attachment");
    let attach = format!("@{}", file.display());
    let (code, out) = swaks(
        &setup.smtp,
        &[
            "--from",
            "jurgen@example.org",
            "--to",
            "forward@mail.example.test",
            "--header",
            "Subject: Der Scan",
            "--header",
            "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.org>",
            "--body",
            "Bitte weiterleiten.",
            "--attach-type",
            "application/octet-stream",
            "--attach-name",
            "scan.bin",
            "--attach",
            &attach,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let mail = relay.mail(1);
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["carol@example.org"]));
    assert_eq!(mail["defects"], serde_json::json!([]));
    let headers = &mail["headers"];
    assert_eq!(headers["subject"], "Der Scan");
    assert_eq!(headers["from"], "Jürgen Müller <jurgen@example.org>");
    let parts = mail["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{mail}");
    assert_eq!(
        parts[0]["text"].as_str().map(str::trim_end),
        Some("Bitte weiterleiten.")
    );
    assert_eq!(parts[1]["filename"], "scan.bin");
    assert_eq!(parts[1]["content_type"], "application/octet-stream");
    let decoded = STANDARD
        .decode(parts[1]["base64"].as_str().expect("payload"))
        .expect("base64");
    assert_eq!(decoded, bytes, "the attachment's bytes, as swaks sent them");

    let list = setup.messages_to("carol%40example.org");
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().expect("id");
    let m = setup.message_when(id, "it was sent", |m| m["status"] == "sent");
    assert_eq!(m["metadata"]["source"], "email");
    assert_eq!(
        headers["message-id"],
        format!("<{id}@gw.example.test>").as_str()
    );
}
