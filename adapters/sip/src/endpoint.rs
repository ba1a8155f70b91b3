//! The SIP endpoint: one UDP socket and one TCP listener on `[sip] listen`, the TCP
//! connections (accepted, and opened for outbound requests), and the routing of what
//! arrives: requests to the server side ([`crate::server`]), responses to the client
//! transaction waiting for them ([`crate::client`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use switchboard_adapter::Core;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::auth::Guards;
use crate::config::SipConfig;
use crate::transaction::ServerTransactions;
use crate::wire::{self, Incoming, WireError};

/// How many received messages are handled at once; beyond it UDP datagrams are dropped
/// (the sender retransmits) and TCP connections wait.
const MAX_HANDLERS: usize = 4096;

/// The largest message framed on a TCP stream: bodies over `max_body_bytes` (up to this)
/// are read and answered `413`; beyond it the connection is closed.
const MAX_STREAM_MESSAGE: usize = 4 * 1024 * 1024;

/// The most inbound TCP connections at once; more are closed at once.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// How long a connection may stay silent before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(300);

/// Where an answer goes.
#[derive(Clone)]
pub enum Reply {
    /// Back to the datagram's source (RFC 3581 style: the address it came from).
    Udp(SocketAddr),
    /// Back on the connection it came on.
    Tcp(mpsc::Sender<Vec<u8>>),
}

impl Reply {
    /// Whether this is a reliable transport (timer J is zero).
    pub fn is_stream(&self) -> bool {
        matches!(self, Reply::Tcp(_))
    }
}

/// The state shared by the adapter (outbound) and the service (inbound).
pub struct Endpoint {
    /// The configuration.
    pub config: SipConfig,
    /// The bound UDP and TCP address.
    pub local: SocketAddr,
    udp_std: Mutex<Option<std::net::UdpSocket>>,
    udp: OnceLock<Arc<UdpSocket>>,
    tcp_std: Mutex<Option<std::net::TcpListener>>,
    /// Server transactions.
    pub server_transactions: Mutex<ServerTransactions>,
    /// Client transactions waiting for responses, by branch.
    pub client_transactions: Mutex<HashMap<String, mpsc::Sender<wire::Response>>>,
    /// Open outbound TCP connections by peer.
    connections: tokio::sync::Mutex<HashMap<SocketAddr, Connection>>,
    /// The core's handles, once the service runs.
    pub core: OnceLock<Core>,
    /// Inbound digest authentication, when configured.
    pub guards: Option<Guards>,
    handlers: Arc<Semaphore>,
    tcp_connections: Arc<Semaphore>,
    udp_loop: OnceLock<()>,
    stop: watch::Sender<bool>,
}

impl Endpoint {
    /// Binds UDP and TCP on `config.listen` (the same port for both; port 0 picks one).
    pub fn bind(config: &SipConfig) -> Result<Endpoint, String> {
        let (udp, tcp) = bind_pair(config.listen)?;
        let local = udp
            .local_addr()
            .map_err(|e| format!("cannot read the SIP address: {e}"))?;
        Ok(Endpoint {
            config: config.clone(),
            local,
            udp_std: Mutex::new(Some(udp)),
            udp: OnceLock::new(),
            tcp_std: Mutex::new(Some(tcp)),
            server_transactions: Mutex::new(ServerTransactions::default()),
            client_transactions: Mutex::new(HashMap::new()),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            core: OnceLock::new(),
            guards: Guards::new(config),
            handlers: Arc::new(Semaphore::new(MAX_HANDLERS)),
            tcp_connections: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
            udp_loop: OnceLock::new(),
            stop: watch::channel(false).0,
        })
    }

    /// `host:port` for our `Via` headers.
    pub fn sent_by(&self) -> String {
        self.local.to_string()
    }

    /// The UDP socket as a tokio socket (converted on first use, inside the runtime).
    pub fn udp(&self) -> std::io::Result<Arc<UdpSocket>> {
        if let Some(socket) = self.udp.get() {
            return Ok(socket.clone());
        }
        let mut slot = self
            .udp_std
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        if let Some(socket) = self.udp.get() {
            return Ok(socket.clone());
        }
        let std = slot
            .take()
            .ok_or_else(|| std::io::Error::other("the UDP socket is gone"))?;
        let socket = Arc::new(UdpSocket::from_std(std)?);
        let _ = self.udp.set(socket.clone());
        Ok(socket)
    }

    /// Starts the UDP receive loop once (from the service, or from the first send, so
    /// responses are read even before the service runs).
    pub fn ensure_udp_loop(self: &Arc<Self>) -> std::io::Result<()> {
        let socket = self.udp()?;
        let mut started = false;
        self.udp_loop.get_or_init(|| started = true);
        if started {
            let endpoint = self.clone();
            tokio::spawn(async move { endpoint.udp_loop(socket).await });
        }
        Ok(())
    }

    /// Stops the loops.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut stop = self.stop.subscribe();
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, peer)) => {
                        let Ok(permit) = self.handlers.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, "sip: too busy, datagram dropped");
                            continue;
                        };
                        let data = buf[..n].to_vec();
                        let endpoint = self.clone();
                        tokio::spawn(async move {
                            endpoint.handle(data, Reply::Udp(peer)).await;
                            drop(permit);
                        });
                    }
                    // ICMP errors of earlier sends surface here on some systems.
                    Err(e) => tracing::debug!(error = %e, "sip: UDP receive error"),
                },
                () = stopped(&mut stop) => break,
            }
        }
    }

    /// Accepts TCP connections until stopped.
    pub async fn tcp_loop(self: Arc<Self>) {
        let listener = {
            let taken = self.tcp_std.lock().ok().and_then(|mut slot| slot.take());
            match taken.map(TcpListener::from_std) {
                Some(Ok(listener)) => listener,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "sip: cannot use the TCP listener");
                    return;
                }
                None => return,
            }
        };
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = self.tcp_connections.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, limit = MAX_TCP_CONNECTIONS, "sip: too many TCP connections, closed");
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        self.start_connection(stream, peer, Some(permit));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sip: TCP accept failed");
                        // Out of file descriptors and the like: give it a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = stopped(&mut stop) => break,
            }
        }
    }

    /// Serves one TCP connection: frames messages by `Content-Length` and handles each;
    /// answers go back through a writer task. Returns the writer.
    fn start_connection(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Connection {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        let (mut read, mut write) = stream.into_split();
        // The writer ends once every sender is gone (answers still being made keep it).
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if let Err(e) = write.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "sip: TCP write failed");
                    break;
                }
            }
        });
        // Set when the reader ends, so the connection is not used for new requests.
        let closed = Arc::new(AtomicBool::new(false));
        let endpoint = self.clone();
        let writer = (tx.clone(), closed.clone());
        tokio::spawn(async move {
            let _closed = SetOnDrop(closed);
            let _permit = permit;
            let mut stop = endpoint.stop.subscribe();
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let read = tokio::select! {
                    r = tokio::time::timeout(TCP_IDLE, read.read(&mut chunk)) => r,
                    () = stopped(&mut stop) => return,
                };
                let n = match read {
                    Ok(Ok(0)) => return,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "sip: TCP read failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "sip: idle TCP connection closed");
                        return;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    // CRLF keep-alives (RFC 5626 section 4.4.1) between messages.
                    let blank = buf
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    buf.drain(..blank);
                    match wire::frame_len(&buf, MAX_STREAM_MESSAGE) {
                        Ok(Some(len)) => {
                            let message: Vec<u8> = buf.drain(..len).collect();
                            let Ok(permit) = endpoint.handlers.clone().acquire_owned().await else {
                                return;
                            };
                            let endpoint = endpoint.clone();
                            let reply = Reply::Tcp(tx.clone());
                            tokio::spawn(async move {
                                endpoint.handle(message, reply).await;
                                drop(permit);
                            });
                        }
                        Ok(None) => break,
                        Err(why) => {
                            // The stream cannot be read past this: answer if we can, close.
                            tracing::warn!(%peer, error = %why, "sip: unreadable TCP stream, closing");
                            if let Err(WireError::Malformed { echo, .. }) = wire::parse(&buf) {
                                let response =
                                    wire::response(&echo, 400, Some(&why), &random_token(), &[]);
                                let _ = tx.send(response).await;
                            }
                            return;
                        }
                    }
                }
            }
        });
        writer
    }

    /// A connection to `peer` for outbound requests: an open one, or a new one.
    pub async fn connection_to(
        self: &Arc<Self>,
        peer: SocketAddr,
    ) -> std::io::Result<mpsc::Sender<Vec<u8>>> {
        let mut connections = self.connections.lock().await;
        if let Some((tx, closed)) = connections.get(&peer)
            && !closed.load(Ordering::Relaxed)
            && !tx.is_closed()
        {
            return Ok(tx.clone());
        }
        let stream = tokio::time::timeout(self.config.t1() * 64, TcpStream::connect(peer))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let _ = stream.set_nodelay(true);
        let connection = self.start_connection(stream, peer, None);
        let tx = connection.0.clone();
        connections.insert(peer, connection);
        Ok(tx)
    }

    /// Sends bytes where `reply` says.
    pub async fn send(&self, reply: &Reply, bytes: Vec<u8>) {
        match reply {
            Reply::Udp(peer) => match self.udp() {
                Ok(socket) => {
                    if let Err(e) = socket.send_to(&bytes, peer).await {
                        tracing::warn!(%peer, error = %e, "sip: UDP send failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "sip: no UDP socket"),
            },
            Reply::Tcp(tx) => {
                if tx.send(bytes).await.is_err() {
                    tracing::debug!("sip: the TCP connection closed before the answer");
                }
            }
        }
    }

    /// Handles one received message.
    pub async fn handle(self: Arc<Self>, data: Vec<u8>, reply: Reply) {
        match wire::parse(&data) {
            Ok(Incoming::Request(request)) => {
                crate::server::handle_request(&self, *request, reply).await;
            }
            Ok(Incoming::Response(response)) => {
                let waiting = response.branch.as_ref().and_then(|branch| {
                    self.client_transactions
                        .lock()
                        .ok()
                        .and_then(|table| table.get(branch).cloned())
                });
                match waiting {
                    Some(tx) => {
                        let _ = tx.try_send(response);
                    }
                    None => tracing::debug!(
                        status = response.status,
                        call_id = %response.call_id,
                        "sip: response for no transaction (late retransmission?)"
                    ),
                }
            }
            Err(WireError::Malformed { echo, reason }) => {
                tracing::warn!(error = %reason, "sip: malformed request, answered 400");
                let response = wire::response(
                    &echo,
                    400,
                    Some(&format!("Bad Request ({})", short(&reason))),
                    &random_token(),
                    &[],
                );
                self.send(&reply, response).await;
            }
            Err(WireError::Unanswerable(why)) => {
                tracing::warn!(error = %why, bytes = data.len(), "sip: unreadable message dropped");
            }
        }
    }
}

/// An open TCP connection: its writer, and whether its reader has ended.
type Connection = (mpsc::Sender<Vec<u8>>, Arc<AtomicBool>);

/// Sets the flag when dropped (however the task holding it ends).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Completes when `stop` says so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The reason text cut to something that fits a status line.
fn short(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect()
}

/// A random token for tags, branches and Call-IDs.
pub fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Binds UDP and TCP on the same port (with port 0, tries a few until both are free).
fn bind_pair(listen: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), String> {
    let attempts = if listen.port() == 0 { 16 } else { 1 };
    let mut last = String::new();
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(listen)
            .map_err(|e| format!("cannot listen on udp://{listen}: {e}"))?;
        let port = udp
            .local_addr()
            .map_err(|e| format!("cannot read the UDP address: {e}"))?
            .port();
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        match std::net::TcpListener::bind(tcp_addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true)
                    .and_then(|()| tcp.set_nonblocking(true))
                    .map_err(|e| format!("cannot set the SIP sockets non-blocking: {e}"))?;
                return Ok((udp, tcp));
            }
            Err(e) => last = format!("cannot listen on tcp://{tcp_addr}: {e}"),
        }
    }
    Err(last)
}
