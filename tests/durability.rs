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
