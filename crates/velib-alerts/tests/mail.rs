//! Composing and sending alerts to a real SMTP server.

use crate::smtp_sink::SmtpSink;
use crate::support::{FROM, TO, empty, now_ms};
use lettre::message::Mailbox;
use std::time::Duration;
use velib_alerts::mail::{FailureClass, Mailer, SmtpMailer, compose};
use velib_alerts::smtp_url::SmtpUrl;

fn mailer(sink: &SmtpSink) -> SmtpMailer {
    let url: SmtpUrl = sink.url().parse().unwrap();
    url.mailer(Duration::from_secs(10)).unwrap()
}

fn mbox(s: &str) -> Mailbox {
    s.parse().unwrap()
}

fn header_names(message: &mail_parser::Message<'_>) -> Vec<String> {
    message
        .headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn the_received_mail_names_the_station() {
    let sink = SmtpSink::start().await;
    let event = empty("Lyon:1001", 1_493_734_764_000);
    let message = compose(&event, &mbox(FROM), &mbox(TO)).unwrap();
    mailer(&sink).send(&message).await.unwrap();

    let inbox = sink.wait_for_mails(1).await;
    let received = &inbox[0];
    assert_eq!(received.from, "alerts@velib.test");
    assert_eq!(received.to, ["me@velib.test"]);
    let parsed = received.parsed();
    assert_eq!(
        parsed.subject(),
        Some("No bikes left at 1001 - PLACE BELLECOUR (Lyon)")
    );
    assert_eq!(
        parsed
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("alerts@velib.test")
    );
    assert_eq!(
        parsed.from().and_then(|a| a.first()).and_then(|a| a.name()),
        Some("Velib alerts")
    );
    assert_eq!(
        parsed
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("me@velib.test")
    );
    assert!(
        parsed
            .message_id()
            .unwrap()
            .ends_with("@velib-alerts.invalid")
    );
    assert!(parsed.date().is_some());
    let body = parsed.body_text(0).unwrap();
    for needle in [
        "1001 - PLACE BELLECOUR (Lyon) has no bikes left.",
        "Address:   Place Bellecour, 69002 Lyon",
        "Contract:  Lyon",
        "Bikes:     0 available",
        "Stands:    20 free of 20",
        "When:      2017-05-02 14:19:24 UTC",
        "https://www.openstreetmap.org/?mlat=45.75780&mlon=4.83200&zoom=18",
    ] {
        assert!(body.contains(needle), "{needle:?} not in\n{body}");
    }
}

#[tokio::test]
async fn a_station_name_with_crlf_adds_no_header() {
    let sink = SmtpSink::start().await;
    let mut event = empty("Lyon:1001", now_ms());
    event.name = "Evil\r\nBcc: victim@evil.test\r\nX-Injected: yes".to_owned();
    event.address = "Rue\r\n.\r\nMAIL FROM:<x@evil.test>".to_owned();
    let message = compose(&event, &mbox(FROM), &mbox(TO)).unwrap();
    mailer(&sink).send(&message).await.unwrap();

    let inbox = sink.wait_for_mails(1).await;
    assert_eq!(inbox.len(), 1, "the body did not end the message early");
    assert_eq!(inbox[0].to, ["me@velib.test"], "no recipient was added");
    let parsed = inbox[0].parsed();
    let names = header_names(&parsed);
    assert!(
        !names.iter().any(|n| n == "bcc" || n == "x-injected"),
        "{names:?}"
    );
    assert_eq!(
        parsed.subject(),
        Some("No bikes left at Evil Bcc: victim@evil.test X-Injected: yes (Lyon)")
    );
}

#[tokio::test]
async fn lettre_alone_keeps_crlf_out_of_the_headers_on_the_wire() {
    // Without compose's cleaning: a raw CR/LF subject straight through lettre and SMTP.
    let sink = SmtpSink::start().await;
    let message = lettre::Message::builder()
        .from(mbox(FROM))
        .to(mbox(TO))
        .subject("Empty\r\nBcc: victim@evil.test\r\nX-Injected: yes")
        .body(String::from("body"))
        .unwrap();
    mailer(&sink).send(&message).await.unwrap();
    let inbox = sink.wait_for_mails(1).await;
    let parsed = inbox[0].parsed();
    let names = header_names(&parsed);
    assert!(
        !names.iter().any(|n| n == "bcc" || n == "x-injected"),
        "{names:?}"
    );
    assert_eq!(inbox[0].to, ["me@velib.test"]);
    assert!(parsed.subject().unwrap().contains("Bcc: victim@evil.test"));
}

#[tokio::test]
async fn failures_are_classified() {
    let mut sink = SmtpSink::start().await;
    let mailer = mailer(&sink);
    let event = empty("Lyon:1001", now_ms());

    sink.reject_recipient("nobody@velib.test");
    let refused = compose(&event, &mbox(FROM), &mbox("nobody@velib.test")).unwrap();
    let err = mailer.send(&refused).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent, "{err}");
    assert!(err.message.contains("550"), "{err}");

    sink.set_temp_fail(true);
    let message = compose(&event, &mbox(FROM), &mbox(TO)).unwrap();
    let err = mailer.send(&message).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Transient, "{err}");
    assert!(err.message.contains("451"), "{err}");
    sink.set_temp_fail(false);

    sink.stop().await;
    let err = mailer.send(&message).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Transient, "{err}");
    assert!(err.message.to_lowercase().contains("refused"), "{err}");

    sink.restart().await;
    mailer.send(&message).await.unwrap();
    assert_eq!(sink.wait_for_mails(1).await.len(), 1);
}
