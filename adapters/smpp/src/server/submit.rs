//! submit_sm, data_sm and submit_multi as the core's [`Submission`]s: addresses by
//! TON/NPI, text by data_coding, concatenation (UDH, SAR TLVs, message_payload),
//! schedule and validity, and the SMPP status for each refusal.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusmpp::CommandStatus;
use rusmpp::pdus::{DataSm, SubmitMulti, SubmitSm};
use rusmpp::tlvs::Tlv;
use rusmpp::values::{DestAddress, Ton};
use switchboard_adapter::Submission;
use switchboard_model::address::{Address, Channel};
use switchboard_model::text::Encoding;

use crate::concat;
use crate::reassembly::PartKey;
use crate::time;

/// An SME address with its TON and NPI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmeAddr {
    /// Type of number.
    pub ton: u8,
    /// Numbering plan.
    pub npi: u8,
    /// The digits or name as given.
    pub addr: String,
}

/// Which PDU a submit came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitKind {
    /// submit_sm, answered with submit_sm_resp.
    SubmitSm,
    /// data_sm, answered with data_sm_resp.
    DataSm,
    /// submit_multi, answered with submit_multi_resp.
    SubmitMulti,
}

/// One submit PDU, read.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The PDU it came in.
    pub kind: SubmitKind,
    /// source_addr.
    pub source: SmeAddr,
    /// destination_addr (several for submit_multi), with distribution list names
    /// refused already (in `refused`).
    pub destinations: Vec<SmeAddr>,
    /// Destinations refused before submission (distribution lists), with their status.
    pub refused: Vec<(SmeAddr, CommandStatus)>,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// data_coding.
    pub data_coding: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority: u8,
    /// service_type.
    pub service_type: String,
    /// schedule_delivery_time as given.
    pub schedule: String,
    /// validity_period as given.
    pub validity: String,
    /// The user data, UDH removed.
    pub payload: Vec<u8>,
    /// For one part of a concatenated message: its key and number (from 1).
    pub part: Option<(PartKey, u8)>,
}

/// A submit that cannot be taken, with its status and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command_status for the response.
    pub status: CommandStatus,
    /// Why, for the log.
    pub detail: String,
}

impl Refusal {
    fn new(status: CommandStatus, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            detail: detail.into(),
        }
    }
}

fn ton(t: Ton) -> u8 {
    t.into()
}

/// A payload without its UDH, and which part of which message it is.
type PartedData = (Vec<u8>, Option<(PartKey, u8)>);

/// Reads the user data (short_message or message_payload, UDH, SAR TLVs) and keys the
/// part, if it is one, by sender and destination.
fn user_data(
    esm_class: u8,
    short_message: &[u8],
    tlvs: &[Tlv],
    source: &str,
    destination: &str,
) -> Result<PartedData, Refusal> {
    let data = concat::user_data(esm_class, short_message, tlvs)
        .map_err(|e| Refusal::new(CommandStatus::EsmeRinvmsglen, e))?;
    let part = data.part.map(|(reference, total, seq)| {
        (
            PartKey {
                source: source.to_owned(),
                destination: destination.to_owned(),
                reference,
                total,
            },
            seq,
        )
    });
    Ok((data.payload, part))
}

impl SubmitRequest {
    /// Reads a submit_sm.
    pub fn from_submit_sm(pdu: &SubmitSm) -> Result<SubmitRequest, Refusal> {
        let source = SmeAddr {
            ton: ton(pdu.source_addr_ton),
            npi: pdu.source_addr_npi.into(),
            addr: pdu.source_addr.as_str().to_owned(),
        };
        let destination = SmeAddr {
            ton: ton(pdu.dest_addr_ton),
            npi: pdu.dest_addr_npi.into(),
            addr: pdu.destination_addr.as_str().to_owned(),
        };
        let esm_class: u8 = pdu.esm_class.into();
        let (payload, part) = user_data(
            esm_class,
            pdu.short_message().as_ref(),
            pdu.tlvs(),
            &source.addr,
            &destination.addr,
        )?;
        Ok(SubmitRequest {
            kind: SubmitKind::SubmitSm,
            source,
            destinations: vec![destination],
            refused: Vec::new(),
            esm_class,
            registered_delivery: pdu.registered_delivery.into(),
            data_coding: pdu.data_coding.into(),
            protocol_id: pdu.protocol_id,
            priority: pdu.priority_flag.into(),
            service_type: pdu.service_type.value().as_str().to_owned(),
            schedule: pdu.schedule_delivery_time.as_str().to_owned(),
            validity: pdu.validity_period.as_str().to_owned(),
            payload,
            part,
        })
    }

    /// Reads a data_sm (its text is in message_payload).
    pub fn from_data_sm(pdu: &DataSm) -> Result<SubmitRequest, Refusal> {
        let source = SmeAddr {
            ton: ton(pdu.source_addr_ton),
            npi: pdu.source_addr_npi.into(),
            addr: pdu.source_addr.as_str().to_owned(),
        };
        let destination = SmeAddr {
            ton: ton(pdu.dest_addr_ton),
            npi: pdu.dest_addr_npi.into(),
            addr: pdu.destination_addr.as_str().to_owned(),
        };
        let esm_class: u8 = pdu.esm_class.into();
        let (payload, part) =
            user_data(esm_class, &[], pdu.tlvs(), &source.addr, &destination.addr)?;
        Ok(SubmitRequest {
            kind: SubmitKind::DataSm,
            source,
            destinations: vec![destination],
            refused: Vec::new(),
            esm_class,
            registered_delivery: pdu.registered_delivery.into(),
            data_coding: pdu.data_coding.into(),
            protocol_id: 0,
            priority: 0,
            service_type: pdu.service_type.value().as_str().to_owned(),
            schedule: String::new(),
            validity: String::new(),
            payload,
            part,
        })
    }

    /// Reads a submit_multi: one destination per SME address; distribution lists are
    /// refused (ESME_RINVDLNAME) since none are configured.
    pub fn from_submit_multi(pdu: &SubmitMulti) -> Result<SubmitRequest, Refusal> {
        let source = SmeAddr {
            ton: ton(pdu.source_addr_ton),
            npi: pdu.source_addr_npi.into(),
            addr: pdu.source_addr.as_str().to_owned(),
        };
        let mut destinations = Vec::new();
        let mut refused = Vec::new();
        for dest in pdu.dest_address() {
            match dest {
                DestAddress::SmeAddress(sme) => destinations.push(SmeAddr {
                    ton: ton(sme.dest_addr_ton),
                    npi: sme.dest_addr_npi.into(),
                    addr: sme.destination_addr.as_str().to_owned(),
                }),
                DestAddress::DistributionListName(list) => refused.push((
                    SmeAddr {
                        ton: 0,
                        npi: 0,
                        addr: list.dl_name.as_str().to_owned(),
                    },
                    CommandStatus::EsmeRinvdlname,
                )),
            }
        }
        if destinations.is_empty() && refused.is_empty() {
            return Err(Refusal::new(
                CommandStatus::EsmeRinvnumdests,
                "no destination",
            ));
        }
        let joined: Vec<&str> = destinations.iter().map(|d| d.addr.as_str()).collect();
        let esm_class: u8 = pdu.esm_class.into();
        let (payload, part) = user_data(
            esm_class,
            pdu.short_message().as_ref(),
            pdu.tlvs(),
            &source.addr,
            &joined.join(","),
        )?;
        Ok(SubmitRequest {
            kind: SubmitKind::SubmitMulti,
            source,
            destinations,
            refused,
            esm_class,
            registered_delivery: pdu.registered_delivery.into(),
            data_coding: pdu.data_coding.into(),
            protocol_id: pdu.protocol_id,
            priority: pdu.priority_flag.into(),
            service_type: pdu.service_type.value().as_str().to_owned(),
            schedule: pdu.schedule_delivery_time.as_str().to_owned(),
            validity: pdu.validity_period.as_str().to_owned(),
            payload,
            part,
        })
    }
}

/// The encoding a data_coding names, for text we can carry: GSM 7-bit (unpacked, one
/// septet per octet), IA5/Latin-1 and UCS-2, also in the message-class forms (0xF0).
pub fn encoding(data_coding: u8) -> Option<Encoding> {
    match data_coding {
        0xF0..=0xFF if data_coding & 0x04 == 0 => Some(Encoding::Gsm7),
        _ => match Encoding::from_data_coding(data_coding) {
            Some(Encoding::Binary) | None => None,
            other => other,
        },
    }
}

/// The text of a payload in `data_coding`.
pub fn decode_text(data_coding: u8, payload: &[u8]) -> Result<String, Refusal> {
    if encoding(data_coding).is_none() {
        return Err(Refusal::new(
            CommandStatus::EsmeRinvdcs,
            format!("data_coding {data_coding:#04x} is not a text coding we carry"),
        ));
    }
    concat::decode_text(data_coding, payload).ok_or_else(|| {
        Refusal::new(
            CommandStatus::EsmeRinvmsglen,
            "UCS-2 payload of an odd length",
        )
    })
}

/// An address as the core reads it: international numbers get their `+`.
pub fn address(sme: &SmeAddr) -> String {
    let addr = sme.addr.trim();
    if sme.ton == 1 && !addr.starts_with('+') && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{addr}")
    } else {
        addr.to_owned()
    }
}

/// Whether `registered_delivery` asks for a receipt (SMSC delivery receipt bits).
pub fn wants_receipt(registered_delivery: u8) -> bool {
    registered_delivery & 0x03 != 0
}

/// The submissions for a complete message: one per destination, each with the metadata
/// that brings receipts back to this account. `destination` picks the one to build.
pub fn submission(
    request: &SubmitRequest,
    destination: &SmeAddr,
    text: String,
    system_id: &str,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Submission, Refusal> {
    let from = (!request.source.addr.is_empty()).then(|| address(&request.source));
    if let Some(from) = &from
        && Address::parse_for(Channel::Sms, from).is_err()
    {
        return Err(Refusal::new(
            CommandStatus::EsmeRinvsrcadr,
            format!("source_addr {from:?}"),
        ));
    }
    let to = address(destination);
    if to.is_empty() || Address::parse(&to).is_err() {
        return Err(Refusal::new(
            CommandStatus::EsmeRinvdstadr,
            format!("destination_addr {to:?}"),
        ));
    }
    let send_at = time::parse(&request.schedule, now).map_err(|e| {
        Refusal::new(
            CommandStatus::EsmeRinvsched,
            format!("schedule_delivery_time {:?}", e.0),
        )
    })?;
    let expires_at = time::parse(&request.validity, now).map_err(|e| {
        Refusal::new(
            CommandStatus::EsmeRinvexpiry,
            format!("validity_period {:?}", e.0),
        )
    })?;
    let mut metadata = BTreeMap::new();
    metadata.insert("smpp.system_id".to_owned(), system_id.to_owned());
    metadata.insert(
        "smpp.registered_delivery".to_owned(),
        request.registered_delivery.to_string(),
    );
    metadata.insert(
        "smpp.source_addr_ton".to_owned(),
        request.source.ton.to_string(),
    );
    metadata.insert(
        "smpp.source_addr_npi".to_owned(),
        request.source.npi.to_string(),
    );
    metadata.insert("smpp.dest_addr_ton".to_owned(), destination.ton.to_string());
    metadata.insert("smpp.dest_addr_npi".to_owned(), destination.npi.to_string());
    metadata.insert("smpp.esm_class".to_owned(), request.esm_class.to_string());
    metadata.insert(
        "smpp.data_coding".to_owned(),
        request.data_coding.to_string(),
    );
    if !request.service_type.is_empty() {
        metadata.insert("smpp.service_type".to_owned(), request.service_type.clone());
    }
    if request.protocol_id != 0 {
        metadata.insert(
            "smpp.protocol_id".to_owned(),
            request.protocol_id.to_string(),
        );
    }
    if request.priority != 0 {
        metadata.insert(
            "smpp.priority_flag".to_owned(),
            request.priority.to_string(),
        );
    }
    if wants_receipt(request.registered_delivery) {
        metadata.insert("notify".to_owned(), format!("smpp:{system_id}"));
    }
    Ok(Submission {
        tenant: tenant.to_owned(),
        from,
        to,
        text,
        client_ref: None,
        metadata,
        send_at,
        expires_at,
    })
}

/// The SMPP status for the core's refusal code.
pub fn refusal_status(code: &str) -> CommandStatus {
    match code {
        "invalid_address" | "no_route" => CommandStatus::EsmeRinvdstadr,
        "invalid_text" | "text_too_long" => CommandStatus::EsmeRinvmsglen,
        "rate_limited" => CommandStatus::EsmeRthrottled,
        _ => CommandStatus::EsmeRsubmitfail,
    }
}

/// Reads bytes as a carrier's bind would send them and takes every submit as far as
/// the core would see it (framing, PDU decoding, user data, concatenation, text,
/// addresses, times), without storing anything: the entry point of the `smpp_server_pdu`
/// fuzz target. Returns how many submissions it built. Never panics.
pub fn read_carrier_bytes(bytes: &[u8], max_len: u32) -> usize {
    use rusmpp::Pdu;
    let now = Utc::now();
    let mut reassembly = crate::reassembly::Reassembly::default();
    let mut built = 0;
    for command in crate::frame::read_all(bytes, max_len).into_iter().flatten() {
        let request = match command.pdu() {
            Some(Pdu::SubmitSm(p)) => SubmitRequest::from_submit_sm(p),
            Some(Pdu::DataSm(p)) => SubmitRequest::from_data_sm(p),
            Some(Pdu::SubmitMulti(p)) => SubmitRequest::from_submit_multi(p),
            _ => continue,
        };
        let Ok(request) = request else { continue };
        let (payload, first) = match request.part.clone() {
            None => (request.payload.clone(), request),
            Some((key, seq)) => {
                let payload = request.payload.clone();
                match reassembly.add(key, seq, payload, request, std::time::Instant::now()) {
                    crate::reassembly::Added::Held => continue,
                    crate::reassembly::Added::Complete(parts, _) => {
                        let mut payload = Vec::new();
                        let mut first = None;
                        for (bytes, request) in parts {
                            payload.extend_from_slice(&bytes);
                            first.get_or_insert(request);
                        }
                        let Some(first) = first else { continue };
                        (payload, first)
                    }
                }
            }
        };
        let Ok(text) = decode_text(first.data_coding, &payload) else {
            continue;
        };
        for dest in &first.destinations {
            if submission(&first, dest, text.clone(), "fuzz", "fuzz", now).is_ok() {
                built += 1;
            }
        }
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::TlvValue;

    const ESM_UDHI: u8 = 0x40;

    fn sme(ton: u8, addr: &str) -> SmeAddr {
        SmeAddr {
            ton,
            npi: 1,
            addr: addr.into(),
        }
    }

    /// Nasty carrier input never panics on the way to a submission (the fuzz target
    /// checks the same property on random bytes).
    #[test]
    fn nasty_carrier_bytes_never_panic() {
        fn pdu(command_id: u32, body: &[u8]) -> Vec<u8> {
            let mut v = (16 + body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&command_id.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            v.extend_from_slice(body);
            v
        }
        let head = b"\0\x01\x01123\0\x01\x01456\0";
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for (esm, dcs, sm) in [
            (
                0x40u8,
                0x08u8,
                &[0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 0xd8][..],
            ),
            (0x40, 0x00, &[0x05, 0x00, 0x03, 0x01, 0x02, 0x02, 0x1b][..]),
            (0x40, 0x00, &[0xff, 0x00][..]),
            (0x40, 0x00, &[0x06, 0x08, 0x04, 0xff, 0xff, 0x00, 0x00][..]),
            (0x00, 0xf4, &[0x80, 0x81][..]),
            (0x00, 0x00, &[0xff; 200][..]),
        ] {
            let mut body = head.to_vec();
            body.extend_from_slice(&[esm, 0, 0]);
            body.extend_from_slice(b"991231235959999+\x00000000000000000R\0");
            body.extend_from_slice(&[1, 0, dcs, 0, sm.len() as u8]);
            body.extend_from_slice(sm);
            corpus.push(pdu(0x04, &body));
        }
        // data_sm with a message_payload TLV whose length runs past the end.
        let mut data = b"\0\x01\x01123\0\x01\x01456\0\0\x01\x08".to_vec();
        data.extend_from_slice(&[0x04, 0x24, 0x00, 0x10, 0xd8, 0x3d]);
        corpus.push(pdu(0x103, &data));
        // submit_multi claiming 255 destinations.
        corpus.push(pdu(0x21, b"\0\x01\x01123\0\xff\x01\x01\x01"));
        let mut all = Vec::new();
        for input in &corpus {
            all.extend_from_slice(input);
            for cut in 0..input.len() {
                let _ = read_carrier_bytes(&input[..cut], 4096);
            }
            let _ = read_carrier_bytes(input, 4096);
        }
        let _ = read_carrier_bytes(&all, 4096);
    }

    #[test]
    fn international_numbers_get_a_plus() {
        assert_eq!(address(&sme(1, "14155550100")), "+14155550100");
        assert_eq!(address(&sme(1, "+14155550100")), "+14155550100");
        assert_eq!(address(&sme(0, "12345")), "12345");
        assert_eq!(address(&sme(5, "ACME")), "ACME");
    }

    #[test]
    fn codings() {
        assert_eq!(
            decode_text(0, &[0x48, 0x69, 0x1b, 0x65]).ok().as_deref(),
            Some("Hi€")
        );
        assert_eq!(
            decode_text(8, &[0xd8, 0x3d, 0xde, 0x00]).ok().as_deref(),
            Some("😀")
        );
        assert_eq!(decode_text(3, &[0xe9]).ok().as_deref(), Some("é"));
        assert_eq!(
            decode_text(4, b"x").err().map(|r| r.status),
            Some(CommandStatus::EsmeRinvdcs)
        );
        assert_eq!(
            decode_text(8, b"x").err().map(|r| r.status),
            Some(CommandStatus::EsmeRinvmsglen)
        );
    }

    #[test]
    fn udh_and_sar_parts() {
        let udh = [0x05, 0x00, 0x03, 0x2a, 0x02, 0x01, b'h', b'i'];
        let (payload, part) = user_data(ESM_UDHI, &udh, &[], "a", "b").unwrap_or_default();
        assert_eq!(payload, b"hi");
        assert_eq!(
            part.map(|(k, s)| (k.reference, k.total, s)),
            Some((0x2a, 2, 1))
        );
        let sar = [
            Tlv::new(TlvValue::SarMsgRefNum(7)),
            Tlv::new(TlvValue::SarTotalSegments(3)),
            Tlv::new(TlvValue::SarSegmentSeqnum(3)),
        ];
        let (_, part) = user_data(0, b"x", &sar, "a", "b").unwrap_or_default();
        assert_eq!(
            part.map(|(k, s)| (k.reference, k.total, s)),
            Some((7, 3, 3))
        );
        let bad = [0x05, 0x00, 0x03, 0x2a, 0x02];
        assert!(user_data(ESM_UDHI, &bad, &[], "a", "b").is_err());
        let bad_seq = [0x05, 0x00, 0x03, 0x2a, 0x02, 0x03, b'h'];
        // A part number above the total is ignored by the UDH reader: a whole message.
        let (_, part) = user_data(ESM_UDHI, &bad_seq, &[], "a", "b").unwrap_or_default();
        assert!(part.is_none());
    }
}
