//! Three Apache Kafka nodes, replication factor 3, `min.insync.replicas=2`: the leader of a
//! partition is SIGKILLed while the sink has records in flight and a monitor reads the topic.
//! With velib's defaults (idempotence, `acks=all`) every record the sink reports delivered is
//! on the topic exactly once, and none fails; the monitor goes on to the last snapshot; the
//! node restarts and rejoins every partition's in-sync replicas.

use crate::*;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashSet;
use velib_kafka::{OutRecord, RecordSink};
use velib_testkit::kafka::{KafkaCluster, KafkaOptions, libs_from_env};
use velib_testkit::{Process, unique_name, wait_for};

const STATIONS: usize = 200;
const POLLS: usize = 20;
const RECORDS: usize = STATIONS * POLLS;
const PARTITIONS: i32 = 6;

/// The in-sync replicas of every partition of `topic`, or `None` while metadata is unavailable.
fn isr_sizes(bootstrap: &str, topic: &str) -> Option<Vec<usize>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let topic = metadata.topics().first()?;
    Some(topic.partitions().iter().map(|p| p.isr().len()).collect())
}

fn leader_of_partition_0(bootstrap: &str, topic: &str) -> i32 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == 0)
        .map(|p| p.leader())
        .expect("partition 0")
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn a_killed_broker_loses_and_duplicates_nothing_and_rejoins() {
    let _alone = crate::alone().await;
    let mut cluster = KafkaCluster::start(
        &libs_from_env(),
        &KafkaOptions {
            nodes: 3,
            ..KafkaOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = cluster.bootstrap();
    let topic = unique_name("velib-cluster");
    // The monitor's state and events topics (exactly once: it creates none), replicated like
    // the stations.
    let state = unique_name("velib-cluster-state");
    let events = unique_name("velib-cluster-events");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[
                NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
                    .set("min.insync.replicas", "2"),
                NewTopic::new(&state, PARTITIONS, TopicReplication::Fixed(3))
                    .set("min.insync.replicas", "2")
                    .set("cleanup.policy", "compact"),
                NewTopic::new(&events, 3, TopicReplication::Fixed(3))
                    .set("min.insync.replicas", "2"),
            ],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(60))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    wait_for("every replica in sync", Duration::from_secs(60), || {
        let sizes = isr_sizes(&bootstrap, &topic);
        async move { sizes.filter(|s| s.len() == PARTITIONS as usize && s.iter().all(|&n| n == 3)) }
    })
    .await;

    // The simulated city's snapshots, each record numbered in a header: an unchanged station
    // repeats the same payload, so the number is what tells a duplicate from a repeat.
    let snapshots = expected_snapshots(STATIONS, POLLS);
    let records: Vec<(String, String)> = snapshots
        .iter()
        .flat_map(|s| &s.stations)
        .map(|st| {
            (
                st.key().to_string(),
                String::from_utf8(st.to_json()).unwrap(),
            )
        })
        .collect();
    let monitor = Process::spawn(
        tokio::process::Command::new(velib_testkit::sibling_binary(
            env!("CARGO_BIN_EXE_velib-producer"),
            "velib-monitor",
        ))
        .args(["--bootstrap-servers", &bootstrap, "--topic", &topic])
        .args(["--events-topic", &events])
        .args(["--no-dlq", "--group-id", &unique_name("g")])
        .args(["--state-topic", &state])
        .args(["--format", "json", "-X", "auto.offset.reset=earliest"])
        .env("RUST_LOG", "warn"),
    );
    let sink = sink(&bootstrap);
    let victim = leader_of_partition_0(&bootstrap, &topic);
    for (i, (key, payload)) in records.iter().enumerate() {
        if i == RECORDS / 2 {
            // Half the records are queued or in flight when the leader of partition 0 dies.
            cluster.kill_node(usize::try_from(victim - 1).unwrap());
        }
        let seq = i.to_string();
        let record = OutRecord {
            topic: &topic,
            key: key.as_bytes(),
            payload: payload.as_bytes(),
            timestamp_ms: None,
            headers: &[("seq", seq.as_bytes())],
        };
        sink.enqueue(&record, i).unwrap();
    }
    assert_eq!(
        sink.flush(Duration::from_secs(180)),
        0,
        "records left unacknowledged"
    );
    let counts = sink.counts();
    assert_eq!(
        (counts.delivered, counts.failed),
        (RECORDS as u64, 0),
        "{counts:?}"
    );
    assert_eq!(sink.fatal_error(), None);

    // Every delivered record is there once, as it was sent (key, payload with `last_update`).
    let read = velib_testkit::read_until_quiet(&bootstrap, &topic, Duration::from_secs(5)).await;
    let mut seen = HashSet::new();
    for m in &read {
        use rdkafka::message::Headers;
        let header = m.headers().and_then(|h| h.iter().find(|h| h.key == "seq"));
        let seq: usize = std::str::from_utf8(header.and_then(|h| h.value).unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(seen.insert(seq), "record {seq} is on the topic twice");
        let (key, payload) = &records[seq];
        assert_eq!(velib_testkit::key_str(m), key);
        assert_eq!(m.payload(), Some(payload.as_bytes()), "record {seq}");
    }
    assert_eq!(seen.len(), RECORDS, "records lost");

    // The monitor carried on through the failover: it prints changes the last snapshot
    // brought (stations whose `last_update` is new in it).
    let before: HashSet<(String, Option<i64>)> = snapshots[..POLLS - 1]
        .iter()
        .flat_map(|s| &s.stations)
        .map(|st| (st.key().to_string(), st.last_update))
        .collect();
    let last: HashSet<(String, Option<i64>)> = snapshots[POLLS - 1]
        .stations
        .iter()
        .map(|st| (st.key().to_string(), st.last_update))
        .filter(|k| !before.contains(k))
        .collect();
    assert!(!last.is_empty(), "the last snapshot changed nothing");
    wait_for(
        "the monitor to reach the last snapshot",
        Duration::from_secs(120),
        || {
            let reached = monitor.lines().iter().any(|l| {
                let change: velib_model::StationChange = serde_json::from_str(l).unwrap();
                last.contains(&(change.key.to_string(), change.last_update))
            });
            async move { reached.then_some(()) }
        },
    )
    .await;
    let status = monitor.terminate().await;
    assert!(status.success(), "velib-monitor: {status}");

    // The killed node comes back on its storage and catches up.
    cluster
        .restart_node(usize::try_from(victim - 1).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        "the restarted node back in sync",
        Duration::from_secs(120),
        || {
            let sizes = isr_sizes(&bootstrap, &topic);
            async move { sizes.filter(|s| s.iter().all(|&n| n == 3)) }
        },
    )
    .await;
}
