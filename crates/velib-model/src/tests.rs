//! Unit tests over real-looking v1 payloads.

use crate::*;

const MARSEILLE: &str = r#"{
    "number": 9087, "contract_name": "Marseille", "name": "9087-MAZARGUES",
    "address": "MAZARGUES - ROND POINT DE MAZARGUES (OBELISQUE)",
    "position": {"lat": 43.250903869637334, "lng": 5.403244616491982},
    "banking": true, "bonus": false, "status": "OPEN", "bike_stands": 21,
    "available_bike_stands": 20, "available_bikes": 1, "last_update": 1493734764000
}"#;

fn marseille() -> Station {
    Station::from_json(MARSEILLE.as_bytes()).unwrap()
}

#[test]
fn reads_the_tutorial_record() {
    let s = marseille();
    assert_eq!(s.number, StationId::Number(9087));
    assert_eq!(s.contract_name, "Marseille");
    assert_eq!(s.status, Status::Open);
    assert_eq!(
        (s.bike_stands, s.available_bike_stands, s.available_bikes),
        (21, 20, 1)
    );
    assert_eq!(s.last_update, Some(1_493_734_764_000));
    assert!(s.banking && !s.bonus);
    assert_eq!(s.key().as_str(), "Marseille:9087");
}

#[test]
fn serialises_to_the_same_v1_json() {
    let original: serde_json::Value = serde_json::from_str(MARSEILLE).unwrap();
    let written: serde_json::Value = serde_json::from_slice(&marseille().to_json()).unwrap();
    assert_eq!(written, original);
}

#[test]
fn null_last_update_and_closed_station() {
    let json = MARSEILLE
        .replace("1493734764000", "null")
        .replace("\"OPEN\"", "\"CLOSED\"");
    let s = Station::from_json(json.as_bytes()).unwrap();
    assert_eq!(s.last_update, None);
    assert_eq!(s.status, Status::Closed);
    assert!(!s.is_empty(), "a closed station is not reported as empty");
    let back: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
    assert_eq!(back["last_update"], serde_json::Value::Null);
    assert_eq!(back["status"], "CLOSED");
}

#[test]
fn unicode_addresses_survive_a_round_trip() {
    let json = MARSEILLE.replace(
        "MAZARGUES - ROND POINT DE MAZARGUES (OBELISQUE)",
        "San Juan Bosco - Santiago Rusiñol — Ñandú 北京 \\u00e9",
    );
    let s = Station::from_json(json.as_bytes()).unwrap();
    assert_eq!(
        s.address,
        "San Juan Bosco - Santiago Rusiñol — Ñandú 北京 é"
    );
    assert_eq!(Station::from_json(&s.to_json()).unwrap(), s);
}

#[test]
fn numbers_written_as_strings_are_read() {
    let json = r#"{"number": "42", "contract_name": "Lyon", "name": "x", "address": "y",
        "position": {"lat": "45.75", "lng": "4.85"}, "banking": "true", "bonus": false,
        "status": "open", "bike_stands": "20", "available_bike_stands": "5",
        "available_bikes": 15.0, "last_update": "1700000000000"}"#;
    let s = Station::from_json(json.as_bytes()).unwrap();
    assert_eq!(s.number, StationId::Number(42));
    assert_eq!(
        (s.bike_stands, s.available_bike_stands, s.available_bikes),
        (20, 5, 15)
    );
    assert_eq!(s.position.lat, 45.75);
    assert_eq!(s.last_update, Some(1_700_000_000_000));
    assert!(s.banking);
    assert_eq!(s.status, Status::Open);
    // Written back, numbers are numbers again.
    let back: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
    assert_eq!(back["number"], 42);
    assert_eq!(back["bike_stands"], 20);
}

#[test]
fn extra_fields_are_ignored() {
    let json = MARSEILLE.replacen(
        '{',
        r#"{"totalStands": {"capacity": 21}, "connected": true, "overflow": null,"#,
        1,
    );
    assert_eq!(Station::from_json(json.as_bytes()).unwrap(), marseille());
}

#[test]
fn missing_descriptive_fields_default() {
    let json = r#"{"number": 1, "contract_name": "Lyon", "position": {"lat": 1, "lng": 2},
        "status": "OPEN", "bike_stands": 3, "available_bike_stands": 1, "available_bikes": 2}"#;
    let s = Station::from_json(json.as_bytes()).unwrap();
    assert_eq!((s.name.as_str(), s.address.as_str()), ("", ""));
    assert!(!s.banking && !s.bonus);
    assert_eq!(s.last_update, None);
}

#[test]
fn text_station_ids_stay_text() {
    assert_eq!(StationId::from_text("1001"), StationId::Number(1001));
    assert_eq!(StationId::from_text("0"), StationId::Number(0));
    assert_eq!(StationId::from_text("007"), StationId::Text("007".into()));
    assert_eq!(
        StationId::from_text("station:abc"),
        StationId::Text("station:abc".into())
    );
    let json = MARSEILLE.replace("9087,", r#""a1b2","#);
    let s = Station::from_json(json.as_bytes()).unwrap();
    assert_eq!(s.key().as_str(), "Marseille:a1b2");
    let back: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
    assert_eq!(back["number"], "a1b2");
}

#[test]
fn wrong_type_names_the_field_and_the_station() {
    let json = MARSEILLE.replace(r#""available_bikes": 1"#, r#""available_bikes": "lots""#);
    let err = Station::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("available_bikes"));
    assert_eq!(err.station.as_deref(), Some("Marseille:9087"));
    let msg = err.to_string();
    assert!(
        msg.contains("available_bikes") && msg.contains("Marseille:9087"),
        "{msg}"
    );
}

#[test]
fn nested_wrong_type_names_the_path() {
    let json = MARSEILLE.replace("43.250903869637334", "[]");
    let err = Station::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("position.lat"));
}

#[test]
fn missing_required_field_is_named() {
    let json = MARSEILLE.replace(r#""status": "OPEN","#, "");
    let err = Station::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("status"));
    assert_eq!(err.station.as_deref(), Some("Marseille:9087"));
}

#[test]
fn negative_counts_and_unknown_status_are_errors() {
    let json = MARSEILLE.replace(r#""bike_stands": 21"#, r#""bike_stands": -1"#);
    let err = Station::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("bike_stands"));
    let json = MARSEILLE.replace("\"OPEN\"", "\"BROKEN\"");
    let err = Station::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("status"));
}

#[test]
fn not_json_or_not_an_object_is_an_error_without_a_station() {
    for input in ["not json", "[1,2,3]", "", "{\"number\": 1"] {
        let err = Station::from_json(input.as_bytes()).unwrap_err();
        assert_eq!(err.station, None, "{input}");
        assert!(!err.reason.is_empty());
    }
    // Trailing garbage after a valid record is not silently accepted.
    let err = Station::from_json(format!("{MARSEILLE} x").as_bytes()).unwrap_err();
    assert!(err.reason.contains("trailing"), "{}", err.reason);
}

#[test]
fn from_value_matches_from_json() {
    let v: serde_json::Value = serde_json::from_str(MARSEILLE).unwrap();
    assert_eq!(Station::from_value(&v).unwrap(), marseille());
    let mut bad = v.clone();
    bad["available_bike_stands"] = serde_json::json!(true);
    let err = Station::from_value(&bad).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("available_bike_stands"));
    assert_eq!(err.station.as_deref(), Some("Marseille:9087"));
}

#[test]
fn station_keys_split_and_parse() {
    let key: StationKey = "Lyon:1001".parse().unwrap();
    assert_eq!((key.contract(), key.id()), ("Lyon", "1001"));
    let key: StationKey = "citybike:station:12".parse().unwrap();
    assert_eq!((key.contract(), key.id()), ("citybike", "station:12"));
    assert!("Lyon".parse::<StationKey>().is_err());
    assert!(":1".parse::<StationKey>().is_err());
    assert!("Lyon:".parse::<StationKey>().is_err());
    // A contract name with a colon cannot make an ambiguous key.
    let key = StationKey::new("a:b", "c");
    assert_eq!((key.contract(), key.id()), ("a_b", "c"));
    assert_eq!(key.as_str().parse::<StationKey>().unwrap(), key);
    // Colliding numbers in two contracts are two stations.
    assert_ne!(
        StationKey::new("Lyon", "1001"),
        StationKey::new("Toulouse", "1001")
    );
}

#[test]
fn change_lines_match_the_tutorial() {
    let mut change = StationChange {
        key: "Toulouse:2".parse().unwrap(),
        contract: "Toulouse".into(),
        address: "2 RUE GATIEN ARNOULT".into(),
        name: "00002 - POOL".into(),
        field: TrackedField::AvailableBikeStands,
        previous: 0,
        current: 2,
        last_update: None,
    };
    assert_eq!(change.to_string(), "+2 2 RUE GATIEN ARNOULT (Toulouse)");
    change.previous = 5;
    assert_eq!(change.to_string(), "-3 2 RUE GATIEN ARNOULT (Toulouse)");
    let json = serde_json::to_value(&change).unwrap();
    assert_eq!(json["field"], "available_bike_stands");
    assert_eq!(json["key"], "Toulouse:2");
    // `--format json` names the count followed; the text line stays the tutorial's.
    for (field, name) in [
        (TrackedField::AvailableEbikes, "available_ebikes"),
        (
            TrackedField::AvailableClassicBikes,
            "available_classic_bikes",
        ),
        (TrackedField::DocksOutOfService, "docks_out_of_service"),
    ] {
        change.field = field;
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["field"], name);
        assert_eq!(
            serde_json::from_value::<StationChange>(json).unwrap(),
            change
        );
        assert_eq!(change.to_string(), "-3 2 RUE GATIEN ARNOULT (Toulouse)");
    }
}

#[test]
fn tracked_field_reads_the_right_count() {
    let s = marseille();
    assert_eq!(TrackedField::AvailableBikeStands.of(&s), Some(20));
    assert_eq!(TrackedField::AvailableBikes.of(&s), Some(1));
    // The tutorial's record does not count bikes by type nor docks out of service: unknown.
    for field in [
        TrackedField::AvailableEbikes,
        TrackedField::AvailableClassicBikes,
        TrackedField::DocksOutOfService,
    ] {
        assert_eq!(field.of(&s), None, "{field:?}");
        assert_eq!(field.of_view(&s.view()), None, "{field:?}");
    }
    let lyon = Station::from_json(LYON_3_0.as_bytes()).unwrap();
    let counts = [
        TrackedField::AvailableEbikes,
        TrackedField::AvailableClassicBikes,
        TrackedField::DocksOutOfService,
    ]
    .map(|f| (f.of(&lyon), f.of_view(&lyon.view())));
    assert_eq!(
        counts,
        [(Some(7), Some(7)), (Some(2), Some(2)), (Some(1), Some(1))]
    );
}

/// A station as velib publishes one read from a GBFS 3.0 feed: the v1 fields, then velib's.
const LYON_3_0: &str = r#"{"number":1001,"contract_name":"lyon","name":"Bellecour","address":"Place Bellecour","position":{"lat":45.757,"lng":4.832},"banking":true,"bonus":false,"bike_stands":20,"available_bike_stands":8,"available_bikes":9,"status":"OPEN","last_update":1751414400000,"snapshot_at":1751470000000,"bikes_by_type":[{"vehicle_type_id":"mechanical","kind":"classic","count":2},{"vehicle_type_id":"electrical","kind":"electric","count":7}],"bikes_out_of_service":0,"docks_out_of_service":1,"is_returning":true}"#;

#[test]
fn richer_fields_are_read_and_written_back_and_absent_when_unknown() {
    let lyon = Station::from_json(LYON_3_0.as_bytes()).unwrap();
    assert_eq!((lyon.ebikes(), lyon.classic_bikes()), (Some(7), Some(2)));
    assert_eq!(
        (
            lyon.bikes_out_of_service,
            lyon.docks_out_of_service,
            lyon.is_returning
        ),
        (Some(0), Some(1), Some(true))
    );
    // velib writes exactly what it read, in the same order.
    assert_eq!(String::from_utf8(lyon.to_json()).unwrap(), LYON_3_0);
    // The tutorial's record has none of them, and writing it adds none.
    let json = String::from_utf8(marseille().to_json()).unwrap();
    for field in ["bikes_by_type", "out_of_service", "is_returning"] {
        assert!(!json.contains(field), "{json}");
    }
    // An empty list is known: no bike of any type, so 0 e-bikes, not unknown.
    let empty = LYON_3_0.replace(
        r#"[{"vehicle_type_id":"mechanical","kind":"classic","count":2},{"vehicle_type_id":"electrical","kind":"electric","count":7}]"#,
        "[]",
    );
    let empty = Station::from_json(empty.as_bytes()).unwrap();
    assert_eq!(empty.ebikes(), Some(0));
    // A kind written by a newer velib is `other`, not an unreadable record.
    let newer = LYON_3_0.replace(r#""kind":"classic""#, r#""kind":"hoverboard""#);
    let newer = Station::from_json(newer.as_bytes()).unwrap();
    assert_eq!(newer.classic_bikes(), Some(0));
    // The monitor reads such a record on its fast path, with the same values.
    let fast = crate::scan::station(LYON_3_0.as_bytes()).expect("the fast path reads it");
    assert_eq!(fast.to_station(), lyon);
}

#[test]
fn empty_station_events_round_trip_and_have_an_identity() {
    let mut s = marseille();
    s.available_bikes = 0;
    assert!(s.is_empty());
    let event = EmptyStationEvent::new(EmptinessKind::BecameEmpty, &s, 1_493_734_765_000);
    let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(json["version"], 2);
    assert_eq!(json["kind"], "became_empty");
    // A field the record does not give is left out, not written as 0 or null.
    assert!(json.get("also").is_none() && json.get("available_ebikes").is_none());
    assert_eq!(json["key"], "Marseille:9087");
    assert_eq!(json["position"]["lat"], 43.250903869637334);
    assert_eq!(
        EmptyStationEvent::from_json(&event.to_json()).unwrap(),
        event
    );
    assert_eq!(event.event_time(), 1_493_734_764_000);
    s.last_update = None;
    let event2 = EmptyStationEvent::new(EmptinessKind::BecameEmpty, &s, 7);
    assert_eq!(event2.event_time(), 7);
    assert_ne!(event.identity(), event2.identity());
    let err = EmptyStationEvent::from_json(br#"{"version": 1, "kind": "exploded"}"#).unwrap_err();
    assert!(err.contains("kind"), "{err}");
}

/// An event as a velib of schema version 1 wrote it (before e-bikes and returns), byte for
/// byte: it still reads, as a bikes event with nothing else known.
const EVENT_V1: &str = r#"{"version":1,"kind":"no_longer_empty","key":"lyon:1001","contract":"lyon","number":1001,"name":"1001 - TERREAUX","address":"Place des Terreaux","position":{"lat":45.767,"lng":4.833},"status":"OPEN","bike_stands":20,"available_bikes":3,"available_bike_stands":17,"last_update":null,"snapshot_at":1751414400000,"observed_at":1751414401000}"#;

#[test]
fn events_of_version_1_still_read() {
    let event = EmptyStationEvent::from_json(EVENT_V1.as_bytes()).unwrap();
    assert_eq!(event.version, 1);
    assert_eq!(
        event.kinds().collect::<Vec<_>>(),
        [EmptinessKind::NoLongerEmpty]
    );
    assert_eq!(event.available_ebikes, None);
    assert_eq!(event.is_returning, None);
    assert_eq!(event.split(), std::slice::from_ref(&event));
}

#[test]
fn one_record_crossing_several_lines_is_one_event() {
    let mut s = Station::from_json(LYON_3_0.as_bytes()).unwrap();
    s.available_bikes = 0;
    s.bikes_by_type = Some(vec![]);
    s.is_returning = Some(false);
    for shortage in Shortage::ALL {
        assert_eq!(shortage.of(&s), Some(true), "{shortage}");
        assert_eq!(shortage.of_view(&s.view()), Some(true), "{shortage}");
    }
    let kinds: Vec<EmptinessKind> = Shortage::ALL.iter().map(|s| s.began()).collect();
    let event = EmptyStationEvent::of_kinds(&kinds, &s, 5).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(json["kind"], "became_empty");
    assert_eq!(
        json["also"],
        serde_json::json!(["ebikes_gone", "returns_stopped"])
    );
    assert_eq!(json["available_ebikes"], 0);
    assert_eq!(json["is_returning"], false);
    let parts = EmptyStationEvent::from_json(&event.to_json())
        .unwrap()
        .split();
    assert_eq!(
        parts
            .iter()
            .map(|e| (e.kind, e.also.len()))
            .collect::<Vec<_>>(),
        [
            (EmptinessKind::BecameEmpty, 0),
            (EmptinessKind::EbikesGone, 0),
            (EmptinessKind::ReturnsStopped, 0)
        ]
    );
    assert_ne!(parts[0].identity(), parts[1].identity());
    assert!(EmptyStationEvent::of_kinds(&[], &s, 5).is_none());
    // A closed station lacks nothing; a record that does not say is not known to.
    s.status = Status::Closed;
    assert_eq!(Shortage::Ebikes.of(&s), Some(false));
    s.bikes_by_type = None;
    s.is_returning = None;
    assert_eq!(Shortage::Ebikes.of(&s), None);
    assert_eq!(Shortage::Returns.of(&s), None);
    assert!(EmptinessKind::ReturnsResumed.is_recovery());
    assert!(!EmptinessKind::EbikesGone.is_recovery());
    assert_eq!("Returns".parse::<Shortage>(), Ok(Shortage::Returns));
    assert!("docks".parse::<Shortage>().is_err());
}

#[test]
fn snapshots_are_one_json_line() {
    let snap = Snapshot {
        taken_at: 1,
        stations: vec![marseille()],
    };
    let line = serde_json::to_string(&snap).unwrap();
    assert!(!line.contains('\n'));
    assert_eq!(serde_json::from_str::<Snapshot>(&line).unwrap(), snap);
}

/// The borrowed view reads exactly what the owned station reads, and refuses the same records
/// with the same error.
#[test]
fn station_view_agrees_with_station() {
    let valid = [
        MARSEILLE.to_owned(),
        MARSEILLE.replace("1493734764000", "null"),
        MARSEILLE.replace("9087,", r#""a1b2","#),
        MARSEILLE.replace("MAZARGUES - ROND", r#"MAZARGUES \"\u00e9\" - ROND"#),
        MARSEILLE.replacen(
            '{',
            r#"{"totalStands": {"capacity": 21}, "overflow": null,"#,
            1,
        ),
        r#"{"number": "42", "contract_name": "Lyon", "name": "x", "address": "y",
            "position": {"lat": "45.75", "lng": "4.85"}, "banking": "true", "bonus": false,
            "status": "open", "bike_stands": "20", "available_bike_stands": "5",
            "available_bikes": 15.0, "last_update": "1700000000000"}"#
            .to_owned(),
        r#"{"number": 1, "contract_name": "Lyon", "position": {"lat": 1, "lng": 2},
            "status": "OPEN", "bike_stands": 3, "available_bike_stands": 1,
            "available_bikes": 2}"#
            .to_owned(),
    ];
    let richer = [
        LYON_3_0.to_owned(),
        LYON_3_0.replace(r#""is_returning":true"#, r#""is_returning":null"#),
        LYON_3_0.replace(r#""is_returning":true"#, r#""is_returning":"false""#),
        LYON_3_0.replace(r#""count":7"#, r#""count":"7""#),
        LYON_3_0.replace(r#""kind":"electric""#, r#""kind":"unknown""#),
        LYON_3_0.replace(
            r#""docks_out_of_service":1"#,
            r#""docks_out_of_service":null"#,
        ),
        LYON_3_0.replace(r#""electrical""#, r#""elec\u0074rical""#),
        LYON_3_0.replace(r#""count":2}"#, r#""count":2,"extra":1}"#),
    ];
    for json in valid.iter().chain(&richer) {
        let station = Station::from_json(json.as_bytes()).unwrap();
        let view = StationView::from_json(json.as_bytes()).unwrap();
        assert_eq!(view.to_station(), station, "{json}");
        assert_eq!(station.view(), view, "{json}");
        assert_eq!(view.key(), station.key());
        assert_eq!(view.is_empty(), station.is_empty());
    }
    let invalid = [
        MARSEILLE.replace(r#""available_bikes": 1"#, r#""available_bikes": "lots""#),
        MARSEILLE.replace("43.250903869637334", "[]"),
        MARSEILLE.replace(r#""status": "OPEN","#, ""),
        MARSEILLE.replace(r#""bike_stands": 21"#, r#""bike_stands": -1"#),
        MARSEILLE.replace("\"OPEN\"", "\"BROKEN\""),
        MARSEILLE.replace(r#""name": "9087-MAZARGUES""#, r#""name": 12"#),
        MARSEILLE.replace(
            r#""position": {"lat": 43.250903869637334, "lng": 5.403244616491982},"#,
            "",
        ),
        MARSEILLE.replace(r#""bonus": false"#, r#""bonus": false, "bonus": true"#),
        format!("{MARSEILLE} x"),
        LYON_3_0.replace(r#""count":7"#, r#""count":-7"#),
        LYON_3_0.replace(r#""count":7"#, ""),
        LYON_3_0.replace(r#""is_returning":true"#, r#""is_returning":"maybe""#),
        LYON_3_0.replace(
            r#""docks_out_of_service":1"#,
            r#""docks_out_of_service":1.5"#,
        ),
        LYON_3_0.replace(r#""bikes_by_type":["#, r#""bikes_by_type":[3,"#),
        "not json".to_owned(),
        "[1,2,3]".to_owned(),
        String::new(),
    ];
    for json in &invalid {
        let owned = Station::from_json(json.as_bytes()).unwrap_err();
        let view = StationView::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(view, owned, "{json}");
    }
}

#[test]
fn change_lines_from_parts_match_station_changes() {
    let change = StationChange {
        key: "Toulouse:2".parse().unwrap(),
        contract: "Toulouse".into(),
        address: "2 RUE GATIEN ARNOULT".into(),
        name: "00002 - POOL".into(),
        field: TrackedField::AvailableBikeStands,
        previous: 7,
        current: 2,
        last_update: None,
    };
    let line = ChangeLine {
        previous: 7,
        current: 2,
        address: "2 RUE GATIEN ARNOULT",
        contract: "Toulouse",
    };
    assert_eq!(line.to_string(), change.to_string());
}

/// The hand-written fast path (`scan`) never disagrees with serde: on thousands of mutations of
/// real-looking records, whenever it accepts a record, serde reads the same values, to the bit.
#[test]
fn the_fast_path_agrees_with_serde_on_mutated_records() {
    let compact = String::from_utf8(marseille().to_json()).unwrap();
    let seeds = [
        MARSEILLE.to_owned(),
        compact.clone(),
        compact.replace("1493734764000", "null"),
        compact.replace("5.403244616491982", "-0.5e-3"),
        compact.replace("43.250903869637334", "4.3250903869637334E1"),
        r#"{"number":0,"contract_name":"a","position":{"lng":-1.5,"lat":0.0},"status":"closed","bike_stands":0,"available_bike_stands":4294967295,"available_bikes":0}"#.to_owned(),
        LYON_3_0.to_owned(),
        LYON_3_0.to_owned(),
        // Members out of the usual order, text between the station's three texts, accents.
        r#"{"address":"Pl. de l'Église","number":3,"bikes_by_type":[{"vehicle_type_id":"vélo","kind":"other","count":1}],"contract_name":"Créteil","position":{"lng":1.5,"lat":2.5},"name":"N°3","bike_stands":1,"available_bike_stands":0,"available_bikes":1,"status":"OPEN"}"#.to_owned(),
    ];
    // Every seed is a record the fast path reads, so mutations start from its accepted shape.
    for seed in &seeds {
        assert!(crate::scan::station(seed.as_bytes()).is_some(), "{seed}");
    }
    let alphabet: &[u8] = b"{}[]\":,.-+eE0123456789 \n\\tfalsnux\xc3\xa9\xff";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut fast = 0;
    for round in 0..20_000 {
        let mut input = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + rand(3) {
            let at = rand(input.len() + 1);
            match rand(4) {
                0 if at < input.len() => {
                    input.remove(at);
                }
                1 => input.insert(at, alphabet[rand(alphabet.len())]),
                2 if at < input.len() => input[at] = alphabet[rand(alphabet.len())],
                _ => {
                    let end = (at + rand(12)).min(input.len());
                    let piece = input[at..end].to_vec();
                    input.splice(at..at, piece);
                }
            }
        }
        let by_serde = serde_json::from_slice::<StationView<'_>>(&input).ok();
        if let Some(view) = crate::scan::station(&input) {
            fast += 1;
            let text = String::from_utf8_lossy(&input);
            let serde_view = by_serde
                .as_ref()
                .unwrap_or_else(|| panic!("fast path accepted {text}"));
            assert_eq!(&view, serde_view, "{text}");
            let bits = |v: &StationView<'_>| (v.position.lat.to_bits(), v.position.lng.to_bits());
            assert_eq!(bits(&view), bits(serde_view), "{text}");
        }
        assert_eq!(
            StationView::from_json(&input).ok(),
            by_serde,
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
    // The mutations must leave many records valid, or the fast path is not being tested.
    assert!(
        fast > 1_000,
        "only {fast} mutated records took the fast path"
    );
}

#[test]
fn written_keys_are_the_keys() {
    let mut text = String::from("left over");
    for json in [
        MARSEILLE.to_owned(),
        MARSEILLE.replace("9087,", r#""a1b2","#),
        MARSEILLE.replace(r#""Marseille""#, r#""Aix:en:Provence""#),
    ] {
        let s = Station::from_json(json.as_bytes()).unwrap();
        s.write_key(&mut text);
        assert_eq!(text, s.key().as_str());
    }
}

/// The fast path's word-at-a-time string scan finds the first stop byte (`"`, `\`, a control
/// character) wherever it sits in or across its eight-byte words, whatever bytes surround it,
/// as a byte-by-byte search does.
#[test]
fn the_string_scan_stops_where_a_byte_by_byte_search_does() {
    let fillers: &[u8] = &[b'a', b' ', 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff, b'#', b']'];
    let stops: &[u8] = &[b'"', b'\\', 0x00, 0x01, 0x0a, 0x1f];
    let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
    let mut checked = 0;
    for len in 0..26 {
        for &filler in fillers {
            let mut text = vec![filler; len];
            assert_eq!(crate::scan::plain_len(&text), None, "{text:?}");
            for at in 0..len {
                for &stop in stops {
                    text[at] = stop;
                    // A second stop later must not move the first.
                    if at + 3 < len {
                        text[at + 3] = b'"';
                    }
                    assert_eq!(crate::scan::plain_len(&text), naive(&text), "{text:?}");
                    checked += 1;
                    text.fill(filler);
                }
            }
        }
    }
    assert!(checked > 10_000);
}

/// The inline key comparison is byte equality, for every length and every differing byte.
#[test]
fn the_key_comparison_is_byte_equality() {
    for len in 0..40usize {
        let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(crate::scan::same(&a, &a));
        assert!(!crate::scan::same(&a, &a[..len.saturating_sub(1)]) || len == 0);
        for at in 0..len {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!crate::scan::same(&a, &b), "{len} {at}");
        }
    }
}
