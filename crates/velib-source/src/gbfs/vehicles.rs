//! Bikes by vehicle type: the per-type counts of `station_status` and what kind of bike each
//! type is, from `vehicle_types.json` when the system publishes one.
//!
//! Three spellings of the counts are read:
//!
//! - GBFS 2.1 to 3.0: `vehicle_types_available: [{"vehicle_type_id": "electrical", "count": 2}]`;
//! - Vélib' Métropole's 1.0: `num_bikes_available_types: [{"mechanical": 3}, {"ebike": 1}]`;
//! - nothing: the record has no per-type counts, and the station none either (not zeros).
//!
//! A negative count is read as 0: JCDecaux's feeds sometimes give `mechanical` as the total
//! minus the e-bikes, which goes below 0 when the e-bike count overshoots (six records of the
//! real day of 2026-07-02, `{"mechanical": -2, "electrical": 12}` with 10 bikes). The
//! e-bike count itself is then still the one the station reported.
//!
//! A type's kind comes from `vehicle_types.json` (`form_factor` and `propulsion_type`). Without
//! it, the ids of the systems velib knows are understood as they are: JCDecaux's `mechanical`
//! and `electrical` (its feeds publish no `vehicle_types.json`) and Vélib' Métropole's
//! `mechanical` and `ebike`. Any other id is [`VehicleKind::Other`].

use super::read::read;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use velib_model::lenient::{self, Id, OrNone};
use velib_model::{VehicleCount, VehicleKind};

/// What kind of bike each vehicle type of a system is, as its `vehicle_types.json` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VehicleTypes {
    kinds: HashMap<String, VehicleKind>,
}

impl VehicleTypes {
    /// The kind of type `id`: the feed's word, else the known ids' meaning, else
    /// [`VehicleKind::Other`].
    pub fn kind(&self, id: &str) -> VehicleKind {
        if let Some(&kind) = self.kinds.get(id) {
            return kind;
        }
        match id {
            "mechanical" => VehicleKind::Classic,
            "electrical" | "ebike" => VehicleKind::Electric,
            _ => VehicleKind::Other,
        }
    }

    /// `counts` (type id, count) with their kinds.
    pub(super) fn resolve(&self, counts: &[(String, u32)]) -> Vec<VehicleCount<'static>> {
        counts
            .iter()
            .map(|(id, count)| VehicleCount {
                vehicle_type_id: Cow::Owned(id.clone()),
                kind: self.kind(id),
                count: *count,
            })
            .collect()
    }
}

/// `vehicle_types.json`, of which velib reads each type's id and kind.
#[derive(Debug, Deserialize)]
struct VehicleTypesFeed {
    data: VehicleTypesData,
}

#[derive(Debug, Deserialize)]
struct VehicleTypesData {
    vehicle_types: Vec<OrNone<VehicleType>>,
}

#[derive(Debug, Deserialize)]
struct VehicleType {
    vehicle_type_id: Id,
    #[serde(default, deserialize_with = "lenient::or_none")]
    form_factor: Option<String>,
    #[serde(default, deserialize_with = "lenient::or_none")]
    propulsion_type: Option<String>,
}

/// Reads a `vehicle_types.json` feed (`data.vehicle_types`). A type without an id is skipped:
/// no count can name it.
///
/// # Errors
///
/// When the feed has no `data.vehicle_types` array.
pub fn parse_vehicle_types(feed: &Value) -> Result<VehicleTypes, String> {
    let feed: VehicleTypesFeed =
        read(feed).map_err(|err| format!("vehicle_types: no data.vehicle_types array ({err})"))?;
    let kinds = feed
        .data
        .vehicle_types
        .into_iter()
        .filter_map(|t| {
            let t = t.0?;
            let kind = kind_of(
                t.form_factor.as_deref().unwrap_or_default(),
                t.propulsion_type.as_deref().unwrap_or_default(),
            );
            Some((t.vehicle_type_id.0, kind))
        })
        .collect();
    Ok(VehicleTypes { kinds })
}

/// A bicycle (cargo bikes included) moved by its rider is classic, one with a motor electric;
/// scooters, mopeds and cars are other.
fn kind_of(form_factor: &str, propulsion: &str) -> VehicleKind {
    if !matches!(form_factor, "bicycle" | "cargo_bicycle") {
        return VehicleKind::Other;
    }
    match propulsion {
        "human" => VehicleKind::Classic,
        "electric_assist" | "electric" => VehicleKind::Electric,
        _ => VehicleKind::Other,
    }
}

/// One item of 2.1–3.0's `vehicle_types_available`.
#[derive(Debug, Deserialize)]
pub(super) struct TypeCount {
    vehicle_type_id: Id,
    #[serde(deserialize_with = "lenient::clamped_count")]
    count: u32,
}

/// Vélib' Métropole's `num_bikes_available_types`: `[{"mechanical": 3}, {"ebike": 1}]`, a
/// `null` count read as 0.
pub(super) type ParisTypeCounts = Vec<BTreeMap<String, Option<ClampedCount>>>;

/// A per-type count, 0 when written below 0 (see the module header).
#[derive(Debug, Deserialize)]
pub(super) struct ClampedCount(#[serde(deserialize_with = "lenient::clamped_count")] u32);

/// The per-type counts of a `station_status` record as (type id, count): 2.1–3.0's list when
/// the record has one (`None` when it cannot be read), else Vélib' Métropole's, else `None`.
/// The outer `Option` of each says whether the field is there (and not `null`).
pub(super) fn type_counts(
    v2: Option<OrNone<Vec<TypeCount>>>,
    paris: Option<OrNone<ParisTypeCounts>>,
) -> Option<Vec<(String, u32)>> {
    if let Some(list) = v2 {
        let list = list.0?;
        return Some(
            list.into_iter()
                .map(|c| (c.vehicle_type_id.0, c.count))
                .collect(),
        );
    }
    let items = paris?.0?;
    Some(
        items
            .into_iter()
            .flatten()
            .map(|(id, n)| (id, n.map_or(0, |n| n.0)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The two lists as a `station_status` record holds them.
    #[derive(Deserialize)]
    struct Lists {
        #[serde(default)]
        vehicle_types_available: Option<OrNone<Vec<TypeCount>>>,
        #[serde(default)]
        num_bikes_available_types: Option<OrNone<ParisTypeCounts>>,
    }

    fn counts(record: Value) -> Option<Vec<(String, u32)>> {
        let lists: Lists = serde_json::from_value(record).unwrap();
        type_counts(
            lists.vehicle_types_available,
            lists.num_bikes_available_types,
        )
    }

    #[test]
    fn the_three_spellings_of_the_counts() {
        let v2 = json!({"vehicle_types_available": [
            {"vehicle_type_id": "mechanical", "count": 0},
            {"vehicle_type_id": "electrical", "count": "9"}]});
        assert_eq!(
            counts(v2),
            Some(vec![("mechanical".into(), 0), ("electrical".into(), 9)])
        );
        let paris = json!({"num_bikes_available_types": [{"mechanical": 3}, {"ebike": 1}]});
        assert_eq!(
            counts(paris),
            Some(vec![("mechanical".into(), 3), ("ebike".into(), 1)])
        );
        assert_eq!(counts(json!({"num_bikes_available": 3})), None);
        assert_eq!(counts(json!({"vehicle_types_available": null})), None);
        // Real JCDecaux (besancon, 18:45): the e-bikes overshoot and `mechanical` goes below 0.
        let overshoot = json!({"vehicle_types_available": [
            {"vehicle_type_id": "mechanical", "count": -2},
            {"vehicle_type_id": "electrical", "count": 12}]});
        assert_eq!(
            counts(overshoot),
            Some(vec![("mechanical".into(), 0), ("electrical".into(), 12)])
        );
    }

    /// A list that cannot be read is left out (the station is still published); a readable
    /// Vélib' Métropole list does not stand in for an unreadable 2.1–3.0 one.
    #[test]
    fn malformed_counts_are_left_out() {
        for record in [
            json!({"vehicle_types_available": 3}),
            json!({"vehicle_types_available": [{"count": 3}]}),
            json!({"vehicle_types_available": [{"vehicle_type_id": "e", "count": 1.5}]}),
            json!({"vehicle_types_available": [{"vehicle_type_id": "e", "count": 1}, 5],
                   "num_bikes_available_types": [{"ebike": 1}]}),
            json!({"num_bikes_available_types": [5]}),
            json!({"num_bikes_available_types": [{"ebike": "x"}]}),
        ] {
            assert_eq!(counts(record.clone()), None, "{record}");
        }
        assert_eq!(
            counts(json!({"num_bikes_available_types": [{"ebike": null, "mechanical": -1}]})),
            Some(vec![("ebike".into(), 0), ("mechanical".into(), 0)])
        );
    }

    #[test]
    fn kinds_from_the_feed_else_from_known_ids() {
        let feed = json!({"data": {"vehicle_types": [
            {"vehicle_type_id": "e1", "form_factor": "bicycle", "propulsion_type": "electric_assist"},
            {"vehicle_type_id": "c1", "form_factor": "cargo_bicycle", "propulsion_type": "human"},
            {"vehicle_type_id": "s1", "form_factor": "scooter_standing", "propulsion_type": "electric"},
            // The feed's word wins over velib's guess from the id.
            {"vehicle_type_id": "electrical", "form_factor": "bicycle", "propulsion_type": "human"},
            {"form_factor": "bicycle", "propulsion_type": "human"}]}});
        let types = parse_vehicle_types(&feed).unwrap();
        let kinds: Vec<VehicleKind> = ["e1", "c1", "s1", "electrical", "mechanical", "ebike", "x"]
            .iter()
            .map(|id| types.kind(id))
            .collect();
        use VehicleKind::{Classic, Electric, Other};
        assert_eq!(
            kinds,
            [Electric, Classic, Other, Classic, Classic, Electric, Other]
        );
        let none = VehicleTypes::default();
        assert_eq!(none.kind("electrical"), Electric);
        assert!(parse_vehicle_types(&json!({"data": {}})).is_err());
    }
}
