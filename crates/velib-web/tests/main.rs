//! velib-web against a real Kafka-protocol broker (the in-process mock cluster) over TCP, and
//! a real HTTP client; `browser` drives Debian's chromium (`#[ignore]`d: `cargo xtask test`
//! installs chromium and the driver's npm packages, then runs it).

mod api;
mod browser;
mod history;
mod viewers;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use velib_kafka::KafkaArgs;
use velib_model::Station;
use velib_source::{SimulateConfig, SimulateSource};
use velib_testkit::MockKafka;
use velib_web::{Tiles, WebConfig, WebReport};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A broker with a fresh stations topic and events topic.
struct Broker {
    kafka: MockKafka,
    stations: String,
    events: String,
    producer: FutureProducer,
}

impl Broker {
    fn start() -> Broker {
        let kafka = MockKafka::start(1).unwrap();
        let stations = velib_testkit::unique_name("web-stations");
        let events = velib_testkit::unique_name("web-events");
        kafka.create_topic(&stations, 4).unwrap();
        kafka.create_topic(&events, 1).unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("linger.ms", "0")
            .create()
            .unwrap();
        Broker {
            kafka,
            stations,
            events,
            producer,
        }
    }

    /// Produces one record and waits for the broker's acknowledgement.
    async fn produce(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    async fn produce_station(&self, station: &Station) {
        self.produce(
            &self.stations,
            &station.key().to_string(),
            &station.to_json(),
        )
        .await;
    }

    /// Produces many stations without waiting for each acknowledgement in turn.
    async fn produce_stations(&self, stations: &[Station]) {
        let sends = stations.iter().map(|s| self.produce_station(s));
        futures::future::join_all(sends).await;
    }
}

/// velib-web running in the background.
struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<WebReport, velib_web::WebError>>,
}

impl Served {
    async fn start(broker: &Broker, tiles: Option<Tiles>) -> Served {
        Served::start_on(broker, tiles, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr`: a restart on the address a page is connected to.
    async fn start_on(broker: &Broker, tiles: Option<Tiles>, addr: SocketAddr) -> Served {
        Served::start_with(broker, addr, |config| config.tiles = tiles).await
    }

    /// Starts on `addr` with the defaults for `broker` as `configure` changes them.
    async fn start_with(
        broker: &Broker,
        addr: SocketAddr,
        configure: impl FnOnce(&mut WebConfig),
    ) -> Served {
        let mut config = WebConfig {
            topic: broker.stations.clone(),
            events_topic: Some(broker.events.clone()),
            ..WebConfig::new(KafkaArgs::new(broker.kafka.bootstrap_servers()))
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(velib_web::run(config, listener, async {
            let _ = stopped.await;
        }));
        Served { addr, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn health(&self) -> serde_json::Value {
        get_json(&self.url("/health")).await
    }

    /// Waits until the server has read `stations` stations.
    async fn wait_for_stations(&self, stations: u64) {
        velib_testkit::wait_for("the server to read every station", TIMEOUT, || async {
            (self.health().await["stations"] == stations).then_some(())
        })
        .await;
    }

    async fn stop(self) -> WebReport {
        let _ = self.stop.send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("velib-web stops in time")
            .unwrap()
            .unwrap()
    }
}

/// Reads server-sent events from a streaming response, one `(event, data)` at a time.
struct Events {
    response: reqwest::Response,
    /// Bytes received and not yet read as events: a chunk may end inside a character.
    buffer: Vec<u8>,
}

impl Events {
    /// Opens `/api/events` (or any event stream) at `url`.
    async fn open(url: &str) -> Events {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event with data; keep-alive comments are skipped.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = std::str::from_utf8(&block).unwrap();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // A keep-alive comment.
                }
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Skips events until one satisfies `check`.
    async fn until(&mut self, mut check: impl FnMut(&str, &Value) -> bool) -> Value {
        loop {
            let (event, data) = self.next().await;
            if check(&event, &data) {
                return data;
            }
        }
    }
}

async fn get_json(url: &str) -> serde_json::Value {
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// A simulated city: `stations` stations in two contracts (Valmont and Port-Aubry).
fn city(stations: usize) -> Vec<Station> {
    SimulateSource::new(SimulateConfig {
        seed: 11,
        stations,
        contracts: 2,
        start_ms: Some(now_ms() - 60_000),
        ..SimulateConfig::default()
    })
    .next_snapshot()
    .stations
}

/// The same station with two bikes taken (two stands freed), reported a second later.
fn two_bikes_taken(station: &Station) -> Station {
    let mut next = station.clone();
    next.available_bikes -= 2;
    next.available_bike_stands += 2;
    next.last_update = Some(station.last_update.unwrap_or(0) + 1000);
    next
}

/// An open station with at least two bikes, in `contract`.
fn busy_station<'a>(stations: &'a [Station], contract: &str) -> &'a Station {
    stations
        .iter()
        .find(|s| {
            s.contract_name == contract
                && s.status == velib_model::Status::Open
                && s.available_bikes >= 2
        })
        .expect("the city has a station with bikes")
}

/// Records whose position cannot be drawn, as raw JSON: `null` and out of range.
fn unlocated_records(contract: &str) -> Vec<(String, String)> {
    [
        ("90001", "null"),
        ("90002", r#"{"lat": 123.0, "lng": 4.0}"#),
    ]
    .into_iter()
    .map(|(number, position)| {
        (
            format!("{contract}:{number}"),
            format!(
                r#"{{"number": {number}, "contract_name": "{contract}", "name": "NOWHERE",
                    "address": "NOWHERE", "position": {position}, "status": "OPEN",
                    "bike_stands": 10, "available_bike_stands": 5, "available_bikes": 5,
                    "last_update": {}}}"#,
                now_ms()
            ),
        )
    })
    .collect()
}
