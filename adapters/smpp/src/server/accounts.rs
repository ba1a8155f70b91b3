//! The ESME accounts that may bind: credentials, allowed addresses, how many binds each
//! holds, its throughput and queue limits, and its receiver binds that deliver_sm go to.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusmpp::CommandStatus;
use switchboard_adapter::Recipient;
use tokio::sync::Notify;

use crate::SmppAccountConfig;
use crate::reassembly::Reassembly;
use crate::server::session::{BindHandle, HeldPart};

/// An SMPP bind type, as the ESME asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// bind_transmitter: submits only.
    Transmitter,
    /// bind_receiver: deliver_sm only.
    Receiver,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindKind {
    /// Whether it may submit.
    pub fn transmits(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }

    /// Whether deliver_sm may be sent to it.
    pub fn receives(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }

    /// The bind's name in the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            BindKind::Transmitter => "transmitter",
            BindKind::Receiver => "receiver",
            BindKind::Transceiver => "transceiver",
        }
    }
}

/// One configured account with its live state.
pub struct Account {
    /// What the configuration says.
    pub config: SmppAccountConfig,
    /// Who its notices are for (`smpp:<system_id>`).
    pub recipient: Recipient,
    /// Binds it holds now.
    binds: AtomicU32,
    /// Its receiver and transceiver binds, for deliver_sm.
    receivers: Mutex<Vec<Arc<BindHandle>>>,
    /// Round-robin position among `receivers`.
    next_receiver: AtomicUsize,
    /// Fires when a receiver binds.
    pub bound: Notify,
    /// Submits in progress (being stored, or parts waiting for the rest).
    in_progress: AtomicU32,
    /// Throughput: the token bucket, in segments.
    bucket: Mutex<Bucket>,
    /// Parts of concatenated submits waiting for the rest of their message.
    pub reassembly: Mutex<Reassembly<HeldPart>>,
}

/// Who the core keeps notices for on behalf of an account: `smpp:<system_id>`.
pub fn recipient(config: &SmppAccountConfig) -> Recipient {
    Recipient {
        key: format!("smpp:{}", config.system_id),
        tenant: config.tenant.clone(),
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Account {
    fn new(config: SmppAccountConfig) -> Account {
        let recipient = recipient(&config);
        let tokens = f64::from(config.throughput);
        Account {
            config,
            recipient,
            binds: AtomicU32::new(0),
            receivers: Mutex::new(Vec::new()),
            next_receiver: AtomicUsize::new(0),
            bound: Notify::new(),
            in_progress: AtomicU32::new(0),
            bucket: Mutex::new(Bucket {
                tokens,
                at: Instant::now(),
            }),
            reassembly: Mutex::new(Reassembly::default()),
        }
    }

    /// Takes `segments` from the account's throughput (per second, a second's worth of
    /// burst); false when it is used up (ESME_RTHROTTLED).
    pub fn take_throughput(&self, segments: u32) -> bool {
        let rate = f64::from(self.config.throughput);
        if rate <= 0.0 {
            return true;
        }
        let Ok(mut bucket) = self.bucket.lock() else {
            return true;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        let wanted = f64::from(segments.max(1));
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            true
        } else {
            false
        }
    }

    /// Counts one more submit in progress, or says the queue is full (ESME_RMSGQFUL).
    pub fn enter_queue(self: &Arc<Self>) -> Option<QueueSlot> {
        let limit = self.config.queue_limit;
        self.in_progress
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(self.clone()))
    }

    /// Submits in progress now.
    pub fn queued(&self) -> u32 {
        self.in_progress.load(Ordering::Acquire)
    }

    /// Adds a bind; false when the account holds `max_binds` already.
    fn add_bind(&self) -> bool {
        let max = self.config.max_binds;
        self.binds
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Registers a bind that takes deliver_sm.
    pub fn add_receiver(&self, bind: Arc<BindHandle>) {
        if let Ok(mut receivers) = self.receivers.lock() {
            receivers.push(bind);
        }
        self.bound.notify_waiters();
        self.bound.notify_one();
    }

    /// Removes a bind when its session ends.
    pub fn remove_bind(&self, id: u64) {
        if let Ok(mut receivers) = self.receivers.lock() {
            receivers.retain(|r| r.id != id);
        }
        self.binds.fetch_sub(1, Ordering::AcqRel);
    }

    /// The next receiver bind in turn, if any is bound.
    pub fn next_receiver(&self) -> Option<Arc<BindHandle>> {
        let receivers = self.receivers.lock().ok()?;
        let live: Vec<_> = receivers.iter().filter(|r| !r.is_closed()).collect();
        if live.is_empty() {
            return None;
        }
        let i = self.next_receiver.fetch_add(1, Ordering::Relaxed) % live.len();
        Some(live[i].clone())
    }

    /// Whether a receiver bind is up.
    pub fn has_receiver(&self) -> bool {
        self.receivers
            .lock()
            .map(|r| r.iter().any(|r| !r.is_closed()))
            .unwrap_or(false)
    }

    /// How long notices are kept for it.
    pub fn expiry(&self) -> Duration {
        Duration::from_secs(self.config.receipt_expiry_seconds)
    }
}

/// One submit counted in its account's queue until dropped.
pub struct QueueSlot(Arc<Account>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every account, by system_id.
#[derive(Default)]
pub struct Accounts {
    by_id: HashMap<String, Arc<Account>>,
}

/// What became of a bind request.
pub enum BindDecision {
    /// Bound: the bind counts against the account until [`Account::remove_bind`].
    Bound(Arc<Account>),
    /// Refused with this status.
    Refused(CommandStatus, &'static str),
}

impl Accounts {
    /// The accounts of the configuration.
    pub fn new(configs: &[SmppAccountConfig]) -> Accounts {
        Accounts {
            by_id: configs
                .iter()
                .map(|c| (c.system_id.clone(), Arc::new(Account::new(c.clone()))))
                .collect(),
        }
    }

    /// Every account.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Account>> {
        self.by_id.values()
    }

    /// Checks a bind: unknown system_id → ESME_RINVSYSID, wrong password →
    /// ESME_RINVPASWD, address not allowed or too many binds → ESME_RBINDFAIL.
    pub fn bind(&self, system_id: &str, password: &str, peer: IpAddr) -> BindDecision {
        let Some(account) = self.by_id.get(system_id) else {
            return BindDecision::Refused(CommandStatus::EsmeRinvsysid, "unknown system_id");
        };
        if !constant_time_eq(account.config.password.as_bytes(), password.as_bytes()) {
            return BindDecision::Refused(CommandStatus::EsmeRinvpaswd, "wrong password");
        }
        if !account.config.allowed_ips.is_empty()
            && !account
                .config
                .allowed_ips
                .iter()
                .any(|ip| same_ip(*ip, peer))
        {
            return BindDecision::Refused(CommandStatus::EsmeRbindfail, "address not allowed");
        }
        if !account.add_bind() {
            return BindDecision::Refused(CommandStatus::EsmeRbindfail, "too many binds");
        }
        BindDecision::Bound(account.clone())
    }
}

/// Equal addresses, an IPv4 address and its IPv6-mapped form included.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Compares passwords in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(throughput: u32, queue_limit: u32, max_binds: u32) -> SmppAccountConfig {
        SmppAccountConfig {
            system_id: "carrier1".into(),
            password: "s3cret".into(),
            tenant: "acme".into(),
            allowed_ips: vec!["127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))],
            max_binds,
            window: 10,
            throughput,
            queue_limit,
            receipt_expiry_seconds: 60,
        }
    }

    fn refused(d: BindDecision) -> Option<CommandStatus> {
        match d {
            BindDecision::Refused(s, _) => Some(s),
            BindDecision::Bound(_) => None,
        }
    }

    #[test]
    fn bind_checks() {
        let accounts = Accounts::new(&[account(0, 10, 1)]);
        let local = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            refused(accounts.bind("nobody", "s3cret", local)),
            Some(CommandStatus::EsmeRinvsysid)
        );
        assert_eq!(
            refused(accounts.bind("carrier1", "wrong", local)),
            Some(CommandStatus::EsmeRinvpaswd)
        );
        assert_eq!(
            refused(accounts.bind("carrier1", "s3cret", IpAddr::from([10, 0, 0, 1]))),
            Some(CommandStatus::EsmeRbindfail)
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(local);
        assert_eq!(refused(accounts.bind("carrier1", "s3cret", mapped)), None);
        assert_eq!(
            refused(accounts.bind("carrier1", "s3cret", local)),
            Some(CommandStatus::EsmeRbindfail),
            "max_binds 1"
        );
    }

    #[test]
    fn queue_and_throughput() {
        let accounts = Accounts::new(&[account(3, 2, 5)]);
        let Some(a) = accounts.all().next().cloned() else {
            panic!("no account")
        };
        let first = a.enter_queue();
        let second = a.enter_queue();
        assert!(first.is_some() && second.is_some());
        assert!(a.enter_queue().is_none());
        drop(first);
        assert!(a.enter_queue().is_some());
        assert!(a.take_throughput(2));
        assert!(a.take_throughput(1));
        assert!(!a.take_throughput(1));
    }
}
