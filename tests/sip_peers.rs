//! The real SIP peers the SIP tests run (sipsak, Kamailio), shared by the SIP crate's
//! tests and the gateway's end-to-end SIP tests (included with `#[path]`). Only std.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where Debian installs Kamailio's modules.
pub const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// A program of a Debian peer, or a clear failure naming the installer.
pub fn program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: run scripts/install-peers");
}

/// A config file in the workspace's tests/peers/sip (found from whichever crate of the
/// workspace runs the test).
pub fn peer_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("tests/peers/sip"))
        .find(|dir| dir.is_dir())
        .expect("tests/peers/sip in the workspace")
        .join(name)
}

/// A request file for `sipsak -f` (LF line ends: sipsak writes CRLF itself).
pub fn request_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace("\r\n", "\n")).expect("write the request");
    path
}

/// A MESSAGE for sipsak to send to `uri` (sipsak adds its own Via on top).
pub fn sipsak_request(uri: &str, call_id: &str, body: &str) -> String {
    format!(
        "MESSAGE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsipsak\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.org>;tag=sipsak1\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 MESSAGE\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Runs sipsak with `args` (plus `-vv`) and returns its exit code (0: a 2xx came) and
/// output. sipsak ends on its own: a final response, or its timer F.
pub fn sipsak(args: &[&str]) -> (i32, String) {
    let output = Command::new(program("sipsak"))
        .args(args)
        .arg("-vv")
        .stdin(Stdio::null())
        .output()
        .expect("sipsak ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// A MESSAGE request with CRLF line ends, from a UDP sender at 127.0.0.1:5999 unless
/// the Via is replaced.
pub fn message(
    uri: &str,
    branch: &str,
    extra_headers: &str,
    content_type: &str,
    body: &str,
) -> String {
    format!(
        "MESSAGE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.org>;tag=a1\r\n\
         To: <{uri}>\r\n\
         Call-ID: {branch}@example.org\r\n\
         CSeq: 1 MESSAGE\r\n\
         {extra_headers}\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `bytes` from a fresh UDP socket and returns the first answer.
pub fn udp_exchange(to: SocketAddr, bytes: &[u8]) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    socket.send_to(bytes, to).expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The status code of a response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A port free for UDP and TCP a moment ago (for peers that cannot be given port 0).
pub fn free_port() -> u16 {
    for _ in 0..32 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A peer process in its own process group, killed (with its children) when dropped;
/// its stderr lines arrive on a channel.
pub struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `program` with `args`.
    pub fn start(program: &Path, args: &[&str]) -> Peer {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no line with {needle:?} within {within:?}; it said:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kamailio with the config `template` from tests/peers/sip (its @PORT@, @ALGORITHM@
/// and @MODULES@ replaced) on a free port, returned once it answers.
pub fn kamailio(dir: &Path, template: &str, algorithm: &str) -> (Peer, SocketAddr) {
    let port = free_port();
    let text = std::fs::read_to_string(peer_config(template))
        .expect("the Kamailio config")
        .replace("@PORT@", &port.to_string())
        .replace("@ALGORITHM@", algorithm)
        .replace("@MODULES@", KAMAILIO_MODULES);
    let cfg = dir.join(format!("{template}.{port}"));
    std::fs::write(&cfg, text).expect("write config");
    let cfg = cfg.to_str().expect("path").to_owned();
    let run = dir.to_str().expect("path").to_owned();
    let peer = Peer::start(
        &program("kamailio"),
        &["-DD", "-E", "-f", &cfg, "-Y", &run, "-w", &run],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_until_answering(addr);
    (peer, addr)
}

/// Sends OPTIONS until any answer comes, within 20 s.
pub fn wait_until_answering(addr: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = socket.local_addr().expect("addr");
    let options = message("sip:probe@127.0.0.1", "z9hG4bKprobe", "", "text/plain", "")
        .replace("MESSAGE sip", "OPTIONS sip")
        .replace("1 MESSAGE", "1 OPTIONS")
        .replace("127.0.0.1:5999", &local.to_string());
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let _ = socket.send_to(options.as_bytes(), addr);
        if socket.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("nothing answered SIP on {addr} within 20 s");
}
