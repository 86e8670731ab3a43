use crate::SourceError;
use std::time::Duration;

/// The pause between a failed poll and the next: velib's [`Backoff`](velib_model::Backoff)
/// (bounded exponential, equal jitter), and, when the error carries a `Retry-After` (429 or
/// 503), at least that long: the server knows better than our formula. The server's value is
/// itself capped at [`Backoff::with_retry_after_cap`] (15 minutes by default) so a bogus header
/// cannot stall the producer for a day.
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
///
/// let limited = SourceError::RateLimited {
///     url: "https://example.org".into(),
///     retry_after: Some(Duration::from_secs(120)),
/// };
/// assert!(backoff.next_delay(&limited) >= Duration::from_secs(120));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    inner: velib_model::Backoff,
    retry_after_cap: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max` (except to honour a
    /// `Retry-After`). A `max` below `base` is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            inner: velib_model::Backoff::new(base, max),
            retry_after_cap: Duration::from_secs(15 * 60),
        }
    }

    /// Uses a fixed jitter seed, so tests get reproducible delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.inner = self.inner.with_seed(seed);
        self
    }

    /// Caps how long a server's `Retry-After` may make us wait (default 15 minutes).
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The pause before retrying after `err`, counting it as one more consecutive failure.
    pub fn next_delay(&mut self, err: &SourceError) -> Duration {
        match err.retry_after() {
            Some(server) => self
                .inner
                .next_delay_at_least(server.min(self.retry_after_cap)),
            None => self.inner.next_delay(),
        }
    }

    /// Forgets past failures: call after a successful poll.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// How many consecutive failures have been counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.inner.failures()
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
        // Without a Retry-After, the formula alone.
        b.reset();
        assert!(b.next_delay(&transient()) <= Duration::from_secs(1));
    }
}
