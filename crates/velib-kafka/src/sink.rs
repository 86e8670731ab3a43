//! The Kafka side of publishing, behind [`RecordSink`].
//!
//! # Delivery guarantee
//!
//! [`KafkaSink`] is an idempotent producer (`enable.idempotence=true`, which implies `acks=all`
//! and bounded in-flight requests): librdkafka retries a record until the broker acknowledges it
//! or `message.timeout.ms` (5 min by default) runs out, and the broker drops the duplicates such
//! retries could create, so each record enqueued is written to its partition **at most once, in
//! order, and at least once unless reported failed**. Every outcome comes back as a delivery
//! report: counted in [`SinkCounts`] and, when a [`DeliveryCallback`] is given, handed to it
//! with the caller's tag.
//!
//! The limit: records still queued when the process dies are lost (the producer's queue is in
//! memory), and records whose timeout expires while no broker is reachable are reported as
//! failed, not kept. [`RecordSink::flush`] before exit is what makes a shutdown lose nothing:
//! dropping a producer purges its queue.

use crate::config::redact_config_error;
use crate::connection::{self, ConnectionGuard};
use crate::rate_limit::RateLimited;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One record to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Message key; it decides the partition (murmur2, as Kafka's Java client).
    pub key: &'a [u8],
    /// Message value.
    pub payload: &'a [u8],
    /// Record timestamp in epoch milliseconds; the producer's clock when `None`.
    pub timestamp_ms: Option<i64>,
    /// Record headers.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Where a delivered record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    /// The partition.
    pub partition: i32,
    /// The offset in that partition.
    pub offset: i64,
}

/// Called once per enqueued record, from the producer's delivery thread, with the tag given
/// to [`RecordSink::enqueue`] and the outcome. Keep it quick: it runs on librdkafka's thread.
pub type DeliveryCallback = Arc<dyn Fn(usize, Result<Landed, KafkaError>) + Send + Sync>;

/// Counts of delivery outcomes since the sink was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Records accepted into the producer queue.
    pub enqueued: u64,
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Records that could not be delivered (timeout, broker refusal).
    pub failed: u64,
}

impl SinkCounts {
    /// Records enqueued whose outcome is not known yet.
    pub fn pending(&self) -> u64 {
        self.enqueued.saturating_sub(self.delivered + self.failed)
    }
}

/// Why a record was not accepted into the queue.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The local queue is full (`queue.buffering.max.messages`/`.kbytes`): the broker is slow
    /// or away. Retry later; nothing was queued.
    #[error(
        "the producer queue is full (queue.buffering.max.messages / queue.buffering.max.kbytes)"
    )]
    QueueFull,
    /// Any other refusal, for example a record larger than `message.max.bytes`.
    #[error("the producer refused the record: {0}")]
    Refused(KafkaError),
}

/// Where records go. [`KafkaSink`] is the implementation; the trait keeps the poll and monitor
/// loops independent of rdkafka.
pub trait RecordSink: Send + Sync {
    /// Queues a record without waiting for its delivery. `tag` comes back with the outcome
    /// through the sink's [`DeliveryCallback`].
    ///
    /// # Errors
    ///
    /// [`EnqueueError::QueueFull`] when the queue is full: nothing was queued, retry later.
    fn enqueue(&self, record: &OutRecord<'_>, tag: usize) -> Result<(), EnqueueError>;

    /// Waits up to `timeout` for every queued record's outcome. Returns the number of records
    /// still without an outcome (0 means everything was delivered or reported failed).
    fn flush(&self, timeout: Duration) -> u64;

    /// Outcome counts so far.
    fn counts(&self) -> SinkCounts;

    /// A fatal producer error (the idempotent producer can no longer guarantee ordering, or a
    /// [`ConnectionError`](crate::ConnectionError) such as refused credentials), if one
    /// happened: the sink must not be used any more.
    fn fatal_error(&self) -> Option<String>;
}

/// librdkafka settings [`KafkaSink`] starts from, before the user's `-X` overrides.
pub const SINK_DEFAULTS: &[(&str, &str)] = &[
    // No duplicates from retries, per-partition order kept, acks from all in-sync replicas.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Kafka's standard partitioner: the same key lands in the same partition whether Java,
    // Python (kafka-python) or velib produced it. (`murmur2_random` only differs for records
    // without a key, which velib never sends.)
    ("partitioner", "murmur2_random"),
    // A broker outage is bridged by the queue: one million records is several minutes of a
    // large city's stations. Records older than message.timeout.ms are reported failed.
    ("queue.buffering.max.messages", "1000000"),
    ("message.timeout.ms", "300000"),
    // A few milliseconds of batching is most of the throughput, at no visible latency cost
    // for a once-a-second poll.
    ("linger.ms", "5"),
    // gzip: the one codec every Kafka client reads without an extra library (the tutorial's
    // `pip install kafka-python` consumer cannot read lz4 or zstd batches). Level 1 keeps most
    // of the size gain for a fraction of the CPU. `-X compression.type=lz4` (or `zstd`) is
    // cheaper still for consumers that have the codec.
    ("compression.type", "gzip"),
    ("compression.level", "1"),
    // librdkafka's producers ask the broker to create the topics they look up, and a broker
    // left at auto.create.topics.enable=true does, with its defaults: one partition, delete
    // policy. A broker that lost its data would get velib-stations back with 1 partition
    // instead of 10, silently, from the producer's next metadata refresh. velib's topics are
    // created by velib-topics with their plan; a missing one is an error that says so.
    NO_AUTO_CREATE,
];

/// Never let a producer's metadata request create a topic with the broker's defaults (see
/// [`SINK_DEFAULTS`]).
pub const NO_AUTO_CREATE: (&str, &str) = ("allow.auto.create.topics", "false");

/// Tracks broker reachability so an outage is reported once when it starts and once when it
/// ends, not once per record or per reconnection attempt.
#[derive(Debug, Default)]
struct Health {
    guard: ConnectionGuard,
    last_error: Mutex<Option<RDKafkaErrorCode>>,
    fatal: Mutex<Option<String>>,
}

impl Health {
    fn on_error(&self, error: &KafkaError, reason: &str) {
        if self.guard.observe(error, reason) {
            // Logged once by the guard; the producer's loop stops on it.
            return;
        }
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%reason, "fatal producer error: the producer stops");
            *self.fatal.lock().unwrap() = Some(reason.to_owned());
            return;
        }
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            connection::cluster_down();
            return;
        }
        if connection::is_transport_failure(error) {
            connection::transport_failure(reason);
            return;
        }
        let mut last = self.last_error.lock().unwrap();
        if *last != code {
            *last = code;
            tracing::warn!(%reason, "Kafka client error");
        }
    }

    fn on_delivered(&self) {
        self.guard.confirm_working();
        connection::cluster_reachable();
        if self.last_error.lock().unwrap().is_some() {
            *self.last_error.lock().unwrap() = None;
        }
    }
}

/// The rdkafka context: counts outcomes, calls the delivery callback, and turns librdkafka's
/// error stream into state-change log lines.
struct SinkContext {
    counts: Counters,
    failure_log: Mutex<RateLimited>,
    health: Arc<Health>,
    callback: Option<DeliveryCallback>,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.health.guard.observe_log(fac, log_message);
        connection::forward_librdkafka_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.on_error(&error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let outcome = match result {
            Ok(m) => {
                self.counts.delivered.fetch_add(1, Ordering::Relaxed);
                self.health.on_delivered();
                metrics::counter!("velib_sink_records_delivered_total").increment(1);
                Ok(Landed {
                    partition: m.partition(),
                    offset: m.offset(),
                })
            }
            Err((err, m)) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("velib_sink_delivery_failures_total").increment(1);
                if let Some(suppressed) = self.failure_log.lock().unwrap().allow() {
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    let hint = match err.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                            "the topic does not exist: create it with `cargo xtask create-topics`"
                        }
                        Some(RDKafkaErrorCode::MessageTimedOut) => {
                            "no broker acknowledged it within message.timeout.ms"
                        }
                        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                            "the broker refuses writes to this topic for these credentials"
                        }
                        _ => "",
                    };
                    tracing::error!(
                        topic = m.topic(),
                        %key,
                        error = %err,
                        similar_failures_not_logged = suppressed,
                        "record not delivered{}{hint}",
                        if hint.is_empty() { "" } else { ": " }
                    );
                }
                Err(err.clone())
            }
        };
        if let Some(cb) = &self.callback {
            cb(tag, outcome);
        }
    }
}

/// A [`RecordSink`] on an idempotent rdkafka producer with its own delivery thread.
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext>,
    health: Arc<Health>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer from `config` (build it with
    /// [`KafkaArgs::client_config`](crate::KafkaArgs::client_config) and [`SINK_DEFAULTS`]).
    /// No connection is made yet: an unreachable broker shows up as a log line and as queued
    /// records, not as an error here.
    ///
    /// # Errors
    ///
    /// An invalid configuration (unknown property, bad value), naming the property.
    pub fn new(
        config: &ClientConfig,
        callback: Option<DeliveryCallback>,
    ) -> Result<KafkaSink, KafkaError> {
        let health = Arc::new(Health::default());
        let context = SinkContext {
            counts: Counters::default(),
            failure_log: Mutex::new(RateLimited::default()),
            health: Arc::clone(&health),
            callback,
        };
        let producer = config
            .create_with_context(context)
            .map_err(redact_config_error)?;
        Ok(KafkaSink { producer, health })
    }

    /// Where this producer records a connection failure that retrying cannot fix (wrong
    /// credentials, untrusted certificate…); [`RecordSink::fatal_error`] reports it too.
    pub fn connection_guard(&self) -> ConnectionGuard {
        self.health.guard.clone()
    }
}

impl RecordSink for KafkaSink {
    fn enqueue(&self, record: &OutRecord<'_>, tag: usize) -> Result<(), EnqueueError> {
        let base = base_record(record, tag);
        match self.producer.send(base) {
            Ok(()) => {
                self.producer
                    .context()
                    .counts
                    .enqueued
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(EnqueueError::QueueFull)
            }
            Err((e, _)) => Err(EnqueueError::Refused(e)),
        }
    }

    fn flush(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        // `flush` returns early with a timeout error when records remain; the count below is
        // what matters to the caller either way.
        let _ = self.producer.flush(timeout);
        while self.counts().pending() > 0 && Instant::now() < deadline {
            // Delivery reports are served by the producer's thread; give it a moment.
            std::thread::sleep(Duration::from_millis(5));
        }
        self.counts().pending()
    }

    fn counts(&self) -> SinkCounts {
        let c = &self.producer.context().counts;
        SinkCounts {
            enqueued: c.enqueued.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    fn fatal_error(&self) -> Option<String> {
        let fatal = self.health.fatal.lock().unwrap().clone();
        fatal.or_else(|| self.health.guard.failure().map(ToString::to_string))
    }
}

/// librdkafka's form of `record`, with `tag` as its delivery opaque.
pub fn base_record<'a>(record: &OutRecord<'a>, tag: usize) -> BaseRecord<'a, [u8], [u8], usize> {
    let mut base = BaseRecord::with_opaque_to(record.topic, tag)
        .key(record.key)
        .payload(record.payload);
    if let Some(ts) = record.timestamp_ms {
        base = base.timestamp(ts);
    }
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(*v),
                })
            },
        );
        base = base.headers(headers);
    }
    base
}

/// Queues `record` on `producer` (to `partition`, or where its key hashes), waiting (blocking
/// the thread) while the queue is full, until `deadline`: for a producer driven from a thread
/// of its own, such as a transactional one whose records must all be queued before its commit.
///
/// # Errors
///
/// The queue still full at `deadline` (`QueueFull`), or the refusal.
pub fn send_waiting<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &ThreadedProducer<C>,
    record: &OutRecord<'_>,
    partition: Option<i32>,
    tag: usize,
    deadline: Instant,
) -> Result<(), KafkaError> {
    loop {
        let mut base = base_record(record, tag);
        if let Some(p) = partition {
            base = base.partition(p);
        }
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if Instant::now() < deadline =>
            {
                // The producer's own thread drains the queue.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Queues `record`, waiting (asynchronously) while the queue is full, until `deadline`.
///
/// # Errors
///
/// [`EnqueueError::QueueFull`] if the queue is still full at `deadline`, or the refusal.
pub async fn enqueue_with_backpressure<S: RecordSink + ?Sized>(
    sink: &S,
    record: &OutRecord<'_>,
    tag: usize,
    deadline: tokio::time::Instant,
) -> Result<(), EnqueueError> {
    loop {
        match sink.enqueue(record, tag) {
            Err(EnqueueError::QueueFull) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Waits (asynchronously) up to `timeout` for every queued record's outcome, and returns how
/// many records are still without one. Unlike [`RecordSink::flush`] it never blocks the async
/// runtime, so other tasks (a monitor's consumer, a test) keep running while it waits.
pub async fn flush_async<S: RecordSink + ?Sized>(sink: &S, timeout: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + timeout;
    // Delivery runs on the producer's own thread; all this waits for is its reports. Checking
    // the counters every millisecond costs nothing and ends the wait within one of the last
    // report.
    while sink.counts().pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sink.counts().pending()
}
