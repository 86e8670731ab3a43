//! End-to-end tests against Apache Kafka (the node `cargo xtask test` starts, its address in
//! `VELIB_KAFKA_BOOTSTRAP`): the tutorial's own scripts reading and writing velib's topics.

mod tutorial;
