//! Watches station records and prints every change: the tutorial's `velib-monitor-stations.py`,
//! done properly.
//!
//! - [`run`] ([`engine`]): one monitor, with either [`Guarantee`]; what the binary calls.
//! - [`process`]: what both engines do with one record, and the settings and reports they share.
//! - [`at_least_once`]: the engine without transactions, and its delivery guarantee.
//! - [`exactly_once`]: the transactional engine, and its guarantee; its state changelog is
//!   `state.rs`, its default identity [`slot`].
//! - [`detect`]: pure change detection keyed by station, ordered by each record's snapshot.
//! - [`ledger`]: which consumed offsets are safe to commit while events are still in flight.
//! - [`stream`]: the consumer behind [`StationStream`], with rdkafka's [`KafkaStream`].
//! - `watch.rs`: a member owning nothing rejoins a group that left partitions without an owner.
//!
//! Neither engine imports the other: they share [`process`], which imports neither.
//! Empty-station events are published through velib-kafka's [`RecordSink`]
//! (`velib_kafka::KafkaSink`), so there is one producer implementation in velib.
//!
//! [`RecordSink`]: velib_kafka::RecordSink

#![forbid(unsafe_code)]

pub mod at_least_once;
pub mod detect;
pub mod engine;
pub mod exactly_once;
pub mod ledger;
pub mod process;
pub mod slot;
mod state;
pub mod stream;
mod watch;

pub use detect::{Crossed, Detector, Remembered, Verdict};
pub use engine::{Guarantee, run};
pub use exactly_once::{DEFAULT_STATE_TOPIC, ExactlyOnceConfig, Progress, run_exactly_once};
pub use ledger::Ledger;
pub use process::{
    DlqFailure, MonitorConfig, MonitorError, MonitorReport, OutputFormat, StatsSettings,
};
pub use slot::InstanceSlot;
pub use stream::{KafkaStream, STREAM_DEFAULTS, StationStream};

use std::sync::Arc;
use std::time::Duration;
use velib_kafka::{KafkaArgs, KafkaSink, SINK_DEFAULTS};

/// The default consumer group, as in the tutorial.
pub const DEFAULT_GROUP: &str = "velib-monitor-stations";

/// A monitor's Kafka parts, wired together: the consumer, the events producer reporting to the
/// ledger, and the ledger.
#[derive(Debug)]
pub struct KafkaParts {
    /// The consumer, subscribed.
    pub stream: KafkaStream,
    /// The producer of events and dead-letter copies.
    pub sink: KafkaSink,
    /// The ledger both report to.
    pub ledger: Arc<Ledger>,
}

/// Builds the consumer (group `group_id`, subscribed to `config.topic`) and the events
/// producer from the shared Kafka flags. With `lag_metrics`, the consumer's statistics also
/// feed the `velib_monitor_consumer_lag` gauges.
///
/// # Errors
///
/// An invalid client configuration, naming the property.
pub fn connect(
    kafka: &KafkaArgs,
    group_id: &str,
    config: &MonitorConfig,
    lag_metrics: bool,
) -> Result<KafkaParts, rdkafka::error::KafkaError> {
    let ledger = Ledger::new(Duration::from_secs(10));
    let sink = KafkaSink::new(&kafka.client_config(SINK_DEFAULTS), Some(ledger.callback()))?;
    let mut consumer_config = kafka.client_config(STREAM_DEFAULTS);
    if consumer_config.get("group.id").is_none() {
        consumer_config.set("group.id", group_id);
    }
    // Statistics every few seconds tell when the cluster is reachable again after an outage,
    // even on a topic where nothing arrives (and give the lag, when asked).
    if consumer_config.get("statistics.interval.ms").is_none() {
        consumer_config.set("statistics.interval.ms", "5000");
    }
    let stream = KafkaStream::subscribe(
        &consumer_config,
        &config.topic,
        Arc::clone(&ledger),
        lag_metrics,
    )?;
    Ok(KafkaParts {
        stream,
        sink,
        ledger,
    })
}
