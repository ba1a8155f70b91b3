//! Delivery receipts: the usual receipt text (`id:… sub:… dlvrd:… submit date:… done
//! date:… stat:… err:… text:…`, SMPP 3.4 appendix B), the `stat` words and
//! `message_state` values and what they mean for a message, and message ids compared
//! the way SMSCs write them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use switchboard_model::MessageStatus;

/// A delivery receipt, as its text carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The message id the SMSC gave in submit_sm_resp.
    pub id: String,
    /// Parts submitted (`sub`).
    pub sub: String,
    /// Parts delivered (`dlvrd`).
    pub dlvrd: String,
    /// `submit date`, as written (`YYMMDDhhmm` or `YYMMDDhhmmss`).
    pub submit_date: String,
    /// `done date`, as written.
    pub done_date: String,
    /// `stat`: DELIVRD, UNDELIV, EXPIRED, ...
    pub stat: String,
    /// `err`: the network or SMSC error code.
    pub err: String,
    /// The first characters of the message.
    pub text: String,
}

/// Writes the receipt text. Fields left empty are written as SMSCs do: `sub` and
/// `dlvrd` as `001`, `err` as `000`.
pub fn format(r: &Receipt) -> String {
    let or = |v: &str, d: &'static str| {
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    format!(
        "id:{} sub:{} dlvrd:{} submit date:{} done date:{} stat:{} err:{} text:{}",
        r.id,
        or(&r.sub, "001"),
        or(&r.dlvrd, "001"),
        r.submit_date,
        r.done_date,
        r.stat,
        or(&r.err, "000"),
        r.text
    )
}

/// The receipt date form, `YYMMDDhhmm`.
pub fn format_date(at: DateTime<Utc>) -> String {
    at.format("%y%m%d%H%M").to_string()
}

/// The field names, longest first so that `submit date` is not read as something else.
const KEYS: [&str; 8] = [
    "submit date",
    "done date",
    "dlvrd",
    "stat",
    "text",
    "sub",
    "err",
    "id",
];

/// Reads a receipt text: field names in any case and order, missing fields left empty,
/// `text:` taking the rest of the line. `None` when it has no `id` or no `stat`, so an
/// ordinary message is not taken for a receipt.
pub fn parse(s: &str) -> Option<Receipt> {
    let lower = s.to_ascii_lowercase();
    // Where each field starts: a key at the start or after a blank, followed by ':'.
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        let at_word = i == 0 || lower.as_bytes().get(i - 1).is_some_and(|b| *b == b' ');
        if at_word
            && lower.is_char_boundary(i)
            && let Some(key) = KEYS.iter().find(|k| {
                lower[i..].starts_with(*k) && lower.as_bytes().get(i + k.len()) == Some(&b':')
            })
        {
            found.push((i, i + key.len() + 1, key));
            if *key == "text" {
                break;
            }
            i += key.len() + 1;
            continue;
        }
        i += 1;
    }
    let mut r = Receipt::default();
    for (n, (_, value_start, key)) in found.iter().enumerate() {
        let end = found.get(n + 1).map_or(s.len(), |next| next.0);
        let value = s.get(*value_start..end).unwrap_or("");
        let value = if *key == "text" {
            value.to_owned()
        } else {
            value.trim().to_owned()
        };
        let slot = match *key {
            "id" => &mut r.id,
            "sub" => &mut r.sub,
            "dlvrd" => &mut r.dlvrd,
            "submit date" => &mut r.submit_date,
            "done date" => &mut r.done_date,
            "stat" => &mut r.stat,
            "err" => &mut r.err,
            _ => &mut r.text,
        };
        if slot.is_empty() {
            *slot = value;
        }
    }
    r.stat = r.stat.to_ascii_uppercase();
    (!r.id.is_empty() && !r.stat.is_empty()).then_some(r)
}

/// Reads a receipt date: `YYMMDDhhmm` or `YYMMDDhhmmss`, in UTC.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if !(s.len() == 10 || s.len() == 12) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |from: usize| s.get(from..from + 2).and_then(|v| v.parse::<u32>().ok());
    let date = NaiveDate::from_ymd_opt(2000 + i32::try_from(n(0)?).ok()?, n(2)?, n(4)?)?;
    let seconds = if s.len() == 12 { n(10)? } else { 0 };
    Some(date.and_hms_opt(n(6)?, n(8)?, seconds)?.and_utc())
}

/// What a `stat` word says of the message: `None` for states that are not final
/// (ENROUTE, ACCEPTD, SCHEDULED, UNKNOWN) or not known.
pub fn status_of_stat(stat: &str) -> Option<MessageStatus> {
    match stat.trim().to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Some(MessageStatus::Delivered),
        "UNDELIV" | "UNDELIVERABLE" | "REJECTD" | "REJECTED" | "DELETED" => {
            Some(MessageStatus::Undelivered)
        }
        "EXPIRED" => Some(MessageStatus::Expired),
        _ => None,
    }
}

/// The `stat` word of a `message_state` TLV value (SMPP 3.4 section 5.2.28).
pub fn stat_of_message_state(state: u8) -> Option<&'static str> {
    Some(match state {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        7 => "UNKNOWN",
        8 => "REJECTD",
        9 => "SKIPPED",
        _ => return None,
    })
}

/// The `message_state` TLV value of a `stat` word.
pub fn message_state_of_stat(stat: &str) -> Option<u8> {
    (0..=9).find(|s| stat_of_message_state(*s).is_some_and(|w| w.eq_ignore_ascii_case(stat.trim())))
}

/// How a connector's SMSC writes message ids in submit_sm_resp and in receipts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Compared without case, surrounding blanks or leading zeros.
    #[default]
    Auto,
    /// Both are hexadecimal numbers.
    Hex,
    /// Both are decimal numbers.
    Decimal,
    /// Hexadecimal in submit_sm_resp, decimal in receipts.
    HexSubmitDecimalReceipt,
    /// Decimal in submit_sm_resp, hexadecimal in receipts.
    DecimalSubmitHexReceipt,
    /// Compared exactly as written.
    Exact,
}

/// Where an id was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// submit_sm_resp message_id.
    SubmitResp,
    /// A receipt (receipted_message_id or the text's `id:`).
    Receipt,
}

/// The form an id is stored and matched in: the same for an id from submit_sm_resp and
/// from its receipt. Numbers are written in decimal without leading zeros; an id that
/// is not a number of the expected base falls back to the `auto` form.
pub fn normalise_id(id: &str, format: IdFormat, source: IdSource) -> String {
    let id = id.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let radix = match (format, source) {
        (IdFormat::Exact, _) => return id.to_owned(),
        (IdFormat::Auto, _) => None,
        (IdFormat::Hex, _)
        | (IdFormat::HexSubmitDecimalReceipt, IdSource::SubmitResp)
        | (IdFormat::DecimalSubmitHexReceipt, IdSource::Receipt) => Some(16),
        _ => Some(10),
    };
    if let Some(radix) = radix
        && let Ok(n) = u128::from_str_radix(id, radix)
    {
        return n.to_string();
    }
    let lower = id.to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    if trimmed.is_empty() && !lower.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Receipt {
            id: "0a1B".into(),
            sub: "001".into(),
            dlvrd: "001".into(),
            submit_date: "2611221200".into(),
            done_date: "2611221201".into(),
            stat: "DELIVRD".into(),
            err: "000".into(),
            text: "Hello world: stat:x".into(),
        };
        let text = format(&r);
        assert_eq!(
            text,
            "id:0a1B sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:Hello world: stat:x"
        );
        assert_eq!(parse(&text), Some(r));
    }

    #[test]
    fn tolerant_of_case_order_and_missing_fields() {
        let r = parse("STAT:undeliv Id:42 Done Date:261122120159 err:011").unwrap_or_default();
        assert_eq!(r.id, "42");
        assert_eq!(r.stat, "UNDELIV");
        assert_eq!(r.err, "011");
        assert_eq!(r.sub, "");
        assert_eq!(
            parse_date(&r.done_date),
            NaiveDate::from_ymd_opt(2026, 11, 22)
                .and_then(|d| d.and_hms_opt(12, 1, 59))
                .map(|d| d.and_utc())
        );
        assert!(parse("hello there, what is your id:").is_none());
        assert!(parse("id:1 sub:001").is_none());
        assert!(parse("").is_none());
        assert!(parse("ñid:é stat:ü").is_none());
    }

    #[test]
    fn dates() {
        assert!(parse_date("2611221200").is_some());
        assert!(parse_date("261122120000").is_some());
        for bad in [
            "",
            "26112212",
            "2613221200",
            "26112212xx",
            "2611222400",
            "é611221200",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let at = parse_date("2601020304");
        assert_eq!(at.map(format_date).as_deref(), Some("2601020304"));
    }

    #[test]
    fn stats_and_states() {
        assert_eq!(status_of_stat("delivrd"), Some(MessageStatus::Delivered));
        assert_eq!(status_of_stat("REJECTD"), Some(MessageStatus::Undelivered));
        assert_eq!(status_of_stat("EXPIRED"), Some(MessageStatus::Expired));
        assert_eq!(status_of_stat("ENROUTE"), None);
        assert_eq!(status_of_stat("ACCEPTD"), None);
        for state in 0..=9 {
            let stat = stat_of_message_state(state).unwrap_or_default();
            assert_eq!(message_state_of_stat(stat), Some(state));
        }
        assert_eq!(stat_of_message_state(10), None);
    }

    #[test]
    fn ids_match_across_forms() {
        use IdFormat::*;
        use IdSource::*;
        let same = |a: &str, b: &str, f: IdFormat| {
            normalise_id(a, f, SubmitResp) == normalise_id(b, f, Receipt)
        };
        assert!(same("00AbC1", "abc1", Auto));
        assert!(same("000", "0", Auto));
        assert!(same("0000FF", "ff", Hex));
        assert!(same("ff", "255", HexSubmitDecimalReceipt));
        assert!(same("255", "FF", DecimalSubmitHexReceipt));
        assert!(same("007", "7", Decimal));
        assert!(!same("Ab", "ab", Exact));
        // Not a number of that base: the auto form.
        assert!(same("0x-Uuid", "x-uuid", Hex));
        assert_eq!(normalise_id(" 12\0", Auto, SubmitResp), "12");
    }
}
