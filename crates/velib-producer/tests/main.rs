//! velib-producer against real Kafka-protocol brokers: the in-process mock cluster for most
//! tests, tansu (started by `cargo xtask test`) for the end-to-end run of the binary.

mod partitioning;
mod publish;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use velib_model::Snapshot;
use velib_producer::{KafkaArgs, KafkaSink, SINK_DEFAULTS};
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
    (0..polls).map(|_| sim.next_snapshot()).collect()
}

fn sink(bootstrap: &str) -> KafkaSink {
    KafkaSink::new(
        &KafkaArgs::new(bootstrap).client_config(SINK_DEFAULTS),
        None,
    )
    .unwrap()
}

/// Collects what the loop prints, and lets a test wait for a number of lines.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// Logs to the test's captured output, filtered by `RUST_LOG`.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

const TIMEOUT: Duration = Duration::from_secs(30);
