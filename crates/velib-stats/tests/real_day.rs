//! One real day of all 19 JCDecaux GBFS cities (`shared/data/cyclocity-2026-07-02`, read at run
//! time from beside the checkout, or `$VELIB_REAL_DAY_DIR`): the records go through the GBFS
//! readers the producer runs and into a [`Tracker`], and every window it closes must equal the
//! same window computed here, independently, from the raw JSON (`serde_json::Value`) by the
//! definitions: each snapshot's state holds until the next one, clipped to the window; a type's
//! count going down is rentals, up is returns; the total when a record has no types.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use velib_model::{Health, StationStats};
use velib_source::readers::{
    VehicleTypes, feed_time, id_text, parse_info, parse_status, to_station,
};
use velib_stats::{Applied, Published, StatsConfig, Tracker};

const DAY: &str = "cyclocity-2026-07-02";

fn day_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VELIB_REAL_DAY_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.ancestors()
        .map(|a| a.join("shared/data").join(DAY))
        .find(|d| d.join("README.md").is_file())
        .unwrap_or_else(|| {
            panic!("the real day {DAY} is not in shared/data beside the checkout; set VELIB_REAL_DAY_DIR")
        })
}

/// Each city's slug, `station_information`, and `station_status` snapshots in time order.
fn load_day() -> Vec<(String, Value, Vec<Value>)> {
    let dir = day_dir();
    // Per city: its information, and its status files by name.
    type Files = (Option<Value>, Vec<(String, Value)>);
    let mut cities: BTreeMap<String, Files> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((slug, rest)) = name.split_once('_') else {
            continue;
        };
        let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let city = cities.entry(slug.to_owned()).or_default();
        if rest.starts_with("information_") {
            city.0 = Some(json);
        } else {
            city.1.push((name, json));
        }
    }
    cities
        .into_iter()
        .map(|(slug, (info, mut statuses))| {
            // HH-MM-SS of one day at the end of the name: name order is time order.
            statuses.sort_by(|a, b| a.0.cmp(&b.0));
            (
                slug,
                info.unwrap(),
                statuses.into_iter().map(|s| s.1).collect(),
            )
        })
        .collect()
}

fn stations(feed: &Value) -> &Vec<Value> {
    feed["data"]["stations"].as_array().unwrap()
}

/// Feeds the day to a tracker through velib's readers, the producer's path.
fn through_the_tracker(day: &[(String, Value, Vec<Value>)], config: StatsConfig) -> Published {
    let mut tracker = Tracker::new(config);
    let mut out = Published::default();
    let types = VehicleTypes::default();
    let mut applied = 0;
    for (slug, info, statuses) in day {
        let infos: HashMap<String, _> = stations(info)
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

/// One snapshot of one station, read from the raw JSON.
#[derive(Debug, Clone)]
struct State {
    at: i64,
    bikes: i64,
    docks: i64,
    open: bool,
    docks_disabled: i64,
    types: Vec<(String, i64)>,
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` to epoch ms, by hand (fractions beyond ms dropped).
fn epoch_ms(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + ms
}

/// Every station's snapshots, `contract:id` → states in time order, one per distinct snapshot.
fn histories(day: &[(String, Value, Vec<Value>)]) -> BTreeMap<String, Vec<State>> {
    let mut out: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for (slug, info, statuses) in day {
        let known: Vec<&str> = stations(info)
            .iter()
            .map(|s| s["station_id"].as_str().unwrap())
            .collect();
        for status in statuses {
            let at = epoch_ms(status["last_updated"].as_str().unwrap());
            for s in stations(status) {
                let id = s["station_id"].as_str().unwrap();
                if !known.contains(&id) {
                    continue;
                }
                let history = out.entry(format!("{slug}:{id}")).or_default();
                if history.last().is_some_and(|last| last.at >= at) {
                    continue; // the same snapshot served again (Cergy's frozen feed)
                }
                history.push(State {
                    at,
                    bikes: s["num_vehicles_available"].as_i64().unwrap(),
                    docks: s["num_docks_available"].as_i64().unwrap(),
                    open: s["is_installed"] == true && s["is_renting"] == true,
                    docks_disabled: s["num_docks_disabled"].as_i64().unwrap_or(0),
                    types: s["vehicle_types_available"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| {
                            let id = t["vehicle_type_id"].as_str().unwrap().to_owned();
                            (id, t["count"].as_i64().unwrap().max(0))
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// What one window must hold, by the definitions.
#[derive(Debug, PartialEq)]
struct Expected {
    records: u32,
    rentals: u32,
    returns: u32,
    /// Type id → (rentals, returns).
    by_type: BTreeMap<String, (u32, u32)>,
    bikes: (i64, i64, f64),
    docks: (i64, i64, f64),
    minutes: [f64; 5],
}

fn expected_windows(
    histories: &BTreeMap<String, Vec<State>>,
    size: i64,
    grace: i64,
) -> BTreeMap<(String, i64), Expected> {
    let mut out = BTreeMap::new();
    for (key, history) in histories {
        let newest = history.last().unwrap().at;
        let mut starts: Vec<i64> = history
            .iter()
            .map(|s| s.at - s.at.rem_euclid(size))
            .collect();
        starts.dedup();
        for start in starts {
            let end = start + size;
            if newest < end + grace {
                continue; // still open at the end of the day
            }
            out.insert((key.clone(), start), window(history, start, end));
        }
    }
    out
}

fn window(history: &[State], start: i64, end: i64) -> Expected {
    let mut e = Expected {
        records: 0,
        rentals: 0,
        returns: 0,
        by_type: BTreeMap::new(),
        bikes: (i64::MAX, i64::MIN, 0.0),
        docks: (i64::MAX, i64::MIN, 0.0),
        minutes: [0.0; 5],
    };
    let (mut known, mut bikes_sum, mut docks_sum) = (0i64, 0i64, 0i64);
    let mut ms = [0i64; 4]; // empty, full, docks out, closed
    for (i, s) in history.iter().enumerate() {
        if (start..end).contains(&s.at) {
            e.records += 1;
            if i > 0 {
                count_activity(&history[i - 1], s, &mut e);
            }
        }
        // The state holds until the next snapshot; the last one's end does not matter (its
        // window is not closed).
        let Some(next) = history.get(i + 1) else {
            break;
        };
        let held = next.at.min(end) - s.at.max(start);
        if held <= 0 {
            continue;
        }
        known += held;
        bikes_sum += s.bikes * held;
        docks_sum += s.docks * held;
        e.bikes = (e.bikes.0.min(s.bikes), e.bikes.1.max(s.bikes), 0.0);
        e.docks = (e.docks.0.min(s.docks), e.docks.1.max(s.docks), 0.0);
        let flags = [
            s.open && s.bikes == 0,
            s.open && s.docks == 0,
            s.docks_disabled > 0,
            !s.open,
        ];
        for (m, on) in ms.iter_mut().zip(flags) {
            if on {
                *m += held;
            }
        }
    }
    e.bikes.2 = bikes_sum as f64 / known as f64;
    e.docks.2 = docks_sum as f64 / known as f64;
    e.minutes[0] = known as f64 / 60_000.0;
    for (m, v) in e.minutes[1..].iter_mut().zip(ms) {
        *m = v as f64 / 60_000.0;
    }
    e
}

fn count_activity(before: &State, after: &State, e: &mut Expected) {
    // Every record of this day counts bikes by type.
    let mut ids: Vec<&String> = after
        .types
        .iter()
        .chain(&before.types)
        .map(|t| &t.0)
        .collect();
    ids.sort();
    ids.dedup();
    let of =
        |s: &State, id: &str| -> i64 { s.types.iter().filter(|t| t.0 == id).map(|t| t.1).sum() };
    for id in ids {
        let d = of(after, id) - of(before, id);
        let (rentals, returns) = (
            u32::try_from((-d).max(0)).unwrap(),
            u32::try_from(d.max(0)).unwrap(),
        );
        let entry = e.by_type.entry(id.clone()).or_default();
        entry.0 += rentals;
        entry.1 += returns;
        e.rentals += rentals;
        e.returns += returns;
    }
}

fn as_expected(s: &StationStats) -> Expected {
    Expected {
        records: s.records,
        rentals: s.rentals,
        returns: s.returns,
        by_type: s
            .by_type
            .iter()
            .flatten()
            .map(|t| (t.vehicle_type_id.clone(), (t.rentals, t.returns)))
            .collect(),
        bikes: (s.bikes.min.into(), s.bikes.max.into(), s.bikes.mean),
        docks: (
            s.free_docks.min.into(),
            s.free_docks.max.into(),
            s.free_docks.mean,
        ),
        minutes: [
            s.minutes_known,
            s.minutes_empty,
            s.minutes_full,
            s.minutes_docks_out_of_service,
            s.minutes_closed,
        ],
    }
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
    let mut got = BTreeMap::new();
    for s in &closed {
        assert_eq!(s.window_end, s.window_start + size);
        assert_eq!(s.late_records, 0, "{s:?}");
        let fresh = got.insert((s.key.to_string(), s.window_start), as_expected(s));
        assert!(fresh.is_none(), "window published twice: {s:?}");
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, e) in &expected {
        assert_eq!(&got[k], e, "window {k:?}");
    }
    closed.len()
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
        .flat_map(|(slug, info, _)| {
            stations(info).iter().map(move |s| {
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
