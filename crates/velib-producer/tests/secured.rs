//! Secured listeners of the Apache Kafka node `cargo xtask test` starts: `SSL` with a
//! certificate signed by a CA made for the run (CA verification on), and `SASL_PLAINTEXT` with
//! SCRAM-SHA-512 and a user created when its storage was formatted. Records go through both;
//! every wrong setting is one clear error.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::path::Path;
use std::time::Duration;
use velib_kafka::{KafkaArgs, KafkaSink, OutRecord, RecordSink, SINK_DEFAULTS, flush_async};
use velib_testkit::kafka::TEST_SCRAM_USER;
use velib_testkit::secure::{SecuredListeners, TestCa};
use velib_testkit::{unique_name, wait_for};

/// Long enough for a loaded machine; the failures below come within the first connection.
const TIMEOUT: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn record<'a>(topic: &'a str, key: &'a str, payload: &'a str) -> OutRecord<'a> {
    OutRecord {
        topic,
        key: key.as_bytes(),
        payload: payload.as_bytes(),
        timestamp_ms: None,
        headers: &[],
    }
}

/// Enqueues one record and waits for the sink to report a fatal error.
async fn first_fatal_error(args: &KafkaArgs) -> String {
    let sink = KafkaSink::new(&args.client_config(SINK_DEFAULTS), None).unwrap();
    sink.enqueue(&record("velib-secured", "k", "v"), 0).unwrap();
    wait_for("a fatal connection error", TIMEOUT, || {
        let fatal = sink.fatal_error();
        async move { fatal }
    })
    .await
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn tls_with_ca_verification_produces_and_consumes() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let dir = scratch_dir();
    let config = write(
        &dir,
        "tls.properties",
        &format!(
            "# A TLS listener signed by our own CA.\n\
             bootstrap.servers={}\n\
             security.protocol=SSL\n\
             ssl.ca.location={}\n",
            listeners.tls_bootstrap,
            listeners.tls_ca.display()
        ),
    );
    round_trip(&config, "velib-tls").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn scram_login_succeeds_and_records_round_trip() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let dir = scratch_dir();
    let config = write(
        &dir,
        "scram.properties",
        &format!(
            "bootstrap.servers={}\n\
             security.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.username={TEST_SCRAM_USER}\n\
             sasl.password={}\n",
            listeners.sasl_bootstrap, listeners.scram_password
        ),
    );
    round_trip(&config, "velib-scram").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name("velib-secured"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Creates a topic, publishes 50 keyed records through the sink and reads them back, all with
/// the client settings of the properties file `config`.
async fn round_trip(config: &Path, prefix: &str) {
    let args = KafkaArgs {
        bootstrap_servers: None,
        ..KafkaArgs::new("")
    }
    .with_properties_file(config)
    .unwrap();
    let topic = unique_name(prefix);

    let admin: AdminClient<_> = args.client_config(&[]).create().unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let sink = KafkaSink::new(&args.client_config(SINK_DEFAULTS), None).unwrap();
    let sent: Vec<(String, String)> = (0..50)
        .map(|i| (format!("c:{i}"), format!("{{\"number\":{i}}}")))
        .collect();
    for (tag, (key, payload)) in sent.iter().enumerate() {
        sink.enqueue(&record(&topic, key, payload), tag).unwrap();
    }
    assert_eq!(flush_async(&sink, TIMEOUT).await, 0);
    let counts = sink.counts();
    assert_eq!((counts.delivered, counts.failed), (50, 0), "{counts:?}");
    assert_eq!(sink.fatal_error(), None);

    let mut consumer_config: ClientConfig = args.client_config(&[
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
    ]);
    consumer_config.set("group.id", unique_name("g"));
    let consumer: StreamConsumer = consumer_config.create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let m = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .expect("records arrive through TLS")
            .unwrap();
        received.push((
            String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
        ));
    }
    received.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(received, expected);
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn an_untrusted_certificate_is_one_clear_error() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let other = TestCa::generate("other");
    let args = KafkaArgs::new(&listeners.tls_bootstrap)
        .with("security.protocol", "SSL")
        .with("ssl.ca.location", other.ca_file().display().to_string());
    let error = first_fatal_error(&args).await;
    assert!(error.contains("TLS certificate is not trusted"), "{error}");
    assert!(error.contains("ssl.ca.location"), "{error}");
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn a_plaintext_client_on_a_tls_listener_is_one_clear_error() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let error = first_fatal_error(&KafkaArgs::new(&listeners.tls_bootstrap)).await;
    assert!(
        error.contains("plaintext client on a TLS listener"),
        "{error}"
    );
    assert!(error.contains("security.protocol"), "{error}");
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn refused_scram_credentials_are_one_clear_error() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let args = KafkaArgs::new(&listeners.sasl_bootstrap)
        .with("security.protocol", "SASL_PLAINTEXT")
        .with("sasl.mechanism", "SCRAM-SHA-512")
        .with("sasl.username", TEST_SCRAM_USER)
        .with("sasl.password", "not-the-password");
    let error = first_fatal_error(&args).await;
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains("SCRAM"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn a_client_without_sasl_on_a_sasl_listener_is_one_clear_error() {
    let _gate = crate::beside_others().await;
    let listeners = SecuredListeners::from_env();
    let error = first_fatal_error(&KafkaArgs::new(&listeners.sasl_bootstrap)).await;
    assert!(error.contains("requires SASL"), "{error}");
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn a_tls_client_on_a_plaintext_listener_is_one_clear_error() {
    let _gate = crate::beside_others().await;
    // Apache Kafka hangs up on a TLS greeting; the connection-setup timeout is shortened from
    // librdkafka's 30 s in case a broker stays silent instead.
    let args = KafkaArgs::new(velib_testkit::kafka_bootstrap())
        .with("security.protocol", "SSL")
        .with("socket.connection.setup.timeout.ms", "1500");
    let error = first_fatal_error(&args).await;
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.contains("security.protocol"), "{error}");
}
