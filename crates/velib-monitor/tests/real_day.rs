//! One real day of JCDecaux's GBFS feeds, end to end: a local HTTP server plays the recorded
//! `station_status` snapshots of all 19 cities, the producer binary polls them (`gbfs:<city>`
//! under `--cyclocity-base-url`), a broker carries the records, and the monitor binary prints
//! the changes. What it prints must equal, line for line, an independent count over the same
//! files: every change of `num_docks_available` between two consecutive snapshots, once, and
//! no other line. A second monitor, in its own group, follows the e-bikes (`--field ebikes`)
//! on the same records and must print every change of the `electrical` count of
//! `vehicle_types_available`, likewise (15,888 on this day); others follow the classic bikes
//! (`mechanical`) and the docks out of service (`num_docks_disabled`, 485 changes). The same day rewritten as GBFS 2.3 must print the same
//! lines.
//!
//! It runs on Apache Kafka in `cargo xtask test` (both versions), and on the in-process mock
//! cluster under plain `cargo test` (3.0).
//!
//! The data is read at run time from `shared/data/cyclocity-2026-07-02` beside the checkout
//! (or `$VELIB_REAL_DAY_DIR`); none of it is copied into the project.

use crate::TIMEOUT;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::process::Command;
use velib_testkit::real_day::{City, load_day, set_aside, stations, text};
use velib_testkit::{
    MockKafka, Process, admin_create_topic, kafka_bootstrap, unique_name, wait_for,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What a monitor follows, read from a `station_status` record the obvious way.
#[derive(Debug, Clone, Copy)]
enum Count {
    /// `num_docks_available`: the default `--field`.
    FreeDocks,
    /// The `electrical` entry of `vehicle_types_available` (0 when the list has none):
    /// `--field ebikes`.
    Ebikes,
    /// The `mechanical` entry, below 0 now and then in these files (the README says velib
    /// reads it as 0): `--field classic-bikes`.
    ClassicBikes,
    /// `num_docks_disabled`: `--field docks-out-of-service`.
    DocksOutOfService,
}

impl Count {
    fn of(self, status: &Value) -> i64 {
        match self {
            Count::FreeDocks => status["num_docks_available"].as_i64().unwrap(),
            Count::DocksOutOfService => status["num_docks_disabled"].as_i64().unwrap(),
            Count::Ebikes => type_count(status, "electrical"),
            Count::ClassicBikes => type_count(status, "mechanical"),
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Count::FreeDocks => "stands",
            Count::Ebikes => "ebikes",
            Count::ClassicBikes => "classic-bikes",
            Count::DocksOutOfService => "docks-out-of-service",
        }
    }
}

/// The bikes of type `id` in a `station_status` record: its entry in
/// `vehicle_types_available`, 0 when the list has none or a negative count.
fn type_count(status: &Value, id: &str) -> i64 {
    status["vehicle_types_available"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["vehicle_type_id"] == id)
        .map(|t| t["count"].as_i64().unwrap().max(0))
        .sum()
}

/// The lines a monitor must print for the day, computed from the files alone: for every two
/// consecutive snapshots of a city, every station whose `count` differs, as
/// `{delta:+} ADDRESS (city)` with the address (the name when there is none) on one line.
fn expected_lines(day: &[City], count: Count) -> Vec<String> {
    let mut lines = Vec::new();
    for city in day {
        let hidden = set_aside(&city.information);
        let address: HashMap<&str, String> = stations(&city.information)
            .iter()
            .map(|s| {
                let id = s["station_id"].as_str().unwrap();
                let shown = text(&s["address"])
                    .or_else(|| text(&s["name"]))
                    .unwrap_or_else(|| id.to_owned());
                // Line breaks and tabs become spaces; no other control character is expected in
                // this day's files (the monitor's own handling of those has its own test).
                let shown: String = shown
                    .chars()
                    .map(|c| {
                        if matches!(c, '\r' | '\n' | '\t') {
                            ' '
                        } else {
                            c
                        }
                    })
                    .collect();
                assert!(!shown.chars().any(char::is_control), "{shown:?}");
                (id, shown)
            })
            .collect();
        for pair in city.statuses.windows(2) {
            let before: HashMap<&str, i64> = stations(&pair[0])
                .iter()
                .map(|s| {
                    let id = s["station_id"].as_str().unwrap();
                    (id, count.of(s))
                })
                .collect();
            for s in stations(&pair[1]) {
                let id = s["station_id"].as_str().unwrap();
                let now = count.of(s);
                match before.get(id) {
                    Some(&was) if was != now && !hidden.iter().any(|h| h == id) => {
                        lines.push(format!("{:+} {} ({})", now - was, address[id], city.slug));
                    }
                    _ => {}
                }
            }
        }
    }
    lines.sort();
    lines
}

/// GBFS 3.0 as JCDecaux serves it, or the same day rewritten as 2.3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Version {
    V3,
    V2,
}

/// A 3.0 time (RFC 3339) as 2.3 writes it: POSIX seconds, read by the `time` crate rather
/// than velib's reader, so the expected lines stay independent of the code under test.
fn rfc3339_to_seconds(v: &Value) -> Value {
    let text = v.as_str().unwrap();
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"));
    json!(at.unix_timestamp())
}

/// A feed as `version` writes it: 3.0 verbatim; 2.3 with times in seconds, names as strings,
/// `num_bikes_available` and `num_bikes_disabled` (`vehicle_types_available` is 2.3's too).
fn as_version(feed: &Value, version: Version) -> Value {
    if version == Version::V3 {
        return feed.clone();
    }
    let mut feed = feed.clone();
    feed["last_updated"] = rfc3339_to_seconds(&feed["last_updated"]);
    feed["version"] = json!("2.3");
    for s in feed["data"]["stations"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        if let Some(name) = s.get("name").cloned() {
            s.insert("name".into(), json!(text(&name).unwrap_or_default()));
        }
        if let Some(reported) = s.get("last_reported").cloned() {
            s.insert("last_reported".into(), rfc3339_to_seconds(&reported));
        }
        if let Some(n) = s.remove("num_vehicles_available") {
            s.insert("num_bikes_available".into(), n);
        }
        if let Some(n) = s.remove("num_vehicles_disabled") {
            s.insert("num_bikes_disabled".into(), n);
        }
    }
    feed
}

/// Serves a city's recorded snapshots, the next one on each request, then the last one again.
struct Snapshots {
    bodies: Vec<Vec<u8>>,
    served: Arc<AtomicUsize>,
}

impl Respond for Snapshots {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        let body = &self.bodies[n.min(self.bodies.len() - 1)];
        ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json")
    }
}

/// A local api.cyclocity.fr for the day: per city, the manifest, `system_information`,
/// `station_information` and the snapshots. Returns how many status requests each city got.
pub(crate) async fn serve_day(
    day: &[City],
    version: Version,
) -> (MockServer, Vec<Arc<AtomicUsize>>) {
    let server = MockServer::start().await;
    let mut served = Vec::new();
    for city in day {
        let base = format!("{}/contracts/{}/gbfs", server.uri(), city.slug);
        let feed = |name: &str| json!({"name": name, "url": format!("{base}/{name}.json")});
        let feeds = json!([
            feed("system_information"),
            feed("station_information"),
            feed("station_status")
        ]);
        let manifest = match version {
            Version::V3 => json!({"last_updated": "2026-07-02T15:27:00Z", "ttl": 300,
                "version": "3.0", "data": {"feeds": feeds}}),
            Version::V2 => json!({"last_updated": 1_783_005_000, "ttl": 300,
                "version": "2.3", "data": {"en": {"feeds": feeds}}}),
        };
        let system = json!({"last_updated": city.information["last_updated"], "ttl": 300,
            "data": {"system_id": city.slug, "name": [{"text": city.slug, "language": "en"}],
                     "languages": ["fr", "en"], "timezone": "Europe/Paris"}});
        let info = as_version(&city.information, version);
        let contract = format!("/contracts/{}/gbfs", city.slug);
        for (file, body) in [
            ("gbfs.json", manifest),
            ("system_information.json", system),
            ("station_information.json", info),
        ] {
            Mock::given(method("GET"))
                .and(path(format!("{contract}/{file}")))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .mount(&server)
                .await;
        }
        let counter = Arc::new(AtomicUsize::new(0));
        Mock::given(method("GET"))
            .and(path(format!("{contract}/station_status.json")))
            .respond_with(Snapshots {
                bodies: city
                    .statuses
                    .iter()
                    .map(|s| serde_json::to_vec(&as_version(s, version)).unwrap())
                    .collect(),
                served: Arc::clone(&counter),
            })
            .mount(&server)
            .await;
        served.push(counter);
    }
    (server, served)
}

/// Which broker carries the day.
#[derive(Debug, Clone, Copy)]
enum Broker {
    /// The Apache Kafka node `cargo xtask test` starts.
    ApacheKafka,
    /// librdkafka's mock cluster, in this process.
    Mock,
}

async fn play_the_day(version: Version, broker: Broker) {
    let _alone = crate::alone().await;
    let day = load_day();
    assert_eq!(day.len(), 19, "the 19 JCDecaux GBFS cities");
    let free_docks = expected_lines(&day, Count::FreeDocks);
    assert!(free_docks.len() > 20_000, "{} changes", free_docks.len());
    let ebikes = expected_lines(&day, Count::Ebikes);
    let classic = expected_lines(&day, Count::ClassicBikes);
    assert!(
        classic.len() > 10_000,
        "{} classic-bike changes",
        classic.len()
    );
    let broken_docks = expected_lines(&day, Count::DocksOutOfService);
    assert!(broken_docks.len() > 100, "{} changes", broken_docks.len());
    assert!(ebikes.len() > 10_000, "{} e-bike changes", ebikes.len());
    let (server, served) = serve_day(&day, version).await;

    let topic = unique_name("velib-stations");
    let (mock, bootstrap) = match broker {
        Broker::ApacheKafka => {
            let bootstrap = kafka_bootstrap();
            admin_create_topic(&bootstrap, &topic, 10).await.unwrap();
            (None, bootstrap)
        }
        Broker::Mock => {
            let kafka = MockKafka::start(1).unwrap();
            kafka.create_topic(&topic, 10).unwrap();
            let bootstrap = kafka.bootstrap_servers().to_owned();
            (Some(kafka), bootstrap)
        }
    };
    // librdkafka's mock cluster accepts transactions but does not store their offsets, so
    // there the monitors run at least once; the exactly-once runs are on Apache Kafka.
    let guarantee = match broker {
        Broker::ApacheKafka => "exactly-once",
        Broker::Mock => "at-least-once",
    };
    let mut monitors = Vec::new();
    for (count, expected) in [
        (Count::FreeDocks, free_docks),
        (Count::Ebikes, ebikes),
        (Count::ClassicBikes, classic),
        (Count::DocksOutOfService, broken_docks),
    ] {
        // The monitor checks its state and events topics as soon as it is assigned partitions
        // (its transactional producer creates no topic).
        let (state, events) = (
            unique_name("velib-monitor-state"),
            unique_name("velib-empty-stations"),
        );
        for (name, partitions) in [(&state, 10), (&events, 3)] {
            match &mock {
                Some(kafka) => kafka.create_topic(name, partitions).unwrap(),
                None => admin_create_topic(&bootstrap, name, partitions)
                    .await
                    .unwrap(),
            }
        }
        let monitor = Monitor::spawn(&bootstrap, &topic, [&state, &events], guarantee, count);
        monitors.push((monitor, expected));
    }
    let producer = producer(&day, &server.uri(), &bootstrap, &topic);

    // Every snapshot of every city has been fetched once the server has answered each city
    // one more time than it has snapshots (the first poll reads the first snapshot).
    let snapshots = day[0].statuses.len();
    wait_for(
        "the producer to read every snapshot",
        TIMEOUT * 3,
        || async {
            served
                .iter()
                .all(|n| n.load(Ordering::SeqCst) > snapshots)
                .then_some(())
        },
    )
    .await;
    assert!(
        producer.terminate().await.success(),
        "the producer delivers everything"
    );
    for (monitor, expected) in monitors {
        monitor.check(&bootstrap, &topic, &expected).await;
    }
}

/// The producer binary polling every city of the day from `server` into `topic`.
pub(crate) fn producer(day: &[City], server: &str, bootstrap: &str, topic: &str) -> Process {
    let cities: Vec<&str> = day.iter().map(|c| c.slug.as_str()).collect();
    Process::spawn(
        Command::new(velib_testkit::sibling_binary(
            env!("CARGO_BIN_EXE_velib-monitor"),
            "velib-producer",
        ))
        .arg("--source")
        .arg(format!("gbfs:{}", cities.join(",")))
        .args(["--cyclocity-base-url", server])
        .args(["--interval", "200ms", "--bootstrap-servers", bootstrap])
        .args(["--topic", topic])
        .env("RUST_LOG", "warn"),
    )
}

/// A monitor of the day following one count, in a group and with a state topic of its own.
struct Monitor {
    count: Count,
    group: String,
    process: Process,
}

impl Monitor {
    /// Starts a monitor of `topic` following `count`, with the (existing) state and events
    /// topics `[state, events]`.
    fn spawn(
        bootstrap: &str,
        topic: &str,
        [state, events]: [&str; 2],
        guarantee: &str,
        count: Count,
    ) -> Monitor {
        let group = unique_name("velib-monitor");
        let process = Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
                .args(["--bootstrap-servers", bootstrap, "--group-id", &group])
                .args(["--topic", topic, "--no-dlq", "--format", "text"])
                .args(["--field", count.flag()])
                .args(["--state-topic", state, "--events-topic", events])
                .args(["--guarantee", guarantee])
                .args(["-X", "auto.offset.reset=earliest"])
                .env("RUST_LOG", "warn"),
        );
        Monitor {
            count,
            group,
            process,
        }
    }

    /// Waits for the monitor to print as many lines as expected and commit the whole topic,
    /// stops it, and compares what it printed with what was expected.
    async fn check(self, bootstrap: &str, topic: &str, expected: &[String]) {
        let Monitor {
            count,
            group,
            process,
        } = self;
        // Past the deadline, the comparison below says which lines are missing.
        let printed_all = tokio::time::timeout(
            TIMEOUT * 3,
            wait_for("every change", TIMEOUT * 4, || async {
                (process.lines().len() >= expected.len()).then_some(())
            }),
        )
        .await
        .is_ok();
        if printed_all {
            wait_for("the group to commit the whole topic", TIMEOUT, || async {
                velib_testkit::group_caught_up(bootstrap, &group, topic).then_some(())
            })
            .await;
        }
        let mut printed = process.lines();
        assert!(process.terminate().await.success());
        printed.sort();
        if printed != expected {
            let mut balance: HashMap<&String, i64> = HashMap::new();
            for l in expected {
                *balance.entry(l).or_default() += 1;
            }
            for l in &printed {
                *balance.entry(l).or_default() -= 1;
            }
            let missing: Vec<_> = balance.iter().filter(|(_, n)| **n > 0).take(5).collect();
            let extra: Vec<_> = balance.iter().filter(|(_, n)| **n < 0).take(5).collect();
            panic!(
                "{count:?}: {} lines printed, {} expected; first missing {missing:?}; first \
                 extra {extra:?}",
                printed.len(),
                expected.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn the_real_day_in_gbfs_3_0_prints_every_change_once() {
    play_the_day(Version::V3, Broker::ApacheKafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn the_real_day_rewritten_as_gbfs_2_3_prints_the_same_lines() {
    play_the_day(Version::V2, Broker::ApacheKafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_day_on_the_mock_cluster() {
    play_the_day(Version::V3, Broker::Mock).await;
}
