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
//! lines the script implies — no line twice, none missing, no other line. (The soak runs two
//! consumer groups on the same topics and state topic, each under faults of its own, through
//! data losses of its own broker, and checks each group's union.)
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
//! Each run also creates a compacted `<run>-monitor-state` topic co-partitioned with its
//! stations topic, and names it to the monitors when the binary has `--state-topic` (or
//! `--changelog-topic`), so that runs never share state.
//!
//! With a transactional monitor, one window is outside the guarantee by design: a monitor
//! SIGKILLed after its transaction committed and before its lines reached stdout loses them;
//! the kill scenarios can then report those lines missing.
//!
//! - `VELIB_EOS_REPEAT` (default 1): how many times the join/leave, kill and freeze scenarios run.
//! - `VELIB_EOS_SOAK_SECS` (default 40; `cargo xtask soak` sets 600): the soak's length in
//!   rounds of a second (its data losses come on top).
//! - `VELIB_EOS_SEED`: the soak's random seed, to replay one (each run prints its seed).
//!
//! They are `#[ignore]`d like the other Apache Kafka tests: `cargo xtask test` runs them, or
//! `cargo xtask kafka` and `VELIB_KAFKA_BOOTSTRAP=<its address> cargo test -p velib-monitor
//! --test main exactly_once -- --include-ignored`. The broker-restart, three-node and soak
//! scenarios start nodes of their own from the jars in `VELIB_KAFKA_LIBS` (or velib's cache). The
//! regression test for the duplicate at a refused revoke commit runs on librdkafka's mock
//! cluster; it refuses OffsetCommit, which a transactional monitor does not send (its offsets
//! go in TxnOffsetCommit), so there it checks the hand-over alone.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;
use velib_kafka::{KafkaArgs, KafkaSink, OutRecord, RecordSink, SINK_DEFAULTS};
use velib_model::{Position, Station, StationId, Status};
use velib_testkit::MockKafka;
use velib_testkit::child::Child;
use velib_testkit::group::{GroupView, describe_group, records_in, uncommitted};
use velib_testkit::kafka::{KafkaCluster, KafkaOptions};
use velib_testkit::{unique_name, wait_for};

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
/// How long the soak lets a group go without committing the stations topic created again
/// after a data loss before a monitor that owns no partition of it while some partition has
/// no owner is a failure (a monitor rejoins such a group by itself within about 10 s).
const STUCK: Duration = Duration::from_secs(45);
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
    /// The first round's `snapshot_at` (and record timestamp): now, as the producer's poll
    /// time would be. (Timestamps far in the past would let the broker's retention delete the
    /// records mid-run.)
    base: i64,
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
    /// Forty rounds half a second apart (twenty seconds); a station changes in three rounds of
    /// four. Rounds come faster than a monitor's auto-commit (every second), as during a
    /// backlog, so a fault finds more than one record of a station not yet committed.
    fn standard() -> Script {
        Script {
            rounds: 40,
            period: 4,
            changing: 3,
            interval: Duration::from_millis(500),
            base: now_ms(),
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
            base: now_ms(),
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
        let up_first = slot.index.is_multiple_of(2);
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

    /// A second a round from now, about when the publisher sends it: timestamps far in the
    /// past are deleted by the broker's retention as soon as they are written, and timestamps
    /// far in the future are refused (`log.message.timestamp.after.max.ms`), which a soak of
    /// hundreds of rounds would reach at a minute a round.
    fn snapshot_at(&self, round: usize) -> i64 {
        self.base + round as i64 * 1000
    }

    fn record(&self, slot: &Slot, round: usize, stands: u32) -> Station {
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
            last_update: Some(self.snapshot_at(round) - 5_000),
            snapshot_at: Some(self.snapshot_at(round)),
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        }
    }

    /// The records of `round`, in publishing order: every station's record, each followed, for
    /// one station in ten, by a late copy of its previous round's record.
    fn round(&self, round: usize, stands: &[Vec<u32>]) -> Vec<Station> {
        let mut out = Vec::new();
        for slot in Script::slots() {
            out.push(self.record(&slot, round, stands[slot.index][round]));
            if round > 0 && (slot.index + round).is_multiple_of(10) {
                out.push(self.record(&slot, round - 1, stands[slot.index][round - 1]));
            }
        }
        out
    }

    /// How many records rounds `0..rounds` hold.
    fn records(&self, rounds: usize) -> usize {
        let stands = self.all_stands();
        (0..rounds).map(|r| self.round(r, &stands).len()).sum()
    }

    /// How many records rounds `from..self.rounds` hold.
    fn records_from(&self, from: usize) -> usize {
        self.records(self.rounds) - self.records(from)
    }

    /// The lines the records imply as they were published through data losses: rounds
    /// `0..upto`, where after each loss the topic starts again with its [`Resumption`]'s
    /// `from`. Judged as the README says a monitor judges, not as its code does: per
    /// station, a record from a snapshot no newer than the station's last prints nothing, the
    /// first record known only records it, and a different count prints the difference. A
    /// loss that takes the state with it makes every station unknown again.
    ///
    /// That the round published again has the values and `snapshot_at` of the last one before
    /// the loss is what keeps every line: whether a monitor kept the station's state (in
    /// memory, or in a state topic that survived) or lost it, that record prints nothing and
    /// the next round's change is printed against it. So with resumptions from `after - 1`
    /// this equals [`expected_lines`](Script::expected_lines) (a unit test checks it), while
    /// resuming from `after` would lose the changes of the first round after a loss of state,
    /// here and in the monitor.
    fn lines_as_published(&self, resumed: &[Resumption], upto: usize) -> Vec<String> {
        // The rounds in the order the monitors read them, `None` where the state went.
        let mut order: Vec<Option<usize>> = Vec::new();
        let mut from = 0;
        for r in resumed.iter().filter(|r| r.after <= upto) {
            order.extend((from..r.after).map(Some));
            if r.state_lost {
                order.push(None);
            }
            from = r.from;
        }
        order.extend((from..upto).map(Some));
        let stands = self.all_stands();
        let mut known: std::collections::HashMap<String, (Option<i64>, u32)> =
            std::collections::HashMap::new();
        let mut lines = Vec::new();
        for step in order {
            let Some(round) = step else {
                known.clear();
                continue;
            };
            for s in self.round(round, &stands) {
                let key = s.key().to_string();
                let now = (s.snapshot_at, s.available_bike_stands);
                match known.get(&key) {
                    Some(&(at, _)) if at >= now.0 => continue,
                    Some(&(_, before)) if before != now.1 => {
                        let delta = i64::from(now.1) - i64::from(before);
                        lines.push(format!("{delta:+} {} ({})", s.address, s.contract_name));
                    }
                    _ => {}
                }
                known.insert(key, now);
            }
        }
        lines
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

/// A data loss between rounds, as the script sees it.
#[derive(Debug, Clone, Copy)]
struct Resumption {
    /// How many rounds were delivered before the loss.
    after: usize,
    /// The first round published after it: the soak publishes the last one again
    /// (`after - 1`).
    from: usize,
    /// The monitors' state topic went too (the broker's data), not only the stations topic.
    state_lost: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
    stop: &AtomicBool,
) -> Result<(), String> {
    let sink = KafkaSink::new(
        &KafkaArgs::new(bootstrap).client_config(SINK_DEFAULTS),
        None,
    )
    .map_err(|e| e.to_string())?;
    let stands = script.all_stands();
    let start = Instant::now();
    for round in from..to {
        if stop.load(Ordering::SeqCst) {
            break;
        }
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
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Publisher {
    fn start(bootstrap: &str, topic: &str, script: Script) -> Publisher {
        Publisher::resume(bootstrap, topic, script, 0)
    }

    /// Publishes rounds `from..` of the script (with a producer of its own: one made before
    /// the broker lost its data would be refused by it).
    fn resume(bootstrap: &str, topic: &str, script: Script, from: usize) -> Publisher {
        let delivered = Arc::new(AtomicUsize::new(from));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bootstrap, topic, delivered, stop) = (
                bootstrap.to_owned(),
                topic.to_owned(),
                Arc::clone(&delivered),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                publish_rounds(
                    &bootstrap,
                    &topic,
                    script,
                    from,
                    script.rounds,
                    &delivered,
                    &stop,
                )
            })
        };
        Publisher {
            delivered,
            stop,
            thread,
        }
    }

    /// Stops publishing after the round under way, for a run that is not judged by its lines.
    async fn abandon(self) {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    /// Stops publishing after the round under way, the rounds before it delivered; returns how
    /// many rounds are.
    async fn pause(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let delivered = Arc::clone(&self.delivered);
        self.finish().await;
        delivered.load(Ordering::SeqCst)
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

    /// How many rounds are delivered.
    fn delivered(&self) -> usize {
        self.delivered.load(Ordering::SeqCst)
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
    /// What kept the run from being judged: records the broker does not hold, a group that
    /// never committed the whole topic.
    notes: Vec<String>,
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
        self.twice.is_empty()
            && self.missing.is_empty()
            && self.other.is_empty()
            && self.notes.is_empty()
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} lines printed, {} expected: {} printed twice (or more), {} missing, {} other",
            self.printed,
            self.expected,
            Outcome::count(&self.twice),
            Outcome::count(&self.missing),
            Outcome::count(&self.other)
        );
        for note in &self.notes {
            let _ = write!(s, "; {note}");
        }
        s
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

/// Which of a run's topics to create: the outputs (the state topic first among them) come
/// before the stations topic, as `velib-topics create` makes them, so that a monitor assigned
/// partitions of a new stations topic finds their state partitions there.
#[derive(Debug, Clone, Copy)]
enum Topics {
    /// The state, events and dead-letter topics.
    Outputs,
    /// The stations topic.
    Stations,
}

/// The topics and group of one run, on one broker.
struct Run {
    scenario: String,
    /// The run's unique prefix: topics, group and instance ids start with it.
    prefix: String,
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
    /// Another consumer group on the same topics, the state topic included, as the groups of
    /// one cluster share velib's default topics.
    fn sibling(&self, name: &str) -> Run {
        Run {
            scenario: format!("{}/{name}", self.scenario),
            // Instance ids (and so transactional ids) unique to the group as well.
            prefix: format!("{}-{name}", self.prefix),
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            state_topic: self.state_topic.clone(),
            events: self.events.clone(),
            dlq: self.dlq.clone(),
            group: format!("{}-{name}", self.group),
            tuning: self.tuning.clone(),
            running: Vec::new(),
            gone: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Fresh topics (replication `replicas`; `min.insync.replicas` 2 when 3) and a fresh group
    /// on `bootstrap`.
    async fn new(scenario: &str, bootstrap: &str, replicas: i32) -> Run {
        let run = Run::named(scenario, bootstrap);
        for topics in [Topics::Outputs, Topics::Stations] {
            if let Err(e) = run.create_topics(replicas, topics).await {
                panic!("{e}");
            }
        }
        run
    }

    /// Creates some of the run's topics, as `velib-topics create` makes them (the state topic
    /// as many partitions as the stations topic, compacted), with replication `replicas`
    /// (`min.insync.replicas` 2 when 3).
    async fn create_topics(&self, replicas: i32, which: Topics) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let isr = if replicas >= 3 { "2" } else { "1" };
        let topic = |name, partitions| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replicas))
                .set("min.insync.replicas", isr)
        };
        let topics = match which {
            Topics::Outputs => vec![
                topic(&self.state_topic, PARTITIONS).set("cleanup.policy", "compact"),
                topic(&self.events, 3),
                topic(&self.dlq, 1),
            ],
            Topics::Stations => vec![topic(&self.topic, PARTITIONS)],
        };
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .map_err(|e| format!("creating the run's topics: {e}"))?;
        for r in results {
            if let Err((name, code)) = r {
                return Err(format!("creating topic {name}: {code}"));
            }
        }
        Ok(())
    }

    /// The same on librdkafka's mock cluster, which has no Admin API.
    fn on_mock(scenario: &str, kafka: &MockKafka) -> Run {
        let run = Run::named(scenario, kafka.bootstrap_servers());
        for (topic, partitions) in [
            (&run.topic, PARTITIONS),
            (&run.state_topic, PARTITIONS),
            (&run.events, 3),
            (&run.dlq, 1),
        ] {
            kafka.create_topic(topic, partitions).unwrap();
        }
        run
    }

    fn named(scenario: &str, bootstrap: &str) -> Run {
        let prefix = unique_name("velib-eos");
        Run {
            scenario: scenario.to_owned(),
            prefix: prefix.clone(),
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
        }
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
            // Stable across a restart within the run (a restarted monitor fences its former
            // self), and unique to the run (no other run's monitor is fenced by it).
            cmd.args(["--instance-id", &format!("{}-{name}", self.prefix)]);
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

    /// Waits for `name` to exit by itself (a fenced monitor stops); its exit status.
    async fn exited(&mut self, name: &str) -> ExitStatus {
        let mut m = self.running.remove(self.position(name));
        let status = m.child.wait(SETTLE).await;
        self.gone.push(Finished {
            name: m.name,
            how: "exited",
            status,
            stdout: m.child.stdout(),
            stderr: m.child.stderr(),
        });
        status
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
    ///
    /// # Panics
    ///
    /// After [`SETTLE`], with the group as the coordinator last described it and the last log
    /// lines of each running monitor.
    async fn settled(&self, names: &[&str]) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let view = self.group().await;
            if view
                .as_ref()
                .is_some_and(|g| g.settled(names, &self.topic, PARTITIONS))
            {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .running
                    .iter()
                    .map(|m| {
                        let err = m.child.stderr();
                        let tail = err[err.len().saturating_sub(5)..].join("\n  ");
                        format!("{} (frozen: {}):\n  {tail}", m.name, m.frozen)
                    })
                    .collect();
                panic!(
                    "{}: the group did not settle on {names:?} within {SETTLE:?}; last seen: \
                     {view:?}\n{}",
                    self.scenario,
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
    async fn finish(self, publisher: Publisher, script: Script) -> Outcome {
        publisher.finish().await;
        self.judge(script).await
    }

    /// Once every round is published: waits for the group to commit everything, stops every
    /// monitor (SIGTERM), and compares the union of their output with the script's lines.
    async fn judge(self, script: Script) -> Outcome {
        self.judge_across(script, &[], Vec::new()).await
    }

    /// [`judge`](Run::judge) for a run whose data was lost before each of `resumed`: the topic
    /// holds the rounds from the last resumption on, and the lines expected are those of
    /// [`Script::lines_as_published`]. `notes` are what the run already saw go wrong.
    async fn judge_across(
        self,
        script: Script,
        resumed: &[Resumption],
        mut notes: Vec<String>,
    ) -> Outcome {
        // Every record published since the last loss must be on the broker, or the lines
        // cannot be judged.
        let published = script.records_from(resumed.last().map_or(0, |r| r.from));
        let (b, t) = (self.bootstrap.clone(), self.topic.clone());
        let held = tokio::task::spawn_blocking(move || records_in(&b, &t))
            .await
            .unwrap();
        if held != Some(published as i64) {
            notes.push(format!(
                "the topic holds {held:?} records of the {published} published"
            ));
        }
        if !self.caught_up().await {
            notes.push(format!(
                "the group had not committed the whole topic after {CATCH_UP:?}"
            ));
        }
        let expected = script.lines_as_published(resumed, script.rounds);
        self.conclude(&expected, notes).await
    }

    /// Stops every monitor (SIGTERM) and compares the union of their output with `expected`.
    async fn conclude(mut self, expected: &[String], notes: Vec<String>) -> Outcome {
        for name in self
            .running
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
        {
            self.leave(&name).await;
        }
        let printed: Vec<String> = self.gone.iter().flat_map(|f| f.stdout.clone()).collect();
        let mut outcome = Outcome::compare(expected, &printed);
        outcome.notes = notes;
        let took = self.started.elapsed();
        say(&format!(
            "exactly-once {}: {} ({:.0} s)",
            self.scenario,
            outcome.summary(),
            took.as_secs_f64()
        ));
        // What the monitors cured by themselves: said, for whoever reads the run.
        for f in &self.gone {
            for line in f.stderr.iter().filter(|l| {
                l.contains("cannot go on: registering a new one")
                    || l.contains("rejoining the group")
            }) {
                say(&format!("  {}: {line}", f.name));
            }
        }
        if !outcome.exact() {
            say(&format!(
                "{}\n  logs: {}",
                outcome.diff(),
                self.save_logs().display()
            ));
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

/// Tells whoever runs the suite how a scenario went (the counts are what the suite measures,
/// pass or fail), or what a long step is doing.
#[allow(clippy::print_stderr)]
fn say(text: &str) {
    eprintln!("{text}");
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
        None => velib_testkit::kafka::ensure_installed(say).unwrap_or_else(|e| panic!("{e}")),
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

/// The fault scenarios on the test command's broker run two at a time, beside the tests of
/// this binary that share the gate: exactly once must hold on a busy machine as well, and
/// pairs halve their wall time. The scenarios with clusters of their own (JVMs starting,
/// brokers killed) and the mock-cluster ones still have the machine to themselves.
static PAIRS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A place among [`PAIRS`], then the shared gate (in that order, so that a scenario waiting
/// for its turn does not hold the gate meanwhile).
async fn on_the_shared_broker() -> (
    tokio::sync::SemaphorePermit<'static>,
    tokio::sync::RwLockReadGuard<'static, ()>,
) {
    let permit = PAIRS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    (permit, crate::beside_others().await)
}

async fn repeated<F, Fut>(name: &str, scenario: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let _slot = on_the_shared_broker().await;
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

/// The harness itself: one monitor and no fault must come out exact, or the other scenarios'
/// failures would say nothing about the monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_harness_sees_a_run_without_faults_as_exact() {
    let _slot = on_the_shared_broker().await;
    let bootstrap = apache_kafka();
    let script = Script::standard();
    let mut run = Run::new("no-fault", &bootstrap, 1).await;
    run.start("a");
    run.settled(&["a"]).await;
    let publisher = Publisher::start(&bootstrap, &run.topic, script);
    let outcome = run.finish(publisher, script).await;
    assert_all_exact(&[("no fault".to_owned(), outcome)]);
}

/// Groups share the state topic (velib's default, and here the run's own): a second group on
/// the same topics, stopped while the first goes on writing newer states of every station and
/// then restarted, prints exactly its own lines; so does a group that starts once the whole
/// city has played, reading the topic from its beginning with no state of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_for_each_of_several_groups_sharing_the_state_topic() {
    let _slot = on_the_shared_broker().await;
    let bootstrap = apache_kafka();
    let script = Script::standard();
    let mut first = Run::new("groups", &bootstrap, 1).await;
    let mut second = first.sibling("second");
    first.start("a");
    second.start("b");
    first.settled(&["a"]).await;
    second.settled(&["b"]).await;
    let publisher = Publisher::start(&bootstrap, &first.topic, script);
    publisher.reached(3).await;
    second.leave("b").await;
    publisher.reached(8).await;
    second.start("b");
    second.settled(&["b"]).await;
    publisher.finish().await;
    let mut late = first.sibling("late");
    late.start("c");
    let mut outcomes = Vec::new();
    for (what, run) in [
        ("the first group", first),
        ("the second group, stopped and restarted", second),
        ("a group started after the city played", late),
    ] {
        outcomes.push((what.to_owned(), run.judge(script).await));
    }
    assert_all_exact(&outcomes);
}

/// A second monitor started with the same `--instance-id` fences the first: the first stops,
/// saying it was fenced and naming the flag, and the second goes on; between them every line
/// is printed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_a_monitor_fenced_by_its_instance_id_says_so() {
    let _slot = on_the_shared_broker().await;
    let bootstrap = apache_kafka();
    let script = Script::standard();
    let mut run = Run::new("fenced", &bootstrap, 1).await;
    run.start("a");
    run.settled(&["a"]).await;
    let publisher = Publisher::start(&bootstrap, &run.topic, script);
    publisher.reached(3).await;
    // The same instance id as "a" (the id is made from the name), under another client id.
    let mut twin = run.command("a");
    twin.args(["-X", "client.id=twin"]);
    run.running.push(Monitor {
        name: "twin".to_owned(),
        child: Child::spawn(&mut twin),
        frozen: false,
    });
    let status = run.exited("a").await;
    let stderr = run.gone.last().unwrap().stderr.join("\n");
    assert!(
        !status.success(),
        "a fenced monitor exits non-zero: {stderr}"
    );
    assert!(
        stderr.contains("fenced by a newer monitor with the same --instance-id")
            && stderr.contains(&format!("{}-a", run.prefix)),
        "the error names the cause and the flag: {stderr}"
    );
    let outcome = run.finish(publisher, script).await;
    assert_all_exact(&[("fenced".to_owned(), outcome)]);
}

/// The state topic deleted under a running monitor: it stops within a bounded time with an
/// error that names the state topic and how to create it, not a silence nor a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_a_state_topic_deleted_under_the_monitor_is_named() {
    let _slot = on_the_shared_broker().await;
    let bootstrap = apache_kafka();
    let script = Script::lasting(120);
    let mut run = Run::new("state-deleted", &bootstrap, 1).await;
    run.start("a");
    run.settled(&["a"]).await;
    let publisher = Publisher::start(&bootstrap, &run.topic, script);
    publisher.reached(3).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for result in admin
        .delete_topics(&[&run.state_topic], &AdminOptions::new())
        .await
        .expect("delete the state topic")
    {
        result.expect("the state topic is deleted");
    }
    let status = run.exited("a").await;
    let stderr = run.gone.last().unwrap().stderr.join("\n");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("Error:")
            && l.contains(&run.state_topic)
            && l.contains("velib-topics create")),
        "the error names the state topic and the fix: {stderr}"
    );
    publisher.abandon().await;
}

/// Starts an Apache Kafka cluster of `nodes` nodes of the test's own.
async fn own_cluster(nodes: usize) -> KafkaCluster {
    let libs = kafka_libs();
    tokio::task::spawn_blocking(move || {
        KafkaCluster::start(
            &libs,
            &KafkaOptions {
                nodes,
                ..KafkaOptions::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_through_a_broker_restart() {
    let _alone = crate::alone().await;
    let cluster = own_cluster(1).await;
    let bootstrap = cluster.bootstrap();
    let script = Script::standard();
    let mut run = Run::new("broker-restart", &bootstrap, 1).await;
    for m in ["a", "b", "c"] {
        run.start(m);
    }
    run.settled(&["a", "b", "c"]).await;
    let publisher = Publisher::start(&bootstrap, &run.topic, script);
    publisher.reached(script.rounds / 3).await;
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.stop_node(0, Duration::from_secs(20));
        cluster.restart_node(0).map(|()| cluster)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("restarting the broker: {e}"));
    run.settled(&["a", "b", "c"]).await;
    let outcome = run.finish(publisher, script).await;
    tokio::task::spawn_blocking(move || cluster.stop(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_all_exact(&[("broker restart".to_owned(), outcome)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_when_one_of_three_brokers_is_killed() {
    let _alone = crate::alone().await;
    let cluster = own_cluster(3).await;
    let bootstrap = cluster.bootstrap();
    let script = Script::standard();
    let mut run = Run::new("three-nodes-one-killed", &bootstrap, 3).await;
    for m in ["a", "b", "c"] {
        run.start(m);
    }
    run.settled(&["a", "b", "c"]).await;
    let publisher = Publisher::start(&bootstrap, &run.topic, script);
    publisher.reached(script.rounds / 3).await;
    // The leader of the first partition: whatever it also coordinates moves with it.
    let (b, t) = (bootstrap.clone(), run.topic.clone());
    let leader = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
        let metadata = client
            .fetch_metadata(Some(&t), Duration::from_secs(10))
            .unwrap();
        metadata.topics()[0].partitions()[0].leader()
    })
    .await
    .unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        // Node ids are 1, 2, 3 for indices 0, 1, 2.
        cluster.kill_node((leader - 1) as usize);
        cluster
    })
    .await
    .unwrap();
    let outcome = run.finish(publisher, script).await;
    tokio::task::spawn_blocking(move || cluster.stop(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_all_exact(&[(format!("node {leader} killed"), outcome)]);
}

/// xorshift64*: enough randomness for a fault schedule, and replayable from its seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    fn pause(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(min_ms + self.below(max_ms - min_ms))
    }
}

/// The soak: two consumer groups on the same topics and state topic (one per watched field,
/// say), each under random faults of its own (a monitor joins, leaves, is SIGKILLed, frozen
/// shorter or longer than its session, or a killed one restarts), and, between rounds, data
/// losses of the whole cluster: the broker coming back without its data, or the stations topic
/// deleted and created again. It runs on an Apache Kafka node of its own, since it wipes it.
/// Every run has at least one of each loss; long runs one more per two minutes of script.
///
/// A loss is played between rounds, once every group has committed and printed everything
/// published: the broker's data (topics, committed offsets, the state topic, transactions)
/// or the stations topic (and with it the groups' committed offsets of it) is gone, the
/// topics are created again as `velib-topics create` makes them, and the last round
/// delivered is published again, with its `snapshot_at`, before the script goes on. What
/// each group must then print is exact, and the same lines as without the loss (see
/// [`Script::lines_as_published`]): the README's "a station's first record after the loss
/// only records it" falls on the round published again, which prints nothing whether the
/// state was kept or lost. A monitor that exits by itself (librdkafka can crash when a topic
/// is created again under it: its issue #4964) is restarted, as a supervisor would, and
/// listed among the faults. A monitor left without partitions after a loss while some have
/// no owner fails the run (see [`SoakGroup::commit_after_loss`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn exactly_once_through_a_soak_of_random_faults() {
    let _alone = crate::alone().await;
    let secs = env_number(SOAK_ENV, 40);
    let seed = env_number(
        SEED_ENV,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    )
    .max(1);
    let mut dice = Dice(seed);
    let script = Script::lasting(secs);
    let mut losses = DataLoss::schedule(&mut dice, script.rounds)
        .into_iter()
        .peekable();
    say(&format!(
        "exactly-once soak: {secs} s, {SEED_ENV}={seed}, data losses: {}",
        losses
            .clone()
            .map(|(round, loss)| format!("{loss} after {round} rounds"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut soak = Soak::start(script).await;
    let first = Run::new("soak", &soak.bootstrap, 1).await;
    let second = first.sibling("second");
    let mut groups = [
        SoakGroup::new(first, "m", 4),
        SoakGroup::new(second, "s", 2),
    ];
    for g in &mut groups {
        g.join();
        g.join();
    }
    for g in &groups {
        let names: Vec<&str> = g.run.running.iter().map(|m| m.name.as_str()).collect();
        g.run.settled(&names).await;
    }
    let topic = groups[0].run.topic.clone();
    let mut publisher = Publisher::start(&soak.bootstrap, &topic, script);
    let mut actions = Vec::new();
    loop {
        let loss_due = losses
            .peek()
            .is_some_and(|&(round, _)| publisher.delivered() >= round || publisher.done());
        if loss_due {
            let (_, loss) = losses.next().expect("peeked");
            let (action, resumed) = soak.lose(loss, publisher, &mut groups).await;
            actions.push(action);
            publisher = resumed;
            continue;
        }
        if publisher.done() {
            break;
        }
        // Pacing the fault schedule; what the monitors do meanwhile is what is under test.
        tokio::time::sleep(dice.pause(500, 5000)).await;
        for g in &mut groups {
            actions.extend(g.reap().await);
        }
        let g = dice.below(groups.len() as u64) as usize;
        if let Some(action) = groups[g].fault(&mut dice).await {
            actions.push(action);
        }
    }
    say(&format!(
        "exactly-once soak, {SEED_ENV}={seed}: {}",
        actions.join(", ")
    ));
    publisher.finish().await;
    let mut outcomes = Vec::new();
    for g in groups {
        let what = format!("soak {}, {SEED_ENV}={seed}", g.run.scenario);
        let mut notes = soak.notes.clone();
        notes.extend(g.notes);
        outcomes.push((what, g.run.judge_across(script, &soak.resumed, notes).await));
    }
    soak.stop().await;
    assert_all_exact(&outcomes);
}

/// The data losses of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataLoss {
    /// The broker comes back without its data (a replaced disk): every topic, committed
    /// offset, transaction and the state topic gone.
    Broker,
    /// The stations topic deleted and created again (a new topic id under the same name):
    /// the groups' committed offsets of it go with it, the state topic stays.
    StationsTopic,
}

impl std::fmt::Display for DataLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataLoss::Broker => "broker data loss",
            DataLoss::StationsTopic => "stations topic created again",
        })
    }
}

impl DataLoss {
    /// When the losses come, as rounds delivered before each: one of each kind in every run
    /// (in a random order), one more per 120 rounds, each at a random round of its own share
    /// of the script (the first and last few rounds left alone).
    fn schedule(dice: &mut Dice, rounds: usize) -> Vec<(usize, DataLoss)> {
        let count = 2 + rounds / 120;
        let (first, last) = (3, rounds.saturating_sub(3).max(4));
        let share = ((last - first) / count).max(1);
        let broker_first = dice.below(2) == 0;
        (0..count)
            .map(|i| {
                let loss = match i {
                    0 | 1 if (i == 0) == broker_first => DataLoss::Broker,
                    0 | 1 => DataLoss::StationsTopic,
                    _ if dice.below(2) == 0 => DataLoss::Broker,
                    _ => DataLoss::StationsTopic,
                };
                let round = first + i * share + dice.below(share as u64) as usize;
                (round, loss)
            })
            .collect()
    }
}

/// The soak's own cluster, and what its data losses did.
struct Soak {
    script: Script,
    options: KafkaOptions,
    /// `None` only while a wipe holds it.
    cluster: Option<KafkaCluster>,
    bootstrap: String,
    /// The rounds published again after each loss, for the judge.
    resumed: Vec<Resumption>,
    /// What went wrong in the losses themselves, for every group's verdict.
    notes: Vec<String>,
}

impl Soak {
    async fn start(script: Script) -> Soak {
        let options = KafkaOptions::default();
        let cluster = KafkaCluster::start_async(soak_libs(), options.clone()).await;
        Soak {
            script,
            bootstrap: cluster.bootstrap(),
            options,
            cluster: Some(cluster),
            resumed: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Plays `loss` between two rounds: pauses the publisher, waits for every group to commit
    /// and print everything published, loses the data, creates the topics again, publishes
    /// the last round again, waits for every group to commit it, and resumes the publisher.
    /// Returns what happened, for the fault list, and the resumed publisher.
    async fn lose(
        &mut self,
        loss: DataLoss,
        publisher: Publisher,
        groups: &mut [SoakGroup],
    ) -> (String, Publisher) {
        let delivered = publisher.pause().await;
        let expected = self
            .script
            .lines_as_published(&self.resumed, delivered)
            .len();
        let mut said = Vec::new();
        for g in groups.iter_mut() {
            said.extend(g.settle_before_loss(expected).await);
        }
        let run = &groups[0].run;
        let what = format!("the {loss} after {delivered} rounds");
        self.destroy(loss, run, &what).await;
        self.create_again(run, Topics::Stations).await;
        let round = delivered - 1;
        self.resumed.push(Resumption {
            after: delivered,
            from: round,
            state_lost: loss == DataLoss::Broker,
        });
        let (b, t, script) = (self.bootstrap.clone(), run.topic.clone(), self.script);
        tokio::task::spawn_blocking(move || {
            publish_rounds(
                &b,
                &t,
                script,
                round,
                delivered,
                &AtomicUsize::new(round),
                &AtomicBool::new(false),
            )
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("publishing round {round} again after the {loss}: {e}"));
        for g in groups.iter_mut() {
            said.extend(g.commit_after_loss(&what).await);
        }
        let topic = groups[0].run.topic.clone();
        let mut action = format!("{loss} after {delivered} rounds (round {round} published again)");
        for s in said {
            let _ = write!(action, ", {s}");
        }
        (
            action,
            Publisher::resume(&self.bootstrap, &topic, self.script, delivered),
        )
    }

    /// The loss itself: the broker wiped (and the state, events and dead-letter topics
    /// created again at once), or the stations topic deleted.
    async fn destroy(&mut self, loss: DataLoss, run: &Run, what: &str) {
        match loss {
            DataLoss::Broker => {
                let cluster = self.cluster.take().expect("the soak's cluster");
                let cluster = cluster.wipe_node_async(0, self.options.clone()).await;
                self.cluster = Some(cluster);
                let (b, t) = (self.bootstrap.clone(), run.topic.clone());
                let absent =
                    tokio::task::spawn_blocking(move || velib_testkit::kafka_topic_absent(&b, &t))
                        .await
                        .unwrap();
                if !absent {
                    self.notes.push(format!(
                        "after {what}, the stations topic came back before it was created (a \
                         client created it)"
                    ));
                }
                self.create_again(run, Topics::Outputs).await;
            }
            DataLoss::StationsTopic => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &self.bootstrap)
                    .create()
                    .unwrap();
                for result in admin
                    .delete_topics(&[&run.topic], &AdminOptions::new())
                    .await
                    .expect("delete the stations topic")
                {
                    result.expect("the stations topic is deleted");
                }
            }
        }
    }

    /// Creates the topics `which` again until the broker takes them: it may still be deleting
    /// the old ones.
    async fn create_again(&self, run: &Run, which: Topics) {
        wait_for(
            &format!("the {which:?} topics created again"),
            SETTLE,
            || async { run.create_topics(1, which).await.ok() },
        )
        .await;
    }

    async fn stop(mut self) {
        if let Some(cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.stop(Duration::from_secs(10)))
                .await
                .unwrap();
        }
    }
}

/// The jars of the soak's own node: `VELIB_KAFKA_LIBS`, else velib's cache (filled by `cargo
/// xtask kafka`, `test` or `soak`).
fn soak_libs() -> PathBuf {
    match std::env::var_os(velib_testkit::kafka::LIBS_ENV) {
        Some(libs) => PathBuf::from(libs),
        None => velib_testkit::kafka::ensure_installed(say).unwrap_or_else(|e| panic!("{e}")),
    }
}

/// One consumer group of the soak, and what the faults did to it.
struct SoakGroup {
    run: Run,
    /// Its monitors are named `{prefix}0`, `{prefix}1`…
    prefix: &'static str,
    /// The most monitors it runs at once.
    most: usize,
    named: usize,
    killed: Vec<String>,
    /// What kept a data loss from being played as planned, for the verdict.
    notes: Vec<String>,
}

impl SoakGroup {
    fn new(run: Run, prefix: &'static str, most: usize) -> SoakGroup {
        SoakGroup {
            run,
            prefix,
            most,
            named: 0,
            killed: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Starts a new monitor; returns its name.
    fn join(&mut self) -> String {
        let name = format!("{}{}", self.prefix, self.named);
        self.named += 1;
        self.run.start(&name);
        name
    }

    /// Restarts, under their names, the monitors that exited by themselves (a fatal error or
    /// a signal: what a supervisor restarts); says what happened to each.
    async fn reap(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        let exited: Vec<String> = self
            .run
            .running
            .iter_mut()
            .filter(|m| !m.frozen)
            .filter_map(|m| m.child.exited().map(|_| m.name.clone()))
            .collect();
        for name in exited {
            let status = self.run.exited(&name).await;
            // Its last word: the error it stopped on, or a fatal signal's line.
            let why = self
                .run
                .gone
                .last()
                .and_then(|f| {
                    f.stderr
                        .iter()
                        .rev()
                        .find(|l| l.starts_with("Error:") || l.contains("fatal signal"))
                })
                .map(|l| format!(": {}", l.chars().take(240).collect::<String>()))
                .unwrap_or_default();
            said.push(format!(
                "{name} exited by itself ({status}{why}) and was restarted"
            ));
            self.run.start(&name);
        }
        said
    }

    /// Before a data loss: waits until the group has committed every record and printed
    /// `expected` lines (a line is printed right after its transaction commits; the loss
    /// must not fall between the two). What the harness saw, for the fault list.
    async fn settle_before_loss(&mut self, expected: usize) -> Vec<String> {
        let mut said = self.reap().await;
        if !self.run.caught_up().await {
            self.notes.push(format!(
                "before a data loss, the group had not committed the whole topic after {CATCH_UP:?}"
            ));
        }
        let deadline = Instant::now() + SETTLE;
        while self.run.lines_so_far() < expected && Instant::now() < deadline {
            said.extend(self.reap().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.run.lines_so_far() < expected {
            self.notes.push(format!(
                "before a data loss, the group had printed {} of the {expected} lines expected",
                self.run.lines_so_far()
            ));
        }
        said
    }

    /// After a data loss and the last round published again: waits until the group has
    /// committed the new topic's records, restarting monitors that exited meanwhile.
    ///
    /// A group that rebalanced while the stations topic was missing can stay stable with
    /// partitions nobody owns once it is back (the stall of the README's failure table), and a
    /// monitor owning nothing then rejoins it by itself. If the group has not committed the new
    /// topic after [`STUCK`] and such a monitor is still there, the run fails saying so, and
    /// the monitor is restarted, as an operator would, so the run goes on to its verdict.
    async fn commit_after_loss(&mut self, loss: &str) -> Vec<String> {
        let mut said = Vec::new();
        let started = Instant::now();
        let mut restarted = false;
        loop {
            said.extend(self.reap().await);
            let (b, g, t) = (
                self.run.bootstrap.clone(),
                self.run.group.clone(),
                self.run.topic.clone(),
            );
            let behind = tokio::task::spawn_blocking(move || uncommitted(&b, &g, &t))
                .await
                .unwrap();
            if behind == Some(0) {
                return said;
            }
            if !restarted && started.elapsed() > STUCK {
                restarted = true;
                let idle = self.restart_idle().await;
                self.notes.extend(
                    idle.iter().map(|r| {
                        format!("after {loss}, {r}: it did not rejoin the group by itself")
                    }),
                );
                said.extend(idle);
            }
            if started.elapsed() > CATCH_UP {
                self.notes.push(format!(
                    "after {loss}, the group had not committed the new topic after {CATCH_UP:?} \
                     ({behind:?} records behind)"
                ));
                return said;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Restarts the monitors that own no partition of the stations topic while some partition
    /// has no owner; says which.
    async fn restart_idle(&mut self) -> Vec<String> {
        let Some(view) = self.run.group().await else {
            return Vec::new();
        };
        let owned: usize = view
            .members
            .iter()
            .filter_map(|m| m.partitions.get(&self.run.topic))
            .map(Vec::len)
            .sum();
        if owned >= PARTITIONS as usize {
            return Vec::new();
        }
        let idle: Vec<String> = self
            .run
            .running
            .iter()
            .map(|m| m.name.clone())
            .filter(|name| {
                view.members.iter().all(|m| {
                    m.client_id != *name
                        || m.partitions.get(&self.run.topic).is_none_or(Vec::is_empty)
                })
            })
            .collect();
        let mut said = Vec::new();
        for name in idle {
            self.run.leave(&name).await;
            self.run.start(&name);
            said.push(format!(
                "{name} restarted: without partitions {STUCK:?} after the loss"
            ));
        }
        said
    }

    /// One random fault (or nothing): a monitor joins, leaves, is killed, frozen (sometimes
    /// shorter than the session of 6 s, sometimes past it), or a killed one restarts.
    async fn fault(&mut self, dice: &mut Dice) -> Option<String> {
        let names: Vec<String> = self.run.running.iter().map(|m| m.name.clone()).collect();
        let pick = names[dice.below(names.len() as u64) as usize].clone();
        let action = match dice.below(5) {
            0 if names.len() < self.most => format!("{} joins", self.join()),
            1 if names.len() > 1 => {
                self.run.leave(&pick).await;
                format!("{pick} leaves")
            }
            2 if names.len() > 1 => {
                self.run.kill(&pick).await;
                self.killed.push(pick.clone());
                format!("{pick} killed")
            }
            3 if names.len() > 1 => {
                self.run.freeze(&pick).await;
                let frozen = dice.pause(1000, 12_000);
                tokio::time::sleep(frozen).await;
                self.run.thaw(&pick).await;
                format!("{pick} frozen {frozen:?}")
            }
            4 if !self.killed.is_empty() => {
                let name = self
                    .killed
                    .remove(dice.below(self.killed.len() as u64) as usize);
                self.run.start(&name);
                format!("{name} restarted")
            }
            _ => return None,
        };
        Some(action)
    }
}

/// The duplicate seen with the at-least-once monitor, made deterministic on the mock cluster:
/// a monitor's commit at revoke is refused with REBALANCE_IN_PROGRESS (as a broker does while
/// the group re-joins), and the next owner of its partitions must still print no line twice.
///
/// Auto-commit is pushed out of the way (`auto.commit.interval.ms`), so the records the first
/// monitor printed are committed at revoke or not at all. In at-least-once mode
/// (`VELIB_EOS_MONITOR_ARGS="--guarantee at-least-once"`) it fails the same way every time:
/// the second monitor reads its partitions again from the start and prints 2,827 of the
/// 11,700 lines a second time. (Refusing only the monitor's own commit is not enough:
/// librdkafka commits again as it gives the partitions up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_regression_a_refused_commit_at_revoke_prints_no_line_twice() {
    /// Kafka's ApiKey of OffsetCommit.
    const OFFSET_COMMIT: i16 = 8;
    let _alone = crate::alone().await;
    let kafka = MockKafka::start(1).unwrap();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let script = Script {
        interval: Duration::ZERO,
        ..Script::standard()
    };
    let half = script.rounds / 2;
    let mut run = Run::on_mock("refused-revoke-commit", &kafka);
    run.tuning = vec!["-X".into(), "auto.commit.interval.ms=3600000".into()];
    let topic = run.topic.clone();
    let publish = |from: usize, to: usize| {
        let (b, t) = (bootstrap.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            publish_rounds(
                &b,
                &t,
                script,
                from,
                to,
                &AtomicUsize::new(0),
                &AtomicBool::new(false),
            )
        })
    };

    run.start("a");
    publish(0, half).await.unwrap().unwrap();
    // Alone, the first monitor prints exactly the first half's lines.
    let first_half = script.expected_lines(half).len();
    wait_for(
        "the first monitor to print the first half",
        SETTLE,
        || async { (run.lines_so_far() >= first_half).then_some(()) },
    )
    .await;

    // The monitor's own commit at revoke, then librdkafka's (it commits again as it gives up
    // the partitions), then one to spare: all refused, as while the group re-joins.
    kafka.push_request_errors(
        OFFSET_COMMIT,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 3],
    );
    run.start("b");
    let b = run.position("b");
    wait_for("the second monitor to get partitions", SETTLE, || async {
        run.running[b]
            .child
            .stderr()
            .iter()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
            .then_some(())
    })
    .await;
    publish(half, script.rounds).await.unwrap().unwrap();

    // The last round's lines (each distinct) are printed once both monitors are through.
    let expected = script.expected_lines(script.rounds);
    let before_last = script.expected_lines(script.rounds - 1);
    let last: Vec<&String> = expected
        .iter()
        .filter(|l| !before_last.contains(l))
        .collect();
    let all_printed = || {
        let printed: std::collections::HashSet<String> =
            run.running.iter().flat_map(|m| m.child.stdout()).collect();
        last.iter().all(|l| printed.contains(*l))
    };
    wait_for("the last round printed", SETTLE, || async {
        all_printed().then_some(())
    })
    .await;
    let outcome = run.conclude(&expected, Vec::new()).await;
    assert!(
        outcome.twice.is_empty() && outcome.other.is_empty(),
        "{}",
        outcome.diff()
    );
}

/// After the soak's broker lost its data, its transaction coordinator refused a monitor's
/// producer id at every commit, and the monitor aborted, rewound and tried again without end,
/// printing nothing, its partitions stalled. Replayed on the mock cluster
/// (INVALID_PRODUCER_ID_MAPPING answered to AddOffsetsToTxn again and again): the monitor
/// registers its transactional id again with a new producer, three times, and when the
/// refusals go on it stops, naming the cause, with nothing of those transactions printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_regression_a_producer_id_the_coordinator_forgot_stops_the_monitor() {
    /// Kafka's ApiKey of AddOffsetsToTxn.
    const ADD_OFFSETS_TO_TXN: i16 = 25;
    let _alone = crate::alone().await;
    let kafka = MockKafka::start(1).unwrap();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let script = Script {
        interval: Duration::ZERO,
        ..Script::standard()
    };
    let mut run = Run::on_mock("producer-id-forgotten", &kafka);
    run.start("a");
    run.running[0]
        .child
        .wait_for_stderr("state restored", SETTLE)
        .await;
    kafka.push_request_errors(
        ADD_OFFSETS_TO_TXN,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING; 50],
    );
    let topic = run.topic.clone();
    tokio::task::spawn_blocking(move || {
        publish_rounds(
            &bootstrap,
            &topic,
            script,
            0,
            script.rounds,
            &AtomicUsize::new(0),
            &AtomicBool::new(false),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let status = run.exited("a").await;
    let a = run.gone.last().unwrap();
    let stderr = a.stderr.join("\n");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("Error:")
            && l.contains("no longer knows this monitor's producer id")
            && l.contains("restart the monitor")),
        "the error names the cause and the cure: {stderr}"
    );
    let renewed = stderr
        .lines()
        .filter(|l| l.contains("cannot go on: registering a new one"))
        .count();
    assert_eq!(renewed, 3, "a new producer three times: {stderr}");
    assert!(a.stdout.is_empty(), "printed: {:?}", a.stdout);
}

#[test]
fn the_script_implies_distinct_lines_in_every_contract() {
    for script in [
        Script::standard(),
        Script::lasting(60),
        Script::lasting(600),
    ] {
        let lines = script.expected_lines(script.rounds);
        let distinct: std::collections::HashSet<&String> = lines.iter().collect();
        assert_eq!(distinct.len(), lines.len());
        assert!(lines.len() > 5_000, "{}", lines.len());
        for contract in CONTRACTS {
            assert!(
                lines
                    .iter()
                    .any(|l| l == &format!("+1 7 PLACE DE LA GARE ({contract})")
                        || l == &format!("-1 7 PLACE DE LA GARE ({contract})"))
            );
        }
        for slot in Script::slots() {
            assert!(script.stands(&slot).iter().all(|v| (1..=39).contains(v)));
        }
    }
}

#[test]
fn the_round_published_again_after_a_data_loss_keeps_every_line() {
    let script = Script::lasting(60);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = sorted(script.expected_lines(script.rounds));
    let again = |after, state_lost| Resumption {
        after,
        from: after - 1,
        state_lost,
    };
    for resumed in [
        vec![],
        vec![again(10, true)],
        vec![again(10, false)],
        vec![again(7, false), again(8, true), again(40, true)],
    ] {
        let lines = script.lines_as_published(&resumed, script.rounds);
        assert_eq!(sorted(lines), all, "{resumed:?}");
    }
    // Not published again, the first round after a loss of state only records each station:
    // the changes it carried are lost, and the model says which.
    let skipped = Resumption {
        after: 10,
        from: 10,
        state_lost: true,
    };
    let lines = sorted(script.lines_as_published(&[skipped], script.rounds));
    let first_after: Vec<String> = script
        .expected_lines(11)
        .into_iter()
        .filter(|l| !script.expected_lines(10).contains(l))
        .collect();
    assert!(!first_after.is_empty());
    assert_eq!(lines.len(), all.len() - first_after.len());
    assert!(first_after.iter().all(|l| !lines.contains(l)));
    // Part way: the lines of the rounds delivered so far.
    assert_eq!(
        sorted(script.lines_as_published(&[again(10, true)], 25)),
        sorted(script.expected_lines(25))
    );
}

#[test]
fn the_comparison_tells_lines_twice_missing_and_other() {
    let expected: Vec<String> = ["+1 A (X)", "-2 A (X)", "+1 A (Y)"]
        .map(String::from)
        .to_vec();
    let printed: Vec<String> = ["+1 A (X)", "+1 A (X)", "+1 A (Y)", "+3 B (X)"]
        .map(String::from)
        .to_vec();
    let o = Outcome::compare(&expected, &printed);
    assert_eq!(o.twice, [("+1 A (X)".to_owned(), 1)]);
    assert_eq!(o.missing, [("-2 A (X)".to_owned(), 1)]);
    assert_eq!(o.other, [("+3 B (X)".to_owned(), 1)]);
    assert!(!o.exact());
    assert!(Outcome::compare(&expected, &expected).exact());
}
