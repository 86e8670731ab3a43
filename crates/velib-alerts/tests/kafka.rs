//! Against Apache Kafka, a node in its own process started by `cargo xtask test`.

use crate::smtp_sink::SmtpSink;
use crate::support::{Events, config, empty, now_ms};
use std::time::Duration;
use velib_alerts::smtp_url::SmtpUrl;
use velib_testkit::{PipelineTopics, admin_create_topic, kafka_bootstrap, unique_name};

/// Events produced with a plain rdkafka producer to a topic on Apache Kafka, consumed by `run`,
/// mailed to the SMTP server.
#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn events_on_kafka_are_mailed() {
    let bootstrap = kafka_bootstrap();
    let topic = unique_name("velib-empty-stations");
    admin_create_topic(&bootstrap, &topic, 1).await.unwrap();
    let sink = SmtpSink::start().await;
    let url: SmtpUrl = sink.url().parse().unwrap();
    let mailer = url.mailer(Duration::from_secs(10)).unwrap();
    let events = Events::new(&bootstrap, &topic);
    let t = now_ms();
    events.send(&empty("Lyon:1", t)).await;
    events.send(&empty("Lyon:1", t)).await; // a duplicate: no second mail
    events.send(&empty("Paris:1", t)).await; // not watched
    events.send(&empty("Lyon:2", t)).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let alerts = tokio::spawn(velib_alerts::run(
        config(&bootstrap, &topic),
        mailer,
        stopped,
    ));
    let inbox = sink.wait_for_mails(2).await;
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(60), alerts)
        .await
        .expect("alerts stop")
        .unwrap()
        .unwrap();
    let subjects: Vec<String> = inbox.iter().map(|m| m.subject()).collect();
    assert_eq!(
        subjects,
        [
            "No bikes left at 1 - PLACE BELLECOUR (Lyon)",
            "No bikes left at 2 - PLACE BELLECOUR (Lyon)"
        ]
    );
    assert_eq!(
        (stats.events, stats.mails_sent, stats.suppressed),
        (4, 2, 1)
    );
}

fn sibling_binary(name: &str) -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-alerts"), name)
}

/// The whole chain on Apache Kafka: the producer binary on the simulated city → the monitor
/// binary (exactly once, its default) → `velib-empty-stations` → alerts → the SMTP server,
/// which holds one mail per "became empty" event the monitor published, one per station record
/// that left an open station without e-bikes — counted from the station records themselves,
/// with this test's own reading of their JSON — and nothing else.
#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn producer_monitor_alerts_chain_on_kafka() {
    use rdkafka::Message;
    use std::collections::HashSet;
    use velib_model::{EmptinessKind, EmptyStationEvent};

    let bootstrap = kafka_bootstrap();
    let PipelineTopics {
        stations,
        events,
        dlq,
        state,
    } = PipelineTopics::create(&bootstrap).await;

    let group = unique_name("velib-monitor");
    let monitor = velib_testkit::Process::spawn(
        tokio::process::Command::new(sibling_binary("velib-monitor"))
            .args(["--bootstrap-servers", &bootstrap, "--topic", &stations])
            .args(["--events-topic", &events, "--dlq-topic", &dlq])
            .args(["--state-topic", &state])
            .args(["--group-id", &group])
            .args(["-X", "auto.offset.reset=earliest"])
            .env("RUST_LOG", "warn"),
    );

    // Forty polls of a 300-station city: enough for stations to run empty.
    let producer = tokio::process::Command::new(sibling_binary("velib-producer"))
        .args([
            "--source",
            "simulate",
            "--simulate-stations",
            "300",
            "--max-polls",
            "40",
        ])
        .args([
            "--interval",
            "100ms",
            "--bootstrap-servers",
            &bootstrap,
            "--topic",
            &stations,
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

    // Wait until the monitor has committed the end of every partition (it has judged every
    // record), then stop it: SIGTERM delivers its last events.
    velib_testkit::wait_for(
        "the monitor to commit every station record",
        Duration::from_secs(60),
        || {
            let caught_up = velib_testkit::group_caught_up(&bootstrap, &group, &stations);
            async move { caught_up.then_some(()) }
        },
    )
    .await;
    let status = monitor.terminate().await;
    assert!(status.success(), "{status}");

    let published: Vec<EmptyStationEvent> =
        velib_testkit::read_until_quiet(&bootstrap, &events, Duration::from_secs(2))
            .await
            .iter()
            .map(|m| EmptyStationEvent::from_json(m.payload().unwrap()).unwrap())
            .collect();
    let empties: Vec<&EmptyStationEvent> = published
        .iter()
        .filter(|e| e.kind == EmptinessKind::BecameEmpty)
        .collect();
    assert!(
        !empties.is_empty(),
        "the simulated city had no station running empty"
    );

    let ebikes_gone = ebikes_gone_in(
        &velib_testkit::read_until_quiet(&bootstrap, &stations, Duration::from_secs(2)).await,
    );
    assert!(
        !ebikes_gone.is_empty(),
        "the simulated city had no station running out of e-bikes"
    );

    // Alerts for every contract of the simulated city, without cooldown: one mail per
    // transition, bikes and e-bikes.
    let contracts: HashSet<&str> = published.iter().map(|e| e.contract.as_str()).collect();
    let mut config = config(&bootstrap, &events);
    config.shortages = [velib_model::Shortage::Bikes, velib_model::Shortage::Ebikes].into();
    config.watch = contracts
        .iter()
        .fold(velib_alerts::select::WatchList::default(), |w, c| {
            w.with_contract(c)
        });
    config.cooldown = Duration::from_millis(1);
    config.max_age = None;
    let sink = SmtpSink::start().await;
    let url: SmtpUrl = sink.url().parse().unwrap();
    let mailer = url.mailer(Duration::from_secs(10)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let alerts = tokio::spawn(velib_alerts::run(config, mailer, stopped));
    sink.wait_for_mails(empties.len() + ebikes_gone.len()).await;
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(60), alerts)
        .await
        .expect("alerts stop")
        .unwrap()
        .unwrap();
    let inbox = sink.inbox();
    assert_eq!(
        inbox.len(),
        empties.len() + ebikes_gone.len(),
        "one mail per became-empty event and per e-bike shortage: {stats:?}"
    );
    let mut expected: Vec<String> = empties
        .iter()
        .map(|e| format!("No bikes left at {} ({})", e.name, e.contract))
        .chain(ebikes_gone)
        .collect();
    let mut got: Vec<String> = inbox.iter().map(|m| m.subject()).collect();
    println!(
        "chain: {} mails, {} for stations running empty and {} for stations running out of e-bikes",
        inbox.len(),
        empties.len(),
        expected.len() - empties.len()
    );
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

/// The subjects of the "no e-bikes" mails `records` call for, read from their JSON without
/// velib's model: per station, in the order of its partition, each record from a newer
/// snapshot whose station is open with no e-bike (per-type counts of kind `electric`) after a
/// record where it was open with some, or closed.
fn ebikes_gone_in(records: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    use rdkafka::Message;
    use serde_json::Value;
    use std::collections::HashMap;

    // Station key → (snapshot, whether the open station had no e-bike, if the record said).
    let mut known: HashMap<Vec<u8>, (i64, Option<bool>)> = HashMap::new();
    let mut subjects = Vec::new();
    for record in records {
        let station: Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
        let snapshot = station["snapshot_at"].as_i64().unwrap();
        let open = station["status"] == "OPEN";
        let none_left = station["bikes_by_type"].as_array().map(|types| {
            let ebikes: u64 = types
                .iter()
                .filter(|t| t["kind"] == "electric")
                .map(|t| t["count"].as_u64().unwrap())
                .sum();
            open && ebikes == 0
        });
        let key = record.key().unwrap().to_vec();
        match known.get(&key) {
            Some(&(seen, _)) if seen >= snapshot => continue,
            Some(&(_, Some(false))) if none_left == Some(true) => subjects.push(format!(
                "No e-bikes left at {} ({})",
                station["name"].as_str().unwrap(),
                station["contract_name"].as_str().unwrap()
            )),
            _ => {}
        }
        known.insert(key, (snapshot, none_left));
    }
    subjects
}
