//! The open transaction: judging records into it, committing it (and only then printing its
//! lines), aborting it and rewinding to the committed offsets.

use super::producer::{Lost, OutputContext, Refusal, STATE_TAG, STUCK_GRACE, bounded, is_fatal};
use super::{CALL_TIMEOUT, ExactlyOnceConfig};
use crate::detect::Detector;
use crate::ledger::{PendingOut, tag};
use crate::process::{
    EosOut, MonitorConfig, MonitorError, MonitorReport, StateOut, meter, process,
};
use crate::state::GroupKeys;
use crate::stream::InRecord;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use velib_kafka::{RateLimited, send_waiting};

/// How many commits in a row may be refused because the coordinator does not know the
/// producer id before the producer is made again. librdkafka aborts such a transaction and
/// bumps the epoch, which is enough when the id merely expired; after a broker lost its data
/// the same refusal came back after every abort and rewind, and the monitor sat on its
/// partitions printing nothing: a new producer registers the transactional id afresh.
const PRODUCER_ID_REFUSALS: u32 = 3;

/// Whether Kafka refused a transaction because its coordinator does not know this producer id
/// (`INVALID_PRODUCER_ID_MAPPING`, `UNKNOWN_PRODUCER_ID`).
fn producer_id_unknown(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::InvalidProducerIdMapping | RDKafkaErrorCode::UnknownProducerId)
    )
}

/// An open transaction.
pub(super) struct Txn {
    pub(super) opened: Instant,
    /// The change lines, printed once it commits.
    pub(super) lines: Vec<u8>,
    /// The next offset of each input partition it covers.
    pub(super) offsets: BTreeMap<i32, i64>,
    /// The counts before it, restored if it aborts.
    pub(super) report_before: MonitorReport,
    /// Records it covers.
    pub(super) records: u64,
    /// The newest state of each station a record of it changed, by station key, with its
    /// input partition: sent when it commits, so that a station moved by many records of one
    /// transaction costs one changelog record, not one per record. What commits is the state
    /// after the transaction's last record of the station, as if each had been sent.
    pub(super) states: HashMap<String, (i32, StateOut)>,
}

/// Everything the loop and the rebalance callbacks share (the callbacks run inside the
/// consumer's poll, on the loop's own thread, so the lock is never contended).
pub(super) struct Core {
    /// Shared with a call of the transaction protocol running on a thread of its own (see
    /// [`bounded`]).
    pub(super) producer: Arc<ThreadedProducer<OutputContext>>,
    /// The producer cannot go on, and a new one may: the loop registers one before going on.
    pub(super) producer_lost: Option<Lost>,
    /// Producers made again since the last commit (see `RENEWALS` in `mod.rs`).
    pub(super) renewals: u32,
    pub(super) refusals: Arc<Mutex<Vec<Refusal>>>,
    pub(super) config: MonitorConfig,
    pub(super) eos: ExactlyOnceConfig,
    /// The changelog keys of this monitor's group: it writes and restores only its group's.
    pub(super) keys: GroupKeys,
    pub(super) detectors: HashMap<i32, Detector>,
    /// Assigned partitions whose state is not restored yet.
    pub(super) to_restore: BTreeSet<i32>,
    /// The first offset read of each partition since it was assigned: where a partition
    /// without a committed offset is rewound to.
    pub(super) first_seen: HashMap<i32, i64>,
    /// The partitions this monitor has committed offsets for: one of them found without a
    /// committed offset on its next assignment lost it (see `restore.rs`).
    pub(super) committed_once: HashSet<i32>,
    /// Partitions sought to their beginning by the last restore: a record polled before the
    /// seek is not judged (it comes again).
    pub(super) sought: Vec<i32>,
    /// A transaction was aborted: rewind and restore before judging another record.
    pub(super) reset_needed: bool,
    pub(super) txn: Option<Txn>,
    pub(super) out: Box<dyn Write + Send>,
    pub(super) report: MonitorReport,
    pub(super) metered: MonitorReport,
    pub(super) poison_log: RateLimited,
    /// Unreadable records whose dead-letter copy Kafka refused for good, skipped under
    /// [`DlqFailure::Skip`].
    pub(super) skip_copies: HashSet<(i32, i64)>,
    /// Why the monitor must stop, once what can be committed is.
    pub(super) failure: Option<MonitorError>,
    /// Since when Kafka has refused state records, with no transaction committed since.
    pub(super) state_refused_since: Option<Instant>,
    /// Commits refused in a row because the coordinator does not know this monitor's producer
    /// id (see [`PRODUCER_ID_REFUSALS`]).
    pub(super) producer_id_refused: u32,
    /// A record whose output Kafka refused for good, under the stop policy: the monitor
    /// commits the records before it and stops there, with this error.
    pub(super) stop_before: Option<((i32, i64), MonitorError)>,
    /// The failure is that record: what is open is committed before stopping, not aborted.
    pub(super) settle_before_stop: bool,
    /// How long the last commit took (its offsets sent, the commit answered): the next
    /// transaction under load stays open [`COMMIT_SHARE`] times as long at least.
    pub(super) last_commit: Duration,
}

/// Under load, a transaction stays open at least this many times as long as the last commit
/// took, so that committing (during which nothing is read) costs at most a fifth of the time:
/// a broker that answers slowly makes the next transaction bigger, not the backlog longer.
const COMMIT_SHARE: u32 = 4;

impl Core {
    /// A core with nothing owned yet: partitions come with the first assignment.
    pub(super) fn new(
        producer: ThreadedProducer<OutputContext>,
        refusals: Arc<Mutex<Vec<Refusal>>>,
        config: &MonitorConfig,
        eos: &ExactlyOnceConfig,
        group_id: &str,
        out: Box<dyn Write + Send>,
    ) -> Core {
        Core {
            producer: Arc::new(producer),
            producer_lost: None,
            renewals: 0,
            refusals,
            config: config.clone(),
            eos: eos.clone(),
            keys: GroupKeys::new(group_id),
            detectors: HashMap::new(),
            to_restore: BTreeSet::new(),
            first_seen: HashMap::new(),
            committed_once: HashSet::new(),
            sought: Vec::new(),
            reset_needed: false,
            txn: None,
            out,
            report: MonitorReport::default(),
            metered: MonitorReport::default(),
            poison_log: RateLimited::new(Duration::from_secs(1)),
            skip_copies: HashSet::new(),
            failure: None,
            state_refused_since: None,
            producer_id_refused: 0,
            stop_before: None,
            settle_before_stop: false,
            last_commit: Duration::ZERO,
        }
    }

    /// Judges one record inside the open transaction (opening one if needed): its line, its
    /// output and its station's new state go into the transaction together.
    pub(super) fn handle(&mut self, record: &InRecord<'_>) {
        let (partition, offset) = (record.partition(), record.offset());
        if self.stops_at(partition, offset) || !self.detectors.contains_key(&partition) {
            // Not owned (revoked while the record was in flight) or not restored yet.
            return;
        }
        if self.txn.is_none() && !self.open_txn() {
            return;
        }
        self.first_seen.entry(partition).or_insert(offset);
        let txn = self.txn.as_mut().expect("a transaction is open");
        let detector = self.detectors.get_mut(&partition).expect("checked above");
        let mut unflushed = false;
        let mut eos = EosOut::default();
        let output = process(
            record,
            detector,
            &self.config,
            &mut txn.lines,
            &mut self.report,
            &mut self.poison_log,
            &mut unflushed,
            Some(&mut eos),
        );
        txn.offsets.insert(partition, offset + 1);
        txn.records += 1;
        if let Some(state) = eos.state.take() {
            // Replaces the state an earlier record of the transaction left, if any; the key's
            // text is kept from the first.
            match txn.states.get_mut(&state.key) {
                Some(pending) => *pending = (partition, state),
                None => {
                    txn.states.insert(state.key.clone(), (partition, state));
                }
            }
        }
        if let Some(progress) = &self.eos.progress {
            progress.records.fetch_add(1, Ordering::Relaxed);
        }
        // The record's event or dead-letter copy, then the windows and health changes it
        // closed: any refused aborts the transaction, and the record is read again.
        for out in output.iter().chain(&eos.published) {
            if !self.send_output(out, record) {
                return;
            }
        }
    }

    /// Whether this is the record Kafka refused an output of: everything before it is in the
    /// open transaction (or committed); the monitor stops here, committing that and not this
    /// record.
    fn stops_at(&mut self, partition: i32, offset: i64) -> bool {
        if self
            .stop_before
            .as_ref()
            .is_none_or(|(at, _)| *at != (partition, offset))
        {
            return false;
        }
        let (_, error) = self.stop_before.take().expect("checked above");
        self.failure.get_or_insert(error);
        self.settle_before_stop = true;
        true
    }

    /// Begins a transaction; `false` (with the failure set) if the producer cannot.
    fn open_txn(&mut self) -> bool {
        if let Err(e) = self.producer.begin_transaction() {
            self.failure = Some(MonitorError::Transaction(format!(
                "could not begin a transaction: {e}"
            )));
            return false;
        }
        self.txn = Some(Txn {
            opened: Instant::now(),
            lines: Vec::new(),
            offsets: BTreeMap::new(),
            report_before: self.report.clone(),
            records: 0,
            states: HashMap::new(),
        });
        true
    }

    /// Sends a record's event or dead-letter copy in the transaction; `false` if the
    /// transaction was aborted because Kafka refused it.
    fn send_output(&mut self, out: &PendingOut, record: &InRecord<'_>) -> bool {
        let (partition, offset) = (record.partition(), record.offset());
        let dead_letter = self.config.dlq_topic.as_deref() == Some(out.topic.as_str());
        if dead_letter && self.skip_copies.contains(&(partition, offset)) {
            self.report.dead_letters_lost += 1;
            metrics::counter!("velib_monitor_dead_letters_lost_total").increment(1);
            tracing::error!(topic = %self.config.topic, partition, offset, dlq_topic = %out.topic,
                "Kafka refused the dead-letter copy of an unreadable record for good; the \
                 record is skipped without it (--on-dlq-failure=skip)");
            return true;
        }
        let Err(error) = self.send(out, record.timestamp(), None, tag(partition, offset)) else {
            return true;
        };
        // Its line and state are in the transaction, its output is not: abort, and let the
        // policy decide what the record's second reading does.
        let reason = format!("Kafka refused an output for good ({error})");
        self.refusals.lock().unwrap().push(Refusal {
            partition,
            offset,
            topic: out.topic.clone(),
            error,
        });
        self.abort(&reason);
        false
    }

    /// Sends the open transaction's station states to their changelog partitions; `false` if
    /// one was refused (the transaction is then aborted, or the monitor stops).
    fn send_states(&mut self) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return true;
        };
        let states = std::mem::take(&mut txn.states);
        for (_, (partition, state)) in states {
            if !self.send_state(state, partition) {
                if self.txn.is_some() {
                    // Refused for good (the failure is set): nothing of it may commit.
                    self.drop_txn();
                }
                return false;
            }
        }
        true
    }

    /// Sends a station's new state to its changelog partition in the transaction; `false` if
    /// Kafka refused it.
    fn send_state(&mut self, state: StateOut, partition: i32) -> bool {
        let out = PendingOut {
            topic: self.eos.state_topic.clone(),
            key: self.keys.key(&state.key),
            payload: state.value,
            headers: state
                .stats
                .map(|bytes| vec![(crate::state::STATS_HEADER, bytes)])
                .unwrap_or_default(),
        };
        let Err(error) = self.send(&out, None, Some(partition), STATE_TAG) else {
            return true;
        };
        if is_fatal(&error) {
            self.fatal(&error);
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
        false
    }

    /// Queues one output in the open transaction (to `partition`, or where its key hashes);
    /// waits while the producer's queue is full.
    fn send(
        &self,
        out: &PendingOut,
        timestamp_ms: Option<i64>,
        partition: Option<i32>,
        tag: usize,
    ) -> Result<(), KafkaError> {
        let headers = out.header_refs();
        let record = out.record(&headers, timestamp_ms);
        let deadline = Instant::now() + self.eos.transaction_timeout;
        // The producer's thread drains the queue; a full queue is a broker that has been slow
        // for a while.
        send_waiting(&self.producer, &record, partition, tag, deadline)
    }

    /// Whether the open transaction has been open for the commit interval, or for
    /// [`COMMIT_SHARE`] times the last commit's duration if that is longer (bounded by a
    /// quarter of the transaction timeout, so a very slow commit cannot make the next
    /// transaction outlive it).
    pub(super) fn commit_due(&self) -> bool {
        let Some(txn) = &self.txn else {
            return false;
        };
        let interval = (self.last_commit * COMMIT_SHARE)
            .min(self.eos.transaction_timeout / 4)
            .max(self.eos.commit_interval);
        txn.opened.elapsed() >= interval
    }

    /// Commits the open transaction and prints its lines, or aborts it.
    pub(super) fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if !self.send_states() {
            return;
        }
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
        let started = Instant::now();
        let limit = CALL_TIMEOUT.min(self.eos.transaction_timeout) + STUCK_GRACE;
        let sent = bounded(&self.producer, limit, move |p| {
            p.send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
        });
        let Some(sent) = sent else {
            self.offsets_stuck(limit);
            return;
        };
        match sent.and_then(|()| self.commit_retrying()) {
            Ok(()) => {
                self.last_commit = started.elapsed();
                let txn = self.txn.take().expect("a transaction is open");
                self.committed_once.extend(txn.offsets.keys());
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
                self.producer_id_refused = 0;
                self.renewals = 0;
                if let Some(progress) = &self.eos.progress {
                    progress.committed.fetch_add(txn.records, Ordering::Relaxed);
                }
                meter(&self.report, &mut self.metered);
            }
            Err(e) if is_fatal(&e) => self.fatal(&e),
            Err(e) if producer_id_unknown(&e) => {
                self.producer_id_refused += 1;
                if self.producer_id_refused >= PRODUCER_ID_REFUSALS {
                    self.producer_id_refused = 0;
                    let lost = Lost {
                        why: format!(
                            "the transaction coordinator refused the producer id at \
                             {PRODUCER_ID_REFUSALS} commits in a row ({e})"
                        ),
                        if_final: self.producer_id_lost(&e),
                    };
                    self.lose_producer(lost);
                } else {
                    self.abort(&format!("the commit failed: {e}"));
                }
            }
            Err(e) => {
                let reason = format!("the commit failed: {e}");
                self.abort(&reason);
            }
        }
    }

    /// `commit_transaction`, retried while Kafka says a retry may succeed.
    pub(super) fn commit_retrying(&self) -> Result<(), KafkaError> {
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
    pub(super) fn abort(&mut self, reason: &str) {
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
            Err(e) if is_fatal(&e) => self.fatal(&e),
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
    pub(super) fn drop_txn(&mut self) {
        if let Some(txn) = self.txn.take() {
            self.report = txn.report_before;
        }
        self.reset_needed = true;
    }

    /// After an abort: every owned partition back to its committed offset, its state thrown
    /// away and restored.
    pub(super) fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), KafkaError> {
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
}
