//! Publishes bike-share stations to Kafka.
//!
//! This crate also holds what every velib binary shares about Kafka: [`KafkaArgs`], the
//! `--bootstrap-servers` / `-X key=value` flags and the rule for who wins between them.

pub mod kafka_config;

pub use kafka_config::KafkaArgs;
