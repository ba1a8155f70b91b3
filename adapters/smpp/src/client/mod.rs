//! The ESME client: one connector per `[[smpp.connectors]]`, keeping its binds to an
//! upstream SMSC (reconnecting with exponential backoff and jitter), sending messages as
//! submit_sm within each bind's window and throughput, and turning deliver_sm into
//! status reports and inbound messages (DESIGN.md section 7).

pub mod bind;
pub mod deliver;
pub mod submit;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusmpp::Pdu;
use switchboard_adapter::{Adapter, BoxFuture, ConnectorState, Core, SendOutcome, Service};
use switchboard_model::{Channel, Message, MessageStatus};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::SmppConnectorConfig;
use crate::client::bind::{BindHandle, Ended, RequestError};
use crate::client::deliver::Held;
use crate::concat::TextOptions;
use crate::reassembly::Reassembly;
use crate::receipt::{self, IdSource};

/// Timers and policies of a connector, from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Response timeout of every request.
    pub response_timeout: Duration,
    /// Between enquire_link PDUs.
    pub enquire_link_interval: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// command_status values retried on the same bind.
    pub retry_statuses: Vec<u32>,
    /// First pause after one of them.
    pub throttle_pause: Duration,
    /// How parts wait for the rest of their message.
    pub reassembly_timeout: Duration,
    /// How text is written.
    pub text: TextOptions,
}

impl Settings {
    fn of(config: &SmppConnectorConfig) -> Settings {
        Settings {
            response_timeout: Duration::from_secs(config.response_timeout_seconds.max(1)),
            enquire_link_interval: Duration::from_secs(config.enquire_link_interval_seconds.max(1)),
            reconnect_min: Duration::from_millis(config.reconnect_min_ms.max(1)),
            reconnect_max: Duration::from_millis(
                config.reconnect_max_ms.max(config.reconnect_min_ms).max(1),
            ),
            retry_statuses: config.retry_status_values(),
            throttle_pause: Duration::from_millis(config.throttle_pause_ms.max(1)),
            reassembly_timeout: Duration::from_secs(config.reassembly_timeout_seconds.max(1)),
            text: TextOptions {
                coding: config.coding,
                gsm_packed: config.gsm_packed,
                long_messages: config.long_messages,
                wide_reference: config.udh_reference_bits == 16,
            },
        }
    }
}

/// One upstream SMSC connector: the adapter the dispatcher sends through.
pub struct Connector {
    /// Its name (routes name it).
    pub name: String,
    /// Its configuration.
    pub config: SmppConnectorConfig,
    /// Its timers and policies.
    pub settings: Settings,
    binds: Vec<Mutex<Option<Arc<BindHandle>>>>,
    connecting: AtomicUsize,
    next: AtomicUsize,
    reference: AtomicU16,
    pacer: Option<Mutex<Instant>>,
    /// Parts of inbound messages waiting for the rest.
    pub reassembly: Mutex<Reassembly<Held>>,
}

impl Connector {
    /// A connector for `config` (nothing connects until its service runs).
    pub fn new(config: &SmppConnectorConfig) -> Connector {
        Connector {
            name: config.name.clone(),
            settings: Settings::of(config),
            binds: (0..config.binds.max(1)).map(|_| Mutex::new(None)).collect(),
            connecting: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            reference: AtomicU16::new(seed() as u16),
            pacer: (config.throughput > 0).then(|| Mutex::new(Instant::now())),
            reassembly: Mutex::new(Reassembly::default()),
            config: config.clone(),
        }
    }

    fn set_bind(&self, slot: usize, handle: Option<Arc<BindHandle>>) {
        if let Some(Ok(mut s)) = self.binds.get(slot).map(Mutex::lock) {
            *s = handle;
        }
    }

    /// A bind that is up and may send, taken in turn.
    fn pick(&self) -> Option<Arc<BindHandle>> {
        let n = self.binds.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let slot = self.binds.get((start + i) % n)?;
            let handle = slot.lock().ok()?.clone()?;
            (handle.can_send && !handle.is_closed()).then_some(handle)
        })
    }

    /// Waits for this part's turn under the connector's throughput.
    async fn pace(&self) {
        let Some(pacer) = &self.pacer else { return };
        let step = Duration::from_secs_f64(1.0 / f64::from(self.config.throughput.max(1)));
        let at = match pacer.lock() {
            Ok(mut next) => {
                let now = Instant::now();
                let at = (*next).max(now);
                *next = at + step;
                at
            }
            Err(_) => return,
        };
        tokio::time::sleep_until(at).await;
    }

    async fn send_message(&self, message: &Message) -> SendOutcome {
        if self.config.bind == crate::SmppBind::Receiver {
            return SendOutcome::Permanent {
                code: "bind_receiver".into(),
                detail: format!("connector {} only receives", self.name),
            };
        }
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let (_, parts) = match crate::concat::parts(&message.text, &self.settings.text, reference) {
            Ok(parts) => parts,
            Err(e) => {
                return SendOutcome::Permanent {
                    code: "encoding".into(),
                    detail: e.to_string(),
                };
            }
        };
        let from = message
            .from
            .as_deref()
            .or(self.config.default_source.as_deref())
            .unwrap_or("");
        let validity = submit::validity_period(
            self.config.validity_period,
            message.expires_at,
            chrono::Utc::now(),
        );
        let mut pdus = Vec::with_capacity(parts.len());
        for part in &parts {
            match submit::submit_sm(&self.config, from, &message.to, part, &validity) {
                Ok(pdu) => pdus.push(pdu),
                Err(detail) => {
                    return SendOutcome::Permanent {
                        code: "invalid_address".into(),
                        detail,
                    };
                }
            }
        }
        let Some(bind) = self.pick() else {
            return not_bound(&self.name);
        };
        // Every part over the same bind, one after the other, so a pause never
        // reorders them.
        let mut ids = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            let mut tries = 0u32;
            loop {
                self.pace().await;
                let response = bind.request(Pdu::SubmitSm(pdu.clone())).await;
                match response {
                    Ok((0, id)) => {
                        let id = id.unwrap_or_default();
                        ids.push(receipt::normalise_id(
                            &id,
                            self.config.receipt_id_format,
                            IdSource::SubmitResp,
                        ));
                        break;
                    }
                    Ok((status, _)) if self.settings.retry_statuses.contains(&status) => {
                        let pause = self
                            .settings
                            .throttle_pause
                            .saturating_mul(1 << tries.min(6))
                            .min(Duration::from_secs(10));
                        tries += 1;
                        debug!(connector = %self.name, message = %message.id, status = %submit::status_name(status), ?pause, tries, "smpp client: part refused for now; pausing the bind");
                        if tries > self.config.part_retries {
                            return SendOutcome::Transient {
                                code: submit::status_code(status),
                                detail: submit::status_name(status),
                                retry_after: Some(pause),
                            };
                        }
                        bind.pause(Instant::now() + pause);
                    }
                    Ok((status, _)) => {
                        return SendOutcome::Permanent {
                            code: submit::status_code(status),
                            detail: submit::status_name(status),
                        };
                    }
                    Err(RequestError::Closed) => {
                        return SendOutcome::Transient {
                            code: "unbound".into(),
                            detail: "the bind went down before the submit_sm_resp".into(),
                            retry_after: None,
                        };
                    }
                    Err(RequestError::Timeout) => {
                        return SendOutcome::Transient {
                            code: "timeout".into(),
                            detail: "no submit_sm_resp within the response timeout".into(),
                            retry_after: None,
                        };
                    }
                }
            }
        }
        let upstream_id = ids.first().cloned();
        SendOutcome::Accepted {
            upstream_id,
            status: MessageStatus::Sent,
            metadata: Vec::new(),
            parts: if ids.len() > 1 { ids } else { Vec::new() },
        }
    }
}

fn not_bound(name: &str) -> SendOutcome {
    SendOutcome::Transient {
        code: "unbound".into(),
        detail: format!("connector {name} has no bind up"),
        retry_after: None,
    }
}

/// A little entropy for jitter and the first concatenation reference.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) ^ (std::process::id() as u64).rotate_left(17)
}

/// `d` with ±20% jitter.
fn jitter(d: Duration) -> Duration {
    let r = (seed() % 4001) as f64 / 10_000.0 - 0.2;
    d.mul_f64(1.0 + r)
}

impl Adapter for Connector {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn state(&self) -> ConnectorState {
        let up = self.binds.iter().any(|slot| {
            slot.lock()
                .ok()
                .is_some_and(|h| h.as_ref().is_some_and(|h| !h.is_closed()))
        });
        if up {
            ConnectorState::Bound
        } else if self.connecting.load(Ordering::Relaxed) > 0 {
            ConnectorState::Connecting
        } else {
            ConnectorState::Down
        }
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_message(message))
    }

    fn concurrency(&self) -> usize {
        (self.config.window.max(1) as usize) * self.binds.len()
    }
}

/// The service that keeps a connector's binds up.
pub struct ConnectorService {
    name: String,
    connector: Arc<Connector>,
}

impl ConnectorService {
    /// The service of `connector`.
    pub fn new(connector: Arc<Connector>) -> ConnectorService {
        ConnectorService {
            name: format!("smpp-connector {}", connector.name),
            connector,
        }
    }
}

impl Service for ConnectorService {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tasks = JoinSet::new();
            for slot in 0..self.connector.binds.len() {
                tasks.spawn(keep_bound(self.connector.clone(), slot, core.clone()));
            }
            let connector = self.connector.clone();
            let mut shutdown = core.shutdown.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = shutdown.stopped() => break,
                        _ = tick.tick() => deliver::expire(&connector).await,
                    }
                }
                let held = match connector.reassembly.lock() {
                    Ok(mut r) => r.drain(),
                    Err(_) => Vec::new(),
                };
                for h in held {
                    h.answer(deliver::ESME_RX_T_APPN).await;
                }
            });
            while tasks.join_next().await.is_some() {}
        })
    }
}

/// Keeps bind `slot` up until the gateway stops.
async fn keep_bound(connector: Arc<Connector>, slot: usize, core: Core) {
    let mut shutdown = core.shutdown.clone();
    let mut delay = connector.settings.reconnect_min;
    loop {
        if shutdown.is_stopping() {
            return;
        }
        connector.connecting.fetch_add(1, Ordering::Relaxed);
        let ended = bind::session(&connector, slot, &core).await;
        connector.connecting.fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Stopping => {
                info!(connector = %connector.name, bind = slot, "smpp client: unbound at shutdown");
                return;
            }
            Ended::Unbound(why) => {
                warn!(connector = %connector.name, bind = slot, %why, "smpp client: bind down; reconnecting");
                delay = connector.settings.reconnect_min;
            }
            Ended::NotBound(why) => {
                warn!(connector = %connector.name, bind = slot, %why, retry_in = ?delay, "smpp client: cannot bind");
            }
        }
        let wait = jitter(delay);
        delay = (delay * 2).min(connector.settings.reconnect_max);
        tokio::select! {
            _ = shutdown.stopped() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The adapters and services of every `[[smpp.connectors]]` entry.
pub fn build(connectors: &[SmppConnectorConfig]) -> switchboard_adapter::ChannelSet {
    let mut set = switchboard_adapter::ChannelSet::default();
    for config in connectors {
        let connector = Arc::new(Connector::new(config));
        set.adapters.push(connector.clone());
        set.services
            .push(Arc::new(ConnectorService::new(connector)));
    }
    set
}
