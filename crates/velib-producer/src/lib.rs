//! Publishes bike-share stations to Kafka: the tutorial's `velib-get-stations.py`, done
//! properly.
//!
//! [`run`] polls a [`StationSource`](velib_source::StationSource) at a fixed rate and queues
//! every station, as its v1 JSON keyed by [`StationKey`](velib_model::StationKey), on a
//! [`RecordSink`](velib_kafka::RecordSink) ([`KafkaSink`](velib_kafka::KafkaSink) in the
//! binary). The binary `velib-producer` only parses flags and wires these together; the Kafka
//! plumbing it shares with the other binaries is in `velib-kafka`.

#![forbid(unsafe_code)]

mod changed;
pub mod poll;

pub use changed::ChangeFilter;
pub use poll::{ProduceReport, ProducerConfig, ProducerError, run};
