//! Against tansu, a Kafka-protocol broker in its own process (`cargo xtask test`).

use crate::smtp_sink::SmtpSink;
use crate::support::{Events, config, empty, now_ms};
use std::time::Duration;
use velib_alerts::mail::SmtpMailer;
use velib_alerts::smtp_url::SmtpUrl;
use velib_testkit::{admin_create_topic, tansu_bootstrap, unique_name};

/// Events produced with a plain rdkafka producer to a topic on tansu, consumed by `run`, mailed
/// to the SMTP server. (The full producer → monitor → alerts chain belongs with those crates.)
#[tokio::test]
#[ignore = "needs the tansu broker: run `cargo xtask test`"]
async fn events_on_tansu_are_mailed() {
    let bootstrap = tansu_bootstrap();
    let topic = unique_name("velib-empty-stations");
    admin_create_topic(&bootstrap, &topic, 1).await.unwrap();
    let sink = SmtpSink::start().await;
    let url: SmtpUrl = sink.url().parse().unwrap();
    let mailer = SmtpMailer::new(
        url.transport(Duration::from_secs(10)).unwrap(),
        url.to_string(),
    );
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
