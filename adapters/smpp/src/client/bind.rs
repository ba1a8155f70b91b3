//! One bind to the SMSC: connect, bind, then requests matched to their responses by
//! sequence_number within a window, enquire_link on a timer, deliver_sm handed to
//! [`super::deliver`] and answered after the core has it, unbind at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter};
use rusmpp::types::COctetString;
use rusmpp::values::InterfaceVersion;
use rusmpp::{Command, CommandStatus, Pdu};
use switchboard_adapter::Core;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tracing::{debug, info, warn};

use super::Connector;
use super::deliver;
use crate::SmppBind;
use crate::codec::{CodecError, PduCodec};

/// A response: its command_status and, for submit_sm_resp, the message_id.
pub type Response = (u32, Option<String>);

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The bind went down before the response.
    Closed,
    /// No response within the response timeout.
    Timeout,
}

/// A bind that is up: requests go through it.
pub struct BindHandle {
    tx: mpsc::Sender<Command>,
    pending: Mutex<HashMap<u32, oneshot::Sender<Response>>>,
    sequence: AtomicU32,
    window: Semaphore,
    paused_until: Mutex<Option<Instant>>,
    closed: AtomicBool,
    response_timeout: Duration,
    /// Whether submit_sm may go through it (not a receiver bind).
    pub can_send: bool,
}

impl BindHandle {
    fn new(tx: mpsc::Sender<Command>, window: u32, timeout: Duration, can_send: bool) -> Self {
        BindHandle {
            tx,
            pending: Mutex::new(HashMap::new()),
            sequence: AtomicU32::new(2),
            window: Semaphore::new(window.max(1) as usize),
            paused_until: Mutex::new(None),
            closed: AtomicBool::new(false),
            response_timeout: timeout,
            can_send,
        }
    }

    /// Whether it has gone down.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn next_sequence(&self) -> u32 {
        (self.sequence.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff).max(1)
    }

    /// Holds further requests until `until` (after ESME_RTHROTTLED).
    pub fn pause(&self, until: Instant) {
        if let Ok(mut p) = self.paused_until.lock() {
            *p = Some(p.map_or(until, |t| t.max(until)));
        }
    }

    /// Sends `pdu` within the window (waiting for a free slot and for a pause to end)
    /// and waits for its response.
    pub async fn request(&self, pdu: Pdu) -> Result<Response, RequestError> {
        let _slot = self
            .window
            .acquire()
            .await
            .map_err(|_| RequestError::Closed)?;
        let paused = self.paused_until.lock().ok().and_then(|p| *p);
        if let Some(until) = paused
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
        if self.is_closed() {
            return Err(RequestError::Closed);
        }
        let sequence = self.next_sequence();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(sequence, tx);
        }
        let command = Command::new(CommandStatus::EsmeRok, sequence, pdu);
        if self.tx.send(command).await.is_err() {
            self.forget(sequence);
            return Err(RequestError::Closed);
        }
        match tokio::time::timeout(self.response_timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(RequestError::Closed),
            Err(_) => {
                self.forget(sequence);
                Err(RequestError::Timeout)
            }
        }
    }

    fn forget(&self, sequence: u32) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&sequence);
        }
    }

    fn answer(&self, sequence: u32, response: Response) {
        let waiter = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&sequence));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(response);
            }
            None => debug!(sequence, "smpp client: a response to nothing we wait for"),
        }
    }

    /// Marks it down: waiting requests end with [`RequestError::Closed`].
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.window.close();
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }

    /// Sends a PDU that expects no response (deliver_sm_resp, enquire_link_resp).
    pub async fn reply(&self, command: Command) {
        let _ = self.tx.send(command).await;
    }

    /// The writer's queue, for answers sent after this bind may be gone.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }
}

/// How a session ended.
pub enum Ended {
    /// It never got bound.
    NotBound(String),
    /// It was bound, then went down.
    Unbound(String),
    /// The gateway is stopping.
    Stopping,
}

/// Connects, binds and serves one bind until it goes down or the gateway stops.
pub async fn session(connector: &Arc<Connector>, slot: usize, core: &Core) -> Ended {
    let config = &connector.config;
    let name = connector.name.as_str();
    let timeout = connector.settings.response_timeout;
    let mut shutdown = core.shutdown.clone();
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(&config.address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Ended::NotBound(format!("connect {}: {e}", config.address)),
        Err(_) => return Ended::NotBound(format!("connect {}: timed out", config.address)),
    };
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let codec = PduCodec::new(config.max_pdu_bytes);
    let mut reader = FramedRead::new(reader, codec);
    let mut writer = writer;

    // Bind.
    let bind = match bind_pdu(connector) {
        Ok(pdu) => pdu,
        Err(e) => return Ended::NotBound(e),
    };
    if let Err(e) = write_one(&mut writer, Command::new(CommandStatus::EsmeRok, 1, bind)).await {
        return Ended::NotBound(format!("bind: {e}"));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let frame = tokio::select! {
            _ = shutdown.stopped() => return Ended::Stopping,
            frame = tokio::time::timeout_at(deadline, reader.next()) => frame,
        };
        match frame {
            Err(_) => return Ended::NotBound("no bind response in time".into()),
            Ok(None) => return Ended::NotBound("the SMSC closed the connection".into()),
            Ok(Some(Err(e))) => return Ended::NotBound(format!("bind response: {e}")),
            Ok(Some(Ok(Err(bad)))) => {
                return Ended::NotBound(format!("bind response: {}", bad.detail));
            }
            Ok(Some(Ok(Ok(command)))) => {
                let status = u32::from(command.status());
                match command.pdu() {
                    Some(
                        Pdu::BindTransmitterResp(_)
                        | Pdu::BindReceiverResp(_)
                        | Pdu::BindTransceiverResp(_),
                    )
                    | Some(Pdu::GenericNack)
                        if command.sequence_number() == 1 =>
                    {
                        if status != 0 {
                            return Ended::NotBound(format!(
                                "bind refused: {} {}",
                                super::submit::status_code(status),
                                super::submit::status_name(status)
                            ));
                        }
                        break;
                    }
                    Some(Pdu::EnquireLink) => {
                        let _ = write_one(
                            &mut writer,
                            Command::new(
                                CommandStatus::EsmeRok,
                                command.sequence_number(),
                                Pdu::EnquireLinkResp,
                            ),
                        )
                        .await;
                    }
                    _ => debug!(
                        connector = name,
                        "smpp client: PDU before the bind response"
                    ),
                }
            }
        }
    }

    let window = config.window;
    let (tx, rx) = mpsc::channel::<Command>(window as usize * 2 + 64);
    let handle = Arc::new(BindHandle::new(
        tx,
        window,
        timeout,
        config.bind != SmppBind::Receiver,
    ));
    let mut writer_task = tokio::spawn(write_loop(writer, rx));
    connector.set_bind(slot, Some(handle.clone()));
    info!(
        connector = name,
        bind = slot,
        address = %config.address,
        "smpp client: bound"
    );

    let mut deliveries: JoinSet<()> = JoinSet::new();
    let delivery_slots = Arc::new(Semaphore::new(window.max(1) as usize * 4));
    let mut enquire = tokio::time::interval_at(
        Instant::now() + connector.settings.enquire_link_interval,
        connector.settings.enquire_link_interval,
    );
    let mut probe: Option<tokio::task::JoinHandle<Result<Response, RequestError>>> = None;
    let mut writer_done = false;
    let ended = loop {
        tokio::select! {
            _ = shutdown.stopped() => {
                // Unbind, and wait a moment for its response.
                let h = handle.clone();
                let _ = tokio::time::timeout(Duration::from_secs(2), async move {
                    h.request(Pdu::Unbind).await
                }).await;
                break Ended::Stopping;
            }
            _ = &mut writer_task, if !writer_done => {
                writer_done = true;
                break Ended::Unbound("the connection failed while writing".into());
            }
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            _ = enquire.tick() => {
                if probe.is_none() {
                    let h = handle.clone();
                    probe = Some(tokio::spawn(async move { h.request(Pdu::EnquireLink).await }));
                }
            }
            result = async {
                match probe.as_mut() {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            }, if probe.is_some() => {
                probe = None;
                if !matches!(result, Ok(Ok(_))) {
                    break Ended::Unbound("no enquire_link_resp in time".into());
                }
            }
            frame = reader.next() => match frame {
                None => break Ended::Unbound("the SMSC closed the connection".into()),
                Some(Err(e @ (CodecError::TooShort(_) | CodecError::TooLong { .. }))) => {
                    warn!(connector = name, bind = slot, error = %e, "smpp client: PDU out of bounds; closing the bind");
                    handle.reply(Command::new(CommandStatus::EsmeRinvcmdlen, 0, Pdu::GenericNack)).await;
                    break Ended::Unbound(e.to_string());
                }
                Some(Err(e)) => break Ended::Unbound(e.to_string()),
                Some(Ok(Err(bad))) => {
                    warn!(connector = name, bind = slot, command_id = bad.command_id, sequence = bad.sequence_number, detail = %bad.detail, "smpp client: PDU does not decode");
                    if bad.command_id & 0x8000_0000 == 0 {
                        handle.reply(Command::new(CommandStatus::EsmeRunknownerr, bad.sequence_number, Pdu::GenericNack)).await;
                    }
                }
                Some(Ok(Ok(command))) => {
                    if let Some(end) = on_command(connector, &handle, core, command, &mut deliveries, &delivery_slots).await {
                        break end;
                    }
                }
            }
        }
    };
    connector.set_bind(slot, None);
    handle.close();
    if let Some(p) = probe {
        p.abort();
    }
    // Deliveries in progress finish (their answers may no longer reach the SMSC, which
    // then sends them again).
    while deliveries.join_next().await.is_some() {}
    drop(handle);
    if !writer_done {
        let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
    }
    ended
}

/// Handles one PDU from the SMSC; `Some` ends the session.
async fn on_command(
    connector: &Arc<Connector>,
    handle: &Arc<BindHandle>,
    core: &Core,
    command: Command,
    deliveries: &mut JoinSet<()>,
    slots: &Arc<Semaphore>,
) -> Option<Ended> {
    let sequence = command.sequence_number();
    let status = u32::from(command.status());
    match command.pdu() {
        Some(Pdu::SubmitSmResp(resp)) => {
            let id = resp.message_id().as_str().to_owned();
            handle.answer(sequence, (status, Some(id)));
        }
        Some(Pdu::DataSmResp(resp)) => {
            let id = resp.message_id().as_str().to_owned();
            handle.answer(sequence, (status, Some(id)));
        }
        Some(Pdu::EnquireLinkResp | Pdu::GenericNack | Pdu::UnbindResp) => {
            handle.answer(sequence, (status, None));
        }
        Some(Pdu::EnquireLink) => {
            handle
                .reply(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::EnquireLinkResp,
                ))
                .await;
        }
        Some(Pdu::Unbind) => {
            handle
                .reply(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::UnbindResp,
                ))
                .await;
            return Some(Ended::Unbound("the SMSC unbound".into()));
        }
        Some(pdu @ (Pdu::DeliverSm(_) | Pdu::DataSm(_))) => {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return None;
            };
            let (connector, core, tx, pdu) = (
                connector.clone(),
                core.clone(),
                handle.sender(),
                pdu.clone(),
            );
            deliveries.spawn(async move {
                let delivery = match &pdu {
                    Pdu::DataSm(pdu) => deliver::Delivery::of_data_sm(pdu),
                    Pdu::DeliverSm(pdu) => deliver::Delivery::of_deliver_sm(pdu),
                    _ => return,
                };
                deliver::deliver(&connector, &core, tx, sequence, delivery).await;
                drop(permit);
            });
        }
        Some(_) if command.id().is_response() => {
            handle.answer(sequence, (status, None));
        }
        _ => {
            debug!(connector = %connector.name, sequence, "smpp client: a PDU we do not take");
            handle
                .reply(Command::new(
                    CommandStatus::EsmeRinvcmdid,
                    sequence,
                    Pdu::GenericNack,
                ))
                .await;
        }
    }
    None
}

fn bind_pdu(connector: &Connector) -> Result<Pdu, String> {
    let config = &connector.config;
    let system_id = COctetString::from_string(config.system_id.clone())
        .map_err(|e| format!("system_id: {e}"))?;
    let password =
        COctetString::from_string(config.password.clone()).map_err(|e| format!("password: {e}"))?;
    let system_type = COctetString::from_string(config.system_type.clone())
        .map_err(|e| format!("system_type: {e}"))?;
    macro_rules! bind {
        ($t:ident, $v:ident) => {
            Pdu::$v(
                $t::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .build(),
            )
        };
    }
    Ok(match config.bind {
        SmppBind::Transmitter => bind!(BindTransmitter, BindTransmitter),
        SmppBind::Receiver => bind!(BindReceiver, BindReceiver),
        SmppBind::Transceiver => bind!(BindTransceiver, BindTransceiver),
    })
}

async fn write_one(writer: &mut OwnedWriteHalf, command: Command) -> Result<(), CodecError> {
    let mut buf = BytesMut::new();
    PduCodec::default().encode(&command, &mut buf)?;
    writer.write_all(&buf).await?;
    Ok(())
}

/// Writes queued PDUs, everything already waiting in one write.
async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Command>) {
    let mut codec = PduCodec::default();
    let mut buf = BytesMut::with_capacity(8192);
    while let Some(command) = rx.recv().await {
        if codec.encode(&command, &mut buf).is_err() {
            continue;
        }
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(command) => {
                    let _ = codec.encode(&command, &mut buf);
                }
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}
