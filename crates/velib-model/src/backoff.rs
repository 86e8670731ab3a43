//! Bounded exponential backoff with jitter: the pause between a failed attempt and the next,
//! for every retry loop in velib (a source poll, a mail).

use crate::rng::SplitMix64;
use std::time::Duration;

/// Bounded exponential backoff with "equal jitter".
///
/// The n-th consecutive failure waits a random delay in `[d/2, d]` where
/// `d = min(base * 2^(n-1), max)`: the exponential part stops a broken peer from being
/// hammered, the cap keeps the program responsive once the peer comes back, and the jitter
/// keeps many clients that failed together from retrying in lock-step while still guaranteeing
/// at least half the nominal pause. Call [`Backoff::reset`] after a success.
///
/// ```
/// use std::time::Duration;
/// use velib_model::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
/// let second = backoff.next_delay();
/// assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
/// // A server that asks for longer gets it.
/// assert!(backoff.next_delay_at_least(Duration::from_secs(120)) >= Duration::from_secs(120));
/// backoff.reset();
/// assert!(backoff.next_delay() <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max` (except where a caller asks for
    /// more with [`next_delay_at_least`](Backoff::next_delay_at_least)). A `max` below `base`
    /// is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            rng: SplitMix64::from_entropy(),
        }
    }

    /// Uses a fixed jitter seed, so tests get reproducible delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// The pause before the next attempt, counting one more consecutive failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // 2^(n-1) saturates long before u32 overflows the shift: past 2^31 the cap applies.
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        let nominal = self.base.saturating_mul(factor).min(self.max);
        let half = nominal / 2;
        let jitter = Duration::from_secs_f64(half.as_secs_f64() * self.rng.unit());
        nominal - half + jitter
    }

    /// [`next_delay`](Backoff::next_delay), but at least `floor` (a server's `Retry-After`:
    /// the peer knows better than the formula).
    pub fn next_delay_at_least(&mut self, floor: Duration) -> Duration {
        self.next_delay().max(floor)
    }

    /// Forgets past failures: call after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// How many consecutive failures have been counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_stays_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(base, max).with_seed(1);
        for n in 1..=40u32 {
            let nominal = base.saturating_mul(1u32 << (n - 1).min(20)).min(max);
            let d = b.next_delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "failure {n}: {d:?} vs {nominal:?}"
            );
        }
        assert_eq!(b.failures(), 40);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_seed(3);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).with_seed(4);
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10);
    }
}
