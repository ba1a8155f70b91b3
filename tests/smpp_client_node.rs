//! The SMPP client against the npm package `smpp` as the upstream SMSC, through the real
//! gateway binary: message ids and receipts (also a receipt that arrives before the
//! submit_sm_resp), long UCS-2 messages with emoji in parts, inbound messages (single and
//! concatenated, out of order; as data_sm too), receipts by data_sm, validity_period
//! from the message's validity, and a kill and restart of the SMSC in the middle of
//! traffic with nothing lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, JsonPeer, peers_dir, repo};
use serde_json::Value;

const KEY: &str = "sk_smpp_client_key";

/// The node SMSC, killed when dropped.
struct Smsc {
    peer: JsonPeer,
    port: u16,
}

impl Smsc {
    fn start(options: Value) -> Smsc {
        let mut command = Command::new("node");
        command
            .arg(repo().join("tests/peers/smpp/smsc.js"))
            .arg(options.to_string())
            .env("NODE_PATH", peers_dir().join("node/node_modules"))
            .stderr(Stdio::inherit());
        let mut smsc = Smsc {
            peer: JsonPeer::spawn(command, "the npm smpp SMSC"),
            port: 0,
        };
        let listening = smsc.next("listening");
        smsc.port = listening["port"].as_u64().expect("port") as u16;
        smsc
    }

    /// The next event named `name` (others before it are dropped).
    fn next(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let event = self
                .peer
                .recv_until(deadline)
                .unwrap_or_else(|| panic!("no {name} event from the SMSC"));
            if event["event"] == name {
                return event;
            }
        }
    }

    fn command(&mut self, cmd: Value) {
        self.peer.send(&cmd);
    }
}

fn gateway(dir: &Path, smsc_port: u16, extra: &str) -> Gateway {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = \"sqlite://{}/switchboard.db\"\n\
             [dispatch]\nretry_base_ms = 200\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\naddresses = [\"+15550100\"]\n\
             [[smpp.connectors]]\nname = \"upstream-a\"\naddress = \"127.0.0.1:{smsc_port}\"\n\
             system_id = \"gw\"\npassword = \"pw\"\ntenant = \"acme\"\n\
             reconnect_min_ms = 100\nreconnect_max_ms = 1000\n{extra}\n",
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

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn send(gw: &Gateway, to: &str, text: &str) -> String {
    let body = serde_json::json!({"to": to, "text": text, "from": "+15550100"}).to_string();
    let (status, answer) = gw.request("POST", "/v1/messages", &body);
    assert_eq!(status, 202, "{answer}");
    json(&answer)["id"].as_str().expect("id").to_owned()
}

/// Polls the message until `done` holds (or panics with the last state after 60 s).
fn wait_for(gw: &Gateway, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = gw.request("GET", &format!("/v1/messages/{id}"), "");
        assert_eq!(status, 200, "{body}");
        let message = json(&body);
        if done(&message) {
            return message;
        }
        assert!(Instant::now() < deadline, "message {id} stuck: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |m| m["status"] == s
}

#[test]
fn ids_receipts_and_long_ucs2_messages() {
    let mut smsc = Smsc::start(serde_json::json!({"ids": "hex", "receipts": "after"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), smsc.port, "");
    smsc.next("bind");

    // One part: the SMSC's hex id is the upstream id (auto form: lower case).
    let id = send(&gw, "+14155550101", "Hello {world} €5");
    let submit = smsc.next("submit_sm");
    assert_eq!(submit["destination"], "14155550101");
    assert_eq!(submit["source"], "15550100");
    assert_eq!(submit["data_coding"], 0);
    assert_eq!(submit["registered_delivery"], 1);
    assert_eq!(submit["message"], "Hello {world} €5");
    let message = wait_for(&gw, &id, status_is("delivered"));
    let upstream = submit["id"].as_str().expect("id").to_ascii_lowercase();
    assert_eq!(message["upstream_id"], upstream.trim_start_matches('0'));
    assert_eq!(message["connector"], "upstream-a");

    // A long UCS-2 text with emoji: three parts with one UDH reference, every part's
    // receipt rolled up into `delivered`.
    let text = "Grüße 🙂 from the gateway, with emoji 🎉🎉 and more text to need parts: ".repeat(2);
    let id = send(&gw, "+14155550102", &text);
    let parts: Vec<Value> = (0..3).map(|_| smsc.next("submit_sm")).collect();
    let mut joined = String::new();
    let mut refs = HashSet::new();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["data_coding"], 8);
        assert_eq!(part["esm_class"].as_u64().unwrap_or(0) & 0x40, 0x40);
        let udh = part["udh"][0].as_str().expect("udh");
        assert_eq!(&udh[..4], "0003", "{udh}");
        assert_eq!(&udh[6..], format!("03{:02x}", i + 1));
        refs.insert(udh[4..6].to_owned());
        joined.push_str(part["message"].as_str().expect("text"));
    }
    assert_eq!(refs.len(), 1);
    assert_eq!(joined, text);
    let message = wait_for(&gw, &id, status_is("delivered"));
    assert_eq!(message["segments"], 3);
}

#[test]
fn receipt_before_the_submit_sm_resp_is_not_lost() {
    let mut smsc = Smsc::start(serde_json::json!({"ids": "decimal", "receipts": "before"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), smsc.port, "");
    smsc.next("bind");
    let ids: Vec<String> = (0..20)
        .map(|i| send(&gw, &format!("+141555502{i:02}"), &format!("early {i}")))
        .collect();
    for id in &ids {
        let m = wait_for(&gw, id, status_is("delivered"));
        assert!(m["upstream_id"].as_str().is_some_and(|u| !u.is_empty()));
    }
    // Every receipt was answered OK (after it was stored).
    for _ in 0..20 {
        assert_eq!(smsc.next("receipt_resp")["status"], 0);
    }
}

#[test]
fn undelivered_receipts_fail_the_message_with_the_stat() {
    let mut smsc = Smsc::start(serde_json::json!({"receipts": "after", "stat": "UNDELIV"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), smsc.port, "");
    smsc.next("bind");
    let id = send(&gw, "+14155550301", "to nowhere");
    let m = wait_for(&gw, &id, status_is("undelivered"));
    assert_eq!(m["error"]["code"], "UNDELIV", "{m}");
}

#[test]
fn inbound_messages_single_and_concatenated_out_of_order() {
    let mut smsc = Smsc::start(serde_json::json!({"receipts": "none"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), smsc.port, "");
    smsc.next("bind");

    smsc.command(serde_json::json!({
        "cmd": "deliver", "from": "+14155550199", "to": "+15550100",
        "text": "Hi there, café", "coding": "latin1", "parts": 1
    }));
    assert_eq!(smsc.next("deliver_sm_resp")["status"], 0);

    // 5 UCS-2 parts sent last to first; the byte cut falls inside surrogate pairs.
    let long = "🙂😀🎉 ".repeat(40);
    smsc.command(serde_json::json!({
        "cmd": "deliver", "from": "+14155550199", "to": "+15550100",
        "text": long, "coding": "ucs2", "parts": 5, "reverse": true
    }));
    for _ in 0..5 {
        assert_eq!(smsc.next("deliver_sm_resp")["status"], 0);
    }

    // Both are stored as received for the tenant, answered only after that.
    let (status, body) = gw.request("GET", "/v1/messages?direction=inbound", "");
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    let texts: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.contains(&"Hi there, café"), "{body}");
    assert!(texts.contains(&long.as_str()), "{body}");
    let from: HashSet<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["from"].as_str())
        .collect();
    assert_eq!(from, HashSet::from(["+14155550199"]));
}

#[test]
fn data_sm_inbound_and_receipts_and_validity() {
    let mut smsc = Smsc::start(serde_json::json!({"receipts": "after", "receipts_by": "data_sm"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), smsc.port, "");
    smsc.next("bind");

    // A message valid for an hour: validity_period is the time left, relative, which the
    // SMSC reads as about an hour from now. The receipt comes as a data_sm with only
    // receipted_message_id and message_state, and still rolls the message up.
    let body = serde_json::json!({
        "to": "+14155550102", "text": "valid for an hour", "from": "+15550100",
        "validity_seconds": 3600,
    })
    .to_string();
    let (status, answer) = gw.request("POST", "/v1/messages", &body);
    assert_eq!(status, 202, "{answer}");
    let id = json(&answer)["id"].as_str().expect("id").to_owned();
    let submit = smsc.next("submit_sm");
    let validity = submit["validity_period"].as_str().expect("validity_period");
    let validity = chrono::DateTime::parse_from_rfc3339(validity)
        .unwrap_or_else(|e| panic!("{e}: {submit}"))
        .with_timezone(&chrono::Utc);
    let left = (validity - chrono::Utc::now()).num_seconds();
    assert!((3000..=3601).contains(&left), "{left} s left: {submit}");
    assert_eq!(smsc.next("receipt_resp")["status"], 0);
    let message = wait_for(&gw, &id, status_is("delivered"));
    let upstream = submit["id"].as_str().expect("id").to_ascii_lowercase();
    assert_eq!(message["upstream_id"], upstream.trim_start_matches('0'));

    // Without a validity, validity_period is empty (the SMSC's default).
    send(&gw, "+14155550103", "no validity");
    assert_eq!(smsc.next("submit_sm")["validity_period"], "");

    // An inbound data_sm (text in message_payload) is stored, then answered data_sm_resp.
    smsc.command(serde_json::json!({
        "cmd": "data_sm", "from": "+14155550199", "to": "+15550100",
        "text": "by data_sm 🙂", "coding": "ucs2"
    }));
    assert_eq!(smsc.next("data_sm_resp")["status"], 0);
    let (status, body) = gw.request("GET", "/v1/messages?direction=inbound", "");
    assert_eq!(status, 200, "{body}");
    let list = json(&body);
    let stored = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["text"] == "by data_sm 🙂")
        .unwrap_or_else(|| panic!("not stored: {body}"));
    assert_eq!(stored["from"], "+14155550199");
    assert_eq!(stored["metadata"]["smpp.command"], "data_sm");
}

#[test]
fn smsc_killed_and_restarted_mid_traffic_loses_nothing() {
    // A fixed port, so the restarted SMSC is where the connector reconnects.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let options = serde_json::json!({"port": port, "receipts": "after"});
    let mut smsc = Smsc::start(options.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(
        dir.path(),
        port,
        "response_timeout_seconds = 2\nwindow = 20",
    );
    smsc.next("bind");

    const N: usize = 300;
    let ids: Vec<String> = (0..N)
        .map(|i| {
            send(
                &gw,
                &format!("+1415556{i:04}"),
                &format!("through a crash {i}"),
            )
        })
        .collect();
    // Kill it in the middle of the traffic.
    for _ in 0..N / 3 {
        smsc.next("submit_sm");
    }
    drop(smsc);
    let mut smsc = Smsc::start(options);
    smsc.next("bind");

    let mut retried = 0;
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let m = wait_for(&gw, id, |m| {
            m["status"] == "delivered" || m["status"] == "sent"
        });
        *statuses
            .entry(m["status"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
        let events = m["events"].as_array().expect("events");
        if events.iter().any(|e| {
            e["status"] == "queued"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("next attempt"))
        }) {
            retried += 1;
        }
    }
    assert_eq!(statuses.values().sum::<usize>(), N, "{statuses:?}");
    // Whether a send was in flight at the kill depends on timing: report, do not assert.
    eprintln!("{retried} of {N} sends were cut by the kill and retried");
    drop(smsc);
}
