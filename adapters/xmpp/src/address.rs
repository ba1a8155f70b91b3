//! Addresses on the component: which gateway address a node of `<component>` stands for,
//! and which node an outbound message's sender becomes.
//!
//! - An SMS number or short code is the node itself: `+14155550100@sms.localhost`.
//! - A node with no escapes otherwise is the component's own JID, which a tenant may own
//!   as a named address: `alice@sms.localhost` is `xmpp:alice@sms.localhost`.
//! - Any other address is its normalised form escaped per XEP-0106:
//!   `bob\40example.org@sms.localhost` is the email address `bob@example.org`,
//!   `sip\3abob\40example.org@…` is `sip:bob@example.org`, and
//!   `xmpp\3acarol\40example.net@…` is `xmpp:carol@example.net`.

use switchboard_model::{Address, Channel};
use tokio_xmpp::jid::NodePart;

/// Why a node is not an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnAddress(pub String);

/// The gateway address (normalised) that `node` of `component` stands for.
pub fn address_of_node(node: &str, component: &str) -> Result<String, NotAnAddress> {
    let unescaped = unescape(node).ok_or_else(|| {
        NotAnAddress(format!(
            "{node:?} has an escape sequence XEP-0106 does not define"
        ))
    })?;
    let parsed = if is_number(&unescaped) {
        Address::parse_for(Channel::Sms, &unescaped)
    } else if unescaped.starts_with('+') {
        return Err(NotAnAddress(format!("{unescaped:?} is not a phone number")));
    } else if unescaped.contains(['@', ':']) {
        Address::parse(&unescaped)
    } else {
        Address::parse_for(Channel::Xmpp, &format!("{unescaped}@{component}"))
    };
    parsed
        .map(Address::into_string)
        .map_err(|e| NotAnAddress(e.to_string()))
}

/// `+` and digits, or digits: an SMS number or short code.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The node an outbound message from `from` (a normalised address) is sent from; `None`
/// when `from` cannot be a node (then the configured default node is used).
pub fn node_of_address(from: &str, component: &str) -> Option<String> {
    let address = Address::parse(from).ok()?;
    let node = match address.channel() {
        Channel::Sms => address.as_str().to_owned(),
        Channel::Xmpp => match address.without_scheme().split_once('@') {
            Some((node, domain)) if domain.eq_ignore_ascii_case(component) => node.to_owned(),
            // A number given as the sender of a message to an XMPP address is read as a
            // JID of that name; it is still the number.
            None if is_number(address.without_scheme()) => address.without_scheme().to_owned(),
            _ => escape(address.as_str()),
        },
        Channel::Sip | Channel::Email => escape(address.as_str()),
    };
    NodePart::new(&node)
        .ok()
        .map(|n| n.into_owned().into_inner())
}

/// XEP-0106: the characters a node cannot hold, as `\` and two hex digits.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\20"),
            '"' => out.push_str("\\22"),
            '&' => out.push_str("\\26"),
            '\'' => out.push_str("\\27"),
            '/' => out.push_str("\\2f"),
            ':' => out.push_str("\\3a"),
            '<' => out.push_str("\\3c"),
            '>' => out.push_str("\\3e"),
            '@' => out.push_str("\\40"),
            '\\' => out.push_str("\\5c"),
            c => out.push(c),
        }
    }
    out
}

/// XEP-0106 in reverse; `None` for a `\` not followed by one of the ten escapes.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code.to_ascii_lowercase().as_str() {
            "20" => ' ',
            "22" => '"',
            "26" => '&',
            "27" => '\'',
            "2f" => '/',
            "3a" => ':',
            "3c" => '<',
            "3e" => '>',
            "40" => '@',
            "5c" => '\\',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "sms.localhost";

    #[test]
    fn nodes_are_numbers_named_addresses_or_escaped_addresses() {
        assert_eq!(
            address_of_node("+14155550100", C).expect("an address"),
            "+14155550100"
        );
        assert_eq!(
            address_of_node("alice", C).expect("an address"),
            "xmpp:alice@sms.localhost"
        );
        assert_eq!(
            address_of_node("bob\\40example.org", C).expect("an address"),
            "bob@example.org"
        );
        assert_eq!(
            address_of_node("sip\\3abob\\40example.org", C).expect("an address"),
            "sip:bob@example.org"
        );
        assert!(address_of_node("+1555abc", C).is_err());
        assert!(address_of_node("+", C).is_err());
        assert!(address_of_node("bad\\", C).is_err());
        assert!(address_of_node("bad\\zz", C).is_err());
    }

    #[test]
    fn senders_become_nodes_and_back() {
        for from in [
            "+19995550100",
            "bob@example.org",
            "sip:bob@example.org",
            "xmpp:carol@example.net",
        ] {
            let node = node_of_address(from, C).expect("a node");
            assert_eq!(
                address_of_node(&node, C).expect("an address"),
                from,
                "via {node}"
            );
        }
        assert_eq!(
            node_of_address("xmpp:alice@sms.localhost", C).as_deref(),
            Some("alice")
        );
        assert_eq!(node_of_address("not an address", C), None);
        assert_eq!(
            node_of_address("xmpp:+15550100", C).as_deref(),
            Some("+15550100")
        );
    }

    #[test]
    fn escape_round_trips() {
        let s = "a b\"c&d'e/f:g<h>i@j\\k";
        assert_eq!(unescape(&escape(s)).as_deref(), Some(s));
        assert_eq!(unescape("é\\").as_deref(), None);
        assert_eq!(unescape("\\é").as_deref(), None);
    }
}
