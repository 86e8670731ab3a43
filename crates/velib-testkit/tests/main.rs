//! The brokers themselves: a keyed record produced with rdkafka is read back by a consumer
//! group, on the in-process mock cluster and on Apache Kafka.

use rdkafka::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use velib_testkit::{
    MockKafka, admin_create_topic, kafka_bootstrap, key_str, read_records, unique_name,
};

async fn round_trip(bootstrap: &str, topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .key("Lyon:1001")
                .payload(r#"{"number":1001}"#),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivery");
    let partition = delivery.partition;
    assert!((0..3).contains(&partition));
    assert_eq!(delivery.offset, 0);

    let records = read_records(bootstrap, topic, 1, Duration::from_secs(30)).await;
    assert_eq!(key_str(&records[0]), "Lyon:1001");
    assert_eq!(records[0].payload(), Some(&br#"{"number":1001}"#[..]));
    assert_eq!(records[0].partition(), partition);
}

#[tokio::test]
async fn keyed_record_round_trip_on_the_mock_cluster() {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-roundtrip");
    kafka.create_topic(&topic, 3).unwrap();
    round_trip(kafka.bootstrap_servers(), &topic).await;
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn keyed_record_round_trip_on_kafka() {
    let bootstrap = kafka_bootstrap();
    let topic = unique_name("velib-roundtrip");
    admin_create_topic(&bootstrap, &topic, 3).await.unwrap();
    round_trip(&bootstrap, &topic).await;
}

#[test]
fn unique_names_differ() {
    assert_ne!(unique_name("t"), unique_name("t"));
}

#[test]
fn java_partition_matches_kafkas_murmur2_vectors() {
    // Kafka's UtilsTest.testMurmur2: murmur2("21") = -973932308, ("abc") = 479470107.
    assert_eq!(
        velib_testkit::java_partition(b"21", 1000),
        (-973_932_308_i32 & 0x7fff_ffff) % 1000
    );
    assert_eq!(
        velib_testkit::java_partition(b"abc", 1000),
        479_470_107 % 1000
    );
}
