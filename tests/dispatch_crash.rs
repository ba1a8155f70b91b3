//! `kill -9` of the gateway while messages are being dispatched: after a restart nothing
//! accepted is lost, the outbox resumes, and a message whose send was interrupted shows
//! that attempt in its history. The gateway runs as a process of its own
//! (`examples/line_sink_gateway.rs`: the gateway with a test connector that writes lines
//! to a TCP peer this test runs).

use std::collections::{HashMap, HashSet};
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use common::Gateway;
use std::time::{Duration, Instant};

const KEY: &str = "sk_crash_test_key";

fn harness() -> PathBuf {
    // Examples are built next to the test binaries' own binary.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_switchboard"));
    bin.parent()
        .expect("bin dir")
        .join("examples")
        .join("line_sink_gateway")
}

/// The TCP peer: records every line; answers `OK` only once `answer` is set.
fn sink(answer: Arc<AtomicBool>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = listener.local_addr().expect("addr").to_string();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (lines, answer) = (lines.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let id = line.split(' ').next().unwrap_or_default().to_owned();
                    let _ = lines.send(id.clone());
                    if !answer.load(Ordering::SeqCst) {
                        // Hold the send: the gateway dies with it in flight.
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    let _ = writeln!(writer, "OK up-{id}");
                }
            });
        }
    });
    (addr, received)
}

fn start(config: &std::path::Path, sink: &str) -> Gateway {
    Gateway::start(
        &harness(),
        &[config.as_os_str()],
        &[("SINK_ADDR", sink)],
        KEY,
    )
}

/// A request whose answer is JSON.
fn call(gateway: &Gateway, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, body) = gateway.request(method, path, body);
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[test]
fn kill_9_during_dispatch_loses_nothing_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/db.sqlite\"\n\
             [dispatch]\nlease_seconds = 5\nretry_base_ms = 50\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let answer = Arc::new(AtomicBool::new(false));
    let (sink_addr, received) = sink(answer.clone());

    let gateway = start(&config, &sink_addr);
    let mut accepted = Vec::new();
    for i in 0..20 {
        let (status, message) = call(
            &gateway,
            "POST",
            "/v1/messages",
            &format!(r#"{{"to": "+1415555{i:04}", "text": "crash {i}"}}"#),
        );
        assert_eq!(status, 202, "{message}");
        accepted.push(message["id"].as_str().expect("id").to_owned());
    }
    // One send is in flight (the sink holds it): kill the gateway now.
    let in_flight = received
        .recv_timeout(Duration::from_secs(20))
        .expect("a send reached the sink");
    gateway.kill_9();

    answer.store(true, Ordering::SeqCst);
    let gateway = start(&config, &sink_addr);
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < accepted.len() {
        let id = received
            .recv_timeout(Duration::from_secs(30))
            .expect("the outbox resumed");
        *seen.entry(id).or_default() += 1;
    }
    let expected: HashSet<_> = accepted.iter().cloned().collect();
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "every accepted message was sent"
    );

    // Each message ends `sent`; the interrupted one shows both attempts.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &accepted {
        loop {
            let (status, message) = call(&gateway, "GET", &format!("/v1/messages/{id}"), "");
            assert_eq!(status, 200);
            if message["status"] == "sent" {
                let sending = message["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .filter(|e| e["status"] == "sending")
                    .count();
                if *id == in_flight {
                    assert_eq!(sending, 2, "{message:#}");
                    assert_eq!(message["upstream_id"], format!("up-{id}"));
                } else {
                    assert_eq!(sending, 1, "{message:#}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "{id} is {}", message["status"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
