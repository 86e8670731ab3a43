//! velib's benchmarks and demo: developers' programs, never shipped, run through
//! `cargo xtask bench` and `cargo xtask demo`.
//!
//! - [`bench`](mod@bench): velib measured against the bare rdkafka clients and the tutorial's kafka-python
//!   scripts; results in `bench/results/`.
//! - [`demo`]: the producer, two monitors, the alerts consumer (dry run) and the live map on an
//!   embedded broker, until Ctrl-C.
//!
//! Each module has one entry point, `run(args)`, whose flags (`Args`) xtask puts under its
//! subcommand. Installing and starting what is not Rust (Apache Kafka, kafka-python) stays
//! with xtask, which owns every such step of the project's tasks; the benchmarks ask for it
//! through [`bench::Setup`].
//!
//! The crate sits outside `crates/` and out of the workspace's `default-members`, so
//! `cargo build` of the shipped binaries does not build it.

// One call to glibc's `malloc_trim` (bench/detect.rs) is this crate's only unsafe code.
#![deny(unsafe_code)]

pub mod bench;
pub mod demo;

use std::path::PathBuf;

/// The workspace root, whatever directory the task was run from.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("velib-bench lives in the workspace root's bench/")
        .to_path_buf()
}
