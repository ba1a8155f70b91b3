//! `smsc-sim`: an SMSC simulator for benchmarks and fault injection. It takes any bind
//! (or only the configured credentials), answers submit_sm with message ids in a chosen
//! form, sends delivery receipts after a delay with a mix of outcomes, and can throttle,
//! drop responses, disconnect and send garbage. It prints `smsc-sim listening on
//! HOST:PORT` on stdout, then once a second what it did.
//!
//! ```text
//! smsc-sim [--listen 127.0.0.1:2776] [--system-id ID --password PW]
//!          [--ids hex|decimal|uuid] [--receipts on|off] [--receipt-delay-ms 0]
//!          [--undeliv-pct 0] [--expired-pct 0] [--throttle-every 0] [--drop-every 0]
//!          [--disconnect-after 0] [--garbage-every 0] [--quiet]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSmResp,
};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessageState, PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag,
    ServiceType,
};
use rusmpp::{Command, CommandStatus, Pdu};
use switchboard_smpp::codec::PduCodec;
use switchboard_smpp::receipt::{self, Receipt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};

#[derive(Debug, Clone)]
struct Options {
    listen: SocketAddr,
    credentials: Option<(String, String)>,
    ids: IdForm,
    receipts: bool,
    receipt_delay: Duration,
    undeliv_pct: u64,
    expired_pct: u64,
    throttle_every: u64,
    drop_every: u64,
    disconnect_after: u64,
    garbage_every: u64,
    quiet: bool,
}

#[derive(Debug, Clone, Copy)]
enum IdForm {
    Hex,
    Decimal,
    Uuid,
}

#[derive(Default)]
struct Counters {
    binds: AtomicU64,
    submits: AtomicU64,
    throttled: AtomicU64,
    dropped: AtomicU64,
    receipts: AtomicU64,
    receipt_resps: AtomicU64,
    disconnects: AtomicU64,
    next_id: AtomicU64,
}

fn usage(problem: &str) -> ! {
    eprintln!("smsc-sim: {problem}");
    eprintln!(
        "usage: smsc-sim [--listen ADDR] [--system-id ID --password PW] [--ids hex|decimal|uuid] \
         [--receipts on|off] [--receipt-delay-ms N] [--undeliv-pct N] [--expired-pct N] \
         [--throttle-every N] [--drop-every N] [--disconnect-after N] [--garbage-every N] [--quiet]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 2776)),
        credentials: None,
        ids: IdForm::Hex,
        receipts: true,
        receipt_delay: Duration::ZERO,
        undeliv_pct: 0,
        expired_pct: 0,
        throttle_every: 0,
        drop_every: 0,
        disconnect_after: 0,
        garbage_every: 0,
        quiet: false,
    };
    let (mut system_id, mut password) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--quiet" {
            o.quiet = true;
            continue;
        }
        let Some(value) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{flag}: {value:?} is not a number")))
        };
        match flag.as_str() {
            "--listen" => {
                o.listen = value
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--listen: {value:?}")))
            }
            "--system-id" => system_id = Some(value),
            "--password" => password = Some(value),
            "--ids" => {
                o.ids = match value.as_str() {
                    "hex" => IdForm::Hex,
                    "decimal" => IdForm::Decimal,
                    "uuid" => IdForm::Uuid,
                    _ => usage("--ids: hex, decimal or uuid"),
                }
            }
            "--receipts" => o.receipts = value == "on",
            "--receipt-delay-ms" => o.receipt_delay = Duration::from_millis(number()),
            "--undeliv-pct" => o.undeliv_pct = number(),
            "--expired-pct" => o.expired_pct = number(),
            "--throttle-every" => o.throttle_every = number(),
            "--drop-every" => o.drop_every = number(),
            "--disconnect-after" => o.disconnect_after = number(),
            "--garbage-every" => o.garbage_every = number(),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if let (Some(s), Some(p)) = (system_id, password) {
        o.credentials = Some((s, p));
    }
    o
}

fn message_id(form: IdForm, n: u64) -> String {
    match form {
        IdForm::Hex => format!("{n:X}"),
        IdForm::Decimal => n.to_string(),
        IdForm::Uuid => format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            std::process::id(),
            (n >> 48) & 0xffff,
            n & 0xffff_ffff_ffff
        ),
    }
}

#[tokio::main]
async fn main() {
    let options = Arc::new(options());
    let listener = match TcpListener::bind(options.listen).await {
        Ok(l) => l,
        Err(e) => usage(&format!("cannot listen on {}: {e}", options.listen)),
    };
    let local = listener.local_addr().unwrap_or(options.listen);
    println!("smsc-sim listening on {local}");
    let counters = Arc::new(Counters::default());
    counters.next_id.store(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() << 20)
            .unwrap_or(1),
        Ordering::Relaxed,
    );
    if !options.quiet {
        tokio::spawn(report(counters.clone()));
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(session(stream, options.clone(), counters.clone()));
            }
            Err(e) => eprintln!("smsc-sim: accept: {e}"),
        }
    }
}

async fn report(c: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = [0u64; 4];
    let mut seconds = 0u64;
    loop {
        tick.tick().await;
        seconds += 1;
        let now = [
            c.submits.load(Ordering::Relaxed),
            c.receipts.load(Ordering::Relaxed),
            c.throttled.load(Ordering::Relaxed),
            c.receipt_resps.load(Ordering::Relaxed),
        ];
        if now != last {
            println!(
                "t={seconds}s submit_sm/s={} receipts/s={} throttled/s={} submit_sm={} receipts={} receipt_resps={} binds={} dropped={} disconnects={}",
                now[0] - last[0],
                now[1] - last[1],
                now[2] - last[2],
                now[0],
                now[1],
                now[3],
                c.binds.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
                c.disconnects.load(Ordering::Relaxed),
            );
        }
        last = now;
    }
}

/// A receipt due at a time.
struct Due {
    at: Instant,
    pdu: DeliverSm,
}

async fn session(stream: TcpStream, o: Arc<Options>, c: Arc<Counters>) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = FramedRead::new(reader, PduCodec::default());
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4096);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let mut buf = bytes;
            while buf.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if writer.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let (receipt_tx, mut receipt_rx) = mpsc::unbounded_channel::<Due>();
    let receipts_out = tx.clone();
    let rc = c.clone();
    let receipt_task = tokio::spawn(async move {
        let mut sequence = 0x4000_0000u32;
        while let Some(due) = receipt_rx.recv().await {
            tokio::time::sleep_until(due.at).await;
            sequence += 1;
            let command = Command::new(CommandStatus::EsmeRok, sequence, Pdu::DeliverSm(due.pdu));
            if receipts_out.send(encode(&command)).await.is_err() {
                return;
            }
            rc.receipts.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut pdus = 0u64;
    let mut bound = false;
    while let Some(frame) = reader.next().await {
        let command = match frame {
            Ok(Ok(command)) => command,
            Ok(Err(bad)) => {
                let nack = Command::new(
                    CommandStatus::EsmeRinvcmdlen,
                    bad.sequence_number,
                    Pdu::GenericNack,
                );
                let _ = tx.send(encode(&nack)).await;
                continue;
            }
            Err(_) => break,
        };
        pdus += 1;
        if o.disconnect_after > 0 && pdus > o.disconnect_after {
            c.disconnects.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let sequence = command.sequence_number();
        let answer = |pdu: Pdu, status: CommandStatus| encode(&Command::new(status, sequence, pdu));
        let reply = match command.pdu() {
            Some(Pdu::BindTransceiver(b)) => Some(bind(
                &o,
                &c,
                &mut bound,
                b.system_id.as_str(),
                b.password.as_str(),
                sequence,
                9,
            )),
            Some(Pdu::BindTransmitter(b)) => Some(bind(
                &o,
                &c,
                &mut bound,
                b.system_id.as_str(),
                b.password.as_str(),
                sequence,
                2,
            )),
            Some(Pdu::BindReceiver(b)) => Some(bind(
                &o,
                &c,
                &mut bound,
                b.system_id.as_str(),
                b.password.as_str(),
                sequence,
                1,
            )),
            Some(Pdu::EnquireLink) => Some(answer(Pdu::EnquireLinkResp, CommandStatus::EsmeRok)),
            Some(Pdu::Unbind) => {
                let _ = tx
                    .send(answer(Pdu::UnbindResp, CommandStatus::EsmeRok))
                    .await;
                break;
            }
            Some(Pdu::DeliverSmResp(_)) => {
                c.receipt_resps.fetch_add(1, Ordering::Relaxed);
                None
            }
            Some(Pdu::SubmitSm(submit)) if bound => {
                let n = c.submits.fetch_add(1, Ordering::Relaxed) + 1;
                if o.garbage_every > 0 && n.is_multiple_of(o.garbage_every) {
                    Some(vec![
                        0x00, 0x00, 0x00, 0x14, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 1,
                        0xff, 0xff, 0xff, 0xff,
                    ])
                } else if o.drop_every > 0 && n.is_multiple_of(o.drop_every) {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    None
                } else if o.throttle_every > 0 && n.is_multiple_of(o.throttle_every) {
                    c.throttled.fetch_add(1, Ordering::Relaxed);
                    Some(answer(
                        Pdu::SubmitSmResp(SubmitSmResp::new(COctetString::default(), Vec::new())),
                        CommandStatus::EsmeRthrottled,
                    ))
                } else {
                    let id = message_id(o.ids, c.next_id.fetch_add(1, Ordering::Relaxed));
                    if o.receipts && u8::from(submit.registered_delivery) & 0x03 != 0 {
                        let _ = receipt_tx.send(Due {
                            at: Instant::now() + o.receipt_delay,
                            pdu: receipt_pdu(
                                &o,
                                n,
                                &id,
                                submit.source_addr.clone(),
                                submit.destination_addr.clone(),
                            ),
                        });
                    }
                    let id = COctetString::from_string(id).unwrap_or_default();
                    Some(answer(
                        Pdu::SubmitSmResp(SubmitSmResp::new(id, Vec::new())),
                        CommandStatus::EsmeRok,
                    ))
                }
            }
            Some(Pdu::SubmitSm(_)) => Some(answer(Pdu::GenericNack, CommandStatus::EsmeRinvbndsts)),
            Some(_) if command.id().is_response() => None,
            _ => Some(answer(Pdu::GenericNack, CommandStatus::EsmeRinvcmdid)),
        };
        if let Some(bytes) = reply
            && tx.send(bytes).await.is_err()
        {
            break;
        }
    }
    receipt_task.abort();
    drop(tx);
    let _ = writer_task.await;
}

fn bind(
    o: &Options,
    c: &Counters,
    bound: &mut bool,
    system_id: &str,
    password: &str,
    sequence: u32,
    kind: u8,
) -> Vec<u8> {
    let ok = o
        .credentials
        .as_ref()
        .is_none_or(|(s, p)| s == system_id && p == password);
    let status = if ok {
        CommandStatus::EsmeRok
    } else {
        CommandStatus::EsmeRinvpaswd
    };
    if ok {
        *bound = true;
        c.binds.fetch_add(1, Ordering::Relaxed);
    }
    let id = COctetString::from_string("smsc-sim".into()).unwrap_or_default();
    let pdu = match kind {
        1 => Pdu::BindReceiverResp(BindReceiverResp::new(id, None)),
        2 => Pdu::BindTransmitterResp(BindTransmitterResp::new(id, None)),
        _ => Pdu::BindTransceiverResp(BindTransceiverResp::new(id, None)),
    };
    encode(&Command::new(status, sequence, pdu))
}

fn receipt_pdu(
    o: &Options,
    n: u64,
    id: &str,
    source: COctetString<1, 21>,
    destination: COctetString<1, 21>,
) -> DeliverSm {
    let roll = n.wrapping_mul(2_654_435_761) % 100;
    let stat = if roll < o.undeliv_pct {
        "UNDELIV"
    } else if roll < o.undeliv_pct + o.expired_pct {
        "EXPIRED"
    } else {
        "DELIVRD"
    };
    let now = receipt::format_date(chrono::Utc::now());
    let text = receipt::format(&Receipt {
        id: id.to_owned(),
        submit_date: now.clone(),
        done_date: now,
        stat: stat.to_owned(),
        err: if stat == "DELIVRD" { "000" } else { "011" }.to_owned(),
        ..Receipt::default()
    });
    let state = receipt::message_state_of_stat(stat).unwrap_or(2);
    let mut tlvs = vec![MessageDeliveryRequestTlvValue::MessageState(
        MessageState::from(state),
    )];
    if let Ok(id) = COctetString::from_string(id.to_owned()) {
        tlvs.insert(0, MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    DeliverSm::new(
        ServiceType::default(),
        Default::default(),
        Default::default(),
        destination,
        Default::default(),
        Default::default(),
        source,
        EsmClass::from(0x04),
        0,
        PriorityFlag::default(),
        EmptyOrFullCOctetString::empty(),
        EmptyOrFullCOctetString::empty(),
        RegisteredDelivery::default(),
        ReplaceIfPresentFlag::default(),
        DataCoding::from(0),
        0,
        OctetString::from_vec(text.into_bytes()).unwrap_or_default(),
        tlvs,
    )
}

fn encode(command: &Command) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let _ = PduCodec::default().encode(command, &mut buf);
    buf.to_vec()
}
