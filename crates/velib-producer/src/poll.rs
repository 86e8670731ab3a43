//! The poll loop: fetch a snapshot at a fixed rate, publish every station.
//!
//! Polls are scheduled on a fixed-rate clock. A poll that outlasts the interval makes the loop
//! skip the ticks it missed (and say so) rather than fire them in a burst, so a slow API or a
//! slow broker never makes polls pile up. Publishing only queues records: delivery runs on the
//! producer's own thread, so the next poll never waits for the previous one's delivery reports.
//!
//! Delivery is as [`velib_kafka::sink`] describes: every queued record is delivered once or reported
//! failed; on shutdown the loop stops polling, flushes with a bounded timeout and reports how
//! many records were left undelivered. A source that fails for good (a refused API key, a
//! contract that does not exist) stops the loop the same way, flush included, before the
//! error is returned: the stations already queued are not thrown away with the producer.

use crate::changed::ChangeFilter;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use velib_kafka::sink::{
    EnqueueError, OutRecord, RecordSink, enqueue_with_backpressure, flush_async,
};
use velib_model::{Snapshot, topics};
use velib_source::{Backoff, SourceError, StationSource};

/// What the poll loop does, apart from where it reads and writes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The topic station records go to.
    pub topic: String,
    /// Time between the starts of two polls.
    pub interval: Duration,
    /// Publish only stations whose counts, status or `last_update` changed since the previous
    /// snapshot (the first snapshot is published whole).
    pub changed_only: bool,
    /// Also append every snapshot, as one JSON line, to this file (a recording for the replay
    /// source).
    pub record: Option<PathBuf>,
    /// How long shutdown waits for queued records to be delivered.
    pub flush_timeout: Duration,
    /// Stop after this many successful polls (benchmarks, tests, one-shot runs).
    pub max_polls: Option<u64>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            topic: topics::STATIONS.into(),
            interval: Duration::from_secs(1),
            changed_only: false,
            record: None,
            flush_timeout: Duration::from_secs(30),
            max_polls: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceReport {
    /// Successful polls.
    pub polls: u64,
    /// Failed polls.
    pub poll_errors: u64,
    /// Stations received from the source.
    pub stations_fetched: u64,
    /// Records queued for Kafka.
    pub records_enqueued: u64,
    /// Records acknowledged by the broker.
    pub records_delivered: u64,
    /// Records the producer reported as not delivered.
    pub records_failed: u64,
    /// Records not queued because the producer queue stayed full for a whole interval.
    pub records_dropped: u64,
    /// Records still without an outcome when the flush timeout ran out (should be 0).
    pub undelivered_at_exit: u64,
    /// Ticks skipped because a poll outlasted the interval.
    pub skipped_ticks: u64,
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The source failed in a way retrying cannot fix (for example a refused API key). The
    /// records queued before it were flushed (within the flush timeout) first.
    #[error("the station source failed: {source}; {}", flush_outcome(report))]
    Source {
        /// The source's error.
        source: SourceError,
        /// What the run did, the flush included.
        report: Box<ProduceReport>,
    },
    /// The Kafka producer hit a fatal error.
    #[error("the Kafka producer failed: {0}")]
    Sink(String),
    /// The `--record` file could not be opened.
    #[error("cannot open the recording file {path} (--record): {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How the flush before an error went, for its message.
fn flush_outcome(report: &ProduceReport) -> String {
    let lost = report.records_failed + report.undelivered_at_exit;
    if lost == 0 {
        format!(
            "the {} station records queued before were delivered",
            report.records_delivered
        )
    } else {
        format!(
            "{lost} station records were not delivered ({} failed, {} still queued after \
             --flush-timeout)",
            report.records_failed, report.undelivered_at_exit
        )
    }
}

/// Polls `source` at `config.interval` and publishes every station to `sink`, until
/// `shutdown` resolves, `config.max_polls` is reached, or the source is exhausted. Writes the
/// tutorial's line per poll to `out`.
///
/// # Errors
///
/// A permanent source error, a fatal producer error, or an unusable `--record` file. Transient
/// source errors are retried with backoff.
pub async fn run<S, K>(
    mut source: S,
    sink: &K,
    config: &ProducerConfig,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()>,
) -> Result<ProduceReport, ProducerError>
where
    S: StationSource,
    K: RecordSink + ?Sized,
{
    let mut recorder = match &config.record {
        Some(path) => Some(Recorder::open(path.clone())?),
        None => None,
    };
    let mut publisher = Publisher::new(sink, config);
    let mut report = ProduceReport::default();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tracing::info!(source = %source.describe(), topic = %config.topic, "producer started");

    // A permanent source failure, returned once the queue is flushed.
    let mut failure = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        check_fatal(sink)?;
        let started = Instant::now();
        let snapshot = match fetch(&mut source, &mut backoff, &mut report, &mut shutdown).await {
            Fetched::Snapshot(snapshot) => snapshot,
            Fetched::Retry => {
                ticker.reset();
                continue;
            }
            Fetched::Stop(permanent) => {
                failure = permanent;
                break;
            }
        };
        // Sources stamp their stations already; a source of another crate may not, and the
        // monitor orders records by `snapshot_at`.
        let snapshot = snapshot.stamped();
        report.polls += 1;
        report.stations_fetched += snapshot.stations.len() as u64;
        metrics::counter!("velib_producer_polls_total").increment(1);
        metrics::counter!("velib_producer_stations_fetched_total")
            .increment(snapshot.stations.len() as u64);
        if let Some(r) = recorder.as_mut() {
            r.append(&snapshot);
        }
        let published = publisher.publish(&snapshot, &mut report).await?;
        finish_poll(out, config, &mut report, published, started.elapsed());
        if config.max_polls.is_some_and(|max| report.polls >= max) {
            break;
        }
    }
    flush(sink, config, report, failure).await
}

/// A fatal producer error, as the loop's error.
fn check_fatal<K: RecordSink + ?Sized>(sink: &K) -> Result<(), ProducerError> {
    match sink.fatal_error() {
        Some(fatal) => Err(ProducerError::Sink(fatal)),
        None => Ok(()),
    }
}

/// What one attempt at a snapshot came to.
enum Fetched {
    Snapshot(Snapshot),
    /// A transient failure, waited out with backoff: poll again, on a fresh tick.
    Retry,
    /// Stop polling: shutdown, an exhausted source, or (`Some`) a permanent failure.
    Stop(Option<SourceError>),
}

/// Fetches one snapshot, unless `shutdown` comes first; counts a failure, and after a
/// transient one waits the backoff's delay (or until shutdown).
async fn fetch<S: StationSource>(
    source: &mut S,
    backoff: &mut Backoff,
    report: &mut ProduceReport,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Fetched {
    let fetched = tokio::select! {
        biased;
        () = &mut *shutdown => return Fetched::Stop(None),
        r = source.fetch() => r,
    };
    let e = match fetched {
        Ok(snapshot) => {
            backoff.reset();
            return Fetched::Snapshot(snapshot);
        }
        Err(e) if e.class() == "exhausted" => {
            tracing::info!("the source has no more snapshots");
            return Fetched::Stop(None);
        }
        Err(e) => e,
    };
    report.poll_errors += 1;
    metrics::counter!("velib_producer_poll_errors_total", "class" => e.class()).increment(1);
    if e.is_permanent() {
        tracing::error!(error = %e, "the source failed in a way retrying cannot fix");
        return Fetched::Stop(Some(e));
    }
    let delay = backoff.next_delay(&e);
    tracing::warn!(error = %e, retry_in = ?delay, "poll failed");
    tokio::select! {
        biased;
        () = &mut *shutdown => Fetched::Stop(None),
        () = tokio::time::sleep(delay) => Fetched::Retry,
    }
}

/// What one poll published.
#[derive(Debug, Clone, Copy)]
struct Published {
    records: u64,
    /// Stations left out as unchanged, with `--changed-only`.
    unchanged: Option<u64>,
}

/// Queues a snapshot's stations on the sink, reusing its buffers from poll to poll.
struct Publisher<'a, K: ?Sized> {
    sink: &'a K,
    config: &'a ProducerConfig,
    filter: Option<ChangeFilter>,
    payload: Vec<u8>,
    key: String,
}

impl<'a, K: RecordSink + ?Sized> Publisher<'a, K> {
    fn new(sink: &'a K, config: &'a ProducerConfig) -> Self {
        Publisher {
            sink,
            config,
            filter: config.changed_only.then(ChangeFilter::new),
            payload: Vec::with_capacity(512),
            key: String::with_capacity(64),
        }
    }

    /// Queues every station of `snapshot` (only the changed ones with `--changed-only`).
    /// Records that cannot be queued before the next tick are dropped: the next snapshot
    /// supersedes them, and waiting longer would only make polls pile up.
    async fn publish(
        &mut self,
        snapshot: &Snapshot,
        report: &mut ProduceReport,
    ) -> Result<Published, ProducerError> {
        let deadline = tokio::time::Instant::now() + self.config.interval;
        let mut published = 0u64;
        let mut unchanged = 0u64;
        for (i, station) in snapshot.stations.iter().enumerate() {
            if let Some(f) = self.filter.as_mut()
                && !f.changed(station)
            {
                unchanged += 1;
                continue;
            }
            self.payload.clear();
            station.write_json(&mut self.payload);
            station.write_key(&mut self.key);
            let record = OutRecord {
                topic: &self.config.topic,
                key: self.key.as_bytes(),
                payload: &self.payload,
                timestamp_ms: Some(snapshot.taken_at),
                headers: &[],
            };
            match enqueue_with_backpressure(self.sink, &record, 0, deadline).await {
                Ok(()) => published += 1,
                Err(EnqueueError::QueueFull) => {
                    let left = (snapshot.stations.len() - i) as u64;
                    report.records_dropped += left;
                    metrics::counter!("velib_producer_records_dropped_total").increment(left);
                    tracing::warn!(
                        dropped = left,
                        "the producer queue stayed full for a whole interval (is the broker \
                         reachable?); the rest of this snapshot is dropped, the next one \
                         supersedes it"
                    );
                    break;
                }
                Err(e @ EnqueueError::Refused(_)) => {
                    report.records_dropped += 1;
                    tracing::error!(station = %self.key, error = %e, "record refused by the producer");
                }
            }
            // A fatal error stops the loop within a few hundred records (the check takes a
            // lock, so not after every one).
            if i % 256 == 255 {
                check_fatal(self.sink)?;
            }
        }
        check_fatal(self.sink)?;
        report.records_enqueued += published;
        metrics::counter!("velib_producer_records_enqueued_total").increment(published);
        Ok(Published {
            records: published,
            unchanged: self.filter.is_some().then_some(unchanged),
        })
    }
}

/// Ends a poll that took `took`: the tutorial's line on `out`, the duration metric, and the
/// ticks skipped when the poll outlasted the interval.
fn finish_poll(
    out: &mut (dyn Write + Send),
    config: &ProducerConfig,
    report: &mut ProduceReport,
    published: Published,
    took: Duration,
) {
    metrics::histogram!("velib_producer_poll_duration_seconds").record(took.as_secs_f64());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let records = published.records;
    let _ = match published.unchanged {
        Some(unchanged) => writeln!(
            out,
            "{now:.3} Produced {records} station records ({unchanged} unchanged) in {} ms",
            took.as_millis()
        ),
        None => writeln!(
            out,
            "{now:.3} Produced {records} station records in {} ms",
            took.as_millis()
        ),
    };
    let _ = out.flush();

    if took > config.interval {
        let skipped = (took.as_nanos() / config.interval.as_nanos().max(1)) as u64;
        report.skipped_ticks += skipped;
        metrics::counter!("velib_producer_skipped_ticks_total").increment(skipped);
        tracing::warn!(
            took = ?took,
            interval = ?config.interval,
            skipped,
            "the poll took longer than the interval; skipping the missed ticks"
        );
    }
}

/// Flushes the queue within `config.flush_timeout`, completes the report with the delivery
/// outcome, and returns it, or the permanent source failure that stopped the loop.
async fn flush<K: RecordSink + ?Sized>(
    sink: &K,
    config: &ProducerConfig,
    mut report: ProduceReport,
    failure: Option<SourceError>,
) -> Result<ProduceReport, ProducerError> {
    tracing::info!(timeout = ?config.flush_timeout, "stopping: flushing queued records");
    report.undelivered_at_exit = flush_async(sink, config.flush_timeout).await;
    let counts = sink.counts();
    report.records_delivered = counts.delivered;
    report.records_failed = counts.failed;
    if report.undelivered_at_exit > 0 || counts.failed > 0 {
        tracing::error!(
            undelivered = report.undelivered_at_exit,
            failed = counts.failed,
            "some station records were not delivered"
        );
    } else {
        tracing::info!(
            delivered = counts.delivered,
            "all station records delivered"
        );
    }
    match failure {
        Some(source) => Err(ProducerError::Source {
            source,
            report: Box::new(report),
        }),
        None => Ok(report),
    }
}

/// Appends snapshots to a recording, one JSON line each.
struct Recorder {
    path: PathBuf,
    file: BufWriter<File>,
    failing: bool,
}

impl Recorder {
    fn open(path: PathBuf) -> Result<Recorder, ProducerError> {
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Ok(Recorder {
                path,
                file: BufWriter::new(f),
                failing: false,
            }),
            Err(source) => Err(ProducerError::Record { path, source }),
        }
    }

    /// A failed write does not stop publishing; it is logged when it starts failing and when
    /// it recovers, not on every snapshot.
    fn append(&mut self, snapshot: &Snapshot) {
        let result = serde_json::to_writer(&mut self.file, snapshot)
            .map_err(std::io::Error::from)
            .and_then(|()| self.file.write_all(b"\n"))
            .and_then(|()| self.file.flush());
        match result {
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(path = %self.path.display(), error = %e, "cannot append to the recording (--record)");
            }
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %self.path.display(), "the recording is being written again");
            }
            _ => {}
        }
    }
}
