//! The tutorial's own kafka-python scripts (`bench/tutorial/`, installed as the tutorial says:
//! `pip install kafka-python` and nothing else) against velib's binaries on Apache Kafka, with
//! velib's default settings, in both directions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use velib_source::{SimulateConfig, SimulateSource};
use velib_testkit::{kafka_bootstrap, unique_name, wait_for_blocking};

/// The environment variable naming the Python of a virtualenv with kafka-python, made by
/// `cargo xtask test`.
const PYTHON_ENV: &str = "VELIB_TUTORIAL_PYTHON";

fn python() -> PathBuf {
    std::env::var_os(PYTHON_ENV).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{PYTHON_ENV} is not set: run this test through `cargo xtask test`, which installs kafka-python")
    })
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bench")
        .join("tutorial")
        .join(name)
}

fn binary(name: &str) -> PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_xtask"), name)
}

fn report(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` to completion, killing it after `limit`.
fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    // Both pipes are drained on threads so neither can fill and block the child.
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    Output {
        status,
        stdout,
        stderr: err.join().unwrap(),
    }
}

/// `cargo xtask create-topics` for a stations topic and a state topic of the test's own (and
/// events and dead-letter topics named after the stations topic).
fn create_topics(topic: &str, state: &str) {
    create_topics_named(
        topic,
        state,
        &format!("{topic}-events"),
        &format!("{topic}-dlq"),
    );
}

fn create_topics_named(topic: &str, state: &str, events: &str, dlq: &str) {
    let created = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["create-topics", "--bootstrap-servers", &kafka_bootstrap()])
        .args(["--state-topic", state])
        .args(["--stations-topic", topic, "--events-topic", events])
        .args(["--dlq-topic", dlq, "--timeout", "20s"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        report("create-topics", &created)
    );
}

/// velib's producer with its defaults → the tutorial's consumer reads every record.
#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn the_tutorial_consumer_reads_what_velibs_producer_writes() {
    let topic = unique_name("tutorial-in");
    // The tutorial creates its topic first (`kafka-topics.sh --create`); velib's producer
    // creates none.
    create_topics(&topic, &unique_name("tutorial-in-state"));
    let produced = Command::new(binary("velib-producer"))
        .args(["--bootstrap-servers", &kafka_bootstrap(), "--topic", &topic])
        .args(["--source", "simulate", "--simulate-stations", "100"])
        .args(["--max-polls", "5", "--interval", "100ms"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        report("velib-producer", &produced)
    );
    let records = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(velib_testkit::read_until_quiet(
            &kafka_bootstrap(),
            &topic,
            Duration::from_secs(3),
        ))
        .len();
    assert!(records >= 100, "{records} records");

    // monitor.py stops after reading `records` records and says how many it read.
    let monitor = output_within(
        Command::new(python())
            .arg(script("monitor.py"))
            .args([&kafka_bootstrap(), &topic, &unique_name("tutorial")])
            .arg(records.to_string()),
        Duration::from_secs(120),
    );
    let text = report("monitor.py", &monitor);
    assert!(monitor.status.success(), "{text}");
    assert!(!text.contains("UnsupportedCodecError"), "{text}");
    let stderr = String::from_utf8_lossy(&monitor.stderr);
    assert!(
        stderr.contains(&format!("BENCH {records} ")),
        "monitor.py did not read all {records} records: {text}"
    );
    // The simulated city's stands change between polls; the tutorial prints those changes.
    assert!(!monitor.stdout.is_empty(), "{text}");
}

/// The tutorial's producer (polling an API, in the JCDecaux v1 shape, served here) → velib's
/// monitor prints the changes and sends nothing to its dead-letter topic.
#[test]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
fn velibs_monitor_reads_what_the_tutorial_producer_writes() {
    let (topic, events, dlq, state) = (
        unique_name("tutorial-out"),
        unique_name("tutorial-events"),
        unique_name("tutorial-dlq"),
        unique_name("tutorial-state"),
    );
    create_topics_named(&topic, &state, &events, &dlq);

    // The API: one simulated snapshot per request, in order.
    let mut city = SimulateSource::new(SimulateConfig {
        stations: 100,
        contracts: 1,
        change_ratio: 0.3,
        ..SimulateConfig::default()
    });
    let snapshots: Vec<Vec<u8>> = (0..5)
        .map(|_| serde_json::to_vec(&city.next_snapshot().stations).unwrap())
        .collect();
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vls/v1/stations", api.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in api.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let body = &snapshots[i % snapshots.len()];
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });

    let mut monitor = Command::new(binary("velib-monitor"))
        .args(["--bootstrap-servers", &kafka_bootstrap(), "--topic", &topic])
        .args(["--events-topic", &events, "--dlq-topic", &dlq])
        .args(["--state-topic", &state])
        .args(["--group-id", &unique_name("g"), "--format", "json"])
        .args(["-X", "auto.offset.reset=earliest"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&lines);
    let out = BufReader::new(monitor.stdout.take().unwrap());
    std::thread::spawn(move || {
        for _ in out.lines().map_while(Result::ok) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });

    let producer = output_within(
        Command::new(python()).arg(script("producer.py")).args([
            &url,
            &kafka_bootstrap(),
            &topic,
            "5",
        ]),
        Duration::from_secs(120),
    );
    assert!(
        producer.status.success(),
        "{}",
        report("producer.py", &producer)
    );
    assert_eq!(served.load(Ordering::Relaxed), 5);

    let (timeout, every) = (Duration::from_secs(60), Duration::from_millis(50));
    wait_for_blocking("a line from velib-monitor", timeout, every, || {
        if lines.load(Ordering::Relaxed) > 0 {
            return Some(());
        }
        assert!(
            monitor.try_wait().unwrap().is_none(),
            "velib-monitor exited"
        );
        None
    });
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status();
    assert!(monitor.wait().unwrap().success());
    let dead = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(velib_testkit::read_until_quiet(
            &kafka_bootstrap(),
            &dlq,
            Duration::from_secs(2),
        ));
    assert!(
        dead.is_empty(),
        "{} records in the dead-letter topic",
        dead.len()
    );
}
