//! Publishes bike-share stations to Kafka: the tutorial's `velib-get-stations.py`, done
//! properly.
//!
//! [`run`] polls a [`StationSource`](velib_source::StationSource) at a fixed rate and queues
//! every station, as its v1 JSON keyed by [`StationKey`](velib_model::StationKey), on a
//! [`StationSink`]; [`KafkaSink`] is the idempotent rdkafka implementation. The binary
//! `velib-producer` only parses flags and wires these together.
//!
//! This crate also holds what every velib binary shares about Kafka: [`KafkaArgs`], the
//! `--bootstrap-servers` / `-X key=value` flags and the rule for who wins between them.

mod changed;
pub mod cli;
pub mod connection;
pub mod kafka_config;
pub mod poll;
pub mod properties;
pub mod sink;

pub use changed::ChangeFilter;
pub use connection::{ConnectionError, ConnectionGuard};
pub use kafka_config::KafkaArgs;
pub use poll::{ProduceReport, ProducerConfig, ProducerError, run};
pub use properties::{PropertiesError, PropertiesFile};
pub use sink::{
    DeliveryCallback, EnqueueError, KafkaSink, Landed, OutRecord, SINK_DEFAULTS, SinkCounts,
    StationSink, flush_async,
};
