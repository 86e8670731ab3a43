//! One real day of all 19 JCDecaux GBFS cities (`shared/data/cyclocity-2026-07-02`, read at run
//! time from beside the checkout, or `$VELIB_REAL_DAY_DIR`): the records go through the GBFS
//! readers the producer runs and into a [`Tracker`], and every window it closes must equal the
//! same window computed independently from the raw JSON by the definitions
//! (`velib_testkit::real_day`, which the monitor's end-to-end test compares with too).

use std::collections::HashMap;
use std::time::Duration;
use velib_model::Health;
use velib_source::readers::{
    VehicleTypes, feed_time, id_text, parse_info, parse_status, to_station,
};
use velib_stats::{Applied, Published, StatsConfig, Tracker};
use velib_testkit::real_day::{
    City, State, assert_windows, expected_windows, histories, load_day, stations,
};

/// Feeds the day to a tracker through velib's readers, the producer's path.
fn through_the_tracker(day: &[City], config: StatsConfig) -> Published {
    let mut tracker = Tracker::new(config);
    let mut out = Published::default();
    let types = VehicleTypes::default();
    let mut applied = 0;
    for City {
        slug,
        information,
        statuses,
    } in day
    {
        let infos: HashMap<String, _> = stations(information)
            .iter()
            .map(|s| parse_info(s, None).unwrap())
            .collect();
        for status in statuses {
            let at = feed_time(status).unwrap();
            for raw in stations(status) {
                let record = parse_status(raw).unwrap();
                let id = id_text(&raw["station_id"]).unwrap();
                let Some(info) = infos.get(&id) else { continue };
                let station = to_station(slug, info, &record, &types, at);
                let key = station.key();
                if tracker.observe(key.as_str(), &station.view(), &mut out) == Applied::Applied {
                    applied += 1;
                }
            }
        }
    }
    assert!(applied > 20_000, "{applied} records applied");
    out
}

fn check_the_day(window: Duration, grace: Duration) -> usize {
    let day = load_day();
    assert_eq!(day.len(), 19, "the 19 JCDecaux GBFS cities");
    let config = StatsConfig::new(window, grace).unwrap();
    let closed = through_the_tracker(&day, config).stats;
    let size = i64::try_from(window.as_millis()).unwrap();
    let expected = expected_windows(
        &histories(&day),
        size,
        i64::try_from(grace.as_millis()).unwrap(),
    );
    for s in &closed {
        assert_eq!(s.window_end, s.window_start + size);
        assert_eq!(s.late_records, 0, "{s:?}");
    }
    assert_windows(&expected, &closed)
}

#[test]
fn every_hour_of_the_real_day_equals_the_independent_count() {
    let n = check_the_day(Duration::from_secs(3600), Duration::ZERO);
    // 19 cities, about 2,700 stations, 17:28 to 23:45: six closed hours each at most.
    assert!(n > 10_000, "{n} windows");
    println!("{n} hourly windows closed and checked");
}

#[test]
fn half_hours_with_a_grace_period_too() {
    let n = check_the_day(Duration::from_secs(1800), Duration::from_secs(600));
    assert!(n > 20_000, "{n} windows");
    println!("{n} half-hour windows closed and checked");
}

/// Health on the real day: every change is listed (the README's list comes from here), and
/// each claim is checked against the raw files: a locked station was open and its counts did
/// not move from `since` to the decision, at least two hours; a degraded one had at least half
/// its capacity out of service.
#[test]
fn locked_and_degraded_stations_of_the_real_day_are_what_the_files_say() {
    let day = load_day();
    let events = through_the_tracker(&day, StatsConfig::default()).health;
    let histories = histories(&day);
    let capacity: HashMap<String, i64> = day
        .iter()
        .flat_map(|city| {
            let slug = &city.slug;
            stations(&city.information).iter().map(move |s| {
                let id = s["station_id"].as_str().unwrap();
                (format!("{slug}:{id}"), s["capacity"].as_i64().unwrap())
            })
        })
        .collect();
    let mut locked = 0;
    for e in &events {
        println!(
            "{} {:?} since {} decided {}: {}",
            e.key,
            e.health,
            velib_model::stats::rfc3339_utc(e.since),
            velib_model::stats::rfc3339_utc(e.decided_at),
            e.reason
        );
        let history = &histories[e.key.as_str()];
        let at = |t: i64| history.iter().find(|s| s.at == t).unwrap();
        match e.health {
            Health::Locked => {
                locked += 1;
                assert!(e.decided_at - e.since >= 2 * 3_600_000, "{e:?}");
                let still: Vec<&State> = history
                    .iter()
                    .filter(|s| (e.since..=e.decided_at).contains(&s.at))
                    .collect();
                let first = still[0];
                assert!(at(e.decided_at).open, "{e:?}");
                for s in &still {
                    let same =
                        (s.bikes, s.docks, &s.types) == (first.bikes, first.docks, &first.types);
                    assert!(same, "{e:?} moved at {}", s.at);
                }
            }
            Health::Degraded => {
                let s = at(e.decided_at);
                assert!(s.docks_disabled * 2 >= capacity[e.key.as_str()], "{e:?}");
            }
            Health::Ok => {}
        }
    }
    println!(
        "{locked} stations locked, {} changes of health",
        events.len()
    );
    assert!(locked > 0, "the day has stations that never move");
}
