//! velib-monitor against a real Kafka-protocol broker (the in-process mock cluster; Apache
//! Kafka for the `#[ignore]`d end-to-end tests run by `cargo xtask test`).

mod binaries;
mod dead_letters;
mod exactly_once;
mod outage;
mod real_day;
mod recreated;
mod scenarios;
mod stats;

use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use velib_kafka::{KafkaArgs, KafkaSink, OutRecord, RecordSink, SINK_DEFAULTS, flush_async};
use velib_model::{Position, Station, StationChange, StationId, Status, TrackedField};
use velib_monitor::stream::AssignmentView;
use velib_monitor::{MonitorConfig, MonitorReport, OutputFormat, connect};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Every test of this binary holds the gate for its whole run: shared by most, so they run side
/// by side, and exclusive for the tests that load the machine (the real day: two processes and
/// 70,000 records), depend on group timing (several monitors through rebalances), or take a
/// mock broker down and back up (it re-listens on its old port, which nothing may take
/// meanwhile), so that those run with nothing else of this binary beside them. (The
/// exactly-once fault scenarios on the shared broker are the exception: they share the gate,
/// two at a time, since their guarantee must hold on a busy machine: see `exactly_once.rs`.)
/// (tokio's lock: held across awaits, shared by the tests' separate runtimes, not poisoned by a
/// failing test.) The gate holds within one process: `cargo xtask test` runs this binary as two,
/// the `exactly_once` module's tests in one and the others in the other, side by side; a test
/// alone here is still alone in its half.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The gate, alone: see [`GATE`].
async fn alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// The gate, shared: see [`GATE`].
async fn beside_others() -> tokio::sync::RwLockReadGuard<'static, ()> {
    GATE.read().await
}

/// What a monitor prints, shared with the test.
type Output = velib_testkit::Captured;

/// The JSON change lines a monitor printed.
fn changes(out: &Output) -> Vec<StationChange> {
    out.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A monitor running in the background.
struct Running {
    out: Output,
    assignment: AssignmentView,
    stop: oneshot::Sender<()>,
    task: JoinHandle<MonitorReport>,
}

impl Running {
    async fn stop(self) -> MonitorReport {
        let _ = self.stop.send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("monitor stops in time")
            .unwrap()
    }
}

fn start_monitor(bootstrap: &str, group: &str, config: MonitorConfig) -> Running {
    let kafka = KafkaArgs::new(bootstrap)
        .with("auto.offset.reset", "earliest")
        // The mock cluster completes a rebalance only when every member has rejoined or the
        // session timeout expired: a short timeout keeps membership changes quick.
        .with("session.timeout.ms", "6000")
        .with("heartbeat.interval.ms", "500");
    let parts = connect(&kafka, group, &config, false).unwrap();
    let assignment = parts.stream.assignment_view();
    let out = Output::default();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = {
        let mut out = out.clone();
        tokio::spawn(async move {
            let (stream, report) = velib_monitor::at_least_once::run(
                parts.stream,
                &parts.sink,
                parts.ledger,
                &config,
                &mut out,
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
            .unwrap();
            stream.close();
            report
        })
    };
    Running {
        out,
        assignment,
        stop,
        task,
    }
}

fn json_config(topic: &str) -> MonitorConfig {
    MonitorConfig {
        topic: topic.to_owned(),
        format: OutputFormat::Json,
        events_topic: None,
        dlq_topic: None,
        flush_timeout: TIMEOUT,
        ..MonitorConfig::default()
    }
}

/// Waits until the monitors own every partition between them, without overlap, each at least
/// one.
async fn wait_for_assignment(monitors: &[&Running], partitions: i32) {
    velib_testkit::wait_for("a settled assignment", TIMEOUT, || async {
        let mut all: Vec<i32> = monitors
            .iter()
            .flat_map(|m| m.assignment.partitions())
            .collect();
        let each = monitors
            .iter()
            .all(|m| !m.assignment.partitions().is_empty());
        all.sort_unstable();
        (each && all == (0..partitions).collect::<Vec<_>>()).then_some(())
    })
    .await;
}

fn station(contract: &str, number: u64, stands: u32, bikes: u32, last_update: i64) -> Station {
    Station {
        number: StationId::Number(number),
        contract_name: contract.into(),
        name: format!("{number:05} - {contract}"),
        address: format!("{number} RUE DE {}", contract.to_uppercase()),
        position: Position {
            lat: 45.0 + number as f64 / 1000.0,
            lng: 4.0,
        },
        banking: true,
        bonus: false,
        bike_stands: 40,
        available_bike_stands: stands,
        available_bikes: bikes,
        status: Status::Open,
        last_update: Some(last_update),
        snapshot_at: Some(last_update),
        bikes_by_type: None,
        bikes_out_of_service: None,
        docks_out_of_service: None,
        is_returning: None,
    }
}

fn producer(bootstrap: &str) -> KafkaSink {
    KafkaSink::new(
        &KafkaArgs::new(bootstrap).client_config(SINK_DEFAULTS),
        None,
    )
    .unwrap()
}

/// Publishes `stations` and waits, without blocking the runtime, until every one is delivered.
async fn publish(sink: &KafkaSink, topic: &str, stations: &[Station]) {
    for s in stations {
        let key = s.key();
        let payload = s.to_json();
        sink.enqueue(
            &OutRecord {
                topic,
                key: key.as_str().as_bytes(),
                payload: &payload,
                timestamp_ms: s.last_update,
                headers: &[],
            },
            0,
        )
        .unwrap();
    }
    assert_eq!(flush_async(sink, TIMEOUT).await, 0, "records delivered");
}

fn publish_raw(sink: &KafkaSink, topic: &str, key: &str, payload: &[u8]) {
    sink.enqueue(
        &OutRecord {
            topic,
            key: key.as_bytes(),
            payload,
            timestamp_ms: None,
            headers: &[],
        },
        0,
    )
    .unwrap();
}

/// The changes a correct monitor prints for `records` (in order), by station: one per pair of
/// consecutive newer records with a different count.
fn expected_changes(records: &[Station], field: TrackedField) -> Vec<StationChange> {
    let mut last: HashMap<String, Station> = HashMap::new();
    let mut out = Vec::new();
    for s in records {
        let key = s.key().to_string();
        if let Some(prev) = last.get(&key) {
            if s.last_update <= prev.last_update {
                continue;
            }
            // A count unknown on either side is no change.
            if let (Some(previous), Some(current)) = (field.of(prev), field.of(s))
                && previous != current
            {
                out.push(StationChange {
                    key: s.key(),
                    contract: s.contract_name.clone(),
                    address: s.address.clone(),
                    name: s.name.clone(),
                    field,
                    previous,
                    current,
                    last_update: s.last_update,
                });
            }
        }
        last.insert(key, s.clone());
    }
    out
}

fn init_tracing() {
    velib_testkit::test_logs("");
}
