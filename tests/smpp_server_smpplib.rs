//! The SMPP server against smpplib (PyPI, an ESME we did not write) binding to the real
//! `switchboard` binary as a carrier: bind errors, a GSM message with extension
//! characters and a long UCS-2 message with emoji (split by smpplib) answered with the
//! message's API id, delivery receipts back once the upstream SMSC (the npm `smpp`
//! package, through the SMPP client connector) reports the message delivered or
//! undelivered, a canceled scheduled message reported as DELETED and queried with
//! query_sm, and a message received over SIP from sipsak delivered as deliver_sm to a
//! receiver that binds only afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, JsonPeer, peers_dir, repo};
use serde_json::Value;

const KEY: &str = "sk_smpp_server_key";

fn program(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/install-peers"))
}

/// smpplib running one scenario of tests/peers/smpp/server_carrier.py; its JSON lines
/// arrive on a channel.
struct Carrier(JsonPeer);

impl Carrier {
    fn start(smpp: &str, args: &[&str]) -> Carrier {
        let python = peers_dir().join("venv/bin/python");
        assert!(
            python.exists(),
            "no smpplib venv: run scripts/install-peers"
        );
        let (host, port) = smpp
            .trim_start_matches("smpp://")
            .rsplit_once(':')
            .expect("host:port");
        let mut command = Command::new(python);
        command
            .arg(repo().join("tests/peers/smpp/server_carrier.py"))
            .args([host, port])
            .args(args)
            .stderr(Stdio::inherit());
        Carrier(JsonPeer::spawn(command, "smpplib"))
    }

    /// The next line whose `event` is `event` (others are kept in `seen`), within 90 s.
    fn next(&self, event: &str, seen: &mut Vec<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let line = self
                .0
                .recv_until(deadline)
                .unwrap_or_else(|| panic!("no {event} from smpplib; saw {seen:#?}"));
            assert_ne!(
                line["event"], "timeout",
                "smpplib gave up: {line}; saw {seen:#?}"
            );
            if line["event"] == event {
                return line;
            }
            seen.push(line);
        }
    }

    /// Every line until `done`.
    fn all(&self) -> Vec<Value> {
        let mut seen = Vec::new();
        self.next("done", &mut seen);
        seen
    }
}

/// The upstream SMSC: tests/peers/smpp/smsc.js on the npm `smpp` package, answering
/// every submit_sm and sending a receipt with `stat` after it; its port.
fn smsc(stat: &str) -> (JsonPeer, u16) {
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/peers/smpp/smsc.js"))
        .arg(format!(
            r#"{{"port": 0, "system_id": "gw", "password": "pw", "receipts": "after", "stat": "{stat}"}}"#
        ))
        .env("NODE_PATH", peers_dir().join("node/node_modules"))
        .stderr(Stdio::inherit());
    let peer = JsonPeer::spawn(command, "the npm smpp SMSC");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let event = peer
            .recv_until(deadline)
            .expect("the SMSC exited before listening");
        if event["event"] == "listening" {
            break event["port"].as_u64().expect("port") as u16;
        }
    };
    (peer, port)
}

/// A gateway with the SMPP server (account carrier1 of tenant acme), the SIP channel,
/// and `extra` appended (an SMPP connector).
fn gateway(dir: &Path, extra: &str) -> Gateway {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = \"sqlite://{}/switchboard.db\"\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\naddresses = [\"+15550100\"]\n\
             [smpp.server]\nlisten = \"127.0.0.1:0\"\n\
             [[smpp.server.accounts]]\nsystem_id = \"carrier1\"\npassword = \"s3cret\"\ntenant = \"acme\"\n\
             [sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"gw.example.test\"\ntenant = \"acme\"\n\
             {extra}",
            dir.display()
        ),
    )
    .expect("config");
    Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_switchboard")),
        &["serve".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[],
        KEY,
    )
}

/// An SMPP connector to the upstream SMSC on `port`.
fn connector(port: u16) -> String {
    format!(
        "[[smpp.connectors]]\nname = \"upstream\"\naddress = \"127.0.0.1:{port}\"\n\
         system_id = \"gw\"\npassword = \"pw\"\ntenant = \"acme\"\n"
    )
}

fn smpp_url(gateway: &Gateway) -> String {
    gateway
        .listening("smpp-server")
        .into_iter()
        .next()
        .expect("the SMPP server says where it listens")
}

fn message(gateway: &Gateway, id: &str) -> Value {
    let (status, body) = gateway.request("GET", &format!("/v1/messages/{id}"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// The receipt fields of a deliver_sm line: its text and TLVs.
fn receipt(line: &Value) -> (String, String, u64) {
    assert_eq!(line["esm_class"], 4, "a delivery receipt: {line}");
    let bytes = hex(line["short_message"].as_str().expect("hex"));
    (
        String::from_utf8(bytes).expect("ASCII receipt"),
        line["receipted_message_id"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        line["message_state"].as_u64().unwrap_or(0),
    )
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Sends the submit scenario to `dest` and returns, per message, its text, the id every
/// part was answered with, and its receipt.
fn submit_and_collect(smpp: &str, dest: &str) -> Vec<(String, String, (String, String, u64))> {
    let carrier = Carrier::start(smpp, &["submit", dest, "2"]);
    let lines = carrier.all();
    let submits: Vec<&Value> = lines.iter().filter(|l| l["event"] == "submit_sm").collect();
    assert_eq!(submits.len(), 2, "{lines:#?}");
    let receipts: Vec<(String, String, u64)> = lines
        .iter()
        .filter(|l| l["event"] == "deliver_sm")
        .map(receipt)
        .collect();
    assert_eq!(receipts.len(), 2, "{lines:#?}");
    submits
        .iter()
        .map(|submit| {
            let sequences: Vec<u64> = submit["sequences"]
                .as_array()
                .expect("sequences")
                .iter()
                .filter_map(Value::as_u64)
                .collect();
            let ids: Vec<&str> = sequences
                .iter()
                .map(|seq| {
                    let resp = lines
                        .iter()
                        .find(|l| l["event"] == "submit_sm_resp" && l["sequence"] == *seq)
                        .unwrap_or_else(|| panic!("no submit_sm_resp for {seq}: {lines:#?}"));
                    assert_eq!(resp["status"], 0, "{resp}");
                    resp["message_id"].as_str().expect("message_id")
                })
                .collect();
            assert!(
                ids.iter().all(|id| *id == ids[0]),
                "every part is answered with the message's id: {ids:?}"
            );
            let id = ids[0].to_owned();
            let receipt = receipts
                .iter()
                .find(|r| r.1 == id)
                .unwrap_or_else(|| panic!("no receipt for {id}: {receipts:#?}"))
                .clone();
            (
                submit["text"].as_str().expect("text").to_owned(),
                id,
                receipt,
            )
        })
        .collect()
}

#[test]
fn smpplib_bind_errors_are_refused_with_their_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = gateway(dir.path(), "");
    let carrier = Carrier::start(&smpp_url(&gateway), &["bind_errors"]);
    let mut seen = Vec::new();
    let wrong_password = carrier.next("bind", &mut seen);
    assert_eq!(
        wrong_password["status"], 0x0E,
        "ESME_RINVPASWD: {wrong_password}"
    );
    let unknown = carrier.next("bind", &mut seen);
    assert_eq!(unknown["status"], 0x0F, "ESME_RINVSYSID: {unknown}");
    let good = carrier.next("bind", &mut seen);
    assert_eq!(good["status"], 0, "{good}");
}

#[test]
fn smpplib_submits_are_stored_whole_and_get_delivered_receipts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smsc, port) = smsc("DELIVRD");
    let gateway = gateway(dir.path(), &connector(port));
    for (text, id, (receipt, receipted_id, state)) in
        submit_and_collect(&smpp_url(&gateway), "4915112345678")
    {
        let stored = message(&gateway, &id);
        assert_eq!(
            stored["text"],
            text.as_str(),
            "reassembled and decoded exactly"
        );
        assert_eq!(stored["status"], "delivered", "{stored}");
        assert_eq!(stored["from"], "+15550100");
        assert_eq!(stored["metadata"]["smpp.system_id"], "carrier1");
        assert_eq!(receipted_id, id);
        assert_eq!(state, 2, "message_state DELIVERED");
        assert!(
            receipt.starts_with(&format!("id:{id} sub:001 dlvrd:001 ")),
            "{receipt}"
        );
        assert!(receipt.contains(" stat:DELIVRD err:000 text:"), "{receipt}");
    }
}

#[test]
fn smpplib_gets_an_undelivered_receipt_when_the_smsc_reports_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smsc, port) = smsc("UNDELIV");
    let gateway = gateway(dir.path(), &connector(port));
    for (_, id, (receipt, receipted_id, state)) in
        submit_and_collect(&smpp_url(&gateway), "4915199999999")
    {
        let stored = message(&gateway, &id);
        assert_eq!(stored["status"], "undelivered", "{stored}");
        assert_eq!(receipted_id, id);
        assert_eq!(state, 5, "message_state UNDELIVERABLE");
        assert!(
            receipt.contains(" dlvrd:000 ") && receipt.contains(" stat:UNDELIV "),
            "{receipt}"
        );
    }
}

#[test]
fn smpplib_scheduled_message_canceled_is_reported_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = gateway(dir.path(), "");
    let carrier = Carrier::start(&smpp_url(&gateway), &["scheduled", "4915112345678"]);
    let mut seen = Vec::new();
    let resp = carrier.next("submit_sm_resp", &mut seen);
    assert_eq!(resp["status"], 0, "{resp}");
    let id = resp["message_id"].as_str().expect("id").to_owned();
    let stored = message(&gateway, &id);
    assert_eq!(stored["status"], "queued");
    assert!(
        stored["send_at"].is_string(),
        "schedule_delivery_time read: {stored}"
    );
    let (status, body) = gateway.request("DELETE", &format!("/v1/messages/{id}"), "");
    assert!((200..300).contains(&status), "{status} {body}");
    let (text, receipted_id, state) = receipt(&carrier.next("deliver_sm", &mut seen));
    assert_eq!(receipted_id, id);
    assert_eq!(state, 4, "message_state DELETED");
    assert!(text.contains(" stat:DELETED "), "{text}");
    let query = carrier.next("query_sm_resp", &mut seen);
    assert_eq!(query["status"], 0, "{query}");
    assert_eq!(query["message_state"], 4, "{query}");
}

#[test]
fn message_received_over_sip_waits_for_the_receiver_bind_then_arrives_as_deliver_sm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = gateway(dir.path(), "");
    let sip = gateway
        .listening("sip")
        .into_iter()
        .find(|u| u.starts_with("udp://"))
        .expect("the SIP listener");
    let sip = sip.trim_start_matches("udp://");
    let body = "Hello carrier 😀 from SIP";
    let uri = format!("sip:+15550100@{sip}");
    let request = format!(
        "MESSAGE {uri} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsmpp1\n\
         Max-Forwards: 70\nFrom: <sip:alice@example.org>;tag=s1\nTo: <{uri}>\n\
         Call-ID: smpp-server-1@example.org\nCSeq: 1 MESSAGE\n\
         Content-Type: text/plain;charset=UTF-8\nContent-Length: {}\n\n{body}",
        body.len()
    );
    let file = dir.path().join("message.sip");
    std::fs::write(&file, request).expect("request file");
    let output = Command::new(program("sipsak"))
        .arg("-f")
        .arg(&file)
        .args(["-s", &uri, "-vv"])
        .output()
        .expect("sipsak");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("200 OK"), "sipsak: {said}");
    // Nobody is bound now: the message waits; then a receiver binds and gets it.
    let carrier = Carrier::start(&smpp_url(&gateway), &["receive", "1"]);
    let mut seen = Vec::new();
    let line = carrier.next("deliver_sm", &mut seen);
    assert_eq!(line["esm_class"], 0, "an ordinary message: {line}");
    assert_eq!(line["data_coding"], 8, "UCS-2 for the emoji: {line}");
    assert_eq!(line["destination_addr"], "15550100");
    let bytes = hex(line["short_message"].as_str().expect("hex"));
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).expect("UTF-16"), body);
    carrier.next("done", &mut seen);
}
