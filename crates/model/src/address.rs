//! Addresses and the channels they belong to (DESIGN.md section 3).
//!
//! An address is parsed and normalised once, at the edge, and stored normalised:
//!
//! | input | channel | stored as |
//! |---|---|---|
//! | `+1 (415) 555-0100`, `14155550100` (9 to 15 digits) | `sms` | `+14155550100` |
//! | `12345` (3 to 8 digits) | `sms` | `12345` (a short code) |
//! | `ACME Bank` (1 to 11 letters, digits, spaces; at least one letter) | `sms` | as given |
//! | `sip:Bob@Example.ORG`, `sips:...` | `sip` | `sip:Bob@example.org` |
//! | `xmpp:Bob@Example.org/phone` | `xmpp` | `xmpp:bob@example.org/phone` (RFC 7622) |
//! | `mailto:Bob@Example.ORG`, `Bob@Example.ORG` | `email` | `Bob@example.org` |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A messaging channel: where an address lives and which adapter carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMS over SMPP.
    Sms,
    /// SIP MESSAGE (RFC 3428).
    Sip,
    /// XMPP, through the gateway's external component.
    Xmpp,
    /// Email over SMTP.
    Email,
}

/// Every channel.
pub const ALL_CHANNELS: [Channel; 4] = [Channel::Sms, Channel::Sip, Channel::Xmpp, Channel::Email];

impl Channel {
    /// The channel's name as written in the API and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Sip => "sip",
            Channel::Xmpp => "xmpp",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_CHANNELS
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| AddressError::UnknownChannel(s.to_owned()))
    }
}

/// Why an address (or a channel name) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("the address is empty")]
    Empty,
    /// Not a form any channel knows.
    #[error("{0:?} is not a phone number, short code, sender name, SIP URI, JID or email address")]
    Unrecognised(String),
    /// A phone number that is not E.164 (a `+` and 8 to 15 digits, no leading zero).
    #[error("{0:?} is not an E.164 number: expected + and 8 to 15 digits")]
    InvalidE164(String),
    /// An alphanumeric sender that is too long or has characters SMS cannot carry.
    #[error("{0:?} is not a valid sender name: 1 to 11 letters, digits or spaces")]
    InvalidSenderName(String),
    /// A SIP URI without a host, or with characters that are not allowed.
    #[error("{0:?} is not a valid SIP URI: expected sip:user@host")]
    InvalidSipUri(String),
    /// A JID that RFC 7622 refuses.
    #[error("{0:?} is not a valid JID: {1}")]
    InvalidJid(String, String),
    /// An email address without a local part or domain, or with forbidden characters.
    #[error("{0:?} is not a valid email address")]
    InvalidEmail(String),
    /// The address is well formed but belongs to another channel than the one asked for.
    #[error("{address:?} is a {found} address, not {expected}")]
    WrongChannel {
        /// The address as given.
        address: String,
        /// The channel that was asked for.
        expected: Channel,
        /// The channel the address belongs to.
        found: Channel,
    },
    /// A channel name that is not `sms`, `sip`, `xmpp` or `email`.
    #[error("unknown channel {0:?}: expected sms, sip, xmpp or email")]
    UnknownChannel(String),
}

/// A normalised address with its channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    channel: Channel,
    value: String,
}

impl Address {
    /// Parses `input`, inferring the channel from its form, and normalises it.
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        match scheme(input) {
            Some(("sip" | "sips", _)) => sip(input),
            Some(("xmpp", rest)) => xmpp(input, rest),
            Some(("mailto", rest)) => email(input, rest),
            Some(("tel", rest)) => phone(input, rest),
            _ if input.contains('@') => email(input, input),
            _ => sms(input),
        }
    }

    /// Parses `input` as an address of `channel`. This is how an address with an
    /// ambiguous form is read: `bob@example.org` is an email address unless the
    /// channel says `xmpp` (then it is a bare JID) or `sip` (then `sip:bob@example.org`).
    pub fn parse_for(channel: Channel, input: &str) -> Result<Address, AddressError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        let has_scheme = scheme(trimmed).is_some();
        let address = match channel {
            Channel::Xmpp if !has_scheme => xmpp(trimmed, trimmed)?,
            Channel::Sip if !has_scheme && trimmed.contains('@') => sip(&format!("sip:{trimmed}"))?,
            _ => Address::parse(trimmed)?,
        };
        if address.channel != channel {
            return Err(AddressError::WrongChannel {
                address: trimmed.to_owned(),
                expected: channel,
                found: address.channel,
            });
        }
        Ok(address)
    }

    /// The channel the address belongs to.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The normalised form, as stored.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The normalised form, owned.
    pub fn into_string(self) -> String {
        self.value
    }

    /// For SMS: whether this is an E.164 number (as opposed to a short code or a name).
    pub fn is_e164(&self) -> bool {
        self.channel == Channel::Sms && self.value.starts_with('+')
    }

    /// The part after the scheme (`user@host` of a SIP URI, the JID of an XMPP address);
    /// the address itself for SMS and email.
    pub fn without_scheme(&self) -> &str {
        match self.channel {
            Channel::Sip => self.value.strip_prefix("sip:").unwrap_or(&self.value),
            Channel::Xmpp => self.value.strip_prefix("xmpp:").unwrap_or(&self.value),
            Channel::Sms | Channel::Email => &self.value,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// The URI scheme of `input` (lower-cased) and what follows the colon, if it has one of
/// the schemes we know. `+1 555` or `bob` have none.
fn scheme(input: &str) -> Option<(&'static str, &str)> {
    let (name, rest) = input.split_once(':')?;
    ["sip", "sips", "xmpp", "mailto", "tel"]
        .into_iter()
        .find(|known| name.eq_ignore_ascii_case(known))
        .map(|known| (known, rest))
}

fn phone(original: &str, number: &str) -> Result<Address, AddressError> {
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let body = digits.strip_prefix('+').unwrap_or(&digits);
    let valid = (8..=15).contains(&body.len())
        && body.bytes().all(|b| b.is_ascii_digit())
        && !body.starts_with('0');
    if !valid {
        return Err(AddressError::InvalidE164(original.to_owned()));
    }
    Ok(Address {
        channel: Channel::Sms,
        value: format!("+{body}"),
    })
}

fn sms(input: &str) -> Result<Address, AddressError> {
    let is_phone_like = input
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'));
    if is_phone_like {
        let digits = input.chars().filter(char::is_ascii_digit).count();
        if input.starts_with('+') || digits > 8 {
            return phone(input, input);
        }
        if (3..=8).contains(&digits) && input.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Address {
                channel: Channel::Sms,
                value: input.to_owned(),
            });
        }
        return Err(AddressError::Unrecognised(input.to_owned()));
    }
    let is_name = input.chars().count() <= 11
        && input.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && input.chars().any(|c| c.is_ascii_alphabetic());
    if is_name {
        return Ok(Address {
            channel: Channel::Sms,
            value: input.to_owned(),
        });
    }
    if input
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c == '.')
    {
        return Err(AddressError::InvalidSenderName(input.to_owned()));
    }
    Err(AddressError::Unrecognised(input.to_owned()))
}

fn sip(input: &str) -> Result<Address, AddressError> {
    let invalid = || AddressError::InvalidSipUri(input.to_owned());
    let (_, rest) = input.split_once(':').ok_or_else(invalid)?;
    // URI parameters and headers (;transport=tcp, ?subject=x) are not part of the address.
    let rest = rest.split([';', '?']).next().unwrap_or_default();
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((user, hostport)) => (Some(user), hostport),
        None => (None, rest),
    };
    if let Some(user) = user {
        let user_ok = !user.is_empty()
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c));
        if !user_ok {
            return Err(invalid());
        }
    }
    let hostport = hostport.to_ascii_lowercase();
    let (host, port) = split_host_port(&hostport).ok_or_else(invalid)?;
    if !valid_host(host) || port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(invalid());
    }
    let value = match user {
        Some(user) => format!("sip:{user}@{hostport}"),
        None => format!("sip:{hostport}"),
    };
    Ok(Address {
        channel: Channel::Sip,
        value,
    })
}

/// Splits `host[:port]` (with `[v6]` literals), or None when malformed.
fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((hostport, None)),
            _ => Some((&hostport[..v6.len() + 2], Some(after.strip_prefix(':')?))),
        };
    }
    match hostport.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((hostport, None)),
    }
}

/// A DNS name or IPv4 literal (or a bracketed IPv6 literal already checked).
fn valid_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn xmpp(original: &str, jid: &str) -> Result<Address, AddressError> {
    let parsed = jid::Jid::new(jid)
        .map_err(|e| AddressError::InvalidJid(original.to_owned(), e.to_string()))?;
    Ok(Address {
        channel: Channel::Xmpp,
        value: format!("xmpp:{parsed}"),
    })
}

fn email(original: &str, addr: &str) -> Result<Address, AddressError> {
    let invalid = || AddressError::InvalidEmail(original.to_owned());
    let addr = addr.split('?').next().unwrap_or_default();
    let (local, domain) = addr.rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain = domain.to_lowercase();
    if !local_ok || !domain.contains('.') && domain != "localhost" || !valid_host(&domain) {
        return Err(invalid());
    }
    Ok(Address {
        channel: Channel::Email,
        value: format!("{local}@{domain}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(input: &str) -> (Channel, String) {
        let a = Address::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        (a.channel(), a.as_str().to_owned())
    }

    #[test]
    fn infers_and_normalises() {
        let cases = [
            ("+14155550100", Channel::Sms, "+14155550100"),
            ("+1 (415) 555-0100", Channel::Sms, "+14155550100"),
            ("14155550100", Channel::Sms, "+14155550100"),
            ("tel:+44 20 7946 0958", Channel::Sms, "+442079460958"),
            ("12345", Channel::Sms, "12345"),
            ("ACME Bank", Channel::Sms, "ACME Bank"),
            ("sip:Bob@Example.ORG", Channel::Sip, "sip:Bob@example.org"),
            (
                "SIP:bob@example.org:5070;transport=tcp",
                Channel::Sip,
                "sip:bob@example.org:5070",
            ),
            (
                "sips:alice@[2001:db8::1]:5061",
                Channel::Sip,
                "sip:alice@[2001:db8::1]:5061",
            ),
            (
                "xmpp:Bob@Example.org/Phone",
                Channel::Xmpp,
                "xmpp:bob@example.org/Phone",
            ),
            (
                "xmpp:+14155550100@sms.localhost",
                Channel::Xmpp,
                "xmpp:+14155550100@sms.localhost",
            ),
            ("mailto:Bob@Example.ORG", Channel::Email, "Bob@example.org"),
            (
                "bob.smith+tag@Mail.Example.test",
                Channel::Email,
                "bob.smith+tag@mail.example.test",
            ),
            (
                "+14155550100@sms.example.test",
                Channel::Email,
                "+14155550100@sms.example.test",
            ),
        ];
        for (input, channel, stored) in cases {
            assert_eq!(norm(input), (channel, stored.to_owned()), "{input}");
            // Normalisation is idempotent.
            assert_eq!(norm(stored), (channel, stored.to_owned()), "{stored}");
        }
    }

    #[test]
    fn refuses_what_no_channel_takes() {
        let cases = [
            "",
            "   ",
            "+123",
            "+0123456789",
            "+1415555010099999",
            "12",
            "A sender name far too long",
            "sip:",
            "sip:bob@",
            "sip:bob@exa mple.org",
            "sip:bob@example.org:99999",
            "xmpp:@example.org",
            "xmpp:bob@",
            "bob@",
            "@example.org",
            "bob..x@example.org",
            "bob@example",
            "<script>",
        ];
        for input in cases {
            assert!(Address::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn channel_disambiguates() {
        let jid = Address::parse_for(Channel::Xmpp, "Alice@Example.org").expect("jid");
        assert_eq!(jid.as_str(), "xmpp:alice@example.org");
        let sip = Address::parse_for(Channel::Sip, "alice@Example.org").expect("sip");
        assert_eq!(sip.as_str(), "sip:alice@example.org");
        let err = Address::parse_for(Channel::Sms, "alice@example.org").expect_err("email");
        assert!(matches!(
            err,
            AddressError::WrongChannel {
                expected: Channel::Sms,
                found: Channel::Email,
                ..
            }
        ));
    }

    #[test]
    fn channel_names() {
        assert_eq!("xmpp".parse::<Channel>(), Ok(Channel::Xmpp));
        assert_eq!(
            "fax".parse::<Channel>(),
            Err(AddressError::UnknownChannel("fax".into()))
        );
    }
}
