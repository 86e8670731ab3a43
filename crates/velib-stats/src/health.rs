//! Locked and degraded stations.
//!
//! A station can look alive in the feed and be dead in the street: its docks jammed, its
//! terminal down, while it still reports `is_renting`. What gives it away is silence: its counts
//! stop moving. Silence alone proves little (a quiet station at night moves for hours not at
//! all), so the question is whether the station's usual activity at those hours makes the
//! silence unlikely, as ouvreboite/velinfo_kafka_prototype asked it of thirty days of hourly
//! statistics (its `LockedStationDetector`). Here each station keeps its own small profile: per
//! hour of the day (UTC), a running mean of its movements (rentals plus returns) per hour,
//! learnt from its closed windows. An open station whose counts have not moved for at least
//! [`HealthConfig::locked_after`], over a span in which its profile predicts at least
//! [`HealthConfig::expected_movements`] movements, is [`Health::Locked`] — for a Poisson
//! process, ten expected movements and none seen happens one time in 22,000. (Six, one time in
//! 400, flagged a moving station of the scripted test city after a quiet night: summed over a
//! night, small rates add up, and there are many station-nights.) Until a station has
//! seen an hour [`HealthConfig::own_history`] times, the prediction for that hour is its
//! contract's: the median of the profiles of the contract's stations this tracker holds. Any
//! station still for [`HealthConfig::locked_always_after`] (12 hours) is locked whatever its
//! profile says, as in velinfo.
//!
//! A station whose docks out of service reach [`HealthConfig::degraded_share`] of its capacity
//! is [`Health::Degraded`]. Locked wins over degraded.
//!
//! Each change of a station's health is one [`StationHealthEvent`]. The health, the time since
//! when, and the profile are part of the station's state, so a restored monitor neither repeats
//! nor misses a change. The contract's profile is not state of its own: it is the median of the
//! profiles the tracker holds, so after a rebalance it is the mean over another set of stations,
//! and a decision that rested on it can differ from what the previous owner would have decided.
//!
//! A locked station stays locked until its counts move or it closes, however the predictions
//! change meanwhile. A station learns nothing while it is locked, so that its own silence does
//! not teach it that silence is usual.

use crate::window::{Reading, Window};
use std::time::Duration;
use velib_model::{Health, StationHealthEvent, StationKey};

const HOUR_MS: i64 = 3_600_000;

/// When a station is locked or degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// The least time without movement before a station can be locked (default 2 h).
    pub locked_after: Duration,
    /// The time without movement after which a station is locked whatever its profile
    /// (default 12 h).
    pub locked_always_after: Duration,
    /// The movements a station's profile must predict over its silence for it to be locked
    /// (default 10).
    pub expected_movements: f64,
    /// How many times a station must have seen an hour of the day before its own profile
    /// predicts that hour instead of its contract's (default 3).
    pub own_history: u8,
    /// The share of its capacity out of service that makes a station degraded (default 0.5).
    pub degraded_share: f64,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            locked_after: Duration::from_secs(2 * 3600),
            locked_always_after: Duration::from_secs(12 * 3600),
            expected_movements: 10.0,
            own_history: 3,
            degraded_share: 0.5,
        }
    }
}

/// Movements per hour for each hour of the day (UTC), and how many windows taught it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Profile {
    /// Quarters of a movement per hour (so up to 63.75 an hour), per hour of day.
    pub(crate) quarters: [u8; 24],
    /// Windows learnt from, per hour of day, two hours a byte (0 to 15 each).
    pub(crate) seen: [u8; 12],
}

impl Profile {
    fn seen(&self, hour: usize) -> u8 {
        (self.seen[hour / 2] >> (4 * (hour % 2))) & 0x0f
    }

    fn set_seen(&mut self, hour: usize, n: u8) {
        let shift = 4 * (hour % 2);
        self.seen[hour / 2] = (self.seen[hour / 2] & !(0x0f << shift)) | ((n & 0x0f) << shift);
    }

    /// The rate at `hour`, when it has been seen at least `min_seen` times (and at least once).
    pub(crate) fn rate(&self, hour: usize, min_seen: u8) -> Option<f64> {
        (self.seen(hour) >= min_seen.max(1)).then(|| f64::from(self.quarters[hour]) / 4.0)
    }

    /// Learns `rate` movements an hour at `hour`: the mean of the first 15 windows, then an
    /// exponential mean weighting each new one 1/16.
    fn learn(&mut self, hour: usize, rate: f64) {
        let n = self.seen(hour);
        let old = f64::from(self.quarters[hour]);
        let target = (rate * 4.0).clamp(0.0, 255.0);
        let mut new = (old + (target - old) / f64::from(n + 1)).round();
        // In whole quarters a step smaller than half a quarter would never move: take one.
        if new == old && target != old {
            new = old + (target - old).signum();
        }
        self.quarters[hour] = new.clamp(0.0, 255.0) as u8;
        self.set_seen(hour, (n + 1).min(15));
    }
}

/// The median of the profiles of a contract's stations, per hour: for each hour, how many
/// stations know it at each rate (in quarters, 0 to 255). The median, not the mean: a few busy
/// stations (a railway station's) pull a mean far above what most stations do, and a quiet
/// station judged by the mean is called locked for being quiet.
#[derive(Debug, Clone)]
pub(crate) struct ContractProfile {
    stations: Box<[[u32; 256]; 24]>,
}

impl Default for ContractProfile {
    fn default() -> ContractProfile {
        ContractProfile {
            stations: Box::new([[0; 256]; 24]),
        }
    }
}

impl ContractProfile {
    /// Adds (`add`) or removes a station's profile.
    pub(crate) fn count(&mut self, profile: &Profile, add: bool) {
        for hour in 0..24 {
            if profile.seen(hour) == 0 {
                continue;
            }
            let n = &mut self.stations[hour][usize::from(profile.quarters[hour])];
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// The median rate at `hour` of the stations that know it (the lower one of an even count).
    fn rate(&self, hour: usize) -> Option<f64> {
        let counts = &self.stations[hour];
        let total: u32 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let mut below = 0;
        for (quarters, n) in counts.iter().enumerate() {
            below += n;
            if below * 2 >= total {
                return Some(quarters as f64 / 4.0);
            }
        }
        None
    }

    /// Whether no station contributes.
    pub(crate) fn is_empty(&self) -> bool {
        self.stations.iter().all(|h| h.iter().all(|&n| n == 0))
    }
}

/// A station's health and what judging it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthState {
    pub(crate) profile: Profile,
    /// When its counts last moved (or it last was closed): snapshot time, epoch ms.
    pub(crate) still_since: i64,
    pub(crate) health: Health,
}

/// The hour of day (UTC) of epoch ms `at`.
fn hour_of(at: i64) -> usize {
    usize::try_from(at.rem_euclid(24 * HOUR_MS) / HOUR_MS).unwrap_or(0)
}

impl HealthState {
    /// The state after a station's first record.
    pub(crate) fn first(at: i64) -> HealthState {
        HealthState {
            profile: Profile::default(),
            still_since: at,
            health: Health::Ok,
        }
    }

    /// Learns from a closed window of `size` ms, unless the station is locked (its silence is
    /// not its usual activity) or was open less than half the window.
    pub(crate) fn learn(&mut self, window: &Window, size: i64) {
        let open_ms = i64::from(window.known.saturating_sub(window.closed));
        if self.health == Health::Locked || open_ms * 2 < size {
            return;
        }
        let movements = f64::from(window.rentals) + f64::from(window.returns);
        let rate = movements * HOUR_MS as f64 / open_ms as f64;
        let mut hour_start = window.start - window.start.rem_euclid(HOUR_MS);
        while hour_start < window.start + size {
            self.profile.learn(hour_of(hour_start), rate);
            hour_start += HOUR_MS;
        }
    }

    /// Judges the station on its newest record, `moved` telling whether its counts differ from
    /// the record before; returns the change, if its health changed.
    pub(crate) fn judge(
        &mut self,
        key: impl FnOnce() -> StationKey,
        reading: &Reading,
        moved: bool,
        contract: Option<&ContractProfile>,
        config: &HealthConfig,
    ) -> Option<StationHealthEvent> {
        let at = reading.at;
        if moved || !reading.open() {
            self.still_since = at;
        }
        let still = at - self.still_since;
        // Once locked, a station stays locked until it moves (or closes): the prediction that
        // condemned it can fall below the threshold as the profiles learn, and a station that
        // has not moved is no less locked for that.
        let (locked, why_locked) = if self.health == Health::Locked && still > 0 {
            (true, String::new())
        } else {
            self.locked(at, still, contract, config)
        };
        let out = reading.docks_out().unwrap_or(0);
        let degraded = reading.capacity > 0
            && f64::from(out) >= config.degraded_share * f64::from(reading.capacity);
        let health = if locked {
            Health::Locked
        } else if degraded {
            Health::Degraded
        } else {
            Health::Ok
        };
        if health == self.health {
            return None;
        }
        let since = if health == Health::Locked {
            self.still_since
        } else {
            at
        };
        let reason = match health {
            Health::Locked => why_locked,
            Health::Degraded => {
                format!("{out} of its {} docks are out of service", reading.capacity)
            }
            Health::Ok if !reading.open() => "closed".to_owned(),
            Health::Ok => "moving, with its docks in service".to_owned(),
        };
        let event = StationHealthEvent {
            version: StationHealthEvent::VERSION,
            key: key(),
            health,
            previous: self.health,
            since,
            decided_at: at,
            reason,
        };
        self.health = health;
        Some(event)
    }

    /// Whether a station still for `still` ms at `at` is locked, and why in words.
    fn locked(
        &self,
        at: i64,
        still: i64,
        contract: Option<&ContractProfile>,
        config: &HealthConfig,
    ) -> (bool, String) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let minutes = still / 60_000;
        if still < ms(config.locked_after) {
            return (false, String::new());
        }
        if still >= ms(config.locked_always_after) {
            return (true, format!("no movement for {minutes} minutes"));
        }
        let (expected, borrowed) = self.expected(self.still_since, at, contract, config);
        let whose = if borrowed {
            "its contract's usual activity"
        } else {
            "its usual activity"
        };
        (
            expected >= config.expected_movements,
            format!("no movement for {minutes} minutes, where {whose} predicts {expected:.1}"),
        )
    }

    /// The movements predicted from `from` to `to`, and whether any hour's prediction was the
    /// contract's.
    fn expected(
        &self,
        from: i64,
        to: i64,
        contract: Option<&ContractProfile>,
        config: &HealthConfig,
    ) -> (f64, bool) {
        let (mut sum, mut borrowed) = (0.0, false);
        let mut t = from;
        while t < to {
            let next = (t - t.rem_euclid(HOUR_MS) + HOUR_MS).min(to);
            let hour = hour_of(t);
            let rate = match self.profile.rate(hour, config.own_history) {
                Some(rate) => rate,
                None => {
                    borrowed = true;
                    contract.and_then(|c| c.rate(hour)).unwrap_or(0.0)
                }
            };
            sum += rate * (next - t) as f64 / HOUR_MS as f64;
            t = next;
        }
        (sum, borrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_learns_a_mean_then_forgets_slowly() {
        let mut p = Profile::default();
        assert_eq!(p.rate(8, 1), None);
        p.learn(8, 4.0);
        p.learn(8, 8.0);
        assert_eq!(p.rate(8, 1), Some(6.0));
        assert_eq!(p.rate(8, 3), None, "seen twice");
        for _ in 0..40 {
            p.learn(8, 2.0);
        }
        assert_eq!(p.seen(8), 15);
        assert!((p.rate(8, 3).unwrap() - 2.0).abs() < 0.3);
        // Its neighbour in the same byte is untouched.
        assert_eq!(p.seen(9), 0);
        p.learn(9, 100.0);
        assert_eq!((p.seen(8), p.rate(9, 1)), (15, Some(63.75)));
    }

    #[test]
    fn a_contract_profile_is_the_median_of_its_stations() {
        let (mut a, mut b, mut busy) = (Profile::default(), Profile::default(), Profile::default());
        a.learn(7, 2.0);
        b.learn(7, 3.0);
        b.learn(8, 1.0);
        busy.learn(7, 40.0);
        let mut c = ContractProfile::default();
        for p in [&a, &b, &busy] {
            c.count(p, true);
        }
        assert_eq!(
            (c.rate(7), c.rate(8), c.rate(9)),
            (Some(3.0), Some(1.0), None)
        );
        c.count(&b, false);
        assert_eq!((c.rate(7), c.rate(8)), (Some(2.0), None));
        c.count(&a, false);
        c.count(&busy, false);
        assert!(c.is_empty());
    }
}
