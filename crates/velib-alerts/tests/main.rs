//! velib-alerts integration tests: one binary (see STYLE.md), talking to real servers over TCP
//! on 127.0.0.1: an SMTP server ([`smtp_sink`]) and librdkafka's mock Kafka cluster, or
//! Apache Kafka for the `#[ignore]`d tests run by `cargo xtask test`.

mod consumer;
mod kafka;
mod mail;
mod secured;
mod smtp_sink;
mod stalls;
mod support;
