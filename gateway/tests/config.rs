//! The config file: every mistake reported at once with its key; environment overrides.

use std::process::Command;

use switchboard::config::{self, ConfigError};

fn keys(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/switchboard.example.toml"
    );
    let config = config::load(Some(std::path::Path::new(path)), []).expect("example config");
    assert_eq!(config.tenants[0].id, "acme");
    assert_eq!(config.smpp.connectors[0].name, "upstream-a");
    assert_eq!(config.routes.len(), 2);
    let names: Vec<_> = config.connectors().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["upstream-a", "sip", "xmpp", "email"]);
}

#[test]
fn no_file_is_the_embedded_default() {
    let config = config::parse("", []).expect("defaults");
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.database.url, config::DEFAULT_DATABASE_URL);
    assert_eq!(config.http.max_body_bytes, 1_048_576);
    assert_eq!(
        config::data_dir(&config),
        std::path::Path::new("switchboard-data")
    );
    // With no file at all, the channel listeners are on loopback too.
    let config = config::load(None, []).expect("embedded default");
    let smpp = config.smpp.server.as_ref().expect("SMPP server");
    assert_eq!(smpp.listen.to_string(), "127.0.0.1:2775");
    let sip = config.sip.as_ref().expect("SIP");
    assert_eq!(sip.listen.to_string(), "127.0.0.1:5060");
    let email = config.email.as_ref().expect("email");
    assert_eq!(email.listen.to_string(), "127.0.0.1:2525");
    assert_eq!(email.relay, None);
}

#[test]
fn every_mistake_is_reported_with_its_key() {
    let toml = r#"
[http]
listen = "localhost"
max_body_bytes = "big"

[database]
url = "mysql://x"

[[tenants]]
id = "acme"
api_keys = ["short"]
addresses = ["+15550100", "not an address!"]

[[tenants]]
id = "acme"
api_key_sha256 = ["xyz"]
addresses = ["+15550100"]

[[tenants]]
id = "bad id!"
api_keys = ["sk_long_enough"]
colour = "red"

[[smpp.connectors]]
name = "up"
address = "nowhere"
system_id = "gw"
password = "pw"
tenant = "nobody"

[sip]
listen = "127.0.0.1:5060"
domain = "gw.example.test"
tenant = "ghost"

[[sip.auth.tenants]]
tenant = "phantom"
realm = "gw.example.test"
users = []

[[routes]]
match = { to = "+1*" }
connector = "missing"

[[routes]]
match = { to = "+2*" }

[telemetry]
on = true
"#;
    let errors = config::parse(toml, []).expect_err("mistakes").0;
    let mut got = keys(&errors);
    got.sort();
    let mut expected = vec![
        "http.listen",
        "database.url",
        "tenants[0].api_keys[0]",
        "tenants[0].addresses[1]",
        "tenants[1].id",
        "tenants[1].api_key_sha256[0]",
        "tenants[1].addresses[0]",
        "tenants[2].colour",
        "smpp.connectors[0].tenant",
        "smpp.connectors[0].address",
        "sip.tenant",
        "sip.auth.tenants[0].tenant",
        "sip.auth.tenants[0].realm",
        "sip.auth.tenants[0].users",
        "routes[0].connector",
        "routes[1]",
        "telemetry",
    ];
    expected.sort();
    assert_eq!(got, expected, "{errors:#?}");
    for error in &errors {
        assert!(!error.message.is_empty(), "{error}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let errors = config::parse("[http]\nlisten = \n", [])
        .expect_err("syntax")
        .0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "line 2");
}

#[test]
fn environment_overrides() {
    let toml = r#"
[[tenants]]
id = "acme"
api_keys = ["sk_from_file"]
"#;
    let env = [
        ("SWITCHBOARD_HTTP__LISTEN", "0.0.0.0:9090"),
        ("SWITCHBOARD_HTTP__MAX_BODY_BYTES", "2048"),
        (
            "SWITCHBOARD_DATABASE__URL",
            "postgres://postgres@127.0.0.1/test",
        ),
        ("SWITCHBOARD_TENANTS__0__API_KEYS", r#"["sk_from_env_1"]"#),
        ("SWITCHBOARD_LOG__FORMAT", "json"),
        ("UNRELATED", "x"),
        ("SWITCHBOARD_LOG", "debug"),
        ("SWITCHBOARD_CONFIG", "/etc/switchboard.toml"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = config::parse(toml, env).expect("overridden");
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(config.http.max_body_bytes, 2048);
    assert_eq!(config.database.url, "postgres://postgres@127.0.0.1/test");
    assert_eq!(config.tenants[0].api_keys, ["sk_from_env_1"]);
    assert_eq!(config.log.format, config::LogFormat::Json);

    let bad = [
        ("SWITCHBOARD_HTTP__LISTEN", "nowhere"),
        ("SWITCHBOARD_TENANTS__5__ID", "x"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let errors = config::parse(toml, bad).expect_err("bad overrides").0;
    let mut got = keys(&errors);
    got.sort();
    assert_eq!(
        got,
        ["SWITCHBOARD_TENANTS__5__ID", "http.listen"],
        "{errors:#?}"
    );
}

#[test]
fn config_check_command_reports_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[http]\nlisten = 1\n[database]\nurl = \"x\"\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("run switchboard");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(stderr.contains("http.listen:"), "{stderr}");
    assert!(stderr.contains("database.url:"), "{stderr}");

    let good = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "config",
            "check",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/switchboard.example.toml"
            ),
        ])
        .output()
        .expect("run switchboard");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}
