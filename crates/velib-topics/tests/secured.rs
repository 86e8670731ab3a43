//! `velib-topics create` on the secured listeners of the Apache Kafka node `cargo xtask test` starts
//! (TLS with a CA made for the run; SASL/SCRAM-SHA-512), configured by the same properties file
//! as the binaries.

use std::path::Path;
use std::process::{Command, Output};
use velib_testkit::kafka::TEST_SCRAM_USER;
use velib_testkit::secure::{SecuredListeners, TestCa};
use velib_testkit::unique_name;

fn properties(dir: &Path, bootstrap: &str, ca: &Path) -> std::path::PathBuf {
    write_properties(
        dir,
        &format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SSL\nssl.ca.location={}\n",
            ca.display()
        ),
    )
}

fn write_properties(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{}.properties", unique_name("client")));
    std::fs::write(&path, text).unwrap();
    path
}

/// The table row of `topic`: name, partitions, replication factor, outcome…
fn row(output: &Output, topic: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.starts_with(topic))
        .unwrap_or_else(|| panic!("{}", report(output)))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `velib-topics create --kafka-config FILE` for three fresh topic names (no other Kafka flag).
fn create_topics(config: &Path, stations: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_velib-topics"))
        .arg("create")
        .arg("--kafka-config")
        .arg(config)
        .args(["--stations-topic", stations])
        .args(["--events-topic", &unique_name("ct-events")])
        .args(["--dlq-topic", &unique_name("ct-dlq")])
        .args(["--state-topic", &unique_name("ct-state")])
        .args(["--partitions", "2", "--timeout", "20s"])
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run velib-topics create")
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
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn create_topics_through_tls_with_the_shared_properties_file() {
    let listeners = SecuredListeners::from_env();
    let dir = std::env::temp_dir();
    let config = properties(&dir, &listeners.tls_bootstrap, &listeners.tls_ca);
    let stations = unique_name("ct-stations");
    let output = create_topics(&config, &stations);
    std::fs::remove_file(&config).unwrap();
    assert!(output.status.success(), "{}", report(&output));
    assert_eq!(row(&output, &stations)[1..4], ["2", "1", "created"]);
}

#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn create_topics_logs_in_with_scram() {
    let listeners = SecuredListeners::from_env();
    let config = write_properties(
        &std::env::temp_dir(),
        &format!(
            "bootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.username={TEST_SCRAM_USER}\n\
             sasl.password={}\n",
            listeners.sasl_bootstrap, listeners.scram_password
        ),
    );
    let stations = unique_name("ct-stations");
    let output = create_topics(&config, &stations);
    std::fs::remove_file(&config).unwrap();
    assert!(output.status.success(), "{}", report(&output));
    assert_eq!(row(&output, &stations)[1..4], ["2", "1", "created"]);
    assert!(!report(&output).contains(&listeners.scram_password));
}

#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn create_topics_names_an_untrusted_certificate() {
    let listeners = SecuredListeners::from_env();
    let other = TestCa::generate("other");
    let config = properties(other.dir(), &listeners.tls_bootstrap, &other.ca_file());
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
