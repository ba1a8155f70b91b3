//! One ESME connection: bind, then submits answered after they are stored, deliver_sm
//! to receivers with their responses matched, enquire_link, unbind; generic_nack for
//! what cannot be read. Generic over the stream so tests drive it in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::Utc;
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, CancelSm, DataSmResp, DeliverSm,
    QuerySm, QuerySmResp, ReplaceSm, SubmitMultiResp, SubmitSmResp,
};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::{InterfaceVersion, MessageState, Npi, Ton, UnsuccessSme};
use rusmpp::{Command, CommandStatus, Pdu};
use switchboard_adapter::{ChangeOutcome, Shutdown, SubmitOutcome};
use switchboard_model::MessageStatus;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::codec::Encoder;
use tracing::{debug, info, warn};

use crate::frame::{self, FrameError};
use crate::reassembly::Added;
use crate::server::Shared;
use crate::server::accounts::{Account, BindDecision, BindKind, QueueSlot};
use crate::server::submit::{self, SubmitKind, SubmitRequest};
use crate::time;

/// Our system_id in bind responses.
const SMSC_SYSTEM_ID: &str = "switchboard";

/// A bind as the delivery loop sees it: it sends deliver_sm and waits for the response.
pub struct BindHandle {
    /// Unique per bind, for removal.
    pub id: u64,
    tx: mpsc::Sender<Command>,
    waiting: Mutex<HashMap<u32, oneshot::Sender<CommandStatus>>>,
    sequence: AtomicU32,
    window: Semaphore,
    closed: AtomicBool,
}

/// Why a deliver_sm got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverError {
    /// The bind went away.
    Closed,
    /// No deliver_sm_resp in time.
    Timeout,
}

impl BindHandle {
    fn new(id: u64, tx: mpsc::Sender<Command>, window: u32) -> BindHandle {
        BindHandle {
            id,
            tx,
            waiting: Mutex::new(HashMap::new()),
            sequence: AtomicU32::new(1),
            window: Semaphore::new(window as usize),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether the bind has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }

    fn next_sequence(&self) -> u32 {
        // Sequence numbers run from 1 to 0x7FFFFFFF and wrap.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        n.max(1)
    }

    /// Sends a deliver_sm within the bind's window and waits for its status.
    pub async fn deliver(
        &self,
        pdu: DeliverSm,
        timeout: Duration,
    ) -> Result<CommandStatus, DeliverError> {
        let _permit = tokio::time::timeout(timeout, self.window.acquire())
            .await
            .map_err(|_| DeliverError::Timeout)?
            .map_err(|_| DeliverError::Closed)?;
        if self.is_closed() {
            return Err(DeliverError::Closed);
        }
        let sequence = self.next_sequence();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(sequence, tx);
        }
        let command = Command::new(CommandStatus::EsmeRok, sequence, Pdu::DeliverSm(pdu));
        if self.tx.send(command).await.is_err() {
            self.forget(sequence);
            return Err(DeliverError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(DeliverError::Closed),
            Err(_) => {
                self.forget(sequence);
                Err(DeliverError::Timeout)
            }
        }
    }

    fn forget(&self, sequence: u32) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(&sequence);
        }
    }

    fn complete(&self, sequence: u32, status: CommandStatus) -> bool {
        let waiter = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&sequence));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(status);
                true
            }
            None => false,
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.window.close();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.clear();
        }
    }
}

/// Where a submit's response goes, held while its message is assembled and stored.
pub struct Reply {
    tx: mpsc::WeakSender<Command>,
    sequence: u32,
    kind: SubmitKind,
    _slot: QueueSlot,
}

/// A part of a concatenated submit waiting for the rest: its request and its reply.
pub struct HeldPart {
    request: SubmitRequest,
    reply: Reply,
}

impl Reply {
    /// Sends the response, if the bind is still there.
    pub async fn answer(self, status: CommandStatus, id: &str, unsuccess: &[UnsuccessSme]) {
        let Some(tx) = self.tx.upgrade() else {
            debug!(
                sequence = self.sequence,
                "bind gone before its submit was answered"
            );
            return;
        };
        let _ = tx
            .send(submit_response(
                self.kind,
                self.sequence,
                status,
                id,
                unsuccess,
            ))
            .await;
    }
}

/// Answers parts that waited too long for the rest of their message.
pub async fn expire_parts(account: &Account, timeout: Duration) {
    let Some(deadline) = Instant::now().checked_sub(timeout) else {
        return;
    };
    let expired = match account.reassembly.lock() {
        Ok(mut r) => r.expire(deadline),
        Err(_) => Vec::new(),
    };
    if !expired.is_empty() {
        warn!(
            system_id = %account.config.system_id,
            parts = expired.len(),
            "smpp server: parts of a concatenated submit never completed; answered ESME_RSUBMITFAIL"
        );
    }
    for held in expired {
        held.reply
            .answer(CommandStatus::EsmeRsubmitfail, "", &[])
            .await;
    }
}

fn c_string<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_string(s.to_owned()).unwrap_or_else(|_| COctetString::empty())
}

fn submit_response(
    kind: SubmitKind,
    sequence: u32,
    status: CommandStatus,
    id: &str,
    unsuccess: &[UnsuccessSme],
) -> Command {
    let id = if status == CommandStatus::EsmeRok {
        c_string(id)
    } else {
        COctetString::empty()
    };
    let pdu = match kind {
        SubmitKind::SubmitSm => Pdu::SubmitSmResp(SubmitSmResp::new(id, Vec::new())),
        SubmitKind::DataSm => Pdu::DataSmResp(DataSmResp::new(id, Vec::new())),
        SubmitKind::SubmitMulti => {
            Pdu::SubmitMultiResp(SubmitMultiResp::new(id, unsuccess.to_vec(), Vec::new()))
        }
    };
    Command::new(status, sequence, pdu)
}

fn generic_nack(status: CommandStatus, sequence: u32) -> Command {
    Command::new(status, sequence, Pdu::GenericNack)
}

/// The message_state for a status (query_sm, receipts).
pub fn message_state(status: MessageStatus) -> MessageState {
    match status {
        MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Sent => {
            MessageState::Enroute
        }
        MessageStatus::Delivered | MessageStatus::Read => MessageState::Delivered,
        MessageStatus::Expired => MessageState::Expired,
        MessageStatus::Canceled => MessageState::Deleted,
        MessageStatus::Undelivered => MessageState::Undeliverable,
        MessageStatus::Failed => MessageState::Rejected,
        MessageStatus::Received => MessageState::Accepted,
    }
}

/// Our bind on a connection once the ESME is bound.
struct Bound {
    account: Arc<Account>,
    kind: BindKind,
    handle: Arc<BindHandle>,
}

/// One connection's state.
struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tx: mpsc::Sender<Command>,
    bound: Option<Bound>,
    /// Submits of this bind being stored now (not parts held for the rest).
    in_flight: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

/// What to do after a PDU.
enum Next {
    Go,
    /// Stop reading: unbind, or a stream that cannot be followed.
    Close,
}

/// Serves one connection until it unbinds, breaks, stays silent too long or the
/// gateway stops. Never panics on what the peer sends.
pub async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let window = shared.settings.max_window.max(1) as usize;
    let (tx, rx) = mpsc::channel::<Command>(window * 2 + 64);
    let writer = tokio::spawn(write_loop(writer, rx));
    let mut session = Session {
        shared: shared.clone(),
        peer,
        tx,
        bound: None,
        in_flight: Arc::new(AtomicUsize::new(0)),
        tasks: JoinSet::new(),
    };
    let max = shared.settings.max_pdu_bytes;
    let inactivity = shared.settings.inactivity;
    let mut buf = BytesMut::with_capacity(4096);
    let mut last_read = Instant::now();
    let mut stopping = false;
    'session: loop {
        loop {
            match frame::next_frame(&mut buf, max) {
                Ok(Some(command)) => {
                    if let Next::Close = session.handle(command).await {
                        break 'session;
                    }
                }
                Ok(None) => break,
                Err(FrameError::Length {
                    length,
                    sequence_number,
                }) => {
                    warn!(%peer, length, max, "smpp server: command_length out of bounds; closing the session");
                    let _ = session
                        .tx
                        .send(generic_nack(
                            CommandStatus::EsmeRinvcmdlen,
                            sequence_number.unwrap_or(0),
                        ))
                        .await;
                    break 'session;
                }
                Err(FrameError::Body {
                    command_id,
                    sequence_number,
                    detail,
                }) => {
                    warn!(%peer, command_id, sequence_number, %detail, "smpp server: PDU does not decode");
                    let status = if command_id & 0x8000_0000 != 0 {
                        // A broken response: nothing to answer.
                        continue;
                    } else {
                        CommandStatus::EsmeRunknownerr
                    };
                    let _ = session.tx.send(generic_nack(status, sequence_number)).await;
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        tokio::select! {
            _ = shutdown.stopped() => {
                stopping = true;
                break 'session;
            }
            Some(_) = session.tasks.join_next(), if !session.tasks.is_empty() => {}
            _ = tokio::time::sleep_until((last_read + inactivity).into()) => {
                info!(%peer, "smpp server: no PDU for the inactivity timeout; closing the session");
                break 'session;
            }
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break 'session,
                Ok(_) => last_read = Instant::now(),
                Err(e) => {
                    debug!(%peer, error = %e, "smpp server: read failed");
                    break 'session;
                }
            },
        }
    }
    // Submits being stored are answered before the connection closes.
    while session.tasks.join_next().await.is_some() {}
    if let Some(bound) = session.bound.take() {
        bound.handle.close();
        bound.account.remove_bind(bound.handle.id);
        info!(
            %peer,
            system_id = %bound.account.config.system_id,
            bind = bound.kind.as_str(),
            "smpp server: unbound"
        );
        if stopping {
            let sequence = bound.handle.next_sequence();
            let _ = session
                .tx
                .send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::Unbind))
                .await;
        }
    }
    drop(session);
    let _ = writer.await;
}

async fn write_loop<W>(writer: W, mut rx: mpsc::Receiver<Command>)
where
    W: AsyncWrite + Send + Unpin,
{
    let mut writer = BufWriter::new(writer);
    let mut codec = rusmpp::tokio_codec::CommandCodec::new().without_max_length();
    let mut buf = BytesMut::with_capacity(8192);
    while let Some(command) = rx.recv().await {
        if codec.encode(&command, &mut buf).is_err() {
            continue;
        }
        // Everything already waiting goes out in the same write.
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(command) => {
                    let _ = codec.encode(&command, &mut buf);
                }
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}

impl Session {
    async fn send(&self, command: Command) {
        let _ = self.tx.send(command).await;
    }

    async fn handle(&mut self, command: Command) -> Next {
        let sequence = command.sequence_number();
        let status = command.status();
        let Some(pdu) = command.pdu() else {
            self.send(generic_nack(CommandStatus::EsmeRinvcmdid, sequence))
                .await;
            return Next::Go;
        };
        match pdu {
            Pdu::BindTransmitter(b) => {
                self.bind(
                    BindKind::Transmitter,
                    b.system_id.as_str(),
                    b.password.as_str(),
                    sequence,
                )
                .await;
            }
            Pdu::BindReceiver(b) => {
                self.bind(
                    BindKind::Receiver,
                    b.system_id.as_str(),
                    b.password.as_str(),
                    sequence,
                )
                .await;
            }
            Pdu::BindTransceiver(b) => {
                self.bind(
                    BindKind::Transceiver,
                    b.system_id.as_str(),
                    b.password.as_str(),
                    sequence,
                )
                .await;
            }
            Pdu::EnquireLink => {
                self.send(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::EnquireLinkResp,
                ))
                .await;
            }
            Pdu::Unbind => {
                self.send(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::UnbindResp,
                ))
                .await;
                return Next::Close;
            }
            Pdu::UnbindResp => return Next::Close,
            Pdu::EnquireLinkResp => {}
            Pdu::GenericNack => {
                debug!(peer = %self.peer, sequence, ?status, "smpp server: generic_nack from the ESME");
                if let Some(bound) = &self.bound {
                    bound.handle.complete(sequence, status);
                }
            }
            Pdu::DeliverSmResp(_) | Pdu::DataSmResp(_) => {
                let known = self
                    .bound
                    .as_ref()
                    .is_some_and(|b| b.handle.complete(sequence, status));
                if !known {
                    debug!(peer = %self.peer, sequence, "smpp server: response to nothing we sent");
                }
            }
            Pdu::SubmitSm(p) => {
                let request = SubmitRequest::from_submit_sm(p);
                self.submit(SubmitKind::SubmitSm, sequence, request).await;
            }
            Pdu::DataSm(p) => {
                let request = SubmitRequest::from_data_sm(p);
                self.submit(SubmitKind::DataSm, sequence, request).await;
            }
            Pdu::SubmitMulti(p) => {
                let request = SubmitRequest::from_submit_multi(p);
                self.submit(SubmitKind::SubmitMulti, sequence, request)
                    .await;
            }
            Pdu::QuerySm(p) => self.query(p.clone(), sequence).await,
            Pdu::CancelSm(p) => self.cancel(p.clone(), sequence).await,
            Pdu::ReplaceSm(p) => self.replace(p.clone(), sequence).await,
            Pdu::Other { command_id, .. } => {
                warn!(peer = %self.peer, ?command_id, "smpp server: unknown command_id");
                self.send(generic_nack(CommandStatus::EsmeRinvcmdid, sequence))
                    .await;
            }
            other => {
                // Responses we did not ask for, outbind, broadcast and the like.
                let id: u32 = other.command_id().into();
                if id & 0x8000_0000 == 0 {
                    warn!(peer = %self.peer, command_id = id, "smpp server: command not supported");
                    self.send(generic_nack(CommandStatus::EsmeRinvcmdid, sequence))
                        .await;
                }
            }
        }
        Next::Go
    }

    async fn bind(&mut self, kind: BindKind, system_id: &str, password: &str, sequence: u32) {
        let respond = |status: CommandStatus| {
            let id = c_string(SMSC_SYSTEM_ID);
            let version = Some(InterfaceVersion::Smpp3_4);
            let pdu = match kind {
                BindKind::Transmitter => {
                    Pdu::BindTransmitterResp(BindTransmitterResp::new(id, version))
                }
                BindKind::Receiver => Pdu::BindReceiverResp(BindReceiverResp::new(id, version)),
                BindKind::Transceiver => {
                    Pdu::BindTransceiverResp(BindTransceiverResp::new(id, version))
                }
            };
            Command::new(status, sequence, pdu)
        };
        if self.bound.is_some() {
            self.send(respond(CommandStatus::EsmeRalybnd)).await;
            return;
        }
        match self
            .shared
            .accounts
            .bind(system_id, password, self.peer.ip())
        {
            BindDecision::Refused(status, why) => {
                warn!(peer = %self.peer, %system_id, bind = kind.as_str(), why, "smpp server: bind refused");
                self.send(respond(status)).await;
            }
            BindDecision::Bound(account) => {
                let id = self.shared.next_bind_id();
                let handle = Arc::new(BindHandle::new(id, self.tx.clone(), account.config.window));
                if kind.receives() {
                    account.add_receiver(handle.clone());
                }
                info!(peer = %self.peer, %system_id, bind = kind.as_str(), "smpp server: bound");
                self.bound = Some(Bound {
                    account,
                    kind,
                    handle,
                });
                self.send(respond(CommandStatus::EsmeRok)).await;
            }
        }
    }

    /// The account when the bind may submit; otherwise answers ESME_RINVBNDSTS.
    fn transmitter(&self) -> Option<Arc<Account>> {
        self.bound
            .as_ref()
            .filter(|b| b.kind.transmits())
            .map(|b| b.account.clone())
    }

    async fn submit(
        &mut self,
        kind: SubmitKind,
        sequence: u32,
        request: Result<SubmitRequest, submit::Refusal>,
    ) {
        let refuse = |status| submit_response(kind, sequence, status, "", &[]);
        let Some(account) = self.transmitter() else {
            self.send(refuse(CommandStatus::EsmeRinvbndsts)).await;
            return;
        };
        let request = match request {
            Ok(request) => request,
            Err(refusal) => {
                warn!(peer = %self.peer, system_id = %account.config.system_id, detail = %refusal.detail, "smpp server: submit refused");
                self.send(refuse(refusal.status)).await;
                return;
            }
        };
        if self.in_flight.load(Ordering::Acquire) >= account.config.window as usize {
            self.send(refuse(CommandStatus::EsmeRthrottled)).await;
            return;
        }
        let Some(slot) = account.enter_queue() else {
            self.send(refuse(CommandStatus::EsmeRmsgqful)).await;
            return;
        };
        let reply = Reply {
            tx: self.tx.downgrade(),
            sequence,
            kind,
            _slot: slot,
        };
        if let Some((key, part)) = request.part.clone() {
            if !account.take_throughput(1) {
                self.send(refuse(CommandStatus::EsmeRthrottled)).await;
                return;
            }
            let payload = request.payload.clone();
            let held = HeldPart { request, reply };
            let added = account
                .reassembly
                .lock()
                .map(|mut r| r.add(key, part, payload, held, Instant::now()))
                .ok();
            let Some(added) = added else {
                self.send(refuse(CommandStatus::EsmeRsyserr)).await;
                return;
            };
            if let Added::Complete(parts, extra) = added {
                let mut payload = Vec::new();
                let mut replies = Vec::with_capacity(parts.len() + extra.len());
                let mut first = None;
                for (bytes, held) in parts {
                    payload.extend_from_slice(&bytes);
                    first.get_or_insert(held.request);
                    replies.push(held.reply);
                }
                replies.extend(extra.into_iter().map(|h| h.reply));
                if let Some(request) = first {
                    self.spawn_store(account, request, payload, replies);
                }
            }
            return;
        }
        let text = match submit::decode_text(request.data_coding, &request.payload) {
            Ok(text) => text,
            Err(refusal) => {
                warn!(peer = %self.peer, detail = %refusal.detail, "smpp server: submit refused");
                reply.answer(refusal.status, "", &[]).await;
                return;
            }
        };
        let segments = switchboard_model::text::segment_count(
            &text,
            switchboard_model::text::choose_encoding(&text),
        )
        .segments;
        if !account.take_throughput(segments) {
            reply.answer(CommandStatus::EsmeRthrottled, "", &[]).await;
            return;
        }
        let payload = request.payload.clone();
        self.spawn_store(account, request, payload, vec![reply]);
    }

    /// Stores the message in the background and answers every reply after the commit.
    fn spawn_store(
        &mut self,
        account: Arc<Account>,
        request: SubmitRequest,
        payload: Vec<u8>,
        replies: Vec<Reply>,
    ) {
        let shared = self.shared.clone();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        let peer = self.peer;
        self.tasks.spawn(async move {
            let (status, id, unsuccess) = store(&shared, &account, &request, &payload, peer).await;
            for reply in replies {
                reply.answer(status, &id, &unsuccess).await;
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn query(&mut self, pdu: QuerySm, sequence: u32) {
        let respond =
            move |status, resp: QuerySmResp| Command::new(status, sequence, Pdu::QuerySmResp(resp));
        let Some(account) = self.transmitter() else {
            self.send(respond(
                CommandStatus::EsmeRinvbndsts,
                QuerySmResp::default(),
            ))
            .await;
            return;
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let id = pdu.message_id.as_str();
            let found = shared.core.submit.query(&account.config.tenant, id).await;
            let command = match found {
                Ok(Some(message)) => {
                    let final_date = if message.status.is_final() {
                        EmptyOrFullCOctetString::from_string(time::format(message.updated_at))
                            .unwrap_or_default()
                    } else {
                        EmptyOrFullCOctetString::empty()
                    };
                    let error_code = message
                        .error
                        .as_ref()
                        .and_then(|e| e.code.parse::<u8>().ok())
                        .unwrap_or(0);
                    respond(
                        CommandStatus::EsmeRok,
                        QuerySmResp::new(
                            pdu.message_id.clone(),
                            final_date,
                            message_state(message.status),
                            error_code,
                        ),
                    )
                }
                Ok(None) => respond(CommandStatus::EsmeRinvmsgid, QuerySmResp::default()),
                Err(e) => {
                    warn!(error = %e, "smpp server: query_sm failed");
                    respond(CommandStatus::EsmeRqueryfail, QuerySmResp::default())
                }
            };
            let _ = tx.send(command).await;
        });
    }

    async fn cancel(&mut self, pdu: CancelSm, sequence: u32) {
        let respond = move |status| Command::new(status, sequence, Pdu::CancelSmResp);
        let Some(account) = self.transmitter() else {
            self.send(respond(CommandStatus::EsmeRinvbndsts)).await;
            return;
        };
        if pdu.message_id.is_empty() {
            // Cancelling every message from a source to a destination is not offered.
            self.send(respond(CommandStatus::EsmeRcancelfail)).await;
            return;
        }
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let outcome = shared
                .core
                .submit
                .cancel(&account.config.tenant, pdu.message_id.as_str())
                .await;
            let status = match outcome {
                Ok(ChangeOutcome::Done) => CommandStatus::EsmeRok,
                Ok(ChangeOutcome::NotFound) => CommandStatus::EsmeRinvmsgid,
                Ok(ChangeOutcome::TooLate) => CommandStatus::EsmeRcancelfail,
                Err(e) => {
                    warn!(error = %e, "smpp server: cancel_sm failed");
                    CommandStatus::EsmeRsyserr
                }
            };
            let _ = tx.send(respond(status)).await;
        });
    }

    async fn replace(&mut self, pdu: ReplaceSm, sequence: u32) {
        let respond = move |status| Command::new(status, sequence, Pdu::ReplaceSmResp);
        let Some(account) = self.transmitter() else {
            self.send(respond(CommandStatus::EsmeRinvbndsts)).await;
            return;
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let tenant = account.config.tenant.as_str();
            let id = pdu.message_id.as_str();
            let status = async {
                let message = match shared.core.submit.query(tenant, id).await {
                    Ok(Some(message)) => message,
                    Ok(None) => return CommandStatus::EsmeRinvmsgid,
                    Err(_) => return CommandStatus::EsmeRsyserr,
                };
                // replace_sm has no data_coding: the text is in the original's coding.
                let data_coding = message
                    .metadata
                    .get("smpp.data_coding")
                    .and_then(|d| d.parse::<u8>().ok())
                    .unwrap_or(0);
                let payload = match pdu.message_payload() {
                    Some(p) if pdu.short_message().is_empty() => p.value.as_ref().to_vec(),
                    _ => pdu.short_message().as_ref().to_vec(),
                };
                let text = match submit::decode_text(data_coding, &payload) {
                    Ok(text) => text,
                    Err(refusal) => return refusal.status,
                };
                match shared.core.submit.replace(tenant, id, text).await {
                    Ok(ChangeOutcome::Done) => CommandStatus::EsmeRok,
                    Ok(ChangeOutcome::NotFound) => CommandStatus::EsmeRinvmsgid,
                    Ok(ChangeOutcome::TooLate) => CommandStatus::EsmeRreplacefail,
                    Err(e) => {
                        warn!(error = %e, "smpp server: replace_sm failed");
                        CommandStatus::EsmeRsyserr
                    }
                }
            }
            .await;
            let _ = tx.send(respond(status)).await;
        });
    }
}

/// Stores one complete message (one per destination for submit_multi) and says what to
/// answer: the status, the message id, and the destinations refused.
async fn store(
    shared: &Shared,
    account: &Account,
    request: &SubmitRequest,
    payload: &[u8],
    peer: SocketAddr,
) -> (CommandStatus, String, Vec<UnsuccessSme>) {
    let system_id = account.config.system_id.as_str();
    let text = match submit::decode_text(request.data_coding, payload) {
        Ok(text) => text,
        Err(refusal) => {
            warn!(%peer, %system_id, detail = %refusal.detail, "smpp server: submit refused");
            return (refusal.status, String::new(), Vec::new());
        }
    };
    let now = Utc::now();
    let mut first_id = None;
    let mut first_error = None;
    let mut unsuccess = Vec::new();
    for (dest, status) in &request.refused {
        unsuccess.push(unsuccess_sme(dest, *status));
        first_error.get_or_insert(*status);
    }
    for dest in &request.destinations {
        let status = match submit::submission(
            request,
            dest,
            text.clone(),
            system_id,
            &account.config.tenant,
            now,
        ) {
            Err(refusal) => {
                warn!(%peer, %system_id, detail = %refusal.detail, "smpp server: submit refused");
                refusal.status
            }
            Ok(submission) => match shared.core.submit.submit(submission).await {
                Ok(SubmitOutcome::Accepted { id }) => {
                    first_id.get_or_insert(id);
                    continue;
                }
                Ok(SubmitOutcome::Refused { code, detail }) => {
                    warn!(%peer, %system_id, %code, %detail, "smpp server: submit refused by the core");
                    submit::refusal_status(&code)
                }
                Err(e) => {
                    warn!(%peer, %system_id, error = %e, "smpp server: submit could not be stored");
                    CommandStatus::EsmeRsyserr
                }
            },
        };
        unsuccess.push(unsuccess_sme(dest, status));
        first_error.get_or_insert(status);
    }
    match (first_id, request.kind) {
        (Some(id), SubmitKind::SubmitMulti) => (CommandStatus::EsmeRok, id, unsuccess),
        (Some(id), _) => (CommandStatus::EsmeRok, id, Vec::new()),
        (None, _) => (
            first_error.unwrap_or(CommandStatus::EsmeRsubmitfail),
            String::new(),
            Vec::new(),
        ),
    }
}

fn unsuccess_sme(dest: &submit::SmeAddr, status: CommandStatus) -> UnsuccessSme {
    UnsuccessSme::new(
        Ton::from(dest.ton),
        Npi::from(dest.npi),
        c_string(&dest.addr),
        status,
    )
}
