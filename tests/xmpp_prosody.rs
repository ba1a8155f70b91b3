//! The XMPP channel end to end: the `switchboard` binary connected as an external
//! component (XEP-0114) to a real Prosody started here, with slixmpp as the human
//! (tests/peers/xmpp/user.py). Needs the peers of scripts/install-peers
//! (`SWITCHBOARD_PEERS`, default ~/.cache/switchboard/peers).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, JsonPeer, peers_dir, repo};
use serde_json::{Value, json};

const KEY: &str = "sk_xmpp_test";
const COMPONENT: &str = "sms.localhost";
const SECRET: &str = "component-secret";
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Prosody of our own: config, data, pid and log in a temporary directory, loopback
/// ports of its own, the gateway's component configured. Killed when dropped.
struct Prosody {
    dir: PathBuf,
    config: PathBuf,
    c2s: u16,
    component: u16,
    child: Option<Child>,
}

impl Prosody {
    fn start(dir: &Path) -> Prosody {
        let dir = dir.join("prosody");
        std::fs::create_dir_all(dir.join("certs")).expect("prosody dir");
        let (c2s, component) = (free_port(), free_port());
        let template = std::fs::read_to_string(repo().join("tests/peers/xmpp/prosody.cfg.lua"))
            .expect("prosody template");
        let config = dir.join("prosody.cfg.lua");
        std::fs::write(
            &config,
            template
                .replace("@DIR@", dir.to_str().expect("utf-8 path"))
                .replace("@C2S@", &c2s.to_string())
                .replace("@COMPONENT_PORT@", &component.to_string())
                .replace("@COMPONENT@", COMPONENT)
                .replace("@SECRET@", SECRET),
        )
        .expect("prosody config");
        let mut prosody = Prosody {
            dir,
            config,
            c2s,
            component,
            child: None,
        };
        prosody.run();
        prosody
    }

    /// Starts the process and waits until both ports take connections.
    fn run(&mut self) {
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&self.config)
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prosody");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        for port in [self.c2s, self.component] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "prosody did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn register(&self, user: &str, password: &str) {
        let status = Command::new("prosodyctl")
            .arg("--config")
            .arg(&self.config)
            .args(["register", user, "localhost", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("prosodyctl");
        assert!(status.success(), "prosodyctl register {user}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

/// slixmpp as a user: JSON commands in, JSON events out. Killed when dropped.
struct User(JsonPeer);

impl User {
    /// Logs in as `name` (registered with [`Prosody::register`]) with password `pw`.
    fn login(prosody: &Prosody, name: &str) -> User {
        let mut command = Command::new(peers_dir().join("venv/bin/python"));
        command
            .arg(repo().join("tests/peers/xmpp/user.py"))
            .args(["--jid", &format!("{name}@localhost"), "--password", "pw"])
            .args(["--port", &prosody.c2s.to_string()])
            .stderr(Stdio::null());
        let mut user = User(JsonPeer::spawn(command, "the slixmpp user"));
        user.wait_for("ready", |_| true);
        user
    }

    fn cmd(&mut self, command: Value) {
        self.0.send(&command);
    }

    /// The next event of `kind` that satisfies `pred` (others are skipped).
    fn wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = self
                .0
                .recv_until(deadline)
                .unwrap_or_else(|| panic!("no {kind} event from the user"));
            if event["event"] == kind && pred(&event) {
                return event;
            }
        }
    }
}

impl User {
    /// Waits for an event of `kind` for each of `ids` (in any order).
    fn wait_for_ids(&mut self, kind: &str, ids: &[String]) {
        let mut missing: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut others = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !missing.is_empty() {
            let event = self
                .0
                .recv_until(deadline)
                .unwrap_or_else(|| panic!("no {kind} for {missing:?}; other events: {others:?}"));
            if event["event"] != kind {
                others.push(event.clone());
            }
            if event["event"] == kind {
                let key = if kind == "message" {
                    &event["body"]
                } else {
                    &event["id"]
                };
                if let Some(key) = key.as_str() {
                    missing.remove(key);
                }
            }
        }
    }
}

fn start_gateway(dir: &Path, prosody: &Prosody, extra: &str) -> Gateway {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = \"sqlite://{db}\"\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n\
             addresses = [\"+15550100\", \"xmpp:support@{COMPONENT}\"]\n\
             [xmpp]\ncomponent = \"{COMPONENT}\"\nserver = \"127.0.0.1:{port}\"\n\
             secret = \"{SECRET}\"\ntenant = \"acme\"\nreconnect_min_ms = 100\n\
             reconnect_max_ms = 1000\n{extra}",
            db = dir.join("switchboard.db").display(),
            port = prosody.component,
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

fn get(gateway: &Gateway, path: &str) -> Value {
    let (status, body) = gateway.request("GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// Polls `GET path` until it answers 200 and `pred` holds.
fn wait_until(gateway: &Gateway, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = gateway.request("GET", path, "");
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == 200 && pred(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: last {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn xmpp_state(gateway: &Gateway) -> String {
    let connectors = get(gateway, "/v1/connectors");
    connectors["data"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "xmpp"))
        .and_then(|c| c["state"].as_str())
        .unwrap_or("missing")
        .to_owned()
}

fn wait_bound(gateway: &Gateway) {
    let deadline = Instant::now() + WAIT;
    while xmpp_state(gateway) != "bound" {
        assert!(
            Instant::now() < deadline,
            "the xmpp connector never became bound"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post_message(gateway: &Gateway, body: Value) -> String {
    let (status, answer) = gateway.request("POST", "/v1/messages", &body.to_string());
    assert_eq!(status, 202, "{answer}");
    let value: Value = serde_json::from_str(&answer).expect("json");
    value["id"].as_str().expect("id").to_owned()
}

#[test]
fn outbound_messages_reach_the_user_and_come_back_delivered_then_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prosody = Prosody::start(dir.path());
    prosody.register("alice", "pw");
    let mut alice = User::login(&prosody, "alice");
    let gateway = start_gateway(dir.path(), &prosody, "");
    wait_bound(&gateway);

    let id = post_message(
        &gateway,
        json!({"to": "xmpp:alice@localhost", "from": "+15550100", "text": "Your code is 1234"}),
    );
    let got = alice.wait_for("message", |e| e["body"] == "Your code is 1234");
    assert_eq!(got["from"], format!("+15550100@{COMPONENT}"));
    assert_eq!(got["receipt"], true, "a XEP-0184 receipt is requested");
    assert_eq!(got["markable"], true, "the message is XEP-0333 markable");
    let stanza_id = got["id"].as_str().expect("stanza id").to_owned();

    // slixmpp answers the receipt request by itself.
    let delivered = wait_until(&gateway, &format!("/v1/messages/{id}"), "delivered", |m| {
        m["status"] == "delivered"
    });
    assert_eq!(delivered["upstream_id"], stanza_id.as_str());
    assert_eq!(delivered["connector"], "xmpp");
    let statuses: Vec<&str> = delivered["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert!(statuses.contains(&"sent"), "{statuses:?}");

    alice.cmd(json!({"cmd": "displayed", "to": format!("+15550100@{COMPONENT}"), "id": stanza_id}));
    wait_until(&gateway, &format!("/v1/messages/{id}"), "read", |m| {
        m["status"] == "read"
    });

    // A sender that is not a number is escaped into the node (XEP-0106).
    post_message(
        &gateway,
        json!({"to": "xmpp:alice@localhost", "from": "xmpp:support@sms.localhost", "text": "from support"}),
    );
    let got = alice.wait_for("message", |e| e["body"] == "from support");
    assert_eq!(got["from"], format!("support@{COMPONENT}"));

    // A user who does not exist: Prosody bounces it, the message is undelivered with the
    // XMPP condition as its code.
    let id = post_message(
        &gateway,
        json!({"to": "xmpp:nobody@localhost", "from": "+15550100", "text": "lost"}),
    );
    let undelivered = wait_until(
        &gateway,
        &format!("/v1/messages/{id}"),
        "undelivered",
        |m| m["status"] == "undelivered",
    );
    assert_eq!(
        undelivered["error"]["code"], "service-unavailable",
        "{undelivered}"
    );
}

#[test]
fn inbound_messages_are_stored_before_the_receipt_and_bad_ones_get_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prosody = Prosody::start(dir.path());
    prosody.register("alice", "pw");
    let mut alice = User::login(&prosody, "alice");
    // An SMS connector nothing answers on: bridged messages wait in its outbox.
    let gateway = start_gateway(
        dir.path(),
        &prosody,
        "[[smpp.connectors]]\nname = \"upstream\"\naddress = \"127.0.0.1:9\"\n\
         system_id = \"gw\"\npassword = \"pw\"\nbind = \"transceiver\"\ntenant = \"acme\"\n",
    );
    wait_bound(&gateway);

    // To a tenant's number: stored as received, then the receipt.
    alice.cmd(json!({"cmd": "send", "to": format!("+15550100@{COMPONENT}"), "body": "hello gateway", "id": "in-1"}));
    alice.wait_for("receipt", |e| e["id"] == "in-1");
    let list = get(&gateway, "/v1/messages?direction=inbound&q=gateway");
    let stored = &list["data"][0];
    assert_eq!(stored["from"], "xmpp:alice@localhost");
    assert_eq!(stored["to"], "+15550100");
    assert_eq!(stored["status"], "received");
    assert_eq!(stored["metadata"]["xmpp.id"], "in-1");

    // To the tenant's named component address.
    alice.cmd(
        json!({"cmd": "send", "to": format!("support@{COMPONENT}"), "body": "named", "id": "in-2"}),
    );
    alice.wait_for("receipt", |e| e["id"] == "in-2");

    // To a number nobody owns: bridged to SMS, queued for the SMS connector.
    alice.cmd(json!({"cmd": "send", "to": format!("+19995550123@{COMPONENT}"), "body": "to sms", "id": "in-3"}));
    alice.wait_for("receipt", |e| e["id"] == "in-3");
    let bridged = get(&gateway, "/v1/messages?to=%2B19995550123");
    assert_eq!(bridged["data"][0]["direction"], "outbound", "{bridged}");
    assert_eq!(bridged["data"][0]["text"], "to sms");

    // Bad input: each gets its error stanza, and the stream keeps working.
    alice.cmd(
        json!({"cmd": "send", "to": format!("+12ab@{COMPONENT}"), "body": "x", "id": "bad-1"}),
    );
    let e = alice.wait_for("error", |e| e["id"] == "bad-1");
    assert_eq!(e["condition"], "jid-malformed");
    alice.cmd(
        json!({"cmd": "send", "to": format!("nobody@{COMPONENT}"), "body": "x", "id": "bad-2"}),
    );
    let e = alice.wait_for("error", |e| e["id"] == "bad-2");
    assert_eq!(e["condition"], "item-not-found");
    alice.cmd(json!({"cmd": "send", "to": format!("+15550100@{COMPONENT}"), "body": "x".repeat(10_001), "id": "bad-3"}));
    let e = alice.wait_for("error", |e| e["id"] == "bad-3");
    assert_eq!(e["condition"], "policy-violation");
    alice.cmd(json!({"cmd": "raw", "xml": format!(
        "<message type='chat' id='bad-4' to='+15550100@{COMPONENT}'><body>odd</body>\
         <x xmlns='urn:example:unknown'><y/></x><request xmlns='urn:xmpp:receipts'/></message>")}));
    alice.wait_for("receipt", |e| e["id"] == "bad-4");
    assert_eq!(xmpp_state(&gateway), "bound");

    // Presence: subscribing is answered; changes are kept and served.
    alice.cmd(json!({"cmd": "subscribe", "to": format!("+15550100@{COMPONENT}")}));
    alice.wait_for("subscribed", |e| {
        e["from"] == format!("+15550100@{COMPONENT}")
    });
    // Once alice has approved the component's subscription back, Prosody sends it her
    // current presence; only then do her changes reach it.
    wait_until(
        &gateway,
        "/v1/presence/xmpp:alice@localhost",
        "presence available",
        |p| p["status"] == "available",
    );
    alice.cmd(json!({"cmd": "presence", "show": "dnd", "status": "in a meeting"}));
    let presence = wait_until(
        &gateway,
        "/v1/presence/xmpp:alice@localhost",
        "presence dnd",
        |p| p["status"] == "dnd",
    );
    assert_eq!(presence["note"], "in a meeting");
    alice.cmd(json!({"cmd": "presence", "type": "unavailable"}));
    wait_until(
        &gateway,
        "/v1/presence/xmpp:alice@localhost",
        "presence unavailable",
        |p| p["status"] == "unavailable",
    );
}

#[test]
fn a_prosody_restart_loses_nothing_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut prosody = Prosody::start(dir.path());
    let gateway = start_gateway(dir.path(), &prosody, "");
    wait_bound(&gateway);
    prosody.register("alice", "pw");
    let mut alice = User::login(&prosody, "alice");

    // Inbound with receipts, then Prosody goes away in the middle of outbound traffic.
    for i in 0..20 {
        alice.cmd(json!({"cmd": "send", "to": format!("+15550100@{COMPONENT}"), "body": format!("before {i}"), "id": format!("b{i}")}));
    }
    alice.wait_for_ids(
        "receipt",
        &(0..20).map(|i| format!("b{i}")).collect::<Vec<_>>(),
    );
    let mut ids: Vec<String> = (0..20)
        .map(|i| post_message(&gateway, json!({"to": "xmpp:alice@localhost", "from": "+15550100", "text": format!("first {i}")})))
        .collect();
    prosody.stop();
    drop(alice);
    let deadline = Instant::now() + WAIT;
    while xmpp_state(&gateway) == "bound" {
        assert!(
            Instant::now() < deadline,
            "the connector stayed bound without a server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Accepted while the server is away: they wait in the outbox.
    ids.extend((0..20).map(|i| {
        post_message(&gateway, json!({"to": "xmpp:alice@localhost", "from": "+15550100", "text": format!("while down {i}")}))
    }));
    prosody.run();
    wait_bound(&gateway);
    let mut alice = User::login(&prosody, "alice");
    // Everything accepted while the server was down arrives once it is back.
    alice.wait_for_ids(
        "message",
        &(0..20)
            .map(|i| format!("while down {i}"))
            .collect::<Vec<_>>(),
    );
    for id in &ids {
        wait_until(
            &gateway,
            &format!("/v1/messages/{id}"),
            "sent or delivered",
            |m| ["sent", "delivered", "read"].contains(&m["status"].as_str().unwrap_or("")),
        );
    }
    // Inbound after the restart, and every inbound message that got its receipt is stored.
    for i in 0..20 {
        alice.cmd(json!({"cmd": "send", "to": format!("+15550100@{COMPONENT}"), "body": format!("after {i}"), "id": format!("a{i}")}));
    }
    alice.wait_for_ids(
        "receipt",
        &(0..20).map(|i| format!("a{i}")).collect::<Vec<_>>(),
    );
    let stored = get(&gateway, "/v1/messages?direction=inbound&limit=100");
    let texts: Vec<&str> = stored["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    for i in 0..20 {
        assert!(
            texts.contains(&format!("before {i}").as_str()),
            "before {i} lost"
        );
        assert!(
            texts.contains(&format!("after {i}").as_str()),
            "after {i} lost"
        );
    }
    assert!(
        prosody.log().contains("component"),
        "prosody logged its component port"
    );
}
