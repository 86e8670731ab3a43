//! A mail server that accepts connections and then says nothing: no greeting, or no answer in
//! the middle of a transaction. Sends must time out and be retried like an outage, the log must
//! name the server (never the password), and Ctrl-C must work while the start-up check waits.

use crate::smtp_sink::{SmtpSink, Stall};
use crate::support::{Counting, FROM, TO, config, empty, now_ms};
use secrecy::SecretString;
use std::time::Duration;
use tokio::process::Command;
use velib_alerts::mail::{FailureClass, Mailer, compose};
use velib_alerts::smtp_url::SmtpUrl;
use velib_testkit::MockKafka;
use velib_testkit::child::Child;

/// Far longer than any timeout below: a send still pending then is a send that hangs.
const HANG: Duration = Duration::from_secs(30);

fn url_with_password(sink: &SmtpSink) -> SmtpUrl {
    let url = sink.url().replace("smtp://", "smtp://alerts@");
    let url: SmtpUrl = url.parse().unwrap();
    url.with_credentials(None, Some(SecretString::from("hunter2")))
}

#[tokio::test]
async fn a_silent_or_stuck_server_times_out_with_an_error_naming_it() {
    for stall in [Stall::Greeting, Stall::Mail] {
        let sink = SmtpSink::start().await;
        sink.set_stall(stall);
        // With credentials, lettre would give up at AUTH, which this server does not offer on
        // plaintext, before reaching MAIL FROM: only the silent greeting gets a password.
        let url = match stall {
            Stall::Greeting => url_with_password(&sink),
            _ => sink.url().parse().unwrap(),
        };
        let mailer = url.mailer(Duration::from_millis(300)).unwrap();
        let message = compose(
            &empty("Lyon:1", now_ms()),
            &FROM.parse().unwrap(),
            &TO.parse().unwrap(),
        )
        .unwrap();
        let error = tokio::time::timeout(HANG, mailer.send(&message))
            .await
            .unwrap_or_else(|_| panic!("{stall:?}: the send hangs"))
            .unwrap_err();
        assert_eq!(error.class, FailureClass::Transient, "{stall:?}");
        let text = error.to_string();
        let host = sink.url().replace("smtp://", "");
        assert!(text.contains(&host), "{stall:?}: {text}");
        assert!(text.contains("SMTP_TIMEOUT"), "{stall:?}: {text}");
        assert!(!text.contains("hunter2"), "{stall:?}: {text}");
        let checked = tokio::time::timeout(HANG, mailer.check())
            .await
            .unwrap_or_else(|_| panic!("{stall:?}: the check hangs"));
        if stall == Stall::Greeting {
            assert!(checked.unwrap_err().to_string().contains(&host));
        }
    }
}

#[tokio::test]
async fn alerts_held_by_a_stuck_server_go_out_once_it_answers() {
    crate::support::logs();
    let kafka = MockKafka::start(1).unwrap();
    let topic = velib_testkit::unique_name("velib-empty-stations");
    kafka.create_topic(&topic, 1).unwrap();
    let sink = SmtpSink::start().await;
    sink.set_stall(Stall::Mail);
    let url: SmtpUrl = sink.url().parse().unwrap();
    let mailer = Counting::new(url.mailer(Duration::from_millis(300)).unwrap());
    let counting = mailer.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let alerts = tokio::spawn(velib_alerts::run(
        config(kafka.bootstrap_servers(), &topic),
        mailer,
        async {
            let _ = stopped.await;
        },
    ));
    let events = crate::support::Events::new(kafka.bootstrap_servers(), &topic);
    events.send(&empty("Lyon:1", now_ms())).await;

    // Each attempt meets the stuck server, times out and is retried.
    velib_testkit::wait_for("two timed-out attempts", HANG, || async {
        (counting.failures() >= 2).then_some(())
    })
    .await;
    assert!(sink.inbox().is_empty());
    sink.set_stall(Stall::No);
    let inbox = sink.wait_for_mails(1).await;
    let _ = stop.send(());
    let stats = tokio::time::timeout(HANG, alerts)
        .await
        .expect("alerts stop")
        .unwrap()
        .unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(stats.mails_sent, 1);
    assert!(stats.retried_failures >= 2, "{stats:?}");
}

fn alerts_binary(sink: &SmtpSink, smtp_timeout: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_velib-alerts"));
    command
        .args(["--contract", "Lyon", "--to", TO, "--from", FROM])
        .args(["--smtp-timeout", smtp_timeout])
        // No broker: the process must not get that far, or need it to stop.
        .args(["--bootstrap-servers", "127.0.0.1:1"])
        .env("SMTP_URL", sink.url().replace("smtp://", "smtp://alerts@"))
        .env("SMTP_PASSWORD", "hunter2")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR");
    command
}

/// Ctrl-C, and a hang-up (the terminal closed, an SSH connection dropped) the same way.
#[tokio::test]
async fn ctrl_c_or_a_hangup_stops_the_binary_while_the_mail_server_is_silent_at_start_up() {
    for signal in ["INT", "HUP"] {
        let sink = SmtpSink::start().await;
        sink.set_stall(Stall::Greeting);
        // The start-up check would wait a minute for the greeting.
        let mut alerts = Child::spawn(&mut alerts_binary(&sink, "60s"));
        velib_testkit::wait_for("the start-up check's connection", HANG, || async {
            (sink.connections() >= 1).then_some(())
        })
        .await;
        alerts.signal(signal).await;
        let status = alerts.wait(HANG).await;
        let stderr = alerts.stderr().join("\n");
        assert!(
            status.success(),
            "SIG{signal} at start-up ends the program gracefully: {status}\n{stderr}"
        );
        assert!(
            stderr.contains("stopped before the mail server answered")
                && stderr.contains(&format!("SIG{signal}")),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[tokio::test]
async fn a_silent_mail_server_at_start_up_is_logged_by_name_and_not_fatal() {
    let sink = SmtpSink::start().await;
    sink.set_stall(Stall::Greeting);
    let mut alerts = Child::spawn(&mut alerts_binary(&sink, "300ms"));
    let line = alerts
        .wait_for_stderr("mail server not usable now", HANG)
        .await;
    let host = sink.url().replace("smtp://", "");
    assert!(line.contains(&host), "{line}");
    assert!(line.contains("did not answer"), "{line}");
    // The consumer starts anyway, holding alerts until the server answers.
    alerts
        .wait_for_stderr("alerts consumer started", HANG)
        .await;
    alerts.signal("TERM").await;
    let status = alerts.wait(HANG).await;
    let stderr = alerts.stderr().join("\n");
    assert!(status.success(), "{status}\n{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
