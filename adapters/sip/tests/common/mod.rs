//! What the SIP crate's tests share: a core that records what it is given, the SIP
//! service started on port 0, and the real peers (sipsak, Kamailio) run as processes
//! that are killed when the test ends.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_adapter::{
    Adapter, BoxFuture, ChangeOutcome, Core, Inbound, Ingest, IngestOutcome, Notice, Notices,
    PresenceSink, PresenceUpdate, Recipient, Reports, Service, Shutdown, StatusReport, Submission,
    Submit, SubmitOutcome,
};
use switchboard_model::{Channel, Message};
use switchboard_sip::SipConfig;
use tokio::sync::{Notify, watch};

#[path = "../../../../tests/sip_peers.rs"]
pub mod peers;
#[allow(unused_imports)]
pub use peers::{Peer, kamailio, message, request_file, sipsak_request, status_of, udp_exchange};

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

/// Runs sipsak off the runtime's worker threads.
pub async fn sipsak(args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peers::sipsak(&args)
    })
    .await
    .expect("sipsak ran")
}
