//! One station's record as statistics keep it ([`Reading`]), and one window's running totals
//! ([`Window`]).
//!
//! A vehicle type is a one-byte index into the tracker's
//! [`TypeTable`](crate::types::TypeTable); the state changelog names it by id and kind instead
//! (see [`crate::codec`]), as the index means nothing to another process.

use crate::activity::{delta, type_deltas};
use crate::types::{Tallies, TypeCounts};
use velib_model::{Level, StationKey, StationStats, StationView, Status, TypeActivity};

/// A count as kept: `u16`, clamped at 65,535 (no station has that many docks).
pub(crate) fn clamp(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// [`Reading::flags`]: the station was open.
pub(crate) const OPEN: u8 = 1;
/// [`Reading::flags`]: the record said how many docks were out of service.
pub(crate) const DOCKS_OUT_KNOWN: u8 = 2;

/// What statistics need of one record: 32 bytes, in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// `snapshot_at`, epoch ms.
    pub(crate) at: i64,
    pub(crate) bikes: u16,
    pub(crate) docks: u16,
    pub(crate) capacity: u16,
    /// Docks out of service; meaningful when [`DOCKS_OUT_KNOWN`] is set.
    pub(crate) docks_out: u16,
    /// [`OPEN`], [`DOCKS_OUT_KNOWN`].
    pub(crate) flags: u8,
    /// Bikes per type, when the record counts them by type.
    pub(crate) types: TypeCounts,
}

impl Reading {
    /// The record's counts, its types named by `name` (`None` from `name`: the record's types
    /// are not kept, as if it had none). `None` when the record has no `snapshot_at`: it cannot
    /// be placed in time.
    pub(crate) fn read(
        station: &StationView<'_>,
        mut name: impl FnMut(&str, velib_model::VehicleKind) -> Option<u8>,
    ) -> Option<Reading> {
        let types = match &station.bikes_by_type {
            Some(counts) => TypeCounts::collect(
                counts
                    .iter()
                    .map(|c| Some((name(&c.vehicle_type_id, c.kind)?, clamp(c.count)))),
            ),
            None => TypeCounts::ABSENT,
        };
        let mut flags = 0;
        if station.status == Status::Open {
            flags |= OPEN;
        }
        if station.docks_out_of_service.is_some() {
            flags |= DOCKS_OUT_KNOWN;
        }
        Some(Reading {
            at: station.snapshot_at?,
            bikes: clamp(station.available_bikes),
            docks: clamp(station.available_bike_stands),
            capacity: clamp(station.bike_stands),
            docks_out: station.docks_out_of_service.map_or(0, clamp),
            flags,
            types,
        })
    }

    /// Whether the station was open.
    pub(crate) fn open(&self) -> bool {
        self.flags & OPEN != 0
    }

    /// Docks out of service, when the record said.
    pub(crate) fn docks_out(&self) -> Option<u16> {
        (self.flags & DOCKS_OUT_KNOWN != 0).then_some(self.docks_out)
    }

    /// Whether any count differs from `other`'s (the snapshot time aside).
    pub(crate) fn moved_from(&self, other: &Reading) -> bool {
        self.bikes != other.bikes
            || self.docks != other.docks
            || self.types.get() != other.types.get()
    }
}

/// Least and greatest of a count over a window (its time-weighted sum is kept beside it, so
/// that two gauges pack into 8 bytes and two sums into 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gauge {
    pub(crate) min: u16,
    pub(crate) max: u16,
}

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge {
            min: u16::MAX,
            max: 0,
        }
    }
}

impl Gauge {
    /// Counts `value` held for `ms`, adding value × ms to `weighted`.
    fn hold(&mut self, weighted: &mut u64, value: u16, ms: u32) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        *weighted += u64::from(value) * u64::from(ms);
    }

    fn level(&self, weighted: u64, known_ms: u32) -> Level {
        if known_ms == 0 {
            return Level {
                min: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Level {
            min: u32::from(self.min),
            max: u32::from(self.max),
            mean: weighted as f64 / f64::from(known_ms),
        }
    }
}

/// The running totals of one station's window: 88 bytes, in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Start, epoch ms.
    pub(crate) start: i64,
    pub(crate) records: u32,
    pub(crate) late: u32,
    pub(crate) rentals: u32,
    pub(crate) returns: u32,
    /// Per type, once a transition with types on both sides fell in the window.
    pub(crate) types: Tallies,
    pub(crate) bikes: Gauge,
    pub(crate) docks: Gauge,
    /// Sums of bikes × ms and free docks × ms.
    pub(crate) bikes_weighted: u64,
    pub(crate) docks_weighted: u64,
    /// Milliseconds of the window with a known state, and of each condition.
    pub(crate) known: u32,
    pub(crate) empty: u32,
    pub(crate) full: u32,
    pub(crate) docks_out: u32,
    pub(crate) closed: u32,
}

impl Window {
    /// An empty window starting at `start`.
    pub(crate) fn new(start: i64) -> Window {
        Window {
            start,
            records: 0,
            late: 0,
            rentals: 0,
            returns: 0,
            types: Tallies::ABSENT,
            bikes: Gauge::default(),
            docks: Gauge::default(),
            bikes_weighted: 0,
            docks_weighted: 0,
            known: 0,
            empty: 0,
            full: 0,
            docks_out: 0,
            closed: 0,
        }
    }

    /// Counts that `state` held from `from` to `to` (both within the window; nothing when
    /// `to <= from`).
    pub(crate) fn hold(&mut self, state: &Reading, from: i64, to: i64) {
        let Ok(ms) = u32::try_from(to - from) else {
            return;
        };
        if ms == 0 {
            return;
        }
        self.known += ms;
        self.bikes.hold(&mut self.bikes_weighted, state.bikes, ms);
        self.docks.hold(&mut self.docks_weighted, state.docks, ms);
        let open = state.open();
        if open && state.bikes == 0 {
            self.empty += ms;
        }
        if open && state.docks == 0 {
            self.full += ms;
        }
        if state.docks_out().is_some_and(|n| n > 0) {
            self.docks_out += ms;
        }
        if !open {
            self.closed += ms;
        }
    }

    /// Counts the record `after` and the activity from `before` to it.
    pub(crate) fn record(&mut self, before: Option<&Reading>, after: &Reading) {
        self.records += 1;
        let Some(before) = before else { return };
        match (before.types.get(), after.types.get()) {
            (Some(b), Some(a)) => {
                self.types.start();
                type_deltas(b, a, |ty, rentals, returns| {
                    self.rentals += rentals;
                    self.returns += returns;
                    self.types.add(ty, clamp(rentals), clamp(returns));
                });
            }
            _ => {
                let (rentals, returns) = delta(before.bikes.into(), after.bikes.into());
                self.rentals += rentals;
                self.returns += returns;
            }
        }
    }

    /// The published record of this window, `size` ms long, types named by `name`.
    pub(crate) fn finish<'t>(
        &self,
        key: &StationKey,
        size: i64,
        name: impl Fn(u8) -> (&'t str, velib_model::VehicleKind),
    ) -> StationStats {
        let minutes = |ms: u32| f64::from(ms) / 60_000.0;
        StationStats {
            version: StationStats::VERSION,
            key: key.clone(),
            window_start: self.start,
            window_end: self.start + size,
            records: self.records,
            late_records: self.late,
            rentals: self.rentals,
            returns: self.returns,
            by_type: self.types.get().map(|tallies| {
                tallies
                    .iter()
                    .map(|t| {
                        let (id, kind) = name(t.ty);
                        TypeActivity {
                            vehicle_type_id: id.to_owned(),
                            kind,
                            rentals: t.rentals.into(),
                            returns: t.returns.into(),
                        }
                    })
                    .collect()
            }),
            bikes: self.bikes.level(self.bikes_weighted, self.known),
            free_docks: self.docks.level(self.docks_weighted, self.known),
            minutes_known: minutes(self.known),
            minutes_empty: minutes(self.empty),
            minutes_full: minutes(self.full),
            minutes_docks_out_of_service: minutes(self.docks_out),
            minutes_closed: minutes(self.closed),
        }
    }
}
