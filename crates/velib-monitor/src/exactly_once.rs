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
//!   input partition *p*).
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
//! offsets and state are committed, so nobody prints them again). The window is the time to
//! write and flush one transaction's lines to a pipe, microseconds; at most the lines of one
//! commit interval (100 ms by default).
//!
//! A new consumer group starts where `auto.offset.reset` says (`latest`: the end) with no
//! state: the first record of each station only records it, as in the at-least-once mode. The
//! state topic is not seeded from the stations topic.
//!
//! Adding partitions to the stations topic moves some stations to another partition; their
//! state stays in the changelog partition of the old one, so the first change after the move
//! is not printed (the same limit as the at-least-once mode's).

use crate::detect::{Detector, Remembered};
use crate::ledger::{PendingOut, refused_for_good, tag, untag};
use crate::monitor::{DlqFailure, MonitorConfig, MonitorError, MonitorReport, meter, process};
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
use velib_model::{StationId, StationView, Status, TrackedField};

/// The state changelog's default name.
pub const DEFAULT_STATE_TOPIC: &str = "velib-monitor-state";

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
            && tag != STATE_TAG
        {
            let (partition, offset) = untag(tag);
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
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
        {
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
                self.refused(Refusal {
                    partition,
                    offset,
                    topic: out.topic.clone(),
                    error,
                });
            }
        }
        if let Some(state) = state {
            let out = PendingOut {
                topic: self.eos.state_topic.clone(),
                key: state.key.into_bytes(),
                payload: state.value,
                headers: Vec::new(),
            };
            if let Err(error) = self.send(&out, None, Some(partition), STATE_TAG) {
                self.failure = Some(MonitorError::Transaction(format!(
                    "Kafka refused a record of the state topic {} ({error}); check that it \
                     exists with as many partitions as {} (velib-topics create)",
                    self.eos.state_topic, self.config.topic
                )));
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
        let dead_letter = self.config.dlq_topic.as_deref() == Some(refusal.topic.as_str());
        if dead_letter && self.config.on_dlq_failure == DlqFailure::Skip {
            self.skip_copies.insert((refusal.partition, refusal.offset));
            return;
        }
        let (what, advice) = if dead_letter {
            (
                format!("dead-letter copy (to {})", refusal.topic),
                crate::monitor::DLQ_ADVICE,
            )
        } else {
            (
                format!("empty-station event (to {})", refusal.topic),
                crate::monitor::EVENTS_ADVICE,
            )
        };
        tracing::error!(partition = refusal.partition, offset = refusal.offset, topic = %refusal.topic,
            error = %refusal.error, "output refused for good: stopping");
        self.failure.get_or_insert(MonitorError::Refused {
            what,
            source_topic: self.config.topic.clone(),
            partition: refusal.partition,
            offset: refusal.offset,
            error: refusal.error.to_string(),
            advice,
        });
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
                if let Some(progress) = &self.eos.progress {
                    progress.committed.fetch_add(txn.records, Ordering::Relaxed);
                }
                meter(&self.report, &mut self.metered);
            }
            Err(e) if is_fatal(&e) => {
                self.failure
                    .get_or_insert(MonitorError::Transaction(format!(
                        "the transactional producer cannot go on: {e}. Another monitor may run \
                     with the same --instance-id, which fences this one"
                    )));
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
                self.failure
                    .get_or_insert(MonitorError::Transaction(format!(
                        "the transactional producer cannot go on: {e}. Another monitor may run \
                     with the same --instance-id, which fences this one"
                    )));
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
        let deadline = Instant::now() + CALL_TIMEOUT + self.eos.transaction_timeout;
        while !open.is_empty() {
            match restorer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let Some(detector) = detectors.get_mut(&m.partition()) else {
                        continue;
                    };
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
                // metadata refresh.
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownPartition
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                        )
                    ) => {}
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
        tracing::info!(partitions = ?partitions, stations, ?took, "state restored");
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
            break Err(kafka_error("restore the state")(e));
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
        if result.is_ok() {
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

/// The changelog value of a station's state: JSON, readable with any Kafka tool.
/// `{"contract":"Lyon","number":1001,"field":"available_bike_stands","snapshot_at":…,
/// "tracked":5,"bikes":3,"open":true}`; the contract is spelled as the station's records spell
/// it, which is how the detector knows it. `tracked` is `null` when the record does not give
/// the tracked count (an e-bike count from a feed without per-type counts).
pub(crate) fn state_value(station: &StationView<'_>, field: TrackedField) -> Vec<u8> {
    let number = match &station.number {
        StationId::Number(n) => serde_json::Value::from(*n),
        StationId::Text(s) => serde_json::Value::from(s.as_str()),
    };
    let value = serde_json::json!({
        "contract": station.contract_name,
        "number": number,
        "field": field,
        "snapshot_at": station.snapshot_at,
        "tracked": field.of_view(station),
        "bikes": station.available_bikes,
        "open": station.status == Status::Open,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A station's state read back from the changelog.
struct StoredState {
    contract: String,
    number: StationId,
    field: TrackedField,
    state: Remembered,
}

/// The changelog value as written by [`state_value`], read without building a JSON tree: a
/// restore reads one per station.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    contract: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    number: WireId<'a>,
    field: TrackedField,
    snapshot_at: Option<i64>,
    tracked: Option<u32>,
    bikes: u32,
    open: bool,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum WireId<'a> {
    Number(u64),
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
}

impl StoredState {
    /// Parses a changelog value; `None` when it is not one.
    fn parse(value: &[u8]) -> Option<StoredState> {
        let wire: Wire<'_> = serde_json::from_slice(value).ok()?;
        Some(StoredState {
            contract: wire.contract.into_owned(),
            number: match wire.number {
                WireId::Number(n) => StationId::Number(n),
                WireId::Text(t) => StationId::Text(t.into_owned()),
            },
            field: wire.field,
            state: Remembered {
                snapshot_at: wire.snapshot_at,
                tracked: wire.tracked,
                bikes: wire.bikes,
                open: wire.open,
            },
        })
    }
}

/// A default instance id, stable per host and process slot: `HOST-N`, where N is the lowest
/// slot no other monitor of the group on this host holds. The slot is held by an exclusive
/// lock on a file in the temporary directory for as long as the returned [`InstanceSlot`]
/// lives; the kernel drops the lock when the process dies, so a monitor restarted after a
/// crash takes the same slot (and so fences its predecessor's open transaction).
#[derive(Debug)]
pub struct InstanceSlot {
    id: String,
    _lock: std::fs::File,
}

impl InstanceSlot {
    /// Claims the lowest free slot of `group` on this host.
    ///
    /// # Errors
    ///
    /// When the lock files cannot be created.
    pub fn claim(group: &str) -> std::io::Result<InstanceSlot> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        let dir = std::env::temp_dir().join("velib-monitor-slots");
        std::fs::create_dir_all(&dir)?;
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for slot in 0.. {
            let path = dir.join(format!("{safe}-{slot}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(InstanceSlot {
                        id: format!("{host}-{slot}"),
                        _lock: file,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        unreachable!("a slot is free below usize::MAX")
    }

    /// The instance id: `HOST-N`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_the_changelog() {
        use velib_model::{Position, Station};
        let station = Station {
            number: StationId::Number(1001),
            contract_name: "Lyon".into(),
            name: "n".into(),
            address: "a".into(),
            position: Position {
                lat: 45.0,
                lng: 4.0,
            },
            banking: false,
            bonus: false,
            bike_stands: 20,
            available_bike_stands: 12,
            available_bikes: 0,
            status: Status::Open,
            last_update: None,
            snapshot_at: Some(1_751_414_400_000),
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        let value = state_value(&station.view(), TrackedField::AvailableBikeStands);
        let stored = StoredState::parse(&value).unwrap();
        assert_eq!(stored.contract, "Lyon");
        assert_eq!(stored.number, StationId::Number(1001));
        assert_eq!(stored.field, TrackedField::AvailableBikeStands);
        assert_eq!(
            stored.state,
            Remembered {
                snapshot_at: Some(1_751_414_400_000),
                tracked: Some(12),
                bikes: 0,
                open: true
            }
        );
        // Restored, the station is known: its next record is judged against that state.
        let mut detector = Detector::new(TrackedField::AvailableBikeStands);
        detector.restore(&stored.contract, &stored.number, stored.state);
        let next = Station {
            available_bike_stands: 11,
            available_bikes: 1,
            snapshot_at: Some(1_751_414_401_000),
            ..station
        };
        assert_eq!(
            detector.observe(&next.view()),
            crate::Verdict::Updated {
                change: Some((12, 11)),
                emptiness: Some(velib_model::EmptinessKind::NoLongerEmpty),
                known_changed: false
            }
        );
        // A count the record does not give is stored as unknown, not as 0.
        let unknown =
            StoredState::parse(&state_value(&next.view(), TrackedField::AvailableEbikes)).unwrap();
        assert_eq!(unknown.field, TrackedField::AvailableEbikes);
        assert_eq!(unknown.state.tracked, None);
        assert!(StoredState::parse(b"not json").is_none());
        assert!(StoredState::parse(br#"{"contract":"Lyon"}"#).is_none());
    }

    #[test]
    fn two_monitors_of_one_group_on_a_host_get_two_slots_and_a_freed_slot_is_taken_again() {
        let group = format!("slot-test-{}", std::process::id());
        let a = InstanceSlot::claim(&group).unwrap();
        let b = InstanceSlot::claim(&group).unwrap();
        assert_ne!(a.id(), b.id());
        let a_id = a.id().to_owned();
        drop(a);
        let c = InstanceSlot::claim(&group).unwrap();
        assert_eq!(c.id(), a_id);
    }
}
