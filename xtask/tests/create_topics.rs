use std::process::{Command, Output};
use velib_testkit::{tansu_bootstrap, unique_name};

/// Topic names of one test.
struct Topics {
    stations: String,
    events: String,
    dlq: String,
}

impl Topics {
    fn new() -> Topics {
        Topics {
            stations: unique_name("ct-stations"),
            events: unique_name("ct-events"),
            dlq: unique_name("ct-dlq"),
        }
    }

    /// Runs `xtask create-topics` on these topics with `flags`; every setting that could come
    /// from the environment is given as a flag, so the caller's environment does not matter.
    fn create(&self, flags: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("create-topics")
            .args(["--bootstrap-servers", &tansu_bootstrap()])
            .args(["--stations-topic", &self.stations])
            .args(["--events-topic", &self.events])
            .args(["--dlq-topic", &self.dlq])
            .args(["--timeout", "20s"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run xtask create-topics")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn report(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The table row of `topic`, split on whitespace.
fn row<'a>(table: &'a str, topic: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(topic))
        .unwrap_or_else(|| panic!("no row for {topic} in\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
#[ignore = "needs the tansu broker: run `cargo xtask test`"]
fn creates_then_changes_nothing_when_run_again() {
    let topics = Topics::new();
    let flags = [
        "--partitions",
        "4",
        "--events-partitions",
        "2",
        "--short-retention",
        "--cleanup-policy",
        "compact,delete",
    ];

    let first = topics.create(&flags);
    assert!(first.status.success(), "{}", report(&first));
    let table = stdout(&first);
    assert!(table.starts_with("TOPIC "), "{table}");
    let stations = row(&table, &topics.stations);
    assert_eq!(stations[1..4], ["4", "1", "created"], "{table}");
    for config in [
        "cleanup.policy=compact,delete",
        "retention.ms=4000",
        "segment.ms=2000",
    ] {
        assert!(stations.contains(&config), "{config} missing in\n{table}");
    }
    assert_eq!(
        row(&table, &topics.events)[1..4],
        ["2", "1", "created"],
        "{table}"
    );
    assert_eq!(
        row(&table, &topics.dlq)[1..4],
        ["1", "1", "created"],
        "{table}"
    );

    // The same request again: nothing to do, and success.
    let second = topics.create(&flags);
    assert!(second.status.success(), "{}", report(&second));
    let table = stdout(&second);
    for topic in [&topics.stations, &topics.events, &topics.dlq] {
        assert_eq!(row(&table, topic)[3], "unchanged", "{table}");
    }
    let stations = row(&table, &topics.stations);
    assert!(stations.contains(&"retention.ms=4000"), "{table}");

    // A changed config is set, and only that one: the others stay (IncrementalAlterConfigs,
    // not AlterConfigs, which would reset them).
    let third = topics.create(&[
        "--partitions",
        "4",
        "--events-partitions",
        "2",
        "--retention-ms",
        "60000",
    ]);
    assert!(third.status.success(), "{}", report(&third));
    let table = stdout(&third);
    let stations = row(&table, &topics.stations);
    assert_eq!(stations[3], "set", "{table}");
    assert_eq!(stations[4], "retention.ms", "{table}");
    for config in [
        "cleanup.policy=compact,delete",
        "retention.ms=60000",
        "segment.ms=2000",
    ] {
        assert!(stations.contains(&config), "{config} missing in\n{table}");
    }
}

#[test]
#[ignore = "needs the tansu broker: run `cargo xtask test`"]
fn fewer_partitions_are_refused_with_a_reason() {
    let topics = Topics::new();
    let created = topics.create(&["--partitions", "4", "--no-dlq"]);
    assert!(created.status.success(), "{}", report(&created));

    let shrink = topics.create(&["--partitions", "2", "--no-dlq"]);
    assert!(!shrink.status.success(), "{}", report(&shrink));
    let table = stdout(&shrink);
    let stations = row(&table, &topics.stations);
    // The topic is as it was, and the reason is printed under the table.
    assert_eq!(stations[1..4], ["4", "1", "FAILED"], "{table}");
    assert!(
        table.contains("Kafka cannot remove partitions"),
        "{}",
        report(&shrink)
    );
    // The events topic was fine and stays reported as such.
    assert_eq!(row(&table, &topics.events)[3], "unchanged", "{table}");
    let stderr = String::from_utf8_lossy(&shrink.stderr);
    assert!(
        stderr.contains("1 of 2 topics are not as asked"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs the tansu broker: run `cargo xtask test`"]
fn more_partitions_are_added_or_the_missing_operation_is_named() {
    let topics = Topics::new();
    let created = topics.create(&["--partitions", "2", "--no-dlq"]);
    assert!(created.status.success(), "{}", report(&created));

    let grow = topics.create(&["--partitions", "3", "--no-dlq"]);
    let table = stdout(&grow);
    if grow.status.success() {
        assert_eq!(row(&table, &topics.stations)[1], "3", "{table}");
    } else {
        // Brokers without CreatePartitions (tansu 0.6) must be told apart from other failures.
        assert!(
            table.contains("does not support CreatePartitions"),
            "{}",
            report(&grow)
        );
        assert_eq!(
            row(&table, &topics.stations)[1..4],
            ["2", "1", "FAILED"],
            "{table}"
        );
    }
}
