//! Locked and degraded stations in a scripted city: a week of 20 stations, busy by day and
//! quiet by night, four of which freeze at noon on the third day while their neighbours go on
//! moving, and one whose docks break for a while.

use velib_model::rng::SplitMix64;
use velib_model::{Health, Position, Station, StationHealthEvent, StationId, Status};
use velib_stats::{Published, StatsConfig, Tracker};

/// 2026-07-06T00:00:00Z, a Monday.
const MONDAY: i64 = 1_783_296_000_000;
const STEP: i64 = 5 * 60_000;
const DAY: i64 = 86_400_000;
const FROZEN: [u64; 4] = [3, 8, 12, 17];
const FREEZE_AT: i64 = MONDAY + 2 * DAY + DAY / 2;
const BROKEN: u64 = 5;

fn record(number: u64, at: i64, bikes: u32, docks_out: u32) -> Station {
    Station {
        number: StationId::Number(number),
        contract_name: "scripted".into(),
        name: format!("station {number}"),
        address: String::new(),
        position: Position {
            lat: 45.0,
            lng: 4.0,
        },
        banking: false,
        bonus: false,
        bike_stands: 20,
        available_bike_stands: 20 - bikes - docks_out,
        available_bikes: bikes,
        status: Status::Open,
        last_update: None,
        snapshot_at: Some(at),
        bikes_by_type: None,
        bikes_out_of_service: None,
        docks_out_of_service: Some(docks_out),
        is_returning: None,
    }
}

/// The chance of a movement in one 5-minute step: busy from 6:00 to 22:00 UTC, quiet at night.
fn busy(at: i64) -> f64 {
    let hour = at.rem_euclid(DAY) / 3_600_000;
    if (6..22).contains(&hour) { 0.8 } else { 0.025 }
}

fn play_the_week() -> Vec<StationHealthEvent> {
    let mut rng = SplitMix64::new(7);
    let mut tracker = Tracker::new(StatsConfig::default());
    let mut out = Published::default();
    let mut bikes = [8u32; 20];
    let mut at = MONDAY;
    while at < MONDAY + 7 * DAY {
        for n in 0..20u64 {
            let i = usize::try_from(n).unwrap();
            let frozen = FROZEN.contains(&n) && at >= FREEZE_AT;
            if !frozen && rng.chance(busy(at)) {
                // A rental or a return, within the station's 12 usable docks.
                bikes[i] = if bikes[i] == 0 || (bikes[i] < 12 && rng.chance(0.5)) {
                    bikes[i] + 1
                } else {
                    bikes[i] - 1
                };
            }
            // Station 5's docks: 8 of 20 out of service on Wednesday (below half), 12 on
            // Thursday, all back on Friday.
            let docks_out = match (n, (at - MONDAY) / DAY) {
                (BROKEN, 2) => 8,
                (BROKEN, 3) => 12,
                _ => 0,
            };
            let station = record(n, at, bikes[i].min(20 - docks_out), docks_out);
            tracker.observe(&station.key().to_string(), &station.view(), &mut out);
        }
        at += STEP;
    }
    out.health
}

#[test]
fn frozen_stations_are_all_found_and_no_moving_station_is_flagged() {
    let events = play_the_week();
    for e in &events {
        println!(
            "{} {:?} since {} at {}: {}",
            e.key, e.health, e.since, e.decided_at, e.reason
        );
    }
    let locked: Vec<&StationHealthEvent> = events
        .iter()
        .filter(|e| e.health == Health::Locked)
        .collect();
    let mut found: Vec<u64> = locked.iter().map(|e| e.key.id().parse().unwrap()).collect();
    found.sort_unstable();
    assert_eq!(found, FROZEN.to_vec(), "each frozen station once, no other");
    for e in &locked {
        // Still since its last movement, at or shortly before the freeze; found within the
        // afternoon, once two quiet hours at a busy time had passed.
        assert!(
            e.since <= FREEZE_AT && e.since > FREEZE_AT - 3_600_000,
            "{e:?}"
        );
        assert!(e.decided_at >= e.since + 2 * 3_600_000, "{e:?}");
        assert!(e.decided_at <= FREEZE_AT + 3 * 3_600_000, "{e:?}");
        assert_eq!(e.previous, Health::Ok);
        assert!(e.reason.contains("predicts"), "{}", e.reason);
    }
    // The broken docks: degraded on Thursday (12 of 20), fine again on Friday; Wednesday's 8
    // were below half.
    let broken: Vec<(Health, i64)> = events
        .iter()
        .filter(|e| e.key.id() == BROKEN.to_string())
        .map(|e| (e.health, e.since))
        .collect();
    assert_eq!(
        broken,
        vec![
            (Health::Degraded, MONDAY + 3 * DAY),
            (Health::Ok, MONDAY + 4 * DAY)
        ]
    );
    assert_eq!(events.len(), FROZEN.len() + 2, "no other change");
}
