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
//!
//! # An output Kafka refuses for good
//!
//! A broker away, a timeout: an event or dead-letter copy whose delivery failed is sent again,
//! for as long as it takes. But Kafka may refuse one *for good*: a poison record larger than
//! the producer's `message.max.bytes`, a dead-letter or events topic that does not exist, a
//! missing ACL ([`crate::ledger::refused_for_good`]). Retrying cannot help, and the record's
//! offset cannot be committed without losing it. So:
//! - by default the monitor **stops** with [`MonitorError::Refused`], which names the record
//!   (partition, offset), the refusal and the settings to change; the records before it are
//!   committed, so a restart begins at that record;
//! - with [`DlqFailure::Skip`] (`--on-dlq-failure=skip`) an unreadable record whose copy is
//!   refused is **skipped without its copy**: logged at error level with its partition and
//!   offset, counted in [`MonitorReport::dead_letters_lost`] and
//!   `velib_monitor_dead_letters_lost_total`, and committed. Events are never skipped: a lost
//!   event is a lost alert.

use crate::detect::{Detector, Verdict};
use crate::ledger::{Ledger, PartitionMap, PendingOut, Refused, refused_for_good, tag, untag};
use crate::stream::{InRecord, RebalanceNote, StationStream, StreamError};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use velib_kafka::RateLimited;
use velib_kafka::connection::{cluster_reachable, is_transport_failure};
use velib_kafka::{EnqueueError, OutRecord, RecordSink, sink::enqueue_with_backpressure};
use velib_model::{ChangeLine, EmptyStationEvent, StationChange, StationView, TrackedField};

/// How change lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The tutorial's line: `+1 ADDRESS (Contract)`.
    #[default]
    Text,
    /// One [`StationChange`] JSON object per line.
    Json,
}

/// What to do with an unreadable record whose dead-letter copy Kafka refuses for good (see
/// the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DlqFailure {
    /// Stop with an error naming the record and the settings to change.
    #[default]
    Stop,
    /// Skip the record without its copy: a loss, logged and counted.
    Skip,
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
    /// What to do when Kafka refuses a dead-letter copy for good.
    pub on_dlq_failure: DlqFailure,
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
            on_dlq_failure: DlqFailure::Stop,
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
    /// Unreadable records skipped without their dead-letter copy, which Kafka refused for good
    /// ([`DlqFailure::Skip`]).
    pub dead_letters_lost: u64,
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
    /// A Kafka client could not be set up or used (exactly-once mode).
    #[error("could not {what}: {source}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// Kafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The transactions of the exactly-once mode cannot go on; the message says why and what
    /// to change.
    #[error("{0}")]
    Transaction(String),
    /// The events producer cannot go on.
    #[error("the events producer failed: {0}")]
    Sink(String),
    /// Kafka refused for good the event or dead-letter copy of a record, which therefore cannot
    /// be committed. The records before it were committed.
    #[error(
        "Kafka refused the {what} of {source_topic} partition {partition} offset {offset} for \
         good ({error}); the record is not committed, and a restart stops on it again. {advice}"
    )]
    Refused {
        /// "dead-letter copy (to velib-stations-dlq)" or "empty-station event (to …)".
        what: String,
        /// The input topic.
        source_topic: String,
        /// The input record's partition.
        partition: i32,
        /// The input record's offset.
        offset: i64,
        /// Kafka's refusal.
        error: String,
        /// Which settings to change.
        advice: &'static str,
    },
}

/// What to change when a dead-letter copy is refused for good.
pub(crate) const DLQ_ADVICE: &str = "Fix the cause (a record over message.max.bytes: raise it with \
    -X message.max.bytes=… here and max.message.bytes on the topic; a missing topic: create it, \
    or name another with --dlq-topic), or skip such records with --on-dlq-failure=skip (each one \
    logged and counted as lost), or only count unreadable records with --no-dlq";

/// What to change when an event is refused for good.
pub(crate) const EVENTS_ADVICE: &str = "Create the events topic (cargo xtask create-topics) or name \
    another with --events-topic, check the ACLs, or publish no events with --no-events";

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
    K: RecordSink + ?Sized,
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
    // An output refused for good under the stop policy: the loop ends, and this is returned
    // once what can be committed is.
    let mut failure: Option<MonitorError> = None;
    // The kind of the last consumer error logged, and whether errors came since the last
    // record: see where consumer errors are handled.
    let mut consumer_error: Option<String> = None;
    let mut consumer_trouble = false;
    tokio::pin!(shutdown);

    loop {
        // A record already received is taken without the select below (and its waker
        // bookkeeping); the shutdown signal is still looked at every few records.
        let ready = match ready_now(stream.next()) {
            Some(r) if !burst.is_multiple_of(32) || ready_now(&mut shutdown).is_none() => Some(r),
            Some(_) => break,
            None => None,
        };
        let item = match ready {
            Some(r) => {
                burst += 1;
                // tokio's cooperative budget is spent by the shutdown future's polls; give it
                // back now and then, so the signal is never hidden by a long burst.
                if burst.is_multiple_of(1024) {
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
                // librdkafka hands out the same error on every poll while it lasts (an outage:
                // twenty a second). Connection trouble is reported once by the client contexts
                // (`cluster_down`); anything else once per kind, until records flow again.
                let kind = match &e {
                    StreamError::Kafka(k) if is_transport_failure(k) => None,
                    StreamError::Kafka(k) => Some(format!("{:?}", k.rdkafka_error_code())),
                    StreamError::Connection(c) => Some(c.to_string()),
                };
                if kind.is_some() && kind != consumer_error {
                    tracing::warn!(error = %e, "consumer error; librdkafka retries");
                } else {
                    tracing::debug!(error = %e, "consumer error");
                }
                consumer_error = kind.or(consumer_error);
                consumer_trouble = true;
            }
            Some(Ok(record)) => {
                if consumer_trouble {
                    consumer_trouble = false;
                    consumer_error = None;
                    cluster_reachable();
                }
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
                    None,
                );
                if let Some(pending) = pending {
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
                    let enqueued =
                        enqueue_with_backpressure(sink, &rec, tag(partition, offset), far).await;
                    if let Some(fatal) = sink.fatal_error() {
                        return Err(MonitorError::Sink(fatal));
                    }
                    drop(headers);
                    ledger.with(partition, |p| p.processed(offset, Some(pending)));
                    match enqueued {
                        Ok(()) => {}
                        Err(EnqueueError::Refused(error)) if refused_for_good(&error) => {
                            let refused =
                                ledger
                                    .with(partition, |p| p.refuse(offset))
                                    .map(|out| Refused {
                                        partition,
                                        offset,
                                        out,
                                        error,
                                    });
                            failure = failure.or(refuse(refused, config, &ledger, &mut report));
                        }
                        Err(e) => {
                            // A full queue for a whole day, or an unexpected refusal: the
                            // output stays pending, and its record uncommitted.
                            tracing::error!(error = %e, topic = %topic, partition, offset, "output not queued; its record is not committed");
                        }
                    }
                } else {
                    ledger.with(partition, |p| p.processed(offset, None));
                }
                since_store += 1;
                if failure.is_some() {
                    break;
                }
            }
        }
        // Storing offsets costs a librdkafka call each: batch them. The clock is read only
        // every few records of a burst.
        let due = woken
            || since_store >= 1000
            || (since_store > 0
                && burst.is_multiple_of(64)
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
            for refused in resend(sink, &ledger) {
                failure = failure.or(refuse(Some(refused), config, &ledger, &mut report));
            }
            for (p, offset) in ledger.take_stores() {
                if let Err(e) = stream.store(p, offset) {
                    tracing::debug!(partition = p, error = %e, "offset not stored");
                }
            }
            meter(&report, &mut metered);
            since_store = 0;
            last_store = Instant::now();
            if failure.is_some() {
                break;
            }
        }
    }

    // Shutdown: wait (bounded) for undelivered events, store what is done, commit.
    let _ = out.flush();
    let deadline = Instant::now() + config.flush_timeout;
    loop {
        for refused in resend(sink, &ledger) {
            failure = failure.or(refuse(Some(refused), config, &ledger, &mut report));
        }
        if !ledger.has_pending() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report.undelivered_at_exit = ledger.has_pending();
    // What is still undelivered was waited for long enough: closing the consumer must not wait
    // for it again at the final revoke.
    ledger.stop_waiting();
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
    match failure {
        Some(failure) => Err(failure),
        None => Ok((stream, report)),
    }
}

/// Applies the policy to an output Kafka refused for good (already moved to *refused* in the
/// ledger): skips a dead-letter copy under [`DlqFailure::Skip`], and otherwise returns the
/// error that stops the monitor.
fn refuse(
    refused: Option<Refused>,
    config: &MonitorConfig,
    ledger: &Ledger,
    report: &mut MonitorReport,
) -> Option<MonitorError> {
    let Refused {
        partition,
        offset,
        out,
        error,
    } = refused?;
    let dead_letter = config.dlq_topic.as_deref() == Some(out.topic.as_str());
    if dead_letter && config.on_dlq_failure == DlqFailure::Skip {
        ledger.with(partition, |p| p.skip(offset));
        report.dead_letters_lost += 1;
        metrics::counter!("velib_monitor_dead_letters_lost_total").increment(1);
        tracing::error!(
            topic = %config.topic,
            partition,
            offset,
            dlq_topic = %out.topic,
            %error,
            "Kafka refused the dead-letter copy of an unreadable record for good; the record is \
             skipped without it (--on-dlq-failure=skip)"
        );
        return None;
    }
    let (what, advice) = if dead_letter {
        (format!("dead-letter copy (to {})", out.topic), DLQ_ADVICE)
    } else {
        (
            format!("empty-station event (to {})", out.topic),
            EVENTS_ADVICE,
        )
    };
    tracing::error!(partition, offset, topic = %out.topic, %error, "output refused for good: stopping");
    Some(MonitorError::Refused {
        what,
        source_topic: config.topic.clone(),
        partition,
        offset,
        error: error.to_string(),
        advice,
    })
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
pub(crate) fn meter(report: &MonitorReport, metered: &mut MonitorReport) {
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

/// Applies delivery reports and re-sends the outputs whose delivery failed for now. Returns
/// the outputs Kafka refused for good (in a report, or when re-sent), for [`refuse`].
fn resend<K: RecordSink + ?Sized>(sink: &K, ledger: &Ledger) -> Vec<Refused> {
    let completions = ledger.apply_completions();
    let mut refused = completions.refused;
    for (t, out) in completions.retries {
        tracing::warn!(topic = %out.topic, "an event was not delivered; sending it again");
        let headers = header_refs(&out.headers);
        let rec = OutRecord {
            topic: &out.topic,
            key: &out.key,
            payload: &out.payload,
            timestamp_ms: None,
            headers: &headers,
        };
        match sink.enqueue(&rec, t) {
            Ok(()) => {}
            Err(EnqueueError::Refused(error)) if refused_for_good(&error) => {
                let (partition, offset) = untag(t);
                if let Some(out) = ledger.with(partition, |p| p.refuse(offset)) {
                    refused.push(Refused {
                        partition,
                        offset,
                        out,
                        error,
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not re-send an event yet"),
        }
    }
    refused
}

fn header_refs<'a>(headers: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    headers.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

/// A changelog record of the exactly-once mode: the station's key and its state.
pub(crate) struct StateOut {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
}

/// Handles one record; returns what must be published (and delivered) before it is done.
/// With `state_out`, also the station's new state when it changed in a way detection depends
/// on (its first record, a change of the tracked count, an emptiness transition).
#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    record: &InRecord<'_>,
    detector: &mut Detector,
    config: &MonitorConfig,
    out: &mut (dyn Write + Send),
    report: &mut MonitorReport,
    poison_log: &mut RateLimited,
    unflushed: &mut bool,
    state_out: Option<&mut Option<StateOut>>,
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
                    if config.dlq_topic.is_some() { "; sending a copy to the dead-letter topic" } else { "" }
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
    let verdict = detector.observe(&station);
    if let Some(slot) = state_out {
        let remember = match verdict {
            Verdict::First => true,
            Verdict::Updated {
                change,
                emptiness,
                known_changed,
            } => change.is_some() || emptiness.is_some() || known_changed,
            Verdict::Stale => false,
        };
        if remember {
            *slot = Some(StateOut {
                key: station.key().as_str().to_owned(),
                value: crate::exactly_once::state_value(&station, config.field),
            });
        }
    }
    match verdict {
        Verdict::First => None,
        Verdict::Stale => {
            report.stale += 1;
            None
        }
        Verdict::Updated {
            change, emptiness, ..
        } => {
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
