//! The binary on failures only a process shows: a source that fails for good while records are
//! still queued, and flags that make no sense. A real HTTP server on 127.0.0.1 stands in for
//! the JCDecaux API; the broker is the in-process mock cluster.

use rdkafka::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use velib_testkit::child::Child;
use velib_testkit::{MockKafka, read_records, unique_name};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Three Lyon stations, as the JCDecaux v1 API sends them.
const STATIONS: &str = r#"[
 {"number":1001,"contract_name":"Lyon","name":"1001 - TERREAUX","address":"Place des Terreaux","position":{"lat":45.767,"lng":4.833},"banking":true,"bonus":false,"bike_stands":20,"available_bike_stands":12,"available_bikes":8,"status":"OPEN","last_update":1700000000000},
 {"number":1002,"contract_name":"Lyon","name":"1002 - OPERA","address":"Place de la Comedie","position":{"lat":45.768,"lng":4.836},"banking":true,"bonus":false,"bike_stands":20,"available_bike_stands":5,"available_bikes":15,"status":"OPEN","last_update":1700000000000},
 {"number":1003,"contract_name":"Lyon","name":"1003 - HOTEL DE VILLE","address":"Rue de la Republique","position":{"lat":45.766,"lng":4.835},"banking":true,"bonus":false,"bike_stands":20,"available_bike_stands":20,"available_bikes":0,"status":"OPEN","last_update":1700000000000}
]"#;

/// An HTTP server on 127.0.0.1 that answers the first request with the stations and every later
/// one with `401 Unauthorized`, as JCDecaux does once a key is revoked. Returns its base URL.
async fn api_revoking_the_key_after_one_poll() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = served.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The request head; its content does not matter here.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let (status, body) = if n == 0 {
                    ("200 OK", STATIONS)
                } else {
                    ("401 Unauthorized", r#"{"error":"Unauthorized"}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    base
}

#[tokio::test]
async fn a_revoked_api_key_flushes_the_queued_records_and_exits_non_zero() {
    let _alone = crate::alone().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-stations");
    kafka.create_topic(&topic, 1).unwrap();
    let api = api_revoking_the_key_after_one_poll().await;
    // The broker is away during the poll: the records wait in the producer's queue.
    kafka.all_brokers_down().unwrap();
    let mut producer = Child::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-producer"))
            .args(["--source", "jcdecaux:Lyon", "--jcdecaux-base-url", &api])
            .args(["--bootstrap-servers", kafka.bootstrap_servers()])
            .args(["--topic", &topic, "--interval", "200ms"])
            .args(["--flush-timeout", "60s"])
            .env("JCDECAUX_API_KEY", "revoked-key-4f3a")
            .env("RUST_LOG", "info"),
    );
    producer
        .wait_for_stderr("stopping: flushing queued records", TIMEOUT)
        .await;
    // Back while the producer flushes: what was queued before the 401 must get through.
    kafka.all_brokers_up().unwrap();
    let status = producer.wait(TIMEOUT).await;
    let stderr = producer.stderr().join("\n");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(
        stderr.contains("the 3 station records queued before were delivered"),
        "{stderr}"
    );
    assert!(!stderr.contains("revoked-key-4f3a"), "{stderr}");
    let records = read_records(kafka.bootstrap_servers(), &topic, 3, TIMEOUT).await;
    let mut keys: Vec<&str> = records.iter().map(velib_testkit::key_str).collect();
    keys.sort_unstable();
    // JCDecaux contracts are keyed lower-case, whatever case the API sends.
    assert_eq!(keys, ["lyon:1001", "lyon:1002", "lyon:1003"]);
    assert!(records.iter().all(|r| r.payload().is_some()));
}

/// Runs the binary with `args` and returns its exit code and stderr.
async fn run_with(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_velib-producer"))
        .args(args)
        // Nothing may be reached: the flags alone must stop it.
        .args(["--bootstrap-servers", "127.0.0.1:1", "--max-polls", "1"])
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, output)
        .await
        .expect("the binary exits")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_durations_are_flag_errors_not_panics() {
    let _gate = crate::beside_others().await;
    for (args, flag, says) in [
        (&["--interval", "0"][..], "--interval", "more than 0"),
        (&["--interval", "0ms"], "--interval", "more than 0"),
        (
            &["--interval", "99999999999999999999999"],
            "--interval",
            "at most 365d",
        ),
        (&["--interval", "366d"], "--interval", "at most 365d"),
        (
            &["--flush-timeout", "1000000000000h"],
            "--flush-timeout",
            "at most 365d",
        ),
        (&["--interval", "soon"], "--interval", "e.g. 500ms"),
    ] {
        let (code, stderr) = run_with(args).await;
        // clap's usage error: exit 2, naming the flag; never a panic (101).
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The message for a malformed duration does not suggest 0 where 0 is refused.
    let (_, stderr) = run_with(&["--interval", "soon"]).await;
    assert!(!stderr.contains(" or 0"), "{stderr}");
}

#[tokio::test]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let _gate = crate::beside_others().await;
    // The simulated source and one poll: log lines at once, whatever the broker.
    let (_, stderr) = run_with(&["--source", "simulate", "--flush-timeout", "0"]).await;
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// Runs the binary on a pseudo-terminal (python3's `pty`), as a person at a terminal would,
/// with `NO_COLOR` set to `no_color`, and returns what it wrote there.
async fn run_on_a_terminal(no_color: Option<&str>) -> String {
    let mut command = Command::new("python3");
    command
        .args(["-c", "import pty, sys; pty.spawn(sys.argv[1:])"])
        .arg(env!("CARGO_BIN_EXE_velib-producer"))
        .args([
            "--source",
            "simulate",
            "--max-polls",
            "1",
            "--flush-timeout",
            "0",
        ])
        .args(["--bootstrap-servers", "127.0.0.1:1"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .kill_on_drop(true);
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("the binary exits")
        .expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn logs_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let _gate = crate::beside_others().await;
    let coloured = run_on_a_terminal(None).await;
    assert!(
        coloured.contains("INFO") && coloured.contains("\u{1b}["),
        "{coloured:?}"
    );
    // https://no-color.org: any value but the empty string.
    let empty = run_on_a_terminal(Some("")).await;
    assert!(empty.contains("\u{1b}["), "{empty:?}");
    let plain = run_on_a_terminal(Some("1")).await;
    assert!(
        plain.contains("INFO") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
}

/// A hang-up (the terminal closed, an SSH connection dropped) stops the producer as SIGTERM
/// does: it stops polling, delivers what it queued while the broker was away, and exits 0.
#[tokio::test]
async fn a_hangup_delivers_the_queued_records_and_exits_zero() {
    let _alone = crate::alone().await;
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("velib-stations");
    kafka.create_topic(&topic, 1).unwrap();
    kafka.all_brokers_down().unwrap();
    let mut producer = Child::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-producer"))
            .args(["--source", "simulate:300", "--interval", "1h"])
            .args(["--bootstrap-servers", kafka.bootstrap_servers()])
            .args(["--topic", &topic, "--flush-timeout", "60s"])
            .env("RUST_LOG", "info"),
    );
    // The first poll's records wait in the queue: the broker is away.
    velib_testkit::wait_for("the first poll", TIMEOUT, || async {
        producer
            .stdout()
            .iter()
            .any(|l| l.contains("Produced 300 station records"))
            .then_some(())
    })
    .await;
    producer.signal("HUP").await;
    producer.wait_for_stderr("SIGHUP", TIMEOUT).await;
    kafka.all_brokers_up().unwrap();
    let status = producer.wait(TIMEOUT).await;
    let stderr = producer.stderr().join("\n");
    assert!(status.success(), "{status}: {stderr}");
    let records = read_records(kafka.bootstrap_servers(), &topic, 300, TIMEOUT).await;
    assert_eq!(records.len(), 300, "{stderr}");
}
