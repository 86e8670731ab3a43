//! Change detection: pure, no I/O, keyed by [`StationKey`](velib_model::StationKey).
//!
//! A [`Detector`] remembers, per station, only what detection needs — the tracked count, the
//! available bikes, whether the station is open, and the snapshot the record came from — and
//! judges each new record against it:
//!
//! - the first record of a station only records its state (no line: unlike the tutorial's
//!   zero-initialised dict, which prints every station at start-up);
//! - a record from a snapshot that is not newer than the remembered one is stale (the same
//!   snapshot polled twice, a replay, a second producer, a producer retry) and changes nothing;
//! - otherwise a different tracked count is a change, and crossing one of the lines of
//!   [`Shortage`] — "open with no bike", "open with no e-bike", "open and taking no returns" —
//!   is a transition, published as an event ([`Crossed`]).
//!
//! # Counts a record may not give
//!
//! The v1 counts (free stands, bikes) are in every record; e-bikes, classic bikes and docks
//! out of service only in those of feeds that give them
//! ([`TrackedField::of_view`] is `None` otherwise). A station whose record lacks the tracked
//! count is still remembered (its emptiness is still judged), but no change is printed for it:
//! a count that is not known is not 0, so neither "the feed stopped saying" nor "the feed
//! started saying" is a change. Changes are printed again from the second record that gives
//! the count. The e-bike and returns lines follow the same rule: a record without per-type
//! counts (or without `is_returning`) neither starts nor ends a shortage of e-bikes (or of
//! returns); only two records that both say can cross the line.
//!
//! # What orders the records of a station
//!
//! The snapshot's time, [`Station::snapshot_at`](velib_model::Station::snapshot_at): for GBFS
//! the `station_status` feed's `last_updated`, for the JCDecaux v1 API and the simulation the
//! poll time. Every new snapshot is newer, so every change between two consecutive snapshots
//! is printed once, with the count of that change; the same snapshot seen again is not newer,
//! so it prints nothing.
//!
//! The station's own `last_update` is *not* used: in JCDecaux's GBFS feeds `last_reported`
//! behaves like a daily heartbeat (it stays the same through 98 % of count changes, and
//! sometimes goes back in time while the counts move), so judging by it printed about 1 % of
//! the changes, some of them sums of several. Whether v1's `last_update` means more is not
//! known, and ordering v1 by poll time is right either way.
//!
//! A record without `snapshot_at` (written by another producer, such as the tutorial's, or by
//! a velib older than the field) cannot be ordered: Kafka's per-partition order is then the
//! only order there is, and only a record identical to the remembered state counts as stale.
//! A replay of such records can print changes again.
//!
//! # Memory
//!
//! State is 16 bytes per station under an 8-byte key (contract interned to a `u16`, numeric id
//! up to 2^48); hashbrown adds a control byte and keeps its table at most 7/8 full, so a
//! station costs between about 28 and 50 bytes depending on where the table is in its growth.
//! Counts are kept as `u16` (clamped at 65,535). Stations with a text id (some GBFS systems)
//! go to a second map keyed by the full string, at about three times the cost.

use std::collections::HashMap;
use velib_model::{EmptinessKind, Shortage, StationId, StationView, Status, TrackedField};

/// The remembered state of one station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// The record's `snapshot_at`; `i64::MIN` when it carries none.
    snapshot_at: i64,
    tracked: u16,
    bikes: u16,
    open: bool,
    /// Whether the record gave the tracked count (`tracked` is 0 when it did not).
    has_tracked: bool,
    /// The e-bike and returns lines ([`Lines`]); they fit in the padding, so a station costs
    /// the same with them.
    lines: Lines,
}

impl State {
    /// Whether the station is short of `shortage`; `None` when its record did not say.
    fn short_of(&self, shortage: Shortage) -> Option<bool> {
        match shortage {
            Shortage::Bikes => Some(self.open && self.bikes == 0),
            Shortage::Ebikes => self.lines.get(0),
            Shortage::Returns => self.lines.get(1),
        }
    }
}

/// Whether an open station lacks e-bikes (line 0) and returns (line 1), each as two bits:
/// whether the record says, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Lines(u8);

impl Lines {
    const KNOWN: u8 = 0b0101;

    fn new(ebikes: Option<bool>, returns: Option<bool>) -> Lines {
        let bits = |line: Option<bool>| line.map_or(0, |short| 1 | u8::from(short) << 1);
        Lines(bits(ebikes) | bits(returns) << 2)
    }

    fn of(station: &StationView<'_>) -> Lines {
        Lines::new(
            Shortage::Ebikes.of_view(station),
            Shortage::Returns.of_view(station),
        )
    }

    fn get(self, line: u8) -> Option<bool> {
        let bits = self.0 >> (2 * line);
        (bits & 1 == 1).then_some(bits & 2 == 2)
    }
}

/// The lines ([`Shortage`]) a record crossed, each at most once, in [`Shortage::ALL`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crossed([Option<EmptinessKind>; 3]);

impl Crossed {
    /// No line crossed.
    pub const NONE: Crossed = Crossed([None; 3]);

    /// Only `kind`'s line crossed.
    pub fn only(kind: EmptinessKind) -> Crossed {
        let mut crossed = Crossed::NONE;
        crossed.0[kind.shortage() as usize] = Some(kind);
        crossed
    }

    /// The transitions, in [`Shortage::ALL`]'s order.
    pub fn kinds(&self) -> impl Iterator<Item = EmptinessKind> + '_ {
        self.0.iter().flatten().copied()
    }

    /// The transition of `shortage`'s line, if it was crossed.
    pub fn of(&self, shortage: Shortage) -> Option<EmptinessKind> {
        self.0[shortage as usize]
    }

    /// Whether no line was crossed.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// What the detector remembers of one station, as the exactly-once monitor's state changelog
/// keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    /// The snapshot the state came from, when its record carried one.
    pub snapshot_at: Option<i64>,
    /// The tracked count, when the record gave it.
    pub tracked: Option<u32>,
    /// Available bikes.
    pub bikes: u32,
    /// Whether the station was open.
    pub open: bool,
    /// Available e-bikes, when the record counted bikes by type.
    pub ebikes: Option<u32>,
    /// Whether the station took bikes back, when the record said.
    pub is_returning: Option<bool>,
}

/// What a record means for its station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First record of the station: its state is recorded, nothing else.
    First,
    /// Not from a newer snapshot than what is known: ignored.
    Stale,
    /// Newer: the state was updated.
    Updated {
        /// `(previous, current)` tracked count, when it changed.
        change: Option<(u32, u32)>,
        /// The lines the station crossed (no bike, no e-bike, no returns).
        crossed: Crossed,
        /// Whether the record gives the tracked count, the e-bike count or `is_returning`
        /// where the previous one did not, or the reverse: nothing to print, but a state to
        /// remember, as the next change or crossing depends on it.
        known_changed: bool,
    },
}

/// Per-station state for one partition's worth of stations.
#[derive(Debug, Default)]
pub struct Detector {
    field: TrackedField,
    contracts: HashMap<Box<str>, u16>,
    /// The contract of the previous record, by number: feeds list stations contract by
    /// contract, so this saves hashing the name for most records.
    last_contract: Option<u16>,
    contract_names: Vec<Box<str>>,
    compact: HashMap<u64, State>,
    wide: HashMap<Box<str>, State>,
    /// Statistics and health of the same stations (`--stats`): kept beside detection, so that
    /// they are created, restored and dropped with the partition's detector.
    stats: Option<Box<velib_stats::Tracker>>,
}

const ID_BITS: u32 = 48;

impl Detector {
    /// A detector following `field`, with no station known.
    pub fn new(field: TrackedField) -> Detector {
        Detector {
            field,
            ..Detector::default()
        }
    }

    /// The same detector, also keeping `tracker`'s statistics of its stations.
    pub fn with_stats(mut self, tracker: velib_stats::Tracker) -> Detector {
        self.stats = Some(Box::new(tracker));
        self
    }

    /// The statistics kept beside detection, if any.
    pub fn stats(&self) -> Option<&velib_stats::Tracker> {
        self.stats.as_deref()
    }

    /// The statistics kept beside detection, if any, to update.
    pub fn stats_mut(&mut self) -> Option<&mut velib_stats::Tracker> {
        self.stats.as_deref_mut()
    }

    /// Judges `station` against what is known of it and records its new state. (An owned
    /// [`Station`](velib_model::Station) is judged through [`Station::view`](velib_model::Station::view).)
    pub fn observe(&mut self, station: &StationView<'_>) -> Verdict {
        let tracked = self.field.of_view(station);
        let new = State {
            snapshot_at: station.snapshot_at.unwrap_or(i64::MIN),
            tracked: clamp(tracked.unwrap_or(0)),
            bikes: clamp(station.available_bikes),
            open: station.status == Status::Open,
            has_tracked: tracked.is_some(),
            lines: Lines::of(station),
        };
        match self.compact_key(station) {
            Some(key) => observe_slot(self.compact.entry(key), new, tracked),
            // Rare: text ids, ids beyond 2^48, more than 65,535 contracts.
            None => {
                let key = station.key().as_str().into();
                observe_slot(self.wide.entry(key), new, tracked)
            }
        }
    }

    /// Sets what is known of station `number` of contract `contract` (spelled as its records
    /// spell it), as restored from the state changelog.
    pub fn restore(&mut self, contract: &str, number: &StationId, state: Remembered) {
        let state = State {
            snapshot_at: state.snapshot_at.unwrap_or(i64::MIN),
            tracked: clamp(state.tracked.unwrap_or(0)),
            bikes: clamp(state.bikes),
            open: state.open,
            has_tracked: state.tracked.is_some(),
            lines: Lines::new(
                state.ebikes.map(|n| state.open && n == 0),
                state.is_returning.map(|r| state.open && !r),
            ),
        };
        match self.compact_key_of(contract, number) {
            Some(key) => {
                self.compact.insert(key, state);
            }
            None => {
                let key = velib_model::StationKey::new(contract, &number.to_string());
                self.wide.insert(key.as_str().into(), state);
            }
        }
    }

    /// Number of stations known.
    pub fn len(&self) -> usize {
        self.compact.len() + self.wide.len()
    }

    /// Whether no station is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the state tables (an estimate from their capacities), for the
    /// memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        fn table<K, V>(m: &HashMap<K, V>) -> usize {
            // hashbrown: one control byte per bucket plus a group of trailing control bytes.
            let buckets = if m.capacity() == 0 {
                0
            } else {
                (m.capacity() * 8 / 7).next_power_of_two()
            };
            buckets * (std::mem::size_of::<(K, V)>() + 1) + 16
        }
        table(&self.compact)
            + table(&self.wide)
            + self.wide.keys().map(|k| k.len()).sum::<usize>()
            + table(&self.contracts)
            + 2 * self.contracts.keys().map(|k| k.len()).sum::<usize>()
            + self.contract_names.capacity() * std::mem::size_of::<Box<str>>()
    }

    fn compact_key(&mut self, station: &StationView<'_>) -> Option<u64> {
        self.compact_key_of(&station.contract_name, &station.number)
    }

    fn compact_key_of(&mut self, name: &str, number: &StationId) -> Option<u64> {
        let StationId::Number(n) = *number else {
            return None;
        };
        if n >= 1 << ID_BITS {
            return None;
        }
        let contract = match self.last_contract {
            Some(c) if *self.contract_names[usize::from(c)] == *name => c,
            _ => {
                let c = match self.contracts.get(name) {
                    Some(&c) => c,
                    None => {
                        let c = u16::try_from(self.contracts.len()).ok()?;
                        self.contracts.insert(name.into(), c);
                        self.contract_names.push(name.into());
                        c
                    }
                };
                self.last_contract = Some(c);
                c
            }
        };
        Some((u64::from(contract) << ID_BITS) | n)
    }
}

/// Counts are kept as `u16`: no real station has 65,535 stands. A larger count is clamped, so
/// changes above that value are not seen.
fn clamp(count: u32) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

fn observe_slot<K>(
    slot: std::collections::hash_map::Entry<'_, K, State>,
    new: State,
    tracked: Option<u32>,
) -> Verdict {
    use std::collections::hash_map::Entry;
    match slot {
        Entry::Vacant(v) => {
            v.insert(new);
            Verdict::First
        }
        Entry::Occupied(mut o) => {
            let old = *o.get();
            let stamped = new.snapshot_at != i64::MIN;
            if stamped && new.snapshot_at <= old.snapshot_at {
                return Verdict::Stale;
            }
            // Without a snapshot time, only a record identical to the state is a duplicate.
            let same = State {
                snapshot_at: new.snapshot_at,
                ..old
            };
            if !stamped && new == same {
                return Verdict::Stale;
            }
            o.insert(new);
            // A change needs the count on both sides: one that is not known is not 0.
            let change = match tracked {
                Some(now) if old.has_tracked && old.tracked != new.tracked => {
                    Some((u32::from(old.tracked), now))
                }
                _ => None,
            };
            Verdict::Updated {
                change,
                crossed: crossings(&old, &new),
                known_changed: old.has_tracked != new.has_tracked
                    || old.lines.0 & Lines::KNOWN != new.lines.0 & Lines::KNOWN,
            }
        }
    }
}

/// The lines crossed between two states of a station: only where both records say.
fn crossings(old: &State, new: &State) -> Crossed {
    let mut crossed = Crossed::NONE;
    for shortage in Shortage::ALL {
        crossed.0[shortage as usize] = match (old.short_of(shortage), new.short_of(shortage)) {
            (Some(false), Some(true)) => Some(shortage.began()),
            (Some(true), Some(false)) => Some(shortage.ended()),
            _ => None,
        };
    }
    crossed
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{Position, Station};

    fn station(contract: &str, id: StationId, stands: u32, bikes: u32, ts: Option<i64>) -> Station {
        Station {
            number: id,
            contract_name: contract.into(),
            name: "n".into(),
            address: "a".into(),
            position: Position { lat: 0.0, lng: 0.0 },
            banking: false,
            bonus: false,
            bike_stands: stands + bikes,
            available_bike_stands: stands,
            available_bikes: bikes,
            status: Status::Open,
            // A heartbeat, as in JCDecaux's GBFS feeds: it must not matter.
            last_update: Some(1_751_414_400_000),
            snapshot_at: ts,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        }
    }

    fn lyon(stands: u32, bikes: u32, ts: i64) -> Station {
        station("Lyon", StationId::Number(1001), stands, bikes, Some(ts))
    }

    #[test]
    fn first_record_only_records_state() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        assert_eq!(d.observe(&lyon(5, 5, 1).view()), Verdict::First);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_newer_record_with_another_count_is_a_change() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        d.observe(&lyon(5, 5, 1).view());
        assert_eq!(
            d.observe(&lyon(6, 4, 2).view()),
            Verdict::Updated {
                change: Some((5, 6)),
                crossed: Crossed::NONE,
                known_changed: false
            }
        );
        // Same count, newer time: updated, no change.
        assert_eq!(
            d.observe(&lyon(6, 4, 3).view()),
            Verdict::Updated {
                change: None,
                crossed: Crossed::NONE,
                known_changed: false
            }
        );
    }

    #[test]
    fn older_or_identical_records_change_nothing() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        d.observe(&lyon(5, 5, 10).view());
        assert_eq!(
            d.observe(&lyon(5, 5, 10).view()),
            Verdict::Stale,
            "duplicate"
        );
        assert_eq!(d.observe(&lyon(9, 1, 9).view()), Verdict::Stale, "older");
        // The stale record did not flip state: the next real change is measured from 5.
        assert_eq!(
            d.observe(&lyon(7, 3, 11).view()),
            Verdict::Updated {
                change: Some((5, 7)),
                crossed: Crossed::NONE,
                known_changed: false
            }
        );
    }

    #[test]
    fn tracks_bikes_when_asked() {
        let mut d = Detector::new(TrackedField::AvailableBikes);
        d.observe(&lyon(5, 5, 1).view());
        assert_eq!(
            d.observe(&lyon(3, 7, 2).view()),
            Verdict::Updated {
                change: Some((5, 7)),
                crossed: Crossed::NONE,
                known_changed: false
            }
        );
    }

    #[test]
    fn emptiness_transitions_once_each_way() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        d.observe(&lyon(5, 2, 1).view());
        assert_eq!(
            d.observe(&lyon(7, 0, 2).view()),
            Verdict::Updated {
                change: Some((5, 7)),
                crossed: Crossed::only(EmptinessKind::BecameEmpty),
                known_changed: false
            }
        );
        // Still empty: no second event.
        assert!(matches!(
            d.observe(&lyon(7, 0, 3).view()),
            Verdict::Updated {
                crossed: Crossed::NONE,
                ..
            }
        ));
        assert!(matches!(
            d.observe(&lyon(6, 1, 4).view()),
            Verdict::Updated { crossed, .. } if crossed == Crossed::only(EmptinessKind::NoLongerEmpty)
        ));
        // A closed station with no bike is not "empty": closing an empty station ends it.
        d.observe(&lyon(7, 0, 5).view());
        let mut closed = lyon(7, 0, 6);
        closed.status = Status::Closed;
        assert!(matches!(
            d.observe(&closed.view()),
            Verdict::Updated { crossed, .. } if crossed == Crossed::only(EmptinessKind::NoLongerEmpty)
        ));
    }

    fn with_ebikes(stands: u32, ebikes: Option<u32>, ts: i64) -> Station {
        let mut s = lyon(stands, 5, ts);
        s.bikes_by_type = ebikes.map(|n| {
            vec![velib_model::VehicleCount {
                vehicle_type_id: "electrical".into(),
                kind: velib_model::VehicleKind::Electric,
                count: n,
            }]
        });
        s
    }

    #[test]
    fn a_count_the_record_does_not_give_is_no_change_either_way() {
        let mut d = Detector::new(TrackedField::AvailableEbikes);
        d.observe(&with_ebikes(5, Some(2), 1).view());
        assert!(matches!(
            d.observe(&with_ebikes(5, Some(3), 2).view()),
            Verdict::Updated {
                change: Some((2, 3)),
                known_changed: false,
                ..
            }
        ));
        // The feed stops counting by type: unknown is not 0, so nothing to print, but the
        // state changed (the exactly-once monitor writes it down).
        assert_eq!(
            d.observe(&with_ebikes(5, None, 3).view()),
            Verdict::Updated {
                change: None,
                crossed: Crossed::NONE,
                known_changed: true
            }
        );
        assert_eq!(
            d.observe(&with_ebikes(4, None, 4).view()),
            Verdict::Updated {
                change: None,
                crossed: Crossed::NONE,
                known_changed: false
            }
        );
        // It counts again: known from now on, and the next change is printed.
        assert!(matches!(
            d.observe(&with_ebikes(4, Some(0), 5).view()),
            Verdict::Updated {
                change: None,
                known_changed: true,
                ..
            }
        ));
        assert!(matches!(
            d.observe(&with_ebikes(4, Some(1), 6).view()),
            Verdict::Updated {
                change: Some((0, 1)),
                ..
            }
        ));
        // Without `snapshot_at`, an unknown count after a known one is not a duplicate.
        let mut unstamped = Detector::new(TrackedField::AvailableEbikes);
        let mut known = with_ebikes(5, Some(0), 1);
        known.snapshot_at = None;
        let unknown = Station {
            bikes_by_type: None,
            ..known.clone()
        };
        unstamped.observe(&known.view());
        assert_eq!(unstamped.observe(&known.view()), Verdict::Stale);
        assert_ne!(unstamped.observe(&unknown.view()), Verdict::Stale);
    }

    #[test]
    fn e_bike_and_returns_lines_are_crossed_once_each_way_where_records_say() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        let crossed = |d: &mut Detector, s: &Station| match d.observe(&s.view()) {
            Verdict::Updated { crossed, .. } => crossed.kinds().collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        d.observe(&with_ebikes(5, Some(1), 1).view());
        assert_eq!(
            crossed(&mut d, &with_ebikes(5, Some(0), 2)),
            [EmptinessKind::EbikesGone]
        );
        assert_eq!(crossed(&mut d, &with_ebikes(5, Some(0), 3)), []);
        // Not said is not 0: neither the end nor a new start of the shortage.
        assert_eq!(crossed(&mut d, &with_ebikes(5, None, 4)), []);
        assert_eq!(crossed(&mut d, &with_ebikes(5, Some(0), 5)), []);
        assert_eq!(
            crossed(&mut d, &with_ebikes(5, Some(2), 6)),
            [EmptinessKind::EbikesBack]
        );
        // The last e-bike and the last bike leave together; the station stops taking returns
        // in the same snapshot: one record, three lines.
        let mut drained = with_ebikes(10, Some(0), 7);
        drained.available_bikes = 0;
        drained.is_returning = Some(false);
        let mut before = with_ebikes(9, Some(1), 6);
        before.number = StationId::Number(2);
        before.is_returning = Some(true);
        drained.number = StationId::Number(2);
        d.observe(&before.view());
        assert_eq!(
            crossed(&mut d, &drained),
            [
                EmptinessKind::BecameEmpty,
                EmptinessKind::EbikesGone,
                EmptinessKind::ReturnsStopped
            ]
        );
        // Closing ends every shortage.
        let mut closed = drained.clone();
        closed.status = Status::Closed;
        closed.snapshot_at = Some(8);
        assert_eq!(
            crossed(&mut d, &closed),
            [
                EmptinessKind::NoLongerEmpty,
                EmptinessKind::EbikesBack,
                EmptinessKind::ReturnsResumed
            ]
        );
        // A station restored from the changelog crosses from its restored lines.
        let mut restored = Detector::new(TrackedField::AvailableBikeStands);
        let remembered = Remembered {
            snapshot_at: Some(7),
            tracked: Some(10),
            bikes: 0,
            open: true,
            ebikes: Some(0),
            is_returning: Some(false),
        };
        restored.restore("Lyon", &StationId::Number(2), remembered);
        let mut reopened = before.clone();
        reopened.snapshot_at = Some(9);
        assert_eq!(
            crossed(&mut restored, &reopened),
            [
                EmptinessKind::NoLongerEmpty,
                EmptinessKind::EbikesBack,
                EmptinessKind::ReturnsResumed
            ]
        );
    }

    #[test]
    fn colliding_numbers_in_two_contracts_are_two_stations() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        d.observe(&station("Lyon", StationId::Number(1), 5, 5, Some(1)).view());
        assert_eq!(
            d.observe(&station("Toulouse", StationId::Number(1), 9, 1, Some(2)).view()),
            Verdict::First
        );
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn text_ids_and_huge_ids_use_the_wide_map() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        let text =
            |stands, ts| station("bike_x", StationId::Text("a-1".into()), stands, 1, Some(ts));
        assert_eq!(d.observe(&text(3, 1).view()), Verdict::First);
        assert!(matches!(
            d.observe(&text(4, 2).view()),
            Verdict::Updated {
                change: Some((3, 4)),
                ..
            }
        ));
        let huge = |stands, ts| station("big", StationId::Number(1 << 50), stands, 1, Some(ts));
        assert_eq!(d.observe(&huge(7, 1).view()), Verdict::First);
        assert!(matches!(
            d.observe(&huge(8, 2).view()),
            Verdict::Updated {
                change: Some((7, 8)),
                ..
            }
        ));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn last_update_neither_hides_nor_sums_changes() {
        // Real GBFS: `last_reported` stays put or goes back while the counts move; every
        // snapshot's change is printed, each with its own count.
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        let mut first = lyon(6, 4, 1_000);
        first.last_update = Some(500);
        d.observe(&first.view());
        let mut back_in_time = lyon(7, 3, 2_000);
        back_in_time.last_update = Some(100);
        assert!(matches!(
            d.observe(&back_in_time.view()),
            Verdict::Updated {
                change: Some((6, 7)),
                ..
            }
        ));
        let mut same_heartbeat = lyon(9, 1, 3_000);
        same_heartbeat.last_update = Some(100);
        assert!(matches!(
            d.observe(&same_heartbeat.view()),
            Verdict::Updated {
                change: Some((7, 9)),
                ..
            }
        ));
        // The same snapshot again (polled twice, replayed, from a second producer): nothing.
        assert_eq!(d.observe(&same_heartbeat.view()), Verdict::Stale);
        assert_eq!(d.observe(&back_in_time.view()), Verdict::Stale);
    }

    #[test]
    fn records_without_snapshot_at_are_ordered_by_arrival() {
        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        let s = |stands| station("Lyon", StationId::Number(1), stands, 1, None);
        d.observe(&s(3).view());
        assert_eq!(d.observe(&s(3).view()), Verdict::Stale);
        assert!(matches!(
            d.observe(&s(4).view()),
            Verdict::Updated {
                change: Some((3, 4)),
                ..
            }
        ));
    }

    #[test]
    fn state_is_compact() {
        assert_eq!(std::mem::size_of::<State>(), 16);
        // Following e-bikes, from records that count bikes by type, costs the same.
        for field in [
            TrackedField::AvailableBikeStands,
            TrackedField::AvailableEbikes,
        ] {
            let mut d = Detector::new(field);
            for n in 0..100_000u64 {
                let mut s = with_ebikes(1, Some(1), 1);
                s.number = StationId::Number(n);
                d.observe(&s.view());
            }
            let per_station = d.heap_bytes() / d.len();
            assert!(
                per_station <= 64,
                "{field:?}: {per_station} bytes per station"
            );
        }
    }
}
