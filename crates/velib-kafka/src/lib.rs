//! The Kafka layer every velib binary shares, so the producer, the monitor, the alerts consumer
//! and the live map each hold only their own job.
//!
//! - [`config`]: [`KafkaArgs`], the `--bootstrap-servers` / `--kafka-config` / `-X key=value`
//!   flags, who wins between them, and secret redaction; [`properties`] reads Kafka client
//!   properties files (`${env:NAME}`, Java's JAAS line).
//! - [`connection`]: failures no retry fixes (refused credentials, an untrusted certificate, a
//!   TLS/plaintext mismatch) told apart from a broker that is merely down, and librdkafka's log
//!   lines forwarded to `tracing`; [`ReportingContext`] is the client context that does both.
//! - [`sink`]: [`RecordSink`], where any velib record is published, and [`KafkaSink`], its
//!   idempotent producer.
//! - [`service`]: what every long-running binary does the same way before its `run` call:
//!   logging, the metrics endpoint, the shutdown signal ([`service::ServiceArgs::start`]).
//! - [`duration`]: the duration flags' parser (`500ms`, `15m`, `1.5h`).
//! - [`group`]: a consumer group as its coordinator describes it, and the partitions it left
//!   without an owner.
//! - [`RateLimited`]: one log line per period for failures that come by the thousand.
//! - [`crash`]: a clear line on stderr when native code (librdkafka) crashes the process.
//!
//! velib's own topics (which ones, their partitions and configs) are not planned here but in
//! velib-topics, which uses this crate's client settings.
//!
//! All the `unsafe` code is in [`crash`], the last word on a fatal signal.

#![deny(unsafe_code)]

pub mod config;
pub mod connection;
pub mod crash;
pub mod duration;
pub mod group;
pub mod properties;
mod rate_limit;
pub mod service;
pub mod sink;

pub use config::KafkaArgs;
pub use connection::{ConnectionError, ConnectionGuard, ReportingContext};
pub use properties::{PropertiesError, PropertiesFile};
pub use rate_limit::RateLimited;
pub use sink::{
    DeliveryCallback, EnqueueError, KafkaSink, Landed, NO_AUTO_CREATE, OutRecord, RecordSink,
    SINK_DEFAULTS, SinkCounts, base_record, flush_async, send_waiting,
};
