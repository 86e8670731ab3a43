//! One log line per period, with a count of the ones held back: a broker outage that fails a
//! whole queue, or a topic full of poison records, is one line a second, not a million.

use std::time::{Duration, Instant};

/// Lets one log line through per period and counts the ones held back.
///
/// ```
/// use std::time::Duration;
/// use velib_kafka::RateLimited;
///
/// let mut log = RateLimited::new(Duration::from_secs(3600));
/// assert_eq!(log.allow(), Some(0));
/// assert_eq!(log.allow(), None);
/// assert_eq!(log.allow(), None);
/// ```
#[derive(Debug)]
pub struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> RateLimited {
        RateLimited {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(number held back since the last line let through)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.period)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for RateLimited {
    /// One line a second.
    fn default() -> RateLimited {
        RateLimited::new(Duration::from_secs(1))
    }
}
