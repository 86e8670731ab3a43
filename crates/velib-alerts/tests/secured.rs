//! Every binary on Apache Kafka's SASL/SCRAM-SHA-512 listener, configured by one properties
//! file whose password comes from the environment: with the right password the whole chain runs
//! (create-topics → producer → monitor → alerts); with a wrong one each stops with the cause
//! named and the password nowhere in its output.

use std::process::Output;
use std::time::Duration;
use velib_testkit::kafka::TEST_SCRAM_USER;
use velib_testkit::secure::SecuredListeners;
use velib_testkit::{Process, unique_name};

const PASSWORD: &str = "correct-horse-battery-staple";

fn sibling_binary(name: &str) -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-alerts"), name)
}

/// `binary args… --kafka-config config`, with the password in the variable the file names.
fn command(
    binary: &str,
    args: &[&str],
    config: &std::path::Path,
    password: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(sibling_binary(binary));
    command
        .args(args)
        .arg("--kafka-config")
        .arg(config)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("VELIB_TEST_SASL_PASSWORD", password)
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    command
}

/// One properties file for every velib command, on the SCRAM listener.
fn write_config(dir: &std::path::Path, bootstrap: &str) -> std::path::PathBuf {
    let config = dir.join("client.properties");
    std::fs::write(
        &config,
        format!(
            "# One file for every velib command.\n\
             bootstrap.servers={bootstrap}\n\
             security.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.username={TEST_SCRAM_USER}\n\
             sasl.password=${{env:VELIB_TEST_SASL_PASSWORD}}\n"
        ),
    )
    .unwrap();
    config
}

async fn run(binary: &str, args: &[&str], config: &std::path::Path) -> Output {
    let run = command(binary, args, config, PASSWORD).output();
    // Generous for a loaded machine; the refusal comes within the first connection.
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{binary} kept running against a refusing broker"))
        .unwrap()
}

#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn every_binary_stops_on_refused_credentials_without_showing_the_password() {
    let listeners = SecuredListeners::from_env();
    assert_ne!(listeners.scram_password, PASSWORD);
    let dir = std::env::temp_dir().join(unique_name("velib-secured"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(&dir, &listeners.sasl_bootstrap);

    let cases: [(&str, &[&str]); 3] = [
        ("velib-producer", &["--source", "simulate"]),
        ("velib-monitor", &[]),
        (
            "velib-alerts",
            &[
                "--dry-run",
                "--contract",
                "Lyon",
                "--from",
                "velib@example.org",
                "--to",
                "ops@example.org",
            ],
        ),
    ];
    for (binary, args) in cases {
        let output = run(binary, args, &config).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report = format!(
            "{binary}: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            output.status
        );
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(stderr.contains("Kafka authentication failed"), "{report}");
        assert!(stderr.contains("sasl.password"), "{report}");
        assert!(
            !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
            "{report}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The right password: `create-topics`, the producer, the monitor and alerts all log in with
/// SCRAM-SHA-512 through the one file, and records make the whole trip.
#[tokio::test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn every_binary_logs_in_with_scram_and_records_make_the_whole_trip() {
    let listeners = SecuredListeners::from_env();
    let password = listeners.scram_password.as_str();
    let dir = std::env::temp_dir().join(unique_name("velib-scram"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(&dir, &listeners.sasl_bootstrap);
    let (stations, events, dlq) = (
        unique_name("scram-stations"),
        unique_name("scram-events"),
        unique_name("scram-dlq"),
    );
    let topic_flags = [
        "--stations-topic",
        &stations,
        "--events-topic",
        &events,
        "--dlq-topic",
        &dlq,
    ];

    let created = command("xtask", &["create-topics"], &config, password)
        .args(topic_flags)
        .args(["--partitions", "3", "--timeout", "30s"])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        report("create-topics", &created)
    );
    assert!(!String::from_utf8_lossy(&created.stderr).contains(password));

    let monitor = Process::spawn(
        command("velib-monitor", &[], &config, password)
            .args(["--topic", &stations, "--events-topic", &events])
            .args(["--dlq-topic", &dlq, "--group-id", &unique_name("g")])
            .args(["--format", "json", "-X", "auto.offset.reset=earliest"]),
    );
    // Forty polls of a 300-station city: enough for stations to run empty.
    let produced = command("velib-producer", &[], &config, password)
        .args(["--source", "simulate", "--simulate-stations", "300"])
        .args([
            "--max-polls",
            "40",
            "--interval",
            "100ms",
            "--topic",
            &stations,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        report("velib-producer", &produced)
    );
    assert!(!String::from_utf8_lossy(&produced.stderr).contains(password));

    // The monitor's change lines arrive through SCRAM; its events go back through it too.
    velib_testkit::wait_for(
        "change lines from the monitor",
        Duration::from_secs(60),
        || {
            let seen = !monitor.lines().is_empty();
            async move { seen.then_some(()) }
        },
    )
    .await;
    let published = velib_testkit::read_records(
        &velib_testkit::kafka_bootstrap(),
        &events,
        1,
        Duration::from_secs(60),
    )
    .await;
    let status = monitor.terminate().await;
    assert!(status.success(), "velib-monitor: {status}");

    // Alerts in dry run for the contract of the first event print its mail.
    let event: velib_model::EmptyStationEvent = {
        use rdkafka::Message;
        velib_model::EmptyStationEvent::from_json(published[0].payload().unwrap()).unwrap()
    };
    let alerts = Process::spawn(
        command("velib-alerts", &["--dry-run"], &config, password)
            .args(["--topic", &events, "--group", &unique_name("g")])
            .args([
                "--contract",
                &event.contract,
                "--cooldown",
                "0",
                "--max-age",
                "0",
            ])
            .args(["--from", "velib@example.org", "--to", "ops@example.org"])
            .args(["--notify-recovery"]),
    );
    velib_testkit::wait_for(
        "a dry-run mail from alerts",
        Duration::from_secs(60),
        || {
            let mailed = alerts
                .lines()
                .iter()
                .any(|l| l.contains("dry run: mail to"));
            async move { mailed.then_some(()) }
        },
    )
    .await;
    let status = alerts.terminate().await;
    assert!(status.success(), "velib-alerts: {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn report(binary: &str, output: &Output) -> String {
    format!(
        "{binary}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
