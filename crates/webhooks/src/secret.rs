//! Webhook signing secrets in the Standard Webhooks form `whsec_<base64>`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The prefix every secret carries.
pub const PREFIX: &str = "whsec_";
/// Number of random bytes in a generated secret.
pub const GENERATED_LEN: usize = 24;
/// Smallest accepted key, in bytes.
pub const MIN_LEN: usize = 16;
/// Largest accepted key, in bytes.
pub const MAX_LEN: usize = 64;

/// A webhook signing secret: the `whsec_...` string and the key bytes it encodes.
///
/// `Debug` does not print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    encoded: String,
    key: Vec<u8>,
}

/// Why a string is not a valid secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The string does not start with `whsec_`.
    #[error("webhook secret must start with \"whsec_\"")]
    MissingPrefix,
    /// The part after `whsec_` is not standard, padded base64.
    #[error("webhook secret is not valid base64")]
    InvalidBase64,
    /// The key is shorter than 16 bytes.
    #[error("webhook secret is too short ({0} bytes, at least {MIN_LEN})")]
    TooShort(usize),
    /// The key is longer than 64 bytes.
    #[error("webhook secret is too long ({0} bytes, at most {MAX_LEN})")]
    TooLong(usize),
}

impl Secret {
    /// Generates a new secret of 24 random bytes from a cryptographically secure RNG.
    pub fn generate() -> Self {
        // `rand::random` draws from the thread-local CSPRNG (ChaCha, seeded from the OS).
        let key: [u8; GENERATED_LEN] = rand::random();
        Self {
            encoded: format!("{PREFIX}{}", STANDARD.encode(key)),
            key: key.to_vec(),
        }
    }

    /// Parses `whsec_<base64>` (standard alphabet, with padding), 16 to 64 key bytes.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let b64 = s.strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| SecretError::InvalidBase64)?;
        if key.len() < MIN_LEN {
            return Err(SecretError::TooShort(key.len()));
        }
        if key.len() > MAX_LEN {
            return Err(SecretError::TooLong(key.len()));
        }
        Ok(Self {
            encoded: s.to_owned(),
            key,
        })
    }

    /// The full `whsec_...` form, as shown to the subscriber and stored.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    /// The decoded key bytes used for HMAC.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl FromStr for Secret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generate_roundtrips() {
        let s = Secret::generate();
        assert!(s.as_str().starts_with("whsec_"));
        assert_eq!(s.key().len(), GENERATED_LEN);
        let parsed = Secret::parse(s.as_str()).unwrap();
        assert_eq!(parsed, s);
        assert_ne!(Secret::generate(), s);
    }

    #[test]
    fn parses_reference_secret() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(s.key().len(), 24);
        assert_eq!(s.as_str(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<Secret>()
                .unwrap(),
            s
        );
    }

    #[test]
    fn accepts_padding_and_bounds() {
        // 16 bytes -> 24 chars with "==" padding.
        let s16 = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert!(s16.ends_with("=="));
        assert_eq!(Secret::parse(&s16).unwrap().key(), &[7u8; 16]);
        let s64 = format!("whsec_{}", STANDARD.encode([1u8; 64]));
        assert_eq!(Secret::parse(&s64).unwrap().key().len(), 64);
    }

    #[test]
    fn rejects_bad_secrets() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            Secret::parse("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            Secret::parse("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            Secret::parse("whsec_not base64!!"),
            Err(SecretError::InvalidBase64)
        );
        // Missing padding.
        let unpadded = format!("whsec_{}", STANDARD.encode([7u8; 16]).trim_end_matches('='));
        assert_eq!(Secret::parse(&unpadded), Err(SecretError::InvalidBase64));
        // URL-safe alphabet is not standard base64.
        assert_eq!(
            Secret::parse("whsec_____________________"),
            Err(SecretError::InvalidBase64)
        );
        let short = format!("whsec_{}", STANDARD.encode([7u8; 15]));
        assert_eq!(Secret::parse(&short), Err(SecretError::TooShort(15)));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(Secret::parse(&long), Err(SecretError::TooLong(65)));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::TooShort(0)));
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("MfKQ"), "{dbg}");
    }
}
