use std::process::{Command, Output};
use std::time::Duration;
use velib_testkit::{kafka_bootstrap, unique_name, wait_for_blocking};

/// Topic names of one test.
struct Topics {
    stations: String,
    events: String,
    dlq: String,
    state: String,
}

impl Topics {
    fn new() -> Topics {
        Topics {
            stations: unique_name("ct-stations"),
            events: unique_name("ct-events"),
            dlq: unique_name("ct-dlq"),
            state: unique_name("ct-state"),
        }
    }

    /// Runs `velib-topics create` on these topics with `flags`; every setting that could come
    /// from the environment is given as a flag, so the caller's environment does not matter.
    fn create(&self, flags: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_velib-topics"))
            .arg("create")
            .args(["--bootstrap-servers", &kafka_bootstrap()])
            .args(["--stations-topic", &self.stations])
            .args(["--events-topic", &self.events])
            .args(["--dlq-topic", &self.dlq])
            .args(["--state-topic", &self.state])
            .args(["--timeout", "20s"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run velib-topics create")
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
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
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
    // The exactly-once monitor's state: as many partitions as the stations, compacted.
    let state = row(&table, &topics.state);
    assert_eq!(state[1..4], ["4", "1", "created"], "{table}");
    assert!(state.contains(&"cleanup.policy=compact"), "{table}");

    // The same request again: nothing to do, and success.
    let second = topics.create(&flags);
    assert!(second.status.success(), "{}", report(&second));
    let table = stdout(&second);
    for topic in [&topics.stations, &topics.events, &topics.dlq, &topics.state] {
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
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
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
    // The state topic follows the stations topic's partitions, refused the same way; the
    // events topic was fine and stays reported as such.
    assert_eq!(
        row(&table, &topics.state)[1..4],
        ["4", "1", "FAILED"],
        "{table}"
    );
    assert_eq!(row(&table, &topics.events)[3], "unchanged", "{table}");
    let stderr = String::from_utf8_lossy(&shrink.stderr);
    assert!(
        stderr.contains("2 of 3 topics are not as asked"),
        "{stderr}"
    );
}

/// Another binary of the workspace (`cargo test --workspace` builds them beside velib-topics).
fn binary(name: &str) -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-topics"), name)
}

/// `velib-producer` on a simulated city of `stations` stations for `polls` polls, to completion.
fn produce(topic: &str, seed: &str, polls: &str) {
    let output = Command::new(binary("velib-producer"))
        .args(["--bootstrap-servers", &kafka_bootstrap(), "--topic", topic])
        .args(["--source", "simulate", "--simulate-stations", "200"])
        .args(["--seed", seed, "--max-polls", polls, "--interval", "100ms"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run velib-producer");
    assert!(output.status.success(), "{}", report(&output));
}

/// Every record of `topic` (from the beginning, until none comes for a few seconds).
fn read_all(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(velib_testkit::read_until_quiet(
            &kafka_bootstrap(),
            topic,
            Duration::from_secs(5),
        ))
}

/// The tutorial's growth: one partition, then `--partitions 10` (CreatePartitions) while a
/// monitor runs. New records land where Kafka's partitioner puts them among ten partitions,
/// and the monitor goes on printing.
#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn the_stations_topic_grows_from_1_to_10_partitions() {
    use rdkafka::Message;
    let topics = Topics::new();
    let created = topics.create(&["--partitions", "1", "--events-partitions", "1"]);
    assert!(created.status.success(), "{}", report(&created));
    assert_eq!(
        row(&stdout(&created), &topics.stations)[1..4],
        ["1", "1", "created"]
    );

    let monitor = std::process::Command::new(binary("velib-monitor"))
        .args(["--bootstrap-servers", &kafka_bootstrap()])
        .args([
            "--topic",
            &topics.stations,
            "--events-topic",
            &topics.events,
        ])
        .args(["--dlq-topic", &topics.dlq, "--group-id", &unique_name("g")])
        .args(["--state-topic", &topics.state])
        .args(["--format", "json", "-X", "auto.offset.reset=earliest"])
        // The consumer notices the new partitions at its next metadata refresh.
        .args(["-X", "topic.metadata.refresh.interval.ms=1000"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start velib-monitor");
    let mut monitor = Monitor::new(monitor);

    produce(&topics.stations, "1", "5");
    monitor.wait_for_lines(1);
    let before = read_all(&topics.stations).len();
    assert!(before > 0);

    let grow = topics.create(&["--partitions", "10", "--events-partitions", "1"]);
    assert!(grow.status.success(), "{}", report(&grow));
    let table = stdout(&grow);
    assert_eq!(row(&table, &topics.stations)[1], "10", "{table}");
    assert_eq!(row(&table, &topics.stations)[3], "partitions", "{table}");

    let printed = monitor.lines();
    produce(&topics.stations, "2", "5");
    let records = read_all(&topics.stations);
    assert!(records.len() > before, "no new records");
    let mut used = std::collections::HashSet::new();
    for m in &records {
        let key = velib_testkit::key_str(m);
        if m.partition() > 0 {
            // Only the records produced after the growth can be here: each where murmur2 says.
            assert_eq!(
                m.partition(),
                velib_testkit::java_partition(key.as_bytes(), 10),
                "partition of {key}"
            );
            used.insert(m.partition());
        }
    }
    assert!(
        used.len() >= 5,
        "the new partitions are hardly used: {used:?}"
    );
    // The monitor, now assigned the new partitions too, prints the new records' changes.
    monitor.wait_for_lines(printed + 1);
    monitor.stop();
}

/// A monitor child process whose stdout lines are counted on a thread.
struct Monitor {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Monitor {
    fn new(mut child: std::process::Child) -> Monitor {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let count = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for _ in out.lines().map_while(Result::ok) {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Monitor { child, lines }
    }

    fn lines(&self) -> usize {
        self.lines.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn wait_for_lines(&mut self, at_least: usize) {
        let what = format!("velib-monitor to print {at_least} lines");
        let every = Duration::from_millis(50);
        wait_for_blocking(&what, Duration::from_secs(90), every, || {
            if self.lines() >= at_least {
                return Some(());
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "velib-monitor exited after {} lines",
                self.lines()
            );
            None
        });
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "velib-monitor: {status}");
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// `velib-producer` on the simulated city, running in the background until stopped.
fn spawn_producer(topic: &str, polls: &str) -> std::process::Child {
    Command::new(binary("velib-producer"))
        .args(["--bootstrap-servers", &kafka_bootstrap(), "--topic", topic])
        .args(["--source", "simulate", "--simulate-stations", "100"])
        .args(["--max-polls", polls, "--interval", "100ms"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start velib-producer")
}

/// Low and high watermarks of partition 0 of `topic`, asked again until the broker answers: a
/// partition created a moment ago can be refused with NotLeaderForPartition while its leader
/// is not known yet.
fn watermarks(topic: &str) -> (i64, i64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .unwrap();
    let what = format!("the watermarks of {topic}");
    wait_for_blocking(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            consumer
                .fetch_watermarks(topic, 0, Duration::from_secs(10))
                .ok()
        },
    )
}

/// How many records partition 0 of `topic` holds below offset `high` (read from the start).
fn read_below(topic: &str, high: i64) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique_name("read-below"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut count = 0;
    let what = format!("reading {topic} up to {high}");
    // No pause between checks: each one already waits up to 500 ms for a record.
    wait_for_blocking(&what, Duration::from_secs(60), Duration::ZERO, || {
        let m = consumer.poll(Duration::from_millis(500))?.unwrap();
        if m.offset() < high {
            count += 1;
        }
        (m.offset() >= high - 1).then_some(count)
    })
}

/// Waits (up to 90 s) until `done` holds, checking that the producer is still running.
fn wait_while_producing(
    producer: &mut std::process::Child,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let every = Duration::from_millis(200);
    wait_for_blocking(what, Duration::from_secs(90), every, || {
        if done() {
            return Some(());
        }
        assert!(
            producer.try_wait().unwrap().is_none(),
            "velib-producer stopped before {what}"
        );
        None
    });
}

/// The tutorial's `retention.ms=4000` and `segment.ms=2000`: while the producer runs, old
/// segments are deleted and the low watermark moves within seconds.
#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn short_retention_deletes_old_records_within_seconds() {
    let topics = Topics::new();
    let created = topics.create(&["--partitions", "1", "--short-retention", "--no-dlq"]);
    assert!(created.status.success(), "{}", report(&created));
    let mut producer = spawn_producer(&topics.stations, "900");
    wait_while_producing(&mut producer, "the low watermark to move", || {
        watermarks(&topics.stations).0 > 0
    });
    let (low, high) = watermarks(&topics.stations);
    let _ = producer.kill();
    let _ = producer.wait();
    assert!(0 < low && low <= high, "{low}..{high}");
}

/// `--cleanup-policy compact`: the log cleaner removes older records of a station, and keeps
/// at least the latest record of every station.
#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn a_compacted_topic_keeps_the_latest_record_of_every_station() {
    let topics = Topics::new();
    let created = topics.create(&[
        "--partitions",
        "1",
        "--cleanup-policy",
        "compact",
        "--no-dlq",
        // Small segments and an eager cleaner, so compaction shows within seconds.
        "--config",
        "segment.ms=1000",
        "--config",
        "min.cleanable.dirty.ratio=0.01",
    ]);
    assert!(created.status.success(), "{}", report(&created));
    let mut producer = spawn_producer(&topics.stations, "900");
    // Compacted: fewer records left than offsets written.
    wait_while_producing(&mut producer, "the log cleaner", || {
        let (_, high) = watermarks(&topics.stations);
        high > 0 && (read_below(&topics.stations, high) as i64) < high
    });
    let _ = producer.kill();
    let _ = producer.wait();
    let records = read_all(&topics.stations);
    let keys: std::collections::HashSet<&str> =
        records.iter().map(velib_testkit::key_str).collect();
    // The simulated city's 100 stations are all still there.
    assert_eq!(keys.len(), 100, "{keys:?}");
}
