//! Events, a producer and an alerts configuration for the tests.

use lettre::Message;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use velib_alerts::mail::{Mailer, SendError};
use velib_alerts::select::WatchList;
use velib_alerts::{AlertsConfig, Retry};
use velib_kafka::KafkaArgs;
use velib_model::{EmptinessKind, EmptyStationEvent, Position, Station, StationId, Status};

pub const FROM: &str = "Velib alerts <alerts@velib.test>";
pub const TO: &str = "me@velib.test";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Lyon station event at `time` (epoch ms).
pub fn event(key: &str, kind: EmptinessKind, time: i64) -> EmptyStationEvent {
    let (contract, id) = key.split_once(':').unwrap();
    let station = Station {
        number: StationId::from_text(id),
        contract_name: contract.to_owned(),
        name: format!("{id} - PLACE BELLECOUR"),
        address: "Place Bellecour, 69002 Lyon".to_owned(),
        position: Position {
            lat: 45.7578,
            lng: 4.832,
        },
        banking: true,
        bonus: false,
        bike_stands: 20,
        available_bike_stands: 20,
        available_bikes: 0,
        status: Status::Open,
        last_update: Some(time),
        snapshot_at: None,
        bikes_by_type: None,
        bikes_out_of_service: None,
        docks_out_of_service: None,
        is_returning: None,
    };
    EmptyStationEvent::new(kind, &station, time + 1_000)
}

pub fn empty(key: &str, time: i64) -> EmptyStationEvent {
    event(key, EmptinessKind::BecameEmpty, time)
}

pub fn back(key: &str, time: i64) -> EmptyStationEvent {
    event(key, EmptinessKind::NoLongerEmpty, time)
}

/// An alerts configuration watching the Lyon contract, mailing [`TO`], with fast retries.
pub fn config(bootstrap: &str, topic: &str) -> AlertsConfig {
    let mut config = AlertsConfig::new(
        KafkaArgs::new(bootstrap),
        WatchList::default().with_contract("Lyon"),
        FROM.parse().unwrap(),
        vec![TO.parse().unwrap()],
    );
    config.topic = topic.to_owned();
    config.group = velib_testkit::unique_name("velib-alerts-test");
    config.retry = Retry {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    config
}

pub struct Events {
    producer: FutureProducer,
    topic: String,
}

impl Events {
    pub fn new(bootstrap: &str, topic: &str) -> Events {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .create()
            .expect("a producer");
        Events {
            producer,
            topic: topic.to_owned(),
        }
    }

    pub async fn send(&self, event: &EmptyStationEvent) {
        self.send_raw(event.key.as_str(), &event.to_json()).await;
    }

    pub async fn send_raw(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce an event");
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// A mailer that counts what the real one it wraps returns, so a test can wait for failed
/// attempts it cannot see at a stopped server.
#[derive(Clone)]
pub struct Counting<M> {
    pub inner: M,
    pub failures: Arc<AtomicUsize>,
}

impl<M> Counting<M> {
    pub fn new(inner: M) -> Counting<M> {
        Counting {
            inner,
            failures: Arc::default(),
        }
    }

    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }
}

impl<M: Mailer> Mailer for Counting<M> {
    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let result = self.inner.send(message).await;
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

/// Sends `RUST_LOG`-filtered logs to the test's captured output (shown when a test fails).
pub fn logs() {
    velib_testkit::test_logs("velib_alerts=debug");
}
