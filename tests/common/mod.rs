//! A gateway process for end-to-end tests: started from a binary, spoken to over plain
//! HTTP/1.1, killed with SIGKILL. Each test binary uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The line a gateway prints once its REST API listens.
const LISTENING: &str = "switchboard: REST API listening on http://";

/// A running gateway process.
pub struct Gateway {
    child: Child,
    addr: String,
    key: String,
    listening: Vec<(String, String)>,
}

impl Gateway {
    /// Starts `program` with `args` and `env`, and waits until it listens.
    pub fn start(
        program: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        key: &str,
    ) -> Gateway {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut listening = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("the gateway exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.strip_prefix(LISTENING) {
                break rest.trim().to_owned();
            }
            // "switchboard: <service> listening on <url>", printed before the REST line.
            if let Some((service, url)) = line
                .strip_prefix("switchboard: ")
                .and_then(|rest| rest.split_once(" listening on "))
            {
                listening.push((service.to_owned(), url.trim().to_owned()));
            }
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            addr,
            key: key.to_owned(),
            listening,
        }
    }

    /// The URLs a channel service said it listens on (`udp://127.0.0.1:40001`), in the
    /// order printed, for services whose name starts with `service`.
    pub fn listening(&self, service: &str) -> Vec<String> {
        self.listening
            .iter()
            .filter(|(name, _)| name.starts_with(service))
            .map(|(_, url)| url.clone())
            .collect()
    }

    /// The REST API's address, host:port.
    pub fn http_addr(&self) -> &str {
        &self.addr
    }

    /// One request on a fresh connection: the status and the body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.request_as(&self.key, method, path, body)
    }

    /// One request with another tenant's API key.
    pub fn request_as(&self, key: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            key,
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

    /// SIGKILL: no shutdown, no flush; only what is on disk survives.
    pub fn kill_9(mut self) {
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

/// Where `scripts/install-peers` put the protocol peers: `$SWITCHBOARD_PEERS`, or
/// `~/.cache/switchboard/peers`.
pub fn peers_dir() -> std::path::PathBuf {
    std::env::var_os("SWITCHBOARD_PEERS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/switchboard/peers")
        })
}

/// The root of the repository.
pub fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A peer process (a node or Python script of `tests/peers`) that takes JSON commands on
/// stdin and prints JSON events, one per line, on stdout (a line that is not JSON
/// arrives as a string). Killed when dropped, also when the test panics.
pub struct JsonPeer {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl JsonPeer {
    /// Starts `command` with piped stdin and stdout; `what` names it in panics.
    pub fn spawn(mut command: Command, what: &str) -> JsonPeer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} (run scripts/install-peers): {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::Value::String(line.clone()));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        JsonPeer {
            child,
            stdin,
            events,
        }
    }

    /// Writes one command line.
    pub fn send(&mut self, command: &serde_json::Value) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("write a command to the peer");
        stdin.flush().expect("flush");
    }

    /// The next event, or None when none comes before `deadline`.
    pub fn recv_until(&self, deadline: std::time::Instant) -> Option<serde_json::Value> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.events.recv_timeout(left).ok()
    }
}

impl Drop for JsonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
