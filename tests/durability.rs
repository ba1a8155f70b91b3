//! A message answered 202 survives `kill -9` of the gateway straight after the answer,
//! on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` points at one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "sk_durability_key";

/// A gateway process of our own binary.
struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start(config: &std::path::Path) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--config"])
            .arg(config)
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchboard");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the gateway exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.strip_prefix("switchboard: REST API listening on http://") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr }
    }

    /// SIGKILL: no shutdown, no flush, nothing but what is on disk survives.
    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// One HTTP/1.1 request on a fresh connection; the status and body.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = body.unwrap_or("");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn id_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("json");
    value["id"].as_str().expect("id").to_owned()
}

fn survives_kill_9(database_url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{database_url}\"\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n"
        ),
    )
    .expect("config");

    let gateway = Gateway::start(&config);
    // Concurrent senders, so answers come out of shared group commits; the gateway is
    // killed the moment the last 202 is read.
    let accepted: Vec<String> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..8)
            .map(|t| {
                let gateway = &gateway;
                scope.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let body = format!(
                                r#"{{"to": "+1415555{t:02}{i:02}", "text": "durable {t}/{i}"}}"#
                            );
                            let (status, answer) =
                                gateway.request("POST", "/v1/messages", Some(&body));
                            assert_eq!(status, 202, "{answer}");
                            id_of(&answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|s| s.join().expect("sender"))
            .collect()
    });
    gateway.kill_9();

    let gateway = Gateway::start(&config);
    for id in &accepted {
        let (status, body) = gateway.request("GET", &format!("/v1/messages/{id}"), None);
        assert_eq!(status, 200, "message {id} answered 202 was lost: {body}");
        assert!(body.contains("\"status\":\"queued\""), "{body}");
    }
    assert_eq!(accepted.len(), 200);
}

#[test]
fn sqlite_keeps_every_accepted_message_through_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    survives_kill_9(&format!("sqlite://{}/switchboard.db", dir.path().display()));
}

#[test]
fn postgres_keeps_every_accepted_message_through_kill_9() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL run skipped");
        return;
    };
    // A schema of our own, so runs never see each other's rows.
    let schema = format!("durability_{}", std::process::id());
    let status = Command::new("psql")
        .args([base.as_str(), "-qc", &format!("SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")])
        .status()
        .expect("psql");
    assert!(status.success(), "cannot create schema {schema}");
    let sep = if base.contains('?') { '&' } else { '?' };
    survives_kill_9(&format!("{base}{sep}options=-c%20search_path%3D{schema}"));
}
