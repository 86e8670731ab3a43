//! Exactly once across the group, under faults, with monitor *processes* on Apache Kafka.
//!
//! Every scenario plays the same kind of scripted city: 400 stations in four contracts whose
//! station numbers collide (`Lyon:7` and `Nantes:7` share a number and an address, and differ
//! only by contract), each going through a scripted list of `available_bike_stands` values, one
//! record per station per round, keyed and serialised as the producer does, with `snapshot_at`
//! increasing by round. Some rounds also carry a late copy of a station's previous record (a
//! producer retry), which must print nothing. A publisher paces the rounds over tens of
//! seconds while monitors join, leave, are killed, frozen past their session timeout or lose
//! their broker. Then comes one exact check: the union of every monitor's stdout equals the
//! lines the script implies — no line twice, none missing, no other line.
//!
//! The expected lines are computed from the script's values alone (`{delta:+} ADDRESS
//! (Contract)` for every two consecutive rounds of a station with different values; nothing for
//! a station's first record), not from the monitor's code. Each change of a station has a
//! magnitude of its own (1, 2, 3…), so every expected line is distinct: a line printed twice
//! cannot hide a line missing.
//!
//! The end of a run is decided by the broker, not by a guess: once the last round is
//! delivered, the harness waits until the group has committed every record of the topic (a
//! committed record's line has been printed, by either delivery guarantee), then stops the
//! monitors with SIGTERM, which flushes their output, and compares.
//!
//! Monitors run as `velib-monitor` processes, each with its own `client.id` (how the harness
//! recognises it in the group's description) and, when the binary has the flag, its own
//! `--instance-id` (kept across a restart). The flags in `VELIB_EOS_MONITOR_ARGS`
//! (whitespace-separated) are added to every monitor, for example `--guarantee exactly-once`.
//!
//! - `VELIB_EOS_REPEAT` (default 1): how many times the join/leave, kill and freeze scenarios run.
//! - `VELIB_EOS_SOAK_SECS` (default 60; `cargo xtask test` sets 600): the soak's length.
//! - `VELIB_EOS_SEED`: the soak's random seed, to replay one (each run prints its seed).
//!
//! They are `#[ignore]`d like the other Apache Kafka tests: `cargo xtask test` runs them, or
//! `cargo xtask kafka` and `VELIB_KAFKA_BOOTSTRAP=<its address> cargo test -p velib-monitor
//! --test main exactly_once -- --include-ignored`. The broker-restart and three-node scenarios
//! start nodes of their own from the jars in `VELIB_KAFKA_LIBS` (or velib's cache). The
//! regression test for the duplicate at a refused revoke commit runs on librdkafka's mock
//! cluster.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;
use velib_model::{Position, Station, StationId, Status};
use velib_producer::{KafkaArgs, KafkaSink, OutRecord, SINK_DEFAULTS, StationSink};
use velib_testkit::MockKafka;
use velib_testkit::child::Child;
use velib_testkit::group::{GroupView, describe_group, uncommitted};
use velib_testkit::kafka::{KafkaCluster, KafkaOptions};
use velib_testkit::{KAFKA_ENV, unique_name, wait_for};

/// Partitions of the stations topic (and of the monitors' state topic).
const PARTITIONS: i32 = 10;
const CONTRACTS: [&str; 4] = ["Lyon", "Toulouse", "Marseille", "Nantes"];
const PER_CONTRACT: u64 = 100;
/// The most changes a station may go through with every change's magnitude its own and the
/// count within 1..=39 of 40 stands.
const MAX_CHANGES: usize = 38;
/// A short session, so that a killed or frozen monitor's partitions move within seconds (6 s
/// is the broker's `group.min.session.timeout.ms`).
const SESSION: &[&str] = &[
    "-X",
    "session.timeout.ms=6000",
    "-X",
    "heartbeat.interval.ms=500",
];
/// How long a group gets to settle after a membership change (a session timeout, a JVM
/// restarting on a loaded machine).
const SETTLE: Duration = Duration::from_secs(90);
/// How long the group gets to commit the whole topic once the last round is delivered.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How long a round's delivery may take (a broker being restarted meanwhile).
const DELIVERY: Duration = Duration::from_secs(180);

const ARGS_ENV: &str = "VELIB_EOS_MONITOR_ARGS";
const REPEAT_ENV: &str = "VELIB_EOS_REPEAT";
const SOAK_ENV: &str = "VELIB_EOS_SOAK_SECS";
const SEED_ENV: &str = "VELIB_EOS_SEED";

// ---------------------------------------------------------------------------------------------
// The script and the lines it implies.

/// Which station changes in which round, and how fast rounds come.
#[derive(Debug, Clone, Copy)]
struct Script {
    rounds: usize,
    /// A station changes in round `r > 0` when `(7 i + r) % period < changing`.
    period: u64,
    changing: u64,
    interval: Duration,
}

/// One station of the script: its index, contract and number.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
    contract: &'static str,
    number: u64,
}

impl Slot {
    fn address(&self) -> String {
        // The same address in every contract: only the contract tells the lines apart.
        format!("{} PLACE DE LA GARE", self.number)
    }
}

impl Script {
    /// Twelve rounds two seconds apart; a station changes in three rounds of four.
    fn standard() -> Script {
        Script {
            rounds: 12,
            period: 4,
            changing: 3,
            interval: Duration::from_secs(2),
        }
    }

    /// One round a second for `secs` seconds, each station changing at most [`MAX_CHANGES`]
    /// times.
    fn lasting(secs: u64) -> Script {
        let rounds = secs.max(2) as usize;
        Script {
            rounds,
            period: (rounds as u64).div_ceil(MAX_CHANGES as u64 - 2).max(2),
            changing: 1,
            interval: Duration::from_secs(1),
        }
    }

    fn slots() -> impl Iterator<Item = Slot> {
        CONTRACTS.iter().enumerate().flat_map(|(c, contract)| {
            (1..=PER_CONTRACT).map(move |number| Slot {
                index: c * PER_CONTRACT as usize + number as usize - 1,
                contract,
                number,
            })
        })
    }

    fn changes(&self, slot: &Slot, round: usize) -> bool {
        round > 0 && (slot.index as u64 * 7 + round as u64) % self.period < self.changing
    }

    /// The station's count in each round: the k-th change moves it by k, alternately up and
    /// down (down first for every other station), so it stays within 20 ± 19.
    fn stands(&self, slot: &Slot) -> Vec<u32> {
        let mut value: u32 = 20;
        let mut k: u32 = 0;
        let up_first = slot.index % 2 == 0;
        (0..self.rounds)
            .map(|round| {
                if self.changes(slot, round) {
                    k += 1;
                    assert!(
                        k as usize <= MAX_CHANGES,
                        "the script changes a station too often"
                    );
                    if (k % 2 == 1) == up_first {
                        value += k;
                    } else {
                        value -= k;
                    }
                }
                value
            })
            .collect()
    }

    fn snapshot_at(round: usize) -> i64 {
        1_780_000_000_000 + round as i64 * 60_000
    }

    fn record(slot: &Slot, round: usize, stands: u32) -> Station {
        Station {
            number: StationId::Number(slot.number),
            contract_name: slot.contract.to_owned(),
            name: format!("{:03} - GARE", slot.number),
            address: slot.address(),
            position: Position {
                lat: 45.0 + slot.index as f64 / 1000.0,
                lng: 4.0 + slot.number as f64 / 1000.0,
            },
            banking: true,
            bonus: false,
            bike_stands: 40,
            available_bike_stands: stands,
            available_bikes: 40 - stands,
            status: Status::Open,
            last_update: Some(Script::snapshot_at(round) - 5_000),
            snapshot_at: Some(Script::snapshot_at(round)),
        }
    }

    /// The records of `round`, in publishing order: every station's record, each followed, for
    /// one station in ten, by a late copy of its previous round's record.
    fn round(&self, round: usize, stands: &[Vec<u32>]) -> Vec<Station> {
        let mut out = Vec::new();
        for slot in Script::slots() {
            out.push(Script::record(&slot, round, stands[slot.index][round]));
            if round > 0 && (slot.index + round) % 10 == 0 {
                out.push(Script::record(
                    &slot,
                    round - 1,
                    stands[slot.index][round - 1],
                ));
            }
        }
        out
    }

    fn all_stands(&self) -> Vec<Vec<u32>> {
        Script::slots().map(|s| self.stands(&s)).collect()
    }

    /// The lines rounds `0..rounds` imply, from the values alone.
    fn expected_lines(&self, rounds: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for slot in Script::slots() {
            let values = self.stands(&slot);
            for pair in values[..rounds].windows(2) {
                if pair[0] != pair[1] {
                    let delta = i64::from(pair[1]) - i64::from(pair[0]);
                    lines.push(format!("{delta:+} {} ({})", slot.address(), slot.contract));
                }
            }
        }
        lines
    }
}

/// Publishes rounds `from..to` with velib's producer sink (keys, JSON and settings as the
/// producer's), each round delivered before the next, one `script.interval` apart; `done`
/// counts the rounds delivered.
fn publish_rounds(
    bootstrap: &str,
    topic: &str,
    script: Script,
    from: usize,
    to: usize,
    done: &AtomicUsize,
) -> Result<(), String> {
    let sink = KafkaSink::new(
        &KafkaArgs::new(bootstrap).client_config(SINK_DEFAULTS),
        None,
    )
    .map_err(|e| e.to_string())?;
    let stands = script.all_stands();
    let start = Instant::now();
    for round in from..to {
        for s in script.round(round, &stands) {
            let key = s.key();
            let payload = s.to_json();
            sink.enqueue(
                &OutRecord {
                    topic,
                    key: key.as_str().as_bytes(),
                    payload: &payload,
                    timestamp_ms: s.snapshot_at,
                    headers: &[],
                },
                0,
            )
            .map_err(|e| format!("round {round}: {e}"))?;
        }
        let left = sink.flush(DELIVERY);
        let failed = sink.counts().failed;
        if left > 0 || failed > 0 {
            return Err(format!(
                "round {round}: {left} records undelivered after {DELIVERY:?}, {failed} failed"
            ));
        }
        done.store(round + 1, Ordering::SeqCst);
        // Pacing the script, not waiting for anything: rounds keep their rhythm whatever
        // delivery took.
        let next = start + script.interval * (round - from + 1) as u32;
        if round + 1 < to {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    Ok(())
}

/// The script being published in the background.
struct Publisher {
    delivered: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Publisher {
    fn start(bootstrap: &str, topic: &str, script: Script) -> Publisher {
        let delivered = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (bootstrap, topic, delivered) = (
                bootstrap.to_owned(),
                topic.to_owned(),
                Arc::clone(&delivered),
            );
            std::thread::spawn(move || {
                publish_rounds(&bootstrap, &topic, script, 0, script.rounds, &delivered)
            })
        };
        Publisher { delivered, thread }
    }

    /// Waits until `rounds` rounds are delivered.
    async fn reached(&self, rounds: usize) {
        wait_for(
            &format!("round {rounds} of the script delivered"),
            DELIVERY * 2,
            || async { (self.delivered.load(Ordering::SeqCst) >= rounds).then_some(()) },
        )
        .await;
    }

    fn done(&self) -> bool {
        self.thread.is_finished()
    }

    async fn finish(self) {
        let thread = self.thread;
        let outcome = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .expect("the publisher does not panic");
        if let Err(e) = outcome {
            panic!("publishing the script failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The exact check.

/// The union of the monitors' output against the expected lines.
#[derive(Debug, Default)]
struct Outcome {
    expected: usize,
    printed: usize,
    /// Expected lines printed more often than expected, with how many times too many.
    twice: Vec<(String, usize)>,
    /// Expected lines printed fewer times than expected, with how many are missing.
    missing: Vec<(String, usize)>,
    /// Lines not expected at all, with how many times each.
    other: Vec<(String, usize)>,
}

impl Outcome {
    fn compare(expected: &[String], printed: &[String]) -> Outcome {
        let mut want: BTreeMap<&str, usize> = BTreeMap::new();
        for l in expected {
            *want.entry(l).or_default() += 1;
        }
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for l in printed {
            *got.entry(l).or_default() += 1;
        }
        let mut out = Outcome {
            expected: expected.len(),
            printed: printed.len(),
            ..Outcome::default()
        };
        for (line, &n) in &got {
            match want.get(line) {
                None => out.other.push((line.to_string(), n)),
                Some(&w) if n > w => out.twice.push((line.to_string(), n - w)),
                _ => {}
            }
        }
        for (line, &w) in &want {
            let n = got.get(line).copied().unwrap_or(0);
            if n < w {
                out.missing.push((line.to_string(), w - n));
            }
        }
        out
    }

    fn count(v: &[(String, usize)]) -> usize {
        v.iter().map(|(_, n)| n).sum()
    }

    fn exact(&self) -> bool {
        self.twice.is_empty() && self.missing.is_empty() && self.other.is_empty()
    }

    fn summary(&self) -> String {
        format!(
            "{} lines printed, {} expected: {} printed twice (or more), {} missing, {} other",
            self.printed,
            self.expected,
            Outcome::count(&self.twice),
            Outcome::count(&self.missing),
            Outcome::count(&self.other)
        )
    }

    fn diff(&self) -> String {
        let mut s = self.summary();
        for (what, lines) in [
            ("printed too often", &self.twice),
            ("missing", &self.missing),
            ("not expected", &self.other),
        ] {
            if lines.is_empty() {
                continue;
            }
            let _ = write!(s, "\n  {what} ({} distinct), first ones:", lines.len());
            for (line, n) in lines.iter().take(8) {
                let _ = write!(s, "\n    {n}× {line:?}");
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Monitor processes.

/// What `velib-monitor --help` offers that the harness uses when it is there.
struct Flags {
    instance_id: bool,
    state_topic: Option<&'static str>,
}

fn monitor_flags() -> &'static Flags {
    static FLAGS: std::sync::OnceLock<Flags> = std::sync::OnceLock::new();
    FLAGS.get_or_init(|| {
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
            .arg("--help")
            .output()
            .expect("run velib-monitor --help");
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        Flags {
            instance_id: help.contains("--instance-id"),
            state_topic: ["--state-topic", "--changelog-topic"]
                .into_iter()
                .find(|f| help.contains(f)),
        }
    })
}

fn extra_args() -> Vec<String> {
    std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A monitor that has exited, and what it wrote.
struct Finished {
    name: String,
    how: &'static str,
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// A running monitor.
struct Monitor {
    name: String,
    child: Child,
    frozen: bool,
}

/// The topics and group of one run, on one broker.
struct Run {
    scenario: String,
    bootstrap: String,
    topic: String,
    state_topic: String,
    events: String,
    dlq: String,
    group: String,
    /// Properties added to every monitor after the session's (a scenario's own tuning).
    tuning: Vec<String>,
    running: Vec<Monitor>,
    gone: Vec<Finished>,
    started: Instant,
}

impl Run {
    /// Fresh topics (replication `replicas`; `min.insync.replicas` 2 when 3) and a fresh group
    /// on `bootstrap`.
    async fn new(scenario: &str, bootstrap: &str, replicas: i32) -> Run {
        let prefix = unique_name("velib-eos");
        let run = Run {
            scenario: scenario.to_owned(),
            bootstrap: bootstrap.to_owned(),
            topic: format!("{prefix}-stations"),
            state_topic: format!("{prefix}-monitor-state"),
            events: format!("{prefix}-empty-stations"),
            dlq: format!("{prefix}-stations-dlq"),
            group: format!("{prefix}-monitor"),
            tuning: Vec::new(),
            running: Vec::new(),
            gone: Vec::new(),
            started: Instant::now(),
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
        let isr = if replicas >= 3 { "2" } else { "1" };
        let topic = |name, partitions| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replicas))
                .set("min.insync.replicas", isr)
        };
        let topics = [
            topic(&run.topic, PARTITIONS),
            topic(&run.state_topic, PARTITIONS).set("cleanup.policy", "compact"),
            topic(&run.events, 3),
            topic(&run.dlq, 1),
        ];
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("create the run's topics");
        for r in results {
            if let Err((name, code)) = r {
                panic!("creating topic {name}: {code}");
            }
        }
        run
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_velib-monitor"));
        cmd.args(["--bootstrap-servers", &self.bootstrap])
            .args(["--group-id", &self.group, "--topic", &self.topic])
            .args(["--events-topic", &self.events, "--dlq-topic", &self.dlq])
            .args(["--format", "text", "-X", "auto.offset.reset=earliest"])
            .args(SESSION)
            .args(["-X", &format!("client.id={name}")])
            .args(&self.tuning);
        let flags = monitor_flags();
        if flags.instance_id {
            cmd.args(["--instance-id", name]);
        }
        if let Some(flag) = flags.state_topic {
            cmd.args([flag, &self.state_topic]);
        }
        cmd.args(extra_args())
            .env("RUST_LOG", "warn,velib_monitor=info")
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env_remove("VELIB_KAFKA_CONFIG");
        cmd
    }

    /// Starts monitor `name` (a restart when a monitor of that name ran before).
    fn start(&mut self, name: &str) {
        assert!(
            self.running.iter().all(|m| m.name != name),
            "{name} is already running"
        );
        let child = Child::spawn(&mut self.command(name));
        self.running.push(Monitor {
            name: name.to_owned(),
            child,
            frozen: false,
        });
    }

    fn position(&self, name: &str) -> usize {
        self.running
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    async fn end(&mut self, name: &str, signal: &'static str) {
        let mut m = self.running.remove(self.position(name));
        if m.frozen {
            m.child.signal("CONT").await;
        }
        m.child.signal(signal).await;
        let status = m.child.wait(Duration::from_secs(90)).await;
        self.gone.push(Finished {
            name: m.name,
            how: signal,
            status,
            stdout: m.child.stdout(),
            stderr: m.child.stderr(),
        });
    }

    /// Stops `name` gracefully (SIGTERM): it leaves the group.
    async fn leave(&mut self, name: &str) {
        self.end(name, "TERM").await;
    }

    /// Kills `name` with SIGKILL, as a crash would.
    async fn kill(&mut self, name: &str) {
        self.end(name, "KILL").await;
    }

    /// Freezes `name` with SIGSTOP.
    async fn freeze(&mut self, name: &str) {
        let i = self.position(name);
        self.running[i].child.signal("STOP").await;
        self.running[i].frozen = true;
    }

    /// Resumes `name` with SIGCONT.
    async fn thaw(&mut self, name: &str) {
        let i = self.position(name);
        self.running[i].child.signal("CONT").await;
        self.running[i].frozen = false;
    }

    fn lines_so_far(&self) -> usize {
        self.running
            .iter()
            .map(|m| m.child.stdout().len())
            .sum::<usize>()
            + self.gone.iter().map(|f| f.stdout.len()).sum::<usize>()
    }

    async fn group(&self) -> Option<GroupView> {
        let (bootstrap, group) = (self.bootstrap.clone(), self.group.clone());
        tokio::task::spawn_blocking(move || describe_group(&bootstrap, &group))
            .await
            .unwrap()
    }

    /// Waits until the group is stable with exactly the monitors `names`, between them owning
    /// every partition, each at least one.
    async fn settled(&self, names: &[&str]) {
        wait_for(
            &format!("the group to settle on {names:?}"),
            SETTLE,
            || async {
                self.group()
                    .await
                    .filter(|g| g.settled(names, &self.topic, PARTITIONS))
                    .map(|_| ())
            },
        )
        .await;
    }

    /// Waits until the group has committed every record of the topic; whether it did in time.
    async fn caught_up(&self) -> bool {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let (b, g, t) = (
                self.bootstrap.clone(),
                self.group.clone(),
                self.topic.clone(),
            );
            let behind = tokio::task::spawn_blocking(move || uncommitted(&b, &g, &t))
                .await
                .unwrap();
            if behind == Some(0) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for the publisher and for the group to commit everything, stops every monitor
    /// (SIGTERM), and compares the union of their output with the script's lines.
    async fn finish(mut self, publisher: Publisher, script: Script) -> Outcome {
        publisher.finish().await;
        let caught_up = self.caught_up().await;
        for name in self
            .running
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
        {
            self.leave(&name).await;
        }
        let printed: Vec<String> = self.gone.iter().flat_map(|f| f.stdout.clone()).collect();
        let outcome = Outcome::compare(&script.expected_lines(script.rounds), &printed);
        let took = self.started.elapsed();
        let mut report = format!(
            "exactly-once {}: {} ({:.0} s)",
            self.scenario,
            outcome.summary(),
            took.as_secs_f64()
        );
        if !caught_up {
            let _ = write!(
                report,
                "; the group had not committed the whole topic after {CATCH_UP:?}"
            );
        }
        eprintln!("{report}");
        if !outcome.exact() || !caught_up {
            eprintln!("{}\n  logs: {}", outcome.diff(), self.save_logs().display());
        }
        outcome
    }

    /// Writes every monitor's stdout and stderr into a directory, for reading after a failure.
    fn save_logs(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(unique_name(&format!("velib-eos-{}", self.scenario)));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, f) in self.gone.iter().enumerate() {
            let base = dir.join(format!("{i:02}-{}-{}", f.name, f.how));
            let _ = std::fs::write(base.with_extension("out"), f.stdout.join("\n"));
            let status = format!("{}\nexit: {}\n", f.stderr.join("\n"), f.status);
            let _ = std::fs::write(base.with_extension("err"), status);
        }
        dir
    }
}

/// The Apache Kafka node of the test command.
fn apache_kafka() -> String {
    velib_testkit::kafka_bootstrap()
}

/// The jars to start nodes of a test's own: `VELIB_KAFKA_LIBS`, else velib's cache (filled by
/// `cargo xtask kafka` or `cargo xtask test`).
fn kafka_libs() -> PathBuf {
    let _ = apache_kafka();
    match std::env::var_os(velib_testkit::kafka::LIBS_ENV) {
        Some(libs) => PathBuf::from(libs),
        None => velib_testkit::kafka::ensure_installed(|say| eprintln!("{say}"))
            .unwrap_or_else(|e| panic!("{e}")),
    }
}

fn assert_all_exact(outcomes: &[(String, Outcome)]) {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.exact())
        .map(|(what, o)| format!("{what}: {}", o.diff()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs did not print exactly the script's lines:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

fn repeat() -> u64 {
    env_number(REPEAT_ENV, 1).max(1)
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

async fn join_and_leave(bootstrap: &str, scenario: &str) -> Outcome {
    let script = Script::standard();
    let mut run = Run::new(scenario, bootstrap, 1).await;
    run.start("a");
    run.start("b");
    run.settled(&["a", "b"]).await;
    let publisher = Publisher::start(bootstrap, &run.topic, script);
    publisher.reached(3).await;
    run.start("c");
    run.settled(&["a", "b", "c"]).await;
    publisher.reached(6).await;
    run.leave("a").await;
    run.settled(&["b", "c"]).await;
    run.finish(publisher, script).await
}

async fn kill_and_restart(bootstrap: &str, scenario: &str) -> Outcome {
    let script = Script::standard();
    let mut run = Run::new(scenario, bootstrap, 1).await;
    for m in ["a", "b", "c"] {
        run.start(m);
    }
    run.settled(&["a", "b", "c"]).await;
    let publisher = Publisher::start(bootstrap, &run.topic, script);
    publisher.reached(4).await;
    run.kill("b").await;
    run.start("b");
    // The killed member stays in the group until its session expires; settling on one "b"
    // means the new process took over.
    run.settled(&["a", "b", "c"]).await;
    run.finish(publisher, script).await
}

async fn freeze_past_the_session(bootstrap: &str, scenario: &str) -> Outcome {
    let script = Script::standard();
    let mut run = Run::new(scenario, bootstrap, 1).await;
    for m in ["a", "b", "c"] {
        run.start(m);
    }
    run.settled(&["a", "b", "c"]).await;
    let publisher = Publisher::start(bootstrap, &run.topic, script);
    publisher.reached(3).await;
    run.freeze("b").await;
    // Evicted at the end of its session: the others own its partitions.
    run.settled(&["a", "c"]).await;
    // The others make progress on them before the zombie wakes up with what it had fetched.
    let before = run.lines_so_far();
    wait_for("the others to print on", SETTLE, || async {
        (run.lines_so_far() > before).then_some(())
    })
    .await;
    run.thaw("b").await;
    run.settled(&["a", "b", "c"]).await;
    run.finish(publisher, script).await
}

async fn repeated<F, Fut>(name: &str, scenario: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let _alone = crate::alone().await;
    let bootstrap = apache_kafka();
    let mut outcomes = Vec::new();
    for i in 1..=repeat() {
        let what = format!("{name} #{i}");
        outcomes.push((what.clone(), scenario(bootstrap.clone(), what).await));
    }
    assert_all_exact(&outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_when_a_monitor_joins_and_one_leaves() {
    repeated("join-leave", |b, what| async move {
        join_and_leave(&b, &what).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_when_a_monitor_is_killed_and_restarted() {
    repeated("kill-restart", |b, what| async move {
        kill_and_restart(&b, &what).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_when_a_monitor_is_frozen_past_its_session() {
    repeated("freeze", |b, what| async move {
        freeze_past_the_session(&b, &what).await
    })
    .await;
}
