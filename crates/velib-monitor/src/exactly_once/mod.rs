//! The exactly-once monitor: every change printed once across the consumer group, none missed,
//! through joins, leaves, crashes, restarts and zombies.
//!
//! # The guarantee
//!
//! Records are processed in short Kafka transactions (KIP-98, with KIP-447's consumer group
//! metadata). One transaction holds, for the records it covers:
//! - the input offsets, sent with the consumer's group metadata, so a monitor the group has
//!   evicted (its generation is stale) cannot commit: its transaction is refused and aborted;
//! - the empty-station events and dead-letter copies they caused;
//! - the new state of every station whose state changed, in the state changelog
//!   ([`DEFAULT_STATE_TOPIC`], compacted, partition *p* holding the state of the stations of
//!   input partition *p*), keyed by group and station: the groups of a cluster share the state
//!   topic, and each restores its own records only (see `state.rs`).
//!
//! Their change lines are written to stdout **only after the transaction committed**. An
//! aborted transaction (a lost assignment, a stale generation, a broker that refused an output)
//! prints nothing: its lines are dropped, every partition's state is thrown away and restored
//! from the changelog, and the partitions are rewound to their committed offsets, so the
//! records are judged again from the state that was committed with those offsets.
//!
//! State is restored for each newly assigned partition before its first record is judged:
//! first the committed offsets are fetched (for a read_committed consumer the broker answers
//! only once no transaction that commits offsets for the partition is pending, so a previous
//! owner's last transaction is settled), then the changelog partition is read, read_committed,
//! to its end. A monitor that starts after a crash restores the same way. So the first record
//! a new owner judges is compared with the state its previous owner committed with that
//! record's offset: the change straddling a hand-over is printed, once.
//!
//! A revoke commits the open transaction first (the partitions are handed over with their
//! offsets, state and lines settled); a lost assignment aborts it. Empty-station events reach
//! read_committed readers (velib-alerts is one) exactly once.
//!
//! **The one window**: stdout cannot take part in a Kafka transaction. A monitor that dies
//! after its transaction committed and before the lines reached stdout loses those lines (the
//! offsets and state are committed, so nobody prints them again). The window opens when the
//! coordinator commits, not when the monitor hears of it: it lasts the commit's reply
//! (milliseconds, more on a loaded machine) plus the write to the pipe; at most the lines of
//! one commit interval (100 ms by default).
//!
//! A new consumer group starts where `auto.offset.reset` says (`latest`: the end) with no
//! state, whatever other groups keep in the state topic: the first record of each station only
//! records it, as in the at-least-once mode. The state topic is not seeded from the stations
//! topic.
//!
//! Adding partitions to the stations topic moves some stations to another partition; their
//! state stays in the changelog partition of the old one, so the first change after the move
//! is not printed (the same limit as the at-least-once mode's).

mod contexts;
mod failures;
mod producer;
mod restore;
mod transaction;

use crate::process::{MonitorConfig, MonitorError, MonitorReport};
use crate::stream::{InRecord, StreamError};
use crate::watch::OwnerWatch;
use contexts::{EosContext, RestoreContext};
use producer::{Lost, OutputContext, Refusal};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{Producer, ThreadedProducer};
use restore::check_state_topic;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transaction::Core;
use velib_kafka::config::redact_config_error;
use velib_kafka::connection::is_transport_failure;
use velib_kafka::{ConnectionGuard, KafkaArgs, ReportingContext};

/// The state changelog's default name.
pub const DEFAULT_STATE_TOPIC: &str = velib_model::topics::MONITOR_STATE;

/// The settings of the exactly-once mode.
#[derive(Debug, Clone)]
pub struct ExactlyOnceConfig {
    /// This monitor's stable identity: its `transactional.id` is
    /// `velib-monitor.GROUP.INSTANCE`. A monitor restarted with the same id fences its previous
    /// incarnation (an open transaction of it is aborted); two live monitors with one id fence
    /// each other, so each needs its own.
    pub instance_id: String,
    /// The state changelog, compacted, with at least as many partitions as the stations topic.
    pub state_topic: String,
    /// How long a transaction stays open while records keep coming (it is committed as soon
    /// as the input pauses for 5 ms): the bound on how late a line is printed under load, as
    /// long as commits take under a quarter of it. A slower commit makes the next transaction
    /// stay open four times as long as that commit took (at most a quarter of
    /// `transaction_timeout`), so that commits never take more than a fifth of the time.
    pub commit_interval: Duration,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction left open longer (a
    /// monitor frozen or dead mid-transaction), and a new owner of its partitions may wait up
    /// to this long for it.
    pub transaction_timeout: Duration,
    /// Where the monitor reports its progress as it goes, for a caller that watches it (the
    /// benchmarks); `None` by default.
    pub progress: Option<Arc<Progress>>,
}

/// What an exactly-once monitor has done so far, updated as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records judged (in committed or open transactions).
    pub records: std::sync::atomic::AtomicU64,
    /// Records covered by committed transactions.
    pub committed: std::sync::atomic::AtomicU64,
    /// Partitions owned with their state restored.
    pub partitions: std::sync::atomic::AtomicUsize,
    /// The last restore: stations read and how long it took.
    pub last_restore: Mutex<Option<(usize, Duration)>>,
}

impl ExactlyOnceConfig {
    /// The defaults: [`DEFAULT_STATE_TOPIC`], 100 ms transactions, a 10 s transaction timeout
    /// (Kafka Streams' exactly-once defaults).
    pub fn new(instance_id: impl Into<String>) -> ExactlyOnceConfig {
        ExactlyOnceConfig {
            instance_id: instance_id.into(),
            state_topic: DEFAULT_STATE_TOPIC.to_owned(),
            commit_interval: Duration::from_millis(100),
            transaction_timeout: Duration::from_secs(10),
            progress: None,
        }
    }
}

/// The consumer's librdkafka settings in this mode, before the user's `-X` overrides.
pub const EOS_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Offsets are committed only inside transactions.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    // Events and state written by aborted transactions are never read.
    ("isolation.level", "read_committed"),
    ("auto.offset.reset", "latest"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("fetch.wait.max.ms", "10"),
    ("fetch.queue.backoff.ms", "10"),
    ("enable.partition.eof", "false"),
    ("statistics.interval.ms", "5000"),
];

/// The transactional producer's settings in this mode (`transactional.id` and the timeouts
/// come from [`ExactlyOnceConfig`]).
pub const EOS_PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Right after a commit the coordinator is still writing its markers, and the next
    // transaction's first request is refused (CONCURRENT_TRANSACTIONS) until it is done; at
    // librdkafka's default 100 ms backoff that retry is most of each transaction's latency.
    ("retry.backoff.ms", "10"),
    // And librdkafka doubles the backoff at every retry (up to 1 s by default): markers that
    // take 200 ms on a loaded broker cost the next commit 300 to 600 ms of backoff (measured,
    // `bench/results/HISTORY.md`). Retrying every 20 ms at most is what the Java producer does
    // for this refusal.
    ("retry.backoff.max.ms", "20"),
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    // A commit sends what is queued at once; lingering would only delay it.
    ("linger.ms", "0"),
    ("compression.type", "gzip"),
    ("compression.level", "1"),
    ("queue.buffering.max.messages", "1000000"),
    // A state topic looked up after the broker lost its data must not come back created with
    // the broker's defaults (one partition, not compacted): missing, it is named.
    velib_kafka::NO_AUTO_CREATE,
];

/// How long the input may stay quiet before the open transaction is committed without waiting
/// for the commit interval: a producer's snapshot arrives as a burst, and its lines should not
/// wait out the interval once the burst is over.
const IDLE: Duration = Duration::from_millis(5);

/// How many turns of the loop (records, mostly) pass between two looks at the commit interval's
/// clock: a fraction of a millisecond of records.
const CLOCK_EVERY: u32 = 32;

/// How long Kafka may refuse the state topic (its records, or reading it back) before the
/// monitor stops with an error naming it: long enough for a partition created a moment ago to
/// be known, short enough that a deleted topic is reported before anyone wonders.
const STATE_TOPIC_GRACE: Duration = Duration::from_secs(10);

/// How long one Kafka call of the transaction protocol may take before it is retried or the
/// transaction aborted.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many producers in a row may be made again, none of them committing, before the monitor
/// stops with the last one's error (a fault a new producer does not cure).
const RENEWALS: u32 = 3;

/// Runs the exactly-once monitor until `stop` is set, printing committed change lines to
/// `out`. Blocking: run it on a thread of its own (`tokio::task::spawn_blocking`).
///
/// # Errors
///
/// The broker refuses transactions (naming `--guarantee at-least-once`), the producer is
/// fenced by another monitor with the same instance id, an output is refused for good (see
/// [`DlqFailure`](crate::DlqFailure)), or an unrecoverable client error.
pub fn run_exactly_once(
    kafka: &KafkaArgs,
    group_id: &str,
    config: &MonitorConfig,
    eos: &ExactlyOnceConfig,
    out: Box<dyn Write + Send>,
    stop: &AtomicBool,
) -> Result<MonitorReport, MonitorError> {
    let guard = ConnectionGuard::new();
    let maker = ProducerMaker {
        kafka,
        transactional_id: format!("velib-monitor.{group_id}.{}", eos.instance_id),
        eos,
        guard: &guard,
        refusals: Arc::new(Mutex::new(Vec::new())),
    };
    let Some(producer) = maker.make(stop)? else {
        return Ok(MonitorReport::default());
    };
    let (consumer, restorer) = consumers(kafka, group_id, &guard)?;
    check_state_topic(&consumer, config, eos)?;
    let refusals = Arc::clone(&maker.refusals);
    *consumer.context().core() = Some(Core::new(producer, refusals, config, eos, group_id, out));
    consumer
        .subscribe(&[&config.topic])
        .map_err(kafka_error("subscribe"))?;
    tracing::info!(topic = %config.topic, group = group_id,
        transactional_id = %maker.transactional_id, state_topic = %eos.state_topic,
        "monitor started (exactly once)");
    let watch = OwnerWatch::new(group_id, &config.topic);
    let result = poll_until_stopped(&consumer, &restorer, &maker, watch, stop);
    finish(&consumer, result)
}

/// What makes this monitor's transactional producer: at start, and again when one cannot go
/// on (see [`Core::producer_lost`]).
struct ProducerMaker<'a> {
    kafka: &'a KafkaArgs,
    transactional_id: String,
    eos: &'a ExactlyOnceConfig,
    guard: &'a ConnectionGuard,
    refusals: Arc<Mutex<Vec<Refusal>>>,
}

impl ProducerMaker<'_> {
    /// A new producer with its transactional id registered (fencing the one before, whose
    /// open transaction Kafka aborts); `None` if stopped while waiting for the cluster.
    fn make(
        &self,
        stop: &AtomicBool,
    ) -> Result<Option<ThreadedProducer<OutputContext>>, MonitorError> {
        let producer = transactional_producer(
            self.kafka,
            &self.transactional_id,
            self.eos,
            self.guard,
            &self.refusals,
        )?;
        Ok(register(&producer, &self.transactional_id, self.guard, stop)?.then_some(producer))
    }

    /// Replaces the core's producer, which cannot go on, with a new one; the loop then rewinds
    /// and restores as after an abort. `false`: stopped while waiting for the cluster.
    fn renew(&self, core: &mut Core, lost: Lost, stop: &AtomicBool) -> Result<bool, MonitorError> {
        core.renewals += 1;
        if core.renewals > RENEWALS {
            return Err(lost.if_final);
        }
        tracing::warn!(reason = %lost.why, "the transactional producer cannot go on: registering \
            a new one (Kafka aborts what the old one left open, and nothing of it was printed), \
            then rewinding to the committed offsets");
        metrics::counter!("velib_monitor_producers_renewed_total").increment(1);
        let Some(producer) = self.make(stop)? else {
            return Ok(false);
        };
        // The old one is dropped here, or by the thread of a call it never returned from.
        core.producer = Arc::new(producer);
        core.reset_needed = true;
        Ok(true)
    }
}

/// Maps a client error to the monitor's, saying what was being done.
fn kafka_error(what: &'static str) -> impl Fn(KafkaError) -> MonitorError {
    move |source: KafkaError| MonitorError::Kafka {
        what,
        source: redact_config_error(source),
    }
}

/// The transactional producer of this monitor's outputs, state and offsets.
fn transactional_producer(
    kafka: &KafkaArgs,
    transactional_id: &str,
    eos: &ExactlyOnceConfig,
    guard: &ConnectionGuard,
    refusals: &Arc<Mutex<Vec<Refusal>>>,
) -> Result<ThreadedProducer<OutputContext>, MonitorError> {
    let timeout_ms = eos.transaction_timeout.as_millis().to_string();
    let mut producer_defaults: Vec<(&str, &str)> = EOS_PRODUCER_DEFAULTS.to_vec();
    producer_defaults.push(("transactional.id", transactional_id));
    producer_defaults.push(("transaction.timeout.ms", &timeout_ms));
    // librdkafka requires a record's timeout to fit within its transaction's.
    producer_defaults.push(("message.timeout.ms", &timeout_ms));
    kafka
        .client_config(&producer_defaults)
        .create_with_context(OutputContext {
            reporting: ReportingContext::new(guard.clone()),
            refusals: Arc::clone(refusals),
        })
        .map_err(kafka_error("create the transactional producer"))
}

/// Registers the transactional id, fencing a previous incarnation and aborting its open
/// transaction. A cluster that cannot be reached is waited for, as the at-least-once monitor
/// waits; a cluster that answers "no" is an error naming the way out. `false`: stopped while
/// waiting.
fn register(
    producer: &ThreadedProducer<OutputContext>,
    transactional_id: &str,
    guard: &ConnectionGuard,
    stop: &AtomicBool,
) -> Result<bool, MonitorError> {
    let mut waiting_logged = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if let Some(failure) = guard.failure() {
            return Err(MonitorError::Stream(StreamError::Connection(
                failure.clone(),
            )));
        }
        match producer.init_transactions(Duration::from_secs(5)) {
            Ok(()) => return Ok(true),
            Err(KafkaError::Transaction(e))
                if e.is_retriable() || e.code() == RDKafkaErrorCode::OperationTimedOut =>
            {
                if !waiting_logged {
                    tracing::warn!(error = %e, "waiting for the Kafka cluster to register this \
                        monitor's transactional id (check --bootstrap-servers)");
                    waiting_logged = true;
                }
            }
            Err(e) => {
                return Err(MonitorError::Transaction(format!(
                    "the broker refused transactions ({e}); for a broker without them (or an \
                     ACL that forbids transactional id {transactional_id}), run with \
                     --guarantee at-least-once"
                )));
            }
        }
    }
}

/// The group's consumer, and the state reader (a consumer of its own, assigned by hand).
fn consumers(
    kafka: &KafkaArgs,
    group_id: &str,
    guard: &ConnectionGuard,
) -> Result<(BaseConsumer<EosContext>, BaseConsumer<RestoreContext>), MonitorError> {
    let mut consumer_config: ClientConfig = kafka.client_config(EOS_CONSUMER_DEFAULTS);
    if consumer_config.get("group.id").is_none() {
        consumer_config.set("group.id", group_id);
    }
    let consumer: BaseConsumer<EosContext> = consumer_config
        .create_with_context(EosContext {
            reporting: ReportingContext::new(guard.clone()),
            core: Mutex::new(None),
        })
        .map_err(kafka_error("create the consumer"))?;
    // librdkafka assigns partitions only to a consumer with a group id; this one never joins
    // its group nor commits.
    let restore_group = format!("{group_id}.state-reader");
    let restorer: BaseConsumer<RestoreContext> = kafka
        .client_config(&[
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            // The end of each partition is what the restore waits for: answer at once.
            ("fetch.wait.max.ms", "10"),
            ("group.id", &restore_group),
        ])
        .create_with_context(RestoreContext(ReportingContext::new(guard.clone())))
        .map_err(kafka_error("create the state reader"))?;
    Ok((consumer, restorer))
}

/// The loop: poll, rewind and restore when needed, judge, commit when due; until `stop` is set
/// or the monitor cannot go on.
fn poll_until_stopped(
    consumer: &BaseConsumer<EosContext>,
    restorer: &BaseConsumer<RestoreContext>,
    maker: &ProducerMaker<'_>,
    mut watch: OwnerWatch,
    stop: &AtomicBool,
) -> Result<(), MonitorError> {
    let guard = maker.guard;
    let mut consumer_error: Option<String> = None;
    // Turns of the loop: the clock (for the commit interval) is read every few turns only; on
    // a virtual machine a clock read costs a sizeable share of judging a record.
    let mut turns: u32 = 0;
    loop {
        turns = turns.wrapping_add(1);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(failure) = guard.failure() {
            return Err(MonitorError::Stream(StreamError::Connection(
                failure.clone(),
            )));
        }
        let polled = consumer.poll(IDLE);
        // Nothing came for IDLE: the burst (a poll's snapshot) is over, and its lines wait
        // for nothing but their commit.
        let idle = polled.is_none();
        let mut core_guard = consumer.context().core();
        let core = core_guard.as_mut().expect("set before subscribing");
        if let Some(lost) = core.producer_lost.take()
            && !maker.renew(core, lost, stop)?
        {
            return Ok(());
        }
        let rewound = core.reset_needed;
        if rewound
            && let Some(Ok(m)) = &polled
            && (core.detectors.contains_key(&m.partition())
                || core.to_restore.contains(&m.partition()))
        {
            // This record is not judged (it comes again after the rewind); if nothing of its
            // partition was judged and nothing committed (a new group, or offsets a data loss
            // took), it is where the rewind must take the partition back to, or it is skipped
            // for good.
            core.first_seen.entry(m.partition()).or_insert(m.offset());
        }
        if rewound && let Err(e) = core.rewind(consumer) {
            tracing::warn!(error = %e, "could not rewind yet; trying again");
            core.reset_needed = true;
            continue;
        }
        core.sought.clear();
        if !core.to_restore.is_empty() {
            core.restore_or_say_why(consumer, restorer)?;
        }
        match polled {
            None => {}
            Some(Err(e)) => {
                let kind =
                    (!is_transport_failure(&e)).then(|| format!("{:?}", e.rdkafka_error_code()));
                if kind.is_some() && kind != consumer_error {
                    tracing::warn!(error = %e, "consumer error; librdkafka retries");
                }
                consumer_error = kind.or(consumer_error);
            }
            // A record fetched before a rewind or a seek comes again after it.
            Some(Ok(m)) if rewound || core.sought.contains(&m.partition()) => {}
            Some(Ok(message)) => {
                consumer_error = None;
                let record = InRecord::from(message);
                core.report.records += 1;
                core.handle(&record);
            }
        }
        let due = (turns.is_multiple_of(CLOCK_EVERY) && core.commit_due())
            || (idle && core.txn.is_some());
        if core.failure.is_none() && due {
            core.commit(consumer);
        }
        if let Some(failure) = core.failure.take() {
            return Err(failure);
        }
        let owns_nothing = core.detectors.is_empty() && core.to_restore.is_empty();
        drop(core_guard);
        if idle && watch.should_rejoin(owns_nothing, consumer.client()) {
            consumer.unsubscribe();
            consumer
                .subscribe(&[watch.topic()])
                .map_err(kafka_error("subscribe again"))?;
        }
    }
}

/// Stops: commits what is open (on an error, only if it is the records before the failure),
/// then leaves the group.
fn finish(
    consumer: &BaseConsumer<EosContext>,
    result: Result<(), MonitorError>,
) -> Result<MonitorReport, MonitorError> {
    let report = {
        let mut core_guard = consumer.context().core();
        let core = core_guard.as_mut().expect("set before subscribing");
        if result.is_ok() || core.settle_before_stop {
            core.commit(consumer);
        } else {
            core.abort("the monitor is stopping on an error");
        }
        let _ = core.out.flush();
        core.report.clone()
    };
    consumer.unsubscribe();
    let failure = consumer
        .context()
        .core()
        .as_mut()
        .and_then(|c| c.failure.take());
    result?;
    match failure {
        Some(f) => Err(f),
        None => Ok(report),
    }
}
