//! Glob patterns over normalised addresses.
//!
//! `*` matches any run of characters (also none), `?` exactly one character, and every
//! other character itself, case-sensitively. There is no escape: addresses never need a
//! literal `*` or `?` matched apart from the wildcard.

use std::fmt;

use serde::Serialize;

/// A glob pattern, checked once when the route table is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Glob {
    pattern: String,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The empty pattern would match only the empty string, which no address is.
    #[error(
        "the pattern is empty and would match nothing; leave the key out to match every address"
    )]
    Empty,
}

impl Glob {
    /// Checks `pattern` and keeps it.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `text` matches the pattern.
    ///
    /// The classic two-pointer wildcard match: on a mismatch only the most recent `*` is
    /// widened by one character, since an earlier `*` can never do better. That bounds the
    /// work by `len(pattern) * len(text)` and usually much less, with no exponential
    /// backtracking on patterns like `*a*a*a*b`.
    pub fn matches(&self, text: &str) -> bool {
        let pattern = self.pattern.as_str();
        let (mut p, mut t) = (0, 0); // byte offsets, always on char boundaries
        // Where to resume after the last `*`: the pattern just past it, and the text
        // position where the `*`'s run currently ends.
        let mut resume: Option<(usize, usize)> = None;
        while let Some(tc) = char_at(text, t) {
            match char_at(pattern, p) {
                Some('*') => {
                    p += 1;
                    resume = Some((p, t));
                }
                Some(pc) if pc == '?' || pc == tc => {
                    p += pc.len_utf8();
                    t += tc.len_utf8();
                }
                _ => {
                    let Some((star_p, star_t)) = resume else {
                        return false;
                    };
                    let Some(taken) = char_at(text, star_t) else {
                        return false;
                    };
                    let star_t = star_t + taken.len_utf8();
                    resume = Some((star_p, star_t));
                    p = star_p;
                    t = star_t;
                }
            }
        }
        pattern
            .get(p..)
            .is_some_and(|rest| rest.chars().all(|c| c == '*'))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

fn char_at(s: &str, at: usize) -> Option<char> {
    s.get(at..)?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).expect("valid pattern")
    }

    #[test]
    fn matches_like_a_shell_glob() {
        let cases = [
            ("+1555*", "+15550100", true),
            ("+1555*", "+1555", true),
            ("+1555*", "+1415", false),
            ("+1555*", "+15550100@sms.example.test", true),
            ("+1555????", "+15550100", true),
            ("+1555????", "+155501000", false),
            ("+1555????", "+1555010", false),
            ("*", "anything at all", true),
            ("*@mail.example.test", "Bob@mail.example.test", true),
            ("*@mail.example.test", "bob@mail.example.test.evil", false),
            ("sip:*@gw.example.test", "sip:support@gw.example.test", true),
            ("SIP:*", "sip:support@gw.example.test", false),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("**", "", true),
            ("?", "é", true),
            ("x?z", "xéz", true),
            ("xmpp:?lice@*", "xmpp:alice@localhost", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("exactly", "exact", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob(pattern).matches(text),
                expected,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn refuses_the_empty_pattern() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
    }

    #[test]
    fn no_exponential_backtracking() {
        let text = "a".repeat(20_000);
        let pattern = glob(&format!("{}b", "*a".repeat(30)));
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&text));
        // Exponential backtracking would not finish at all; quadratic in the worst case
        // is a few milliseconds here.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
