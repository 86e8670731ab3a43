//! The monitor loop: consume station records, print changes, publish empty-station events.
//!
//! # Delivery guarantee
//!
//! **At-least-once processing, at-most-once printing.** An input offset is stored for commit
//! only when its record is fully processed: its line printed and its empty-station event or
//! dead-letter copy acknowledged by Kafka (see [`crate::ledger`]). Offsets are committed every
//! second (librdkafka's auto-commit of stored offsets), before a partition is revoked, and at
//! shutdown.
//!
//! The limits:
//! - **Rebalance.** State is per partition and starts empty when a partition is assigned, so
//!   the new owner's first record of each station only records its state. A change whose
//!   "before" record was read by the old owner and whose "after" record is the new owner's
//!   first is therefore *not printed* by anyone. Nothing is printed twice and no false line is
//!   printed: the old owner commits exactly what it processed before letting go.
//! - **Crash.** Records after the last commit are read again after a restart, by a monitor with
//!   empty state: the same as a rebalance — the lines they already printed are not repeated,
//!   the change straddling the restart is missed. An event delivered just before the crash may
//!   be published again only if its record is re-read *and* the transition is seen again,
//!   which empty state prevents; downstream, velib-alerts deduplicates by event identity
//!   anyway.
//! - **Stale records** (from a snapshot no newer than the one known, by `snapshot_at`; see
//!   [`crate::detect`]) are ignored, so the same snapshot polled twice, a producer retry, a
//!   second producer or a replay print nothing.

use crate::detect::{Detector, Verdict};
use crate::ledger::{Ledger, PartitionMap, PendingOut, tag};
use crate::stream::{InRecord, RebalanceNote, StationStream};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use velib_model::{ChangeLine, EmptyStationEvent, StationChange, StationView, TrackedField};
use velib_producer::{OutRecord, StationSink, sink::enqueue_with_backpressure};

/// How change lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The tutorial's line: `+1 ADDRESS (Contract)`.
    #[default]
    Text,
    /// One [`StationChange`] JSON object per line.
    Json,
}

/// What the monitor does, apart from where it reads and writes.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The topic of station records (for logs and dead-letter headers).
    pub topic: String,
    /// Which count to follow.
    pub field: TrackedField,
    /// How to print changes.
    pub format: OutputFormat,
    /// Where empty-station events go; `None` publishes none.
    pub events_topic: Option<String>,
    /// Where unreadable records are copied; `None` only counts and logs them.
    pub dlq_topic: Option<String>,
    /// How long shutdown waits for undelivered events before committing what is done.
    pub flush_timeout: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            topic: "velib-stations".into(),
            field: TrackedField::AvailableBikeStands,
            format: OutputFormat::Text,
            events_topic: Some("velib-empty-stations".into()),
            dlq_topic: Some("velib-stations-dlq".into()),
            flush_timeout: Duration::from_secs(30),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorReport {
    /// Records consumed.
    pub records: u64,
    /// Change lines printed.
    pub changes: u64,
    /// Records ignored as stale (not newer than the known state).
    pub stale: u64,
    /// Unreadable records.
    pub poison: u64,
    /// Empty/no-longer-empty events queued.
    pub events: u64,
    /// Whether outputs were still undelivered at exit (their records are not committed).
    pub undelivered_at_exit: bool,
}

/// Why the monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The consumer cannot go on.
    #[error("the Kafka consumer failed")]
    Stream(#[from] crate::stream::StreamError),
    /// The events producer cannot go on.
    #[error("the events producer failed: {0}")]
    Sink(String),
}

/// Consumes `stream` until `shutdown` resolves, printing changes to `out` and publishing events
/// through `sink`, whose delivery reports must reach `ledger` (build the sink with
/// [`Ledger::callback`]).
///
/// Lines are written to `out` in bursts: it is flushed whenever no record is ready, right after
/// a rebalance, and always before offsets are stored, so a stored offset never covers a line
/// still in `out`'s buffer. (A revoke commits what was processed from inside the consumer's
/// poll; lines still buffered then are flushed as soon as the poll returns.) Give it a
/// buffered writer: it is not flushed per line.
///
/// # Errors
///
/// A fatal consumer or producer error. Everything else (unreadable records, a broker away for
/// a while) is logged and lived with.
pub async fn run<St, K>(
    mut stream: St,
    sink: &K,
    ledger: Arc<Ledger>,
    config: &MonitorConfig,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()>,
) -> Result<(St, MonitorReport), MonitorError>
where
    St: StationStream,
    K: StationSink + ?Sized,
{
    // The state of each owned partition: a partition is owned from its Assigned note to its
    // Revoked note, and starts with an empty detector. A record of a partition not owned (one
    // revoked while the record was in flight) is left for the new owner: processing it here
    // would print a line the new owner prints again.
    let mut detectors: PartitionMap<Detector> = PartitionMap::default();
    let mut report = MonitorReport::default();
    let mut metered = MonitorReport::default();
    let mut poison_log = RateLimited::new(Duration::from_secs(1));
    let mut last_store = Instant::now();
    let mut since_store = 0u32;
    let mut unflushed = false;
    let mut burst = 0u32;
    tokio::pin!(shutdown);

    loop {
        // A record already received is taken without the select below (and its waker
        // bookkeeping); the shutdown signal is still looked at every few records.
        let ready = match ready_now(stream.next()) {
            Some(r) if burst % 32 != 0 || ready_now(&mut shutdown).is_none() => Some(r),
            Some(_) => break,
            None => None,
        };
        let item = match ready {
            Some(r) => {
                burst += 1;
                // tokio's cooperative budget is spent by the shutdown future's polls; give it
                // back now and then, so the signal is never hidden by a long burst.
                if burst % 1024 == 0 {
                    tokio::task::yield_now().await;
                }
                Some(r)
            }
            // Nothing is ready, and records were processed since the last store: store their
            // offsets first (the store step below), then come back to wait. Otherwise the tail
            // of a burst would stay uncommitted for as long as the topic stays quiet, and be
            // read again after a restart or a rebalance.
            None if since_store > 0 => {
                burst = 0;
                None
            }
            None => {
                // Nothing is ready: what was printed goes out before waiting.
                burst = 0;
                if unflushed {
                    let _ = out.flush();
                    unflushed = false;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = ledger.notify.notified() => None,
                    r = stream.next() => Some(r),
                }
            }
        };
        let woken = item.is_none();
        let notes = stream.take_rebalances();
        if !notes.is_empty() {
            // A revoke has just committed what was processed: its lines go out now.
            if unflushed {
                let _ = out.flush();
                unflushed = false;
            }
            for note in notes {
                match note {
                    RebalanceNote::Revoked(ps) => {
                        for p in ps {
                            detectors.remove(&p);
                        }
                    }
                    RebalanceNote::Assigned(ps) => {
                        for p in ps {
                            detectors.insert(p, Detector::new(config.field));
                        }
                    }
                }
            }
        }
        match item {
            None => {}
            Some(Err(e)) if e.is_fatal() => return Err(e.into()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
            }
            Some(Ok(record)) => {
                let (partition, offset) = (record.partition(), record.offset());
                let Some(detector) = detectors.get_mut(&partition) else {
                    tracing::debug!(
                        partition,
                        offset,
                        "record of a partition no longer owned skipped"
                    );
                    continue;
                };
                report.records += 1;
                let pending = process(
                    &record,
                    detector,
                    config,
                    out,
                    &mut report,
                    &mut poison_log,
                    &mut unflushed,
                );
                if let Some(pending) = &pending {
                    let (topic, headers) = (pending.topic.clone(), header_refs(&pending.headers));
                    let rec = OutRecord {
                        topic: &topic,
                        key: &pending.key,
                        payload: &pending.payload,
                        timestamp_ms: record.timestamp(),
                        headers: &headers,
                    };
                    // The queue holds a million records; if it is full, the events broker has
                    // been away for long, and waiting is the only way not to lose an event.
                    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
                    if let Err(e) =
                        enqueue_with_backpressure(sink, &rec, tag(partition, offset), far).await
                    {
                        tracing::error!(error = %e, topic = %topic, "event refused by the producer");
                    }
                    if let Some(fatal) = sink.fatal_error() {
                        return Err(MonitorError::Sink(fatal));
                    }
                }
                ledger.with(partition, |p| p.processed(offset, pending));
                since_store += 1;
            }
        }
        // Storing offsets costs a librdkafka call each: batch them. The clock is read only
        // every few records of a burst.
        let due = woken
            || since_store >= 1000
            || (since_store > 0
                && (burst % 64 == 0)
                && last_store.elapsed() >= Duration::from_millis(100));
        if due {
            if let Some(fatal) = sink.fatal_error() {
                return Err(MonitorError::Sink(fatal));
            }
            // A stored offset must not cover a line still in the buffer.
            if unflushed {
                let _ = out.flush();
                unflushed = false;
            }
            resend(sink, &ledger);
            for (p, offset) in ledger.take_stores() {
                if let Err(e) = stream.store(p, offset) {
                    tracing::debug!(partition = p, error = %e, "offset not stored");
                }
            }
            meter(&report, &mut metered);
            since_store = 0;
            last_store = Instant::now();
        }
    }

    // Shutdown: wait (bounded) for undelivered events, store what is done, commit.
    let _ = out.flush();
    let deadline = Instant::now() + config.flush_timeout;
    loop {
        resend(sink, &ledger);
        if !ledger.has_pending() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report.undelivered_at_exit = ledger.has_pending();
    for (p, offset) in ledger.take_stores() {
        let _ = stream.store(p, offset);
    }
    // A failed commit here is not fatal: closing the consumer revokes its partitions, and the
    // revoke commits again; at worst the records since the last commit are read again.
    if let Err(e) = stream.commit() {
        tracing::warn!(error = %e, "commit at shutdown failed");
    }
    meter(&report, &mut metered);
    let _ = out.flush();
    Ok((stream, report))
}

/// Polls `future` once, without a waker to wake: its output if it is ready now.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Adds what `report` counted since `metered` to the metrics: counters are updated in batches,
/// not per record.
fn meter(report: &MonitorReport, metered: &mut MonitorReport) {
    let add = |name: &'static str, now: u64, before: &mut u64| {
        if now > *before {
            metrics::counter!(name).increment(now - *before);
            *before = now;
        }
    };
    add(
        "velib_monitor_records_total",
        report.records,
        &mut metered.records,
    );
    add(
        "velib_monitor_changes_total",
        report.changes,
        &mut metered.changes,
    );
    add(
        "velib_monitor_poison_records_total",
        report.poison,
        &mut metered.poison,
    );
    add(
        "velib_monitor_events_total",
        report.events,
        &mut metered.events,
    );
}

/// Re-sends outputs whose delivery failed, and applies delivery reports.
fn resend<K: StationSink + ?Sized>(sink: &K, ledger: &Ledger) {
    for (t, out) in ledger.apply_completions() {
        tracing::warn!(topic = %out.topic, "an event was not delivered; sending it again");
        let headers = header_refs(&out.headers);
        let rec = OutRecord {
            topic: &out.topic,
            key: &out.key,
            payload: &out.payload,
            timestamp_ms: None,
            headers: &headers,
        };
        if let Err(e) = sink.enqueue(&rec, t) {
            tracing::warn!(error = %e, "could not re-send an event yet");
        }
    }
}

fn header_refs<'a>(headers: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    headers.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

/// Handles one record; returns what must be published (and delivered) before it is done.
fn process(
    record: &InRecord<'_>,
    detector: &mut Detector,
    config: &MonitorConfig,
    out: &mut (dyn Write + Send),
    report: &mut MonitorReport,
    poison_log: &mut RateLimited,
    unflushed: &mut bool,
) -> Option<PendingOut> {
    let payload = record.payload().unwrap_or_default();
    let station = match StationView::from_json(payload) {
        Ok(s) => s,
        Err(e) => {
            report.poison += 1;
            if let Some(suppressed) = poison_log.allow() {
                tracing::warn!(
                    topic = %config.topic,
                    partition = record.partition(),
                    offset = record.offset(),
                    error = %e,
                    suppressed_since_last = suppressed,
                    "unreadable station record skipped{}",
                    if config.dlq_topic.is_some() { "; copied to the dead-letter topic" } else { "" }
                );
            }
            return config.dlq_topic.as_ref().map(|dlq| PendingOut {
                topic: dlq.clone(),
                key: record.key().unwrap_or_default().to_vec(),
                payload: payload.to_vec(),
                headers: vec![
                    ("velib-error", e.to_string().into_bytes()),
                    ("velib-source-topic", config.topic.clone().into_bytes()),
                    (
                        "velib-source-partition",
                        record.partition().to_string().into_bytes(),
                    ),
                    (
                        "velib-source-offset",
                        record.offset().to_string().into_bytes(),
                    ),
                ],
            });
        }
    };
    match detector.observe(&station) {
        Verdict::First => None,
        Verdict::Stale => {
            report.stale += 1;
            None
        }
        Verdict::Updated { change, emptiness } => {
            if let Some((previous, current)) = change {
                report.changes += 1;
                let _ = match config.format {
                    OutputFormat::Text => writeln!(
                        out,
                        "{}",
                        ChangeLine {
                            previous,
                            current,
                            address: &station.address,
                            contract: &station.contract_name,
                        }
                    ),
                    OutputFormat::Json => {
                        let change = StationChange {
                            key: station.key(),
                            contract: station.contract_name.as_ref().to_owned(),
                            address: station.address.as_ref().to_owned(),
                            name: station.name.as_ref().to_owned(),
                            field: config.field,
                            previous,
                            current,
                            last_update: station.last_update,
                        };
                        serde_json::to_writer(&mut *out, &change)
                            .map_err(std::io::Error::from)
                            .and_then(|()| writeln!(out))
                    }
                };
                *unflushed = true;
            }
            let (kind, topic) = (emptiness?, config.events_topic.as_ref()?);
            report.events += 1;
            let event = EmptyStationEvent::new(
                kind,
                &station.to_station(),
                record.timestamp().unwrap_or_default(),
            );
            Some(PendingOut {
                topic: topic.clone(),
                key: event.key.as_str().as_bytes().to_vec(),
                payload: event.to_json(),
                headers: Vec::new(),
            })
        }
    }
}

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(period: Duration) -> RateLimited {
        RateLimited {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(number suppressed since the last allowed line)` when a line may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.period)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
