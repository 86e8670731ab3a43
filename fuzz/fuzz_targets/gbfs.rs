//! GBFS documents, read as a poll of `gbfs:<city>` reads them: the first byte picks the
//! document (`gbfs.json` manifest, `system_information`, `station_information`,
//! `station_status`), the rest is its body.
//!
//! Checked: the station array is split exactly as serde reads the document (see
//! `velib_fuzz::assert_split_agrees`); ids are non-empty and trimmed; times are real (no
//! placeholder before 2000); and every station a record turns into reads back, unchanged,
//! where the producer publishes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::LazyLock;
use url::Url;
use velib_fuzz::{assert_reads_back, assert_split_agrees};
use velib_model::StationKey;
use velib_source::readers::{
    Info, StatusRecord, VehicleTypes, feed_time, id_text, parse_discovery, parse_info,
    parse_status, split, to_station,
};

/// Times before 2000-01-01 are placeholders, never a station's or a feed's time.
const PLACEHOLDER_BEFORE_MS: i64 = 946_684_800_000;
const STATIONS: &[&str] = &["data", "stations"];
const LANGUAGES: [Option<&str>; 3] = [None, Some("fr"), Some("en")];

static BASE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://api.cyclocity.fr/contracts/lyon/gbfs/gbfs.json").unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&kind, doc)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => manifest(doc),
        1 => system_information(doc),
        2 => station_information(doc),
        _ => station_status(doc),
    }
});

fn manifest(doc: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    for language in LANGUAGES {
        if parse_discovery(&value, &BASE, language).is_ok() {
            // Read only from what the manifest lists.
            let mut names = Vec::new();
            listed_feeds(&value, &mut names);
            for feed in ["station_information", "station_status"] {
                assert!(
                    names.contains(&feed),
                    "{feed} accepted but not listed: {value}"
                );
            }
        }
    }
}

/// The `name` of every object in `value` that has a string `name` and a string `url`.
fn listed_feeds<'a>(value: &'a Value, names: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(name)), Some(Value::String(_))) =
                (map.get("name"), map.get("url"))
            {
                names.push(name);
            }
            map.values().for_each(|v| listed_feeds(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| listed_feeds(v, names)),
        _ => {}
    }
}

fn system_information(doc: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    // What a poll takes as the contract of a system with no contract of its own.
    if let Some(id) = value.pointer("/data/system_id").and_then(id_text) {
        assert!(!id.is_empty() && id == id.trim(), "{id:?}");
        let key = StationKey::new(&id, "1");
        assert_eq!(key.as_str().parse::<StationKey>().as_ref(), Ok(&key));
    }
    check_feed_time(&value);
}

fn check_feed_time(document: &Value) {
    if let Some(ms) = feed_time(document) {
        assert!(ms >= PLACEHOLDER_BEFORE_MS, "{ms}: {document}");
    }
}

fn station_information(doc: &[u8]) {
    let Ok(split) = split(doc, STATIONS) else {
        assert!(serde_json::from_slice::<Value>(doc).is_err());
        return;
    };
    assert_split_agrees(doc, &split, STATIONS);
    for record in split.items.iter().flatten() {
        for language in LANGUAGES {
            let Ok((id, info)) = parse_info(record, language) else {
                continue;
            };
            assert!(!id.is_empty() && id == id.trim(), "{id:?}");
            let status = status_of(&id);
            for contract in ["lyon", "a:b"] {
                assert_reads_back(&to_station(
                    contract,
                    &info,
                    &status,
                    &VehicleTypes::default(),
                    PLACEHOLDER_BEFORE_MS,
                ));
            }
        }
    }
}

fn station_status(doc: &[u8]) {
    let Ok(split) = split(doc, STATIONS) else {
        assert!(serde_json::from_slice::<Value>(doc).is_err());
        return;
    };
    assert_split_agrees(doc, &split, STATIONS);
    check_feed_time(&split.document);
    let snapshot_at = feed_time(&split.document).unwrap_or(PLACEHOLDER_BEFORE_MS);
    for record in split.items.iter().flatten() {
        let Ok(status) = parse_status(record) else {
            continue;
        };
        let info = info_for(record);
        let station = to_station("lyon", &info, &status, &VehicleTypes::default(), snapshot_at);
        assert!(
            station
                .last_update
                .is_none_or(|ms| ms >= PLACEHOLDER_BEFORE_MS),
            "placeholder time kept: {record}"
        );
        assert_reads_back(&station);
    }
}

/// A `station_status` record for the station `id`, to join with what `station_information`
/// said about it.
fn status_of(id: &str) -> StatusRecord {
    parse_status(&json!({"station_id": id, "num_bikes_available": 3, "num_docks_available": 4}))
        .unwrap()
}

/// A `station_information` record for the station a status record names (or a placeholder id
/// when it names none readable).
fn info_for(status: &Value) -> Info {
    let id = status
        .get("station_id")
        .and_then(id_text)
        .unwrap_or_else(|| "1".into());
    parse_info(
        &json!({"station_id": id, "name": [{"text": "Bellecour", "language": "fr"}],
                "lat": 45.7578, "lon": 4.832, "capacity": 20}),
        None,
    )
    .unwrap()
    .1
}
