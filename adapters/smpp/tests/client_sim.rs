//! The SMPP client against our SMSC simulator (`smsc-sim`) with a core kept in memory:
//! receipts matched to the ids the SMSC gave, throttling that pauses the bind and keeps
//! every part, lost responses and garbage that fail only the send concerned, an SMSC
//! that drops the connection, and refused credentials.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use switchboard_adapter::{
    Adapter, BoxFuture, ChangeOutcome, ConnectorState, Core, Inbound, Ingest, IngestOutcome,
    Notice, Notices, PresenceSink, PresenceUpdate, Recipient, Reports, SendOutcome, Service,
    Shutdown, StatusReport, Submission, Submit, SubmitOutcome,
};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_smpp::SmppConnectorConfig;
use switchboard_smpp::client::{Connector, ConnectorService};
use tokio::sync::{Notify, watch};

/// The simulator, killed when dropped.
struct Sim {
    child: Child,
    address: String,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smsc-sim"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smsc-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let address = line
            .trim()
            .strip_prefix("smsc-sim listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Sim { child, address }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A core that keeps what it is given.
#[derive(Default)]
struct Memory {
    reports: Mutex<Vec<StatusReport>>,
    inbound: Mutex<Vec<Inbound>>,
    changed: Notify,
}

struct FakeCore(Arc<Memory>);

impl Reports for FakeCore {
    fn report(&self, report: StatusReport) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0.reports.lock().expect("reports").push(report);
            self.0.changed.notify_waiters();
            Ok(())
        })
    }
}

impl Ingest for FakeCore {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async move {
            self.0.inbound.lock().expect("inbound").push(inbound);
            Ok(IngestOutcome::Received { id: "m1".into() })
        })
    }
    fn accepts(&self, _: Channel, _: &str, _: &str) -> bool {
        true
    }
}

impl Submit for FakeCore {
    fn submit(&self, _: Submission) -> BoxFuture<'_, Result<SubmitOutcome, String>> {
        Box::pin(async { Err("not here".into()) })
    }
    fn query<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, String>> {
        Box::pin(async { Ok(None) })
    }
    fn cancel<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async { Err("not here".into()) })
    }
    fn replace<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: String,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async { Err("not here".into()) })
    }
}

impl Notices for FakeCore {
    fn register<'a>(&'a self, _: &'a Recipient) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn take<'a>(
        &'a self,
        _: &'a Recipient,
        _: usize,
        _: Duration,
        _: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notice>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn done<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn changed(&self) -> Arc<Notify> {
        Arc::new(Notify::new())
    }
}

impl PresenceSink for FakeCore {
    fn update(&self, _: PresenceUpdate) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// A running connector with its service; stopping it is dropping `stop`.
struct Running {
    connector: Arc<Connector>,
    memory: Arc<Memory>,
    stop: watch::Sender<bool>,
    service: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.service).await;
    }
}

fn config(address: &str, extra: &str) -> SmppConnectorConfig {
    toml::from_str(&format!(
        "name = \"sim\"\naddress = \"{address}\"\nsystem_id = \"gw\"\npassword = \"pw\"\n\
         tenant = \"acme\"\nreconnect_min_ms = 50\nreconnect_max_ms = 500\n{extra}"
    ))
    .expect("connector config")
}

fn run(config: SmppConnectorConfig) -> Running {
    let connector = Arc::new(Connector::new(&config));
    let memory = Arc::new(Memory::default());
    let fake = Arc::new(FakeCore(memory.clone()));
    let (stop, shutdown) = watch::channel(false);
    let core = Core {
        ingest: fake.clone(),
        reports: fake.clone(),
        submit: fake.clone(),
        notices: fake.clone(),
        presence: fake,
        shutdown: Shutdown::new(shutdown),
    };
    let service = Arc::new(ConnectorService::new(connector.clone()));
    let service = tokio::spawn(service.run(core));
    Running {
        connector,
        memory,
        stop,
        service,
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn message(to: &str, text: &str) -> Message {
    let mut m = Message::new(
        "acme",
        Direction::Outbound,
        Channel::Sms,
        to,
        text,
        MessageStatus::Sending,
        Utc::now(),
    );
    m.from = Some("+15550100".into());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_match_the_ids_and_throttling_keeps_every_part() {
    let sim = Sim::start(&[
        "--ids",
        "hex",
        "--throttle-every",
        "3",
        "--undeliv-pct",
        "30",
    ]);
    let running = run(config(
        &sim.address,
        "window = 5\nthrottle_pause_ms = 20\npart_retries = 20",
    ));
    let c = running.connector.clone();
    until("bound", || c.state() == ConnectorState::Bound).await;

    let mut expected_ids = Vec::new();
    let mut sends = Vec::new();
    for i in 0..20 {
        let text = if i % 4 == 0 {
            "long ".repeat(70)
        } else {
            format!("short {i}")
        };
        let c = c.clone();
        sends.push(tokio::spawn(async move {
            c.send(&message(&format!("+1415555{i:04}"), &text)).await
        }));
    }
    let mut parts_total = 0;
    for (i, send) in sends.into_iter().enumerate() {
        match send.await.expect("send") {
            SendOutcome::Accepted {
                upstream_id: Some(id),
                status: MessageStatus::Sent,
                parts,
                ..
            } => {
                let want = if i % 4 == 0 { 3 } else { 0 };
                assert_eq!(parts.len(), want, "message {i}: {parts:?}");
                if want > 0 {
                    assert_eq!(parts.first(), Some(&id));
                    expected_ids.extend(parts);
                    parts_total += 3;
                } else {
                    expected_ids.push(id);
                    parts_total += 1;
                }
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    // Every part got a receipt that names an id we were given (hex, compared in the
    // normalised form), with the outcome mix of the simulator.
    let memory = running.memory.clone();
    until("every receipt", || {
        memory.reports.lock().expect("r").len() == parts_total
    })
    .await;
    let reports = memory.reports.lock().expect("r").clone();
    for r in &reports {
        assert!(
            expected_ids.contains(&r.upstream_id),
            "{r:?} not in {expected_ids:?}"
        );
        assert_eq!(r.connector, "sim");
        match r.status {
            MessageStatus::Delivered => assert_eq!(r.error, None),
            MessageStatus::Undelivered => {
                assert_eq!(r.error.as_ref().map(|e| e.0.as_str()), Some("UNDELIV"))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        reports
            .iter()
            .any(|r| r.status == MessageStatus::Undelivered)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_and_garbage_fail_only_their_send() {
    let sim = Sim::start(&[
        "--drop-every",
        "4",
        "--garbage-every",
        "7",
        "--receipts",
        "off",
    ]);
    let running = run(config(&sim.address, "response_timeout_seconds = 1"));
    let c = running.connector.clone();
    until("bound", || c.state() == ConnectorState::Bound).await;
    let mut accepted = 0;
    let mut transient = 0;
    for i in 0..14 {
        match c.send(&message(&format!("+1415556{i:04}"), "x")).await {
            SendOutcome::Accepted { .. } => accepted += 1,
            SendOutcome::Transient { code, .. } => {
                assert_eq!(code, "timeout");
                transient += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // Submits 4, 8, 12 get no response, 7 and 14 get garbage: the rest go through the
    // same bind, which stays up.
    assert_eq!((accepted, transient), (9, 5));
    assert_eq!(c.state(), ConnectorState::Bound);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_bound_again() {
    let sim = Sim::start(&["--disconnect-after", "6", "--receipts", "off"]);
    let running = run(config(&sim.address, ""));
    let c = running.connector.clone();
    until("bound", || c.state() == ConnectorState::Bound).await;
    let mut accepted = 0;
    let mut unbound = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted < 20 {
        assert!(Instant::now() < deadline, "only {accepted} accepted");
        if c.state() != ConnectorState::Bound {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match c.send(&message("+14155550000", "again")).await {
            SendOutcome::Accepted { .. } => accepted += 1,
            SendOutcome::Transient { code, .. } => {
                assert!(code == "unbound" || code == "timeout", "{code}");
                unbound += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // The SMSC dropped the bind every 5 submits; the connector bound again each time.
    assert!(unbound >= 3, "{unbound}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_never_bind_and_sends_wait() {
    let sim = Sim::start(&["--system-id", "other", "--password", "secret"]);
    let running = run(config(&sim.address, ""));
    let c = running.connector.clone();
    // It keeps trying (connecting, between attempts down) and never reports bound.
    until("a bind attempt", || c.state() == ConnectorState::Connecting).await;
    for _ in 0..50 {
        assert_ne!(c.state(), ConnectorState::Bound);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match c.send(&message("+14155550000", "x")).await {
        SendOutcome::Transient { code, .. } => assert_eq!(code, "unbound"),
        other => panic!("{other:?}"),
    }
    running.stop().await;
}
