//! velib's project tasks, run as `cargo xtask <task>` (the alias is in `.cargo/config.toml`).
//!
//! - `test`: everything CI checks — formatting, clippy with warnings as errors, the library docs,
//!   and every test, including the `#[ignore]`d ones that need a separate broker, against a
//!   tansu broker it starts and stops.
//! - `demo`: the producer, two monitors and alerts (dry run) on an embedded broker.
//! - `broker`: a tansu broker on 127.0.0.1 for running the binaries by hand, until Ctrl-C.
//! - `bench`: the benchmarks, with results in `bench/results/` (`--quick`: about two minutes).
//! - `create-topics`: the stations, events and dead-letter topics, created or brought to what
//!   is asked (partitions, configs) through the Admin API; safe to run again.
//!
//! Like rust-analyzer's xtask, this is one binary with few dependencies, so it builds quickly
//! on a fresh machine and needs nothing but the Rust toolchain, gcc and make.

mod bench;
mod browser;
mod demo;
mod tansu;
mod topics;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "velib's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs: fmt, clippy, docs, and all tests against a fresh tansu broker.
    Test {
        /// Extra arguments passed to `cargo test` after `--` (for example a test name filter).
        #[arg(trailing_var_arg = true)]
        test_args: Vec<String>,
    },
    /// The main job on an embedded default: an in-process Kafka cluster, the producer on a
    /// simulated city (or a real source), two monitors and the alerts consumer in dry run.
    Demo(demo::Args),
    /// Measure velib against the bare rdkafka clients and the tutorial's kafka-python scripts;
    /// writes bench/results/RESULTS.md and results.json (build with --release).
    Bench(bench::Args),
    /// Start a tansu broker on 127.0.0.1, print its bootstrap address, and stop it on Ctrl-C.
    Broker {
        /// The port to listen on; a free one is picked when absent.
        #[arg(long, env = "VELIB_BROKER_PORT")]
        port: Option<u16>,
    },
    /// Create or update the stations, events and dead-letter topics (partitions, configs);
    /// safe to run again.
    CreateTopics(Box<topics::Args>),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Test { test_args } => test(&test_args),
        Task::Broker { port } => broker(port),
        Task::Demo(args) => demo::run(args),
        Task::Bench(args) => bench::run(args),
        Task::CreateTopics(args) => topics::run(*args),
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
    // Install the out-of-process broker first: on a fresh machine it is the slow step, and a
    // failure there should be reported before minutes of compiling.
    let tansu_bin = tansu::ensure_installed()?;
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

    let broker = tansu::start(&tansu_bin, None)?;
    println!(
        "==> tansu broker at {} (log: {})",
        broker.bootstrap(),
        broker.log_path().display()
    );
    println!("==> cargo test, including the tests that need the tansu broker");
    let status = cargo()
        .args(["test", "--workspace", "--locked", "--", "--include-ignored"])
        .args(test_args)
        .env("VELIB_TANSU_BOOTSTRAP", broker.bootstrap())
        .env("VELIB_TANSU_BIN", &tansu_bin)
        .status()
        .context("could not start cargo test")?;
    drop(broker);
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

fn broker(port: Option<u16>) -> Result<()> {
    let bin = tansu::ensure_installed()?;
    let broker = tansu::start(&bin, port)?;
    println!(
        "tansu is listening; bootstrap servers: {}",
        broker.bootstrap()
    );
    println!("  export KAFKA_BOOTSTRAP_SERVERS={}", broker.bootstrap());
    println!("log: {}", broker.log_path().display());
    println!("Ctrl-C stops it (its storage is in memory: topics and records go with it).");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(shutdown_signal());
    println!("stopping tansu");
    drop(broker);
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
