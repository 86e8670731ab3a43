//! JCDecaux after 2026-12-31: the same stations keep their keys and printed contract whether
//! they come through v1 or GBFS; Vélib' Métropole's GBFS 1.0; polling details (ETag, the
//! refresh floor).

use crate::support::options;
use serde_json::{Value, json};
use std::time::Duration;
use velib_source::{GbfsSource, GbfsTarget, JcDecauxSource, SourceOptions, StationSource};
use wiremock::matchers::{header, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Three Lyon stations as JCDecaux's GBFS 3.0 `station_information` lists them (ids, names and
/// positions from the 2026-07-02 feeds), one with an empty localised name as real feeds have.
fn lyon_information_3_0() -> Value {
    json!({"last_updated": "2026-07-02T15:27:51.514Z", "ttl": 300, "version": "3.0",
    "data": {"stations": [
        {"station_id": "1024", "name": [{"text": "ROUVILLE", "language": "fr"},
            {"text": "ROUVILLE", "language": "en"}],
         "lat": 45.769684, "lon": 4.824607, "address": "PLACE ROUVILLE", "capacity": 17},
        {"station_id": "1031", "name": [{"text": "", "language": "fr"},
            {"text": "PLACE DE LA PAIX", "language": "en"}],
         "lat": 45.768023, "lon": 4.831733,
         "address": "Place de la Paix - En face de La Poste", "capacity": 20},
        {"station_id": "3080", "name": [{"text": "PART-DIEU / VILLETTE", "language": "fr"}],
         "lat": 45.760042, "lon": 4.861734, "address": "55 RUE DE LA VILLETTE",
         "capacity": 30},
    ]}})
}

fn lyon_status_3_0(last_updated: &str) -> Value {
    let station = |id: &str, bikes: u32, docks: u32| {
        json!({"station_id": id, "num_vehicles_available": bikes, "num_docks_available": docks,
               "is_installed": true, "is_renting": true, "is_returning": true,
               "last_reported": "2026-07-02T01:16:37Z"})
    };
    json!({"last_updated": last_updated, "ttl": 1, "version": "3.0", "data": {"stations": [
        station("1024", 5, 12), station("1031", 2, 18), station("3080", 10, 20),
    ]}})
}

/// The same three stations as the v1 API describes them, with `contract` spelled as asked.
fn lyon_v1(contract: &str) -> Value {
    let station = |n: u64, name: &str, address: &str, lat: f64, lng: f64, stands: u32| {
        json!({"number": n, "contract_name": contract, "name": format!("{n} - {name}"),
               "address": address, "position": {"lat": lat, "lng": lng}, "banking": true,
               "bonus": false, "bike_stands": stands, "available_bike_stands": stands - 2,
               "available_bikes": 2, "status": "OPEN", "last_update": 1_783_000_000_000i64})
    };
    json!([
        station(1024, "ROUVILLE", "PLACE ROUVILLE", 45.769684, 4.824607, 17),
        station(
            1031,
            "PLACE DE LA PAIX",
            "Place de la Paix - En face de La Poste",
            45.768023,
            4.831733,
            20
        ),
        station(
            3080,
            "PART-DIEU / VILLETTE",
            "55 RUE DE LA VILLETTE",
            45.760042,
            4.861734,
            30
        ),
    ])
}

async fn mount_lyon_3_0(server: &MockServer) {
    let base = format!("{}/contracts/lyon/gbfs", server.uri());
    let manifest = json!({"last_updated": "2026-07-02T15:27:00Z", "ttl": 300, "version": "3.0",
    "data": {"feeds": [
        {"name": "system_information", "url": format!("{base}/system_information.json")},
        {"name": "station_information", "url": format!("{base}/station_information.json")},
        {"name": "station_status", "url": format!("{base}/station_status.json")},
    ]}});
    for (file, body) in [
        ("gbfs.json", manifest),
        (
            "system_information.json",
            json!({"data": {"system_id": "lyon"}}),
        ),
        ("station_information.json", lyon_information_3_0()),
        (
            "station_status.json",
            lyon_status_3_0("2026-07-02T15:28:01.1Z"),
        ),
    ] {
        Mock::given(path(format!("/contracts/lyon/gbfs/{file}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(server)
            .await;
    }
}

/// (key, printed contract) of every station of one poll, sorted.
async fn keys(source: &mut impl StationSource) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = source
        .fetch()
        .await
        .unwrap()
        .stations
        .iter()
        .map(|s| (s.key().to_string(), s.contract_name.clone()))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn v1_and_gbfs_give_the_same_stations_the_same_keys() {
    let server = MockServer::start().await;
    mount_lyon_3_0(&server).await;
    // v1 as it answers today (lower-case) and as in the tutorial's 2017 sample (capitalised).
    for spelling in ["lyon", "Lyon"] {
        Mock::given(path("/vls/v1/stations"))
            .and(query_param("contract", spelling))
            .respond_with(ResponseTemplate::new(200).set_body_json(lyon_v1(spelling)))
            .mount(&server)
            .await;
    }
    let gbfs_keys = {
        let targets: Vec<GbfsTarget> = vec!["lyon".parse().unwrap()];
        let mut gbfs = GbfsSource::new(&options(&server.uri()), &targets).unwrap();
        keys(&mut gbfs).await
    };
    assert_eq!(
        gbfs_keys,
        [
            ("lyon:1024".to_owned(), "lyon".to_owned()),
            ("lyon:1031".to_owned(), "lyon".to_owned()),
            ("lyon:3080".to_owned(), "lyon".to_owned()),
        ]
    );
    for spelling in ["lyon", "Lyon"] {
        let mut v1 =
            JcDecauxSource::new(&options(&server.uri()), Some(spelling.to_owned())).unwrap();
        assert_eq!(
            keys(&mut v1).await,
            gbfs_keys,
            "v1 contract_name {spelling:?}"
        );
    }
    // A gbfs.json URL under the same host names the contract the same way.
    let url = format!("{}/contracts/lyon/gbfs/gbfs.json", server.uri());
    let targets: Vec<GbfsTarget> = vec![url.parse().unwrap()];
    let mut by_url = GbfsSource::new(&options(&server.uri()), &targets).unwrap();
    assert_eq!(keys(&mut by_url).await, gbfs_keys);
}

#[tokio::test]
async fn gbfs_records_carry_the_feed_snapshot_time_and_no_placeholder_time() {
    let server = MockServer::start().await;
    mount_lyon_3_0(&server).await;
    let targets: Vec<GbfsTarget> = vec!["lyon".parse().unwrap()];
    let mut source = GbfsSource::new(&options(&server.uri()), &targets).unwrap();
    let snapshot = source.fetch().await.unwrap();
    // 2026-07-02T15:28:01.1Z
    assert!(
        snapshot
            .stations
            .iter()
            .all(|s| s.snapshot_at == Some(1_783_006_081_100))
    );
    let paix = snapshot
        .stations
        .iter()
        .find(|s| s.key().id() == "1031")
        .unwrap();
    assert_eq!(
        paix.name, "PLACE DE LA PAIX",
        "an empty localised name is skipped"
    );
}

#[tokio::test]
async fn paris_velib_metropole_gbfs_1_0() {
    // The shape of Vélib' Métropole's feeds: GBFS 1.0 with `lastUpdatedOther` instead of
    // `last_updated`, 0/1 booleans, integer `station_id`s and the familiar number in
    // `stationCode`, bike types as a list of one-key maps, `ttl` 3600.
    let server = MockServer::start().await;
    let base = format!("{}/opendata/Velib_Metropole", server.uri());
    let manifest = json!({"lastUpdatedOther": 1_764_500_000, "ttl": 3600, "data": {"en": {"feeds": [
        {"name": "system_information", "url": format!("{base}/system_information.json")},
        {"name": "station_information", "url": format!("{base}/station_information.json")},
        {"name": "station_status", "url": format!("{base}/station_status.json")},
    ]}}});
    let information = json!({"lastUpdatedOther": 1_764_500_000, "ttl": 3600, "data": {"stations": [
        {"station_id": 213_688_169, "name": "Benjamin Godard - Victor Hugo", "lat": 48.865983,
         "lon": 2.275725, "capacity": 35, "stationCode": "16107",
         "rental_methods": ["CREDITCARD"]},
        {"station_id": 36_255, "name": "Toudouze - Clauzel", "lat": 48.87929591733507,
         "lon": 2.3373600840568547, "capacity": 21, "stationCode": "9020"},
    ]}});
    let status = json!({"lastUpdatedOther": 1_764_500_060, "ttl": 3600, "data": {"stations": [
        {"stationCode": "16107", "station_id": 213_688_169, "num_bikes_available": 4,
         "numBikesAvailable": 4, "num_bikes_available_types": [{"mechanical": 3}, {"ebike": 1}],
         "num_docks_available": 31, "numDocksAvailable": 31, "is_installed": 1,
         "is_returning": 1, "is_renting": 1, "last_reported": 1_764_499_990},
        {"stationCode": "9020", "station_id": 36_255, "num_bikes_available": 0,
         "numBikesAvailable": 0, "num_bikes_available_types": [{"mechanical": 0}, {"ebike": 0}],
         "num_docks_available": 21, "numDocksAvailable": 21, "is_installed": 1,
         "is_returning": 1, "is_renting": 0, "last_reported": 1_764_499_000},
    ]}});
    for (file, body) in [
        ("gbfs.json", manifest),
        (
            "system_information.json",
            json!({"data": {"system_id": "velib_metropole"}}),
        ),
        ("station_information.json", information),
        ("station_status.json", status),
    ] {
        Mock::given(path(format!("/opendata/Velib_Metropole/{file}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
    }
    let spec = format!("paris={base}/gbfs.json");
    let targets: Vec<GbfsTarget> = vec![spec.parse().unwrap()];
    let mut source = GbfsSource::new(&options(&server.uri()), &targets).unwrap();
    let snapshot = source.fetch().await.unwrap();
    let by_key = |k: &str| {
        snapshot
            .stations
            .iter()
            .find(|s| s.key().as_str() == k)
            .unwrap_or_else(|| panic!("{k} in {:?}", snapshot.stations))
    };
    let godard = by_key("paris:16107");
    assert_eq!(
        (
            godard.available_bikes,
            godard.available_bike_stands,
            godard.bike_stands
        ),
        (4, 31, 35)
    );
    assert_eq!(godard.status, velib_model::Status::Open);
    assert!(godard.banking);
    assert_eq!(godard.snapshot_at, Some(1_764_500_060_000));
    assert_eq!(godard.last_update, Some(1_764_499_990_000));
    let toudouze = by_key("paris:9020");
    assert_eq!(toudouze.status, velib_model::Status::Closed, "is_renting 0");
}

#[tokio::test]
async fn an_unchanged_status_feed_answered_304_is_the_same_snapshot() {
    let server = MockServer::start().await;
    mount_lyon_3_0(&server).await;
    let status = "/contracts/lyon/gbfs/station_status.json";
    // Ahead of the status mock above (priority 1 and 2, the default is 5): the conditional
    // request gets 304, the first one the body with its ETag.
    Mock::given(path(status))
        .and(header("if-none-match", "\"snap-1\""))
        .respond_with(ResponseTemplate::new(304))
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path(status))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("etag", "\"snap-1\"")
                .set_body_json(lyon_status_3_0("2026-07-02T15:28:01.1Z")),
        )
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let targets: Vec<GbfsTarget> = vec!["lyon".parse().unwrap()];
    let mut source = GbfsSource::new(&options(&server.uri()), &targets).unwrap();
    let first = source.fetch().await.unwrap();
    for _ in 0..2 {
        let again = source.fetch().await.unwrap();
        assert_eq!(
            again.stations, first.stations,
            "304: the same stations, same snapshot_at"
        );
    }
}

#[tokio::test]
async fn station_information_with_ttl_zero_is_refreshed_at_most_once_a_minute() {
    let server = MockServer::start().await;
    let base = format!("{}/contracts/lyon/gbfs", server.uri());
    let mut information = lyon_information_3_0();
    information["ttl"] = json!(0);
    let manifest = json!({"last_updated": "2026-07-02T15:27:00Z", "ttl": 0, "version": "3.0",
    "data": {"feeds": [
        {"name": "station_information", "url": format!("{base}/station_information.json")},
        {"name": "station_status", "url": format!("{base}/station_status.json")},
    ]}});
    for (file, body, times) in [
        ("gbfs.json", manifest, 1),
        ("station_information.json", information, 1),
        (
            "station_status.json",
            lyon_status_3_0("2026-07-02T15:28:01Z"),
            3,
        ),
    ] {
        Mock::given(path(format!("/contracts/lyon/gbfs/{file}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(times)
            .mount(&server)
            .await;
    }
    let o = SourceOptions {
        gbfs_refresh_floor: SourceOptions::default().gbfs_refresh_floor,
        ..options(&server.uri())
    };
    assert_eq!(o.gbfs_refresh_floor, Duration::from_secs(60));
    let targets: Vec<GbfsTarget> = vec!["lyon".parse().unwrap()];
    let mut source = GbfsSource::new(&o, &targets).unwrap();
    for _ in 0..3 {
        assert_eq!(source.fetch().await.unwrap().stations.len(), 3);
    }
    // The expectations (discovery and information once, status every poll) are checked when
    // the server drops.
}
