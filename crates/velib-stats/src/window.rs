//! One station's record as statistics keep it ([`Reading`]), and one window's running totals
//! ([`Window`]).
//!
//! Both are generic over how a vehicle type is named: a one-byte index into the tracker's
//! [`TypeTable`](crate::types::TypeTable) in memory, the type's id and kind in the state
//! changelog (whose JSON must mean the same thing to any process that restores it).

use crate::activity::{delta, type_deltas};
use serde::{Deserialize, Serialize};
use velib_model::{Level, StationKey, StationStats, StationView, Status, TypeActivity};

/// A count as kept: `u16`, clamped at 65,535 (no station has that many docks).
pub(crate) fn clamp(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// What statistics need of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reading<T> {
    /// `snapshot_at`, epoch ms.
    pub(crate) at: i64,
    pub(crate) bikes: u16,
    pub(crate) docks: u16,
    pub(crate) capacity: u16,
    /// Docks out of service, when the feed says.
    pub(crate) docks_out: Option<u16>,
    pub(crate) open: bool,
    /// Bikes per type, when the record counts them by type.
    pub(crate) types: Option<Box<[(T, u16)]>>,
}

impl<T> Reading<T> {
    /// The record's counts, its types named by `name` (`None` from `name`: the record's types
    /// are not kept, as if it had none). `None` when the record has no `snapshot_at`: it cannot
    /// be placed in time.
    pub(crate) fn read(
        station: &StationView<'_>,
        mut name: impl FnMut(&str, velib_model::VehicleKind) -> Option<T>,
    ) -> Option<Reading<T>> {
        let types = match &station.bikes_by_type {
            Some(counts) => counts
                .iter()
                .map(|c| Some((name(&c.vehicle_type_id, c.kind)?, clamp(c.count))))
                .collect::<Option<Box<[_]>>>(),
            None => None,
        };
        Some(Reading {
            at: station.snapshot_at?,
            bikes: clamp(station.available_bikes),
            docks: clamp(station.available_bike_stands),
            capacity: clamp(station.bike_stands),
            docks_out: station.docks_out_of_service.map(clamp),
            open: station.status == Status::Open,
            types,
        })
    }

    /// Whether any count differs from `other`'s (the snapshot time aside).
    pub(crate) fn moved_from(&self, other: &Reading<T>) -> bool
    where
        T: PartialEq,
    {
        self.bikes != other.bikes || self.docks != other.docks || self.types != other.types
    }

    /// The same reading with its types named by `f`; `None` when `f` cannot name one.
    pub(crate) fn map_types<U>(&self, mut f: impl FnMut(&T) -> Option<U>) -> Option<Reading<U>> {
        let types = match &self.types {
            Some(t) => Some(
                t.iter()
                    .map(|(ty, n)| Some((f(ty)?, *n)))
                    .collect::<Option<Box<[_]>>>()?,
            ),
            None => None,
        };
        Some(Reading {
            at: self.at,
            bikes: self.bikes,
            docks: self.docks,
            capacity: self.capacity,
            docks_out: self.docks_out,
            open: self.open,
            types,
        })
    }
}

/// Least and greatest of a count over a window (its time-weighted sum is kept beside it, so
/// that two gauges pack into 8 bytes and two sums into 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gauge {
    min: u16,
    max: u16,
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

/// Rentals and returns of one type in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Per type counts are `u16`, saturating: 65,535 movements of one type in one window is beyond
/// any station (the totals are `u32`).
pub(crate) struct Tally<T> {
    pub(crate) ty: T,
    pub(crate) rentals: u16,
    pub(crate) returns: u16,
}

/// The running totals of one station's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window<T> {
    /// Start, epoch ms.
    pub(crate) start: i64,
    pub(crate) records: u32,
    pub(crate) late: u32,
    pub(crate) rentals: u32,
    pub(crate) returns: u32,
    /// Per type, once a transition with types on both sides fell in the window.
    pub(crate) types: Option<Box<[Tally<T>]>>,
    bikes: Gauge,
    docks: Gauge,
    /// Sums of bikes × ms and free docks × ms.
    bikes_weighted: u64,
    docks_weighted: u64,
    /// Milliseconds of the window with a known state, and of each condition.
    pub(crate) known: u32,
    empty: u32,
    full: u32,
    docks_out: u32,
    pub(crate) closed: u32,
}

impl<T: Copy + Eq> Window<T> {
    /// An empty window starting at `start`.
    pub(crate) fn new(start: i64) -> Window<T> {
        Window {
            start,
            records: 0,
            late: 0,
            rentals: 0,
            returns: 0,
            types: None,
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
    pub(crate) fn hold(&mut self, state: &Reading<T>, from: i64, to: i64) {
        let Ok(ms) = u32::try_from(to - from) else {
            return;
        };
        if ms == 0 {
            return;
        }
        self.known += ms;
        self.bikes.hold(&mut self.bikes_weighted, state.bikes, ms);
        self.docks.hold(&mut self.docks_weighted, state.docks, ms);
        if state.open && state.bikes == 0 {
            self.empty += ms;
        }
        if state.open && state.docks == 0 {
            self.full += ms;
        }
        if state.docks_out.is_some_and(|n| n > 0) {
            self.docks_out += ms;
        }
        if !state.open {
            self.closed += ms;
        }
    }

    /// Counts the record `after` and the activity from `before` to it.
    pub(crate) fn record(&mut self, before: Option<&Reading<T>>, after: &Reading<T>) {
        self.records += 1;
        let Some(before) = before else { return };
        match (&before.types, &after.types) {
            (Some(b), Some(a)) => {
                let tallies = self.types.get_or_insert_with(Box::default);
                type_deltas(b, a, |ty, rentals, returns| {
                    self.rentals += rentals;
                    self.returns += returns;
                    match tallies.iter_mut().find(|t| t.ty == ty) {
                        Some(t) => {
                            t.rentals = t.rentals.saturating_add(clamp(rentals));
                            t.returns = t.returns.saturating_add(clamp(returns));
                        }
                        // A new type, rare: a boxed slice is 8 bytes smaller than a Vec.
                        None => {
                            let mut grown = std::mem::take(tallies).into_vec();
                            grown.push(Tally {
                                ty,
                                rentals: clamp(rentals),
                                returns: clamp(returns),
                            });
                            *tallies = grown.into_boxed_slice();
                        }
                    }
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
        name: impl Fn(T) -> (&'t str, velib_model::VehicleKind),
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
            by_type: self.types.as_ref().map(|tallies| {
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

impl<T> Window<T> {
    /// The same window with its types named by `f`.
    pub(crate) fn map_types<U>(&self, mut f: impl FnMut(&T) -> Option<U>) -> Option<Window<U>> {
        let types = match &self.types {
            Some(tallies) => Some(
                tallies
                    .iter()
                    .map(|t| {
                        Some(Tally {
                            ty: f(&t.ty)?,
                            rentals: t.rentals,
                            returns: t.returns,
                        })
                    })
                    .collect::<Option<Box<[_]>>>()?,
            ),
            None => None,
        };
        Some(Window {
            start: self.start,
            records: self.records,
            late: self.late,
            rentals: self.rentals,
            returns: self.returns,
            types,
            bikes: self.bikes,
            docks: self.docks,
            bikes_weighted: self.bikes_weighted,
            docks_weighted: self.docks_weighted,
            known: self.known,
            empty: self.empty,
            full: self.full,
            docks_out: self.docks_out,
            closed: self.closed,
        })
    }
}
