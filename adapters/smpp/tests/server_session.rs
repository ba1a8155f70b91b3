//! The SMPP server over TCP against a core kept in memory: binds and bind states,
//! submits of every kind answered only after the core took them, concatenation by SAR
//! TLVs, the window, throughput and queue limits, query/cancel/replace, garbage and
//! oversized PDUs, and notices delivered as deliver_sm with retries until answered.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::Utc;
use rusmpp::pdus::{
    BindTransceiver, BindTransmitter, CancelSm, DataSm, DeliverSmResp, QuerySm, ReplaceSm,
    SubmitMulti, SubmitSm,
};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DestAddress, MessagePayload, Npi, SmeAddress, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use switchboard_adapter::{
    BoxFuture, ChangeOutcome, Core, Inbound, Ingest, IngestOutcome, Notice, NoticeKind, Notices,
    PresenceSink, PresenceUpdate, Recipient, Reports, Service, Shutdown, StatusReport, Submission,
    Submit, SubmitOutcome,
};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_smpp::frame::next_frame;
use switchboard_smpp::server::SmppServer;
use switchboard_smpp::{SmppAccountConfig, SmppServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::codec::Encoder;

// ---------------------------------------------------------------------------------------
// A core in memory
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Memory {
    submitted: Mutex<Vec<(String, Submission)>>,
    messages: Mutex<HashMap<String, Message>>,
    notices: Mutex<Vec<(Notice, Option<Instant>, bool)>>,
    changed: Arc<Notify>,
    /// When set, submits wait for a permit (to hold them "being stored").
    gate: Mutex<Option<Arc<Semaphore>>>,
}

struct FakeCore(Arc<Memory>);

impl Submit for FakeCore {
    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<SubmitOutcome, String>> {
        Box::pin(async move {
            let gate = self.0.gate.lock().expect("gate").clone();
            if let Some(gate) = gate {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            }
            if submission.to.contains("999") {
                return Ok(SubmitOutcome::Refused {
                    code: "invalid_address".into(),
                    detail: "no".into(),
                });
            }
            let mut submitted = self.0.submitted.lock().expect("lock");
            let id = format!("msg-{}", submitted.len() + 1);
            let mut message = Message::new(
                submission.tenant.clone(),
                Direction::Outbound,
                Channel::Sms,
                submission.to.clone(),
                submission.text.clone(),
                MessageStatus::Queued,
                Utc::now(),
            );
            message.metadata = submission.metadata.clone();
            message.from = submission.from.clone();
            self.0
                .messages
                .lock()
                .expect("lock")
                .insert(id.clone(), message);
            submitted.push((id.clone(), submission));
            Ok(SubmitOutcome::Accepted { id })
        })
    }

    fn query<'a>(
        &'a self,
        _t: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, String>> {
        Box::pin(async move { Ok(self.0.messages.lock().expect("lock").get(id).cloned()) })
    }

    fn cancel<'a>(
        &'a self,
        _t: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async move {
            let mut messages = self.0.messages.lock().expect("lock");
            Ok(match messages.get_mut(id) {
                None => ChangeOutcome::NotFound,
                Some(m) if m.status != MessageStatus::Queued => ChangeOutcome::TooLate,
                Some(m) => {
                    m.status = MessageStatus::Canceled;
                    ChangeOutcome::Done
                }
            })
        })
    }

    fn replace<'a>(
        &'a self,
        _t: &'a str,
        id: &'a str,
        text: String,
    ) -> BoxFuture<'a, Result<ChangeOutcome, String>> {
        Box::pin(async move {
            let mut messages = self.0.messages.lock().expect("lock");
            Ok(match messages.get_mut(id) {
                None => ChangeOutcome::NotFound,
                Some(m) if m.status != MessageStatus::Queued => ChangeOutcome::TooLate,
                Some(m) => {
                    m.text = text;
                    ChangeOutcome::Done
                }
            })
        })
    }
}

impl Notices for FakeCore {
    fn register<'a>(&'a self, _r: &'a Recipient) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn take<'a>(
        &'a self,
        _r: &'a Recipient,
        limit: usize,
        lease: Duration,
        _expiry: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notice>, String>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut notices = self.0.notices.lock().expect("lock");
            Ok(notices
                .iter_mut()
                .filter(|(_, until, done)| !*done && until.is_none_or(|u| u <= now))
                .take(limit)
                .map(|(notice, until, _)| {
                    *until = Some(now + lease);
                    notice.clone()
                })
                .collect())
        })
    }

    fn done<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            for (notice, _, done) in self.0.notices.lock().expect("lock").iter_mut() {
                if ids.contains(&notice.id) {
                    *done = true;
                }
            }
            Ok(())
        })
    }

    fn changed(&self) -> Arc<Notify> {
        self.0.changed.clone()
    }
}

impl Ingest for FakeCore {
    fn receive(&self, _i: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async { Err("not used".into()) })
    }
    fn accepts(&self, _c: Channel, _t: &str, _to: &str) -> bool {
        false
    }
}

impl Reports for FakeCore {
    fn report(&self, _r: StatusReport) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

impl PresenceSink for FakeCore {
    fn update(&self, _u: PresenceUpdate) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// A server on port 0 with one account, stopped when dropped.
struct Server {
    addr: String,
    memory: Arc<Memory>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn account(system_id: &str) -> SmppAccountConfig {
    SmppAccountConfig {
        system_id: system_id.into(),
        password: "s3cret".into(),
        tenant: "acme".into(),
        allowed_ips: Vec::new(),
        max_binds: 4,
        window: 10,
        throughput: 0,
        queue_limit: 100,
        receipt_expiry_seconds: 3600,
    }
}

fn start(accounts: Vec<SmppAccountConfig>, tweak: impl FnOnce(&mut SmppServerConfig)) -> Server {
    let mut config = SmppServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        accounts,
        max_pdu_bytes: 4096,
        inactivity_timeout_seconds: 60,
        reassembly_timeout_seconds: 60,
        response_timeout_seconds: 1,
    };
    tweak(&mut config);
    let server = Arc::new(SmppServer::bind(&config).expect("bind"));
    let addr = server.local_addr().to_string();
    assert_eq!(server.listening(), vec![format!("smpp://{addr}")]);
    let memory = Arc::new(Memory::default());
    let fake = Arc::new(FakeCore(memory.clone()));
    let (stop, shutdown) = Shutdown::pair();
    let core = Core {
        ingest: fake.clone(),
        reports: fake.clone(),
        submit: fake.clone(),
        notices: fake.clone(),
        presence: fake,
        shutdown,
    };
    let task = tokio::spawn(server.run(core));
    Server {
        addr,
        memory,
        stop,
        task: Some(task),
    }
}

// ---------------------------------------------------------------------------------------
// An ESME over TCP, speaking through rusmpp
// ---------------------------------------------------------------------------------------

struct Esme {
    stream: TcpStream,
    buf: BytesMut,
    sequence: u32,
}

impl Esme {
    async fn connect(addr: &str) -> Esme {
        Esme {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            sequence: 0,
        }
    }

    async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        self.sequence += 1;
        let command = Command::new(CommandStatus::EsmeRok, self.sequence, pdu);
        self.send_command(command).await;
        self.sequence
    }

    async fn send_command(&mut self, command: Command) {
        let mut out = BytesMut::new();
        rusmpp::tokio_codec::CommandCodec::new()
            .encode(command, &mut out)
            .expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next PDU, or None when the server closed the connection.
    async fn next(&mut self) -> Option<Command> {
        let read = async {
            loop {
                if let Some(command) = next_frame(&mut self.buf, 1 << 20).expect("a PDU") {
                    return Some(command);
                }
                if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server answers within 10 s")
    }

    /// The response to `sequence` (deliver_sm in between are answered OK).
    async fn response(&mut self, sequence: u32) -> Command {
        loop {
            let command = self.next().await.expect("a response");
            if let Some(Pdu::DeliverSm(_)) = command.pdu() {
                let resp = DeliverSmResp::new(COctetString::empty(), Vec::new());
                self.send_command(Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    resp,
                ))
                .await;
                continue;
            }
            if command.sequence_number() == sequence {
                return command;
            }
        }
    }

    async fn bind(&mut self, system_id: &str, password: &str) -> CommandStatus {
        let sequence = self
            .send(
                BindTransceiver::builder()
                    .system_id(c(system_id))
                    .password(c(password))
                    .build(),
            )
            .await;
        self.response(sequence).await.status()
    }
}

fn c<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_string(s.to_owned()).expect("a C string")
}

fn submit_sm(dest: &str, short_message: &[u8]) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(c("15550100"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c(dest))
        .short_message(OctetString::from_vec(short_message.to_vec()).expect("short"))
        .build()
}

fn message_id(command: &Command) -> String {
    match command.pdu() {
        Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
        Some(Pdu::DataSmResp(r)) => r.message_id().as_str().to_owned(),
        Some(Pdu::SubmitMultiResp(r)) => r.message_id.as_str().to_owned(),
        other => panic!("not a submit response: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn binds_are_checked_and_bind_states_enforced() {
    let server = start(vec![account("carrier1")], |_| {});
    let mut esme = Esme::connect(&server.addr).await;
    // Before a bind: submit_sm gets ESME_RINVBNDSTS; enquire_link is answered.
    let seq = esme.send(submit_sm("14155550100", b"early")).await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRinvbndsts
    );
    let seq = esme.send(Pdu::EnquireLink).await;
    assert_eq!(
        esme.response(seq).await.id(),
        rusmpp::CommandId::EnquireLinkResp
    );
    assert_eq!(
        esme.bind("carrier1", "nope").await,
        CommandStatus::EsmeRinvpaswd
    );
    assert_eq!(
        esme.bind("nobody", "s3cret").await,
        CommandStatus::EsmeRinvsysid
    );
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRalybnd
    );
    let seq = esme.send(Pdu::Unbind).await;
    assert_eq!(esme.response(seq).await.id(), rusmpp::CommandId::UnbindResp);
    assert!(esme.next().await.is_none(), "closed after unbind");

    // A transmitter bind cannot be a receiver of deliver_sm, but can submit.
    let mut tx = Esme::connect(&server.addr).await;
    let seq = tx
        .send(
            BindTransmitter::builder()
                .system_id(c("carrier1"))
                .password(c("s3cret"))
                .build(),
        )
        .await;
    assert_eq!(tx.response(seq).await.status(), CommandStatus::EsmeRok);
    let seq = tx.send(submit_sm("14155550100", b"hi")).await;
    assert_eq!(tx.response(seq).await.status(), CommandStatus::EsmeRok);
}

#[tokio::test]
async fn allowed_ips_and_max_binds() {
    let mut restricted = account("locked");
    restricted.allowed_ips = vec!["10.1.2.3".parse().expect("ip")];
    let mut single = account("single");
    single.max_binds = 1;
    let server = start(vec![restricted, single], |_| {});
    let mut a = Esme::connect(&server.addr).await;
    assert_eq!(
        a.bind("locked", "s3cret").await,
        CommandStatus::EsmeRbindfail
    );
    assert_eq!(a.bind("single", "s3cret").await, CommandStatus::EsmeRok);
    let mut b = Esme::connect(&server.addr).await;
    assert_eq!(
        b.bind("single", "s3cret").await,
        CommandStatus::EsmeRbindfail
    );
    drop(a);
    // Once the first bind is gone, the account may bind again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Esme::connect(&server.addr).await;
        if c.bind("single", "s3cret").await == CommandStatus::EsmeRok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed bind was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn submits_carry_text_addresses_and_metadata() {
    let server = start(vec![account("carrier1")], |_| {});
    let mut esme = Esme::connect(&server.addr).await;
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );

    // GSM 7-bit unpacked with an extension character, a receipt asked for, scheduled.
    let mut pdu = submit_sm("4915112345678", &[0x48, 0x69, 0x20, 0x1b, 0x65]);
    pdu.registered_delivery = 1.into();
    pdu.schedule_delivery_time = "000000010000000R".parse().expect("time");
    let seq = esme.send(pdu).await;
    let resp = esme.response(seq).await;
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    let id = message_id(&resp);

    // data_sm with message_payload in UCS-2.
    let payload: Vec<u8> = "Grüße 😀"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let mut data = DataSm::builder()
        .source_addr(c("ACME"))
        .source_addr_ton(Ton::Alphanumeric)
        .destination_addr(c("+4915112345679"))
        .data_coding(8.into())
        .build();
    data.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(
        MessagePayload::new(AnyOctetString::from_vec(payload)),
    ));
    let seq = esme.send(data).await;
    let resp = esme.response(seq).await;
    assert_eq!(resp.status(), CommandStatus::EsmeRok, "{resp:?}");
    assert_eq!(resp.id(), rusmpp::CommandId::DataSmResp);

    // submit_multi: two numbers, one the core refuses.
    let mut multi = SubmitMulti::builder()
        .source_addr(c("15550100"))
        .short_message(OctetString::from_vec(b"to all".to_vec()).expect("short"))
        .build();
    for dest in ["4915100000001", "4915199900000"] {
        multi.push_dest_address(DestAddress::SmeAddress(SmeAddress::new(
            Ton::International,
            Npi::Isdn,
            c(dest),
        )));
    }
    let seq = esme.send(multi).await;
    let resp = esme.response(seq).await;
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    match resp.pdu() {
        Some(Pdu::SubmitMultiResp(r)) => {
            assert_eq!(r.unsuccess_sme().len(), 1);
            assert_eq!(
                r.unsuccess_sme()[0].destination_addr.as_str(),
                "4915199900000"
            );
            assert_eq!(
                r.unsuccess_sme()[0].error_status_code,
                CommandStatus::EsmeRinvdstadr
            );
        }
        other => panic!("{other:?}"),
    }

    // A refused destination and a bad data_coding get their statuses.
    let seq = esme.send(submit_sm("4915199900000", b"x")).await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRinvdstadr
    );
    let seq = esme
        .send(submit_sm("4915112345678", b"\x01\x02").with_data_coding(4.into()))
        .await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRinvdcs
    );

    let submitted = server.memory.submitted.lock().expect("lock").clone();
    assert_eq!(submitted.len(), 3);
    let (first_id, first) = &submitted[0];
    assert_eq!(first_id, &id);
    assert_eq!(first.text, "Hi €");
    assert_eq!(first.to, "+4915112345678");
    assert_eq!(first.from.as_deref(), Some("+15550100"));
    assert!(
        first
            .send_at
            .is_some_and(|at| at > Utc::now() + chrono::Duration::minutes(59))
    );
    let meta: &BTreeMap<String, String> = &first.metadata;
    assert_eq!(
        meta.get("notify").map(String::as_str),
        Some("smpp:carrier1")
    );
    assert_eq!(
        meta.get("smpp.system_id").map(String::as_str),
        Some("carrier1")
    );
    assert_eq!(submitted[1].1.text, "Grüße 😀");
    assert_eq!(submitted[1].1.from.as_deref(), Some("ACME"));
    assert!(!submitted[1].1.metadata.contains_key("notify"));
    assert_eq!(submitted[2].1.to, "+4915100000001");
}

#[tokio::test]
async fn sar_parts_out_of_order_are_one_message_answered_with_its_id() {
    let server = start(vec![account("carrier1")], |_| {});
    let mut esme = Esme::connect(&server.addr).await;
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );
    let mut sequences = Vec::new();
    for (seq, text) in [(2u8, "world"), (1, "hello ")] {
        let mut pdu = submit_sm("4915112345678", text.as_bytes());
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(77));
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2));
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(seq));
        sequences.push(esme.send(pdu).await);
    }
    // Both parts are answered once the message is complete, in either order.
    let mut ids = HashMap::new();
    while ids.len() < 2 {
        let resp = esme.next().await.expect("a response");
        assert_eq!(resp.status(), CommandStatus::EsmeRok);
        ids.insert(resp.sequence_number(), message_id(&resp));
    }
    assert_eq!(ids[&sequences[0]], ids[&sequences[1]]);
    let submitted = server.memory.submitted.lock().expect("lock").clone();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].1.text, "hello world");
}

#[tokio::test]
async fn a_part_that_never_completes_is_answered_submitfail() {
    let server = start(vec![account("carrier1")], |c| {
        c.reassembly_timeout_seconds = 1
    });
    let mut esme = Esme::connect(&server.addr).await;
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );
    let udh = [0x05, 0x00, 0x03, 0x11, 0x03, 0x01, b'a'];
    let pdu = submit_sm("4915112345678", &udh).with_udhi_indicator();
    let seq = esme.send(pdu).await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRsubmitfail
    );
    assert!(server.memory.submitted.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn window_queue_and_throughput_limits() {
    let mut limited = account("carrier1");
    limited.window = 2;
    limited.queue_limit = 3;
    let mut slow = account("slow");
    slow.throughput = 2;
    let server = start(vec![limited, slow], |_| {});
    let gate = Arc::new(Semaphore::new(0));
    *server.memory.gate.lock().expect("gate") = Some(gate.clone());

    // Two submits being stored fill the window of one bind: the third is throttled.
    let mut a = Esme::connect(&server.addr).await;
    assert_eq!(a.bind("carrier1", "s3cret").await, CommandStatus::EsmeRok);
    let first = a.send(submit_sm("4915112345678", b"1")).await;
    let second = a.send(submit_sm("4915112345678", b"2")).await;
    let third = a.send(submit_sm("4915112345678", b"3")).await;
    assert_eq!(
        a.response(third).await.status(),
        CommandStatus::EsmeRthrottled
    );
    // A second bind of the account has its own window, but the account's queue (3) is
    // full after one more.
    let mut b = Esme::connect(&server.addr).await;
    assert_eq!(b.bind("carrier1", "s3cret").await, CommandStatus::EsmeRok);
    let fourth = b.send(submit_sm("4915112345678", b"4")).await;
    let fifth = b.send(submit_sm("4915112345678", b"5")).await;
    assert_eq!(
        b.response(fifth).await.status(),
        CommandStatus::EsmeRmsgqful
    );
    // Nothing is answered OK before the core took it.
    gate.add_permits(10);
    for seq in [first, second] {
        assert_eq!(a.response(seq).await.status(), CommandStatus::EsmeRok);
    }
    assert_eq!(b.response(fourth).await.status(), CommandStatus::EsmeRok);
    assert_eq!(server.memory.submitted.lock().expect("lock").len(), 3);

    // Throughput 2 segments a second: a burst of four gets two throttled.
    let mut s = Esme::connect(&server.addr).await;
    assert_eq!(s.bind("slow", "s3cret").await, CommandStatus::EsmeRok);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let seq = s
            .send(submit_sm("4915112345678", format!("{i}").as_bytes()))
            .await;
        statuses.push(s.response(seq).await.status());
    }
    let throttled = statuses
        .iter()
        .filter(|s| **s == CommandStatus::EsmeRthrottled)
        .count();
    assert!(throttled >= 2, "{statuses:?}");
}

#[tokio::test]
async fn query_cancel_and_replace() {
    let server = start(vec![account("carrier1")], |_| {});
    let mut esme = Esme::connect(&server.addr).await;
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );
    let seq = esme.send(submit_sm("4915112345678", b"first text")).await;
    let id = message_id(&esme.response(seq).await);

    let replace = ReplaceSm::builder()
        .message_id(c(&id))
        .short_message(OctetString::from_vec(b"second text".to_vec()).expect("short"))
        .build();
    let seq = esme.send(replace).await;
    assert_eq!(esme.response(seq).await.status(), CommandStatus::EsmeRok);
    assert_eq!(
        server.memory.messages.lock().expect("lock")[&id].text,
        "second text"
    );

    let seq = esme
        .send(QuerySm::builder().message_id(c(&id)).build())
        .await;
    let resp = esme.response(seq).await;
    match resp.pdu() {
        Some(Pdu::QuerySmResp(r)) => {
            assert_eq!(r.message_state, rusmpp::values::MessageState::Enroute);
            assert_eq!(r.message_id.as_str(), id);
        }
        other => panic!("{other:?}"),
    }

    let cancel = CancelSm::builder().message_id(c(&id)).build();
    let seq = esme.send(cancel.clone()).await;
    assert_eq!(esme.response(seq).await.status(), CommandStatus::EsmeRok);
    let seq = esme.send(cancel).await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRcancelfail
    );
    let seq = esme
        .send(QuerySm::builder().message_id(c("nope")).build())
        .await;
    assert_eq!(
        esme.response(seq).await.status(),
        CommandStatus::EsmeRinvmsgid
    );
}

#[tokio::test]
async fn garbage_gets_generic_nack_and_a_bad_length_closes_only_its_session() {
    let server = start(vec![account("carrier1")], |_| {});
    let mut good = Esme::connect(&server.addr).await;
    assert_eq!(
        good.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );

    let mut bad = Esme::connect(&server.addr).await;
    // An unknown command_id: generic_nack ESME_RINVCMDID, and the session goes on.
    bad.raw(&[0, 0, 0, 16, 0x00, 0x00, 0x01, 0x99, 0, 0, 0, 0, 0, 0, 0, 42])
        .await;
    let nack = bad.next().await.expect("generic_nack");
    assert_eq!(nack.id(), rusmpp::CommandId::GenericNack);
    assert_eq!(nack.status(), CommandStatus::EsmeRinvcmdid);
    assert_eq!(nack.sequence_number(), 42);
    // A body that does not decode: generic_nack, session still open.
    bad.raw(&[
        0, 0, 0, 19, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 43, 0xff, 0xff, 0xff,
    ])
    .await;
    let nack = bad.next().await.expect("generic_nack");
    assert_eq!(nack.id(), rusmpp::CommandId::GenericNack);
    assert_eq!(nack.sequence_number(), 43);
    let seq = bad.send(Pdu::EnquireLink).await;
    assert_eq!(
        bad.response(seq).await.id(),
        rusmpp::CommandId::EnquireLinkResp
    );
    // A command_length of 2 GiB: generic_nack ESME_RINVCMDLEN and the session closes.
    bad.raw(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 44])
        .await;
    let nack = bad.next().await.expect("generic_nack");
    assert_eq!(nack.status(), CommandStatus::EsmeRinvcmdlen);
    assert!(bad.next().await.is_none(), "that session is closed");
    // The other bind is unaffected.
    let seq = good.send(submit_sm("4915112345678", b"still here")).await;
    assert_eq!(good.response(seq).await.status(), CommandStatus::EsmeRok);
}

fn notice(id: &str, kind: NoticeKind, status: MessageStatus, rd: &str) -> Notice {
    let mut message = Message::new(
        "acme",
        Direction::Outbound,
        Channel::Sms,
        "+4915112345678",
        "receipt me",
        status,
        Utc::now(),
    );
    message.from = Some("+15550100".into());
    message
        .metadata
        .insert("smpp.registered_delivery".into(), rd.into());
    Notice {
        id: id.into(),
        kind,
        message,
    }
}

#[tokio::test]
async fn notices_are_delivered_to_a_receiver_and_retried_until_answered() {
    let server = start(vec![account("carrier1")], |_| {});
    {
        let mut notices = server.memory.notices.lock().expect("lock");
        for n in [
            notice("n1", NoticeKind::Status, MessageStatus::Delivered, "1"),
            // registered_delivery 2 (failure only): a delivery is not sent, but done.
            notice("n2", NoticeKind::Status, MessageStatus::Delivered, "2"),
            notice("n3", NoticeKind::Received, MessageStatus::Received, "0"),
        ] {
            notices.push((n, None, false));
        }
    }
    let mut esme = Esme::connect(&server.addr).await;
    assert_eq!(
        esme.bind("carrier1", "s3cret").await,
        CommandStatus::EsmeRok
    );
    // The first deliver_sm is refused (ESME_RX_T_APPN): it must come again.
    let mut refused_once = false;
    let mut receipts = 0;
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while receipts < 1 || received < 1 {
        assert!(Instant::now() < deadline, "notices not delivered");
        let command = esme.next().await.expect("deliver_sm");
        let Some(Pdu::DeliverSm(d)) = command.pdu() else {
            continue;
        };
        let status = if refused_once {
            CommandStatus::EsmeRok
        } else {
            refused_once = true;
            CommandStatus::EsmeRxTAppn
        };
        if status == CommandStatus::EsmeRok {
            if u8::from(d.esm_class) == 0x04 {
                let text = String::from_utf8_lossy(d.short_message().as_ref()).into_owned();
                assert!(text.contains("stat:DELIVRD"), "{text}");
                assert!(
                    d.tlvs()
                        .iter()
                        .any(|t| matches!(t.value(), Some(TlvValue::MessageState(_))))
                );
                receipts += 1;
            } else {
                assert_eq!(d.short_message().as_ref(), b"receipt me");
                received += 1;
            }
        }
        let resp = DeliverSmResp::new(COctetString::empty(), Vec::new());
        esme.send_command(Command::new(status, command.sequence_number(), resp))
            .await;
    }
    // Every notice ends done: n2 without being sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all_done = server
            .memory
            .notices
            .lock()
            .expect("lock")
            .iter()
            .all(|(_, _, done)| *done);
        if all_done {
            break;
        }
        assert!(Instant::now() < deadline, "notices not marked done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receipts, 1);
}
