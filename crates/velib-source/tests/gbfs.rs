//! GBFS against wiremock: 2.3 and 3.0 payloads, contract naming, ttl caching, partial failure
//! of several systems, per-record skips and whole-feed errors.

use crate::support::options;
use serde_json::{Value, json};
use std::time::Duration;
use velib_model::{StationId, Status};
use velib_source::{GbfsSource, GbfsTarget, SourceError, StationSource};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A 2.3 discovery file at `{prefix}/gbfs.json` listing feeds under `{uri}{prefix}`.
fn discovery_2_3(uri: &str, prefix: &str, with_system_info: bool) -> Value {
    let mut feeds = vec![
        json!({"name": "station_information", "url": format!("{uri}{prefix}/fr/station_information.json")}),
        json!({"name": "station_status", "url": format!("{uri}{prefix}/fr/station_status.json")}),
    ];
    if with_system_info {
        feeds.push(json!({"name": "system_information", "url": format!("{uri}{prefix}/fr/system_information.json")}));
    }
    json!({"last_updated": 1_750_000_000, "ttl": 3600, "version": "2.3",
           "data": {"fr": {"feeds": feeds}}})
}

fn info_2_3(ttl: u64) -> Value {
    json!({"last_updated": 1_750_000_000, "ttl": ttl, "version": "2.3", "data": {"stations": [
        {"station_id": "1001", "name": "Bellecour", "lat": 45.757, "lon": 4.832,
         "address": "Place Bellecour", "capacity": 20, "rental_methods": ["KEY", "CREDITCARD"]},
        {"station_id": "2002", "name": "Part-Dieu", "lat": 45.760, "lon": 4.859, "capacity": 30},
    ]}})
}

fn status_2_3() -> Value {
    json!({"last_updated": 1_750_000_000, "ttl": 60, "version": "2.3", "data": {"stations": [
        {"station_id": "1001", "num_bikes_available": 3, "num_docks_available": 17,
         "is_installed": true, "is_renting": true, "is_returning": true, "last_reported": 1_750_000_000},
        {"station_id": "2002", "num_bikes_available": 0, "num_docks_available": 30,
         "is_installed": true, "is_renting": false, "is_returning": true, "last_reported": 1_749_999_000},
    ]}})
}

async fn mount(server: &MockServer, at: &str, body: Value, times: Option<u64>) {
    let mut mock =
        Mock::given(path(at)).respond_with(ResponseTemplate::new(200).set_body_json(body));
    if let Some(n) = times {
        mock = mock.expect(n);
    }
    mock.mount(server).await;
}

/// Mounts a complete 2.3 JCDecaux-style system under `/contracts/{slug}/gbfs`.
async fn mount_2_3(server: &MockServer, slug: &str, info_ttl: u64, info_times: Option<u64>) {
    let prefix = format!("/contracts/{slug}/gbfs");
    mount(
        server,
        &format!("{prefix}/gbfs.json"),
        discovery_2_3(&server.uri(), &prefix, true),
        None,
    )
    .await;
    mount(
        server,
        &format!("{prefix}/fr/station_information.json"),
        info_2_3(info_ttl),
        info_times,
    )
    .await;
    mount(
        server,
        &format!("{prefix}/fr/station_status.json"),
        status_2_3(),
        None,
    )
    .await;
    // Known from the slug: system_information must not be needed.
    mount(
        server,
        &format!("{prefix}/fr/system_information.json"),
        json!({}),
        Some(0),
    )
    .await;
}

fn source(server: &MockServer, targets: &[&str]) -> GbfsSource {
    let targets: Vec<GbfsTarget> = targets.iter().map(|t| t.parse().unwrap()).collect();
    GbfsSource::new(&options(&server.uri()), &targets).unwrap()
}

#[tokio::test]
async fn jcdecaux_contract_slug_reads_a_2_3_system() {
    let server = MockServer::start().await;
    mount_2_3(&server, "lyon", 3600, None).await;
    let mut source = source(&server, &["Lyon"]);
    assert!(source.describe().contains("lyon"), "{}", source.describe());
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations.len(), 2);
    let s = &snapshot.stations[0];
    assert_eq!(s.key().as_str(), "lyon:1001");
    assert_eq!(s.number, StationId::Number(1001));
    assert_eq!(
        (s.bike_stands, s.available_bikes, s.available_bike_stands),
        (20, 3, 17)
    );
    assert_eq!(s.status, Status::Open);
    assert!(s.banking);
    assert_eq!(s.last_update, Some(1_750_000_000_000));
    let s = &snapshot.stations[1];
    assert_eq!(s.status, Status::Closed, "is_renting false");
    assert_eq!(s.address, "Part-Dieu", "address falls back to the name");
    assert!(!s.banking);
    assert_eq!(source.skipped_records(), 0);
}

#[tokio::test]
async fn a_3_0_system_is_named_by_its_system_id() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let discovery = json!({"last_updated": "2025-06-15T15:06:40Z", "ttl": 3600, "version": "3.0",
    "data": {"feeds": [
        {"name": "system_information", "url": format!("{uri}/v3/system_information.json")},
        {"name": "station_information", "url": format!("{uri}/v3/station_information.json")},
        {"name": "station_status", "url": format!("{uri}/v3/station_status.json")},
    ]}});
    let system = json!({"ttl": 3600, "version": "3.0", "data": {"system_id": "citybike_metro",
        "languages": ["en", "fr"], "name": [{"text": "City Bike", "language": "en"}]}});
    let info = json!({"ttl": 3600, "version": "3.0", "data": {"stations": [
        {"station_id": "st-a", "lat": 48.85, "lon": 2.35, "capacity": 12,
         "name": [{"text": "Town Hall", "language": "en"}, {"text": "Hôtel de Ville", "language": "fr"}],
         "rental_methods": ["creditcard"]},
    ]}});
    let status = json!({"ttl": 0, "version": "3.0", "data": {"stations": [
        {"station_id": "st-a", "num_vehicles_available": 4, "num_docks_available": 8,
         "is_installed": true, "is_renting": true, "is_returning": true,
         "last_reported": "2025-06-15T17:06:40+02:00"},
    ]}});
    mount(&server, "/v3/gbfs.json", discovery, Some(1)).await;
    mount(&server, "/v3/system_information.json", system, Some(1)).await;
    mount(&server, "/v3/station_information.json", info, Some(1)).await;
    mount(&server, "/v3/station_status.json", status, Some(2)).await;

    let mut o = options(&uri);
    o.gbfs_language = Some("fr".into());
    let target: GbfsTarget = format!("{uri}/v3/gbfs.json").parse().unwrap();
    let mut source = GbfsSource::new(&o, &[target]).unwrap();
    for _ in 0..2 {
        let snapshot = source.fetch().await.unwrap();
        let s = &snapshot.stations[0];
        assert_eq!(s.key().as_str(), "citybike_metro:st-a");
        assert_eq!(s.number, StationId::Text("st-a".into()));
        assert_eq!(s.name, "Hôtel de Ville");
        assert_eq!(
            (s.bike_stands, s.available_bikes, s.available_bike_stands),
            (12, 4, 8)
        );
        assert_eq!(s.last_update, Some(1_750_000_000_000));
        assert!(s.banking);
    }
}

#[tokio::test]
async fn without_system_information_the_host_names_the_system() {
    let server = MockServer::start().await;
    let uri = server.uri();
    mount(
        &server,
        "/x/gbfs.json",
        discovery_2_3(&uri, "/x", false),
        None,
    )
    .await;
    mount(
        &server,
        "/x/fr/station_information.json",
        info_2_3(60),
        None,
    )
    .await;
    mount(&server, "/x/fr/station_status.json", status_2_3(), None).await;
    let mut source = source(&server, &[&format!("{uri}/x/gbfs.json")]);
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations[0].key().as_str(), "127.0.0.1:1001");
}

#[tokio::test]
async fn cyclocity_url_is_named_like_its_slug() {
    let server = MockServer::start().await;
    mount_2_3(&server, "cergy-pontoise", 60, None).await;
    let url = format!("{}/contracts/cergy-pontoise/gbfs/gbfs.json", server.uri());
    let mut source = source(&server, &[&url]);
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations[0].contract_name, "cergy-pontoise");
}

#[tokio::test]
async fn station_information_is_cached_for_its_ttl() {
    let server = MockServer::start().await;
    mount_2_3(&server, "lyon", 3600, Some(1)).await;
    let mut source = source(&server, &["lyon"]);
    for _ in 0..3 {
        assert_eq!(source.fetch().await.unwrap().stations.len(), 2);
    }
    // The expectations (information once, over three polls) are checked when the server drops.
}

#[tokio::test]
async fn station_information_with_ttl_zero_is_fetched_every_poll() {
    let server = MockServer::start().await;
    mount_2_3(&server, "lyon", 0, Some(3)).await;
    let mut source = source(&server, &["lyon"]);
    for _ in 0..3 {
        source.fetch().await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_information_refresh_falls_back_to_the_cached_copy() {
    let server = MockServer::start().await;
    let prefix = "/contracts/lyon/gbfs";
    mount(
        &server,
        &format!("{prefix}/gbfs.json"),
        discovery_2_3(&server.uri(), prefix, true),
        None,
    )
    .await;
    Mock::given(path(format!("{prefix}/fr/station_information.json")))
        .respond_with(ResponseTemplate::new(200).set_body_json(info_2_3(0)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("{prefix}/fr/station_information.json")))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    mount(
        &server,
        &format!("{prefix}/fr/station_status.json"),
        status_2_3(),
        Some(2),
    )
    .await;
    let mut source = source(&server, &["lyon"]);
    assert_eq!(source.fetch().await.unwrap().stations.len(), 2);
    assert_eq!(source.fetch().await.unwrap().stations.len(), 2);
}

#[tokio::test]
async fn bad_records_are_skipped_and_counted() {
    let server = MockServer::start().await;
    let prefix = "/contracts/lyon/gbfs";
    mount(
        &server,
        &format!("{prefix}/gbfs.json"),
        discovery_2_3(&server.uri(), prefix, false),
        None,
    )
    .await;
    let mut info = info_2_3(3600);
    info["data"]["stations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"station_id": "3003", "name": "No position"}));
    mount(
        &server,
        &format!("{prefix}/fr/station_information.json"),
        info,
        None,
    )
    .await;
    let mut status = status_2_3();
    let list = status["data"]["stations"].as_array_mut().unwrap();
    list.push(json!({"station_id": "3003", "num_bikes_available": 1, "num_docks_available": 1}));
    list.push(json!({"station_id": "4004", "num_bikes_available": 1, "num_docks_available": 1}));
    list.push(json!({"station_id": "1001", "num_bikes_available": "several"}));
    list.push(json!("not a station"));
    mount(
        &server,
        &format!("{prefix}/fr/station_status.json"),
        status,
        None,
    )
    .await;
    let mut source = source(&server, &["lyon"]);
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations.len(), 2);
    // One bad information record, four bad status records.
    assert_eq!(source.skipped_records(), 5);
    source.fetch().await.unwrap();
    assert_eq!(
        source.skipped_records(),
        9,
        "information is cached: only status skips again"
    );
}

#[tokio::test]
async fn several_systems_merge_and_one_failure_does_not_lose_the_others() {
    let server = MockServer::start().await;
    mount_2_3(&server, "lyon", 3600, None).await;
    mount_2_3(&server, "nantes", 3600, None).await;
    Mock::given(path("/contracts/toulouse/gbfs/gbfs.json"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let mut source = source(&server, &["lyon", "nantes", "toulouse"]);
    assert!(
        source.describe().contains("3 systems"),
        "{}",
        source.describe()
    );
    let snapshot = source.fetch().await.unwrap();
    let keys: Vec<_> = snapshot
        .stations
        .iter()
        .map(|s| s.key().to_string())
        .collect();
    assert_eq!(
        keys,
        ["lyon:1001", "lyon:2002", "nantes:1001", "nantes:2002"]
    );

    let mut all_down = self::source(&server, &["toulouse", "toulouse"]);
    let err = all_down.fetch().await.unwrap_err();
    assert_eq!(err.class(), "transient");
}

async fn single_error(setup: impl AsyncFnOnce(&MockServer)) -> SourceError {
    let server = MockServer::start().await;
    setup(&server).await;
    let mut source = source(&server, &["lyon"]);
    source.fetch().await.unwrap_err()
}

#[tokio::test]
async fn unknown_contract_is_a_config_error_naming_the_setting() {
    let err = single_error(async |_| {}).await;
    assert_eq!(err.class(), "config");
    assert!(err.is_permanent());
    assert!(err.to_string().contains("gbfs:lyon"), "{err}");
}

#[tokio::test]
async fn refused_feed_is_a_config_error() {
    let err = single_error(async |s| {
        Mock::given(path("/contracts/lyon/gbfs/gbfs.json"))
            .respond_with(ResponseTemplate::new(403))
            .mount(s)
            .await;
    })
    .await;
    assert_eq!(err.class(), "config");
    assert!(err.to_string().contains("refused access"), "{err}");
}

#[tokio::test]
async fn unavailable_status_feed_is_transient_with_retry_after() {
    let err = single_error(async |s| {
        let prefix = "/contracts/lyon/gbfs";
        mount(
            s,
            &format!("{prefix}/gbfs.json"),
            discovery_2_3(&s.uri(), prefix, true),
            None,
        )
        .await;
        mount(
            s,
            &format!("{prefix}/fr/station_information.json"),
            info_2_3(60),
            None,
        )
        .await;
        Mock::given(path(format!("{prefix}/fr/station_status.json")))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "7"))
            .mount(s)
            .await;
    })
    .await;
    assert_eq!(err.class(), "transient");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn slow_status_feed_times_out() {
    let server = MockServer::start().await;
    let prefix = "/contracts/lyon/gbfs";
    mount(
        &server,
        &format!("{prefix}/gbfs.json"),
        discovery_2_3(&server.uri(), prefix, true),
        None,
    )
    .await;
    mount(
        &server,
        &format!("{prefix}/fr/station_information.json"),
        info_2_3(60),
        None,
    )
    .await;
    Mock::given(path(format!("{prefix}/fr/station_status.json")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(status_2_3())
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let mut o = options(&server.uri());
    o.request_timeout = Duration::from_millis(300);
    let mut source = GbfsSource::new(&o, &["lyon".parse().unwrap()]).unwrap();
    assert_eq!(source.fetch().await.unwrap_err().class(), "timeout");
}

#[tokio::test]
async fn whole_feed_problems_are_malformed_errors() {
    // Not JSON at all.
    let err = single_error(async |s| {
        Mock::given(path("/contracts/lyon/gbfs/gbfs.json"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw("<html>gateway</html>", "text/html"),
            )
            .mount(s)
            .await;
    })
    .await;
    assert_eq!(err.class(), "malformed");
    assert!(
        err.to_string().contains("text/html") && err.to_string().contains("<html>"),
        "{err}"
    );

    // A dockless system.
    let err = single_error(async |s| {
        let body =
            json!({"data": {"en": {"feeds": [{"name": "free_bike_status", "url": "f.json"}]}}});
        mount(s, "/contracts/lyon/gbfs/gbfs.json", body, None).await;
    })
    .await;
    assert_eq!(err.class(), "malformed");
    assert!(err.to_string().contains("dockless"), "{err}");

    // data.stations of the wrong type.
    let err = single_error(async |s| {
        let prefix = "/contracts/lyon/gbfs";
        mount(
            s,
            &format!("{prefix}/gbfs.json"),
            discovery_2_3(&s.uri(), prefix, true),
            None,
        )
        .await;
        mount(
            s,
            &format!("{prefix}/fr/station_information.json"),
            json!({"data": {"stations": {"1": 2}}}),
            None,
        )
        .await;
    })
    .await;
    assert_eq!(err.class(), "malformed");
    assert!(err.to_string().contains("not an array"), "{err}");

    // Truncated status feed.
    let err = single_error(async |s| {
        let prefix = "/contracts/lyon/gbfs";
        mount(
            s,
            &format!("{prefix}/gbfs.json"),
            discovery_2_3(&s.uri(), prefix, true),
            None,
        )
        .await;
        mount(
            s,
            &format!("{prefix}/fr/station_information.json"),
            info_2_3(60),
            None,
        )
        .await;
        let text = status_2_3().to_string();
        Mock::given(path(format!("{prefix}/fr/station_status.json")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(&text[..text.len() / 3], "application/json"),
            )
            .mount(s)
            .await;
    })
    .await;
    assert_eq!(err.class(), "malformed");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[tokio::test]
async fn oversized_feed_is_refused() {
    let server = MockServer::start().await;
    mount_2_3(&server, "lyon", 60, None).await;
    let mut o = options(&server.uri());
    o.max_body_bytes = 300;
    let mut source = GbfsSource::new(&o, &["lyon".parse().unwrap()]).unwrap();
    assert_eq!(source.fetch().await.unwrap_err().class(), "too_large");
}

/// Records when each request arrived and answers it after a delay.
struct Arrivals(std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>);

impl wiremock::Respond for Arrivals {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(std::time::Instant::now());
        ResponseTemplate::new(503).set_delay(Duration::from_millis(300))
    }
}

#[tokio::test]
async fn a_poll_over_many_systems_fetches_a_bounded_number_at_once() {
    let server = MockServer::start().await;
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(wiremock::matchers::path_regex(r"^/s[0-9]+/gbfs\.json$"))
        .respond_with(Arrivals(arrivals.clone()))
        .mount(&server)
        .await;
    let uri = server.uri();
    let urls: Vec<String> = (0..40).map(|i| format!("{uri}/s{i}/gbfs.json")).collect();
    let targets: Vec<&str> = urls.iter().map(String::as_str).collect();
    let _ = source(&server, &targets).fetch().await;

    // Every answer takes 300 ms, so requests that arrive within 150 ms of each other were in
    // flight together. Unbounded, all 40 would be.
    let mut times = arrivals.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 40, "every system was asked");
    let most_together = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < Duration::from_millis(150))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most_together <= 32,
        "{most_together} systems fetched at once"
    );
}

#[tokio::test]
async fn a_gbfs_station_that_is_not_json_costs_only_itself() {
    let server = MockServer::start().await;
    let prefix = "/contracts/lyon/gbfs";
    mount(
        &server,
        &format!("{prefix}/gbfs.json"),
        discovery_2_3(&server.uri(), prefix, false),
        None,
    )
    .await;
    mount(
        &server,
        &format!("{prefix}/fr/station_information.json"),
        info_2_3(3600),
        None,
    )
    .await;
    let status = serde_json::to_string(&status_2_3()).unwrap().replacen(
        r#""stations":["#,
        r#""stations":[{"station_id":"9","num_bikes_available":NaN},"#,
        1,
    );
    assert!(status.contains("NaN"), "{status}");
    Mock::given(path(format!("{prefix}/fr/station_status.json")))
        .respond_with(ResponseTemplate::new(200).set_body_raw(status, "application/json"))
        .mount(&server)
        .await;
    let mut source = source(&server, &["lyon"]);
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations.len(), 2, "both good stations");
    assert_eq!(source.skipped_records(), 1);
}

/// A 2.3 system with its own vehicle type ids, described by `vehicle_types.json`, and counts
/// of e-bikes, bikes and docks out of service, and a station that takes no returns.
async fn mount_typed_system(server: &MockServer, types: ResponseTemplate, types_times: u64) {
    let uri = server.uri();
    let feed = |name: &str| json!({"name": name, "url": format!("{uri}/typed/{name}.json")});
    let discovery = json!({"last_updated": 1_750_000_000, "ttl": 3600, "version": "2.3",
        "data": {"en": {"feeds": [feed("station_information"), feed("station_status"),
                                  feed("vehicle_types")]}}});
    let info = json!({"ttl": 3600, "data": {"stations": [
        {"station_id": "7", "name": "Quai", "lat": 45.75, "lon": 4.83, "capacity": 20}]}});
    let status = json!({"last_updated": 1_750_000_000, "ttl": 0, "data": {"stations": [
        {"station_id": "7", "num_bikes_available": 6, "num_docks_available": 10,
         "num_bikes_disabled": 1, "num_docks_disabled": 3, "is_installed": true,
         "is_renting": true, "is_returning": false, "last_reported": 1_750_000_000,
         "vehicle_types_available": [{"vehicle_type_id": "pedal", "count": 2},
                                     {"vehicle_type_id": "assist", "count": 4}]}]}});
    mount(server, "/typed/gbfs.json", discovery, None).await;
    mount(server, "/typed/station_information.json", info, None).await;
    mount(server, "/typed/station_status.json", status, None).await;
    Mock::given(path("/typed/vehicle_types.json"))
        .respond_with(types)
        .expect(types_times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn vehicle_types_tell_e_bikes_apart_and_are_cached_for_their_ttl() {
    let server = MockServer::start().await;
    let types = json!({"ttl": 3600, "version": "2.3", "data": {"vehicle_types": [
        {"vehicle_type_id": "pedal", "form_factor": "bicycle", "propulsion_type": "human"},
        {"vehicle_type_id": "assist", "form_factor": "bicycle",
         "propulsion_type": "electric_assist", "max_range_meters": 60000}]}});
    mount_typed_system(&server, ResponseTemplate::new(200).set_body_json(types), 1).await;
    let mut source = source(
        &server,
        &[&format!("quai={}/typed/gbfs.json", server.uri())],
    );
    for _ in 0..3 {
        let snapshot = source.fetch().await.unwrap();
        let s = &snapshot.stations[0];
        assert_eq!((s.ebikes(), s.classic_bikes()), (Some(4), Some(2)));
        assert_eq!(
            (s.bikes_out_of_service, s.docks_out_of_service),
            (Some(1), Some(3))
        );
        assert_eq!(s.is_returning, Some(false));
        assert_eq!(s.status, Status::Open, "renting, so open, as v1 says");
    }
    // The expectation (vehicle_types once over three polls) is checked when the server drops.
}

#[tokio::test]
async fn without_readable_vehicle_types_the_stations_still_come_and_unknown_ids_are_other() {
    let server = MockServer::start().await;
    // Fetched on each poll while it fails (the test options refresh at once).
    mount_typed_system(&server, ResponseTemplate::new(500), 2).await;
    let mut source = source(
        &server,
        &[&format!("quai={}/typed/gbfs.json", server.uri())],
    );
    for _ in 0..2 {
        let snapshot = source.fetch().await.unwrap();
        let s = &snapshot.stations[0];
        assert_eq!(s.available_bikes, 6);
        // Ids velib does not know, and no feed to say: neither e-bikes nor classic.
        assert_eq!((s.ebikes(), s.classic_bikes()), (Some(0), Some(0)));
        let kinds: Vec<_> = s.bikes_by_type.iter().flatten().map(|c| c.kind).collect();
        assert_eq!(kinds, [velib_model::VehicleKind::Other; 2]);
    }
}
