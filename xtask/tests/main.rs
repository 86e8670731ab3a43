//! End-to-end tests of `cargo xtask create-topics` against a real Kafka-protocol broker: the
//! tansu broker that `cargo xtask test` starts (its address in `VELIB_TANSU_BOOTSTRAP`). They
//! run the built `xtask` binary as a user would, on topic names of their own.

mod create_topics;
mod secured;
