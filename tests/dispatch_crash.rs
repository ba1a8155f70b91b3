//! `kill -9` of the gateway while messages are being dispatched: after a restart nothing
//! accepted is lost, the outbox resumes, and a message whose send was interrupted shows
//! that attempt in its history. The gateway runs as a process of its own
//! (`examples/line_sink_gateway.rs`: the gateway with a test connector that writes lines
//! to a TCP peer this test runs).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
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

struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start(config: &std::path::Path, sink: &str) -> Gateway {
        let mut child = Command::new(harness())
            .arg(config)
            .env("SINK_ADDR", sink)
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the harness: `cargo test -p switchboard` builds it as an example");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("exited before listening")
                .expect("stdout");
            if let Some(rest) = line.strip_prefix("switchboard: REST API listening on http://") {
                break rest.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

    let gateway = Gateway::start(&config, &sink_addr);
    let mut accepted = Vec::new();
    for i in 0..20 {
        let (status, message) = gateway.request(
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
    let gateway = Gateway::start(&config, &sink_addr);
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
            let (status, message) = gateway.request("GET", &format!("/v1/messages/{id}"), "");
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
