//! One station's statistics state: its last record, its open window, and the window that ended
//! but waits for its grace period to pass.

use crate::health::HealthState;
use crate::window::{Reading, Window};
use std::time::Duration;

/// How windows are cut and when they close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsConfig {
    size_ms: i64,
    grace_ms: i64,
}

/// A window or grace period velib cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The window is shorter than a second or longer than a day.
    #[error("the stats window (--window) must be between 1s and 24h, not {0:?}")]
    Window(Duration),
    /// The grace period is not shorter than the window.
    #[error(
        "the stats grace period (--grace, {grace:?}) must be shorter than the window (--window, {window:?})"
    )]
    Grace {
        /// The grace period asked for.
        grace: Duration,
        /// The window asked for.
        window: Duration,
    },
}

impl Default for StatsConfig {
    /// Hour-long windows, no grace.
    fn default() -> StatsConfig {
        StatsConfig {
            size_ms: 3_600_000,
            grace_ms: 0,
        }
    }
}

impl StatsConfig {
    /// The default window: an hour.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
    /// The default grace period: none (see the crate's documentation for why).
    pub const DEFAULT_GRACE: Duration = Duration::ZERO;

    /// Windows of `window` (aligned on the Unix epoch, so hourly windows start on the hour,
    /// UTC), each closing once its station's snapshot time passes its end plus `grace`.
    ///
    /// # Errors
    ///
    /// A window shorter than a second or longer than a day (a window's durations are kept in
    /// 32-bit milliseconds), or a grace period not shorter than the window (a station then
    /// keeps at most one ended window besides its open one).
    pub fn new(window: Duration, grace: Duration) -> Result<StatsConfig, ConfigError> {
        if window < Duration::from_secs(1) || window > Duration::from_secs(86_400) {
            return Err(ConfigError::Window(window));
        }
        if grace >= window {
            return Err(ConfigError::Grace { grace, window });
        }
        Ok(StatsConfig {
            size_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            grace_ms: i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// The window's length, ms.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The grace period, ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The start of the window holding time `at` (epoch ms).
    pub fn window_of(&self, at: i64) -> i64 {
        at - at.rem_euclid(self.size_ms)
    }
}

/// What a record did to its station's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The station's first record: its first window opens.
    First,
    /// A newer snapshot, applied.
    Applied,
    /// The snapshot already applied, seen again (polled twice, a second producer): nothing.
    Duplicate,
    /// From an older snapshot than one already applied: counted in the open window's
    /// `late_records`, not applied.
    Late,
    /// No `snapshot_at`: the record cannot be placed in time and is not counted.
    Unplaced,
}

/// The statistics state of one station: 168 bytes, in place. The window that ended but waits
/// for its grace period is kept beside it by the tracker (usually there is none: with no
/// grace, a window closes on the record that ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StationState {
    /// The last record applied: its state holds from its snapshot time until the next one's.
    pub(crate) last: Reading,
    /// The window holding `last`.
    pub(crate) open: Window,
    /// Locked, degraded or fine, and the profile that judges it.
    pub(crate) health: HealthState,
}

impl StationState {
    /// The state after the station's first record.
    pub(crate) fn first(reading: Reading, config: &StatsConfig) -> StationState {
        let mut open = Window::new(config.window_of(reading.at));
        open.record(None, &reading);
        StationState {
            health: HealthState::first(reading.at),
            last: reading,
            open,
        }
    }

    /// Applies `reading`, handing every window it closes to `close`, oldest first; `sealed` is
    /// the station's window waiting for its grace period, if any, and is left so.
    pub(crate) fn observe(
        &mut self,
        reading: Reading,
        config: &StatsConfig,
        sealed: &mut Option<Window>,
        mut close: impl FnMut(Window),
    ) -> Applied {
        if reading.at == self.last.at {
            return Applied::Duplicate;
        }
        if reading.at < self.last.at {
            self.open.late += 1;
            return Applied::Late;
        }
        let end = self.open.start + config.size_ms;
        if reading.at < end {
            self.open.hold(&self.last, self.last.at, reading.at);
        } else {
            // The open window ends: the last state held to its end, and holds from the start of
            // the reading's window (windows in between, with no record, are not published).
            self.open.hold(&self.last, self.last.at, end);
            let start = config.window_of(reading.at);
            let mut next = Window::new(start);
            next.hold(&self.last, start, reading.at);
            let ended = std::mem::replace(&mut self.open, next);
            // A window still waiting has ended at least a window before `reading`, longer ago
            // than any grace period: it closes first.
            if let Some(waiting) = sealed.take() {
                close(waiting);
            }
            *sealed = Some(ended);
        }
        self.open.record(Some(&self.last), &reading);
        self.last = reading;
        let stream_time = self.last.at;
        if let Some(done) =
            sealed.take_if(|w| stream_time >= w.start + config.size_ms + config.grace_ms)
        {
            close(done);
        }
        Applied::Applied
    }
}
