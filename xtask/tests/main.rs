//! End-to-end tests of `cargo xtask create-topics` against Apache Kafka: the node that
//! `cargo xtask test` starts (its address in `VELIB_KAFKA_BOOTSTRAP`). They run the built
//! `xtask` binary as a user would, on topic names of their own.

mod create_topics;
mod secured;
mod tutorial;
