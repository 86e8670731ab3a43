//! Every binary against a listener that refuses it, configured by one properties file whose
//! password comes from the environment: each stops with the cause named and the password
//! nowhere in its output.

use std::process::Output;
use std::time::Duration;
use velib_testkit::secure::SecuredTansu;

const PASSWORD: &str = "correct-horse-battery-staple";

fn sibling_binary(name: &str) -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-alerts"), name)
}

async fn run(binary: &str, args: &[&str], config: &std::path::Path) -> Output {
    let run = tokio::process::Command::new(sibling_binary(binary))
        .arg("--kafka-config")
        .arg(config)
        .args(args)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("VELIB_TEST_SASL_PASSWORD", PASSWORD)
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output();
    // Generous for a loaded machine; the refusal comes within the first connection.
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{binary} kept running against a refusing broker"))
        .unwrap()
}

#[tokio::test]
#[ignore = "needs tansu: run `cargo xtask test`"]
async fn every_binary_stops_on_refused_credentials_without_showing_the_password() {
    let broker = SecuredTansu::authenticating();
    let dir = std::env::temp_dir().join(velib_testkit::unique_name("velib-secured"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("client.properties");
    std::fs::write(
        &config,
        format!(
            "# One file for every velib command.\n\
             bootstrap.servers={}\n\
             security.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-256\n\
             sasl.username=velib\n\
             sasl.password=${{env:VELIB_TEST_SASL_PASSWORD}}\n",
            broker.bootstrap()
        ),
    )
    .unwrap();

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
