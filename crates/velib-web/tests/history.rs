//! The history endpoint over a real broker: statistics and health read from their topics at
//! start, and again after a restart.

use crate::{Broker, Events, Served, TIMEOUT, city, get_json, now_ms};
use serde_json::Value;
use velib_model::stats::{Health, Level, StationHealthEvent, StationStats};
use velib_model::{Station, StationKey};

const HOUR: i64 = 3_600_000;

/// A window of `key` starting `hours_ago` whole hours before the current hour.
fn window(key: &StationKey, hours_ago: i64, rentals: u32, returns: u32) -> StationStats {
    let start = now_ms() / HOUR * HOUR - hours_ago * HOUR;
    let level = Level {
        min: 2,
        max: 9,
        mean: 5.5,
    };
    StationStats {
        version: StationStats::VERSION,
        key: key.clone(),
        window_start: start,
        window_end: start + HOUR,
        records: 60,
        late_records: 0,
        rentals,
        returns,
        by_type: None,
        bikes: level,
        free_docks: level,
        minutes_known: 60.0,
        minutes_empty: 0.0,
        minutes_full: 0.0,
        minutes_docks_out_of_service: 0.0,
        minutes_closed: 0.0,
    }
}

/// The monitor's topics beside the broker's: statistics and health, with a day of windows
/// for `station` (two hours of them quiet) and a "locked" change.
pub(crate) async fn with_statistics(
    broker: &Broker,
    station: &Station,
) -> (String, String, Vec<StationStats>, i64) {
    let stats = velib_testkit::unique_name("web-stats");
    let health = velib_testkit::unique_name("web-health");
    broker.kafka.create_topic(&stats, 2).unwrap();
    broker.kafka.create_topic(&health, 1).unwrap();
    let key = station.key();
    // 30 windows: the last 24 hours and six older ones; the two latest without activity.
    let windows: Vec<StationStats> = (1..=30)
        .rev()
        .map(|h| {
            if h <= 2 {
                window(&key, h, 0, 0)
            } else {
                window(&key, h, 3, 1)
            }
        })
        .collect();
    for w in &windows {
        let k = w.kafka_key();
        broker
            .produce(&stats, std::str::from_utf8(&k).unwrap(), &w.to_json())
            .await;
    }
    let locked = StationHealthEvent {
        version: StationHealthEvent::VERSION,
        key: key.clone(),
        health: Health::Locked,
        previous: Health::Ok,
        since: now_ms() - 5 * HOUR,
        decided_at: now_ms() - HOUR,
        reason: "<b>still</b> for 5 h".to_owned(),
    };
    broker
        .produce(&health, key.as_str(), &locked.to_json())
        .await;
    (stats, health, windows, locked.since)
}

pub(crate) async fn start(broker: &Broker, stats: &str, health: &str) -> Served {
    let (stats, health) = (stats.to_owned(), health.to_owned());
    Served::start_with(broker, "127.0.0.1:0".parse().unwrap(), move |config| {
        config.stats_topic = Some(stats);
        config.health_topic = Some(health);
        config.tiles = None;
    })
    .await
}

/// Waits until the station's history holds `rows` windows over the last `hours`.
pub(crate) async fn wait_for_history(served: &Served, key: &str, hours: i64, rows: usize) -> Value {
    let from = velib_model::stats::rfc3339_utc(now_ms() / HOUR * HOUR - hours * HOUR);
    let url = served.url(&format!("/api/stations/{key}/history?from={from}"));
    velib_testkit::wait_for("the history to be read", TIMEOUT, || async {
        let response = reqwest::get(&url).await.ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        (body["windows"].as_array()?.len() == rows && body["health"].is_object()).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_served_from_the_topic_and_again_after_a_restart() {
    let broker = Broker::start();
    let stations = city(4);
    broker.produce_stations(&stations).await;
    let station = &stations[0];
    let key = station.key().to_string();
    let (stats, health, windows, locked_since) = with_statistics(&broker, station).await;

    let served = start(&broker, &stats, &health).await;
    served.wait_for_stations(4).await;
    // The default range is the last 24 hours: windows starting 24 to 1 hours before now's
    // hour, i.e. the 24 latest of the 30 (the one starting 24 h before the current hour may
    // start before "now - 24 h", so the count is asked for from a whole hour).
    let body = wait_for_history(&served, &key, 24, 24).await;
    let expected: Vec<Value> = windows[6..]
        .iter()
        .map(|w| serde_json::to_value(w).unwrap())
        .collect();
    assert_eq!(body["windows"].as_array().unwrap(), &expected);
    assert_eq!(body["key"], key.as_str());
    assert_eq!(body["health"]["health"], "locked");
    assert_eq!(
        body["last_activity"], windows[27].window_end,
        "the end of the latest window with rentals or returns"
    );
    let all = get_json(&served.url(&format!(
        "/api/stations/{key}/history?from=2000-01-01T00:00:00Z"
    )))
    .await;
    assert_eq!(all["windows"].as_array().unwrap().len(), 30);

    // The live map shows the station locked, since when the monitor says.
    let mut events = Events::open(&served.url("/api/events")).await;
    let snapshot = events.until(|event, _| event == "snapshot").await;
    let shown = snapshot["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key.as_str())
        .unwrap()
        .clone();
    assert_eq!(shown["health"], "locked");
    assert_eq!(shown["health_since"], locked_since);
    drop(events);

    // CSV, by the parameter and by the Accept header.
    let csv_url = served.url(&format!(
        "/api/stations/{key}/history?from=2000-01-01T00:00:00Z&format=csv"
    ));
    let response = reqwest::get(&csv_url).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 31, "a header and one line per window");
    assert!(
        lines[0].starts_with("key,window_start,window_end,"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with(&format!("{key},")), "{}", lines[1]);
    let accepted = reqwest::Client::new()
        .get(served.url(&format!(
            "/api/stations/{key}/history?from=2000-01-01T00:00:00Z"
        )))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(accepted, csv);

    // Errors name the parameter; an unknown station is 404.
    for (query, named) in [
        ("from=yesterday", "from="),
        ("to=2026-07-02", "to="),
        ("format=xml", "format="),
        ("from=2026-07-03T00:00:00Z&to=2026-07-02T00:00:00Z", "after"),
    ] {
        let response = reqwest::get(served.url(&format!("/api/stations/{key}/history?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let text = response.text().await.unwrap();
        assert!(text.contains(named), "{query}: {text}");
    }
    let unknown = reqwest::get(served.url("/api/stations/nowhere:1/history"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let malformed = reqwest::get(served.url("/api/stations/nokey/history"))
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    served.stop().await;

    // A restart reads the topics again: the same history.
    let served = start(&broker, &stats, &health).await;
    let again = wait_for_history(&served, &key, 24, 24).await;
    assert_eq!(again["windows"], body["windows"]);
    assert_eq!(again["health"], body["health"]);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_statistics_topics_the_map_goes_on() {
    let broker = Broker::start();
    let stations = city(5);
    broker.produce_stations(&stations).await;
    let served = start(&broker, "no-such-stats", "no-such-health").await;
    served.wait_for_stations(5).await;
    let key = stations[0].key().to_string();
    let body = get_json(&served.url(&format!("/api/stations/{key}/history"))).await;
    assert_eq!(body["windows"], serde_json::json!([]));
    assert_eq!(body["health"], Value::Null);
    let report = served.stop().await;
    assert_eq!(report.stations, 5);
}
