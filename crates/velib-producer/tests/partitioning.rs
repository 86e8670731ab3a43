//! Keys land where Kafka's Java client (and kafka-python) would put them.

use crate::*;
use rdkafka::Message;
use velib_kafka::{OutRecord, RecordSink};
use velib_testkit::{MockKafka, java_murmur2, java_partition, read_records, unique_name};

#[test]
fn the_reference_matches_kafkas_own_test_vectors() {
    // From Kafka's UtilsTest.testMurmur2.
    for (input, expected) in [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
    ] {
        assert_eq!(java_murmur2(input.as_bytes()), expected, "{input}");
    }
}

#[tokio::test]
async fn keys_land_in_the_java_clients_partitions() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-murmur2");
    kafka.create_topic(&topic, 10).unwrap();
    let sink = sink(kafka.bootstrap_servers());
    let keys = [
        "Lyon:1001",
        "Toulouse:1001",
        "Marseille:9087",
        "Paris:16107",
        "citybike:a1b2",
        "Bruxelles-Capitale:31",
        "Seville:260",
        "Ljubljana:1",
    ];
    for key in keys {
        let record = OutRecord {
            topic: &topic,
            key: key.as_bytes(),
            payload: b"{}",
            timestamp_ms: None,
            headers: &[],
        };
        sink.enqueue(&record, 0).unwrap();
    }
    assert_eq!(sink.flush(TIMEOUT), 0);
    let records = read_records(kafka.bootstrap_servers(), &topic, keys.len(), TIMEOUT).await;
    let mut partitions_used = std::collections::HashSet::new();
    for m in &records {
        let key = velib_testkit::key_str(m);
        assert_eq!(
            m.partition(),
            java_partition(key.as_bytes(), 10),
            "partition of {key}"
        );
        partitions_used.insert(m.partition());
    }
    // The keys above spread over several partitions, so a partitioner that ignored the key
    // (or sent everything to partition 0) would fail.
    assert!(partitions_used.len() >= 4, "{partitions_used:?}");
}
