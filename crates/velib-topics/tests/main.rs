//! End-to-end tests of `velib-topics create` against Apache Kafka: the node that `cargo xtask
//! test` starts (its address in `VELIB_KAFKA_BOOTSTRAP`). They run the built binary as a user
//! would, on topic names of their own.

mod create_topics;
mod secured;
