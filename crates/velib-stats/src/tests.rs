use super::*;
use std::time::Duration;
use velib_model::{Position, Station, StationId, Status, VehicleCount};

/// 2026-07-02T08:00:00Z.
const EIGHT: i64 = 1_782_979_200_000;
const MIN: i64 = 60_000;

fn station(at: i64, bikes: u32, docks: u32) -> Station {
    Station {
        number: StationId::Number(1001),
        contract_name: "lyon".into(),
        name: "n".into(),
        address: "a".into(),
        position: Position {
            lat: 45.7,
            lng: 4.8,
        },
        banking: false,
        bonus: false,
        bike_stands: 20,
        available_bike_stands: docks,
        available_bikes: bikes,
        status: Status::Open,
        last_update: None,
        snapshot_at: Some(at),
        bikes_by_type: None,
        bikes_out_of_service: None,
        docks_out_of_service: None,
        is_returning: None,
    }
}

fn typed(at: i64, electrical: u32, mechanical: u32) -> Station {
    let count = |id: &str, kind, count| VehicleCount {
        vehicle_type_id: id.to_owned().into(),
        kind,
        count,
    };
    Station {
        bikes_by_type: Some(vec![
            count("electrical", VehicleKind::Electric, electrical),
            count("mechanical", VehicleKind::Classic, mechanical),
        ]),
        ..station(at, electrical + mechanical, 20 - electrical - mechanical)
    }
}

fn play(tracker: &mut Tracker, records: &[Station]) -> Vec<StationStats> {
    let mut out = Published::default();
    for r in records {
        tracker.observe("lyon:1001", &r.view(), &mut out);
    }
    out.stats
}

#[test]
fn an_hour_of_a_station() {
    let records = [
        station(EIGHT + 10 * MIN, 5, 15),
        station(EIGHT + 20 * MIN, 3, 17),
        station(EIGHT + 40 * MIN, 0, 20),
        station(EIGHT + 65 * MIN, 2, 18),
    ];
    let mut tracker = Tracker::new(StatsConfig::default());
    let closed = play(&mut tracker, &records);
    assert_eq!(closed.len(), 1, "{closed:?}");
    let hour = &closed[0];
    assert_eq!(hour.key.as_str(), "lyon:1001");
    assert_eq!(
        (hour.window_start, hour.window_end),
        (EIGHT, EIGHT + 60 * MIN)
    );
    assert_eq!((hour.records, hour.rentals, hour.returns), (3, 5, 0));
    assert_eq!(hour.by_type, None);
    // 5 for 10 minutes, 3 for 20, 0 for 20; known from the first record, 8:10, on.
    assert_eq!((hour.bikes.min, hour.bikes.max), (0, 5));
    assert_eq!(hour.bikes.mean, 110.0 / 50.0);
    assert_eq!(
        hour.free_docks.mean,
        (15.0 * 10.0 + 17.0 * 20.0 + 20.0 * 20.0) / 50.0
    );
    assert_eq!(hour.minutes_known, 50.0);
    assert_eq!((hour.minutes_empty, hour.minutes_full), (20.0, 0.0));
    assert_eq!(hour.minutes_closed, 0.0);
    // The next hour starts with the last known state: empty from 9:00 to 9:05.
    let next = station(EIGHT + 125 * MIN, 2, 18);
    let closed = play(&mut tracker, &[next]);
    assert_eq!(closed[0].window_start, EIGHT + 60 * MIN);
    assert_eq!(closed[0].minutes_empty, 5.0);
    assert_eq!((closed[0].records, closed[0].returns), (1, 2));
    assert_eq!(closed[0].bikes.mean, (0.0 * 5.0 + 2.0 * 55.0) / 60.0);
}

#[test]
fn a_window_waits_for_its_grace_period() {
    let config = StatsConfig::new(Duration::from_secs(3600), Duration::from_secs(600)).unwrap();
    let mut tracker = Tracker::new(config);
    let mut closed = play(
        &mut tracker,
        &[station(EIGHT, 5, 15), station(EIGHT + 65 * MIN, 4, 16)],
    );
    assert!(closed.is_empty(), "9:05 is within 9:00 + 10 min");
    closed = play(&mut tracker, &[station(EIGHT + 70 * MIN, 4, 16)]);
    assert_eq!(closed.len(), 1);
    // The rental shows in the 9:05 record, so in the window of 9:00.
    assert_eq!((closed[0].window_start, closed[0].rentals), (EIGHT, 0));
    // A jump of hours closes the waiting window and the one just ended, oldest first.
    let closed = play(
        &mut tracker,
        &[
            station(EIGHT + 125 * MIN, 4, 16),
            station(EIGHT + 300 * MIN, 9, 11),
        ],
    );
    let starts: Vec<i64> = closed.iter().map(|s| s.window_start).collect();
    assert_eq!(starts, vec![EIGHT + 60 * MIN, EIGHT + 120 * MIN]);
}

#[test]
fn windows_without_records_are_not_published_and_their_state_carries_on() {
    let mut tracker = Tracker::new(StatsConfig::default());
    let closed = play(
        &mut tracker,
        &[
            station(EIGHT + 50 * MIN, 0, 20),
            station(EIGHT + 190 * MIN, 3, 17),
            station(EIGHT + 220 * MIN, 3, 17),
        ],
    );
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].minutes_empty, 10.0);
    let closed = play(&mut tracker, &[station(EIGHT + 300 * MIN, 3, 17)]);
    // 11:00 to 11:10 empty (carried over two hours), then 3 bikes.
    assert_eq!(closed[0].window_start, EIGHT + 180 * MIN);
    assert_eq!(
        (closed[0].minutes_empty, closed[0].minutes_known),
        (10.0, 60.0)
    );
    assert_eq!((closed[0].bikes.min, closed[0].bikes.max), (0, 3));
}

#[test]
fn duplicates_are_ignored_and_late_records_counted_never_applied() {
    let mut tracker = Tracker::new(StatsConfig::default());
    let mut out = Published::default();
    let first = station(EIGHT + 10 * MIN, 5, 15);
    let second = station(EIGHT + 70 * MIN, 2, 18);
    assert_eq!(
        tracker.observe("lyon:1001", &first.view(), &mut out),
        Applied::First
    );
    assert_eq!(
        tracker.observe("lyon:1001", &first.view(), &mut out),
        Applied::Duplicate
    );
    assert_eq!(
        tracker.observe("lyon:1001", &second.view(), &mut out),
        Applied::Applied
    );
    assert_eq!(out.stats.len(), 1);
    assert_eq!(out.stats[0].records, 1);
    // From the closed window's time: late, counted in the open window, nothing else.
    let late = station(EIGHT + 30 * MIN, 0, 20);
    assert_eq!(
        tracker.observe("lyon:1001", &late.view(), &mut out),
        Applied::Late
    );
    let closed = play(&mut tracker, &[station(EIGHT + 130 * MIN, 2, 18)]);
    assert_eq!((closed[0].records, closed[0].late_records), (1, 1));
    assert_eq!((closed[0].rentals, closed[0].minutes_empty), (3, 0.0));
    let unplaced = Station {
        snapshot_at: None,
        ..station(0, 1, 1)
    };
    assert_eq!(
        tracker.observe("lyon:1001", &unplaced.view(), &mut Published::default()),
        Applied::Unplaced
    );
}

#[test]
fn activity_by_type_does_not_net_across_types() {
    let mut tracker = Tracker::new(StatsConfig::default());
    let closed = play(
        &mut tracker,
        &[
            typed(EIGHT, 3, 2),
            typed(EIGHT + 10 * MIN, 2, 3),
            typed(EIGHT + 20 * MIN, 0, 3),
            station(EIGHT + 30 * MIN, 4, 16),
            typed(EIGHT + 40 * MIN, 4, 0),
            typed(EIGHT + 61 * MIN, 4, 0),
        ],
    );
    let hour = &closed[0];
    // By type: e -1 +0, m +1; e -2; (untyped: total 3 → 4, one return); none typed both sides;
    // then 4,0 → untyped to typed: total 4 → 4.
    assert_eq!((hour.rentals, hour.returns), (3, 2));
    let by_type = hour.by_type.as_ref().unwrap();
    assert_eq!(by_type.len(), 2);
    assert_eq!(
        (
            by_type[0].vehicle_type_id.as_str(),
            by_type[0].rentals,
            by_type[0].returns
        ),
        ("electrical", 3, 0)
    );
    assert_eq!(
        (
            by_type[1].vehicle_type_id.as_str(),
            by_type[1].kind,
            by_type[1].returns
        ),
        ("mechanical", VehicleKind::Classic, 1)
    );
}

#[test]
fn the_public_activity_agrees_with_the_windows() {
    let (a, b) = (typed(EIGHT, 3, 2), typed(EIGHT + MIN, 2, 4));
    let moved = activity(&a.view(), &b.view());
    assert_eq!((moved.rentals, moved.returns), (1, 2));
    let by_type = moved.by_type.unwrap();
    assert_eq!((by_type[0].rentals, by_type[1].returns), (1, 2));
    let untyped = activity(&station(0, 5, 1).view(), &b.view());
    assert_eq!(
        (untyped.rentals, untyped.returns, untyped.by_type),
        (0, 1, None)
    );
}

#[test]
fn a_state_restored_at_any_point_gives_the_same_windows() {
    let records: Vec<Station> = (0..40)
        .map(|i| {
            let at = EIGHT + i * 7 * MIN + (i % 3) * 1000;
            let e = u32::try_from(i * 5 % 7).unwrap();
            if i % 11 == 5 {
                station(at, e, 20 - e)
            } else {
                typed(at, e, u32::try_from(i % 4).unwrap())
            }
        })
        .collect();
    let config = StatsConfig::new(Duration::from_secs(1800), Duration::from_secs(300)).unwrap();
    let whole = play(&mut Tracker::new(config), &records);
    assert!(whole.len() > 5);
    for cut in 1..records.len() {
        let mut before = Tracker::new(config);
        let mut closed = play(&mut before, &records[..cut]);
        let state = before.state("lyon:1001").unwrap();
        // Through JSON text, as the changelog carries it, into a tracker with other types first.
        let text = serde_json::to_string(&state).unwrap();
        let mut after = Tracker::new(config);
        play(
            &mut after,
            &[Station {
                contract_name: "x".into(),
                ..typed(0, 1, 1)
            }],
        );
        after.forget("lyon:1001");
        let mut other = Tracker::new(config);
        other.types.intern("ebike", VehicleKind::Electric);
        other
            .restore("lyon:1001", &serde_json::from_str(&text).unwrap())
            .unwrap();
        closed.extend(play(&mut other, &records[cut..]));
        assert_eq!(closed, whole, "cut at {cut}");
    }
    assert!(
        Tracker::default()
            .restore("a:1", &serde_json::json!({"last": 1}))
            .is_err()
    );
}

#[test]
fn settings_out_of_range_are_refused_with_their_flag() {
    let hour = Duration::from_secs(3600);
    let err = StatsConfig::new(hour, hour).unwrap_err().to_string();
    assert!(err.contains("--grace") && err.contains("--window"), "{err}");
    let err = StatsConfig::new(Duration::from_millis(10), Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("--window"), "{err}");
    assert!(StatsConfig::new(Duration::from_secs(86_401), Duration::ZERO).is_err());
    let config = StatsConfig::new(Duration::from_secs(900), Duration::from_secs(60)).unwrap();
    assert_eq!((config.size_ms(), config.grace_ms()), (900_000, 60_000));
    assert_eq!(config.window_of(EIGHT + 1), EIGHT);
    assert_eq!(config.window_of(-1), -900_000);
}

/// The budget: a station with an open window costs at most 256 bytes. Measured from its parts
/// ([`Tracker::heap_bytes`]): the map's slots (key and box pointers and hashbrown's control
/// byte, the table's buckets counted whole), the key's text, the boxed state, and the
/// per-type counts of its last record and open window (two types, as real feeds have). At
/// 10,000 stations the table is 61 % full; just after it doubles (at 7/8 full) a station's
/// share of the slots is up to 16 bytes more, which this figure does not show.
#[test]
fn memory_per_station_is_bounded() {
    let inline = std::mem::size_of::<StationState<u8>>();
    let mut tracker = Tracker::new(StatsConfig::default());
    let mut out = Published::default();
    let n = 10_000;
    for i in 0..n {
        let key = format!("lyon:{}", 10_000 + i);
        for at in [EIGHT, EIGHT + 10 * MIN] {
            let s = typed(at, u32::try_from(i % 5).unwrap(), 1);
            tracker.observe(&key, &s.view(), &mut out);
        }
    }
    assert!(out.is_empty());
    let per_station = tracker.heap_bytes() / n as usize;
    // Printed for the README and the benchmark; not a speed, so asserted.
    println!("inline {inline} B, per station {per_station} B");
    assert!(inline <= 192, "{inline}");
    assert!(per_station <= 256, "{per_station} bytes per station");
}
