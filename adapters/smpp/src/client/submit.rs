//! submit_sm PDUs for an outbound message: addresses with their TON and NPI, the parts of
//! its text, validity_period, registered_delivery; and command_status words for errors.

use chrono::{DateTime, Utc};

use rusmpp::CommandStatus;
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessagePayload, Npi, PriorityFlag, RegisteredDelivery,
    ReplaceIfPresentFlag, ServiceType, Ton,
};

use crate::concat::Part;
use crate::{SmppConnectorConfig, SmppValidity, time};

/// An address as (TON, NPI, digits or name): `+` numbers international/ISDN without the
/// `+`, other digits unknown/ISDN, anything else alphanumeric; `ton`/`npi` override.
pub fn sme(address: &str, ton: Option<u8>, npi: Option<u8>) -> (u8, u8, String) {
    let (t, n, a) = if let Some(digits) = address.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        (1, 1, digits.to_owned())
    } else if !address.is_empty() && address.bytes().all(|b| b.is_ascii_digit()) {
        (0, 1, address.to_owned())
    } else if address.is_empty() {
        (0, 0, String::new())
    } else {
        (5, 0, address.to_owned())
    };
    (ton.unwrap_or(t), npi.unwrap_or(n), a)
}

/// validity_period for a message that expires at `expires_at` (if ever), sent at `now`,
/// in the connector's chosen form.
pub fn validity_period(
    form: SmppValidity,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> EmptyOrFullCOctetString<17> {
    let field = match (form, expires_at) {
        (SmppValidity::None, _) | (_, None) => return EmptyOrFullCOctetString::empty(),
        (SmppValidity::Relative, Some(at)) => {
            time::format_relative((at - now).to_std().unwrap_or_default())
        }
        (SmppValidity::Absolute, Some(at)) => time::format(at),
    };
    // Both forms are 16 ASCII characters, which the type always takes.
    EmptyOrFullCOctetString::from_string(field).unwrap_or_else(|_| EmptyOrFullCOctetString::empty())
}

/// The submit_sm for one part of a message from `from` to `to`.
pub fn submit_sm(
    config: &SmppConnectorConfig,
    from: &str,
    to: &str,
    part: &Part,
    validity: &EmptyOrFullCOctetString<17>,
) -> Result<SubmitSm, String> {
    let (source_ton, source_npi, source) = sme(from, config.source_ton, config.source_npi);
    let (dest_ton, dest_npi, destination) = sme(to, config.destination_ton, config.destination_npi);
    let source_addr =
        COctetString::from_string(source).map_err(|e| format!("source_addr {from:?}: {e}"))?;
    let destination_addr = COctetString::from_string(destination)
        .map_err(|e| format!("destination_addr {to:?}: {e}"))?;
    let short_message = OctetString::from_vec(part.short_message.clone())
        .map_err(|e| format!("short_message: {e}"))?;
    let mut tlvs = Vec::new();
    if let Some((reference, total, seq)) = part.sar {
        tlvs.push(MessageSubmissionRequestTlvValue::SarMsgRefNum(reference));
        tlvs.push(MessageSubmissionRequestTlvValue::SarTotalSegments(total));
        tlvs.push(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(seq));
    }
    if let Some(payload) = &part.message_payload {
        tlvs.push(MessageSubmissionRequestTlvValue::MessagePayload(
            MessagePayload::new(AnyOctetString::from_slice(payload)),
        ));
    }
    Ok(SubmitSm::new(
        ServiceType::default(),
        Ton::from(source_ton),
        Npi::from(source_npi),
        source_addr,
        Ton::from(dest_ton),
        Npi::from(dest_npi),
        destination_addr,
        EsmClass::from(part.esm_class),
        0,
        PriorityFlag::default(),
        EmptyOrFullCOctetString::empty(),
        validity.clone(),
        RegisteredDelivery::from(config.registered_delivery),
        ReplaceIfPresentFlag::default(),
        DataCoding::from(part.data_coding),
        0,
        short_message,
        tlvs,
    ))
}

/// A command_status as written in errors: `0x00000058`.
pub fn status_code(status: u32) -> String {
    format!("0x{status:08X}")
}

/// A command_status's name in the specification's spelling (`ESME_RTHROTTLED`), or
/// `unknown` for a value it does not name.
pub fn status_name(status: u32) -> String {
    match CommandStatus::from(status) {
        CommandStatus::Other(_) => "unknown".to_owned(),
        known => {
            let word = format!("{known:?}").to_ascii_uppercase();
            match word.strip_prefix("ESME") {
                Some(rest) => format!("ESME_{rest}"),
                None => word,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            sme("+14155550100", None, None),
            (1, 1, "14155550100".into())
        );
        assert_eq!(sme("12345", None, None), (0, 1, "12345".into()));
        assert_eq!(sme("ACME", None, None), (5, 0, "ACME".into()));
        assert_eq!(sme("+1", Some(2), Some(9)), (2, 9, "1".into()));
    }

    #[test]
    fn validity_forms() {
        use chrono::TimeZone;
        let now = Utc
            .with_ymd_and_hms(2026, 12, 6, 10, 0, 0)
            .single()
            .unwrap_or_default();
        let at = now + chrono::Duration::seconds(3 * 3600 + 30);
        let field = |form, at| validity_period(form, at, now).to_string();
        assert_eq!(field(SmppValidity::Relative, Some(at)), "000000030030000R");
        assert_eq!(field(SmppValidity::Absolute, Some(at)), "261206130030000+");
        assert_eq!(field(SmppValidity::None, Some(at)), "");
        assert_eq!(field(SmppValidity::Relative, None), "");
        // Already past when sent: the shortest period rather than none at all.
        let past = now - chrono::Duration::seconds(5);
        assert_eq!(
            field(SmppValidity::Relative, Some(past)),
            "000000000001000R"
        );
    }

    #[test]
    fn status_words() {
        assert_eq!(status_code(0x58), "0x00000058");
        assert_eq!(status_name(0x58), "ESME_RTHROTTLED");
        assert_eq!(status_name(0x0b), "ESME_RINVDSTADR");
        assert_eq!(status_name(0x4242), "unknown");
    }
}
