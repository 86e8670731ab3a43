//! The JSON form of a station's statistics state that velib wrote to its state changelog
//! before the binary one ([`crate::codec`]): read, never written, so that a state topic
//! written by an earlier velib restores.
//!
//! `{"last":{"at":…,"bikes":…,"docks":…,"capacity":…,"docks_out":…|null,"open":…,
//! "types":[[["electrical","electric"],3],…]|null},"open":WINDOW,"sealed":WINDOW|null,
//! "health":{"profile":{"quarters":[24 × u8],"seen":[12 × u8]},"still_since":…,
//! "health":"ok"|"locked"|"degraded"}}`, a window being
//! `{"start":…,"records":…,"late":…,"rentals":…,"returns":…,"types":[{"ty":["electrical",
//! "electric"],"rentals":…,"returns":…},…]|null,"bikes":{"min":…,"max":…},"docks":{…},
//! "bikes_weighted":…,"docks_weighted":…,"known":…,"empty":…,"full":…,"docks_out":…,
//! "closed":…}`.

use crate::codec::DecodeError;
use crate::health::{HealthState, Profile};
use crate::station::StationState;
use crate::types::{Tallies, TypeCounts, TypeTable};
use crate::window::{DOCKS_OUT_KNOWN, Gauge, OPEN, Reading, Window};
use serde::Deserialize;
use velib_model::{Health, VehicleKind};

/// A vehicle type as the JSON form names it: id and kind, `["electrical","electric"]`.
#[derive(Deserialize)]
struct NamedType(String, VehicleKind);

#[derive(Deserialize)]
struct State {
    last: JsonReading,
    open: JsonWindow,
    sealed: Option<JsonWindow>,
    health: JsonHealth,
}

#[derive(Deserialize)]
struct JsonReading {
    at: i64,
    bikes: u16,
    docks: u16,
    capacity: u16,
    docks_out: Option<u16>,
    open: bool,
    types: Option<Vec<(NamedType, u16)>>,
}

#[derive(Deserialize)]
struct JsonTally {
    ty: NamedType,
    rentals: u16,
    returns: u16,
}

#[derive(Deserialize)]
struct JsonGauge {
    min: u16,
    max: u16,
}

#[derive(Deserialize)]
struct JsonWindow {
    start: i64,
    records: u32,
    late: u32,
    rentals: u32,
    returns: u32,
    types: Option<Vec<JsonTally>>,
    bikes: JsonGauge,
    docks: JsonGauge,
    bikes_weighted: u64,
    docks_weighted: u64,
    known: u32,
    empty: u32,
    full: u32,
    docks_out: u32,
    closed: u32,
}

#[derive(Deserialize)]
struct JsonProfile {
    quarters: [u8; 24],
    seen: [u8; 12],
}

#[derive(Deserialize)]
struct JsonHealth {
    profile: JsonProfile,
    still_since: i64,
    health: Health,
}

/// Why a JSON state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// Not the JSON form.
    #[error("not a station's statistics state: {0}")]
    Format(#[from] serde_json::Error),
    /// A valid form this build cannot hold.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads the JSON form, its types interned into `table`.
pub(crate) fn decode(
    value: &serde_json::Value,
    table: &mut TypeTable,
) -> Result<(StationState, Option<Window>), LegacyError> {
    let state = State::deserialize(value)?;
    let mut intern = |t: &NamedType| {
        table
            .intern(&t.0, t.1)
            .ok_or(DecodeError::Invalid("type table (more than 256 types)"))
    };
    let r = state.last;
    let types = match &r.types {
        None => TypeCounts::ABSENT,
        Some(pairs) => {
            let mut interned = Vec::with_capacity(pairs.len());
            for (ty, count) in pairs {
                interned.push(Some((intern(ty)?, *count)));
            }
            // More types than a record keeps in place: kept as if it had none, as a live
            // record with as many is.
            TypeCounts::collect(interned.into_iter())
        }
    };
    let mut flags = 0;
    if r.open {
        flags |= OPEN;
    }
    if r.docks_out.is_some() {
        flags |= DOCKS_OUT_KNOWN;
    }
    let last = Reading {
        at: r.at,
        bikes: r.bikes,
        docks: r.docks,
        capacity: r.capacity,
        docks_out: r.docks_out.unwrap_or(0),
        flags,
        types,
    };
    let open = window(state.open, &mut intern)?;
    let sealed = match state.sealed {
        Some(w) => Some(window(w, &mut intern)?),
        None => None,
    };
    let h = state.health;
    let out = StationState {
        last,
        open,
        health: HealthState {
            profile: Profile {
                quarters: h.profile.quarters,
                seen: h.profile.seen,
            },
            still_since: h.still_since,
            health: h.health,
        },
    };
    Ok((out, sealed))
}

fn window(
    w: JsonWindow,
    intern: &mut impl FnMut(&NamedType) -> Result<u8, DecodeError>,
) -> Result<Window, DecodeError> {
    let mut out = Window::new(w.start);
    (out.records, out.late, out.rentals, out.returns) = (w.records, w.late, w.rentals, w.returns);
    if let Some(tallies) = &w.types {
        out.types = Tallies::ABSENT;
        out.types.start();
        for t in tallies {
            // A tally beyond those a window keeps in place stays in the totals only.
            out.types.add(intern(&t.ty)?, t.rentals, t.returns);
        }
    }
    out.bikes = Gauge {
        min: w.bikes.min,
        max: w.bikes.max,
    };
    out.docks = Gauge {
        min: w.docks.min,
        max: w.docks.max,
    };
    (out.bikes_weighted, out.docks_weighted) = (w.bikes_weighted, w.docks_weighted);
    (out.known, out.empty, out.full, out.docks_out, out.closed) =
        (w.known, w.empty, w.full, w.docks_out, w.closed);
    Ok(out)
}
