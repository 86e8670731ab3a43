//! How each station lives: rentals and returns, statistics per station over tumbling windows
//! of snapshot time, and stations that look locked or degraded.
//!
//! Pure: no I/O, no clock. Time is the records' own [`snapshot_at`] (when the feed made the
//! snapshot), never when a record arrived, so replaying a day gives the same windows as living
//! it, and a monitor restarted from its state changelog continues exactly where it stopped.
//!
//! - [`activity()`]: rentals and returns between two consecutive records, and what netting
//!   within one poll interval hides (see the [`activity`](mod@activity) module).
//! - [`Tracker`]: per station, a tumbling window (an hour by default, [`StatsConfig`]) of
//!   records seen, rentals and returns (per vehicle type where the feed has types), least,
//!   greatest and time-weighted mean of bikes and free docks, minutes empty, full, with docks
//!   out of service and closed; each closed window becomes a [`StationStats`].
//!
//! # Windows
//!
//! A record's state holds from its snapshot time to the next record's; where that interval
//! crosses a window's bounds it is clipped, so the value at a window's start is the last one
//! known before it. A station's first window is known only from its first record on
//! ([`StationStats::minutes_known`]). A window in which no record of the station falls is not
//! published (as in Kafka Streams, a window exists once a record falls in it); the state that
//! held through it is the value the next window starts with.
//!
//! A window closes, as Kafka Streams' `TimeWindows.ofSizeAndGrace` with
//! `suppress(untilWindowCloses)` closes one, when its station's snapshot time (the newest
//! snapshot applied) passes its end plus the grace period, and only then is it published,
//! once: there is no early or emit-on-change result to retract. Records of a station are
//! applied in snapshot order. A record from an older snapshot than one already applied is
//! late: it is counted in the `late_records` of the window open when it arrives and never
//! changes anything else, let alone a window already published. The tracker keeps the last
//! state of a station, not its history, so it cannot place an older snapshot between two it
//! has applied, whether or not that snapshot's window is still in its grace period. For the
//! records velib's producer writes this loses nothing: they reach a station's partition in
//! snapshot order, and the late ones (a second producer lagging behind the first, a replay)
//! repeat snapshots already applied. The grace period therefore defaults to 0: a larger one
//! only delays publication (it exists for symmetry with other window operators, and costs a
//! second window per station during the grace).
//!
//! A station whose records stop (a frozen feed repeats its last snapshot, which is a
//! duplicate) keeps its last window open until a newer snapshot arrives: snapshot time, not
//! the clock, closes windows.
//!
//! # Exactly once
//!
//! The tracker's state of a station ([`Tracker::state`], JSON) is what a monitor keeps in its
//! state changelog in the same Kafka transaction as the consumed offsets and the windows it
//! publishes, and restores ([`Tracker::restore`]) after a crash or a rebalance. Kafka Streams'
//! emit-on-change (KIP-557) was withdrawn (apache/kafka#10397) because its state could run
//! ahead of what had been emitted: after a crash it saw the replayed record as "no change" and
//! never emitted it. Here the open windows and the published ones commit or abort together, so
//! a replayed record always meets the state from before it.
//!
//! # Memory
//!
//! A station with an open window costs 254 bytes with two vehicle types, as real feeds have,
//! health and activity profile included (the unit test `memory_per_station_is_bounded` adds up
//! its parts at 10,000 stations: 184 bytes of boxed state, 36 of them the profile, its per-type
//! counts, the key's text, and its share of the map's slots, which is up to 16 bytes more just
//! after the table doubles). Counts are kept as `u16` (clamped at 65,535), durations in `u32`
//! milliseconds (hence windows of at most a day).
//!
//! [`snapshot_at`]: velib_model::Station::snapshot_at

#![forbid(unsafe_code)]

pub mod activity;
pub mod health;
mod station;
mod types;
mod window;

pub use activity::{Activity, activity};
pub use health::HealthConfig;
pub use station::{Applied, ConfigError, StatsConfig};
pub use velib_model::{Health, StationHealthEvent, StationStats};

use health::ContractProfile;
use serde::{Deserialize, Serialize};
use station::StationState;
use std::collections::HashMap;
use types::TypeTable;
use velib_model::{StationView, VehicleKind};
use window::{Reading, Tally, Window};

/// A vehicle type as the state changelog names it: id and kind, `["electrical","electric"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NamedType(String, VehicleKind);

/// Statistics and health of many stations, each by its key: its last record, its open window,
/// the window that waits for its grace period, its health and activity profile.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    config: StatsConfig,
    health: HealthConfig,
    types: TypeTable,
    /// Per contract (the key's part before `:`), the sum of its stations' profiles.
    contracts: HashMap<Box<str>, ContractProfile>,
    /// Boxed: the map's slots, of which hashbrown keeps up to twice as many as stations, stay
    /// small.
    stations: HashMap<Box<str>, Box<StationState<u8>>>,
}

/// A state changelog value that is not a station's statistics state.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not the JSON [`Tracker::state`] writes.
    #[error("not a station's statistics state: {0}")]
    Format(#[from] serde_json::Error),
    /// More vehicle types than a tracker can name.
    #[error("more than 256 vehicle types")]
    TooManyTypes,
}

/// What records made a tracker publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// Closed windows, oldest first per station.
    pub stats: Vec<StationStats>,
    /// Changes of health.
    pub health: Vec<StationHealthEvent>,
}

impl Published {
    /// Whether nothing was published.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty() && self.health.is_empty()
    }

    /// Empties both lists, keeping their memory.
    pub fn clear(&mut self) {
        self.stats.clear();
        self.health.clear();
    }
}

/// The contract part of a station key, `lyon` of `lyon:1001`.
fn contract_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(c, _)| c)
}

impl Tracker {
    /// A tracker with no station known, judging health by the default [`HealthConfig`].
    pub fn new(config: StatsConfig) -> Tracker {
        Tracker::with_health(config, HealthConfig::default())
    }

    /// A tracker with no station known.
    pub fn with_health(config: StatsConfig, health: HealthConfig) -> Tracker {
        Tracker {
            config,
            health,
            ..Tracker::default()
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &StatsConfig {
        &self.config
    }

    /// Applies `station`'s record to the station keyed `key` (its Kafka key, `lyon:1001`),
    /// appending the windows it closes (oldest first) and the change of its health, if any, to
    /// `out`.
    pub fn observe(
        &mut self,
        key: &str,
        station: &StationView<'_>,
        out: &mut Published,
    ) -> Applied {
        let types = &mut self.types;
        let Some(reading) = Reading::read(station, |id, kind| types.intern(id, kind)) else {
            return Applied::Unplaced;
        };
        let (config, health) = (&self.config, &self.health);
        let contract = contract_of(key);
        let Some(state) = self.stations.get_mut(key) else {
            let mut state = Box::new(StationState::first(reading, config));
            let profile = self.contracts.get(contract);
            if let Some(event) =
                state
                    .health
                    .judge(|| station.key(), &state.last, false, profile, health)
            {
                out.health.push(event);
            }
            self.stations.insert(key.into(), state);
            return Applied::First;
        };
        let moved = reading.moved_from(&state.last);
        let mut ended = Vec::new();
        let applied = state.observe(reading, config, |window| ended.push(window));
        if applied != Applied::Applied {
            return applied;
        }
        let table = &self.types;
        if !ended.is_empty() {
            let profile = self.contracts.entry(contract.into()).or_default();
            profile.count(&state.health.profile, false);
            for window in &ended {
                state.health.learn(window, config.size_ms());
                out.stats
                    .push(window.finish(&station.key(), config.size_ms(), |t| table.get(t)));
            }
            profile.count(&state.health.profile, true);
        }
        let profile = self.contracts.get(contract);
        if let Some(event) =
            state
                .health
                .judge(|| station.key(), &state.last, moved, profile, health)
        {
            out.health.push(event);
        }
        applied
    }

    /// The statistics state of station `key`, as the state changelog keeps it (JSON);
    /// `None` when the station is not known.
    pub fn state(&self, key: &str) -> Option<serde_json::Value> {
        let state = self.stations.get(key)?;
        let named = state.map_types(|&t| {
            let (id, kind) = self.types.get(t);
            Some(NamedType(id.to_owned(), kind))
        })?;
        serde_json::to_value(named).ok()
    }

    /// Sets station `key`'s state to `state`, as [`Tracker::state`] wrote it.
    ///
    /// # Errors
    ///
    /// When `state` is not such a value; the station is then left as it was.
    pub fn restore(&mut self, key: &str, state: &serde_json::Value) -> Result<(), RestoreError> {
        let named = StationState::<NamedType>::deserialize(state)?;
        let types = &mut self.types;
        let state = named
            .map_types(|NamedType(id, kind)| types.intern(id, *kind))
            .ok_or(RestoreError::TooManyTypes)?;
        self.forget(key);
        self.contracts
            .entry(contract_of(key).into())
            .or_default()
            .count(&state.health.profile, true);
        self.stations.insert(key.into(), Box::new(state));
        Ok(())
    }

    /// Forgets station `key` (its partition went to another monitor).
    pub fn forget(&mut self, key: &str) {
        if let Some(state) = self.stations.remove(key) {
            self.uncount(key, &state);
        }
    }

    /// Takes a forgotten station's profile out of its contract's.
    fn uncount(&mut self, key: &str, state: &StationState<u8>) {
        let contract = contract_of(key);
        if let Some(profile) = self.contracts.get_mut(contract) {
            profile.count(&state.health.profile, false);
            if profile.is_empty() {
                self.contracts.remove(contract);
            }
        }
    }

    /// Keeps only the stations whose key `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<Box<str>> = self.stations.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// Number of stations known.
    pub fn len(&self) -> usize {
        self.stations.len()
    }

    /// Whether no station is known.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }

    /// Heap bytes held (an estimate from the table's capacity and each station's parts), for
    /// the memory check and the benchmark.
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Box<str>, Box<StationState<u8>>)>() + 1;
        let buckets = if self.stations.capacity() == 0 {
            0
        } else {
            (self.stations.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * slot
            + self
                .stations
                .iter()
                .map(|(k, s)| {
                    k.len() + std::mem::size_of::<StationState<u8>>() + station_heap_bytes(s)
                })
                .sum::<usize>()
            + self.types.heap_bytes()
    }
}

/// Heap bytes of one station's state beyond its inline part: its per-type counts and the
/// window waiting for its grace period.
fn station_heap_bytes(state: &StationState<u8>) -> usize {
    let reading = |r: &Reading<u8>| r.types.as_ref().map_or(0, |t| std::mem::size_of_val(&**t));
    let window = |w: &Window<u8>| {
        w.types
            .as_ref()
            .map_or(0, |t| std::mem::size_of_val::<[Tally<u8>]>(t))
    };
    reading(&state.last)
        + window(&state.open)
        + state
            .sealed
            .as_ref()
            .map_or(0, |w| std::mem::size_of::<Window<u8>>() + window(w))
}

#[cfg(test)]
mod tests;
