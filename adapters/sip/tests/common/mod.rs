//! What the SIP crate's tests share: a core that records what it is given, the SIP
//! service started on port 0, and the real peers (sipsak, Kamailio) run as processes
//! that are killed when the test ends.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_adapter::{
    Adapter, BoxFuture, ChangeOutcome, Core, Inbound, Ingest, IngestOutcome, Notice, Notices,
    PresenceSink, PresenceUpdate, Recipient, Reports, Service, Shutdown, StatusReport, Submission,
    Submit, SubmitOutcome,
};
use switchboard_model::{Channel, Message};
use switchboard_sip::SipConfig;
use tokio::sync::{Notify, watch};

/// A core whose ingest records every inbound message. A `to` containing `unknown` is
/// `Unknown`; one containing `broken` fails as a store error would.
#[derive(Default)]
pub struct Recorder {
    pub inbound: Mutex<Vec<Inbound>>,
    pub changed: Notify,
}

impl Recorder {
    pub fn taken(&self) -> Vec<Inbound> {
        self.inbound.lock().expect("lock").clone()
    }
}

impl Ingest for Recorder {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async move {
            if inbound.to.contains("unknown") {
                return Ok(IngestOutcome::Unknown);
            }
            if inbound.to.contains("broken") {
                return Err("database is locked".into());
            }
            let mut taken = self.inbound.lock().expect("lock");
            taken.push(inbound);
            let id = format!("m{}", taken.len());
            drop(taken);
            self.changed.notify_waiters();
            Ok(IngestOutcome::Received { id })
        })
    }

    fn accepts(&self, _channel: Channel, _tenant: &str, to: &str) -> bool {
        !to.contains("unknown")
    }
}

/// The handles the SIP channel does not use.
pub struct Unused;

impl Reports for Unused {
    fn report(&self, _report: StatusReport) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("not used".into()) })
    }
}

impl Submit for Unused {
    fn submit(&self, _s: Submission) -> BoxFuture<'_, Result<SubmitOutcome, String>> {
        Box::pin(async { Err("not used".into()) })
    }
    fn query<'a>(
        &'a self,
        _t: &'a str,
        _i: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, String>> {
        Box::pin(async { Ok(None) })
    }
    fn cancel<'a>(
        &'a self,
        _t: &'a str,
        _i: &'a str,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async { Ok(ChangeOutcome::NotFound) })
    }
    fn replace<'a>(
        &'a self,
        _t: &'a str,
        _i: &'a str,
        _text: String,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async { Ok(ChangeOutcome::NotFound) })
    }
}

impl Notices for Unused {
    fn register<'a>(&'a self, _r: &'a Recipient) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn take<'a>(
        &'a self,
        _r: &'a Recipient,
        _limit: usize,
        _lease: Duration,
        _expiry: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notice>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn done<'a>(&'a self, _ids: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn changed(&self) -> Arc<Notify> {
        Arc::new(Notify::new())
    }
}

impl PresenceSink for Unused {
    fn update(&self, _u: PresenceUpdate) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// A `[sip]` section on 127.0.0.1 port 0 with `extra` TOML lines.
pub fn config(extra: &str) -> SipConfig {
    // A short T1 keeps timeouts short, unless the test sets its own.
    let t1 = if extra.contains("t1_ms") {
        ""
    } else {
        "t1_ms = 100\n"
    };
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndomain = \"gw.example.test\"\ntenant = \"acme\"\n{t1}{extra}"
    );
    let config: SipConfig = toml::from_str(&text).expect("a valid [sip] section");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    config
}

/// The SIP channel running with a recording core; stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub recorder: Arc<Recorder>,
    pub adapter: Arc<dyn Adapter>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Builds the channel for `config` and runs its service.
pub fn start(config: &SipConfig) -> Running {
    let set = switchboard_sip::build(config).expect("build");
    assert_eq!(set.adapters.len(), 1);
    assert_eq!(set.services.len(), 1);
    let service: Arc<dyn Service> = set.services[0].clone();
    let urls = service.listening();
    let udp = urls
        .iter()
        .find_map(|u| u.strip_prefix("udp://"))
        .expect("a udp:// URL");
    assert!(urls.contains(&format!("tcp://{udp}")), "{urls:?}");
    let addr: SocketAddr = udp.parse().expect("address");
    let recorder = Arc::new(Recorder::default());
    let (stop, shutdown) = Shutdown::pair();
    let core = Core {
        ingest: recorder.clone(),
        reports: Arc::new(Unused),
        submit: Arc::new(Unused),
        notices: Arc::new(Unused),
        presence: Arc::new(Unused),
        shutdown,
    };
    let task = tokio::spawn(service.run(core));
    Running {
        addr,
        recorder,
        adapter: set.adapters[0].clone(),
        stop,
        task: Some(task),
    }
}

/// Where the peers are installed (scripts/install-peers).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/switchboard/peers")
        })
}

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

/// A request file for `sipsak -f` (LF line ends: sipsak writes CRLF itself).
pub fn request_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace("\r\n", "\n")).expect("write the request");
    path
}

/// Runs sipsak with `args` (plus `-vv`) and returns its exit code and output.
pub async fn sipsak(args: &[&str]) -> (i32, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program("sipsak"))
            .args(args)
            .arg("-vv")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sipsak finished")
    .expect("sipsak ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
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

/// A MESSAGE request with CRLF line ends.
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

/// The status code of a response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A port that was free a moment ago (for peers that cannot be given port 0).
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
    pub lines: mpsc::Receiver<String>,
}

impl Peer {
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
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?} within {within:?}"),
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
