//! Three Apache Kafka nodes, replication factor 3, `min.insync.replicas=2`: the leader of a
//! partition is SIGKILLed while the sink has records in flight. With velib's defaults
//! (idempotence, `acks=all`) every record the sink reports delivered is on the topic exactly
//! once, and none fails; the node restarts and rejoins every partition's in-sync replicas.

use crate::*;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashSet;
use velib_producer::{OutRecord, StationSink};
use velib_testkit::kafka::{KafkaCluster, KafkaOptions, libs_from_env};
use velib_testkit::{unique_name, wait_for};

const RECORDS: usize = 4000;
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
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[
                NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
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

    // Station-like records: the key is the station, the payload its `last_update`.
    let sink = sink(&bootstrap);
    let records: Vec<(String, String)> = (0..RECORDS)
        .map(|i| {
            (
                format!("Lyon:{}", i % 200),
                format!("{{\"last_update\":{}}}", 1_700_000_000_000_u64 + i as u64),
            )
        })
        .collect();
    let victim = leader_of_partition_0(&bootstrap, &topic);
    for (i, (key, payload)) in records.iter().enumerate() {
        if i == RECORDS / 2 {
            // Half the records are queued or in flight when the leader of partition 0 dies.
            cluster.kill_node(usize::try_from(victim - 1).unwrap());
        }
        let record = OutRecord {
            topic: &topic,
            key: key.as_bytes(),
            payload: payload.as_bytes(),
            timestamp_ms: None,
            headers: &[],
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

    // Every delivered record is there once: counted by key and `last_update`.
    let read = velib_testkit::read_until_quiet(&bootstrap, &topic, Duration::from_secs(5)).await;
    let got: Vec<(String, String)> = read
        .iter()
        .map(|m| {
            (
                velib_testkit::key_str(m).to_owned(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    let distinct: HashSet<&(String, String)> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "duplicates on the topic");
    let expected: HashSet<&(String, String)> = records.iter().collect();
    assert_eq!(distinct, expected, "records lost or unexpected");

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
