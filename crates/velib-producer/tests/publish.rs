//! The poll loop publishing simulated snapshots.

use crate::*;
use rdkafka::Message;
use std::collections::HashSet;
use velib_kafka::RecordSink;
use velib_model::{Station, StationKey};
use velib_producer::{ProducerConfig, run};
use velib_testkit::{MockKafka, read_records, read_until_quiet, unique_name, wait_for};

fn config(topic: &str, polls: u64) -> ProducerConfig {
    ProducerConfig {
        topic: topic.to_owned(),
        interval: Duration::from_millis(20),
        max_polls: Some(polls),
        flush_timeout: TIMEOUT,
        ..ProducerConfig::default()
    }
}

#[tokio::test]
async fn every_station_lands_keyed_in_one_partition_and_reads_back_equal() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(3).unwrap();
    let topic = unique_name("velib-stations");
    kafka.create_topic(&topic, 10).unwrap();
    let sink = sink(kafka.bootstrap_servers());
    let mut out = Output::default();
    let (stations, polls) = (150, 3);

    let report = run(
        SimulateSource::new(sim_config(stations)),
        &sink,
        &config(&topic, polls as u64),
        &mut out,
        std::future::pending(),
    )
    .await
    .unwrap();

    assert_eq!(report.polls, polls as u64);
    assert_eq!(report.records_enqueued, (stations * polls) as u64);
    assert_eq!(report.records_delivered, (stations * polls) as u64);
    assert_eq!(report.undelivered_at_exit, 0);
    let lines = out.lines();
    assert_eq!(lines.len(), polls);
    assert!(
        lines[0].contains("Produced 150 station records in"),
        "{}",
        lines[0]
    );

    let records = read_records(kafka.bootstrap_servers(), &topic, stations * polls, TIMEOUT).await;
    // One station, one partition — and the 10 partitions are all used.
    let by_key = partitions_by_key(&records);
    assert_eq!(by_key.len(), stations);
    assert!(
        by_key.values().all(|p| p.len() == 1),
        "a key spans partitions"
    );
    let used: HashSet<i32> = by_key.values().map(|p| p[0]).collect();
    assert_eq!(used.len(), 10);

    // Payloads are the stations themselves, keyed by StationKey, stamped with the poll time.
    let expected = expected_snapshots(stations, polls);
    let expected: HashSet<(i64, Vec<u8>)> = expected
        .iter()
        .flat_map(|s| s.stations.iter().map(move |st| (s.taken_at, st.to_json())))
        .collect();
    for m in &records {
        let station = Station::from_json(m.payload().unwrap()).unwrap();
        let key: StationKey = velib_testkit::key_str(m).parse().unwrap();
        assert_eq!(station.key(), key);
        let ts = m.timestamp().to_millis().unwrap();
        assert!(
            expected.contains(&(ts, station.to_json())),
            "unexpected record {key} at {ts}"
        );
    }
}

#[tokio::test]
async fn changed_only_publishes_the_first_snapshot_then_changes() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-changed");
    kafka.create_topic(&topic, 4).unwrap();
    let sink = sink(kafka.bootstrap_servers());
    let (stations, polls) = (200, 4);
    let mut cfg = config(&topic, polls as u64);
    cfg.changed_only = true;

    let report = run(
        SimulateSource::new(sim_config(stations)),
        &sink,
        &cfg,
        &mut Output::default(),
        std::future::pending(),
    )
    .await
    .unwrap();

    // Count the changes between consecutive snapshots independently of the producer.
    let snaps = expected_snapshots(stations, polls);
    let mut expected = stations;
    for pair in snaps.windows(2) {
        expected += pair[0]
            .stations
            .iter()
            .zip(&pair[1].stations)
            // Every station's `snapshot_at` moves with each poll; the rest says whether it
            // changed.
            .filter(|(a, b)| {
                Station {
                    snapshot_at: None,
                    ..(*a).clone()
                } != Station {
                    snapshot_at: None,
                    ..(*b).clone()
                }
            })
            .count();
    }
    assert!(
        expected > stations,
        "the simulation should change something"
    );
    assert!(expected < stations * polls, "and not everything");
    assert_eq!(report.records_enqueued, expected as u64);
    let records = read_until_quiet(kafka.bootstrap_servers(), &topic, Duration::from_secs(2)).await;
    assert_eq!(records.len(), expected);
}

#[tokio::test]
async fn shutdown_stops_polling_and_flushes_everything() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-shutdown");
    kafka.create_topic(&topic, 3).unwrap();
    let sink = Arc::new(sink(kafka.bootstrap_servers()));
    let out = Output::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

    let task = {
        let (sink, mut out, topic) = (Arc::clone(&sink), out.clone(), topic.clone());
        tokio::spawn(async move {
            let mut cfg = config(&topic, u64::MAX);
            cfg.max_polls = None;
            run(
                SimulateSource::new(sim_config(100)),
                &*sink,
                &cfg,
                &mut out,
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
        })
    };
    wait_for("two polls", TIMEOUT, || async {
        (out.lines().len() >= 2).then_some(())
    })
    .await;
    stop_tx.send(()).unwrap();
    let report = task.await.unwrap().unwrap();

    assert!(report.polls >= 2);
    assert_eq!(report.undelivered_at_exit, 0);
    assert_eq!(report.records_delivered, report.polls * 100);
    // Nothing is left behind: the topic holds exactly what was reported delivered.
    let records = read_until_quiet(kafka.bootstrap_servers(), &topic, Duration::from_secs(2)).await;
    assert_eq!(records.len() as u64, report.records_delivered);
}

#[tokio::test]
async fn broker_down_then_up_loses_nothing_and_duplicates_nothing() {
    let _alone = crate::alone().await;
    init_tracing();
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-outage");
    kafka.create_topic(&topic, 4).unwrap();
    let sink = Arc::new(sink(kafka.bootstrap_servers()));
    // Connect once, so the outage hits a producer that already knows the cluster.
    sink.enqueue(
        &velib_kafka::OutRecord {
            topic: &topic,
            key: b"warmup:0",
            payload: b"{}",
            timestamp_ms: None,
            headers: &[],
        },
        0,
    )
    .unwrap();
    assert_eq!(sink.flush(TIMEOUT), 0);
    kafka.all_brokers_down().unwrap();

    let polls = 5u64;
    let task = {
        let (sink, topic) = (Arc::clone(&sink), topic.clone());
        tokio::spawn(async move {
            run(
                SimulateSource::new(sim_config(50)),
                &*sink,
                &config(&topic, polls),
                &mut Output::default(),
                std::future::pending(),
            )
            .await
        })
    };
    // Every poll is queued while the broker is away, and nothing is delivered.
    wait_for("all polls queued", TIMEOUT, || async {
        (sink.counts().enqueued > polls * 50).then_some(())
    })
    .await;
    assert_eq!(
        sink.counts().delivered,
        1,
        "only the warm-up record got through"
    );
    kafka.all_brokers_up().unwrap();
    let report = task.await.unwrap().unwrap();

    assert_eq!(report.undelivered_at_exit, 0);
    assert_eq!(report.records_failed, 0);
    let records = read_until_quiet(kafka.bootstrap_servers(), &topic, Duration::from_secs(2)).await;
    assert_eq!(
        records.len() as u64,
        1 + polls * 50,
        "lost or duplicated records"
    );
    let distinct: HashSet<(String, i64)> = records
        .iter()
        .map(|m| {
            (
                velib_testkit::key_str(m).to_owned(),
                m.timestamp().to_millis().unwrap(),
            )
        })
        .collect();
    assert_eq!(distinct.len(), records.len(), "a record was written twice");
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn the_producer_binary_publishes_to_kafka() {
    let _gate = crate::beside_others().await;
    let bootstrap = velib_testkit::kafka_bootstrap();
    let topic = unique_name("velib-stations");
    velib_testkit::admin_create_topic(&bootstrap, &topic, 10)
        .await
        .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_velib-producer"))
        .args([
            "--source",
            "simulate",
            "--simulate-stations",
            "60",
            "--max-polls",
            "3",
        ])
        .args([
            "--interval",
            "100ms",
            "--bootstrap-servers",
            &bootstrap,
            "--topic",
            &topic,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("Produced 60 station records").count(),
        3,
        "{stdout}"
    );
    let records = read_records(&bootstrap, &topic, 180, TIMEOUT).await;
    let by_key = partitions_by_key(&records);
    assert_eq!(by_key.len(), 60);
    assert!(by_key.values().all(|p| p.len() == 1));
    for m in &records {
        let station = Station::from_json(m.payload().unwrap()).unwrap();
        assert_eq!(station.key().as_str(), velib_testkit::key_str(m));
    }
}

/// zstd, the compression managed clusters usually recommend, is built in: records written
/// with it read back equal.
#[tokio::test]
async fn zstd_compressed_records_read_back_equal() {
    let _gate = crate::beside_others().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-zstd");
    kafka.create_topic(&topic, 2).unwrap();
    let sink = KafkaSink::new(
        &KafkaArgs::new(kafka.bootstrap_servers())
            .with("compression.type", "zstd")
            .client_config(SINK_DEFAULTS),
        None,
    )
    .unwrap();
    let mut out = Output::default();
    let report = run(
        SimulateSource::new(sim_config(40)),
        &sink,
        &config(&topic, 2),
        &mut out,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!((report.records_delivered, report.records_failed), (80, 0));
    let records = read_records(kafka.bootstrap_servers(), &topic, 80, TIMEOUT).await;
    let mut got: Vec<Station> = records
        .iter()
        .map(|m| Station::from_json(m.payload().unwrap()).unwrap())
        .collect();
    let mut expected: Vec<Station> = expected_snapshots(40, 2)
        .into_iter()
        .flat_map(|s| s.stations)
        .collect();
    let order = |s: &Station| (s.key().to_string(), s.last_update);
    got.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(got, expected);
}
