//! velib-producer against real Kafka-protocol brokers: the in-process mock cluster for most
//! tests, Apache Kafka (started by `cargo xtask test`) for the end-to-end run of the binary.

mod cluster;
mod failures;
mod partitioning;
mod publish;
mod records;
mod secured;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use velib_kafka::{KafkaArgs, KafkaSink, SINK_DEFAULTS};
use velib_model::Snapshot;
use velib_source::{SimulateConfig, SimulateSource};

/// A small simulated network: 3 contracts with colliding station numbers.
fn sim_config(stations: usize) -> SimulateConfig {
    SimulateConfig {
        seed: 7,
        stations,
        contracts: 3,
        change_ratio: 0.2,
        start_ms: Some(1_700_000_000_000),
        ..SimulateConfig::default()
    }
}

/// The snapshots the producer will publish for `sim_config(stations)`, computed independently.
fn expected_snapshots(stations: usize, polls: usize) -> Vec<Snapshot> {
    let mut sim = SimulateSource::new(sim_config(stations));
    (0..polls).map(|_| sim.next_snapshot().stamped()).collect()
}

fn sink(bootstrap: &str) -> KafkaSink {
    KafkaSink::new(
        &KafkaArgs::new(bootstrap).client_config(SINK_DEFAULTS),
        None,
    )
    .unwrap()
}

/// What the loop prints, shared with the test.
type Output = velib_testkit::Captured;

/// Key → set of partitions its records landed in.
fn partitions_by_key(records: &[rdkafka::message::OwnedMessage]) -> HashMap<String, Vec<i32>> {
    use rdkafka::Message;
    let mut map: HashMap<String, Vec<i32>> = HashMap::new();
    for m in records {
        let parts = map.entry(velib_testkit::key_str(m).to_owned()).or_default();
        if !parts.contains(&m.partition()) {
            parts.push(m.partition());
        }
    }
    map
}

fn init_tracing() {
    velib_testkit::test_logs("");
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Every async test of this binary holds the gate for its whole run: shared by most, exclusive
/// for the tests that take mock brokers down and back up, and for the one that starts Apache
/// Kafka nodes on ports it picks. A mock broker that comes back re-listens on its old port, and
/// while it is down any port pick in this process (a node's listener, a client's source port)
/// can take that port, which makes librdkafka abort the whole binary. (tokio's lock: held across
/// awaits, shared by the tests' separate runtimes, not poisoned by a failing test.)
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The gate, alone: see [`GATE`].
async fn alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// The gate, shared: see [`GATE`].
async fn beside_others() -> tokio::sync::RwLockReadGuard<'static, ()> {
    GATE.read().await
}
