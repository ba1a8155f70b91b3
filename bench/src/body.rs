//! Request bodies and destination numbers, built into a reused buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// Destination numbers have at least this many digits after the `+`.
pub const MIN_DIGITS: usize = 11;

/// How many digits the counter is padded to after `prefix`, so that the whole number has at
/// least [`MIN_DIGITS`] digits (always at least one).
pub fn counter_width(prefix: &str) -> usize {
    let digits = prefix.bytes().filter(u8::is_ascii_digit).count();
    MIN_DIGITS.saturating_sub(digits).max(1)
}

/// The destination of request `n`: `prefix` then `n`, zero-padded to [`counter_width`].
pub fn destination(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:0width$}", width = counter_width(prefix))
}

/// Appends the decimal digits of `n` to `buf`, left-padded with zeros to `width`.
pub fn put_padded(buf: &mut BytesMut, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf.put_bytes(b'0', width.saturating_sub(len));
    buf.put_slice(&digits[i..]);
}

/// The fixed parts of `{"to":"<prefix><n>","text":…,"client_ref":"bench-<n>"[,"channel":…]}`,
/// JSON-escaped once, so a body costs a few copies into a reused buffer.
#[derive(Debug, Clone)]
pub struct BodyTemplate {
    /// `{"to":"<prefix>`
    head: Vec<u8>,
    /// The counter's width in `to`; `None` for a fixed destination.
    width: Option<usize>,
    /// `","text":"…","client_ref":"bench-`
    mid: Vec<u8>,
    /// `"}` or `","channel":"…"}`
    tail: Vec<u8>,
}

/// A JSON string literal (with quotes) for `s`.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl BodyTemplate {
    /// Bodies to `<to_prefix><n>`, a new destination each.
    pub fn new(to_prefix: &str, text: &str, channel: Option<&str>) -> Self {
        Self::with_to(to_prefix, Some(counter_width(to_prefix)), text, channel)
    }

    /// Bodies all to `to` (a JID, a SIP URI, a mailbox: one receiver for the whole run).
    pub fn fixed(to: &str, text: &str, channel: Option<&str>) -> Self {
        Self::with_to(to, None, text, channel)
    }

    fn with_to(to_prefix: &str, width: Option<usize>, text: &str, channel: Option<&str>) -> Self {
        let prefix = json_string(to_prefix);
        // Everything but the closing quote: the counter goes inside the string.
        let prefix_open = &prefix[..prefix.len() - 1];
        let head = format!(r#"{{"to":{prefix_open}"#).into_bytes();
        let mid = format!(r#"","text":{},"client_ref":"bench-"#, json_string(text)).into_bytes();
        let tail = match channel {
            Some(c) => format!(r#"","channel":{}}}"#, json_string(c)),
            None => r#""}"#.to_owned(),
        }
        .into_bytes();
        Self {
            head,
            width,
            mid,
            tail,
        }
    }

    /// The body of request `n`. `buf` is reused: once the previous body has been sent and
    /// dropped, its allocation is reclaimed rather than a new one made.
    pub fn body(&self, n: u64, buf: &mut BytesMut) -> Bytes {
        buf.clear();
        buf.reserve(self.head.len() + self.mid.len() + self.tail.len() + 40);
        buf.put_slice(&self.head);
        if let Some(width) = self.width {
            put_padded(buf, n, width);
        }
        buf.put_slice(&self.mid);
        put_padded(buf, n, 0);
        buf.put_slice(&self.tail);
        buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_destination_keeps_the_counter_in_client_ref() {
        let t = BodyTemplate::fixed("xmpp:alice@localhost", "hi", None);
        let body = t.body(7, &mut BytesMut::new());
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["to"], "xmpp:alice@localhost");
        assert_eq!(v["client_ref"], "bench-7");
    }

    #[test]
    fn pads_to_eleven_digits() {
        assert_eq!(counter_width("+1555"), 7);
        assert_eq!(destination("+1555", 42), "+15550000042");
        assert_eq!(destination("+1555", 0), "+15550000000");
        assert_eq!(destination("+1555", 9_999_999), "+15559999999");
        // Past the padding the number just grows.
        assert_eq!(destination("+1555", 12_345_678), "+155512345678");
        assert_eq!(destination("+44", 7), "+44000000007");
        // A prefix that is already long still gets at least one digit.
        assert_eq!(destination("+123456789012", 5), "+1234567890125");
        assert_eq!(destination("", 3), "00000000003");
    }

    #[test]
    fn padded_digits() {
        let mut buf = BytesMut::new();
        for (n, width, want) in [
            (0u64, 0usize, "0"),
            (0, 3, "000"),
            (7, 1, "7"),
            (123, 2, "123"),
            (123, 6, "000123"),
            (u64::MAX, 0, "18446744073709551615"),
            (u64::MAX, 22, "0018446744073709551615"),
        ] {
            buf.clear();
            put_padded(&mut buf, n, width);
            assert_eq!(&buf[..], want.as_bytes(), "n={n} width={width}");
        }
    }

    #[test]
    fn body_is_valid_json() -> anyhow::Result<()> {
        let t = BodyTemplate::new("+1555", "Benchmark message", None);
        let mut buf = BytesMut::new();
        let body = t.body(42, &mut buf);
        assert_eq!(
            &body[..],
            br#"{"to":"+15550000042","text":"Benchmark message","client_ref":"bench-42"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(v["to"], "+15550000042");
        assert!(v.get("channel").is_none());
        Ok(())
    }

    #[test]
    fn body_escapes_and_adds_channel() -> anyhow::Result<()> {
        let text = "say \"hi\"\n\\ ünïcode ☎";
        let t = BodyTemplate::new("+1\"5", text, Some("sms"));
        let mut buf = BytesMut::new();
        for n in [0u64, 9, 1_000_000_000] {
            let body = t.body(n, &mut buf);
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(v["to"], destination("+1\"5", n));
            assert_eq!(v["text"], text);
            assert_eq!(v["client_ref"], format!("bench-{n}"));
            assert_eq!(v["channel"], "sms");
        }
        Ok(())
    }

    #[test]
    fn buffer_is_reused() {
        let t = BodyTemplate::new("+1555", "x", None);
        let mut buf = BytesMut::new();
        let first = t.body(1, &mut buf);
        let ptr = first.as_ptr();
        drop(first);
        let second = t.body(2, &mut buf);
        assert_eq!(second.as_ptr(), ptr, "allocation was not reclaimed");
    }
}
