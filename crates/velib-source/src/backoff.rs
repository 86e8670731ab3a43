use crate::SourceError;
use crate::rng::SplitMix64;
use std::time::Duration;

/// Bounded exponential backoff with jitter, for the pause between a failed poll and the next.
///
/// The n-th consecutive failure waits a random delay in `[d/2, d]` where
/// `d = min(base * 2^(n-1), max)`: the exponential part stops a broken source from being
/// hammered, the cap keeps the producer responsive once the source comes back, and the jitter
/// ("equal jitter") keeps many producers that failed together from retrying in lock-step while
/// still guaranteeing at least half the nominal pause.
///
/// When the error carries a `Retry-After` (429 or 503), the delay is at least that long: the
/// server knows better than our formula. The server's value is itself capped at
/// [`Backoff::with_retry_after_cap`] (15 minutes by default) so a bogus header cannot stall the
/// producer for a day.
///
/// Call [`Backoff::reset`] after a successful poll.
///
/// ```
/// use std::time::Duration;
/// use velib_source::{Backoff, SourceError};
///
/// let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// let err = SourceError::Http { status: 502, url: "https://example.org".into(), retry_after: None };
/// let first = backoff.next_delay(&err);
/// assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
/// let second = backoff.next_delay(&err);
/// assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
///
/// let limited = SourceError::RateLimited {
///     url: "https://example.org".into(),
///     retry_after: Some(Duration::from_secs(120)),
/// };
/// assert!(backoff.next_delay(&limited) >= Duration::from_secs(120));
/// backoff.reset();
/// assert!(backoff.next_delay(&err) <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    retry_after_cap: Duration,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max` (except to honour a
    /// `Retry-After`). A `max` below `base` is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            retry_after_cap: Duration::from_secs(15 * 60),
            failures: 0,
            rng: SplitMix64::from_entropy(),
        }
    }

    /// Uses a fixed jitter seed, so tests get reproducible delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// Caps how long a server's `Retry-After` may make us wait (default 15 minutes).
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The pause before retrying after `err`, counting it as one more consecutive failure.
    pub fn next_delay(&mut self, err: &SourceError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // 2^(n-1) saturates long before u32 overflows the shift: past 2^31 the cap applies.
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        let nominal = self.base.saturating_mul(factor).min(self.max);
        let half = nominal / 2;
        let jitter = Duration::from_secs_f64(half.as_secs_f64() * self.rng.unit());
        let delay = nominal - half + jitter;
        match err.retry_after() {
            Some(server) => delay.max(server.min(self.retry_after_cap)),
            None => delay,
        }
    }

    /// Forgets past failures: call after a successful poll.
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

    fn transient() -> SourceError {
        SourceError::Http {
            status: 500,
            url: "http://x".into(),
            retry_after: None,
        }
    }

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_stays_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(base, max).with_seed(1);
        for n in 1..=40u32 {
            let nominal = base.saturating_mul(1u32 << (n - 1).min(20)).min(max);
            let d = b.next_delay(&transient());
            assert!(
                d >= nominal / 2 && d <= nominal,
                "failure {n}: {d:?} vs {nominal:?}"
            );
        }
        assert_eq!(b.failures(), 40);
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10))
            .with_seed(2)
            .with_retry_after_cap(Duration::from_secs(600));
        let err = |s| SourceError::RateLimited {
            url: "http://x".into(),
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(b.next_delay(&err(300)), Duration::from_secs(300));
        assert_eq!(b.next_delay(&err(86_400)), Duration::from_secs(600));
        // A Retry-After shorter than the formula does not shorten the pause.
        let d = b.next_delay(&err(0));
        assert!(d >= Duration::from_secs(2), "{d:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_seed(3);
        for _ in 0..5 {
            b.next_delay(&transient());
        }
        b.reset();
        assert!(b.next_delay(&transient()) <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).with_seed(4);
        let delays: std::collections::HashSet<_> =
            (0..20).map(|_| b.next_delay(&transient())).collect();
        assert!(delays.len() > 10);
    }
}
