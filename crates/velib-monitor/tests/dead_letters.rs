//! Dead-letter copies Kafka refuses for good: a poison record larger than the producer's
//! `message.max.bytes`, and a dead-letter topic that does not exist. The monitor must neither
//! stall the partition silently nor claim a copy it did not make.

use crate::*;
use velib_monitor::{DlqFailure, MonitorError};
use velib_testkit::{MockKafka, unique_name, wait_for};

/// Over librdkafka's default `message.max.bytes` (1,000,000 bytes), which the monitor's
/// producer keeps.
const POISON_BYTES: usize = 2_000_000;

/// A producer allowed to publish the oversized poison record (the topic accepts it: the mock
/// cluster, like a topic with a raised `max.message.bytes`, takes it).
fn big_producer(bootstrap: &str) -> KafkaSink {
    KafkaSink::new(
        &KafkaArgs::new(bootstrap)
            .with("message.max.bytes", "10000000")
            .client_config(SINK_DEFAULTS),
        None,
    )
    .unwrap()
}

/// Runs a monitor until it stops by itself (`Err`) or, once `done` holds for its report, until
/// it is told to stop.
async fn run_monitor(
    kafka: &KafkaArgs,
    group: &str,
    config: MonitorConfig,
    done: impl Fn(&Output) -> bool,
) -> Result<(MonitorReport, Vec<String>), MonitorError> {
    let parts = connect(kafka, group, &config, false).unwrap();
    let out = Output::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut writer = out.clone();
    let task = tokio::spawn(async move {
        velib_monitor::at_least_once::run(
            parts.stream,
            &parts.sink,
            parts.ledger,
            &config,
            &mut writer,
            async {
                let _ = stopped.await;
            },
        )
        .await
        .map(|(stream, report)| {
            stream.close();
            report
        })
    });
    wait_for(
        "the monitor to stop by itself or do its work",
        TIMEOUT,
        || {
            let over = task.is_finished() || done(&out);
            async move { over.then_some(()) }
        },
    )
    .await;
    let _ = stop.send(());
    let result = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("the monitor stops")
        .unwrap();
    result.map(|report| (report, out.lines()))
}

fn dlq_config(topic: &str, dlq: &str, on_failure: DlqFailure) -> MonitorConfig {
    let mut config = json_config(topic);
    config.dlq_topic = Some(dlq.to_owned());
    config.on_dlq_failure = on_failure;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_poison_record_stops_the_monitor_naming_it_or_is_skipped_when_asked() {
    let _gate = crate::beside_others().await;
    init_tracing();
    let kafka = MockKafka::start(1).unwrap();
    let (topic, dlq) = (unique_name("velib-stations"), unique_name("velib-dlq"));
    kafka.create_topic(&topic, 1).unwrap();
    kafka.create_topic(&dlq, 1).unwrap();
    let sink = big_producer(kafka.bootstrap_servers());
    // Offsets 0-1 a change, 2 the poison, 3-4 another change.
    publish(
        &sink,
        &topic,
        &[
            station("Lyon", 1, 10, 5, 1000),
            station("Lyon", 1, 12, 3, 2000),
        ],
    )
    .await;
    publish_raw(&sink, &topic, "Lyon:9", &vec![b'{'; POISON_BYTES]);
    publish(
        &sink,
        &topic,
        &[
            station("Lyon", 2, 10, 5, 1000),
            station("Lyon", 2, 7, 8, 2000),
        ],
    )
    .await;
    // A short session, as in `start_monitor`: the mock cluster's coordinator lets the next
    // monitor of the group in only once the last one's session is over.
    let args = KafkaArgs::new(kafka.bootstrap_servers())
        .with("auto.offset.reset", "earliest")
        .with("session.timeout.ms", "6000")
        .with("heartbeat.interval.ms", "500");
    let group = unique_name("velib-monitor");

    // By default: a stop, with an error that names the record and what to change.
    let error = run_monitor(
        &args,
        &group,
        dlq_config(&topic, &dlq, DlqFailure::Stop),
        |_| false,
    )
    .await
    .expect_err("the monitor stops on the refused copy");
    let MonitorError::Refused {
        partition, offset, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!((*partition, *offset), (0, 2), "{error}");
    let text = error.to_string();
    for needle in [
        "dead-letter copy",
        "--on-dlq-failure=skip",
        "--no-dlq",
        "message.max.bytes",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // The records before it were committed: a restart begins at the poison record. Asked to
    // skip, it goes past it, counting the loss, and commits past it.
    let (report, lines) = run_monitor(
        &args,
        &group,
        dlq_config(&topic, &dlq, DlqFailure::Skip),
        |out| !out.lines().is_empty(),
    )
    .await
    .expect("skipping goes on");
    assert_eq!(report.records, 3, "{report:?}");
    assert_eq!(
        (report.poison, report.dead_letters_lost),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        lines.len(),
        1,
        "the change after the poison record: {lines:?}"
    );

    // Nothing before is read again by the group.
    publish(
        &sink,
        &topic,
        &[
            station("Lyon", 3, 10, 5, 1000),
            station("Lyon", 3, 9, 6, 2000),
        ],
    )
    .await;
    let (report, _) = run_monitor(
        &args,
        &group,
        dlq_config(&topic, &dlq, DlqFailure::Stop),
        |out| !out.lines().is_empty(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.records, 2, "only the new records: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_dead_letter_topic_stops_the_monitor_instead_of_stalling() {
    let _gate = crate::beside_others().await;
    init_tracing();
    let kafka = MockKafka::start(1).unwrap();
    let (topic, dlq) = (
        unique_name("velib-stations"),
        unique_name("velib-no-such-dlq"),
    );
    kafka.create_topic(&topic, 1).unwrap();
    let sink = producer(kafka.bootstrap_servers());
    publish_raw(&sink, &topic, "Lyon:1", b"not json");
    assert_eq!(velib_kafka::flush_async(&sink, TIMEOUT).await, 0);
    let args = KafkaArgs::new(kafka.bootstrap_servers())
        .with("auto.offset.reset", "earliest")
        // Like the README's clusters (auto.create.topics.enable=false): a missing topic is an
        // error, not a topic created on first use. librdkafka waits this long for a topic
        // it does not know to appear before it fails the records for it.
        .with("allow.auto.create.topics", "false")
        .with("topic.metadata.propagation.max.ms", "1000");
    let error = run_monitor(
        &args,
        &unique_name("velib-monitor"),
        dlq_config(&topic, &dlq, DlqFailure::Stop),
        |_| false,
    )
    .await
    .expect_err("the monitor stops on the refused copy");
    let text = error.to_string();
    assert!(text.contains(&format!("to {dlq}")), "{text}");
    assert!(
        text.contains("offset 0") && text.contains("--dlq-topic"),
        "{text}"
    );
}

/// Exactly once, on Apache Kafka: a poison record whose dead-letter copy Kafka refuses for good
/// (over the producer's `message.max.bytes`) stops the monitor, and the records before it are
/// committed first, their lines printed: the group's committed offset is the poison record's
/// own, so a restart begins at it. (The refused copy aborts the transaction that held those
/// records; the rewind reads them again and commits them without the poison record.)
#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_commits_the_records_before_a_refused_copy_then_stops_on_it() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use tokio::process::Command;
    use velib_testkit::child::Child;
    let _gate = crate::beside_others().await;
    let bootstrap = velib_testkit::kafka_bootstrap();
    let name = |what: &str| unique_name(&format!("velib-eos-poison-{what}"));
    let (topic, state, events, dlq) =
        (name("stations"), name("state"), name("events"), name("dlq"));
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let topics = [
        // The stations topic takes the oversized record, as one with a raised limit would.
        NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "10000000"),
        NewTopic::new(&state, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
        NewTopic::new(&events, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
    ];
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.expect("topic created");
    }
    // Records stamped now: the broker's retention keeps them.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let sink = big_producer(&bootstrap);
    // Offsets 0-1 a change, 2 the poison, 3-4 another change.
    publish(
        &sink,
        &topic,
        &[
            station("Lyon", 1, 10, 5, now),
            station("Lyon", 1, 12, 3, now + 1000),
        ],
    )
    .await;
    publish_raw(&sink, &topic, "lyon:9", &vec![b'{'; POISON_BYTES]);
    publish(
        &sink,
        &topic,
        &[
            station("Lyon", 2, 10, 5, now + 2000),
            station("Lyon", 2, 7, 8, now + 3000),
        ],
    )
    .await;
    let group = unique_name("velib-monitor");
    let mut monitor = Child::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
            .args(["--bootstrap-servers", &bootstrap, "--group-id", &group])
            .args(["--topic", &topic, "--state-topic", &state])
            .args(["--events-topic", &events, "--dlq-topic", &dlq])
            .args(["--instance-id", &group, "-X", "auto.offset.reset=earliest"])
            .env("RUST_LOG", "warn"),
    );
    let status = monitor.wait(TIMEOUT).await;
    let stderr = monitor.stderr().join("\n");
    assert!(!status.success(), "it stops on the poison record: {stderr}");
    assert!(
        stderr.contains("partition 0 offset 2") && stderr.contains("--on-dlq-failure=skip"),
        "{stderr}"
    );
    assert_eq!(
        monitor.stdout(),
        ["+2 1 RUE DE LYON (Lyon)"],
        "the change before the poison record is printed, once; none after it"
    );
    let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
    let behind = tokio::task::spawn_blocking(move || velib_testkit::group::uncommitted(&b, &g, &t))
        .await
        .unwrap();
    assert_eq!(
        behind,
        Some(3),
        "committed up to the poison record (offset 2), not past it nor short of it"
    );
}
