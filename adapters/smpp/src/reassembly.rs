//! Parts of concatenated messages (UDH or SAR) held until their message is complete:
//! `submit_sm` parts from a carrier (server) and `deliver_sm` parts from an SMSC
//! (client).
//!
//! A part's response is held with it: the message is stored once every part has
//! arrived, and only then is every part answered (by the server, all with the message's
//! id). Parts that wait longer than the reassembly timeout are answered with an error
//! instead.

use std::collections::HashMap;
use std::time::Instant;

/// What identifies the parts of one message: sender, destination, reference and count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    /// source_addr as given.
    pub source: String,
    /// destination_addr as given.
    pub destination: String,
    /// The concatenation reference.
    pub reference: u16,
    /// The number of parts.
    pub total: u8,
}

struct Pending<H> {
    parts: Vec<Option<(Vec<u8>, H)>>,
    extra: Vec<H>,
    received: usize,
    started: Instant,
}

/// What adding a part came to.
pub enum Added<H> {
    /// Held until the rest arrives.
    Held,
    /// The message is complete: every part's payload in order, with what was held for it
    /// (and for parts that arrived twice, the earlier copies after the others).
    Complete(Vec<(Vec<u8>, H)>, Vec<H>),
}

/// Parts waiting for the rest of their message.
pub struct Reassembly<H> {
    pending: HashMap<PartKey, Pending<H>>,
    held: usize,
}

impl<H> Default for Reassembly<H> {
    fn default() -> Self {
        Reassembly {
            pending: HashMap::new(),
            held: 0,
        }
    }
}

impl<H> Reassembly<H> {
    /// Adds part `seq` (from 1) of `key.total`. A part number out of range is the
    /// caller's to refuse before.
    pub fn add(
        &mut self,
        key: PartKey,
        seq: u8,
        payload: Vec<u8>,
        held: H,
        now: Instant,
    ) -> Added<H> {
        let total = usize::from(key.total);
        let index = usize::from(seq).saturating_sub(1);
        if total <= 1 || index >= total {
            return Added::Complete(vec![(payload, held)], Vec::new());
        }
        let pending = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: (0..total).map(|_| None).collect(),
            extra: Vec::new(),
            received: 0,
            started: now,
        });
        self.held += 1;
        match pending.parts[index].replace((payload, held)) {
            Some((_, earlier)) => pending.extra.push(earlier),
            None => pending.received += 1,
        }
        if pending.received < total {
            return Added::Held;
        }
        let Some(done) = self.pending.remove(&key) else {
            return Added::Held;
        };
        let parts: Vec<_> = done.parts.into_iter().flatten().collect();
        self.held -= parts.len() + done.extra.len();
        Added::Complete(parts, done.extra)
    }

    /// Removes the messages whose first part arrived before `deadline`, with what was
    /// held for their parts.
    pub fn expire(&mut self, deadline: Instant) -> Vec<H> {
        let keys: Vec<PartKey> = self
            .pending
            .iter()
            .filter(|(_, p)| p.started < deadline)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(p) = self.pending.remove(&key) {
                out.extend(p.parts.into_iter().flatten().map(|(_, h)| h));
                out.extend(p.extra);
            }
        }
        self.held -= out.len();
        out
    }

    /// Parts held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Removes everything (at shutdown), with what was held.
    pub fn drain(&mut self) -> Vec<H> {
        self.expire(Instant::now() + std::time::Duration::from_secs(86_400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(total: u8) -> PartKey {
        PartKey {
            source: "a".into(),
            destination: "b".into(),
            reference: 7,
            total,
        }
    }

    #[test]
    fn out_of_order_and_duplicate() {
        let now = Instant::now();
        let mut r = Reassembly::default();
        assert!(matches!(
            r.add(key(3), 3, b"c".to_vec(), 3, now),
            Added::Held
        ));
        assert!(matches!(
            r.add(key(3), 1, b"a".to_vec(), 1, now),
            Added::Held
        ));
        assert!(matches!(
            r.add(key(3), 1, b"a".to_vec(), 11, now),
            Added::Held
        ));
        assert_eq!(r.held(), 3);
        match r.add(key(3), 2, b"b".to_vec(), 2, now) {
            Added::Complete(parts, extra) => {
                let bytes: Vec<u8> = parts.iter().flat_map(|(p, _)| p.clone()).collect();
                assert_eq!(bytes, b"abc");
                assert_eq!(
                    parts.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
                    [11, 2, 3]
                );
                assert_eq!(extra, [1]);
            }
            Added::Held => panic!("complete"),
        }
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn expiry_returns_held() {
        let now = Instant::now();
        let mut r = Reassembly::default();
        assert!(matches!(r.add(key(2), 1, vec![], "x", now), Added::Held));
        assert!(r.expire(now).is_empty());
        assert_eq!(r.expire(now + std::time::Duration::from_secs(1)), ["x"]);
        assert_eq!(r.held(), 0);
    }
}
