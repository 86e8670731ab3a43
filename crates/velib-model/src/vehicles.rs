//! Bikes by vehicle type: what a station record says about e-bikes and classic bikes.
//!
//! A feed names its vehicle types with ids of its own (`electrical`, `mechanical` at JCDecaux,
//! `ebike` at Vélib' Métropole, anything at all elsewhere); what a rider asks is whether a bike
//! is electric. So every count keeps the feed's id, for whoever knows that feed, and the
//! [`VehicleKind`] velib understood it to be, for everyone else.

use crate::lenient;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

/// What kind of bike a vehicle type is.
///
/// Reading is forgiving: a kind this velib does not know (written by a newer one) is read as
/// [`VehicleKind::Other`], so a record is never refused for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleKind {
    /// A bike moved by its rider alone (GBFS `propulsion_type: human`).
    Classic,
    /// A bike with a motor that helps or drives (GBFS `electric_assist`, `electric`).
    Electric,
    /// Anything else, or a type whose kind the feed does not say.
    Other,
}

impl VehicleKind {
    /// The kind named `text` (`classic`, `electric`, `other`); `None` for any other text.
    pub(crate) fn from_name(text: &[u8]) -> Option<VehicleKind> {
        match text {
            b"classic" => Some(VehicleKind::Classic),
            b"electric" => Some(VehicleKind::Electric),
            b"other" => Some(VehicleKind::Other),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for VehicleKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        Ok(VehicleKind::from_name(s.as_bytes()).unwrap_or(VehicleKind::Other))
    }
}

/// Bikes of one vehicle type available at a station.
///
/// Its text borrows from the JSON it was read from when it can (see
/// [`StationView`](crate::StationView)); a [`Station`](crate::Station) holds owned ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VehicleCount<'a> {
    /// The feed's id of the type, e.g. `electrical`.
    #[serde(borrow)]
    pub vehicle_type_id: Cow<'a, str>,
    /// What kind of bike it is.
    pub kind: VehicleKind,
    /// How many are available.
    #[serde(deserialize_with = "lenient::count")]
    pub count: u32,
}

impl VehicleCount<'_> {
    /// The same count, owning its text.
    pub fn into_owned(self) -> VehicleCount<'static> {
        VehicleCount {
            vehicle_type_id: Cow::Owned(self.vehicle_type_id.into_owned()),
            kind: self.kind,
            count: self.count,
        }
    }

    /// A copy borrowing this count's text.
    pub fn borrowed(&self) -> VehicleCount<'_> {
        VehicleCount {
            vehicle_type_id: Cow::Borrowed(&self.vehicle_type_id),
            kind: self.kind,
            count: self.count,
        }
    }
}

/// The bikes of `kind` among `counts`; `None` when the record has no per-type counts.
///
/// A type the list does not name has no bike at the station (GBFS lists the types a station
/// holds), so a list without an electric type means 0 e-bikes, not "unknown".
pub(crate) fn of_kind(counts: Option<&[VehicleCount<'_>]>, kind: VehicleKind) -> Option<u32> {
    counts.map(|counts| {
        counts
            .iter()
            .filter(|c| c.kind == kind)
            .fold(0u32, |sum, c| sum.saturating_add(c.count))
    })
}

/// Reads an optional list of counts owning its text, for [`Station`](crate::Station).
pub(crate) fn owned_counts<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<VehicleCount<'static>>>, D::Error> {
    let counts = Option::<Vec<VehicleCount<'de>>>::deserialize(d)?;
    Ok(counts.map(|c| c.into_iter().map(VehicleCount::into_owned).collect()))
}
