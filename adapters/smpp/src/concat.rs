//! Text in and out of short_message: the coding chosen for a text, long texts cut into
//! parts (UDH, SAR TLVs or one message_payload), and the user data of an incoming PDU
//! read back into a payload and its place among the parts of its message.
//!
//! Cutting and counting are the model's ([`text::split`] never splits a GSM escape pair
//! or a UTF-16 surrogate pair); reassembly of parts is [`crate::reassembly`].

use rusmpp::tlvs::{Tlv, TlvValue};
use switchboard_model::text::{self, Concat, EncodeError, Encoding};

/// A text that cannot be sent as parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// A character the forced coding cannot write.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// More parts than a concatenated SMS can have (255).
    #[error("the text needs {0} parts; at most 255 can be joined")]
    TooManyParts(usize),
}

use crate::{SmppCoding, SmppLongMessages};

/// esm_class bit: short_message starts with a user data header.
pub const ESM_UDHI: u8 = 0x40;

/// How a connector writes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOptions {
    /// The coding, or `Auto`.
    pub coding: SmppCoding,
    /// GSM 7-bit packed rather than one septet per octet.
    pub gsm_packed: bool,
    /// How long texts go.
    pub long_messages: SmppLongMessages,
    /// A 16-bit UDH reference rather than an 8-bit one.
    pub wide_reference: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            coding: SmppCoding::Auto,
            gsm_packed: false,
            long_messages: SmppLongMessages::Udh,
            wide_reference: false,
        }
    }
}

/// One submit_sm's worth of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// data_coding.
    pub data_coding: u8,
    /// esm_class bits this part needs (UDHI).
    pub esm_class: u8,
    /// short_message (with its UDH when `esm_class` has UDHI).
    pub short_message: Vec<u8>,
    /// sar_msg_ref_num, sar_total_segments, sar_segment_seqnum.
    pub sar: Option<(u16, u8, u8)>,
    /// message_payload (short_message is then empty).
    pub message_payload: Option<Vec<u8>>,
}

/// The coding for `text`: the forced one, or GSM 7-bit when every character has a
/// GSM 03.38 code, else Latin-1 when every character is in ISO-8859-1, else UCS-2.
pub fn choose(text: &str, coding: SmppCoding) -> Encoding {
    match coding {
        SmppCoding::Gsm7 => Encoding::Gsm7,
        SmppCoding::Latin1 => Encoding::Latin1,
        SmppCoding::Ucs2 => Encoding::Ucs2,
        SmppCoding::Auto => match text::choose_encoding(text) {
            Encoding::Gsm7 => Encoding::Gsm7,
            _ if text.chars().all(|c| u32::from(c) <= 0xff) => Encoding::Latin1,
            _ => Encoding::Ucs2,
        },
    }
}

/// The parts `text` goes in. `reference` is the concatenation reference of this message
/// (its low byte only with an 8-bit UDH reference). Fails when the text cannot be
/// written in a forced coding or needs more than 255 parts.
pub fn parts(
    text: &str,
    options: &TextOptions,
    reference: u16,
) -> Result<(Encoding, Vec<Part>), PartsError> {
    let encoding = choose(text, options.coding);
    let data_coding = encoding.data_coding();
    let packed = options.gsm_packed && encoding == Encoding::Gsm7;
    let pack = |septets: &[u8], fill: u8| {
        if packed {
            text::pack_septets_with_fill(septets, fill)
        } else {
            septets.to_vec()
        }
    };
    if options.long_messages == SmppLongMessages::Payload {
        let bytes = text::encode(text, encoding)?;
        let single = text::segment_count(text, encoding).segments <= 1;
        let bytes = pack(&bytes, 0);
        return Ok((
            encoding,
            vec![if single {
                Part {
                    data_coding,
                    esm_class: 0,
                    short_message: bytes,
                    sar: None,
                    message_payload: None,
                }
            } else {
                Part {
                    data_coding,
                    esm_class: 0,
                    short_message: Vec::new(),
                    sar: None,
                    message_payload: Some(bytes),
                }
            }],
        ));
    }
    let payloads = text::split(text, encoding)?;
    let total =
        u8::try_from(payloads.len()).map_err(|_| PartsError::TooManyParts(payloads.len()))?;
    if total <= 1 {
        let short_message = pack(payloads.first().map_or(&[][..], Vec::as_slice), 0);
        return Ok((
            encoding,
            vec![Part {
                data_coding,
                esm_class: 0,
                short_message,
                sar: None,
                message_payload: None,
            }],
        ));
    }
    let reference = if options.wide_reference || options.long_messages == SmppLongMessages::Sar {
        reference
    } else {
        reference & 0xff
    };
    let parts = payloads
        .iter()
        .zip(1..=total)
        .map(|(payload, seq)| match options.long_messages {
            SmppLongMessages::Sar => Part {
                data_coding,
                esm_class: 0,
                short_message: pack(payload, 0),
                sar: Some((reference, total, seq)),
                message_payload: None,
            },
            _ => {
                let mut short_message = text::concat_udh(Concat {
                    reference,
                    total,
                    seq,
                    wide_reference: options.wide_reference,
                });
                let fill = text::fill_bits_after_udh(short_message.len());
                short_message.extend(pack(payload, fill));
                Part {
                    data_coding,
                    esm_class: ESM_UDHI,
                    short_message,
                    sar: None,
                    message_payload: None,
                }
            }
        })
        .collect();
    Ok((encoding, parts))
}

/// The user data of an incoming PDU: its payload without UDH, and which part of which
/// message it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The text bytes.
    pub payload: Vec<u8>,
    /// (reference, total, seq) when it is one part of several.
    pub part: Option<(u16, u8, u8)>,
}

/// Reads short_message or message_payload, a UDH when esm_class says there is one, and
/// the SAR TLVs. A bad UDH or an impossible part number is an error with its reason.
pub fn user_data(esm_class: u8, short_message: &[u8], tlvs: &[Tlv]) -> Result<UserData, String> {
    let payload_tlv = tlvs.iter().find_map(|tlv| match tlv.value() {
        Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref()),
        _ => None,
    });
    let raw: &[u8] = match (short_message.is_empty(), payload_tlv) {
        (true, Some(p)) => p,
        (false, Some(_)) => return Err("both short_message and message_payload".into()),
        _ => short_message,
    };
    let (payload, mut part) = if esm_class & ESM_UDHI != 0 {
        let (concat, body) = text::parse_udh(raw).map_err(|e| format!("UDH: {e}"))?;
        (body.to_vec(), concat.map(|c| (c.reference, c.total, c.seq)))
    } else {
        (raw.to_vec(), None)
    };
    if part.is_none() {
        let (mut reference, mut total, mut seq) = (None, None, None);
        for tlv in tlvs {
            match tlv.value() {
                Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
                Some(TlvValue::SarTotalSegments(t)) => total = Some(*t),
                Some(TlvValue::SarSegmentSeqnum(s)) => seq = Some(*s),
                _ => {}
            }
        }
        if let (Some(r), Some(t), Some(s)) = (reference, total, seq) {
            part = Some((r, t, s));
        }
    }
    match part {
        Some((_, total, seq)) if total > 1 && (seq == 0 || seq > total) => {
            Err(format!("part {seq} of {total}"))
        }
        Some((_, total, _)) if total <= 1 => Ok(UserData {
            payload,
            part: None,
        }),
        part => Ok(UserData { payload, part }),
    }
}

/// The text of `payload` in `data_coding`; `None` for a coding that is not text (binary)
/// or a UCS-2 payload of odd length.
pub fn decode_text(data_coding: u8, payload: &[u8]) -> Option<String> {
    let encoding = crate::server::submit::encoding(data_coding)?;
    if encoding == Encoding::Ucs2 && !payload.len().is_multiple_of(2) {
        return None;
    }
    Some(text::decode(payload, encoding))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use rusmpp::tlvs::{Tlv, TlvValue};
    use rusmpp::types::AnyOctetString;
    use rusmpp::values::MessagePayload;

    use super::*;

    fn opts(long: SmppLongMessages, wide: bool) -> TextOptions {
        TextOptions {
            long_messages: long,
            wide_reference: wide,
            ..TextOptions::default()
        }
    }

    fn tlvs(part: &Part) -> Vec<Tlv> {
        let mut tlvs = Vec::new();
        if let Some((r, t, s)) = part.sar {
            tlvs.push(Tlv::from(TlvValue::SarMsgRefNum(r)));
            tlvs.push(Tlv::from(TlvValue::SarTotalSegments(t)));
            tlvs.push(Tlv::from(TlvValue::SarSegmentSeqnum(s)));
        }
        if let Some(p) = &part.message_payload {
            tlvs.push(Tlv::from(TlvValue::MessagePayload(MessagePayload::new(
                AnyOctetString::from_slice(p),
            ))));
        }
        tlvs
    }

    /// Reads parts back the way an SMSC would and joins them.
    fn read_back(parts: &[Part]) -> Option<String> {
        let mut bytes = Vec::new();
        let mut seen = Vec::new();
        for p in parts {
            let data = user_data(p.esm_class, &p.short_message, &tlvs(p)).ok()?;
            seen.push(data.part.map(|(_, t, s)| (t, s)));
            bytes.extend(data.payload);
        }
        if parts.len() > 1 {
            let total = u8::try_from(parts.len()).ok()?;
            let want: Vec<_> = (1..=total).map(|s| Some((total, s))).collect();
            if seen != want {
                return None;
            }
        }
        decode_text(parts.first()?.data_coding, &bytes)
    }

    #[test]
    fn coding_per_text() {
        assert_eq!(choose("Hello {world} €", SmppCoding::Auto), Encoding::Gsm7);
        assert_eq!(choose("Grüße, señor ½", SmppCoding::Auto), Encoding::Latin1);
        assert_eq!(choose("Привет 🙂", SmppCoding::Auto), Encoding::Ucs2);
        assert_eq!(choose("Hello", SmppCoding::Ucs2), Encoding::Ucs2);
        assert!(
            parts(
                "🙂",
                &TextOptions {
                    coding: SmppCoding::Latin1,
                    ..TextOptions::default()
                },
                1
            )
            .is_err()
        );
    }

    #[test]
    fn gsm_escape_pairs_never_split() {
        // 152 plain characters then '€' (an escape pair) lands on the part boundary.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let (enc, parts) =
            parts(&text, &TextOptions::default(), 0x1234).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(enc, Encoding::Gsm7);
        assert_eq!(parts.len(), 2);
        // 6 octets of UDH with an 8-bit reference (its low byte).
        assert_eq!(&parts[0].short_message[..6], &[5, 0, 3, 0x34, 2, 1]);
        assert_eq!(parts[0].short_message.len(), 6 + 152);
        assert_eq!(read_back(&parts).as_deref(), Some(text.as_str()));
    }

    #[test]
    fn ucs2_emoji_in_sar_and_payload() {
        let text = "🙂".repeat(40);
        let (_, sar) = parts(&text, &opts(SmppLongMessages::Sar, false), 0x1234).unwrap();
        assert_eq!(sar.len(), 2);
        assert_eq!(sar[1].sar, Some((0x1234, 2, 2)));
        assert_eq!(read_back(&sar).as_deref(), Some(text.as_str()));
        let (_, payload) = parts(&text, &opts(SmppLongMessages::Payload, false), 1).unwrap();
        assert_eq!(payload.len(), 1);
        assert!(payload[0].short_message.is_empty());
        assert_eq!(read_back(&payload).as_deref(), Some(text.as_str()));
    }

    #[test]
    fn wide_reference_udh() {
        let text = "x".repeat(200);
        let (_, p) = parts(&text, &opts(SmppLongMessages::Udh, true), 0xabcd).unwrap();
        assert_eq!(&p[1].short_message[..7], &[6, 8, 4, 0xab, 0xcd, 2, 2]);
    }

    #[test]
    fn packed_gsm_is_seven_eighths() {
        let o = TextOptions {
            gsm_packed: true,
            ..TextOptions::default()
        };
        let (_, p) = parts(&"a".repeat(160), &o, 0).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].short_message.len(), 140);
    }

    #[test]
    fn bad_user_data() {
        assert!(user_data(ESM_UDHI, &[9, 0, 3], &[]).is_err());
        assert!(user_data(ESM_UDHI, &[], &[]).is_err());
        let sar = [
            Tlv::from(TlvValue::SarMsgRefNum(1)),
            Tlv::from(TlvValue::SarTotalSegments(2)),
            Tlv::from(TlvValue::SarSegmentSeqnum(3)),
        ];
        assert!(user_data(0, b"x", &sar).is_err());
        assert_eq!(decode_text(8, &[0, 0x41, 0]), None);
        assert_eq!(decode_text(4, b"x"), None);
    }

    proptest! {
        #[test]
        fn any_text_round_trips(
            text in "[a-zA-Z0-9 €{}\\[\\]~^|\\\\äöüéèçñ¿¡😀🙂Ж中]{0,400}",
            long in prop_oneof![Just(SmppLongMessages::Udh), Just(SmppLongMessages::Sar), Just(SmppLongMessages::Payload)],
            wide in any::<bool>(),
            reference in any::<u16>(),
        ) {
            let (_, p) = parts(&text, &opts(long, wide), reference).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(read_back(&p), Some(text));
        }
    }
}
