//! Faults of real GBFS feeds, against wiremock: a `station_id` listed twice in one
//! `station_status` snapshot, a station `station_information` does not list, and a record that
//! cannot be read. The first two are published or skipped as the source documents, warned
//! about once per station, and counted in a metric on every poll; the third is skipped with a
//! warning naming it. Each test runs its polls on a current-thread runtime inside a
//! local metrics recorder and log subscriber, so the counters and warnings are its own.

use crate::support::options;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use velib_source::{GbfsSource, GbfsTarget, StationSource};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What the polls logged, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// The warning lines that contain every one of `words`.
    fn warnings(&self, words: &[&str]) -> usize {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|l| l.contains("WARN") && words.iter().all(|w| l.contains(w)))
            .count()
    }
}

/// Runs `test` with its own runtime, metrics recorder and log subscriber.
fn observed(test: impl AsyncFnOnce()) -> (Logs, Snapshotter) {
    let logs = Logs::default();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || runtime.block_on(test()))
    });
    (logs, snapshotter)
}

/// The value of counter `name` with label `system`.
fn counter(snapshotter: &Snapshotter, name: &str, system: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labelled = key
                .labels()
                .any(|l| l.key() == "system" && l.value() == system);
            match value {
                DebugValue::Counter(n) if key.name() == name && labelled => Some(n),
                _ => None,
            }
        })
        .sum()
}

fn status(id: &str, bikes: u32, last_reported: u64) -> Value {
    json!({"station_id": id, "num_bikes_available": bikes, "num_docks_available": 20 - bikes,
           "is_installed": true, "is_renting": true, "last_reported": last_reported})
}

fn info(ids: &[&str]) -> Value {
    let stations: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"station_id": id, "name": format!("Station {id}"), "lat": 45.75,
                         "lon": 4.85, "capacity": 20})
        })
        .collect();
    json!({"last_updated": 1_750_000_000, "ttl": 0, "data": {"stations": stations}})
}

/// Serves a 2.3 system `lyon` whose `station_information` lists `known` and whose
/// `station_status` lists `statuses` (`station_information` has `ttl: 0`, so each poll reads
/// it again: the tests change it between polls).
async fn serve(server: &MockServer, known: &[&str], statuses: Vec<Value>) {
    server.reset().await;
    let prefix = "/contracts/lyon/gbfs";
    let uri = server.uri();
    let discovery = json!({"last_updated": 1_750_000_000, "ttl": 3600, "data": {"en": {"feeds": [
        {"name": "station_information", "url": format!("{uri}{prefix}/station_information.json")},
        {"name": "station_status", "url": format!("{uri}{prefix}/station_status.json")}]}}});
    let status = json!({"last_updated": 1_750_000_100, "ttl": 0, "data": {"stations": statuses}});
    for (at, body) in [
        ("gbfs.json", discovery),
        ("station_information.json", info(known)),
        ("station_status.json", status),
    ] {
        Mock::given(path(format!("{prefix}/{at}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(server)
            .await;
    }
}

fn lyon(server: &MockServer) -> GbfsSource {
    let target: GbfsTarget = "lyon".parse().unwrap();
    GbfsSource::new(&options(&server.uri()), &[target]).unwrap()
}

/// (station number, bikes) of one poll, in order.
async fn poll(source: &mut GbfsSource) -> Vec<(String, u32)> {
    let snapshot = source.fetch().await.unwrap();
    snapshot
        .stations
        .iter()
        .map(|s| (s.number.to_string(), s.available_bikes))
        .collect()
}

/// A station listed twice in one snapshot is published once, with the copy whose
/// `last_reported` is later (wherever it stands in the document), or on a tie the later copy;
/// the warning comes once while the duplicate lasts, again after the station was listed once;
/// the counter counts every dropped copy.
#[test]
fn a_station_listed_twice_in_one_snapshot_is_published_once() {
    let (logs, metrics) = observed(async || {
        let server = MockServer::start().await;
        let newer_first = vec![
            status("1001", 7, 1_750_000_050),
            status("2002", 1, 1_750_000_000),
            status("1001", 3, 1_750_000_000),
        ];
        serve(&server, &["1001", "2002"], newer_first).await;
        let mut source = lyon(&server);
        for _ in 0..3 {
            assert_eq!(
                poll(&mut source).await,
                [("1001".to_owned(), 7), ("2002".to_owned(), 1)]
            );
        }
        let tie = vec![
            status("1001", 3, 1_750_000_000),
            status("1001", 5, 1_750_000_000),
            status("2002", 1, 1_750_000_000),
        ];
        serve(&server, &["1001", "2002"], tie.clone()).await;
        assert_eq!(
            poll(&mut source).await,
            [("1001".to_owned(), 5), ("2002".to_owned(), 1)]
        );
        let once = vec![status("1001", 4, 1_750_000_000), status("2002", 1, 0)];
        serve(&server, &["1001", "2002"], once).await;
        assert_eq!(poll(&mut source).await.len(), 2);
        serve(&server, &["1001", "2002"], tie).await;
        assert_eq!(poll(&mut source).await.len(), 2);
        assert_eq!(
            source.skipped_records(),
            0,
            "a duplicate is not a bad record"
        );
    });
    assert_eq!(
        logs.warnings(&["station_id=1001", "more than once", "lyon"]),
        2,
        "once while it lasts, once more when it comes back"
    );
    assert_eq!(logs.warnings(&["station_id=2002"]), 0);
    assert_eq!(
        counter(
            &metrics,
            "velib_source_gbfs_duplicate_station_records_total",
            "lyon"
        ),
        5
    );
}

/// A station `station_information` does not list is skipped and counted on every poll, but
/// warned about once, and again only after it was read fine in between.
#[test]
fn a_station_missing_from_station_information_is_warned_about_once() {
    let (logs, metrics) = observed(async || {
        let server = MockServer::start().await;
        let statuses = vec![status("1001", 3, 1_750_000_000), status("4004", 2, 0)];
        serve(&server, &["1001"], statuses.clone()).await;
        let mut source = lyon(&server);
        for _ in 0..3 {
            assert_eq!(poll(&mut source).await, [("1001".to_owned(), 3)]);
        }
        assert_eq!(source.skipped_records(), 3, "skipped and counted each poll");
        // Listed: published. Then missing again: warned about again.
        serve(&server, &["1001", "4004"], statuses.clone()).await;
        assert_eq!(poll(&mut source).await.len(), 2);
        serve(&server, &["1001"], statuses).await;
        for _ in 0..2 {
            assert_eq!(poll(&mut source).await.len(), 1);
        }
        assert_eq!(source.skipped_records(), 5);
    });
    assert_eq!(
        logs.warnings(&["station_id=\"4004\"", "does not list", "lyon"])
            + logs.warnings(&["station_id=4004", "does not list", "lyon"]),
        2,
        "once, and once more after it was listed"
    );
    assert_eq!(
        logs.warnings(&["skipped unreadable"]),
        0,
        "no warning per poll"
    );
    assert_eq!(
        counter(
            &metrics,
            "velib_source_gbfs_unknown_station_records_total",
            "lyon"
        ),
        5
    );
}

/// An unreadable station costs only itself, and the poll's warning names it by its
/// `station_id` and the field at fault.
#[test]
fn an_unreadable_station_is_skipped_with_a_warning_naming_it() {
    let (logs, _) = observed(async || {
        let server = MockServer::start().await;
        let statuses = vec![
            status("1001", 3, 1_750_000_000),
            json!({"station_id": 2002, "num_bikes_available": "several"}),
        ];
        serve(&server, &["1001", "2002"], statuses).await;
        let mut source = lyon(&server);
        assert_eq!(poll(&mut source).await, [("1001".to_owned(), 3)]);
        assert_eq!(source.skipped_records(), 1);
    });
    assert_eq!(
        logs.warnings(&[
            "skipped unreadable",
            "station_status: station 2002",
            "num_bikes_available"
        ]),
        1
    );
}
