//! The consuming side, behind [`StationStream`], and its rdkafka implementation.

use crate::ledger::Ledger;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use velib_kafka::connection::ReportingContext;
use velib_kafka::{ConnectionError, ConnectionGuard};

/// One consumed record, borrowed from its stream: key and payload are read where the
/// consumer received them, without a copy. It holds the message until it is dropped.
#[derive(Debug)]
pub struct InRecord<'a>(Held<'a>);

#[derive(Debug)]
enum Held<'a> {
    Kafka(BorrowedMessage<'a>),
    Parts {
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&'a [u8]>,
        payload: Option<&'a [u8]>,
    },
}

impl<'a> InRecord<'a> {
    /// A record made of its parts (for a [`StationStream`] that does not read from rdkafka).
    pub fn new(
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&'a [u8]>,
        payload: Option<&'a [u8]>,
    ) -> InRecord<'a> {
        InRecord(Held::Parts {
            partition,
            offset,
            timestamp,
            key,
            payload,
        })
    }

    /// The partition it came from.
    pub fn partition(&self) -> i32 {
        match &self.0 {
            Held::Kafka(m) => m.partition(),
            Held::Parts { partition, .. } => *partition,
        }
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        match &self.0 {
            Held::Kafka(m) => m.offset(),
            Held::Parts { offset, .. } => *offset,
        }
    }

    /// Its timestamp (epoch ms), when it has one.
    pub fn timestamp(&self) -> Option<i64> {
        match &self.0 {
            Held::Kafka(m) => m.timestamp().to_millis(),
            Held::Parts { timestamp, .. } => *timestamp,
        }
    }

    /// Its key.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.0 {
            Held::Kafka(m) => m.key(),
            Held::Parts { key, .. } => *key,
        }
    }

    /// Its value.
    pub fn payload(&self) -> Option<&[u8]> {
        match &self.0 {
            Held::Kafka(m) => m.payload(),
            Held::Parts { payload, .. } => *payload,
        }
    }
}

impl<'a> From<BorrowedMessage<'a>> for InRecord<'a> {
    fn from(message: BorrowedMessage<'a>) -> InRecord<'a> {
        InRecord(Held::Kafka(message))
    }
}

/// A change of the partitions this consumer owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceNote {
    /// These partitions are now ours: their state starts empty.
    Assigned(Vec<i32>),
    /// These partitions are gone: their state is dropped. Their final offsets were committed
    /// before the revoke completed.
    Revoked(Vec<i32>),
}

/// A consumer error.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// An error of the Kafka client.
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    /// The brokers cannot be reached in a way retrying cannot fix (refused credentials, an
    /// untrusted certificate, a security protocol mismatch).
    #[error("{0}")]
    Connection(ConnectionError),
}

impl StreamError {
    /// Whether the consumer cannot go on (a fatal client error or an unfixable connection
    /// failure).
    pub fn is_fatal(&self) -> bool {
        match self {
            StreamError::Kafka(e) => {
                matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal))
            }
            StreamError::Connection(_) => true,
        }
    }
}

/// Where station records come from.
///
/// [`KafkaStream`] is the implementation; the trait lets the monitor loop run over anything
/// that hands out records in partition order and accepts offsets to commit.
///
/// `next` and `take_rebalances` take `&self`: a record borrows its stream while it is
/// processed, and the rebalances that came with it are read meanwhile.
pub trait StationStream: Send + Sync {
    /// The next record. Dropping the future before it is ready loses no record.
    fn next(&self) -> impl Future<Output = Result<InRecord<'_>, StreamError>> + Send;

    /// Rebalances since the last call, oldest first. Call it after every `next`: a record for a
    /// newly assigned partition must meet empty state.
    fn take_rebalances(&self) -> Vec<RebalanceNote>;

    /// Marks everything before `next_offset` in `partition` as done, to be committed.
    ///
    /// # Errors
    ///
    /// When the partition is not assigned any more.
    fn store(&mut self, partition: i32, next_offset: i64) -> Result<(), StreamError>;

    /// Commits the stored offsets now and waits for the broker's answer.
    ///
    /// # Errors
    ///
    /// The commit's error.
    fn commit(&mut self) -> Result<(), StreamError>;
}

/// The rdkafka context: reacts to rebalances, reports lag, and keeps librdkafka's chatter at
/// debug level.
#[derive(Debug)]
pub struct MonitorContext {
    topic: String,
    lag_metrics: bool,
    ledger: Arc<Ledger>,
    notes: Mutex<Vec<RebalanceNote>>,
    /// Set after a note is pushed: `take_rebalances`, called after every record, looks at this
    /// flag instead of taking the lock.
    noted: std::sync::atomic::AtomicBool,
    assigned: Mutex<Vec<i32>>,
    /// Revokes whose commit failed (see [`AssignmentView::unsettled_handovers`]).
    unsettled: std::sync::atomic::AtomicU64,
    reporting: ReportingContext,
}

/// A read-only view of a [`KafkaStream`]'s assignment that stays valid while the stream is
/// owned by the monitor loop (for status displays and tests).
#[derive(Debug, Clone)]
pub struct AssignmentView(Arc<MonitorContext>);

impl AssignmentView {
    /// The partitions assigned after the last completed rebalance, sorted.
    pub fn partitions(&self) -> Vec<i32> {
        self.0.assigned.lock().unwrap().clone()
    }

    /// How many times partitions were given up without their final offsets committed (the
    /// assignment was lost, or the broker refused the commit at revoke): each time, their next
    /// owner reads the records since the last commit again and prints their lines a second
    /// time. Also counted in `velib_monitor_unsettled_handovers_total`.
    pub fn unsettled_handovers(&self) -> u64 {
        self.0.unsettled.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ClientContext for MonitorContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.reporting.log(level, fac, log_message);
    }

    // An unfixable failure goes to the guard (`next` returns it and the monitor stops); other
    // errors are logged once per distinct reason, not once per reconnection attempt.
    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        velib_kafka::connection::observe_statistics(&statistics);
        if !self.lag_metrics {
            return;
        }
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("velib_monitor_consumer_lag", "partition" => id.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl MonitorContext {
    fn note(&self, note: RebalanceNote) {
        self.notes.lock().unwrap().push(note);
        self.noted.store(true, std::sync::atomic::Ordering::Release);
    }

    fn unsettled_handover(&self) {
        self.unsettled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("velib_monitor_unsettled_handovers_total").increment(1);
    }
}

impl ConsumerContext for MonitorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_of(tpl);
            // Drain-then-commit: wait for the events of these partitions, store their final
            // offsets and commit them before giving them up, so the next owner starts exactly
            // where this one stopped.
            for (p, offset) in self.ledger.before_revoke(&partitions) {
                if let Err(e) = store_next(consumer, &self.topic, p, offset) {
                    tracing::debug!(partition = p, error = %e, "offset not stored at revoke");
                }
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                // The group gave the partitions away already (the session expired, during an
                // outage for instance): nothing can be committed for them any more, and that is
                // the expected outcome, not a fault.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::AssignmentLost)) => {
                    self.unsettled_handover();
                    tracing::info!(
                        "assignment lost (session expired): the next owner reads the records \
                         since the last commit again"
                    );
                }
                Err(e) => {
                    self.unsettled_handover();
                    tracing::warn!(error = %e, "commit at revoke failed: the next owner \
                        reads the records since the last commit again, and prints their lines \
                        a second time");
                }
            }
            tracing::info!(?partitions, "partitions revoked");
            self.assigned
                .lock()
                .unwrap()
                .retain(|p| !partitions.contains(p));
            self.note(RebalanceNote::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // An assignment is an answer from the group coordinator: the connection works.
            self.reporting.guard().confirm_working();
            velib_kafka::connection::cluster_reachable();
            let partitions = partitions_of(tpl);
            tracing::info!(?partitions, "partitions assigned");
            {
                let mut assigned = self.assigned.lock().unwrap();
                assigned.extend(&partitions);
                assigned.sort_unstable();
                assigned.dedup();
            }
            self.note(RebalanceNote::Assigned(partitions));
        }
    }
}

/// Stores `next_offset` (the first record not done) as the offset to commit for `partition`.
///
/// `Consumer::store_offset` is librdkafka's `rd_kafka_offset_store`, which takes a *message*
/// offset and stores that plus one; the list form stores the offset as given, which is what a
/// commit point is.
fn store_next<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(next_offset))?;
    consumer.store_offsets(&tpl)
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

/// librdkafka settings [`KafkaStream`] starts from, before the user's `-X` overrides.
pub const STREAM_DEFAULTS: &[(&str, &str)] = &[
    // At-least-once: an offset is stored only once its record is fully processed (events
    // delivered), then committed by the periodic auto-commit, at revoke and at shutdown.
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
    // A new group starts at the end, like the tutorial's kafka-python consumer: replaying days
    // of history would only rebuild state. Use -X auto.offset.reset=earliest to replay.
    ("auto.offset.reset", "latest"),
    // Only moved partitions are revoked at a rebalance, so the others keep their state.
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Low fetch latency: a change should print within milliseconds of being produced.
    ("fetch.wait.max.ms", "10"),
    // When a backlog fills the local queue (queued.max.messages.kbytes), fetch again as soon
    // as it has room, not a second later (librdkafka's default): the default stalls a monitor
    // catching up for a second each time the queue fills.
    ("fetch.queue.backoff.ms", "10"),
    ("enable.partition.eof", "false"),
];

/// Resolves when the group watch asks this member to rejoin its group; never without a watch.
async fn rejoin_wanted(watch: Option<&crate::watch::WatchThread>) {
    match watch {
        Some(w) => w.rejoin.notified().await,
        None => std::future::pending().await,
    }
}

/// A [`StationStream`] on an rdkafka consumer in a consumer group.
pub struct KafkaStream {
    consumer: StreamConsumer<MonitorContext>,
    topic: String,
    /// Wakes [`next`](StationStream::next) to rejoin a group that left partitions without an
    /// owner while this member owns none (`watch.rs`); none without a group id.
    watch: Option<crate::watch::WatchThread>,
}

impl std::fmt::Debug for KafkaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStream")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaStream {
    /// Joins the consumer group of `config` (build it from
    /// [`KafkaArgs::client_config`](velib_kafka::KafkaArgs::client_config) with
    /// [`STREAM_DEFAULTS`] and `group.id`) and subscribes to `topic`. With `lag_metrics`, the
    /// statistics (`statistics.interval.ms`) feed the `velib_monitor_consumer_lag` gauges.
    ///
    /// # Errors
    ///
    /// An invalid configuration, naming the property.
    pub fn subscribe(
        config: &ClientConfig,
        topic: &str,
        ledger: Arc<Ledger>,
        lag_metrics: bool,
    ) -> Result<KafkaStream, KafkaError> {
        let context = MonitorContext {
            topic: topic.to_owned(),
            lag_metrics,
            ledger,
            notes: Mutex::new(Vec::new()),
            noted: std::sync::atomic::AtomicBool::new(false),
            assigned: Mutex::new(Vec::new()),
            unsettled: std::sync::atomic::AtomicU64::new(0),
            reporting: ReportingContext::new(ConnectionGuard::new()),
        };
        let consumer: StreamConsumer<MonitorContext> = config
            .create_with_context(context)
            .map_err(velib_kafka::config::redact_config_error)?;
        consumer.subscribe(&[topic])?;
        let context = Arc::clone(consumer.context());
        let watch = match config.get("group.id") {
            Some(group) => Some(crate::watch::WatchThread::start(
                config,
                group,
                topic,
                move || context.assigned.lock().unwrap().is_empty(),
            )?),
            None => None,
        };
        Ok(KafkaStream {
            consumer,
            topic: topic.to_owned(),
            watch,
        })
    }

    /// A view of the assignment that outlives handing the stream to [`crate::run`].
    pub fn assignment_view(&self) -> AssignmentView {
        AssignmentView(Arc::clone(self.consumer.context()))
    }

    /// Leaves the group: revokes (and commits) the assignment and closes the consumer.
    pub fn close(self) {
        // Dropping the consumer runs librdkafka's close: a final rebalance that revokes every
        // partition through `pre_rebalance` (which commits), then LeaveGroup.
        drop(self.consumer);
    }
}

impl StationStream for KafkaStream {
    async fn next(&self) -> Result<InRecord<'_>, StreamError> {
        let guard = self.consumer.context().reporting.guard();
        if let Some(failure) = guard.failure() {
            return Err(StreamError::Connection(failure.clone()));
        }
        let mut recv = std::pin::pin!(self.consumer.recv());
        // The usual case during a backlog: a record is waiting, and no wake-up on the guard
        // needs arming.
        let polled = std::future::poll_fn(|cx| Poll::Ready(recv.as_mut().poll(cx))).await;
        if let Poll::Ready(m) = polled {
            return Ok(m?.into());
        }
        let mut rejoin = std::pin::pin!(rejoin_wanted(self.watch.as_ref()));
        loop {
            tokio::select! {
                biased;
                m = &mut recv => return Ok(m?.into()),
                failure = guard.failed() => return Err(StreamError::Connection(failure)),
                () = &mut rejoin => {
                    self.consumer.unsubscribe();
                    self.consumer.subscribe(&[&self.topic])?;
                    rejoin.set(rejoin_wanted(self.watch.as_ref()));
                }
            }
        }
    }

    fn take_rebalances(&self) -> Vec<RebalanceNote> {
        let context = self.consumer.context();
        if !context
            .noted
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            return Vec::new();
        }
        std::mem::take(&mut *context.notes.lock().unwrap())
    }

    fn store(&mut self, partition: i32, next_offset: i64) -> Result<(), StreamError> {
        Ok(store_next(
            &self.consumer,
            &self.topic,
            partition,
            next_offset,
        )?)
    }

    fn commit(&mut self) -> Result<(), StreamError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
