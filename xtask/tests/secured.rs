//! `create-topics` on a TLS listener (a TLS proxy in front of tansu, with a CA made by the
//! test), configured by the same properties file as the binaries.

use std::path::Path;
use std::process::{Command, Output};
use velib_testkit::secure::{SecuredTansu, TestCa};
use velib_testkit::unique_name;

fn properties(dir: &Path, bootstrap: &str, ca: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{}.properties", unique_name("client")));
    std::fs::write(
        &path,
        format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SSL\nssl.ca.location={}\n",
            ca.display()
        ),
    )
    .unwrap();
    path
}

/// `create-topics --kafka-config FILE` for three fresh topic names (no other Kafka flag).
fn create_topics(config: &Path, stations: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("create-topics")
        .arg("--kafka-config")
        .arg(config)
        .args(["--stations-topic", stations])
        .args(["--events-topic", &unique_name("ct-events")])
        .args(["--dlq-topic", &unique_name("ct-dlq")])
        .args(["--partitions", "2", "--timeout", "20s"])
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask create-topics")
}

fn report(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
#[ignore = "needs tansu: run `cargo xtask test`"]
fn create_topics_through_tls_with_the_shared_properties_file() {
    let ca = TestCa::generate("create-topics");
    let broker = SecuredTansu::tls(&ca);
    let config = properties(ca.dir(), broker.bootstrap(), &ca.ca_file());
    let stations = unique_name("ct-stations");
    let output = create_topics(&config, &stations);
    assert!(output.status.success(), "{}", report(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&stations))
        .unwrap_or_else(|| panic!("{}", report(&output)))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..4], ["2", "1", "created"], "{}", report(&output));
}

#[test]
#[ignore = "needs tansu: run `cargo xtask test`"]
fn create_topics_names_an_untrusted_certificate() {
    let ca = TestCa::generate("served");
    let other = TestCa::generate("other");
    let broker = SecuredTansu::tls(&ca);
    let config = properties(other.dir(), broker.bootstrap(), &other.ca_file());
    let output = create_topics(&config, &unique_name("ct-stations"));
    assert!(!output.status.success(), "{}", report(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The cause, not a timeout: "no Kafka broker answered" would mean the wait ran out.
    assert!(
        stderr.contains("TLS certificate is not trusted"),
        "{}",
        report(&output)
    );
    assert!(
        !stderr.contains("no Kafka broker answered"),
        "{}",
        report(&output)
    );
}
