//! One station's records, read through serde structs: what `station_information` and
//! `station_status` say of it, and the v1 [`Station`] they make together (the mapping table is
//! on [`GbfsSource`](super::GbfsSource)).
//!
//! What a record cannot do without (its id, position, bike count) makes it unreadable, and the
//! record is skipped with the reason, naming the field; what it can do without (names,
//! addresses, the fields v1 has no place for) is read as absent when it cannot be read.

use super::read::{FeedTime, PLACEHOLDER_BEFORE_MS, read};
use super::vehicles::{self, ParisTypeCounts, TypeCount, VehicleTypes};
use crate::jcdecaux::json_kind;
use serde::Deserialize;
use serde_json::Value;
use velib_model::lenient::{self, Id, OrNone};
use velib_model::{Position, Station, StationId, Status};

/// What `station_information` says about one station.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// Vélib' Métropole's `stationCode`, the station number riders know, when the feed has
    /// one: it becomes the key's id instead of the opaque `station_id`.
    code: Option<String>,
    name: String,
    address: String,
    position: Position,
    capacity: Option<u32>,
    banking: bool,
}

/// What `station_status` says about one station.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    pub(super) station_id: String,
    bikes: u32,
    docks: Option<u32>,
    open: bool,
    pub(super) last_reported: Option<i64>,
    /// Per-type counts (type id, count), when the record has them.
    by_type: Option<Vec<(String, u32)>>,
    bikes_disabled: Option<u32>,
    docks_disabled: Option<u32>,
    returning: Option<bool>,
}

/// A `station_information` record as the feed writes it.
#[derive(Debug, Deserialize)]
struct InfoDoc {
    station_id: Id,
    #[serde(deserialize_with = "lenient::float")]
    lat: f64,
    #[serde(deserialize_with = "lenient::float")]
    lon: f64,
    #[serde(default, deserialize_with = "lenient::or_none")]
    name: Option<Name>,
    #[serde(default, deserialize_with = "lenient::or_none")]
    address: Option<String>,
    #[serde(default, deserialize_with = "lenient::or_none")]
    rental_methods: Option<Vec<OrNone<String>>>,
    #[serde(rename = "stationCode", default, deserialize_with = "lenient::or_none")]
    station_code: Option<Id>,
    #[serde(default, deserialize_with = "lenient::opt_count")]
    capacity: Option<u32>,
}

/// A name: 2.x's plain string, or 3.0's array of `{text, language}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Name {
    Plain(String),
    Localised(Vec<OrNone<LocalisedText>>),
}

#[derive(Debug, Deserialize)]
struct LocalisedText {
    #[serde(default, deserialize_with = "lenient::or_none")]
    text: Option<String>,
    #[serde(default, deserialize_with = "lenient::or_none")]
    language: Option<String>,
}

impl Name {
    /// The preferred language's text, else the first. Empty texts (real feeds have them) count
    /// as absent.
    fn text(self, language: Option<&str>) -> Option<String> {
        let texts = match self {
            Name::Plain(s) => return (!s.trim().is_empty()).then_some(s),
            Name::Localised(items) => items.into_iter().filter_map(|i| i.0).collect::<Vec<_>>(),
        };
        let text =
            |item: &LocalisedText| item.text.as_ref().filter(|t| !t.trim().is_empty()).cloned();
        language
            .and_then(|l| {
                texts.iter().find(|i| {
                    i.language
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(l))
                })
            })
            .and_then(text)
            .or_else(|| texts.iter().find_map(text))
    }
}

/// Reads a record as a `T`. Only an object is a record: serde would read an array as the
/// fields in order.
fn read_record<T: serde::de::DeserializeOwned>(record: &Value) -> Result<T, String> {
    if !record.is_object() {
        return Err(format!(
            "expected a station object, got JSON {}",
            json_kind(record)
        ));
    }
    read(record)
}

/// Reads one `station_information` record.
pub fn parse_info(record: &Value, language: Option<&str>) -> Result<(String, Info), String> {
    let doc: InfoDoc = read_record(record)?;
    let id = doc.station_id.0;
    let name = doc
        .name
        .and_then(|n| n.text(language))
        .unwrap_or_else(|| id.clone());
    let address = doc
        .address
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| name.clone());
    let banking = doc.rental_methods.is_some_and(|methods| {
        methods
            .iter()
            .filter_map(|m| m.0.as_deref())
            .any(|m| m.eq_ignore_ascii_case("creditcard"))
    });
    let info = Info {
        code: doc.station_code.map(|c| c.0),
        name,
        address,
        position: Position {
            lat: doc.lat,
            lng: doc.lon,
        },
        capacity: doc.capacity,
        banking,
    };
    Ok((id, info))
}

/// A `station_status` record as the feed writes it.
#[derive(Debug, Deserialize)]
struct StatusDoc {
    station_id: Id,
    /// 3.0's name for the bike count; read first, so the 2.x name is read only without it.
    #[serde(default)]
    num_vehicles_available: Deferred,
    #[serde(default)]
    num_bikes_available: Deferred,
    #[serde(default, deserialize_with = "lenient::opt_count")]
    num_docks_available: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_flag")]
    is_installed: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_flag")]
    is_renting: Option<bool>,
    #[serde(default)]
    last_reported: FeedTime,
    // Fields velib did not read before: one that cannot be read is left out, and the station
    // still published with its v1 counts.
    #[serde(default)]
    vehicle_types_available: Option<OrNone<Vec<TypeCount>>>,
    #[serde(default)]
    num_bikes_available_types: Option<OrNone<ParisTypeCounts>>,
    #[serde(default, deserialize_with = "lenient::count_or_none")]
    num_vehicles_disabled: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count_or_none")]
    num_bikes_disabled: Option<u32>,
    #[serde(default, deserialize_with = "lenient::count_or_none")]
    num_docks_disabled: Option<u32>,
    #[serde(default, deserialize_with = "lenient::flag_or_none")]
    is_returning: Option<bool>,
}

/// A count read now and judged later: the bike count has two names, and the 2.x one is not
/// judged when 3.0's is there.
#[derive(Debug)]
struct Deferred(Result<Option<u32>, String>);

impl Default for Deferred {
    fn default() -> Self {
        Deferred(Ok(None))
    }
}

impl<'de> Deserialize<'de> for Deferred {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(Deferred(
            lenient::opt_count(&value).map_err(|err| err.to_string()),
        ))
    }
}

impl Deferred {
    fn get(self, field: &str) -> Result<Option<u32>, String> {
        self.0.map_err(|err| format!("field `{field}`: {err}"))
    }
}

/// Reads one `station_status` record.
pub fn parse_status(record: &Value) -> Result<StatusRecord, String> {
    let doc: StatusDoc = read_record(record)?;
    let bikes = match doc.num_vehicles_available.get("num_vehicles_available")? {
        Some(n) => n,
        None => doc
            .num_bikes_available
            .get("num_bikes_available")?
            .ok_or_else(|| {
                "missing field `num_bikes_available` (or 3.0's `num_vehicles_available`)".to_owned()
            })?,
    };
    Ok(StatusRecord {
        station_id: doc.station_id.0,
        bikes,
        docks: doc.num_docks_available,
        open: doc.is_installed.unwrap_or(true) && doc.is_renting.unwrap_or(true),
        // Placeholders seen on real feeds (`0001-01-01T00:00:00Z`, 0) say "never": no time.
        last_reported: doc
            .last_reported
            .0
            .filter(|&ms| ms >= PLACEHOLDER_BEFORE_MS),
        by_type: vehicles::type_counts(doc.vehicle_types_available, doc.num_bikes_available_types),
        bikes_disabled: doc.num_vehicles_disabled.or(doc.num_bikes_disabled),
        docks_disabled: doc.num_docks_disabled,
        returning: doc.is_returning,
    })
}

/// Joins a station's information and status into a v1 `Station`, from the snapshot made at
/// `snapshot_at` (epoch ms), telling e-bikes from classic bikes by `types`.
pub fn to_station(
    contract: &str,
    info: &Info,
    status: &StatusRecord,
    types: &VehicleTypes,
    snapshot_at: i64,
) -> Station {
    let bike_stands = info
        .capacity
        .unwrap_or_else(|| status.bikes.saturating_add(status.docks.unwrap_or(0)));
    Station {
        number: StationId::from_text(info.code.as_deref().unwrap_or(&status.station_id)),
        contract_name: contract.to_owned(),
        name: info.name.clone(),
        address: info.address.clone(),
        position: info.position,
        banking: info.banking,
        bonus: false,
        bike_stands,
        available_bike_stands: status
            .docks
            .unwrap_or_else(|| bike_stands.saturating_sub(status.bikes)),
        available_bikes: status.bikes,
        status: if status.open {
            Status::Open
        } else {
            Status::Closed
        },
        last_update: status.last_reported,
        snapshot_at: Some(snapshot_at),
        bikes_by_type: status.by_type.as_deref().map(|c| types.resolve(c)),
        bikes_out_of_service: status.bikes_disabled,
        docks_out_of_service: status.docks_disabled,
        is_returning: status.returning,
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::feed_time;
    use super::*;
    use serde_json::json;

    fn info(record: Value) -> Info {
        parse_info(&record, None).unwrap().1
    }

    fn station(info_json: Value, status_json: Value) -> Result<Station, String> {
        let (_, i) = parse_info(&info_json, Some("fr"))?;
        let s = parse_status(&status_json)?;
        Ok(to_station(
            "lyon",
            &i,
            &s,
            &VehicleTypes::default(),
            1_751_470_000_000,
        ))
    }

    fn base_info() -> Value {
        json!({"station_id": "1001", "name": "Bellecour", "lat": 45.757, "lon": 4.832,
               "address": "Place Bellecour", "capacity": 20, "rental_methods": ["KEY", "CREDITCARD"]})
    }

    fn base_status() -> Value {
        json!({"station_id": "1001", "num_bikes_available": 3, "num_docks_available": 16,
               "is_installed": true, "is_renting": true, "is_returning": true,
               "last_reported": 1_750_000_000})
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = value;
        }
        v
    }

    #[test]
    fn maps_a_2_3_station() {
        let s = station(base_info(), base_status()).unwrap();
        assert_eq!(s.number, StationId::Number(1001));
        assert_eq!(s.key().as_str(), "lyon:1001");
        assert_eq!(s.snapshot_at, Some(1_751_470_000_000));
        assert_eq!(
            (s.name.as_str(), s.address.as_str()),
            ("Bellecour", "Place Bellecour")
        );
        assert_eq!((s.position.lat, s.position.lng), (45.757, 4.832));
        assert!(s.banking);
        assert!(!s.bonus);
        assert_eq!(
            (s.bike_stands, s.available_bikes, s.available_bike_stands),
            (20, 3, 16)
        );
        assert_eq!(s.status, Status::Open);
        assert_eq!(s.last_update, Some(1_750_000_000_000));
    }

    #[test]
    fn maps_types_out_of_service_and_returns_in_3_0_and_2_3() {
        // A real 3.0 record from JCDecaux (lyon, 2026-07-02), then the same in 2.3 words.
        let v3 = json!({"station_id": "1001", "num_vehicles_available": 9,
            "vehicle_types_available": [{"vehicle_type_id": "mechanical", "count": 2},
                                        {"vehicle_type_id": "electrical", "count": 7}],
            "num_vehicles_disabled": 1, "num_docks_available": 8, "num_docks_disabled": 2,
            "is_installed": true, "is_renting": true, "is_returning": false,
            "last_reported": "2026-07-02T01:16:37Z"});
        let mut v2 = with(v3.clone(), "num_vehicles_available", Value::Null);
        v2 = with(v2, "num_bikes_available", json!(9));
        v2 = with(v2, "num_vehicles_disabled", Value::Null);
        v2 = with(v2, "num_bikes_disabled", json!(1));
        for record in [v3, v2] {
            let s = station(base_info(), record.clone()).unwrap();
            assert_eq!(
                (s.ebikes(), s.classic_bikes()),
                (Some(7), Some(2)),
                "{record}"
            );
            assert_eq!(s.bikes_out_of_service, Some(1), "{record}");
            assert_eq!(s.docks_out_of_service, Some(2), "{record}");
            assert_eq!(s.is_returning, Some(false), "{record}");
            // Renting but not taking returns: still OPEN, as v1 said.
            assert_eq!(s.status, Status::Open);
            let ids: Vec<&str> = s
                .bikes_by_type
                .iter()
                .flatten()
                .map(|c| c.vehicle_type_id.as_ref())
                .collect();
            assert_eq!(ids, ["mechanical", "electrical"]);
        }
        // A record that says none of it has none of it: absent, not 0.
        let bare = json!({"station_id": "1001", "num_bikes_available": 3});
        let s = station(base_info(), bare).unwrap();
        assert_eq!(
            (
                s.ebikes(),
                s.bikes_out_of_service,
                s.docks_out_of_service,
                s.is_returning
            ),
            (None, None, None, None)
        );
        let json = String::from_utf8(s.to_json()).unwrap();
        for field in ["bikes_by_type", "out_of_service", "is_returning"] {
            assert!(!json.contains(field), "{json}");
        }
    }

    #[test]
    fn an_unreadable_extra_field_is_left_out_not_the_station() {
        for (field, value) in [
            ("vehicle_types_available", json!("many")),
            ("num_docks_disabled", json!(-1)),
            ("num_bikes_disabled", json!("x")),
            ("is_returning", json!("perhaps")),
        ] {
            let s = station(base_info(), with(base_status(), field, value)).unwrap();
            assert_eq!(s.available_bikes, 3, "{field}");
            let json = String::from_utf8(s.to_json()).unwrap();
            let name = match field {
                "vehicle_types_available" => "bikes_by_type",
                "num_docks_disabled" => "docks_out_of_service",
                "num_bikes_disabled" => "bikes_out_of_service",
                _ => "is_returning",
            };
            assert!(!json.contains(name), "{field}: {json}");
        }
    }

    #[test]
    fn status_mapping_table() {
        // (is_installed, is_renting) → status; Null means absent.
        let cases = [
            (json!(true), json!(true), Status::Open),
            (json!(true), json!(false), Status::Closed),
            (json!(false), json!(true), Status::Closed),
            (json!(false), json!(false), Status::Closed),
            (Value::Null, Value::Null, Status::Open),
            (json!(1), json!(0), Status::Closed),
            (json!(1), json!(1), Status::Open),
        ];
        for (installed, renting, want) in cases {
            let st = with(
                with(base_status(), "is_installed", installed.clone()),
                "is_renting",
                renting.clone(),
            );
            assert_eq!(
                station(base_info(), st).unwrap().status,
                want,
                "{installed} {renting}"
            );
        }
    }

    #[test]
    fn count_and_capacity_table() {
        // (capacity, bikes field, bikes, docks) → (bike_stands, available_bikes, free stands)
        let cases = [
            (
                json!(20),
                "num_bikes_available",
                json!(3),
                json!(16),
                (20, 3, 16),
            ),
            (
                json!(20),
                "num_vehicles_available",
                json!(5),
                json!(15),
                (20, 5, 15),
            ),
            (
                Value::Null,
                "num_bikes_available",
                json!(4),
                json!(6),
                (10, 4, 6),
            ),
            (
                json!(12),
                "num_bikes_available",
                json!(4),
                Value::Null,
                (12, 4, 8),
            ),
            (
                Value::Null,
                "num_bikes_available",
                json!(4),
                Value::Null,
                (4, 4, 0),
            ),
            (
                json!("20"),
                "num_bikes_available",
                json!("3"),
                json!(16.0),
                (20, 3, 16),
            ),
            (
                json!(2),
                "num_bikes_available",
                json!(5),
                Value::Null,
                (2, 5, 0),
            ),
        ];
        for (capacity, field, bikes, docks, want) in cases {
            let inf = with(base_info(), "capacity", capacity.clone());
            let mut st = with(base_status(), "num_bikes_available", Value::Null);
            st = with(
                with(st, field, bikes.clone()),
                "num_docks_available",
                docks.clone(),
            );
            let s = station(inf, st).unwrap();
            assert_eq!(
                (s.bike_stands, s.available_bikes, s.available_bike_stands),
                want,
                "{capacity} {field}={bikes} docks={docks}"
            );
        }
    }

    #[test]
    fn placeholder_times_are_no_time() {
        for placeholder in [
            json!("0001-01-01T00:00:00Z"),
            json!(0),
            json!("1970-01-01T00:00:00Z"),
        ] {
            let st = with(base_status(), "last_reported", placeholder.clone());
            assert_eq!(
                station(base_info(), st).unwrap().last_update,
                None,
                "{placeholder}"
            );
        }
        // Fraction digits from 0 to 9, as in JCDecaux's feeds.
        for (text, ms) in [
            ("2026-07-02T15:27:31Z", 1_783_006_051_000),
            ("2026-07-02T15:27:31.7Z", 1_783_006_051_700),
            ("2026-07-02T15:27:31.774Z", 1_783_006_051_774),
            ("2026-03-16T16:56:29.351594185Z", 1_773_680_189_351),
        ] {
            assert_eq!(
                feed_time(&json!({"last_updated": text})),
                Some(ms),
                "{text}"
            );
        }
        assert_eq!(
            feed_time(&json!({"lastUpdatedOther": 1_623_414_797})),
            Some(1_623_414_797_000)
        );
        assert_eq!(
            feed_time(&json!({"last_updated": 1_623_414_797})),
            Some(1_623_414_797_000)
        );
        assert_eq!(feed_time(&json!({"ttl": 1})), None);
        assert_eq!(
            feed_time(&json!({"last_updated": "0001-01-01T00:00:00Z"})),
            None
        );
    }

    #[test]
    fn paris_station_code_is_the_id() {
        // Vélib' Métropole (GBFS 1.0): an opaque integer station_id joins the two feeds; the
        // familiar number is `stationCode`.
        let info_json = json!({"station_id": 213_688_169, "name": "Benjamin Godard - Victor Hugo",
            "lat": 48.865983, "lon": 2.275725, "capacity": 35, "stationCode": "16107"});
        let status_json = json!({"station_id": 213_688_169, "stationCode": "16107",
            "num_bikes_available": 4, "numBikesAvailable": 4,
            "num_bikes_available_types": [{"mechanical": 3}, {"ebike": 1}],
            "num_docks_available": 31, "numDocksAvailable": 31,
            "is_installed": 1, "is_renting": 1, "is_returning": 1, "last_reported": 1_623_414_700});
        let (id, i) = parse_info(&info_json, None).unwrap();
        let st = parse_status(&status_json).unwrap();
        assert_eq!(id, st.station_id, "the feeds join on station_id");
        let s = to_station(
            "paris",
            &i,
            &st,
            &VehicleTypes::default(),
            1_623_414_797_000,
        );
        assert_eq!(s.key().as_str(), "paris:16107");
        assert_eq!((s.ebikes(), s.classic_bikes()), (Some(1), Some(3)));
        assert_eq!(s.is_returning, Some(true));
        assert_eq!(
            (s.bikes_out_of_service, s.docks_out_of_service),
            (None, None)
        );
        assert_eq!(
            (s.available_bikes, s.available_bike_stands, s.bike_stands),
            (4, 31, 35)
        );
        assert_eq!(s.status, Status::Open);
        assert_eq!(s.address, "Benjamin Godard - Victor Hugo");
    }

    #[test]
    fn last_reported_table() {
        let cases = [
            (json!(1_750_000_000), Some(1_750_000_000_000)),
            (json!(1_750_000_000_123i64), Some(1_750_000_000_123)),
            (json!("2025-06-15T15:06:40Z"), Some(1_750_000_000_000)),
            (json!("2025-06-15T17:06:40+02:00"), Some(1_750_000_000_000)),
            (json!("1750000000"), Some(1_750_000_000_000)),
            (json!(1_750_000_000.0), Some(1_750_000_000_000)),
            (Value::Null, None),
        ];
        for (value, want) in cases {
            let st = with(base_status(), "last_reported", value.clone());
            assert_eq!(
                station(base_info(), st).unwrap().last_update,
                want,
                "{value}"
            );
        }
        let st = with(base_status(), "last_reported", json!("yesterday"));
        assert!(
            station(base_info(), st)
                .unwrap_err()
                .contains("last_reported")
        );
    }

    #[test]
    fn names_addresses_and_banking() {
        let localized = json!([{"text": "Bellecour", "language": "en"}, {"text": "Place Bellecour FR", "language": "fr"}]);
        let i = with(
            with(base_info(), "name", localized.clone()),
            "address",
            Value::Null,
        );
        let (_, got) = parse_info(&i, Some("fr")).unwrap();
        assert_eq!(got.name, "Place Bellecour FR");
        assert_eq!(
            got.address, "Place Bellecour FR",
            "address falls back to the name"
        );
        let (_, got) = parse_info(&i, Some("de")).unwrap();
        assert_eq!(got.name, "Bellecour", "unknown language: the first entry");
        let (_, got) = parse_info(&i, None).unwrap();
        assert_eq!(got.name, "Bellecour");

        assert!(!info(with(base_info(), "rental_methods", json!(["key", "phone"]))).banking);
        assert!(info(with(base_info(), "rental_methods", json!(["creditcard"]))).banking);
        assert!(!info(with(base_info(), "rental_methods", Value::Null)).banking);
        assert_eq!(info(with(base_info(), "name", Value::Null)).name, "1001");
        let empty_first =
            json!([{"text": "", "language": "fr"}, {"text": "Bellecour", "language": "en"}]);
        assert_eq!(
            info(with(base_info(), "name", empty_first)).name,
            "Bellecour"
        );
        assert_eq!(
            info(with(
                base_info(),
                "name",
                json!([{"text": " ", "language": "fr"}])
            ))
            .name,
            "1001"
        );
        assert_eq!(info(with(base_info(), "name", json!(""))).name, "1001");
    }

    #[test]
    fn station_ids_keep_text_when_not_canonical_numbers() {
        for (id, want) in [
            (json!("1001"), StationId::Number(1001)),
            (json!(42), StationId::Number(42)),
            (json!("0042"), StationId::Text("0042".into())),
            (json!("a1b2-c3"), StationId::Text("a1b2-c3".into())),
        ] {
            let st = with(base_status(), "station_id", id.clone());
            assert_eq!(station(base_info(), st).unwrap().number, want, "{id}");
        }
    }

    #[test]
    fn bad_records_say_which_field() {
        let cases = [
            (with(base_status(), "station_id", Value::Null), "station_id"),
            (with(base_status(), "station_id", json!("")), "station_id"),
            (
                with(base_status(), "num_bikes_available", json!("many")),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_bikes_available", json!(-1)),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_bikes_available", Value::Null),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_docks_available", json!(1.5)),
                "num_docks_available",
            ),
            (
                with(base_status(), "is_renting", json!("yes")),
                "is_renting",
            ),
            (json!([1, 2]), "station object"),
        ];
        for (record, field) in cases {
            let err = parse_status(&record).unwrap_err();
            assert!(err.contains(field), "{record}: {err}");
        }
        for (record, field) in [
            (with(base_info(), "lat", Value::Null), "lat"),
            (with(base_info(), "lon", json!("east")), "lon"),
            (with(base_info(), "capacity", json!(true)), "capacity"),
        ] {
            let err = parse_info(&record, None).unwrap_err();
            assert!(err.contains(field), "{record}: {err}");
        }
    }

    #[test]
    fn every_mapped_station_survives_the_v1_json_round_trip() {
        // A small property test: whatever combination of optional fields, the mapped station
        // is a valid v1 record and keeps bikes + free stands consistent with what was given.
        let mut rng = velib_model::rng::SplitMix64::new(99);
        for _ in 0..500 {
            let capacity = rng.range(0, 60);
            let bikes = rng.range(0, 60);
            let docks = rng.range(0, 60);
            let mut inf = base_info();
            let mut st = base_status();
            inf = with(
                inf,
                "capacity",
                if rng.chance(0.3) {
                    Value::Null
                } else {
                    json!(capacity)
                },
            );
            st = with(st, "num_bikes_available", json!(bikes));
            st = with(
                st,
                "num_docks_available",
                if rng.chance(0.3) {
                    Value::Null
                } else {
                    json!(docks)
                },
            );
            st = with(st, "is_renting", json!(rng.chance(0.8)));
            let s = station(inf.clone(), st.clone()).unwrap();
            assert_eq!(s.available_bikes, bikes);
            if st.get("num_docks_available").is_some() {
                assert_eq!(s.available_bike_stands, docks);
            } else {
                assert!(s.available_bike_stands <= s.bike_stands);
            }
            if inf.get("capacity").is_none() {
                assert!(s.bike_stands >= s.available_bikes);
            }
            assert_eq!(Station::from_json(&s.to_json()).unwrap(), s);
        }
    }

    /// A time of `-1e19` or `i64::MIN` seconds (a hostile or broken feed) is a placeholder,
    /// not a panic: the seconds-or-milliseconds guess took `abs()` of `i64::MIN`, which
    /// overflows (a panic wherever overflow checks are on, as in debug builds).
    #[test]
    fn extreme_times_are_placeholders_not_overflows() {
        for value in [
            json!(-1e19),
            json!(i64::MIN),
            json!(-1e300),
            json!("-9223372036854775808"),
        ] {
            let record =
                json!({"station_id": "1", "num_bikes_available": 1, "last_reported": value});
            assert_eq!(
                parse_status(&record).unwrap().last_reported,
                None,
                "{value}"
            );
            assert_eq!(feed_time(&json!({"last_updated": value})), None, "{value}");
        }
        let record = json!({"station_id": "1", "num_bikes_available": 1, "last_reported": 1e19});
        assert_eq!(parse_status(&record).unwrap().last_reported, Some(i64::MAX));
    }
}
