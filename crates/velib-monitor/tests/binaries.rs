//! The binaries end to end on Apache Kafka: the producer on the simulated city and two monitors
//! in one group, as the README runs them.

use crate::*;
use std::collections::HashSet;
use tokio::process::Command;
use velib_testkit::{PipelineTopics, Process, kafka_bootstrap, unique_name, wait_for};

fn producer_binary() -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-monitor"), "velib-producer")
}

fn spawn_monitor(
    bootstrap: &str,
    group: &str,
    (topic, events, dlq, state): (&str, &str, &str, &str),
) -> Process {
    Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
            .args(["--bootstrap-servers", bootstrap, "--group-id", group])
            .args(["--state-topic", state])
            .args([
                "--topic",
                topic,
                "--events-topic",
                events,
                "--dlq-topic",
                dlq,
            ])
            .args(["--format", "json", "-X", "auto.offset.reset=earliest"])
            .env("RUST_LOG", "warn"),
    )
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn producer_and_two_monitors_on_kafka() {
    let _gate = crate::beside_others().await;
    let bootstrap = kafka_bootstrap();
    let PipelineTopics {
        stations: topic,
        events,
        dlq,
        state,
    } = PipelineTopics::create(&bootstrap).await;
    let group = unique_name("velib-monitor");
    let monitors = [
        spawn_monitor(&bootstrap, &group, (&topic, &events, &dlq, &state)),
        spawn_monitor(&bootstrap, &group, (&topic, &events, &dlq, &state)),
    ];

    let producer = Command::new(producer_binary())
        .args([
            "--source",
            "simulate",
            "--simulate-stations",
            "200",
            "--max-polls",
            "8",
        ])
        .args([
            "--interval",
            "250ms",
            "--bootstrap-servers",
            &bootstrap,
            "--topic",
            &topic,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        producer.status.success(),
        "{}",
        String::from_utf8_lossy(&producer.stderr)
    );

    // The simulated city changes about a tenth of its stations per poll: lines must come.
    wait_for("change lines from the monitors", TIMEOUT, || async {
        let n: usize = monitors.iter().map(|m| m.lines().len()).sum();
        (n >= 20).then_some(())
    })
    .await;
    let mut all = Vec::new();
    for m in monitors {
        let lines = m.lines();
        let status = m.terminate().await;
        assert!(status.success(), "a monitor exits 0 on SIGTERM: {status}");
        all.extend(lines);
    }
    let changes: Vec<StationChange> = all
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let distinct: HashSet<(String, Option<i64>)> = changes
        .iter()
        .map(|c| (c.key.to_string(), c.last_update))
        .collect();
    assert_eq!(distinct.len(), changes.len(), "a change was printed twice");
    for c in &changes {
        assert_ne!(c.previous, c.current);
        let line = c.to_string();
        assert!(line.starts_with('+') || line.starts_with('-'), "{line}");
        assert!(line.ends_with(&format!("({})", c.contract)), "{line}");
    }
}
