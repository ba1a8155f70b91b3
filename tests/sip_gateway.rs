//! The SIP channel in the real `switchboard` binary: sipsak sends MESSAGE over UDP and
//! TCP and the message is stored and announced (a `message.received` webhook event);
//! bad input leaves the listener healthy; a message posted to the REST API for a
//! `sip:` address reaches Kamailio, and its status follows Kamailio's answer.

mod common;
#[path = "sip_peers.rs"]
mod sip_peers;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Gateway;
use serde_json::Value;
use sip_peers::*;

const KEY: &str = "sk_sip_gateway_test";

fn start(dir: &Path, extra: &str) -> (Gateway, SocketAddr) {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/db.sqlite\"\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n\
             addresses = [\"+15550100\", \"sip:support@gw.example.test\"]\n\
             [sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"gw.example.test\"\ntenant = \"acme\"\n\
             t1_ms = 100\n{extra}",
            dir.display()
        ),
    )
    .expect("config");
    let binary = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let gateway = Gateway::start(
        binary,
        &["serve".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[],
        KEY,
    );
    let urls = gateway.listening("sip");
    let udp = urls
        .iter()
        .find_map(|u| u.strip_prefix("udp://"))
        .unwrap_or_else(|| panic!("no udp:// among {urls:?}"));
    assert!(urls.contains(&format!("tcp://{udp}")), "{urls:?}");
    let addr = udp.parse().expect("address");
    (gateway, addr)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls the message until `done` holds, within 30 s.
fn message_until(gateway: &Gateway, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = gateway.request("GET", &format!("/v1/messages/{id}"), "");
        assert_eq!(status, 200, "{body}");
        let message = json(&body);
        if done(&message) {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "the message never got there: {message}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The inbound messages stored, newest first.
fn inbound(gateway: &Gateway) -> Vec<Value> {
    let (status, body) = gateway.request("GET", "/v1/messages?direction=inbound", "");
    assert_eq!(status, 200, "{body}");
    json(&body)["data"].as_array().expect("data").clone()
}

#[test]
fn sipsak_messages_are_stored_and_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gateway, addr) = start(dir.path(), "");
    // A subscription to an address where nothing listens: the deliveries it records show
    // what was announced.
    let port = free_port();
    let (status, body) = gateway.request(
        "POST",
        "/v1/webhooks",
        &format!(r#"{{"url": "http://127.0.0.1:{port}/hook", "events": ["message.received"]}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let subscription = json(&body)["id"].as_str().expect("id").to_owned();

    let cases = [
        (
            "udp",
            format!("sip:+15550100@{addr}"),
            "+15550100",
            "sms over udp",
        ),
        (
            "tcp",
            format!("sip:support@{addr}"),
            "sip:support@gw.example.test",
            "support over tcp",
        ),
    ];
    for (transport, uri, to, text) in &cases {
        let call_id = format!("{transport}-call@example.org");
        let file = request_file(dir.path(), transport, &sipsak_request(uri, &call_id, text));
        let (code, out) = sipsak(&[
            "-f",
            file.to_str().expect("path"),
            "-s",
            uri,
            "-E",
            transport,
        ]);
        assert_eq!(code, 0, "sipsak over {transport}:\n{out}");
        let stored = inbound(&gateway);
        let message = stored
            .iter()
            .find(|m| m["text"] == *text)
            .unwrap_or_else(|| panic!("{text:?} not stored: {stored:?}"));
        assert_eq!(message["to"], *to);
        assert_eq!(message["from"], "sip:alice@example.org");
        assert_eq!(message["status"], "received");
        assert_eq!(
            message["channel"],
            if to.starts_with('+') { "sms" } else { "sip" }
        );
        assert_eq!(message["metadata"]["sip.call_id"], call_id.as_str());
        assert_eq!(message["metadata"]["sip.cseq"], "7");
    }
    // Unknown recipients are refused, not stored.
    let uri = format!("sip:nobody@{addr}");
    let file = request_file(
        dir.path(),
        "nobody",
        &sipsak_request(&uri, "nobody@x", "lost"),
    );
    let (code, out) = sipsak(&["-f", file.to_str().expect("path"), "-s", &uri]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("404 Not Found"), "{out}");
    assert_eq!(inbound(&gateway).len(), 2);

    // Both were announced.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = gateway.request(
            "GET",
            &format!("/v1/webhooks/{subscription}/deliveries"),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let deliveries = json(&body)["data"].as_array().expect("data").clone();
        let received = deliveries
            .iter()
            .filter(|d| d["event_type"] == "message.received")
            .count();
        if received == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not announced: {deliveries:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `realm` of each `WWW-Authenticate` of a response.
fn realms(response: &str) -> Vec<String> {
    response
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .filter_map(|l| l.split("realm=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_tenant_challenges_with_its_own_realm_and_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    // acme and beta each guard their addresses with their own users; gamma has no table
    // and [sip.auth] has no users of its own, so anyone may send to gamma. sipsak reads
    // only the first challenge and knows only MD5.
    let (gateway, addr) = start(
        dir.path(),
        "[sip.auth]\nalgorithms = [\"MD5\"]\n\
         [[sip.auth.tenants]]\ntenant = \"acme\"\n\
         users = [{ username = \"alice\", password = \"acme-pw\" }]\n\
         [[sip.auth.tenants]]\ntenant = \"beta\"\nrealm = \"beta.example.test\"\n\
         users = [{ username = \"bob\", password = \"beta-pw\" }]\n\
         [[tenants]]\nid = \"beta\"\napi_keys = [\"sk_sip_beta\"]\n\
         addresses = [\"sip:sales@gw.example.test\"]\n\
         [[tenants]]\nid = \"gamma\"\napi_keys = [\"sk_sip_gamma\"]\n\
         addresses = [\"sip:open@gw.example.test\"]\n",
    );
    let support = format!("sip:support@{addr}");
    let sales = format!("sip:sales@{addr}");
    let open = format!("sip:open@{addr}");

    // A MESSAGE without credentials is challenged in the realm of the tenant it is for.
    for (uri, realm) in [
        (&support, "acme@gw.example.test"),
        (&sales, "beta.example.test"),
    ] {
        let answer = udp_exchange(
            addr,
            message(uri, &format!("z9hG4bK{realm}"), "", "text/plain", "x").as_bytes(),
        );
        assert_eq!(status_of(&answer), 401, "{answer}");
        assert_eq!(realms(&answer), [realm], "{answer}");
    }

    let send = |uri: &str, name: &str, credentials: &[&str]| {
        let file = request_file(
            dir.path(),
            name,
            &sipsak_request(uri, &format!("{name}@example.org"), name),
        );
        let path = file.to_str().expect("path");
        let mut args = vec!["-f", path, "-s", uri];
        args.extend_from_slice(credentials);
        sipsak(&args)
    };
    let (code, out) = send(&support, "alice-to-acme", &["-u", "alice", "-a", "acme-pw"]);
    assert_eq!(code, 0, "acme's user sends to acme:\n{out}");
    let (code, out) = send(&sales, "alice-to-beta", &["-u", "alice", "-a", "acme-pw"]);
    assert_ne!(code, 0, "acme's user may not send to beta:\n{out}");
    assert!(out.contains("401"), "{out}");
    let (code, out) = send(&sales, "bob-to-beta", &["-u", "bob", "-a", "beta-pw"]);
    assert_eq!(code, 0, "beta's user sends to beta:\n{out}");
    let (code, out) = send(&support, "bob-to-acme", &["-u", "bob", "-a", "beta-pw"]);
    assert_ne!(code, 0, "beta's user may not send to acme:\n{out}");
    let (code, out) = send(&open, "anyone-to-gamma", &[]);
    assert_eq!(code, 0, "gamma has no table:\n{out}");

    // Each tenant holds exactly what its own users sent.
    let texts = |key: &str| -> Vec<String> {
        let (status, body) = gateway.request_as(key, "GET", "/v1/messages?direction=inbound", "");
        assert_eq!(status, 200, "{body}");
        json(&body)["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["text"].as_str().expect("text").to_owned())
            .collect()
    };
    assert_eq!(texts(KEY), ["alice-to-acme"]);
    assert_eq!(texts("sk_sip_beta"), ["bob-to-beta"]);
    assert_eq!(texts("sk_sip_gamma"), ["anyone-to-gamma"]);
}

#[test]
fn bad_input_leaves_the_gateway_healthy() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let (gateway, addr) = start(dir.path(), "");
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    junk.send_to(b"\x16\x03\x01garbage\r\n\r\n", addr)
        .expect("send");
    junk.send_to(&[0u8; 2000], addr).expect("send");
    let answer = udp_exchange(
        addr,
        message(
            &format!("sip:+15550100@{addr}"),
            "z9hG4bKbad",
            "",
            "text/plain",
            "x",
        )
        .replace("CSeq: 1 MESSAGE\r\n", "")
        .as_bytes(),
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(&vec![b'%'; 40_000]);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    for transport in ["udp", "tcp"] {
        let uri = format!("sip:+15550100@{addr}");
        let text = format!("healthy over {transport}");
        let file = request_file(
            dir.path(),
            transport,
            &sipsak_request(&uri, &format!("{transport}@x"), &text),
        );
        let (code, out) = sipsak(&[
            "-f",
            file.to_str().expect("path"),
            "-s",
            &uri,
            "-E",
            transport,
        ]);
        assert_eq!(code, 0, "{transport}:\n{out}");
    }
    assert_eq!(inbound(&gateway).len(), 2);
    let (status, _) = gateway.request("GET", "/healthz", "");
    assert_eq!(status, 200);
}

#[test]
fn messages_to_sip_addresses_reach_kamailio_and_follow_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ua, ua_addr) = kamailio(dir.path(), "kamailio-ua.cfg", "SHA-256");
    let (gateway, _) = start(
        dir.path(),
        "username = \"support\"\npassword = \"s3cret\"\n",
    );
    let send = |to: String, text: &str| {
        let (status, body) = gateway.request(
            "POST",
            "/v1/messages",
            &format!(
                r#"{{"to": "{to}", "from": "sip:support@gw.example.test", "text": "{text}"}}"#
            ),
        );
        assert_eq!(status, 202, "{body}");
        json(&body)["id"].as_str().expect("id").to_owned()
    };
    let final_or = |status: &'static str| move |m: &Value| m["status"] == status;

    let id = send(format!("sip:delivered@{ua_addr}"), "hello Kamailio");
    let message = message_until(&gateway, &id, final_or("delivered"));
    let call_id = message["upstream_id"]
        .as_str()
        .expect("upstream id")
        .to_owned();
    assert_eq!(message["metadata"]["sip.call_id"], call_id.as_str());
    assert_eq!(message["connector"], "sip");
    let line = ua.wait_for(&format!("call_id={call_id}"), Duration::from_secs(10));
    assert!(line.contains("body=[hello Kamailio]"), "{line}");

    let id = send(format!("sip:accepted@{ua_addr}"), "next hop");
    message_until(&gateway, &id, final_or("sent"));

    let id = send(format!("sip:secret@{ua_addr}"), "behind a challenge");
    let message = message_until(&gateway, &id, final_or("delivered"));
    assert_eq!(message["metadata"]["sip.cseq"], "2");
    let call_id = message["upstream_id"]
        .as_str()
        .expect("upstream id")
        .to_owned();
    ua.wait_for(
        &format!("UA challenged call_id={call_id}"),
        Duration::from_secs(10),
    );

    let id = send(format!("sip:nobody@{ua_addr}"), "lost");
    let message = message_until(&gateway, &id, final_or("failed"));
    assert_eq!(message["error"]["code"], "404", "{message}");
}
