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

use crate::detect::Detector;
use crate::ledger::{PendingOut, refused_for_good, tag, untag};
use crate::process::{DlqFailure, MonitorConfig, MonitorError, MonitorReport, meter, process};
use crate::state::{GroupKeys, StoredState};
use crate::stream::{InRecord, StreamError};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use velib_kafka::config::redact_config_error;
use velib_kafka::connection::{ReportingContext, cluster_reachable, is_transport_failure};
use velib_kafka::{ConnectionGuard, KafkaArgs, RateLimited};

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
    /// How long a transaction stays open at most while records keep coming (it is committed
    /// as soon as the input pauses for 5 ms): the bound on how late a line is printed under
    /// load.
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
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    // A commit sends what is queued at once; lingering would only delay it.
    ("linger.ms", "0"),
    ("compression.type", "gzip"),
    ("compression.level", "1"),
    ("queue.buffering.max.messages", "1000000"),
];

/// How long the input may stay quiet before the open transaction is committed without waiting
/// for the commit interval: a producer's snapshot arrives as a burst, and its lines should not
/// wait out the interval once the burst is over.
const IDLE: Duration = Duration::from_millis(5);

/// How long Kafka may refuse the state topic (its records, or reading it back) before the
/// monitor stops with an error naming it: long enough for a partition created a moment ago to
/// be known, short enough that a deleted topic is reported before anyone wonders.
const STATE_TOPIC_GRACE: Duration = Duration::from_secs(10);

/// How long one Kafka call of the transaction protocol may take before it is retried or the
/// transaction aborted.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An output Kafka refused for good, seen in a delivery report.
#[derive(Debug, Clone)]
struct Refusal {
    partition: i32,
    offset: i64,
    topic: String,
    error: KafkaError,
}

/// The transactional producer's context: connection reporting, and the refusals no retry can
/// fix (which would otherwise abort the same transaction again after every rewind).
struct OutputContext {
    reporting: ReportingContext,
    refusals: Arc<Mutex<Vec<Refusal>>>,
}

impl ClientContext for OutputContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporting.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason);
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        if let Err((error, message)) = result
            && refused_for_good(error)
        {
            // A state record names no input record: its own partition is the one that matters.
            let (partition, offset) = if tag == STATE_TAG {
                (message.partition(), -1)
            } else {
                untag(tag)
            };
            self.refusals.lock().unwrap().push(Refusal {
                partition,
                offset,
                topic: message.topic().to_owned(),
                error: error.clone(),
            });
        }
    }
}

/// The delivery tag of changelog records (no input record to name).
const STATE_TAG: usize = usize::MAX;

/// An open transaction.
struct Txn {
    opened: Instant,
    /// The change lines, printed once it commits.
    lines: Vec<u8>,
    /// The next offset of each input partition it covers.
    offsets: BTreeMap<i32, i64>,
    /// The counts before it, restored if it aborts.
    report_before: MonitorReport,
    /// Records it covers.
    records: u64,
}

/// Everything the loop and the rebalance callbacks share (the callbacks run inside the
/// consumer's poll, on the loop's own thread, so the lock is never contended).
struct Core {
    producer: ThreadedProducer<OutputContext>,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    config: MonitorConfig,
    eos: ExactlyOnceConfig,
    /// The changelog keys of this monitor's group: it writes and restores only its group's.
    keys: GroupKeys,
    detectors: HashMap<i32, Detector>,
    /// Assigned partitions whose state is not restored yet.
    to_restore: BTreeSet<i32>,
    /// The first offset read of each partition since it was assigned: where a partition
    /// without a committed offset is rewound to.
    first_seen: HashMap<i32, i64>,
    /// A transaction was aborted: rewind and restore before judging another record.
    reset_needed: bool,
    txn: Option<Txn>,
    out: Box<dyn Write + Send>,
    report: MonitorReport,
    metered: MonitorReport,
    poison_log: RateLimited,
    /// Unreadable records whose dead-letter copy Kafka refused for good, skipped under
    /// [`DlqFailure::Skip`].
    skip_copies: HashSet<(i32, i64)>,
    /// Why the monitor must stop, once what can be committed is.
    failure: Option<MonitorError>,
    /// Since when Kafka has refused state records, with no transaction committed since.
    state_refused_since: Option<Instant>,
    /// A record whose output Kafka refused for good, under the stop policy: the monitor
    /// commits the records before it and stops there, with this error.
    stop_before: Option<((i32, i64), MonitorError)>,
    /// The failure is that record: what is open is committed before stopping, not aborted.
    settle_before_stop: bool,
}

/// The consumer's context: connection reporting and the rebalance protocol of this mode.
struct EosContext {
    reporting: ReportingContext,
    core: Mutex<Option<Core>>,
}

impl EosContext {
    fn core(&self) -> MutexGuard<'_, Option<Core>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for EosContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.reporting.stats(statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporting.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason);
    }
}

impl ConsumerContext for EosContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let mut guard = self.core();
        let Some(core) = guard.as_mut() else {
            return;
        };
        let revoked = partitions_of(tpl);
        if revoked.is_empty() {
            return;
        }
        if core.txn.is_some() {
            if consumer.assignment_lost() {
                core.abort("the group took the partitions away (the assignment was lost)");
            } else {
                // Hand the partitions over settled: their offsets, state and lines committed.
                core.commit(consumer);
            }
        }
        if let Some(((p, _), _)) = &core.stop_before
            && revoked.contains(p)
        {
            // The record will not come back here: its new owner meets the refusal itself.
            let (_, error) = core.stop_before.take().expect("checked above");
            core.failure.get_or_insert(error);
        }
        for p in &revoked {
            core.detectors.remove(p);
            core.to_restore.remove(p);
            core.first_seen.remove(p);
        }
        if let Some(progress) = &core.eos.progress {
            progress
                .partitions
                .store(core.detectors.len(), Ordering::Relaxed);
        }
        tracing::info!(partitions = ?revoked, "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.reporting.guard().confirm_working();
            cluster_reachable();
            let assigned = partitions_of(tpl);
            if assigned.is_empty() {
                return;
            }
            if let Some(core) = self.core().as_mut() {
                core.to_restore.extend(assigned.iter().copied());
            }
            tracing::info!(partitions = ?assigned, "partitions assigned");
        }
    }
}

/// The state reader's context: connection reporting, without the end-of-partition notices
/// that are the restore's own signal.
struct RestoreContext(ReportingContext);

impl ClientContext for RestoreContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is the restore's signal, and a state topic or partition that
        // is unknown is the restore's to judge (it names the topic); neither is a connection
        // problem to report as one.
        let restore_own = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::PartitionEOF
                        | RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                )
            );
        if !restore_own {
            self.0.error(error, reason);
        }
    }
}

impl ConsumerContext for RestoreContext {}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

impl Core {
    /// Judges one record inside the open transaction (opening one if needed).
    fn handle(&mut self, record: &InRecord<'_>) {
        let (partition, offset) = (record.partition(), record.offset());
        if self
            .stop_before
            .as_ref()
            .is_some_and(|(at, _)| *at == (partition, offset))
        {
            // The record Kafka refused an output of: everything before it is in the open
            // transaction (or committed); stop here, committing that and not this record.
            let (_, error) = self.stop_before.take().expect("checked above");
            self.failure.get_or_insert(error);
            self.settle_before_stop = true;
            return;
        }
        let Some(detector) = self.detectors.get_mut(&partition) else {
            // Not owned (revoked while the record was in flight) or not restored yet.
            return;
        };
        if self.txn.is_none() {
            if let Err(e) = self.producer.begin_transaction() {
                self.failure = Some(MonitorError::Transaction(format!(
                    "could not begin a transaction: {e}"
                )));
                return;
            }
            self.txn = Some(Txn {
                opened: Instant::now(),
                lines: Vec::new(),
                offsets: BTreeMap::new(),
                report_before: self.report.clone(),
                records: 0,
            });
        }
        self.first_seen.entry(partition).or_insert(offset);
        let txn = self.txn.as_mut().expect("a transaction is open");
        let mut unflushed = false;
        let mut state = None;
        let output = process(
            record,
            detector,
            &self.config,
            &mut txn.lines,
            &mut self.report,
            &mut self.poison_log,
            &mut unflushed,
            Some(&mut state),
        );
        txn.offsets.insert(partition, offset + 1);
        txn.records += 1;
        if let Some(progress) = &self.eos.progress {
            progress.records.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(out) = output {
            let dead_letter = self.config.dlq_topic.as_deref() == Some(out.topic.as_str());
            if dead_letter && self.skip_copies.contains(&(partition, offset)) {
                self.report.dead_letters_lost += 1;
                metrics::counter!("velib_monitor_dead_letters_lost_total").increment(1);
                tracing::error!(topic = %self.config.topic, partition, offset, dlq_topic = %out.topic,
                    "Kafka refused the dead-letter copy of an unreadable record for good; the \
                     record is skipped without it (--on-dlq-failure=skip)");
            } else if let Err(error) =
                self.send(&out, record.timestamp(), None, tag(partition, offset))
            {
                // Its line and state are in the transaction, its output is not: abort, and
                // let the policy decide what the record's second reading does.
                let reason = format!("Kafka refused an output for good ({error})");
                self.refusals.lock().unwrap().push(Refusal {
                    partition,
                    offset,
                    topic: out.topic.clone(),
                    error,
                });
                self.abort(&reason);
                return;
            }
        }
        if let Some(state) = state {
            let out = PendingOut {
                topic: self.eos.state_topic.clone(),
                key: self.keys.key(&state.key),
                payload: state.value,
                headers: Vec::new(),
            };
            if let Err(error) = self.send(&out, None, Some(partition), STATE_TAG) {
                if is_fatal(&error) {
                    let failure = self.cannot_go_on(&error);
                    self.failure.get_or_insert(failure);
                } else {
                    // The transaction would commit without this station's state: abort it.
                    let reason = format!(
                        "Kafka refused a record of the state topic {} ({error})",
                        self.eos.state_topic
                    );
                    self.refusals.lock().unwrap().push(Refusal {
                        partition,
                        offset: -1,
                        topic: self.eos.state_topic.clone(),
                        error,
                    });
                    self.abort(&reason);
                }
            }
        }
    }

    /// Queues one output in the open transaction; waits while the producer's queue is full.
    fn send(
        &self,
        out: &PendingOut,
        timestamp: Option<i64>,
        partition: Option<i32>,
        tag: usize,
    ) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
        for (key, value) in &out.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let deadline = Instant::now() + self.eos.transaction_timeout;
        loop {
            let mut record = BaseRecord::with_opaque_to(&out.topic, tag)
                .key(&out.key[..])
                .payload(&out.payload[..])
                .headers(headers.clone());
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    // The producer's thread drains the queue; a full queue is a broker that
                    // has been slow for a while.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// An output Kafka refused for good: the policy of [`DlqFailure`] for dead-letter copies,
    /// and a stop for events.
    fn refused(&mut self, refusal: Refusal) {
        if refusal.topic == self.eos.state_topic {
            // A state partition created a moment after its stations partition (both grown by
            // `velib-topics create`) is refused until the next metadata refresh; a state topic
            // deleted under the monitor is refused for ever. Retried (abort, rewind) for a
            // while, then a stop that names the topic.
            let since = *self.state_refused_since.get_or_insert_with(|| {
                tracing::warn!(state_topic = %self.eos.state_topic, partition = refusal.partition,
                    error = %refusal.error, "Kafka refuses the monitor's state records; retrying \
                    for {STATE_TOPIC_GRACE:?} before stopping");
                Instant::now()
            });
            if since.elapsed() >= STATE_TOPIC_GRACE {
                let failure = self.state_topic_refused(refusal.partition, &refusal.error);
                self.failure.get_or_insert(failure);
            }
            return;
        }
        let dead_letter = self.config.dlq_topic.as_deref() == Some(refusal.topic.as_str());
        if dead_letter && self.config.on_dlq_failure == DlqFailure::Skip {
            self.skip_copies.insert((refusal.partition, refusal.offset));
            return;
        }
        let (what, advice) = if dead_letter {
            (
                format!("dead-letter copy (to {})", refusal.topic),
                crate::process::DLQ_ADVICE,
            )
        } else {
            (
                format!("empty-station event (to {})", refusal.topic),
                crate::process::EVENTS_ADVICE,
            )
        };
        tracing::error!(partition = refusal.partition, offset = refusal.offset, topic = %refusal.topic,
            error = %refusal.error, "output refused for good: stopping once the records before \
            it are committed");
        let error = MonitorError::Refused {
            what,
            source_topic: self.config.topic.clone(),
            partition: refusal.partition,
            offset: refusal.offset,
            error: refusal.error.to_string(),
            advice,
        };
        // The transaction that held the record is aborted (or about to be), and with it the
        // records before it: the rewind reads them again, they are committed, and the monitor
        // stops when it reaches this record (see `handle`).
        self.stop_before
            .get_or_insert(((refusal.partition, refusal.offset), error));
    }

    /// The error for a producer that cannot go on, naming the cause and the setting to change.
    /// librdkafka reports the cause as the producer's fatal error: fencing by a newer producer
    /// with the same transactional id, which is also what a transaction the coordinator
    /// aborted at its timeout turns into (the epoch it bumped refuses this producer).
    fn cannot_go_on(&self, error: &KafkaError) -> MonitorError {
        let (code, reason) = match self.producer.client().fatal_error() {
            Some((code, reason)) => (Some(code), reason),
            None => (error.rdkafka_error_code(), error.to_string()),
        };
        let fenced = matches!(
            code,
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::Fenced
            )
        );
        let open_for = self.txn.as_ref().map(|t| t.opened.elapsed());
        let timed_out = open_for.is_some_and(|d| d >= self.eos.transaction_timeout);
        let instance = &self.eos.instance_id;
        MonitorError::Transaction(if fenced && timed_out {
            format!(
                "Kafka aborted this monitor's transaction: it stayed open {:.1} s, longer than \
                 --transaction-timeout ({:?}; the monitor was frozen or starved of CPU), and \
                 its producer was fenced ({reason}). Nothing of that transaction was printed \
                 or committed; restart the monitor (a supervisor does), or raise \
                 --transaction-timeout if such pauses are expected",
                open_for.unwrap_or_default().as_secs_f64(),
                self.eos.transaction_timeout
            )
        } else if fenced {
            format!(
                "this monitor was fenced by a newer monitor with the same --instance-id \
                 ({instance}) in its group: Kafka lets only the newest instance of an id \
                 commit ({reason}). Nothing of this monitor's open transaction was printed or \
                 committed, and the newer one goes on. Give each monitor its own \
                 --instance-id (VELIB_INSTANCE_ID), or leave it unset for HOST-N"
            )
        } else {
            format!(
                "the transactional producer cannot go on ({reason}); nothing of its open \
                 transaction was printed or committed. Restart the monitor"
            )
        })
    }

    /// The error for a state record Kafka refused: the state topic is missing (deleted under
    /// the monitor), too small, or not writable.
    fn state_topic_refused(&self, partition: i32, error: &KafkaError) -> MonitorError {
        MonitorError::Transaction(format!(
            "Kafka refused the monitor's state record for partition {partition} of the state \
             topic {} ({error}): the topic is missing, has fewer partitions than {}, or may \
             not be written (ACLs). Create or grow it with `velib-topics create` (or `cargo \
             xtask create-topics`), or name another with --state-topic",
            self.eos.state_topic, self.config.topic
        ))
    }

    /// Whether the open transaction has been open for the commit interval.
    fn commit_due(&self) -> bool {
        self.txn
            .as_ref()
            .is_some_and(|t| t.opened.elapsed() >= self.eos.commit_interval)
    }

    /// Commits the open transaction and prints its lines, or aborts it.
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let Some(txn) = self.txn.as_ref() else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        for (&p, &o) in &txn.offsets {
            if let Err(e) = offsets.add_partition_offset(&self.config.topic, p, Offset::Offset(o)) {
                tracing::warn!(partition = p, error = %e, "offset not added to the transaction");
            }
        }
        let Some(group) = consumer.group_metadata() else {
            self.abort("the consumer has no group metadata");
            return;
        };
        let result = self
            .producer
            .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
            .and_then(|()| self.commit_retrying());
        match result {
            Ok(()) => {
                let txn = self.txn.take().expect("a transaction is open");
                // The transaction is committed: now, and only now, its lines are printed.
                if let Err(e) = self
                    .out
                    .write_all(&txn.lines)
                    .and_then(|()| self.out.flush())
                {
                    tracing::error!(error = %e, "could not write change lines to stdout");
                }
                metrics::counter!("velib_monitor_transactions_total", "outcome" => "committed")
                    .increment(1);
                self.state_refused_since = None;
                if let Some(progress) = &self.eos.progress {
                    progress.committed.fetch_add(txn.records, Ordering::Relaxed);
                }
                meter(&self.report, &mut self.metered);
            }
            Err(e) if is_fatal(&e) => {
                let failure = self.cannot_go_on(&e);
                self.failure.get_or_insert(failure);
                self.drop_txn();
            }
            Err(e) => {
                let reason = format!("the commit failed: {e}");
                self.abort(&reason);
            }
        }
    }

    /// `commit_transaction`, retried while Kafka says a retry may succeed.
    fn commit_retrying(&self) -> Result<(), KafkaError> {
        // rdkafka's commit flushes first, and its flush, sharing the event queue with the
        // producer's own polling thread, sleeps in 100 ms steps: most commits would take 100 ms
        // more than the broker does. Wait for the queue to drain here instead (delivery runs on
        // the producer's thread; this only watches its count), so that flush finds nothing.
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut tries = 0;
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    /// Aborts the open transaction: nothing of it is printed, and the loop rewinds and
    /// restores every partition before judging another record.
    fn abort(&mut self, reason: &str) {
        let Some(txn) = self.txn.as_ref() else {
            return;
        };
        let lines = txn.lines.iter().filter(|&&b| b == b'\n').count();
        tracing::warn!(
            reason,
            lines_dropped = lines,
            "transaction aborted: its lines are not printed; rewinding to the committed offsets"
        );
        match self.producer.abort_transaction(CALL_TIMEOUT) {
            Ok(()) => {}
            Err(e) if is_fatal(&e) => {
                let failure = self.cannot_go_on(&e);
                self.failure.get_or_insert(failure);
            }
            Err(e) => {
                tracing::warn!(error = %e, "abort failed; the coordinator aborts the transaction at its timeout")
            }
        }
        metrics::counter!("velib_monitor_transactions_total", "outcome" => "aborted").increment(1);
        self.drop_txn();
        // An output refused for good shows up as a failed commit: apply its policy, so the
        // record's next attempt does not fail the same way.
        let refusals = std::mem::take(&mut *self.refusals.lock().unwrap());
        for refusal in refusals {
            self.refused(refusal);
        }
    }

    /// Forgets the open transaction (aborted or fatal) and asks for a rewind.
    fn drop_txn(&mut self) {
        if let Some(txn) = self.txn.take() {
            self.report = txn.report_before;
        }
        self.reset_needed = true;
    }

    /// After an abort: every owned partition back to its committed offset, its state thrown
    /// away and restored.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), KafkaError> {
        let owned: Vec<i32> = self
            .detectors
            .keys()
            .chain(self.to_restore.iter())
            .copied()
            .collect();
        self.detectors.clear();
        self.reset_needed = false;
        if owned.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &owned {
            tpl.add_partition(&self.config.topic, p);
        }
        let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT)?;
        let mut seek = TopicPartitionList::new();
        for e in committed.elements() {
            let target = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => self.first_seen.get(&e.partition()).copied(),
            };
            if let Some(o) = target {
                seek.add_partition_offset(&self.config.topic, e.partition(), Offset::Offset(o))?;
            }
        }
        if seek.count() > 0 {
            for e in consumer.seek_partitions(seek, CALL_TIMEOUT)?.elements() {
                if let Err(err) = e.error() {
                    tracing::warn!(partition = e.partition(), error = %err, "rewind failed");
                }
            }
        }
        self.to_restore.extend(owned);
        Ok(())
    }

    /// Restores the state of the partitions waiting for it, from the changelog.
    fn restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        restorer: &BaseConsumer<RestoreContext>,
    ) -> Result<(), KafkaError> {
        let partitions: Vec<i32> = std::mem::take(&mut self.to_restore).into_iter().collect();
        let started = Instant::now();
        // First the committed offsets of these partitions: a read_committed consumer's offset
        // fetch waits until no transaction committing offsets for them is pending, so the
        // previous owner's last transaction (its state included) is settled before the state
        // is read.
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&self.config.topic, p);
        }
        consumer.committed_offsets(tpl, CALL_TIMEOUT)?;

        let mut detectors: HashMap<i32, Detector> = partitions
            .iter()
            .map(|&p| (p, Detector::new(self.config.field)))
            .collect();
        let mut assign = TopicPartitionList::new();
        for &p in &partitions {
            assign.add_partition_offset(&self.eos.state_topic, p, Offset::Beginning)?;
        }
        restorer.assign(&assign)?;
        let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut stations = 0usize;
        let mut unreadable = 0usize;
        let mut foreign = 0usize;
        let mut unknown_since: Option<Instant> = None;
        let deadline = Instant::now() + CALL_TIMEOUT + self.eos.transaction_timeout;
        let mut next_check = Instant::now() + STATE_TOPIC_GRACE;
        while !open.is_empty() {
            // librdkafka reports a state topic that is gone to the client's error callback,
            // not to this poll, and keeps waiting for it: look it up now and then, so that a
            // deleted topic is named within the grace rather than after the whole deadline.
            if Instant::now() >= next_check {
                next_check = Instant::now() + STATE_TOPIC_GRACE;
                let known = restorer
                    .fetch_metadata(Some(&self.eos.state_topic), CALL_TIMEOUT)
                    .ok()
                    .and_then(|m| {
                        m.topics()
                            .first()
                            .map(|t| t.error().is_none() && !t.partitions().is_empty())
                    });
                if known == Some(false) {
                    return Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::UnknownTopicOrPartition,
                    ));
                }
            }
            match restorer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let Some(detector) = detectors.get_mut(&m.partition()) else {
                        continue;
                    };
                    // Another group's state (groups share the state topic), or a record of
                    // the earlier format keyed by station alone: never this group's.
                    if !self.keys.owns(m.key()) {
                        foreign += 1;
                        continue;
                    }
                    match m.payload().map(StoredState::parse) {
                        Some(Some(r)) if r.field == self.config.field => {
                            detector.restore(&r.contract, &r.number, r.state);
                            stations += 1;
                        }
                        // Another field's state (a monitor run with another --field) or a
                        // tombstone: the station starts unknown.
                        Some(Some(_)) | None => {}
                        Some(None) => unreadable += 1,
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) if is_transport_failure(&e) => {}
                // A state partition created a moment after its stations partition
                // (`velib-topics create` growing both): librdkafka finds it at its next
                // metadata refresh. But a state topic that stays unknown is missing: that is
                // said soon (the caller names the topic).
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownPartition
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                        )
                    ) && unknown_since.get_or_insert_with(Instant::now).elapsed()
                        < STATE_TOPIC_GRACE => {}
                Some(Err(e)) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
        }
        restorer.unassign()?;
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                state_topic = %self.eos.state_topic,
                "unreadable state records ignored; those stations start unknown"
            );
        }
        let took = started.elapsed();
        tracing::info!(partitions = ?partitions, stations, other_groups_records = foreign, ?took,
            "state restored");
        self.detectors.extend(detectors);
        if let Some(progress) = &self.eos.progress {
            *progress.last_restore.lock().unwrap() = Some((stations, took));
            progress
                .partitions
                .store(self.detectors.len(), Ordering::Relaxed);
        }
        Ok(())
    }
}

fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        e => e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal),
    }
}

/// Runs the exactly-once monitor until `stop` is set, printing committed change lines to
/// `out`. Blocking: run it on a thread of its own (`tokio::task::spawn_blocking`).
///
/// # Errors
///
/// The broker refuses transactions (naming `--guarantee at-least-once`), the producer is
/// fenced by another monitor with the same instance id, an output is refused for good (see
/// [`DlqFailure`]), or an unrecoverable client error.
pub fn run_exactly_once(
    kafka: &KafkaArgs,
    group_id: &str,
    config: &MonitorConfig,
    eos: &ExactlyOnceConfig,
    out: Box<dyn Write + Send>,
    stop: &AtomicBool,
) -> Result<MonitorReport, MonitorError> {
    let kafka_error = |what: &'static str| {
        move |source: KafkaError| MonitorError::Kafka {
            what,
            source: redact_config_error(source),
        }
    };
    let guard = ConnectionGuard::new();
    let refusals = Arc::new(Mutex::new(Vec::new()));

    let transactional_id = format!("velib-monitor.{group_id}.{}", eos.instance_id);
    let timeout_ms = eos.transaction_timeout.as_millis().to_string();
    let mut producer_defaults: Vec<(&str, &str)> = EOS_PRODUCER_DEFAULTS.to_vec();
    producer_defaults.push(("transactional.id", &transactional_id));
    producer_defaults.push(("transaction.timeout.ms", &timeout_ms));
    // librdkafka requires a record's timeout to fit within its transaction's.
    producer_defaults.push(("message.timeout.ms", &timeout_ms));
    let producer: ThreadedProducer<OutputContext> = kafka
        .client_config(&producer_defaults)
        .create_with_context(OutputContext {
            reporting: ReportingContext::new(guard.clone()),
            refusals: Arc::clone(&refusals),
        })
        .map_err(kafka_error("create the transactional producer"))?;
    // Registers the transactional id (fencing a previous incarnation and aborting its open
    // transaction). A cluster that cannot be reached is waited for, as the at-least-once
    // monitor waits; a cluster that answers "no" is an error naming the way out.
    let mut waiting_logged = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(MonitorReport::default());
        }
        if let Some(failure) = guard.failure() {
            return Err(MonitorError::Stream(StreamError::Connection(
                failure.clone(),
            )));
        }
        match producer.init_transactions(Duration::from_secs(5)) {
            Ok(()) => break,
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
    check_state_topic(&consumer, config, eos)?;

    *consumer.context().core() = Some(Core {
        producer,
        refusals,
        config: config.clone(),
        eos: eos.clone(),
        keys: GroupKeys::new(group_id),
        detectors: HashMap::new(),
        to_restore: BTreeSet::new(),
        first_seen: HashMap::new(),
        reset_needed: false,
        txn: None,
        out,
        report: MonitorReport::default(),
        metered: MonitorReport::default(),
        poison_log: RateLimited::new(Duration::from_secs(1)),
        skip_copies: HashSet::new(),
        failure: None,
        state_refused_since: None,
        stop_before: None,
        settle_before_stop: false,
    });
    consumer
        .subscribe(&[&config.topic])
        .map_err(kafka_error("subscribe"))?;
    tracing::info!(topic = %config.topic, group = group_id, %transactional_id,
        state_topic = %eos.state_topic, "monitor started (exactly once)");

    let mut consumer_error: Option<String> = None;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Some(failure) = guard.failure() {
            break Err(MonitorError::Stream(StreamError::Connection(
                failure.clone(),
            )));
        }
        let polled = consumer.poll(IDLE);
        // Nothing came for IDLE: the burst (a poll's snapshot) is over, and its lines wait
        // for nothing but their commit.
        let idle = polled.is_none();
        let mut core_guard = consumer.context().core();
        let core = core_guard.as_mut().expect("set before subscribing");
        let rewound = core.reset_needed;
        if rewound && let Err(e) = core.rewind(&consumer) {
            tracing::warn!(error = %e, "could not rewind yet; trying again");
            core.reset_needed = true;
            continue;
        }
        if !core.to_restore.is_empty()
            && let Err(e) = core.restore(&consumer, &restorer)
        {
            // A missing or too small state topic is the likely cause: name it, and the fix.
            break Err(match check_state_topic(&consumer, config, eos) {
                Err(missing) => missing,
                Ok(()) => MonitorError::Transaction(format!(
                    "could not restore the state of the assigned partitions from the state \
                     topic {} ({e}); check that the cluster is reachable and that the monitor \
                     may read that topic",
                    eos.state_topic
                )),
            });
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
            // A record fetched before a rewind comes again after it.
            Some(Ok(_)) if rewound => {}
            Some(Ok(message)) => {
                consumer_error = None;
                let record = InRecord::from(message);
                core.report.records += 1;
                core.handle(&record);
            }
        }
        if core.failure.is_none() && (core.commit_due() || (idle && core.txn.is_some())) {
            core.commit(&consumer);
        }
        if let Some(failure) = core.failure.take() {
            break Err(failure);
        }
    };

    // Stop: commit what is open (on an error, only if it is the records before the failure),
    // then leave the group.
    let report = {
        let mut core_guard = consumer.context().core();
        let core = core_guard.as_mut().expect("set before subscribing");
        if result.is_ok() || core.settle_before_stop {
            core.commit(&consumer);
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

/// The state topic must exist with a partition for every partition of the stations topic.
fn check_state_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &MonitorConfig,
    eos: &ExactlyOnceConfig,
) -> Result<(), MonitorError> {
    let count = |topic: &str| -> Result<usize, MonitorError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|source| MonitorError::Kafka {
                what: "read the topics' metadata",
                source,
            })?;
        Ok(metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    };
    let (stations, state) = (count(&config.topic)?, count(&eos.state_topic)?);
    if state == 0 && stations > 0 {
        return Err(MonitorError::Transaction(format!(
            "the state topic {} does not exist: create it with `velib-topics create` (or `cargo \
             xtask create-topics`), or name another with --state-topic",
            eos.state_topic
        )));
    }
    if state < stations {
        return Err(MonitorError::Transaction(format!(
            "the state topic {} has {state} partitions, fewer than the {stations} of {}: create \
             or grow it with `velib-topics create` (or `cargo xtask create-topics`), or name \
             another with --state-topic",
            eos.state_topic, config.topic
        )));
    }
    Ok(())
}
