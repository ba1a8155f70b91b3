//! The `email` service: the SMTP listener on `[email] listen`. The socket is bound when
//! the channel is built; `run` accepts connections (at most `max_connections` served at
//! once) and serves each with [`crate::session`], over TLS after STARTTLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use switchboard_adapter::{BoxFuture, Core, Service};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::EmailConfig;
use crate::session::{self, Context, End, Session};

/// The SMTP listener.
pub struct SmtpListener {
    config: EmailConfig,
    hostname: String,
    local: SocketAddr,
    socket: Mutex<Option<std::net::TcpListener>>,
    tls: Option<TlsAcceptor>,
}

impl SmtpListener {
    /// Binds `config.listen` and loads the STARTTLS certificate, if configured.
    pub fn bind(config: &EmailConfig) -> Result<SmtpListener, String> {
        let socket = std::net::TcpListener::bind(config.listen)
            .map_err(|e| format!("cannot listen for SMTP on {}: {e}", config.listen))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("cannot set up the SMTP socket: {e}"))?;
        let local = socket
            .local_addr()
            .map_err(|e| format!("cannot read the SMTP address: {e}"))?;
        let tls = match (&config.tls_certificate, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => None,
        };
        Ok(SmtpListener {
            hostname: config.hostname(),
            config: config.clone(),
            local,
            socket: Mutex::new(Some(socket)),
            tls,
        })
    }
}

impl Service for SmtpListener {
    fn name(&self) -> &str {
        "email"
    }

    fn listening(&self) -> Vec<String> {
        vec![format!("smtp://{}", self.local)]
    }

    fn run(self: Arc<Self>, core: Core) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let socket = self.socket.lock().ok().and_then(|mut s| s.take());
            let Some(socket) = socket else {
                tracing::warn!("email: the service was started twice");
                return;
            };
            let listener = match TcpListener::from_std(socket) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "email: cannot use the SMTP socket");
                    return;
                }
            };
            let ctx = Arc::new(Context {
                config: self.config.clone(),
                hostname: self.hostname.clone(),
                starttls: self.tls.is_some(),
                ingest: core.ingest.clone(),
                reports: core.reports.clone(),
                shutdown: core.shutdown.clone(),
            });
            accept_loop(listener, ctx, self.tls.clone(), core).await;
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    tls: Option<TlsAcceptor>,
    core: Core,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut sessions = JoinSet::new();
    let mut shutdown = core.shutdown.clone();
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit,
            () = shutdown.stopped() => break,
        };
        let Ok(permit) = permit else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.stopped() => break,
        };
        // Reap finished sessions so the set does not grow.
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "email: accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        sessions.spawn(async move {
            let _permit = permit;
            let session = Session::new(peer.to_string());
            if let End::StartTls(stream) = session::serve(stream, &ctx, session).await {
                let Some(tls) = tls else {
                    return;
                };
                match tls.accept(stream).await {
                    Ok(stream) => {
                        let mut session = Session::new(peer.to_string());
                        session.tls = true;
                        session.greeted = true;
                        let _ = session::serve(stream, &ctx, session).await;
                    }
                    Err(e) => {
                        tracing::info!(peer = %peer, error = %e, "smtp: TLS handshake failed")
                    }
                }
            }
        });
    }
    // Sessions answer 421 when they see the shutdown; wait for them.
    while sessions.join_next().await.is_some() {}
}
