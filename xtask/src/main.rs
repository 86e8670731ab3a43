//! velib's project tasks, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! - `test`: everything CI checks — formatting, clippy with warnings as errors, the library docs,
//!   and every test, including the `#[ignore]`d ones that need Apache Kafka, against a node it
//!   starts and stops (the cluster tests and the soak start nodes of their own). The test
//!   binaries run two at a time, longest first ([`lanes`]). The exactly-once soak runs 40 s
//!   there; long runs have their own tasks (`soak`, `fuzz`).
//! - `soak`: the exactly-once soak of random faults and data losses alone, on a node of its
//!   own, ten minutes by default.
//! - `demo`: the producer, two monitors and alerts (dry run) on an embedded broker
//!   (`velib_bench::demo`).
//! - `kafka`: Apache Kafka (one node, or `--nodes 3`) on 127.0.0.1 for running the binaries by
//!   hand, until Ctrl-C; fetched with Maven the first time.
//! - `bench`: the benchmarks (`velib_bench::bench`), rebuilt with `--release`, with results in
//!   `bench/results/` (`--quick`: about two minutes).
//! - `fuzz`: the coverage-guided fuzz targets of `fuzz/` for a given time each (`--time`),
//!   seeded with the real day.
//! - `create-topics`: the stations, events and dead-letter topics, created or brought to what
//!   is asked (partitions, configs) through the Admin API; safe to run again (`velib_topics`).
//!
//! Like rust-analyzer's xtask, this is one binary that parses the tasks' flags and dispatches:
//! the benchmarks and the demo are velib-bench's (`bench/`), the topic plan is velib-topics'.
//! What stays here is what the tasks install and start besides Rust (Apache Kafka and
//! kafka-python in [`kafka`], chromium and the browser test's driver in [`browser`], the nightly
//! toolchain and cargo-fuzz in [`fuzz`]), so one place owns every such step. A fresh machine
//! needs nothing but the Rust toolchain, gcc, make and perl; `test`, `kafka` and `bench` also
//! need Java >= 17 and Maven, for Apache Kafka.

#![forbid(unsafe_code)]

mod browser;
mod fuzz;
mod kafka;
mod lanes;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use velib_testkit::kafka::{KafkaOptions, Listener};
use velib_testkit::secure;

#[derive(Parser)]
#[command(about = "velib's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs: fmt, clippy, docs, and all tests, on Apache Kafka for those that
    /// need a broker of their own.
    Test {
        /// Extra arguments passed to `cargo test` after `--` (for example a test name filter).
        #[arg(trailing_var_arg = true)]
        test_args: Vec<String>,
    },
    /// The main job on an embedded default: an in-process Kafka cluster, the producer on a
    /// simulated city (or a real source), two monitors and the alerts consumer in dry run.
    Demo(velib_bench::demo::Args),
    /// Measure velib against the bare rdkafka clients and the tutorial's kafka-python scripts;
    /// writes bench/results/RESULTS.md and results.json (build with --release).
    Bench(velib_bench::bench::Args),
    /// Start Apache Kafka on 127.0.0.1 (fetched with Maven the first time), print its
    /// bootstrap servers, and stop it on Ctrl-C or SIGTERM.
    Kafka {
        /// Nodes, each a broker and a KRaft controller; with 3, topics default to replication
        /// factor 3 and `min.insync.replicas=2`.
        #[arg(long, env = "VELIB_KAFKA_NODES", default_value_t = 1,
              value_parser = clap::value_parser!(u8).range(1..=5))]
        nodes: u8,
    },
    /// Create or update the stations, events and dead-letter topics (partitions, configs);
    /// safe to run again.
    CreateTopics(Box<velib_topics::Args>),
    /// The exactly-once soak alone, long: random faults (joins, leaves, kills, freezes) against
    /// monitor processes of two groups, and data losses (the broker wiped, the stations topic
    /// created again), on an Apache Kafka node of its own, then the exact check per group
    /// (`cargo xtask test` runs it for 40 s).
    Soak {
        /// How long the faults go on, in seconds.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// The soak's random seed, to replay one (each run prints its seed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the fuzz targets of `fuzz/` (cargo-fuzz, nightly; both installed if missing), seeded
    /// with the real day, and print executions, coverage and findings per target.
    Fuzz(fuzz::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Test { test_args } => test(&test_args),
        Task::Soak { secs, seed } => soak(secs, seed),
        Task::Kafka { nodes } => kafka(usize::from(nodes)),
        Task::Demo(args) => velib_bench::demo::run(args),
        Task::Bench(args) => bench(args),
        Task::CreateTopics(args) => {
            velib_kafka::service::init_tracing_with("warn");
            velib_topics::run(*args)
        }
        Task::Fuzz(args) => fuzz::run(args),
    }
}

/// The workspace root, whatever directory `cargo xtask` was run from.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    println!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn test(test_args: &[String]) -> Result<()> {
    // Fetch the broker first: on a fresh machine a missing Java or Maven should be reported
    // before minutes of compiling.
    let libs = kafka::ensure_installed()?;
    let tutorial_python = kafka::ensure_kafka_python()?;
    browser::ensure_installed()?;

    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy (warnings are errors)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "cargo doc (warnings are errors)",
        cargo()
            .args([
                "doc",
                "--workspace",
                "--no-deps",
                "--locked",
                "--exclude",
                "xtask",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Built before the broker starts, so its JVM does not compete with the compiler.
    println!("==> cargo test --no-run");
    let (mut jobs, times) = lanes::test_binaries(
        cargo().args(["test", "--workspace", "--locked", "--no-run"]),
        test_args,
    )?;
    let mut doc_tests = cargo();
    doc_tests
        .args(["test", "--workspace", "--locked", "--doc", "--"])
        .arg("--include-ignored")
        .args(test_args);
    jobs.push(lanes::Job::new("doc-tests", doc_tests));
    with_apache_kafka(
        &libs,
        "the tests, including those that need Apache Kafka",
        |env| {
            let mut env = env.to_vec();
            env.push(("VELIB_TUTORIAL_PYTHON".into(), tutorial_python.into()));
            lanes::run(jobs, &env, &times)
        },
    )
    // Long runs have commands of their own, so that this one stays within minutes: the
    // ten-minute soak (`cargo xtask soak`) and fuzzing (`cargo xtask fuzz`).
}

/// `cargo xtask bench`: the benchmarks of velib-bench, in an optimised build, with Apache Kafka
/// and kafka-python installed and started here when a benchmark asks for them.
fn bench(args: velib_bench::bench::Args) -> Result<()> {
    // `cargo xtask` builds without optimisations; benchmarks of such a build mean nothing, so
    // build and run the optimised one instead.
    if cfg!(debug_assertions) && std::env::var_os("VELIB_BENCH_ALLOW_DEBUG").is_none() {
        println!("==> building and running the benchmarks with --release");
        let status = cargo()
            .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
            .args(std::env::args_os().skip(1))
            .status()
            .context("could not run cargo run --release")?;
        if !status.success() {
            bail!("the release benchmark run failed ({status})");
        }
        return Ok(());
    }
    velib_bench::bench::run(
        args,
        &velib_bench::bench::Setup {
            apache_kafka: &|root| {
                kafka::start_with(
                    &kafka::ensure_installed()?,
                    &velib_testkit::kafka::KafkaOptions {
                        nodes: 1,
                        data_root: root.map(std::path::Path::to_path_buf),
                        ..velib_testkit::kafka::KafkaOptions::default()
                    },
                )
            },
            kafka_python: &kafka::ensure_kafka_python,
        },
    )
}

/// `cargo xtask soak`: the exactly-once soak alone, for `secs` seconds. It starts the Apache
/// Kafka node it wipes itself, from the jars named here.
fn soak(secs: u64, seed: Option<u64>) -> Result<()> {
    let libs = kafka::ensure_installed()?;
    let mut test = cargo();
    test.args(["test", "--locked", "-p", "velib-monitor", "--test", "main"])
        .args(["--", "--include-ignored", "--exact"])
        .arg("exactly_once::exactly_once_through_a_soak_of_random_faults")
        .env("VELIB_EOS_SOAK_SECS", secs.to_string())
        .env(velib_testkit::kafka::LIBS_ENV, &libs);
    if let Some(seed) = seed {
        test.env("VELIB_EOS_SEED", seed.to_string());
    }
    run(&format!("the exactly-once soak ({secs} s)"), &mut test)
}

/// Runs `tests` against one Apache Kafka node started for it, with a SCRAM user created at
/// format time and a TLS listener whose certificate a CA made for this run signed; `tests` is
/// given the environment that tells the tests where each listener is.
fn with_apache_kafka(
    libs: &std::path::Path,
    what: &str,
    tests: impl FnOnce(&[(String, OsString)]) -> Result<()>,
) -> Result<()> {
    let ca = velib_testkit::secure::TestCa::generate("xtask-test");
    let password = velib_testkit::unique_name("scram");
    let cluster = kafka::start_with(
        libs,
        &KafkaOptions {
            nodes: 1,
            scram_password: Some(password.clone()),
            tls_keystore_pem: Some(ca.server_keystore_file()),
            properties: Vec::new(),
            data_root: None,
        },
    )?;
    let listener = |l| {
        cluster
            .bootstrap_for(l)
            .expect("the listener was asked for")
    };
    println!("==> {what}");
    let env: Vec<(String, OsString)> = vec![
        (velib_testkit::KAFKA_ENV.into(), cluster.bootstrap().into()),
        (velib_testkit::kafka::LIBS_ENV.into(), libs.into()),
        (
            secure::SASL_BOOTSTRAP_ENV.into(),
            listener(Listener::Sasl).into(),
        ),
        (secure::SCRAM_PASSWORD_ENV.into(), password.into()),
        (
            secure::TLS_BOOTSTRAP_ENV.into(),
            listener(Listener::Tls).into(),
        ),
        (secure::TLS_CA_ENV.into(), ca.ca_file().into()),
    ];
    let outcome = tests(&env);
    cluster.stop(STOP_GRACE);
    outcome
}

/// How long nodes get to stop cleanly after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn kafka(nodes: usize) -> Result<()> {
    let libs = kafka::ensure_installed()?;
    let cluster = kafka::start(&libs, nodes)?;
    println!(
        "Apache Kafka is up; bootstrap servers: {}",
        cluster.bootstrap()
    );
    println!("  export KAFKA_BOOTSTRAP_SERVERS={}", cluster.bootstrap());
    println!("jars: {}", libs.display());
    println!("Ctrl-C stops it (its storage is temporary: topics and records go with it).");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async { velib_kafka::service::shutdown_signal().await });
    println!("stopping Apache Kafka");
    if !cluster.stop(STOP_GRACE) {
        println!("some nodes did not stop within {STOP_GRACE:?} and were killed");
    }
    Ok(())
}
