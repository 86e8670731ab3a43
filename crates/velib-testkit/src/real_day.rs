//! The recorded day of `shared/data/cyclocity-2026-07-02` (all 19 JCDecaux GBFS cities, read
//! at run time from beside the checkout, or `$VELIB_REAL_DAY_DIR`; nothing of it is copied into
//! the project), and the independent counts the tests compare velib with: the stations the
//! producer sets aside, and the statistics windows each station must have, computed from the
//! raw JSON (`serde_json::Value`) by their definitions alone, never through velib's readers
//! or `velib-stats`: each snapshot's state holds until the next one, clipped to the window; a
//! vehicle type's count going down is rentals, up is returns.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use velib_model::StationStats;

/// The recorded day's folder name.
pub const DAY: &str = "cyclocity-2026-07-02";

/// The recorded day: `shared/data/…` in the checkout's folder or one of its parents.
pub fn day_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VELIB_REAL_DAY_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = root
        .ancestors()
        .map(|a| a.join("shared/data").join(DAY))
        .chain([PathBuf::from("/work/shared/data").join(DAY)])
        .find(|d| d.join("README.md").is_file());
    found.unwrap_or_else(|| {
        panic!(
            "the real day {DAY} is not in shared/data beside the checkout; set \
             VELIB_REAL_DAY_DIR to its folder"
        )
    })
}

/// One city of the day: its `station_information` and its `station_status` snapshots in time
/// order, as parsed JSON.
#[derive(Debug)]
pub struct City {
    /// The contract, as in the file names and keys (`lyon`).
    pub slug: String,
    /// `station_information`.
    pub information: Value,
    /// `station_status`, in time order.
    pub statuses: Vec<Value>,
}

/// The 19 cities of the day, by slug.
pub fn load_day() -> Vec<City> {
    let dir = day_dir();
    let mut files: BTreeMap<String, (Option<PathBuf>, Vec<PathBuf>)> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((slug, rest)) = name.split_once('_') else {
            continue;
        };
        let city = files.entry(slug.to_owned()).or_default();
        if rest.starts_with("information_") {
            city.0 = Some(path);
        } else if rest.starts_with("status_") {
            city.1.push(path);
        }
    }
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    files
        .into_iter()
        .filter_map(|(slug, (info, mut statuses))| {
            // File names end in HH-MM-SS of the same day: name order is time order.
            statuses.sort();
            Some(City {
                slug,
                information: read(&info?),
                statuses: statuses.iter().map(|p| read(p)).collect(),
            })
        })
        .collect()
}

/// The `data.stations` array of a feed.
pub fn stations(feed: &Value) -> &Vec<Value> {
    feed["data"]["stations"].as_array().unwrap()
}

/// A name or address: a string, or the first non-empty text of a localised array.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .find(|t| !t.trim().is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * h.sqrt().asin()
}

/// The station ids the README says velib sets aside, found the slow, obvious way: at 0,0, or
/// more than 10 km from every other station in a city of at least 10 where that is rare.
pub fn set_aside(info: &Value) -> Vec<String> {
    let all: Vec<(String, (f64, f64))> = stations(info)
        .iter()
        .map(|s| {
            let id = s["station_id"].as_str().unwrap().to_owned();
            (id, (s["lat"].as_f64().unwrap(), s["lon"].as_f64().unwrap()))
        })
        .collect();
    let (zero, placed): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, p)| *p == (0.0, 0.0));
    let isolated: Vec<String> = placed
        .iter()
        .filter(|(id, p)| {
            placed
                .iter()
                .all(|(other, q)| other == id || distance_m(*p, *q) > 10_000.0)
        })
        .map(|(id, _)| id.clone())
        .collect();
    let mut out: Vec<String> = zero.into_iter().map(|(id, _)| id).collect();
    if placed.len() >= 10 && isolated.len() * 20 <= placed.len() {
        out.extend(isolated);
    }
    out
}

/// One snapshot of one station, read from the raw JSON.
#[derive(Debug, Clone)]
pub struct State {
    pub at: i64,
    pub bikes: i64,
    pub docks: i64,
    pub open: bool,
    pub docks_disabled: i64,
    pub types: Vec<(String, i64)>,
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` to epoch ms, by hand (fractions beyond ms dropped).
pub fn epoch_ms(text: &str) -> i64 {
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
pub fn histories(day: &[City]) -> BTreeMap<String, Vec<State>> {
    let mut out: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for City {
        slug,
        information: info,
        statuses,
    } in day
    {
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
pub struct Expected {
    pub records: u32,
    pub rentals: u32,
    pub returns: u32,
    /// Type id → (rentals, returns).
    pub by_type: BTreeMap<String, (u32, u32)>,
    pub bikes: (i64, i64, f64),
    pub docks: (i64, i64, f64),
    pub minutes: [f64; 5],
}

pub fn expected_windows(
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

pub fn window(history: &[State], start: i64, end: i64) -> Expected {
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

pub fn count_activity(before: &State, after: &State, e: &mut Expected) {
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

/// A published window in the form of [`Expected`], to compare.
pub fn as_expected(s: &StationStats) -> Expected {
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

/// Compares published windows with the expected ones: each published once, none missing, none
/// other, every field equal. Returns how many were compared.
///
/// # Panics
///
/// On the first difference, naming the window.
pub fn assert_windows(
    expected: &BTreeMap<(String, i64), Expected>,
    published: &[StationStats],
) -> usize {
    let mut got = BTreeMap::new();
    for s in published {
        let key = (s.key.to_string(), s.window_start);
        assert!(
            got.insert(key.clone(), as_expected(s)).is_none(),
            "published twice: {key:?}"
        );
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
        "{} published, {} expected; missing {missing:?}, extra {extra:?}",
        got.len(),
        expected.len()
    );
    for (k, e) in expected {
        assert_eq!(&got[k], e, "window {k:?}");
    }
    got.len()
}
