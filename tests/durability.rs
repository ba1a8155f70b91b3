//! A message answered 202 survives `kill -9` of the gateway straight after the answer,
//! on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` points at one).

use std::process::Command;

const KEY: &str = "sk_durability_key";

mod common;

use common::Gateway;

fn start(config: &std::path::Path) -> Gateway {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_switchboard"));
    Gateway::start(
        binary,
        &["serve".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[],
        KEY,
    )
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

    let gateway = start(&config);
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
                            let (status, answer) = gateway.request("POST", "/v1/messages", &body);
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

    let gateway = start(&config);
    for id in &accepted {
        let (status, body) = gateway.request("GET", &format!("/v1/messages/{id}"), "");
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

/// A webhook receiver on a fixed port: answers 204 and passes on each body.
fn receiver(listener: std::net::TcpListener) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let (bodies, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = bodies.send(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    received
}

#[test]
fn pending_webhook_deliveries_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/db.sqlite\"\n\
             [[tenants]]\nid = \"acme\"\napi_keys = [\"{KEY}\"]\n",
            dir.path().display()
        ),
    )
    .expect("config");
    // Reserve a port for the receiver, and keep nothing listening on it for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();

    let gateway = start(&config);
    let (status, body) = gateway.request(
        "POST",
        "/v1/webhooks",
        &format!(r#"{{"url": "http://127.0.0.1:{port}/hook", "events": ["*"]}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = gateway.request(
        "POST",
        "/v1/messages",
        r#"{"to": "+14155550100", "text": "announce me"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let id = id_of(&body);
    // The receiver is down: the delivery is pending when the gateway dies.
    gateway.kill_9();

    let received =
        receiver(std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind receiver"));
    let _gateway = start(&config);
    // Killed after taking the delivery but before recording its attempt, the first
    // gateway leaves it leased for the worker's 60 s lease: wait longer than that.
    let event: serde_json::Value = serde_json::from_str(
        &received
            .recv_timeout(std::time::Duration::from_secs(90))
            .expect("the pending delivery arrived after the restart"),
    )
    .expect("json");
    assert_eq!(event["type"], "message.queued");
    assert_eq!(event["data"]["id"], id.as_str());
}
