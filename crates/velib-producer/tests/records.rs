//! The records the producer publishes: every station is written by velib-model's hand-written
//! writer (`Station::write_json`), which must give, byte for byte, what serde_json writes for
//! the same station, on every station of the real day and on text that needs escaping; and
//! what it writes must read back to the same station.

use std::collections::HashMap;
use velib_model::{Position, Station, StationId, StationView, Status, VehicleCount, VehicleKind};
use velib_source::readers::{
    VehicleTypes, feed_time, id_text, parse_info, parse_status, to_station,
};
use velib_source::{SimulateConfig, SimulateSource};
use velib_testkit::real_day::{load_day, stations};

/// The writer's bytes are serde_json's bytes, and read back to the station.
fn assert_written_as_serde_writes(station: &Station) {
    let by_serde = serde_json::to_vec(station).unwrap();
    let written = station.to_json();
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&by_serde)
    );
    // Appending leaves what was there.
    let mut out = b"[".to_vec();
    station.write_json(&mut out);
    assert_eq!(&out[1..], &by_serde[..]);
    assert_eq!(&Station::from_json(&written).unwrap(), station);
    assert_eq!(
        StationView::from_json(&written).unwrap().to_station(),
        *station
    );
}

#[test]
fn every_station_of_the_real_day_is_written_as_serde_writes_it() {
    let day = load_day();
    assert_eq!(day.len(), 19, "the 19 JCDecaux GBFS cities");
    let types = VehicleTypes::default();
    let mut written = 0;
    let mut escaped = 0;
    let mut non_ascii = 0;
    for city in &day {
        let infos: HashMap<String, _> = stations(&city.information)
            .iter()
            .map(|s| parse_info(s, None).unwrap())
            .collect();
        for status in &city.statuses {
            let at = feed_time(status).unwrap();
            for raw in stations(status) {
                let id = id_text(&raw["station_id"]).unwrap();
                let Some(info) = infos.get(&id) else { continue };
                let station = to_station(&city.slug, info, &parse_status(raw).unwrap(), &types, at);
                assert_written_as_serde_writes(&station);
                written += 1;
                let text = [&station.name, &station.address]
                    .map(|t| t.as_str())
                    .concat();
                escaped += usize::from(text.contains(['"', '\\']));
                non_ascii += usize::from(!text.is_ascii());
            }
        }
    }
    // Counted from the files: every status record with its station's information.
    let expected: usize = day
        .iter()
        .map(|city| {
            let known: std::collections::HashSet<String> = stations(&city.information)
                .iter()
                .map(|s| s["station_id"].to_string())
                .collect();
            city.statuses
                .iter()
                .flat_map(stations)
                .filter(|s| known.contains(&s["station_id"].to_string()))
                .count()
        })
        .sum();
    assert_eq!(written, expected);
    assert!(
        non_ascii > 1_000,
        "{non_ascii} stations with accented names"
    );
    // Whether the day has a name to escape or not, the writer's escapes are tested below.
    let _ = escaped;
}

#[test]
fn text_that_needs_escaping_is_written_as_serde_writes_it() {
    let mut station = Station {
        number: StationId::Number(u64::MAX),
        contract_name: "Aix:en:Provence".into(),
        name: "00012 - \"LE\" CAFÉ \\ GARE".into(),
        address: "tab\there, newline\nthere, bell\u{7}, DEL\u{7f}, ÿ, 🚲".into(),
        position: Position {
            lat: -0.000_001_5,
            lng: 179.999_999_999_999_97,
        },
        banking: true,
        bonus: true,
        bike_stands: u32::MAX,
        available_bike_stands: 0,
        available_bikes: 7,
        status: Status::Closed,
        last_update: None,
        snapshot_at: Some(i64::MAX),
        bikes_by_type: Some(vec![
            VehicleCount {
                vehicle_type_id: "é\"lec".into(),
                kind: VehicleKind::Electric,
                count: 3,
            },
            VehicleCount {
                vehicle_type_id: "mechanical".into(),
                kind: VehicleKind::Classic,
                count: 0,
            },
            VehicleCount {
                vehicle_type_id: String::new().into(),
                kind: VehicleKind::Other,
                count: 4,
            },
        ]),
        bikes_out_of_service: Some(0),
        docks_out_of_service: Some(u32::MAX),
        is_returning: Some(false),
    };
    assert_written_as_serde_writes(&station);
    // Every optional member absent, a text id, an empty list of types.
    station.number = StationId::Text("a\u{1}b".into());
    station.snapshot_at = None;
    station.bikes_out_of_service = None;
    station.docks_out_of_service = None;
    station.is_returning = None;
    station.last_update = Some(0);
    station.status = Status::Open;
    assert_written_as_serde_writes(&station);
    station.bikes_by_type = Some(Vec::new());
    assert_written_as_serde_writes(&station);
    station.bikes_by_type = None;
    station.name = String::new();
    assert_written_as_serde_writes(&station);
    // Every control character, alone and among plain text, at every place in its word.
    for c in (0u8..0x20).chain([b'"', b'\\']) {
        for at in 0..10 {
            let mut text = "abcdefghi".to_owned();
            text.insert(at, char::from(c));
            station.address = text;
            assert_written_as_serde_writes(&station);
        }
    }
}

#[test]
fn the_simulated_city_is_written_as_serde_writes_it() {
    let mut city = SimulateSource::new(SimulateConfig {
        stations: 2_000,
        start_ms: Some(1_780_000_000_000),
        ..SimulateConfig::default()
    });
    for _ in 0..3 {
        for station in &city.next_snapshot().stamped().stations {
            assert_written_as_serde_writes(station);
        }
    }
}
