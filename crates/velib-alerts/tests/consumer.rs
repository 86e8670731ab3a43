//! The alerts consumer against the mock Kafka cluster and a real SMTP server.

use crate::smtp_sink::{Received, SmtpSink};
use crate::support::{Counting, Events, back, config, empty, now_ms};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use velib_alerts::mail::{Mailer, SmtpMailer};
use velib_alerts::smtp_url::SmtpUrl;
use velib_alerts::{AlertsConfig, Stats};
use velib_model::{Health, StationHealthEvent};
use velib_testkit::{MockKafka, unique_name};

const MIN: i64 = 60_000;

fn smtp_mailer(sink: &SmtpSink) -> SmtpMailer {
    let url: SmtpUrl = sink.url().parse().unwrap();
    url.mailer(Duration::from_secs(10)).unwrap()
}

/// A running `velib_alerts::run`, stopped by [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Stats>,
}

impl Running {
    fn start<M: Mailer + 'static>(config: AlertsConfig, mailer: M) -> Running {
        crate::support::logs();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            velib_alerts::run(config, mailer, stopped)
                .await
                .expect("alerts run")
        });
        Running { stop, task }
    }

    async fn stop(self) -> Stats {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("alerts stop on shutdown")
            .unwrap()
    }
}

fn subjects(inbox: &[Received]) -> Vec<String> {
    inbox.iter().map(Received::subject).collect()
}

fn kafka_with_topic() -> (MockKafka, String) {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-empty-stations");
    // One partition: the events keep their order, so the mail for the last one proves every
    // earlier one was handled.
    kafka.create_topic(&topic, 1).unwrap();
    (kafka, topic)
}

#[tokio::test]
async fn mails_a_watched_station_and_skips_the_rest() {
    let (kafka, topic) = kafka_with_topic();
    let sink = SmtpSink::start().await;
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let config = config(kafka.bootstrap_servers(), &topic);
    let group = config.group.clone();
    let alerts = Running::start(config, smtp_mailer(&sink));

    let t = now_ms();
    events.send(&empty("Paris:1", t)).await;
    events.send_raw("Lyon:9", b"{not json").await;
    events.send(&empty("Lyon:1001", t)).await;

    let inbox = sink.wait_for_mails(1).await;
    assert_eq!(
        subjects(&inbox),
        ["No bikes left at 1001 - PLACE BELLECOUR (Lyon)"]
    );
    let stats = alerts.stop().await;
    // Every record was handled, and the shutdown commit says so.
    assert_eq!(
        committed(kafka.bootstrap_servers(), &group, &topic),
        Some(3)
    );
    assert_eq!(stats.events, 3);
    assert_eq!(stats.malformed, 1);
    assert_eq!(stats.matched, 1);
    assert_eq!(stats.mails_sent, 1);
}

#[tokio::test]
async fn server_down_then_up_mails_every_event_exactly_once() {
    let (kafka, topic) = kafka_with_topic();
    let mut sink = SmtpSink::start().await;
    let mailer = Counting::new(smtp_mailer(&sink));
    sink.stop().await;
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let alerts = Running::start(config(kafka.bootstrap_servers(), &topic), mailer.clone());

    let t = now_ms();
    for key in ["Lyon:1", "Lyon:2", "Lyon:3"] {
        events.send(&empty(key, t)).await;
    }
    // The consumer is holding on the first event: it keeps retrying it...
    velib_testkit::wait_for(
        "failed sends while the server is down",
        Duration::from_secs(30),
        || async { (mailer.failures() >= 3).then_some(()) },
    )
    .await;
    sink.restart().await;
    // ...and once the server is back, mails all three, then a last one that proves nothing
    // more is on its way.
    sink.wait_for_mails(3).await;
    events.send(&empty("Lyon:4", t)).await;
    let inbox = sink.wait_for_mails(4).await;
    let stats = alerts.stop().await;

    assert_eq!(
        subjects(&inbox),
        ["1", "2", "3", "4"].map(|id| format!("No bikes left at {id} - PLACE BELLECOUR (Lyon)"))
    );
    assert_eq!(stats.mails_sent, 4);
    assert!(stats.retried_failures >= 3, "{stats:?}");
    assert_eq!(stats.permanent_failures, 0);
}

#[tokio::test]
async fn a_temporary_refusal_holds_then_resumes() {
    let (kafka, topic) = kafka_with_topic();
    let sink = SmtpSink::start().await;
    sink.set_temp_fail(true);
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let alerts = Running::start(
        config(kafka.bootstrap_servers(), &topic),
        smtp_mailer(&sink),
    );

    let t = now_ms();
    events.send(&empty("Lyon:1", t)).await;
    events.send(&empty("Lyon:2", t)).await;
    velib_testkit::wait_for("451 answers", Duration::from_secs(30), || async {
        (sink.temp_refusals() >= 3).then_some(())
    })
    .await;
    assert!(sink.inbox().is_empty());
    sink.set_temp_fail(false);
    events.send(&empty("Lyon:3", t)).await;
    let inbox = sink.wait_for_mails(3).await;
    let stats = alerts.stop().await;
    assert_eq!(
        subjects(&inbox),
        ["1", "2", "3"].map(|id| format!("No bikes left at {id} - PLACE BELLECOUR (Lyon)"))
    );
    assert_eq!(stats.mails_sent, 3);
}

#[tokio::test]
async fn a_refused_recipient_is_skipped_not_retried() {
    let (kafka, topic) = kafka_with_topic();
    let sink = SmtpSink::start().await;
    sink.reject_recipient("gone@velib.test");
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let mut config = config(kafka.bootstrap_servers(), &topic);
    config.to.insert(0, "gone@velib.test".parse().unwrap());
    let alerts = Running::start(config, smtp_mailer(&sink));

    let t = now_ms();
    events.send(&empty("Lyon:1", t)).await;
    events.send(&empty("Lyon:2", t)).await;
    let inbox = sink.wait_for_mails(2).await;
    let stats = alerts.stop().await;
    assert!(inbox.iter().all(|m| m.to == ["me@velib.test"]), "{inbox:?}");
    assert_eq!(stats.mails_sent, 2);
    assert_eq!(stats.permanent_failures, 2);
    assert_eq!(stats.retried_failures, 0);
}

#[tokio::test]
async fn shutdown_while_holding_commits_nothing_past_the_held_event() {
    let (kafka, topic) = kafka_with_topic();
    let sink = SmtpSink::start().await;
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let config = config(kafka.bootstrap_servers(), &topic);
    let group = config.group.clone();
    let alerts = Running::start(config, smtp_mailer(&sink));
    let t = now_ms();
    events.send(&empty("Lyon:1", t)).await;
    sink.wait_for_mails(1).await;
    sink.set_temp_fail(true);
    events.send(&empty("Lyon:2", t)).await;
    velib_testkit::wait_for("451 answers", Duration::from_secs(30), || async {
        (sink.temp_refusals() >= 1).then_some(())
    })
    .await;
    let stats = alerts.stop().await;
    assert_eq!(stats.mails_sent, 1);
    // The group resumes at the held event (offset 1), not after it: the next run mails it.
    assert_eq!(
        committed(kafka.bootstrap_servers(), &group, &topic),
        Some(1)
    );
}

/// The offset `group` committed for partition 0 of `topic`, read without joining the group.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    match committed.find_partition(topic, 0).unwrap().offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// A counter's name, labels and value.
type Counter = (String, Vec<(String, String)>, u64);

/// Runs on a current-thread runtime inside a local metrics recorder, so the counters seen are
/// this test's alone.
#[test]
fn a_burst_of_duplicates_and_repeats_yields_the_expected_mails_only() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (inbox, stats) = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (kafka, topic) = kafka_with_topic();
            let sink = SmtpSink::start().await;
            let events = Events::new(kafka.bootstrap_servers(), &topic);
            let mut config = config(kafka.bootstrap_servers(), &topic);
            config.notify_recovery = true;
            config.max_age = Some(Duration::from_secs(24 * 3600));
            let alerts = Running::start(config, smtp_mailer(&sink));

            let t = now_ms() - 30 * MIN;
            for event in [
                empty("Lyon:1", t),                     // mail 1
                empty("Lyon:1", t),                     // duplicate
                empty("Lyon:2", t),                     // mail 2
                empty("Lyon:1", t + MIN),               // cooldown
                empty("Lyon:2", t),                     // duplicate
                back("Lyon:3", t),                      // nothing to recover
                back("Lyon:1", t + 2 * MIN),            // mail 3
                back("Lyon:1", t + 2 * MIN),            // duplicate
                empty("Lyon:1", t + 3 * MIN),           // cooldown (flapping)
                empty("Lyon:1", t - 3 * 24 * 60 * MIN), // stale
                empty("Paris:1", t),                    // not watched
                empty("Lyon:1", t + 20 * MIN),          // mail 4: the cooldown is over
                empty("Lyon:9", t),                     // mail 5: the last one
            ] {
                events.send(&event).await;
            }
            let inbox = sink.wait_for_mails(5).await;
            (inbox, alerts.stop().await)
        })
    });

    let empty_at = |id: &str| format!("No bikes left at {id} - PLACE BELLECOUR (Lyon)");
    assert_eq!(
        subjects(&inbox),
        [
            empty_at("1"),
            empty_at("2"),
            "Bikes are back at 1 - PLACE BELLECOUR (Lyon)".to_owned(),
            empty_at("1"),
            empty_at("9"),
        ]
    );
    assert_eq!(
        stats,
        Stats {
            events: 13,
            malformed: 0,
            matched: 12,
            filtered: 1,
            suppressed: 6,
            mails_sent: 5,
            retried_failures: 0,
            permanent_failures: 0,
        }
    );

    let counters: Vec<Counter> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                Some((key.name().to_owned(), labels, n))
            }
            _ => None,
        })
        .collect();
    let counter = |name: &str, label: Option<(&str, &str)>| -> u64 {
        counters
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    assert_eq!(counter("velib_alerts_events_total", None), 13);
    assert_eq!(counter("velib_alerts_events_matched_total", None), 12);
    assert_eq!(counter("velib_alerts_mails_sent_total", None), 5);
    assert_eq!(
        counter(
            "velib_alerts_events_suppressed_total",
            Some(("reason", "duplicate"))
        ),
        3
    );
    assert_eq!(
        counter(
            "velib_alerts_events_suppressed_total",
            Some(("reason", "cooldown"))
        ),
        2
    );
    assert_eq!(
        counter(
            "velib_alerts_events_filtered_total",
            Some(("reason", "stale"))
        ),
        1
    );
}

/// E-bikes and returns travel the events topic beside bikes: one event may carry several
/// transitions (the monitor publishes one per station record), each mailed once, under its own
/// cooldown; a shortage not asked for is not mailed; an event of the first schema, as a velib
/// before e-bikes wrote it, still is.
#[tokio::test]
async fn e_bikes_and_returns_are_mailed_once_each_beside_bikes() {
    use crate::support::event;
    use velib_model::{EmptinessKind, Shortage};

    let (kafka, topic) = kafka_with_topic();
    let sink = SmtpSink::start().await;
    let events = Events::new(kafka.bootstrap_servers(), &topic);
    let mut config = config(kafka.bootstrap_servers(), &topic);
    config.shortages = [Shortage::Bikes, Shortage::Ebikes].into();
    config.notify_recovery = true;
    let group = config.group.clone();
    let alerts = Running::start(config, smtp_mailer(&sink));

    let t = now_ms();
    // The last bike, an e-bike, leaves: one record, two lines crossed.
    let mut both = empty("Lyon:1", t);
    both.also = vec![EmptinessKind::EbikesGone];
    both.available_ebikes = Some(0);
    events.send(&both).await;
    events.send(&both).await; // delivered twice (an at-least-once monitor): no second mail
    // Classic bikes come back, e-bikes do not: only the bikes' line ends.
    events.send(&back("Lyon:1", t + MIN)).await;
    // Within the cooldown, the e-bikes come and go again: one "back", no second "gone".
    events
        .send(&event("Lyon:1", EmptinessKind::EbikesBack, t + 2 * MIN))
        .await;
    events
        .send(&event("Lyon:1", EmptinessKind::EbikesGone, t + 3 * MIN))
        .await;
    // Returns were not asked for.
    events
        .send(&event("Lyon:2", EmptinessKind::ReturnsStopped, t))
        .await;
    // Written by a velib of schema version 1, before e-bikes: read and mailed as before.
    let old = format!(
        r#"{{"version":1,"kind":"became_empty","key":"Lyon:3","contract":"Lyon","number":3,"name":"3 - TERREAUX","address":"Place des Terreaux","position":{{"lat":45.767,"lng":4.833}},"status":"OPEN","bike_stands":20,"available_bikes":0,"available_bike_stands":20,"last_update":{t},"observed_at":{t}}}"#
    );
    events.send_raw("Lyon:3", old.as_bytes()).await;

    let inbox = sink.wait_for_mails(5).await;
    let stats = alerts.stop().await;
    assert_eq!(
        subjects(&inbox),
        [
            "No bikes left at 1 - PLACE BELLECOUR (Lyon)",
            "No e-bikes left at 1 - PLACE BELLECOUR (Lyon)",
            "Bikes are back at 1 - PLACE BELLECOUR (Lyon)",
            "E-bikes are back at 1 - PLACE BELLECOUR (Lyon)",
            "No bikes left at 3 - TERREAUX (Lyon)",
        ]
    );
    let body = inbox[1].parsed().body_text(0).unwrap().into_owned();
    assert!(body.contains("E-bikes:   0 available"), "{body}");
    assert_eq!(
        committed(kafka.bootstrap_servers(), &group, &topic),
        Some(7)
    );
    assert_eq!((stats.events, stats.malformed, stats.matched), (7, 0, 7));
    // Suppressed: the repeated record's two lines and the e-bikes gone in the cooldown;
    // filtered: the returns.
    assert_eq!((stats.suppressed, stats.filtered), (3, 1));
    assert_eq!(stats.mails_sent, 5);
}

/// A change of health of `key` decided at `at` (epoch ms).
fn health_change(key: &str, health: Health, previous: Health, at: i64, reason: &str) -> Vec<u8> {
    StationHealthEvent {
        version: StationHealthEvent::VERSION,
        key: key.parse().unwrap(),
        health,
        previous,
        since: at - 5 * 60 * MIN,
        decided_at: at,
        reason: reason.to_owned(),
    }
    .to_json()
}

/// `--alert-on bikes,locked --notify-recovery` on both topics: locked stations of the watched
/// contract are mailed, named as the events topic named them (or by key), with their reason
/// made safe; degraded (not asked for), another contract, a malformed record, the same change
/// again and a recovery nobody was told of are not. One partition per topic, and the last
/// record's mail proves every earlier one of its topic was handled.
#[tokio::test]
async fn health_changes_are_mailed_as_asked() {
    let (kafka, topic) = kafka_with_topic();
    let bootstrap = kafka.bootstrap_servers();
    let health_topic = unique_name("velib-station-health");
    kafka.create_topic(&health_topic, 1).unwrap();
    let sink = SmtpSink::start().await;
    let events = Events::new(bootstrap, &topic);
    let health = Events::new(bootstrap, &health_topic);
    let mut config = config(bootstrap, &topic);
    config.health = vec![Health::Locked];
    config.health_topic = health_topic.clone();
    config.notify_recovery = true;
    let group = config.group.clone();
    let alerts = Running::start(config, smtp_mailer(&sink));

    let t = now_ms();
    // The events topic names Lyon:12 (and its mail says it was read).
    events.send(&empty("Lyon:12", t)).await;
    sink.wait_for_mails(1).await;
    let (locked, ok, degraded) = (Health::Locked, Health::Ok, Health::Degraded);
    let sneaky = "no movement for 5 h\r\nBcc: everyone@example.org";
    for (key, payload) in [
        ("Lyon:12", b"{not json".to_vec()),
        (
            "Lyon:12",
            health_change("Lyon:12", degraded, ok, t, "6 of 20 docks"),
        ),
        ("Paris:1", health_change("Paris:1", locked, ok, t, "still")),
        ("Lyon:7", health_change("Lyon:7", locked, ok, t, "still")),
        (
            "Lyon:12",
            health_change("Lyon:12", locked, degraded, t + MIN, sneaky),
        ),
        (
            "Lyon:12",
            health_change("Lyon:12", locked, degraded, t + MIN, sneaky),
        ),
        (
            "Lyon:12",
            health_change("Lyon:12", ok, locked, t + 2 * MIN, "moved"),
        ),
        (
            "Lyon:8",
            health_change("Lyon:8", ok, locked, t + 2 * MIN, "moved"),
        ),
        (
            "Lyon:13",
            health_change("Lyon:13", locked, ok, t + 3 * MIN, "still"),
        ),
    ] {
        health.send_raw(key, &payload).await;
    }
    let inbox = sink.wait_for_mails(5).await;
    assert_eq!(
        subjects(&inbox),
        [
            "No bikes left at 12 - PLACE BELLECOUR (Lyon)",
            "station 7 (Lyon) looks locked",
            "12 - PLACE BELLECOUR (Lyon) looks locked",
            "12 - PLACE BELLECOUR (Lyon) works again",
            "station 13 (Lyon) looks locked",
        ]
    );
    let body = inbox[2].parsed().body_text(0).unwrap().into_owned();
    assert!(
        body.contains("Address:   Place Bellecour, 69002 Lyon"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == "Why:       no movement for 5 h Bcc: everyone@example.org"),
        "{body}"
    );
    assert!(
        body.contains("https://www.openstreetmap.org/?mlat=45.75780"),
        "{body}"
    );
    assert!(
        !inbox[1]
            .parsed()
            .body_text(0)
            .unwrap()
            .contains("openstreetmap")
    );
    let stats = alerts.stop().await;
    assert_eq!(stats.events, 10);
    assert_eq!(stats.malformed, 1);
    assert_eq!(stats.mails_sent, 5);
    // Both topics' records were handled, and committed.
    assert_eq!(committed(bootstrap, &group, &topic), Some(1));
    assert_eq!(committed(bootstrap, &group, &health_topic), Some(9));
}
