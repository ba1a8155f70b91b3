//! deliver_sm and data_sm from the SMSC: a delivery receipt becomes a status report,
//! anything else an inbound message (its parts joined first). The deliver_sm_resp (or
//! data_sm_resp) goes only after the core has committed what it carried; when the core
//! cannot take it now the answer is ESME_RX_T_APPN so the SMSC sends it again, when it
//! never will, ESME_RX_P_APPN.

use std::sync::Arc;

use chrono::Utc;
use rusmpp::pdus::{DataSm, DataSmResp, DeliverSm, DeliverSmResp};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::types::COctetString;
use rusmpp::values::{Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use switchboard_adapter::{Core, Inbound, IngestOutcome, StatusReport};
use switchboard_model::Channel;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Connector;
use crate::concat::{self, UserData};
use crate::reassembly::{Added, PartKey};
use crate::receipt::{self, IdSource};
use crate::server::submit::{SmeAddr, address};

/// ESME Receiver Temporary App Error: the SMSC should try again later.
pub const ESME_RX_T_APPN: u32 = 0x64;
/// ESME Receiver Permanent App Error: the SMSC should not send it again.
pub const ESME_RX_P_APPN: u32 = 0x65;

/// The PDU a message from the SMSC came in, which decides the response's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// deliver_sm, answered deliver_sm_resp.
    DeliverSm,
    /// data_sm, answered data_sm_resp.
    DataSm,
}

/// Where the answer to one held deliver_sm or data_sm goes.
pub struct Held {
    tx: mpsc::Sender<Command>,
    sequence: u32,
    carrier: Carrier,
}

impl Held {
    /// Answers the PDU with `status`.
    pub async fn answer(self, status: u32) {
        let pdu = match self.carrier {
            Carrier::DeliverSm => {
                Pdu::DeliverSmResp(DeliverSmResp::new(COctetString::default(), Vec::new()))
            }
            Carrier::DataSm => {
                Pdu::DataSmResp(DataSmResp::new(COctetString::default(), Vec::new()))
            }
        };
        let command = Command::new(CommandStatus::from(status), self.sequence, pdu);
        let _ = self.tx.send(command).await;
    }
}

/// What a deliver_sm or a data_sm from the SMSC carries, read the same way for both (a
/// data_sm has no short_message: its text is in message_payload).
pub struct Delivery<'a> {
    /// The PDU it came in.
    pub carrier: Carrier,
    /// esm_class.
    pub esm_class: u8,
    /// data_coding.
    pub data_coding: u8,
    /// The sender.
    pub source: SmeAddr,
    /// The recipient.
    pub destination: SmeAddr,
    /// short_message (empty for a data_sm).
    pub short_message: &'a [u8],
    /// The optional parameters.
    pub tlvs: &'a [Tlv],
}

/// An address as the PDU gives it.
fn sme(ton: Ton, npi: Npi, addr: &COctetString<1, 21>) -> SmeAddr {
    SmeAddr {
        ton: u8::from(ton),
        npi: u8::from(npi),
        addr: addr.as_str().to_owned(),
    }
}

impl<'a> Delivery<'a> {
    /// A deliver_sm's contents.
    pub fn of_deliver_sm(pdu: &'a DeliverSm) -> Delivery<'a> {
        Delivery {
            carrier: Carrier::DeliverSm,
            esm_class: u8::from(pdu.esm_class),
            data_coding: u8::from(pdu.data_coding),
            source: sme(pdu.source_addr_ton, pdu.source_addr_npi, &pdu.source_addr),
            destination: sme(pdu.dest_addr_ton, pdu.dest_addr_npi, &pdu.destination_addr),
            short_message: pdu.short_message().as_ref(),
            tlvs: pdu.tlvs(),
        }
    }

    /// A data_sm's contents.
    pub fn of_data_sm(pdu: &'a DataSm) -> Delivery<'a> {
        Delivery {
            carrier: Carrier::DataSm,
            esm_class: u8::from(pdu.esm_class),
            data_coding: u8::from(pdu.data_coding),
            source: sme(pdu.source_addr_ton, pdu.source_addr_npi, &pdu.source_addr),
            destination: sme(pdu.dest_addr_ton, pdu.dest_addr_npi, &pdu.destination_addr),
            short_message: &[],
            tlvs: pdu.tlvs(),
        }
    }
}

/// esm_class message type bits of a receipt: SMSC delivery receipt (0x04) or
/// intermediate delivery notification (0x20).
fn is_receipt_class(esm_class: u8) -> bool {
    matches!(esm_class & 0x3c, 0x04 | 0x20)
}

/// What a deliver_sm is, as a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipted {
    /// A receipt of a final state.
    Report(StatusReport),
    /// A receipt of a state that is not final (ENROUTE, ACCEPTD).
    NotFinal,
    /// Not a receipt.
    NotAReceipt,
}

/// Reads a deliver_sm or data_sm as a receipt: the id from receipted_message_id first,
/// else from the text; the state from the text's `stat`, else from message_state.
pub fn report_of(connector: &Connector, pdu: &Delivery<'_>) -> Receipted {
    let esm_class = pdu.esm_class;
    let text = String::from_utf8_lossy(pdu.short_message).into_owned();
    let parsed = receipt::parse(&text);
    if !is_receipt_class(esm_class) && parsed.is_none() {
        return Receipted::NotAReceipt;
    }
    let parsed = parsed.unwrap_or_default();
    let mut receipted = None;
    let mut state = None;
    for tlv in pdu.tlvs {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            _ => {}
        }
    }
    let id = receipted
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| parsed.id.clone());
    if id.trim().is_empty() {
        return Receipted::NotAReceipt;
    }
    let stat = if parsed.stat.is_empty() {
        state
            .and_then(receipt::stat_of_message_state)
            .unwrap_or("")
            .to_owned()
    } else {
        parsed.stat.clone()
    };
    let Some(status) = receipt::status_of_stat(&stat) else {
        return Receipted::NotFinal;
    };
    let error = (status != switchboard_model::MessageStatus::Delivered).then(|| {
        let err = if parsed.err.is_empty() {
            "000"
        } else {
            parsed.err.as_str()
        };
        (stat.clone(), format!("stat:{stat} err:{err}"))
    });
    Receipted::Report(StatusReport {
        connector: connector.name.clone(),
        upstream_id: receipt::normalise_id(
            &id,
            connector.config.receipt_id_format,
            IdSource::Receipt,
        ),
        status,
        error,
        at: receipt::parse_date(&parsed.done_date).unwrap_or_else(Utc::now),
    })
}

/// Handles one deliver_sm or data_sm and answers it (now, or when its message is
/// complete).
pub async fn deliver(
    connector: &Arc<Connector>,
    core: &Core,
    tx: mpsc::Sender<Command>,
    sequence: u32,
    pdu: Delivery<'_>,
) {
    let held = Held {
        tx,
        sequence,
        carrier: pdu.carrier,
    };
    let name = connector.name.as_str();
    match report_of(connector, &pdu) {
        Receipted::Report(report) => {
            let upstream_id = report.upstream_id.clone();
            let status = match core.reports.report(report).await {
                Ok(()) => 0,
                Err(e) => {
                    warn!(connector = name, %upstream_id, error = %e, "smpp client: receipt not recorded; asking the SMSC to send it again");
                    ESME_RX_T_APPN
                }
            };
            held.answer(status).await;
            return;
        }
        Receipted::NotFinal => {
            debug!(
                connector = name,
                "smpp client: receipt of a state that is not final"
            );
            held.answer(0).await;
            return;
        }
        Receipted::NotAReceipt => {}
    }
    let esm_class = pdu.esm_class;
    let data_coding = pdu.data_coding;
    let from = address(&pdu.source);
    let to = address(&pdu.destination);
    let data = match concat::user_data(esm_class, pdu.short_message, pdu.tlvs) {
        Ok(data) => data,
        Err(e) => {
            warn!(connector = name, %from, %to, error = %e, carrier = ?pdu.carrier, "smpp client: user data cannot be read");
            held.answer(ESME_RX_P_APPN).await;
            return;
        }
    };
    let (payload, helds, parts) = match data {
        UserData {
            payload,
            part: None,
        } => (payload, vec![held], 1),
        UserData {
            payload,
            part: Some((reference, total, seq)),
        } => {
            let key = PartKey {
                source: from.clone(),
                destination: to.clone(),
                reference,
                total,
            };
            let added = {
                let Ok(mut reassembly) = connector.reassembly.lock() else {
                    held.answer(ESME_RX_T_APPN).await;
                    return;
                };
                if reassembly.held() >= connector.config.reassembly_max_parts as usize {
                    None
                } else {
                    Some(reassembly.add(
                        key,
                        seq,
                        payload,
                        held_later(&held),
                        std::time::Instant::now(),
                    ))
                }
            };
            match added {
                None => {
                    warn!(
                        connector = name,
                        "smpp client: too many parts waiting for the rest of their message"
                    );
                    held.answer(ESME_RX_T_APPN).await;
                    return;
                }
                Some(Added::Held) => {
                    drop(held);
                    return;
                }
                Some(Added::Complete(parts, extra)) => {
                    for earlier in extra {
                        earlier.answer(0).await;
                    }
                    let count = parts.len();
                    let mut bytes = Vec::new();
                    let mut helds = Vec::new();
                    for (p, h) in parts {
                        bytes.extend(p);
                        helds.push(h);
                    }
                    drop(held);
                    (bytes, helds, count)
                }
            }
        }
    };
    let Some(text) = concat::decode_text(data_coding, &payload) else {
        warn!(
            connector = name,
            data_coding, "smpp client: a message in a coding that is not text"
        );
        for h in helds {
            h.answer(ESME_RX_P_APPN).await;
        }
        return;
    };
    let mut metadata = vec![
        ("smpp.data_coding".to_owned(), data_coding.to_string()),
        ("smpp.esm_class".to_owned(), esm_class.to_string()),
    ];
    if pdu.carrier == Carrier::DataSm {
        metadata.push(("smpp.command".to_owned(), "data_sm".to_owned()));
    }
    if parts > 1 {
        metadata.push(("smpp.parts".to_owned(), parts.to_string()));
    }
    let inbound = Inbound {
        channel: Channel::Sms,
        connector: connector.name.clone(),
        tenant: connector.config.tenant.clone(),
        from: from.clone(),
        to: to.clone(),
        text,
        subject: None,
        metadata,
        keep_unmatched: true,
        attachments: Vec::new(),
    };
    let status = match core.ingest.receive(inbound).await {
        Ok(IngestOutcome::Received { id } | IngestOutcome::Forwarded { id }) => {
            info!(connector = name, %id, %from, %to, parts, "smpp client: inbound message stored");
            0
        }
        Ok(IngestOutcome::Unknown) => {
            warn!(connector = name, %from, %to, "smpp client: inbound message for nobody");
            ESME_RX_P_APPN
        }
        Ok(IngestOutcome::Refused { code, detail }) => {
            warn!(connector = name, %from, %to, %code, %detail, "smpp client: inbound message refused");
            ESME_RX_P_APPN
        }
        Err(e) => {
            warn!(connector = name, %from, %to, error = %e, "smpp client: inbound message not stored; asking the SMSC to send it again");
            ESME_RX_T_APPN
        }
    };
    for h in helds {
        h.answer(status).await;
    }
}

fn held_later(held: &Held) -> Held {
    Held {
        tx: held.tx.clone(),
        sequence: held.sequence,
        carrier: held.carrier,
    }
}

/// Answers the parts that waited too long for the rest of their message.
pub async fn expire(connector: &Connector) {
    let deadline = std::time::Instant::now()
        .checked_sub(connector.settings.reassembly_timeout)
        .unwrap_or_else(std::time::Instant::now);
    let expired = match connector.reassembly.lock() {
        Ok(mut r) => r.expire(deadline),
        Err(_) => Vec::new(),
    };
    if !expired.is_empty() {
        warn!(connector = %connector.name, parts = expired.len(), "smpp client: parts of inbound messages timed out waiting for the rest");
    }
    for h in expired {
        h.answer(ESME_RX_T_APPN).await;
    }
}

/// What the client reads of bytes from an SMSC, without a core: every PDU decoded, and
/// for each deliver_sm and data_sm its user data, text, receipt text, dates and ids. The entry point
/// of the `smpp_pdu` fuzz target; returns how many PDUs decoded. Never panics.
pub fn read_pdus(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    for command in crate::codec::decode_all(bytes, crate::codec::DEFAULT_MAX_PDU_BYTES)
        .into_iter()
        .flatten()
    {
        decoded += 1;
        let pdu = match command.pdu() {
            Some(Pdu::DeliverSm(pdu)) => Delivery::of_deliver_sm(pdu),
            Some(Pdu::DataSm(pdu)) => Delivery::of_data_sm(pdu),
            _ => continue,
        };
        let short_message = pdu.short_message;
        if let Ok(data) = concat::user_data(pdu.esm_class, short_message, pdu.tlvs) {
            let _ = concat::decode_text(pdu.data_coding, &data.payload);
        }
        if let Some(r) = receipt::parse(&String::from_utf8_lossy(short_message)) {
            let _ = receipt::parse_date(&r.done_date);
            let _ = receipt::status_of_stat(&r.stat);
            for format in [
                receipt::IdFormat::Auto,
                receipt::IdFormat::Hex,
                receipt::IdFormat::DecimalSubmitHexReceipt,
            ] {
                let _ = receipt::normalise_id(&r.id, format, IdSource::Receipt);
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
        v.extend_from_slice(&command_id.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A deliver_sm body: addresses, esm_class, data_coding, short_message, TLVs.
    fn deliver(esm_class: u8, data_coding: u8, sm: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut b = b"\0\x01\x01123\0\x01\x01456\0".to_vec();
        b.extend_from_slice(&[esm_class, 0, 0, 0, 0, 0, 0, data_coding, 0]);
        b.push(sm.len() as u8);
        b.extend_from_slice(sm);
        b.extend_from_slice(tlvs);
        pdu(0x05, 1, &b)
    }

    /// A data_sm body: addresses, esm_class, registered_delivery, data_coding, TLVs.
    fn data_sm(esm_class: u8, data_coding: u8, tlvs: &[u8]) -> Vec<u8> {
        let mut b = b"\0\x01\x01123\0\x01\x01456\0".to_vec();
        b.extend_from_slice(&[esm_class, 0, data_coding]);
        b.extend_from_slice(tlvs);
        pdu(0x103, 1, &b)
    }

    #[test]
    fn a_receipt_and_parts_are_read() {
        let receipt = deliver(4, 0, b"id:0A1 sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:x", &[]);
        let part = deliver(0x40, 8, &[5, 0, 3, 7, 2, 1, 0xd8, 0x3d], &[]);
        let mut all = receipt.clone();
        all.extend(part);
        all.extend(data_sm(0, 8, &[0x04, 0x24, 0, 4, 0xd8, 0x3d, 0xde, 0x42]));
        assert_eq!(read_pdus(&all), 3);
    }

    /// Nasty inputs: none of them panics (the fuzz target checks the same property).
    #[test]
    fn nasty_inputs_never_panic() {
        let corpus: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 40],
            deliver(0x40, 8, &[0xff, 0, 3], &[]),
            deliver(0x40, 0, &[5, 0, 3, 1, 0, 0], &[]),
            deliver(0x40, 0, &[5, 0, 3, 1, 2, 9], &[]),
            deliver(0x40, 0, &[6, 8, 4, 1, 1, 2, 1], &[]),
            deliver(0, 8, &[0xd8, 0x3d, 0xd8], &[]),
            deliver(4, 0, b"id: stat: done date:99999999999999", &[]),
            deliver(4, 0, b"ID:\xff\xfe STAT:\xc3 text:", &[]),
            deliver(4, 0, &[], &[0x04, 0x1e, 0, 0]),
            deliver(4, 0, &[], &[0x04, 0x27, 0, 1, 0xff]),
            deliver(0, 0, b"x", &[0x04, 0x24, 0, 2, b'h', b'i']),
            deliver(0, 0, &[], &[0x04, 0x24, 0xff, 0xff, 1]),
            deliver(
                0,
                0,
                &[],
                &[
                    0x02, 0x0c, 0, 2, 0, 1, 0x02, 0x0e, 0, 1, 9, 0x02, 0x0f, 0, 1, 1,
                ],
            ),
            deliver(0, 0xf0, b"hello", &[]),
            data_sm(0, 8, &[0x04, 0x24, 0, 4, 0xd8, 0x3d, 0xde, 0x42]),
            data_sm(0x40, 0, &[0x04, 0x24, 0, 3, 5, 0, 3]),
            data_sm(4, 0, &[0x00, 0x1e, 0, 2, b'1', 0, 0x04, 0x27, 0, 1, 2]),
            deliver(0, 0x08, b"odd", &[]),
        ];
        for input in &corpus {
            let _ = read_pdus(input);
            for cut in 0..input.len() {
                let _ = read_pdus(&input[..cut]);
                let mut flipped = input.clone();
                flipped[cut] ^= 0xff;
                let _ = read_pdus(&flipped);
            }
        }
    }
}
