//! The notices an account is owed, sent as deliver_sm to its receiver binds: delivery
//! receipts for the messages it submitted, and messages received for its tenant. A
//! notice is marked done only after the ESME answered ESME_ROK; otherwise its lease runs
//! out and it is sent again, so a receiver that is not bound loses nothing.

use std::sync::Arc;
use std::time::Duration;

use rusmpp::CommandStatus;
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, Npi, PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag, ServiceType,
    Ton,
};
use switchboard_adapter::{Notice, NoticeKind, Shutdown};
use switchboard_model::text::{self, Concat, Encoding};
use switchboard_model::{Message, MessageStatus};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::receipt::{self, Receipt};
use crate::server::Shared;
use crate::server::accounts::Account;
use crate::server::session::{DeliverError, message_state};

/// esm_class of a delivery receipt (SMSC delivery receipt, bits 2-5 = 0001).
const ESM_RECEIPT: u8 = 0x04;
/// esm_class UDH indicator.
const ESM_UDHI: u8 = 0x40;
/// How often to look for notices whose lease ran out, besides being woken.
const POLL: Duration = Duration::from_secs(2);

/// Delivers the account's notices for as long as the gateway runs.
pub async fn run(shared: Arc<Shared>, account: Arc<Account>, mut shutdown: Shutdown) {
    let notices = shared.core.notices.clone();
    let changed = notices.changed();
    let mut registered = false;
    let mut reference: u16 = 0;
    loop {
        if shutdown.is_stopping() {
            return;
        }
        if !registered {
            match notices.register(&account.recipient).await {
                Ok(()) => registered = true,
                Err(e) => {
                    warn!(system_id = %account.config.system_id, error = %e, "smpp server: cannot register for notices; retrying");
                    tokio::select! {
                        _ = shutdown.stopped() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        }
        if !account.has_receiver() {
            tokio::select! {
                _ = shutdown.stopped() => return,
                _ = account.bound.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let limit = (account.config.window as usize).clamp(1, 100);
        let lease = shared.settings.response_timeout * 3;
        let taken = notices
            .take(&account.recipient, limit, lease, account.expiry())
            .await;
        let batch = match taken {
            Ok(batch) => batch,
            Err(e) => {
                warn!(system_id = %account.config.system_id, error = %e, "smpp server: cannot take notices");
                tokio::select! {
                    _ = shutdown.stopped() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.stopped() => return,
                _ = &mut notified => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let mut sends = JoinSet::new();
        let mut done = Vec::new();
        for notice in batch {
            let pdus = match deliver_sms(&account, &notice, &mut reference) {
                Some(pdus) => pdus,
                None => {
                    // Not asked for (registered_delivery) or nothing to say.
                    done.push(notice.id);
                    continue;
                }
            };
            let account = account.clone();
            let timeout = shared.settings.response_timeout;
            sends.spawn(async move {
                for pdu in pdus {
                    let bind = account.next_receiver()?;
                    match bind.deliver(pdu, timeout).await {
                        Ok(CommandStatus::EsmeRok) => {}
                        Ok(status) => {
                            info!(system_id = %account.config.system_id, notice = %notice.id, ?status, "smpp server: deliver_sm refused; sent again later");
                            return None;
                        }
                        Err(DeliverError::Closed) => return None,
                        Err(DeliverError::Timeout) => {
                            info!(system_id = %account.config.system_id, notice = %notice.id, "smpp server: no deliver_sm_resp in time; sent again later");
                            return None;
                        }
                    }
                }
                Some(notice.id)
            });
        }
        while let Some(sent) = sends.join_next().await {
            if let Ok(Some(id)) = sent {
                done.push(id);
            }
        }
        if !done.is_empty()
            && let Err(e) = notices.done(&done).await
        {
            // They will be sent again when their lease runs out: at least once.
            warn!(system_id = %account.config.system_id, error = %e, "smpp server: cannot mark notices done");
        }
    }
}

/// The deliver_sm PDUs for one notice (several for a long inbound message), or `None`
/// when the account did not ask for it.
pub fn deliver_sms(
    account: &Account,
    notice: &Notice,
    reference: &mut u16,
) -> Option<Vec<DeliverSm>> {
    match notice.kind {
        NoticeKind::Status => receipt(&notice.message).map(|pdu| vec![pdu]),
        NoticeKind::Received => {
            let _ = account;
            Some(inbound(&notice.message, reference))
        }
    }
}

/// The receipt's `stat` word for a final status; `None` for statuses no receipt is sent
/// for (`read` follows a `delivered` that was reported already).
pub fn stat(status: MessageStatus) -> Option<&'static str> {
    Some(match status {
        MessageStatus::Delivered => "DELIVRD",
        MessageStatus::Undelivered => "UNDELIV",
        MessageStatus::Expired => "EXPIRED",
        MessageStatus::Failed => "REJECTD",
        MessageStatus::Canceled => "DELETED",
        _ => return None,
    })
}

/// Whether `registered_delivery` asks for a receipt at this status: 1 any final status,
/// 2 failures only, 3 success only (SMPP 5.0).
pub fn wanted(registered_delivery: u8, status: MessageStatus) -> bool {
    let success = status == MessageStatus::Delivered;
    match registered_delivery & 0x03 {
        1 => true,
        2 => !success,
        3 => success,
        _ => false,
    }
}

/// The usual receipt text: `id:… sub:001 dlvrd:001 submit date:… done date:… stat:…
/// err:… text:…`, with the message's API id.
pub fn receipt_text(message: &Message, stat: &str) -> String {
    let delivered = u8::from(message.status == MessageStatus::Delivered);
    let err = message
        .error
        .as_ref()
        .and_then(|e| e.code.parse::<u16>().ok())
        .map_or_else(|| "000".to_owned(), |code| format!("{code:03}"));
    let text: String = message
        .text
        .chars()
        .take(20)
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    receipt::format(&Receipt {
        id: message.id.to_string(),
        sub: "001".into(),
        dlvrd: format!("{delivered:03}"),
        submit_date: receipt::format_date(message.created_at),
        done_date: receipt::format_date(message.updated_at),
        stat: stat.into(),
        err,
        text,
    })
}

/// An address for source_addr/destination_addr with its TON and NPI: `+` numbers as
/// international, other digits as unknown, anything else alphanumeric (cut to fit).
fn sme(address: Option<&str>) -> (Ton, Npi, COctetString<1, 21>) {
    let address = address.unwrap_or("");
    let ascii: String = address.chars().filter(|c| c.is_ascii_graphic()).collect();
    if let Some(digits) = ascii.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return (
            Ton::International,
            Npi::Isdn,
            COctetString::from_string(digits.chars().take(20).collect()).unwrap_or_default(),
        );
    }
    if !ascii.is_empty() && ascii.bytes().all(|b| b.is_ascii_digit()) {
        return (
            Ton::Unknown,
            Npi::Isdn,
            COctetString::from_string(ascii.chars().take(20).collect()).unwrap_or_default(),
        );
    }
    (
        Ton::Alphanumeric,
        Npi::Unknown,
        COctetString::from_string(ascii.chars().take(20).collect()).unwrap_or_default(),
    )
}

#[allow(clippy::too_many_arguments)]
fn deliver_sm(
    source: Option<&str>,
    destination: Option<&str>,
    esm_class: u8,
    data_coding: u8,
    short_message: &[u8],
    tlvs: Vec<MessageDeliveryRequestTlvValue>,
) -> DeliverSm {
    let (source_ton, source_npi, source_addr) = sme(source);
    let (dest_ton, dest_npi, destination_addr) = sme(destination);
    DeliverSm::new(
        ServiceType::default(),
        source_ton,
        source_npi,
        source_addr,
        dest_ton,
        dest_npi,
        destination_addr,
        EsmClass::from(esm_class),
        0,
        PriorityFlag::default(),
        EmptyOrFullCOctetString::empty(),
        EmptyOrFullCOctetString::empty(),
        RegisteredDelivery::default(),
        ReplaceIfPresentFlag::default(),
        DataCoding::from(data_coding),
        0,
        OctetString::from_vec(short_message.to_vec()).unwrap_or_default(),
        tlvs,
    )
}

/// The receipt deliver_sm for a message this account submitted, if its
/// registered_delivery asks for one at this status.
pub fn receipt(message: &Message) -> Option<DeliverSm> {
    let registered_delivery = message
        .metadata
        .get("smpp.registered_delivery")
        .and_then(|r| r.parse::<u8>().ok())
        .unwrap_or(1);
    let stat = stat(message.status)?;
    if !wanted(registered_delivery, message.status) {
        return None;
    }
    let text = receipt_text(message, stat);
    let id = message.id.to_string();
    let mut tlvs = vec![MessageDeliveryRequestTlvValue::MessageState(message_state(
        message.status,
    ))];
    if let Ok(id) = COctetString::from_string(id) {
        tlvs.insert(0, MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    // The receipt comes from the destination and goes to the original sender.
    Some(deliver_sm(
        Some(message.to.as_str()),
        message.from.as_deref(),
        ESM_RECEIPT,
        0,
        text.as_bytes(),
        tlvs,
    ))
}

/// The deliver_sm parts of a message received for the tenant: GSM 7-bit when the text
/// allows, else UCS-2; long texts as concatenated parts with a UDH.
pub fn inbound(message: &Message, reference: &mut u16) -> Vec<DeliverSm> {
    let mut encoding = text::choose_encoding(&message.text);
    if !matches!(encoding, Encoding::Gsm7 | Encoding::Ucs2) {
        encoding = Encoding::Ucs2;
    }
    let parts = text::split(&message.text, encoding)
        .or_else(|_| text::split(&message.text, Encoding::Ucs2))
        .unwrap_or_default();
    let data_coding = encoding.data_coding();
    let total = u8::try_from(parts.len()).unwrap_or(u8::MAX);
    if parts.len() <= 1 {
        let payload = parts.into_iter().next().unwrap_or_default();
        return vec![deliver_sm(
            message.from.as_deref(),
            Some(message.to.as_str()),
            0,
            data_coding,
            &payload,
            Vec::new(),
        )];
    }
    *reference = reference.wrapping_add(1);
    let this = *reference;
    debug!(message = %message.id, parts = total, "smpp server: inbound message in parts");
    parts
        .into_iter()
        .take(usize::from(u8::MAX))
        .enumerate()
        .map(|(i, payload)| {
            let mut bytes = text::concat_udh(Concat {
                reference: this & 0xff,
                total,
                seq: u8::try_from(i + 1).unwrap_or(u8::MAX),
                wide_reference: false,
            });
            bytes.extend_from_slice(&payload);
            deliver_sm(
                message.from.as_deref(),
                Some(message.to.as_str()),
                ESM_UDHI,
                data_coding,
                &bytes,
                Vec::new(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use switchboard_model::address::Channel;
    use switchboard_model::message::{Direction, ErrorInfo};

    fn message(status: MessageStatus, text: &str) -> Message {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let mut m = Message::new(
            "acme",
            Direction::Outbound,
            Channel::Sms,
            "+4915112345678",
            text,
            status,
            now,
        );
        m.from = Some("+14155550100".into());
        m
    }

    #[test]
    fn receipt_text_and_tlvs() {
        let mut m = message(
            MessageStatus::Delivered,
            "Hello there, this is longer than twenty",
        );
        m.metadata
            .insert("smpp.registered_delivery".into(), "1".into());
        let text = receipt_text(&m, "DELIVRD");
        assert!(
            text.starts_with(&format!("id:{} sub:001 dlvrd:001 submit date:", m.id)),
            "{text}"
        );
        assert!(
            text.ends_with("stat:DELIVRD err:000 text:Hello there, this is"),
            "{text}"
        );
        let Some(pdu) = receipt(&m) else {
            panic!("a receipt")
        };
        assert_eq!(u8::from(pdu.esm_class), ESM_RECEIPT);
        assert_eq!(pdu.source_addr.as_str(), "4915112345678");
        assert_eq!(pdu.destination_addr.as_str(), "14155550100");
        assert_eq!(pdu.tlvs().len(), 2);
    }

    #[test]
    fn registered_delivery_is_honoured() {
        let mut m = message(MessageStatus::Delivered, "x");
        m.metadata
            .insert("smpp.registered_delivery".into(), "2".into());
        assert!(receipt(&m).is_none(), "failure only");
        let mut m = message(MessageStatus::Undelivered, "x");
        m.metadata
            .insert("smpp.registered_delivery".into(), "2".into());
        m.error = Some(ErrorInfo {
            code: "11".into(),
            detail: "absent".into(),
        });
        let Some(pdu) = receipt(&m) else {
            panic!("a receipt")
        };
        let text = String::from_utf8_lossy(pdu.short_message().as_ref()).into_owned();
        assert!(text.contains("stat:UNDELIV err:011"), "{text}");
        assert!(receipt(&message(MessageStatus::Read, "x")).is_none());
    }

    #[test]
    fn long_inbound_is_split_with_udh() {
        let mut reference = 0;
        let text = "😀".repeat(50);
        let parts = inbound(&message(MessageStatus::Received, &text), &mut reference);
        assert_eq!(parts.len(), 2);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(u8::from(p.esm_class) & ESM_UDHI, ESM_UDHI);
            assert_eq!(u8::from(p.data_coding), 8);
            let (concat, _) = text::parse_udh(p.short_message().as_ref()).unwrap_or((None, &[]));
            assert_eq!(concat.map(|c| (c.total, c.seq)), Some((2, i as u8 + 1)));
        }
        let short = inbound(&message(MessageStatus::Received, "Hi {€}"), &mut reference);
        assert_eq!(short.len(), 1);
        assert_eq!(u8::from(short[0].data_coding), 0);
    }
}
