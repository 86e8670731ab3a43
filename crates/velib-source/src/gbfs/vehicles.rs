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

use super::count;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
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

/// Reads a `vehicle_types.json` feed (`data.vehicle_types`). A type without an id is skipped:
/// no count can name it.
///
/// # Errors
///
/// When the feed has no `data.vehicle_types` array.
pub fn parse_vehicle_types(feed: &Value) -> Result<VehicleTypes, String> {
    let types = feed
        .pointer("/data/vehicle_types")
        .and_then(Value::as_array)
        .ok_or("vehicle_types: no data.vehicle_types array")?;
    let kinds = types
        .iter()
        .filter_map(|t| {
            let id = t.get("vehicle_type_id").and_then(super::id_text)?;
            let word = |field: &str| t.get(field).and_then(Value::as_str).unwrap_or_default();
            Some((id, kind_of(word("form_factor"), word("propulsion_type"))))
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

/// The per-type counts of a `station_status` record as (type id, count); `None` when it has
/// none.
///
/// # Errors
///
/// When the list is there but not a list of counts, naming the field.
pub(super) fn type_counts(record: &Value) -> Result<Option<Vec<(String, u32)>>, String> {
    if let Some(list) = present(record, "vehicle_types_available") {
        let items = array(list, "vehicle_types_available")?;
        return items
            .iter()
            .map(|item| {
                let id = item
                    .get("vehicle_type_id")
                    .and_then(super::id_text)
                    .ok_or("field `vehicle_types_available`: an item has no vehicle_type_id")?;
                let n = type_count(item, "count")?
                    .ok_or("field `vehicle_types_available`: an item has no count")?;
                Ok((id, n))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Some);
    }
    if let Some(list) = present(record, "num_bikes_available_types") {
        let items = array(list, "num_bikes_available_types")?;
        let mut counts = Vec::new();
        for item in items {
            let object = item.as_object().ok_or(
                "field `num_bikes_available_types`: an item is not an object like {\"ebike\": 1}",
            )?;
            for id in object.keys() {
                let n = type_count(item, id)?.unwrap_or(0);
                counts.push((id.clone(), n));
            }
        }
        return Ok(Some(counts));
    }
    Ok(None)
}

/// A per-type count: what [`count`] reads, and 0 for a negative integer (see the module
/// header).
fn type_count(item: &Value, field: &str) -> Result<Option<u32>, String> {
    match item.get(field).and_then(Value::as_i64) {
        Some(n) if n < 0 => Ok(Some(0)),
        _ => count(item, field),
    }
}

fn present<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    record.get(field).filter(|v| !v.is_null())
}

fn array<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("field `{field}`: {value} is not a list"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_spellings_of_the_counts() {
        let v2 = json!({"vehicle_types_available": [
            {"vehicle_type_id": "mechanical", "count": 0},
            {"vehicle_type_id": "electrical", "count": "9"}]});
        assert_eq!(
            type_counts(&v2).unwrap(),
            Some(vec![("mechanical".into(), 0), ("electrical".into(), 9)])
        );
        let paris = json!({"num_bikes_available_types": [{"mechanical": 3}, {"ebike": 1}]});
        assert_eq!(
            type_counts(&paris).unwrap(),
            Some(vec![("mechanical".into(), 3), ("ebike".into(), 1)])
        );
        assert_eq!(
            type_counts(&json!({"num_bikes_available": 3})).unwrap(),
            None
        );
        assert_eq!(
            type_counts(&json!({"vehicle_types_available": null})).unwrap(),
            None
        );
        // Real JCDecaux (besancon, 18:45): the e-bikes overshoot and `mechanical` goes below 0.
        let overshoot = json!({"vehicle_types_available": [
            {"vehicle_type_id": "mechanical", "count": -2},
            {"vehicle_type_id": "electrical", "count": 12}]});
        assert_eq!(
            type_counts(&overshoot).unwrap(),
            Some(vec![("mechanical".into(), 0), ("electrical".into(), 12)])
        );
    }

    #[test]
    fn malformed_counts_name_the_field() {
        for (record, field) in [
            (
                json!({"vehicle_types_available": 3}),
                "vehicle_types_available",
            ),
            (
                json!({"vehicle_types_available": [{"count": 3}]}),
                "vehicle_types_available",
            ),
            (
                json!({"vehicle_types_available": [{"vehicle_type_id": "e", "count": 1.5}]}),
                "count",
            ),
            (
                json!({"num_bikes_available_types": [5]}),
                "num_bikes_available_types",
            ),
            (
                json!({"num_bikes_available_types": [{"ebike": "x"}]}),
                "ebike",
            ),
        ] {
            let err = type_counts(&record).unwrap_err();
            assert!(err.contains(field), "{record}: {err}");
        }
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
