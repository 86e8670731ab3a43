//! Apache Kafka for `cargo xtask kafka`, `test` and `bench`: the jars fetched with Maven into
//! velib's cache the first time, and KRaft nodes started from them (the test support's
//! [`velib_testkit::kafka`] does both, so tests start nodes the same way).

use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use velib_testkit::kafka::{KafkaCluster, KafkaOptions};

/// The jar directory, fetched first if it is not in the cache (saying so, and how long it took).
pub fn ensure_installed() -> Result<PathBuf> {
    let started = Instant::now();
    let mut fetched = false;
    let libs = velib_testkit::kafka::ensure_installed(|what| {
        fetched = true;
        println!("==> {what}");
    })
    .map_err(|e| anyhow!(e))?;
    if fetched {
        println!(
            "==> fetched Apache Kafka in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(libs)
}

/// Starts `nodes` plain nodes and says how long they took to answer.
pub fn start(libs: &Path, nodes: usize) -> Result<KafkaCluster> {
    start_with(
        libs,
        &KafkaOptions {
            nodes,
            ..KafkaOptions::default()
        },
    )
}

/// Starts a cluster with `options` and says how long it took to answer metadata requests.
pub fn start_with(libs: &Path, options: &KafkaOptions) -> Result<KafkaCluster> {
    let started = Instant::now();
    let cluster = KafkaCluster::start(libs, options).map_err(|e| anyhow!(e))?;
    println!(
        "==> Apache Kafka {} up ({} node{}) in {:.1} s (logs: {})",
        velib_testkit::kafka::KAFKA_VERSION,
        cluster.len(),
        if cluster.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        cluster.dir().display()
    );
    Ok(cluster)
}

/// The Python of a virtualenv holding the tutorial's client, installed as the tutorial says
/// (kafka-python alone, from `bench/requirements.txt`) into velib's cache the first time, for
/// the tests that run the tutorial's scripts against velib.
pub fn ensure_kafka_python() -> Result<PathBuf> {
    let requirements = crate::workspace_root()
        .join("bench")
        .join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("read {}", requirements.display()))?;
    let venv = velib_testkit::kafka::cache_dir()
        .map_err(|e| anyhow!(e))?
        .join("tutorial-venv");
    let python = venv.join("bin").join("python");
    // The requirements it was made from: changed requirements make a new one.
    let stamp = venv.join("velib-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    println!(
        "==> installing kafka-python into {} (first time only)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        "python3 -m venv",
        Command::new(&system).args(["-m", "venv"]).arg(&venv),
    )
    .context("python3 with its venv module is needed for the tutorial's scripts")?;
    crate::run(
        "pip install -r bench/requirements.txt",
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, &wanted)?;
    Ok(python)
}
