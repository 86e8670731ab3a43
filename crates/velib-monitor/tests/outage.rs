//! The monitor binary while its cluster is away: one line when it goes, one when it is back,
//! nothing in between, however many times librdkafka retries.

use crate::TIMEOUT;
use tokio::process::Command;
use velib_testkit::child::Child;
use velib_testkit::{MockKafka, unique_name, unreachable_address};

/// Lines at warning level or above, from velib (librdkafka's own are at debug level).
fn warnings(stderr: &[String]) -> Vec<String> {
    stderr
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .cloned()
        .collect()
}

/// The monitor binary, at least once (the loop whose outage reporting these tests watch), on
/// `topic` in a group of its own.
fn spawn_monitor(bootstrap: &str, topic: &str, extra: &[&str], rust_log: &str) -> Child {
    Child::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
            .args(["--bootstrap-servers", bootstrap, "--topic", topic])
            .args(["--group-id", &unique_name("velib-monitor")])
            .args(["--guarantee", "at-least-once"])
            .args(extra)
            .env("RUST_LOG", rust_log),
    )
}

#[tokio::test]
async fn a_cluster_away_is_one_line_when_it_goes_and_one_when_it_is_back() {
    // Alone: the mock broker comes back on its old port, which no other test may take meanwhile.
    let _alone = crate::alone().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-stations");
    kafka.create_topic(&topic, 1).unwrap();
    // Debug for the loop: each consumer error it meets is counted below.
    let mut monitor = spawn_monitor(
        kafka.bootstrap_servers(),
        &topic,
        &[
            "--no-events",
            "--no-dlq",
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ],
        "info,velib_monitor::at_least_once=debug",
    );
    monitor
        .wait_for_stderr("partitions assigned", TIMEOUT)
        .await;
    assert!(
        warnings(&monitor.stderr()).is_empty(),
        "{:?}",
        monitor.stderr()
    );

    kafka.all_brokers_down().unwrap();
    monitor
        .wait_for_stderr("no Kafka broker is reachable", TIMEOUT)
        .await;
    // librdkafka hands the loop an error at each failed reconnection; each was a warning line.
    // (Backing off, it makes fewer than a client that never reached the cluster: see below.)
    monitor
        .wait_for_stderr_lines("consumer error", 5, TIMEOUT)
        .await;
    kafka.all_brokers_up().unwrap();
    monitor
        .wait_for_stderr("a Kafka broker is reachable again", TIMEOUT)
        .await;
    monitor.signal("TERM").await;
    let status = monitor.wait(TIMEOUT).await;
    let stderr = monitor.stderr();
    assert!(status.success(), "{status}: {stderr:#?}");
    let warnings = warnings(&stderr);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("no Kafka broker is reachable"),
        "{warnings:#?}"
    );
    let back = stderr
        .iter()
        .filter(|l| l.contains("reachable again"))
        .count();
    assert_eq!(back, 1, "{stderr:#?}");
}

#[tokio::test]
async fn no_broker_at_all_is_one_line_not_a_flood() {
    let _gate = crate::beside_others().await;
    // A port nothing listens on: librdkafka retries its bootstrap connection without end.
    let nowhere = unreachable_address();
    let mut monitor = spawn_monitor(
        &nowhere,
        "velib-stations",
        &[],
        "info,velib_monitor::at_least_once=debug",
    );
    monitor
        .wait_for_stderr_lines("consumer error", 20, TIMEOUT)
        .await;
    monitor.signal("TERM").await;
    let status = monitor.wait(TIMEOUT).await;
    let stderr = monitor.stderr();
    assert!(status.success(), "{status}: {stderr:#?}");
    let warnings = warnings(&stderr);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("no Kafka broker is reachable")
            && warnings[0].contains("--bootstrap-servers")
            && warnings[0].contains("Connection refused"),
        "{warnings:#?}"
    );
}

/// A hang-up (the terminal closed, an SSH connection dropped) stops the monitor as SIGTERM
/// does: it commits, leaves the group, says so and exits 0.
#[tokio::test]
async fn a_hangup_stops_the_monitor_gracefully() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-stations");
    kafka.create_topic(&topic, 1).unwrap();
    let mut monitor = spawn_monitor(
        kafka.bootstrap_servers(),
        &topic,
        &["--no-events", "--no-dlq"],
        "info",
    );
    monitor
        .wait_for_stderr("partitions assigned", TIMEOUT)
        .await;
    monitor.signal("HUP").await;
    let status = monitor.wait(TIMEOUT).await;
    let stderr = monitor.stderr().join("\n");
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("SIGHUP") && stderr.contains("stopped"),
        "{stderr}"
    );
}
