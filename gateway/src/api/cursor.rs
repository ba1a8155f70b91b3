//! Opaque, signed list cursors.
//!
//! A cursor carries the id of the last message of a page, a fingerprint of the
//! filters it was issued for and when it was issued, signed with HMAC-SHA256 under a
//! key kept in the database (so every instance on one database accepts it). A cursor
//! that was altered, was issued for other filters, or is older than a day is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a cursor stays valid, in seconds.
pub const CURSOR_LIFETIME_SECS: i64 = 24 * 3600;

/// The signing key of cursors.
pub struct CursorKey([u8; 32]);

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The last id of the page: the next page starts below it.
    b: String,
    /// Fingerprint of the filters.
    f: String,
    /// Issued at (Unix seconds).
    t: i64,
}

/// Why a cursor was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not something we issued (or altered since).
    #[error("not a cursor this gateway issued")]
    Invalid,
    /// Issued for other filters than this request's.
    #[error("this cursor was issued for other filters; start again without a cursor")]
    OtherFilters,
    /// Older than a day.
    #[error("this cursor has expired; start again without a cursor")]
    Expired,
}

impl CursorKey {
    /// A key from its stored hex form, or None if it is not 32 bytes of hex.
    pub fn from_hex(hex_key: &str) -> Option<CursorKey> {
        let bytes = hex::decode(hex_key).ok()?;
        Some(CursorKey(bytes.try_into().ok()?))
    }

    /// A new random key in hex, for the first start.
    pub fn generate_hex() -> String {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// A cursor for the page after `last_id`, under `filters`.
    pub fn issue(&self, last_id: &str, filters: &str, now: i64) -> String {
        let payload = serde_json::to_vec(&Payload {
            b: last_id.to_owned(),
            f: fingerprint(filters),
            t: now,
        })
        .unwrap_or_default();
        let mac = self.mac(&payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&mac[..16])
        )
    }

    /// The last id a cursor carries, if it is ours, for these filters, and fresh.
    pub fn open(&self, cursor: &str, filters: &str, now: i64) -> Result<String, CursorError> {
        let (payload, mac) = cursor.split_once('.').ok_or(CursorError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| CursorError::Invalid)?;
        let expected = self.mac(&payload);
        if !constant_time_eq(&mac, &expected[..16]) {
            return Err(CursorError::Invalid);
        }
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| CursorError::Invalid)?;
        if payload.f != fingerprint(filters) {
            return Err(CursorError::OtherFilters);
        }
        if now - payload.t > CURSOR_LIFETIME_SECS || payload.t > now + 300 {
            return Err(CursorError::Expired);
        }
        Ok(payload.b)
    }
}

fn fingerprint(filters: &str) -> String {
    hex::encode(&Sha256::digest(filters.as_bytes())[..8])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::from_hex(&CursorKey::generate_hex()).expect("key")
    }

    #[test]
    fn round_trip() {
        let key = key();
        let cursor = key.issue("abc", "status=queued", 1000);
        assert_eq!(key.open(&cursor, "status=queued", 1001), Ok("abc".into()));
    }

    #[test]
    fn refusals() {
        let key = key();
        let cursor = key.issue("abc", "status=queued", 1000);
        assert_eq!(
            key.open(&cursor, "status=sent", 1001),
            Err(CursorError::OtherFilters)
        );
        assert_eq!(
            key.open(&cursor, "status=queued", 1000 + CURSOR_LIFETIME_SECS + 1),
            Err(CursorError::Expired)
        );
        assert_eq!(key.open("garbage", "", 0), Err(CursorError::Invalid));
        assert_eq!(key.open("a.b", "", 0), Err(CursorError::Invalid));
        // Another gateway's key, or an edited payload, does not verify.
        assert_eq!(
            self::key().open(&cursor, "status=queued", 1001),
            Err(CursorError::Invalid)
        );
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"b":"zzz","f":"x","t":1000}"#),
            cursor.split_once('.').map(|(_, m)| m).unwrap_or_default()
        );
        assert_eq!(
            key.open(&forged, "status=queued", 1001),
            Err(CursorError::Invalid)
        );
    }
}
