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
//! The tracker's state of a station ([`Tracker::encode_state`], a compact binary form, about
//! 150 bytes) is what a monitor keeps in its state changelog in the same Kafka transaction as
//! the consumed offsets and the windows it publishes, and restores
//! ([`Tracker::restore_encoded`]) after a crash or a rebalance; the JSON form earlier versions
//! wrote is still read ([`Tracker::restore_json`]). Kafka Streams' emit-on-change (KIP-557)
//! was withdrawn (apache/kafka#10397) because its state could run ahead of what had been
//! emitted: after a crash it saw the replayed record as "no change" and never emitted it.
//! Here the open windows and the published ones commit or abort together, so a replayed
//! record always meets the state from before it.
//!
//! # Memory
//!
//! A station's state lies in place, with no allocation of its own: 168 bytes (its last record
//! 32, its open window 88, its health and activity profile 48), per-type counts in small
//! fixed arrays (three types; real feeds have one or two), counts as `u16` (clamped at
//! 65,535), durations in `u32` milliseconds (hence windows of at most a day). The states sit
//! side by side in one vector, found through a table of 4-byte entry numbers keyed by
//! contract and station number: with the station's 8-byte compact key, 176 bytes a station
//! and its share of the index and of the vector's spare room (which grows by an eighth), 201
//! bytes at 10,000 stations (the unit test `memory_per_station_is_bounded` adds up the parts;
//! the index's share grows by up to 5 bytes just after it doubles).
//!
//! [`snapshot_at`]: velib_model::Station::snapshot_at

#![forbid(unsafe_code)]

pub mod activity;
mod codec;
pub mod health;
mod legacy;
mod station;
mod types;
mod window;

pub use activity::{Activity, activity};
pub use codec::DecodeError;
pub use health::HealthConfig;
pub use legacy::LegacyError;
pub use station::{Applied, ConfigError, StatsConfig};
pub use velib_model::{Health, StationHealthEvent, StationStats};

use hashbrown::HashTable;
use health::ContractProfile;
use station::StationState;
use std::collections::HashMap;
use types::TypeTable;
use velib_model::StationView;
use window::{Reading, Window};

/// Statistics and health of many stations, each by its key: its last record, its open window,
/// the window that waits for its grace period, its health and activity profile.
///
/// The states lie side by side in one vector, found through a table of 4-byte indices keyed
/// by contract and station number (stations whose number is not a plain integer below 2^48
/// are found by their whole key instead): no allocation per station.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    config: StatsConfig,
    health: HealthConfig,
    types: TypeTable,
    contracts: Contracts,
    /// Indices into `entries` of the stations with a compact key, hashed by it.
    index: HashTable<u32>,
    /// Indices into `entries` of the other stations, by key.
    wide: HashMap<Box<str>, u32>,
    entries: Vec<Entry>,
    /// Entries of forgotten stations, reused by the next new ones.
    free: Vec<u32>,
    /// Per entry, the window that ended but waits for its grace period.
    sealed: HashMap<u32, Window>,
}

/// One station's slot: its compact key ([`WIDE`] or [`FREE`] otherwise) and its state.
#[derive(Debug, Clone)]
struct Entry {
    key: u64,
    state: StationState,
}

/// [`Entry::key`] of a station found through [`Tracker::wide`].
const WIDE: u64 = u64::MAX;
/// [`Entry::key`] of a slot no station holds.
const FREE: u64 = u64::MAX - 1;
/// Station numbers below 2^48 with a contract index below 0xFFFF make a compact key, never
/// [`WIDE`] or [`FREE`].
const NUMBER_BITS: u32 = 48;

/// The contracts met, each by index, with the sum of its stations' profiles.
#[derive(Debug, Clone, Default)]
struct Contracts {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    profiles: Vec<Option<ContractProfile>>,
    /// The contract of the previous key: feeds list stations contract by contract, so this
    /// saves hashing the name for most records.
    last: Option<u32>,
}

impl Contracts {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(c) = self.last
            && *self.names[c as usize] == *name
        {
            return c;
        }
        let c = match self.ids.get(name) {
            Some(&c) => c,
            None => {
                let c = self.names.len() as u32;
                self.ids.insert(name.into(), c);
                self.names.push(name.into());
                self.profiles.push(None);
                c
            }
        };
        self.last = Some(c);
        c
    }

    fn profile(&self, c: u32) -> Option<&ContractProfile> {
        self.profiles[c as usize].as_ref()
    }

    /// Adds (`add`) or removes a station's profile from its contract's.
    fn count(&mut self, c: u32, profile: &health::Profile, add: bool) {
        self.profiles[c as usize]
            .get_or_insert_with(ContractProfile::default)
            .count(profile, add);
    }

    /// Drops contract `c`'s profile once no station contributes to it (its last station
    /// forgotten).
    fn drop_if_empty(&mut self, c: u32) {
        let slot = &mut self.profiles[c as usize];
        if slot.as_ref().is_some_and(ContractProfile::is_empty) {
            *slot = None;
        }
    }

    fn heap_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len()).sum();
        2 * names
            + self.names.capacity() * 16
            + self.ids.capacity() * 24
            + self.profiles.capacity() * 8
            + self.profiles.iter().flatten().count() * std::mem::size_of::<[[u32; 256]; 24]>()
    }
}

/// A state changelog value that is not a station's statistics state.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not the binary form [`Tracker::encode_state`] writes.
    #[error(transparent)]
    Binary(#[from] DecodeError),
    /// Not the JSON form earlier versions wrote.
    #[error(transparent)]
    Json(#[from] LegacyError),
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

/// The contract part of a station key, `lyon` of `lyon:1001`, and its number when it is a
/// plain integer below 2^48 (written as `u64`'s `Display` writes it, so that the key can be
/// written back).
fn split_key(key: &str) -> (&str, Option<u64>) {
    let Some((contract, number)) = key.split_once(':') else {
        return (key, None);
    };
    let canonical = !number.is_empty()
        && number.len() <= 15
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'));
    let n = canonical
        .then(|| number.parse::<u64>().ok())
        .flatten()
        .filter(|&n| n < 1 << NUMBER_BITS);
    (contract, n)
}

/// The compact key of station `number` of contract `c`, when there is one.
fn compact(c: u32, number: Option<u64>) -> Option<u64> {
    let n = number?;
    (c < 0xFFFF).then(|| (u64::from(c) << NUMBER_BITS) | n)
}

/// A 64-bit mix of a compact key (a folded multiply): its high bits choose hashbrown's
/// control byte, its low bits the bucket, and both depend on every bit of the key.
fn hash(key: u64) -> u64 {
    let p = u128::from(key) * 0x9E37_79B9_7F4A_7C15_u128;
    (p as u64) ^ ((p >> 64) as u64)
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

    /// The entry of station `key` (contract `c`, number `number`), if known.
    fn find(&self, key: &str, c: u32, number: Option<u64>) -> Option<u32> {
        match compact(c, number) {
            Some(k) => {
                let entries = &self.entries;
                self.index
                    .find(hash(k), |&i| entries[i as usize].key == k)
                    .copied()
            }
            None => self.wide.get(key).copied(),
        }
    }

    /// Adds station `key` with `state`; its entry.
    fn insert(&mut self, key: &str, c: u32, number: Option<u64>, state: StationState) -> u32 {
        let compact = compact(c, number);
        let entry = Entry {
            key: compact.unwrap_or(WIDE),
            state,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                if self.entries.len() == self.entries.capacity() {
                    // Grown by an eighth, not doubled: at a million stations a doubled vector
                    // would hold 170 MB it may never use.
                    self.entries.reserve_exact((self.entries.len() / 8).max(16));
                }
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        match compact {
            Some(k) => {
                let entries = &self.entries;
                self.index
                    .insert_unique(hash(k), i, |&j| hash(entries[j as usize].key));
            }
            None => {
                self.wide.insert(key.into(), i);
            }
        }
        i
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
        let (contract, number) = split_key(key);
        let c = self.contracts.intern(contract);
        let Some(i) = self.find(key, c, number) else {
            let mut state = StationState::first(reading, &self.config);
            let profile = self.contracts.profile(c);
            if let Some(event) =
                state
                    .health
                    .judge(|| station.key(), &state.last, false, profile, &self.health)
            {
                out.health.push(event);
            }
            self.insert(key, c, number, state);
            return Applied::First;
        };
        let (config, health) = (&self.config, &self.health);
        let state = &mut self.entries[i as usize].state;
        let moved = reading.moved_from(&state.last);
        let mut sealed = if self.sealed.is_empty() {
            None
        } else {
            self.sealed.remove(&i)
        };
        let mut ended: [Option<Window>; 2] = [None, None];
        let applied = state.observe(reading, config, &mut sealed, |window| {
            // At most two: the window waiting for its grace period, and the one just ended.
            if let Some(slot) = ended.iter_mut().find(|w| w.is_none()) {
                *slot = Some(window);
            }
        });
        if let Some(w) = sealed {
            self.sealed.insert(i, w);
        }
        if applied != Applied::Applied {
            return applied;
        }
        let table = &self.types;
        if ended[0].is_some() {
            self.contracts.count(c, &state.health.profile, false);
            for window in ended.iter().flatten() {
                state.health.learn(window, config.size_ms());
                out.stats
                    .push(window.finish(&station.key(), config.size_ms(), |t| table.get(t)));
            }
            self.contracts.count(c, &state.health.profile, true);
        }
        let profile = self.contracts.profile(c);
        if let Some(event) =
            state
                .health
                .judge(|| station.key(), &state.last, moved, profile, health)
        {
            out.health.push(event);
        }
        applied
    }

    /// Appends the statistics state of station `key` to `out`, in the compact binary form the
    /// state changelog keeps (see the crate's documentation); `false` (and nothing appended)
    /// when the station is not known.
    pub fn encode_state(&self, key: &str, out: &mut Vec<u8>) -> bool {
        let (contract, number) = split_key(key);
        let Some(&c) = self.contracts.ids.get(contract) else {
            return false;
        };
        let Some(i) = self.find(key, c, number) else {
            return false;
        };
        codec::encode(
            &self.entries[i as usize].state,
            self.sealed.get(&i),
            &self.types,
            out,
        );
        true
    }

    /// Sets station `key`'s state to `bytes`, as [`Tracker::encode_state`] wrote them.
    ///
    /// # Errors
    ///
    /// When `bytes` are not such a state (of a version this build reads); the station is then
    /// left as it was.
    pub fn restore_encoded(&mut self, key: &str, bytes: &[u8]) -> Result<(), RestoreError> {
        let (state, sealed) = codec::decode(bytes, &mut self.types)?;
        self.put(key, state, sealed);
        Ok(())
    }

    /// Sets station `key`'s state to `state`, in the JSON form velib wrote to its state
    /// changelog before the binary one, so that a state topic an earlier velib wrote restores.
    ///
    /// # Errors
    ///
    /// When `state` is not such a value; the station is then left as it was.
    pub fn restore_json(
        &mut self,
        key: &str,
        state: &serde_json::Value,
    ) -> Result<(), RestoreError> {
        let (state, sealed) = legacy::decode(state, &mut self.types)?;
        self.put(key, state, sealed);
        Ok(())
    }

    /// Sets station `key`'s state, replacing what was known of it.
    fn put(&mut self, key: &str, state: StationState, sealed: Option<Window>) {
        self.forget(key);
        let (contract, number) = split_key(key);
        let c = self.contracts.intern(contract);
        self.contracts.count(c, &state.health.profile, true);
        let i = self.insert(key, c, number, state);
        if let Some(w) = sealed {
            self.sealed.insert(i, w);
        }
    }

    /// Forgets station `key` (its partition went to another monitor).
    pub fn forget(&mut self, key: &str) {
        let (contract, number) = split_key(key);
        let Some(&c) = self.contracts.ids.get(contract) else {
            return;
        };
        let i = match compact(c, number) {
            Some(k) => {
                let entries = &self.entries;
                match self
                    .index
                    .find_entry(hash(k), |&i| entries[i as usize].key == k)
                {
                    Ok(found) => found.remove().0,
                    Err(_) => return,
                }
            }
            None => match self.wide.remove(key) {
                Some(i) => i,
                None => return,
            },
        };
        let entry = &mut self.entries[i as usize];
        entry.key = FREE;
        let profile = entry.state.health.profile;
        self.contracts.count(c, &profile, false);
        self.contracts.drop_if_empty(c);
        self.sealed.remove(&i);
        self.free.push(i);
    }

    /// Keeps only the stations whose key `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let names = &self.contracts.names;
        let compact_keys = self.entries.iter().filter(|e| e.key < FREE).map(|e| {
            let c = (e.key >> NUMBER_BITS) as usize;
            format!("{}:{}", names[c], e.key & ((1 << NUMBER_BITS) - 1))
        });
        let wide_keys = self.wide.keys().map(|k| k.to_string());
        let gone: Vec<String> = compact_keys.chain(wide_keys).filter(|k| !keep(k)).collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// Number of stations known.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether no station is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (an estimate from the tables' capacities), for the memory check and the
    /// benchmark.
    pub fn heap_bytes(&self) -> usize {
        let buckets = |capacity: usize| {
            if capacity == 0 {
                0
            } else {
                (capacity * 8 / 7).next_power_of_two()
            }
        };
        // hashbrown: one control byte per bucket beside each slot.
        buckets(self.index.capacity()) * (std::mem::size_of::<u32>() + 1)
            + buckets(self.wide.capacity()) * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.wide.keys().map(|k| k.len()).sum::<usize>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + buckets(self.sealed.capacity()) * (std::mem::size_of::<(u32, Window)>() + 1)
            + self.types.heap_bytes()
            + self.contracts.heap_bytes()
    }
}

#[cfg(test)]
mod tests;
