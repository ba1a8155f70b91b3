//! The retry schedule of DESIGN.md section 6.
//!
//! A failed attempt is retried after 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, then
//! every 4 h, each delay with ±20% jitter, until 48 h have passed since the first attempt.

use std::time::Duration;

use rand::Rng as _;

/// How long one attempt may take before it counts as failed (no answer in 15 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// No attempt is scheduled later than this after the first attempt.
pub const GIVE_UP_AFTER: Duration = Duration::from_hours(48);
/// Relative jitter applied to each delay: a `jitter` of ±1 means ±20%.
pub const JITTER: f64 = 0.2;

/// Delays after the 1st, 2nd, ... 7th failure; after that, [`STEADY_DELAY`].
const BASE_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_mins(2),
    Duration::from_mins(10),
    Duration::from_mins(30),
    Duration::from_hours(1),
    Duration::from_hours(2),
];
/// Delay after the 8th and every later failure.
const STEADY_DELAY: Duration = Duration::from_hours(4);

/// The delay without jitter after `failed_attempts` failures (1-based; 0 is treated as 1).
pub fn base_delay(failed_attempts: u32) -> Duration {
    let index = usize::try_from(failed_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    BASE_DELAYS.get(index).copied().unwrap_or(STEADY_DELAY)
}

/// The delay before the next attempt after `failed_attempts` failures (1-based: 1 after
/// the first failure), or `None` to give up because the next attempt would come more
/// than [`GIVE_UP_AFTER`] after the first one.
///
/// `jitter` in `[-1, 1]` scales the delay by `1 + 0.2 * jitter`; values outside are
/// clamped and NaN counts as 0.
pub fn next_delay(
    failed_attempts: u32,
    since_first_attempt: Duration,
    jitter: f64,
) -> Option<Duration> {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    // The factor is within [0.8, 1.2], so `mul_f64` cannot panic.
    let delay = base_delay(failed_attempts).mul_f64(1.0 + JITTER * jitter);
    let at = since_first_attempt.checked_add(delay)?;
    (at <= GIVE_UP_AFTER).then_some(delay)
}

/// [`next_delay`] with the jitter drawn uniformly from `[-1, 1]`.
pub fn next_delay_random(failed_attempts: u32, since_first_attempt: Duration) -> Option<Duration> {
    let jitter = rand::rng().random_range(-1.0..=1.0);
    next_delay(failed_attempts, since_first_attempt, jitter)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: u64 = 1;
    const M: u64 = 60;
    const H: u64 = 3600;

    /// Runs the schedule from the first failure, assuming attempts take no time, and
    /// returns the delays it produced.
    fn run(mut jitter: impl FnMut() -> f64) -> Vec<Duration> {
        let mut elapsed = Duration::ZERO;
        let mut delays = Vec::new();
        let mut failed = 1;
        while let Some(d) = next_delay(failed, elapsed, jitter()) {
            elapsed += d;
            delays.push(d);
            failed += 1;
            assert!(failed < 1000, "schedule never gives up");
        }
        delays
    }

    #[test]
    fn exact_base_sequence() {
        let expected: Vec<Duration> = [
            5 * S,
            30 * S,
            2 * M,
            10 * M,
            30 * M,
            H,
            2 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
            4 * H,
        ]
        .into_iter()
        .map(Duration::from_secs)
        .collect();
        let delays = run(|| 0.0);
        assert_eq!(delays, expected);
        // 13 355 s (3.7 h) of ramp-up plus eleven 4 h steps = 47.7 h; a twelfth would
        // pass 48 h.
        let total: Duration = delays.iter().sum();
        assert_eq!(total, Duration::from_secs(13_355 + 11 * 4 * H));
        for n in 1..=7 {
            assert_eq!(
                next_delay(n, Duration::ZERO, 0.0),
                Some(expected[n as usize - 1])
            );
        }
        assert_eq!(
            next_delay(100, Duration::ZERO, 0.0),
            Some(Duration::from_secs(4 * H))
        );
        assert_eq!(
            next_delay(u32::MAX, Duration::ZERO, 0.0),
            Some(STEADY_DELAY)
        );
        // 0 failures is treated as the first.
        assert_eq!(
            next_delay(0, Duration::ZERO, 0.0),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn jitter_bounds() {
        for n in 1..=10 {
            let base = base_delay(n);
            let lo = next_delay(n, Duration::ZERO, -1.0).unwrap();
            let hi = next_delay(n, Duration::ZERO, 1.0).unwrap();
            assert_eq!(lo, base.mul_f64(0.8), "attempt {n}");
            assert_eq!(hi, base.mul_f64(1.2), "attempt {n}");
            // Out-of-range and NaN jitter are clamped.
            assert_eq!(next_delay(n, Duration::ZERO, -7.0), Some(lo));
            assert_eq!(next_delay(n, Duration::ZERO, 7.0), Some(hi));
            assert_eq!(next_delay(n, Duration::ZERO, f64::NAN), Some(base));
        }
        assert_eq!(
            next_delay(1, Duration::ZERO, 1.0),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            next_delay(1, Duration::ZERO, -1.0),
            Some(Duration::from_secs(4))
        );
        for _ in 0..1000 {
            let d = next_delay_random(2, Duration::ZERO).unwrap();
            assert!(
                d >= Duration::from_secs(24) && d <= Duration::from_secs(36),
                "{d:?}"
            );
        }
    }

    #[test]
    fn total_never_passes_48h() {
        for jitter in [-1.0, -0.5, 0.0, 0.5, 1.0] {
            let delays = run(|| jitter);
            let total: Duration = delays.iter().sum();
            assert!(total <= GIVE_UP_AFTER, "jitter {jitter}: {total:?}");
            // The next one would have passed 48 h.
            let next = base_delay(delays.len() as u32 + 1).mul_f64(1.0 + JITTER * jitter);
            assert!(
                total + next > GIVE_UP_AFTER,
                "jitter {jitter}: gave up early"
            );
        }
        for _ in 0..200 {
            let mut elapsed = Duration::ZERO;
            let mut failed = 1;
            while let Some(d) = next_delay_random(failed, elapsed) {
                elapsed += d;
                failed += 1;
                assert!(elapsed <= GIVE_UP_AFTER);
            }
            assert!(failed > 8, "gave up too early after {failed} attempts");
        }
    }

    #[test]
    fn gives_up() {
        assert_eq!(next_delay(1, GIVE_UP_AFTER, 0.0), None);
        assert_eq!(next_delay(9, Duration::from_hours(45), 0.0), None);
        assert_eq!(
            next_delay(9, Duration::from_hours(44), 0.0),
            Some(Duration::from_hours(4))
        );
        // Exactly at 48 h is still allowed; a second later is not.
        assert_eq!(
            next_delay(1, GIVE_UP_AFTER - Duration::from_secs(5), 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_delay(1, GIVE_UP_AFTER - Duration::from_secs(4), 0.0),
            None
        );
        assert_eq!(next_delay(1, Duration::MAX, 0.0), None);
    }
}
