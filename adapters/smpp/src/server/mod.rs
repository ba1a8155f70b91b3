//! The SMSC server: carriers (ESMEs) bind to us, submit messages that are answered with
//! their API id once stored, and get delivery receipts and inbound messages as deliver_sm
//! on their receiver binds (DESIGN.md section 7).

pub mod accounts;
pub mod deliver;
pub mod session;
pub mod submit;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_adapter::{BoxFuture, Core, Recipient, Service};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::SmppServerConfig;
use crate::server::accounts::Accounts;

/// The server's limits and timers, from `[smpp.server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest command_length taken.
    pub max_pdu_bytes: u32,
    /// Silence after which a bind is closed.
    pub inactivity: Duration,
    /// How long parts wait for the rest of their message.
    pub reassembly_timeout: Duration,
    /// How long a deliver_sm waits for its response.
    pub response_timeout: Duration,
    /// The largest window of any account (sizes a session's write queue).
    pub max_window: u32,
}

/// What every session and delivery loop shares.
pub struct Shared {
    /// The accounts.
    pub accounts: Accounts,
    /// Limits and timers.
    pub settings: Settings,
    /// The core's handles.
    pub core: Core,
    next_bind: AtomicU64,
}

impl Shared {
    /// State for the server's sessions.
    pub fn new(accounts: Accounts, settings: Settings, core: Core) -> Shared {
        Shared {
            accounts,
            settings,
            core,
            next_bind: AtomicU64::new(1),
        }
    }

    /// A new bind's id.
    pub fn next_bind_id(&self) -> u64 {
        self.next_bind.fetch_add(1, Ordering::Relaxed)
    }
}

/// The `smpp-server` service: its listener is bound when it is built.
pub struct SmppServer {
    config: SmppServerConfig,
    listener: Mutex<Option<std::net::TcpListener>>,
    local: SocketAddr,
}

impl SmppServer {
    /// Binds the listener (so a port taken is an error at start).
    pub fn bind(config: &SmppServerConfig) -> Result<SmppServer, String> {
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| format!("smpp.server.listen {}: {e}", config.listen))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("smpp.server.listen {}: {e}", config.listen))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("smpp.server.listen {}: {e}", config.listen))?;
        Ok(SmppServer {
            config: config.clone(),
            listener: Mutex::new(Some(listener)),
            local,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn settings(&self) -> Settings {
        Settings {
            max_pdu_bytes: self.config.max_pdu_bytes,
            inactivity: Duration::from_secs(self.config.inactivity_timeout_seconds),
            reassembly_timeout: Duration::from_secs(self.config.reassembly_timeout_seconds),
            response_timeout: Duration::from_secs(self.config.response_timeout_seconds),
            max_window: self
                .config
                .accounts
                .iter()
                .map(|a| a.window)
                .max()
                .unwrap_or(1),
        }
    }
}

impl Service for SmppServer {
    fn name(&self) -> &str {
        "smpp-server"
    }

    fn listening(&self) -> Vec<String> {
        vec![format!("smpp://{}", self.local)]
    }

    fn notice_recipients(&self) -> Vec<Recipient> {
        self.config
            .accounts
            .iter()
            .map(accounts::recipient)
            .collect()
    }

    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let listener = self.listener.lock().ok().and_then(|mut l| l.take());
            let Some(listener) = listener else {
                warn!("smpp server: already running");
                return;
            };
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    warn!(error = %e, "smpp server: cannot use the listener");
                    return;
                }
            };
            let mut shutdown = core.shutdown.clone();
            let shared = Arc::new(Shared::new(
                Accounts::new(&self.config.accounts),
                self.settings(),
                core,
            ));
            let mut tasks = JoinSet::new();
            for account in shared.accounts.all() {
                tasks.spawn(deliver::run(
                    shared.clone(),
                    account.clone(),
                    shared.core.shutdown.clone(),
                ));
                let (account, timeout) = (account.clone(), shared.settings.reassembly_timeout);
                let mut stop = shared.core.shutdown.clone();
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            _ = stop.stopped() => break,
                            _ = tick.tick() => session::expire_parts(&account, timeout).await,
                        }
                    }
                    let held = account
                        .reassembly
                        .lock()
                        .map(|mut r| r.drain())
                        .unwrap_or_default();
                    drop(held);
                });
            }
            info!(listen = %self.local, accounts = self.config.accounts.len(), "smpp server: accepting binds");
            loop {
                tokio::select! {
                    _ = shutdown.stopped() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tasks.spawn(session::serve(
                                stream,
                                peer,
                                shared.clone(),
                                shared.core.shutdown.clone(),
                            ));
                        }
                        Err(e) => {
                            warn!(error = %e, "smpp server: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            drop(listener);
            while tasks.join_next().await.is_some() {}
            info!("smpp server: stopped");
        })
    }
}
