//! Non-INVITE server transactions (RFC 3261 section 17.2.2): a retransmitted request
//! gets the response already sent (or nothing while the first copy is still being
//! handled), never a second handling. A completed transaction lingers for timer J (64*T1
//! over UDP, none over TCP); the table is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::Request;

/// The most transactions kept at once; beyond it new requests are answered `503`.
pub const MAX_SERVER_TRANSACTIONS: usize = 262_144;

/// What a request is to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// A new transaction: handle it, then [`ServerTransactions::complete`] it.
    New,
    /// A retransmission of one still being handled: absorb it.
    InProgress,
    /// A retransmission of one answered: send this again.
    Answered(Arc<[u8]>),
    /// The table is full.
    Full,
}

/// The key of a request's transaction: the top `Via` branch (RFC 3261 magic cookie) and
/// method, or for older senders Call-ID, CSeq and From tag (section 17.2.3).
pub fn key(request: &Request) -> String {
    match &request.branch {
        Some(branch) if branch.starts_with("z9hG4bK") => {
            let sent_by = request.echo.vias[0]
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            format!("{branch}|{sent_by}|{}", request.method)
        }
        _ => format!(
            "{}|{}|{}|{}",
            request.echo.call_id,
            request.echo.cseq,
            request.from_tag.as_deref().unwrap_or_default(),
            request.echo.vias[0]
        ),
    }
}

/// One transaction: until when it is kept, and its final response once sent.
type Entry = (Instant, Option<Arc<[u8]>>);

/// The table.
#[derive(Default)]
pub struct ServerTransactions {
    entries: HashMap<String, Entry>,
    expiries: VecDeque<(Instant, String)>,
}

impl ServerTransactions {
    /// Looks `key` up; a new one is held `in_progress_for` at most while it is handled.
    pub fn begin(&mut self, key: &str, now: Instant, in_progress_for: Duration) -> Begin {
        self.purge(now);
        if let Some((_, answer)) = self.entries.get(key) {
            return match answer {
                Some(bytes) => Begin::Answered(bytes.clone()),
                None => Begin::InProgress,
            };
        }
        if self.entries.len() >= MAX_SERVER_TRANSACTIONS {
            return Begin::Full;
        }
        let until = now + in_progress_for;
        self.entries.insert(key.to_owned(), (until, None));
        self.expiries.push_back((until, key.to_owned()));
        Begin::New
    }

    /// Records the final response; it is sent again to retransmissions for `linger`
    /// (timer J), or the transaction ends now when `linger` is zero.
    pub fn complete(&mut self, key: &str, now: Instant, response: Arc<[u8]>, linger: Duration) {
        if linger.is_zero() {
            self.entries.remove(key);
            return;
        }
        let until = now + linger;
        self.entries.insert(key.to_owned(), (until, Some(response)));
        self.expiries.push_back((until, key.to_owned()));
    }

    fn purge(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiries.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_front()
                && self
                    .entries
                    .get(&key)
                    .is_some_and(|(until, _)| *until <= now)
            {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_are_absorbed_then_expire() {
        let mut table = ServerTransactions::default();
        let t0 = Instant::now();
        let held = Duration::from_secs(30);
        let linger = Duration::from_secs(32);
        assert_eq!(table.begin("a", t0, held), Begin::New);
        assert_eq!(table.begin("a", t0, held), Begin::InProgress);
        let answer: Arc<[u8]> = Arc::from(&b"SIP/2.0 200 OK\r\n\r\n"[..]);
        table.complete("a", t0, answer.clone(), linger);
        // The in-progress expiry (30 s) does not end the completed transaction early.
        let t31 = t0 + Duration::from_secs(31);
        assert_eq!(table.begin("a", t31, held), Begin::Answered(answer.clone()));
        // Timer J is over.
        let t33 = t0 + Duration::from_secs(33);
        assert_eq!(table.begin("b", t33, held), Begin::New);
        assert_eq!(table.begin("a", t33, held), Begin::New);
        table.complete("b", t33, answer, Duration::ZERO);
        assert_eq!(table.begin("b", t33, held), Begin::New);
    }
}
