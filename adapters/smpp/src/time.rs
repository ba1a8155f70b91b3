//! SMPP time fields (`schedule_delivery_time`, `validity_period`, `final_date`): the
//! absolute form `YYMMDDhhmmsstnn±` and the relative form `YYMMDDhhmmss000R`
//! (SMPP 3.4 section 7.1.1).

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};

/// A time field that is not in either SMPP form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

/// Reads an SMPP time field relative to `now`: `None` for an empty field.
pub fn parse(field: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, BadTime> {
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || BadTime(field.to_owned());
    let bytes = field.as_bytes();
    if bytes.len() != 16 || !bytes[..15].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let num = |from: usize, to: usize| -> u32 {
        field[from..to]
            .bytes()
            .fold(0, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let (yy, mm, dd, h, m, s) = (
        num(0, 2),
        num(2, 4),
        num(4, 6),
        num(6, 8),
        num(8, 10),
        num(10, 12),
    );
    match bytes[15] {
        b'R' => {
            // Relative: years and months as 365 and 30 days, as SMSCs commonly read them.
            let days = i64::from(yy) * 365 + i64::from(mm) * 30 + i64::from(dd);
            let seconds = days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
            Ok(Some(now + Duration::seconds(seconds)))
        }
        sign @ (b'+' | b'-') => {
            let tenths = num(12, 13);
            let quarters = i32::try_from(num(13, 15)).map_err(|_| bad())?;
            if quarters > 48 {
                return Err(bad());
            }
            let offset = quarters * 15 * 60;
            let offset = if sign == b'-' { -offset } else { offset };
            let zone = FixedOffset::east_opt(offset).ok_or_else(bad)?;
            let date =
                NaiveDate::from_ymd_opt(2000 + i32::try_from(yy).map_err(|_| bad())?, mm, dd)
                    .ok_or_else(bad)?;
            let local = date
                .and_hms_milli_opt(h, m, s, tenths * 100)
                .ok_or_else(bad)?;
            let at = zone.from_local_datetime(&local).single().ok_or_else(bad)?;
            Ok(Some(at.with_timezone(&Utc)))
        }
        _ => Err(bad()),
    }
}

/// Writes `at` in the absolute form, in UTC (`YYMMDDhhmmsst00+`), as in `query_sm_resp`'s
/// `final_date`.
pub fn format(at: DateTime<Utc>) -> String {
    format!(
        "{:02}{:02}{:02}{}{}00+",
        at.year().rem_euclid(100),
        at.month(),
        at.day(),
        at.format("%H%M%S"),
        at.timestamp_subsec_millis() / 100,
    )
}

/// Writes `length` in the relative form (`YYMMDDhhmmss000R`), years and months counted
/// as 365 and 30 days as [`parse`] reads them; at most 99 years, and at least a second
/// (a zero relative period reads as "no validity" at some SMSCs).
pub fn format_relative(length: std::time::Duration) -> String {
    let mut left = length.as_secs().clamp(1, 99 * 365 * 86_400 + 364 * 86_400);
    let mut take = |unit: u64| {
        let n = left / unit;
        left %= unit;
        n
    };
    let years = take(365 * 86_400);
    let months = take(30 * 86_400);
    let days = take(86_400);
    let hours = take(3600);
    let minutes = take(60);
    let seconds = left;
    format!("{years:02}{months:02}{days:02}{hours:02}{minutes:02}{seconds:02}000R")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn absolute_with_offset() {
        let at = parse("261122120000004+", now()).ok().flatten();
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).single());
        let at = parse("261122120000004-", now()).ok().flatten();
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 11, 22, 13, 0, 0).single());
    }

    #[test]
    fn relative() {
        let at = parse("000001020304000R", now()).ok().flatten();
        assert_eq!(
            at,
            Some(now() + Duration::seconds(86_400 + 2 * 3600 + 3 * 60 + 4))
        );
    }

    #[test]
    fn empty_and_bad() {
        assert_eq!(parse("", now()), Ok(None));
        for bad in [
            "2611221200000",
            "261322120000000+",
            "26112212000000x+",
            "261122120000099+",
            "261122120000000?",
            "é611221200000000",
        ] {
            assert!(parse(bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_round_trips() {
        for seconds in [1u64, 59, 3600, 86_399, 86_400 * 45 + 7, 86_400 * 400 + 3661] {
            let field = format_relative(std::time::Duration::from_secs(seconds));
            assert_eq!(field.len(), 16, "{field}");
            let expected = now() + Duration::seconds(i64::try_from(seconds).unwrap_or(0));
            assert_eq!(parse(&field, now()), Ok(Some(expected)), "{field}");
        }
        assert_eq!(
            format_relative(std::time::Duration::ZERO),
            "000000000001000R"
        );
        assert_eq!(
            format_relative(std::time::Duration::from_secs(86_400 * 31 + 3723)),
            "000101010203000R"
        );
        assert!(format_relative(std::time::Duration::MAX).starts_with("99"));
    }

    #[test]
    fn format_round_trips() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .unwrap_or_default();
        assert_eq!(format(at), "260102030405000+");
        assert_eq!(parse(&format(at), now()), Ok(Some(at)));
    }
}
