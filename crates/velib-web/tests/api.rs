//! The HTTP API over a real broker: what the page is built from.

use crate::{
    Broker, Events, Served, TIMEOUT, busy_station, city, get_json, two_bikes_taken,
    unlocated_records,
};
use serde_json::Value;
use velib_model::{EmptinessKind, EmptyStationEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geojson_health_and_the_page() {
    let broker = Broker::start();
    let stations = city(40);
    broker.produce_stations(&stations).await;
    for (key, record) in unlocated_records("Valmont") {
        broker
            .produce(&broker.stations, &key, record.as_bytes())
            .await;
    }
    broker
        .produce(&broker.stations, "Valmont:1", b"{not a station")
        .await;
    let served = Served::start(&broker, None).await;
    served.wait_for_stations(42).await;

    let health = served.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["off_map"], 2);
    assert_eq!(health["unreadable"], 1);

    let response = reqwest::get(served.url("/api/stations")).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/geo+json",
        "GeoJSON's media type"
    );
    let geo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    let features = geo["features"].as_array().unwrap();
    assert_eq!(features.len(), 42);
    let unlocated: Vec<&str> = features
        .iter()
        .filter(|f| f["geometry"].is_null())
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(unlocated, ["Valmont:90001", "Valmont:90002"]);
    let first = &stations[0];
    let feature = features
        .iter()
        .find(|f| f["id"] == first.key().to_string())
        .unwrap();
    assert_eq!(
        feature["geometry"]["coordinates"],
        serde_json::json!([first.position.lng, first.position.lat])
    );
    assert_eq!(
        feature["properties"]["available_bikes"],
        first.available_bikes
    );
    assert_eq!(feature["properties"]["address"], first.address.as_str());

    // The page and its assets come from velib-web itself, under a policy that runs no script
    // from anywhere else.
    let page = reqwest::get(served.url("/")).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for src in ["/assets/leaflet.js", "/assets/app.js"] {
        assert!(html.contains(&format!("src=\"{src}\"")), "{src}");
    }
    assert!(!html.contains("://"), "the page links nothing outside");
    let leaflet = reqwest::get(served.url("/assets/leaflet.js"))
        .await
        .unwrap();
    assert_eq!(leaflet.status(), 200);
    assert!(leaflet.text().await.unwrap().contains("Leaflet"));
    let missing = reqwest::get(served.url("/assets/nope.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let config = get_json(&served.url("/api/config")).await;
    assert_eq!(config["tiles"], Value::Null, "no base map was asked for");

    let report = served.stop().await;
    assert_eq!(report.stations, 42);
    assert_eq!(report.unreadable, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_a_snapshot_then_changes_and_ends_on_shutdown() {
    let broker = Broker::start();
    let stations = city(20);
    broker.produce_stations(&stations).await;
    let served = Served::start(&broker, None).await;
    served.wait_for_stations(20).await;

    let mut events = Events::open(&served.url("/api/events")).await;
    let (event, snapshot) = events.next().await;
    assert_eq!(event, "snapshot");
    assert_eq!(snapshot["stations"].as_array().unwrap().len(), 20);
    assert_eq!(snapshot["off_map"], 0);
    assert!(snapshot["age_ms"].is_number());

    let before = busy_station(&stations, "Valmont");
    let after = two_bikes_taken(before);
    broker.produce_station(&after).await;
    let key = after.key().to_string();
    // Batches sent before the change may carry the station too (as first read): wait for the
    // one with the new count.
    let update = events
        .until(|event, data| {
            event == "update"
                && data["stations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["key"] == key.as_str() && s["bikes"] == after.available_bikes)
        })
        .await;
    let station = update["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key.as_str())
        .unwrap();
    assert_eq!(station["bikes"], after.available_bikes);
    assert_eq!(station["stands"], after.available_bike_stands);
    assert_eq!(
        station["history"].as_array().unwrap().len(),
        2,
        "the first record and the change"
    );
    let line = format!("+2 {} (Valmont)", after.address);
    assert_eq!(update["feed"][0]["text"], line.as_str());

    // The monitor's event reaches the feed too.
    let mut emptied = after.clone();
    emptied.available_bike_stands += emptied.available_bikes;
    emptied.available_bikes = 0;
    let event = EmptyStationEvent::new(EmptinessKind::BecameEmpty, &emptied, 0);
    broker.produce(&broker.events, &key, &event.to_json()).await;
    let expected = format!("no bikes: {} (Valmont)", after.address);
    events
        .until(|_, data| {
            data["feed"]
                .as_array()
                .is_some_and(|f| f.iter().any(|l| l["text"] == expected.as_str()))
        })
        .await;

    // A page opening now gets the change in its snapshot and the feed's backlog.
    let mut late = Events::open(&served.url("/api/events")).await;
    let (_, snapshot) = late.next().await;
    let lines: Vec<&str> = snapshot["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(lines, [line.as_str(), expected.as_str()]);

    // Open streams do not hold the shutdown up.
    let report = served.stop().await;
    assert_eq!(report.stations, 20);
    let ended = tokio::time::timeout(TIMEOUT, async {
        while let Some(_chunk) = events.response.chunk().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with the server");
}
