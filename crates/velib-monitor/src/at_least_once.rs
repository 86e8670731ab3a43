//! The at-least-once engine: consume station records, print changes, publish empty-station
//! events, without transactions (for brokers without them; `--guarantee at-least-once`).
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
//!   first is therefore *not printed* by anyone. No false line is printed, and nothing twice
//!   when the old owner's commit at revoke succeeds: it commits exactly what it processed
//!   before letting go. When that commit fails (the group took the partitions away after a
//!   missed session — a frozen or starved process — or the broker refused the commit while the
//!   group re-joined), the next owner reads the records since the last commit again and prints
//!   their lines **a second time**; each such hand-over is logged and counted
//!   (`velib_monitor_unsettled_handovers_total`). The exactly-once mode has no such case.
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

use crate::detect::Detector;
use crate::ledger::{Ledger, PartitionMap, PendingOut, Refused, refused_for_good, tag, untag};
use crate::process::{
    DLQ_ADVICE, DlqFailure, EVENTS_ADVICE, MonitorConfig, MonitorError, MonitorReport, meter,
    process,
};
use crate::stream::{InRecord, RebalanceNote, StationStream, StreamError};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use velib_kafka::RateLimited;
use velib_kafka::connection::{cluster_reachable, is_transport_failure};
use velib_kafka::{EnqueueError, RecordSink, sink::enqueue_with_backpressure};

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
    let mut engine = Engine {
        sink,
        ledger,
        config,
        out,
        detectors: PartitionMap::default(),
        report: MonitorReport::default(),
        metered: MonitorReport::default(),
        poison_log: RateLimited::new(Duration::from_secs(1)),
        last_store: Instant::now(),
        since_store: 0,
        unflushed: false,
        burst: 0,
        failure: None,
        consumer_error: None,
        consumer_trouble: false,
    };
    tokio::pin!(shutdown);
    loop {
        let Some(item) = engine.next(&stream, &mut shutdown).await else {
            break;
        };
        let woken = item.is_none();
        engine.apply_rebalances(&stream);
        match item {
            None => {}
            Some(Err(e)) => engine.consumer_error(e)?,
            Some(Ok(record)) => engine.judge(&record).await?,
        }
        engine.store_if_due(&mut stream, woken)?;
        if engine.failure.is_some() {
            break;
        }
    }
    engine.finish(stream).await
}

/// The at-least-once loop's state (the stream apart: the records it lends out borrow it).
struct Engine<'a, K: ?Sized> {
    sink: &'a K,
    ledger: Arc<Ledger>,
    config: &'a MonitorConfig,
    out: &'a mut (dyn Write + Send),
    /// The state of each owned partition: a partition is owned from its Assigned note to its
    /// Revoked note, and starts with an empty detector. A record of a partition not owned (one
    /// revoked while the record was in flight) is left for the new owner: processing it here
    /// would print a line the new owner prints again.
    detectors: PartitionMap<Detector>,
    report: MonitorReport,
    metered: MonitorReport,
    poison_log: RateLimited,
    last_store: Instant,
    /// Records processed since offsets were last stored.
    since_store: u32,
    /// Lines written to `out` and not flushed.
    unflushed: bool,
    /// Records taken without waiting, in a row.
    burst: u32,
    /// An output refused for good under the stop policy: the loop ends, and this is returned
    /// once what can be committed is.
    failure: Option<MonitorError>,
    /// The kind of the last consumer error logged, and whether errors came since the last
    /// record: see [`Engine::consumer_error`].
    consumer_error: Option<String>,
    consumer_trouble: bool,
}

impl<K> Engine<'_, K>
where
    K: RecordSink + ?Sized,
{
    /// The next thing to do: `Some(Some(item))` a record or error from the stream,
    /// `Some(None)` a wake-up to store offsets or apply delivery reports, `None` shutdown.
    async fn next<'s, St: StationStream>(
        &mut self,
        stream: &'s St,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Option<Result<InRecord<'s>, StreamError>>> {
        // A record already received is taken without the select below (and its waker
        // bookkeeping); the shutdown signal is still looked at every few records.
        match ready_now(stream.next()) {
            Some(r) if !self.burst.is_multiple_of(32) || ready_now(&mut *shutdown).is_none() => {
                self.burst += 1;
                // tokio's cooperative budget is spent by the shutdown future's polls; give it
                // back now and then, so the signal is never hidden by a long burst.
                if self.burst.is_multiple_of(1024) {
                    tokio::task::yield_now().await;
                }
                Some(Some(r))
            }
            Some(_) => None,
            // Nothing is ready, and records were processed since the last store: store their
            // offsets first (the store step), then come back to wait. Otherwise the tail of a
            // burst would stay uncommitted for as long as the topic stays quiet, and be read
            // again after a restart or a rebalance.
            None if self.since_store > 0 => {
                self.burst = 0;
                Some(None)
            }
            None => {
                // Nothing is ready: what was printed goes out before waiting.
                self.burst = 0;
                self.flush_lines();
                tokio::select! {
                    biased;
                    () = &mut *shutdown => None,
                    () = self.ledger.notify.notified() => Some(None),
                    r = stream.next() => Some(Some(r)),
                }
            }
        }
    }

    fn flush_lines(&mut self) {
        if self.unflushed {
            let _ = self.out.flush();
            self.unflushed = false;
        }
    }

    /// Partitions revoked and assigned since the last record: their detectors dropped or
    /// started empty.
    fn apply_rebalances<St: StationStream>(&mut self, stream: &St) {
        let notes = stream.take_rebalances();
        if notes.is_empty() {
            return;
        }
        // A revoke has just committed what was processed: its lines go out now.
        self.flush_lines();
        for note in notes {
            match note {
                RebalanceNote::Revoked(ps) => {
                    for p in ps {
                        self.detectors.remove(&p);
                    }
                }
                RebalanceNote::Assigned(ps) => {
                    for p in ps {
                        self.detectors.insert(p, Detector::new(self.config.field));
                    }
                }
            }
        }
    }

    /// A consumer error: fatal ones stop the monitor, the others are logged once per kind.
    fn consumer_error(&mut self, e: StreamError) -> Result<(), MonitorError> {
        if e.is_fatal() {
            return Err(e.into());
        }
        // librdkafka hands out the same error on every poll while it lasts (an outage: twenty
        // a second). Connection trouble is reported once by the client contexts
        // (`cluster_down`); anything else once per kind, until records flow again.
        let kind = match &e {
            StreamError::Kafka(k) if is_transport_failure(k) => None,
            StreamError::Kafka(k) => Some(format!("{:?}", k.rdkafka_error_code())),
            StreamError::Connection(c) => Some(c.to_string()),
        };
        if kind.is_some() && kind != self.consumer_error {
            tracing::warn!(error = %e, "consumer error; librdkafka retries");
        } else {
            tracing::debug!(error = %e, "consumer error");
        }
        self.consumer_error = kind.or(self.consumer_error.take());
        self.consumer_trouble = true;
        Ok(())
    }

    /// Judges one record: its line printed, its output queued and handed to the ledger.
    async fn judge(&mut self, record: &InRecord<'_>) -> Result<(), MonitorError> {
        if self.consumer_trouble {
            self.consumer_trouble = false;
            self.consumer_error = None;
            cluster_reachable();
        }
        let (partition, offset) = (record.partition(), record.offset());
        let Some(detector) = self.detectors.get_mut(&partition) else {
            tracing::debug!(
                partition,
                offset,
                "record of a partition no longer owned skipped"
            );
            return Ok(());
        };
        self.report.records += 1;
        let pending = process(
            record,
            detector,
            self.config,
            self.out,
            &mut self.report,
            &mut self.poison_log,
            &mut self.unflushed,
            None,
        );
        match pending {
            Some(pending) => self.publish(pending, record).await?,
            None => self.ledger.with(partition, |p| p.processed(offset, None)),
        }
        self.since_store += 1;
        Ok(())
    }

    /// Queues a record's event or dead-letter copy; the ledger holds its offset until Kafka
    /// acknowledges it.
    async fn publish(
        &mut self,
        pending: PendingOut,
        record: &InRecord<'_>,
    ) -> Result<(), MonitorError> {
        let (partition, offset) = (record.partition(), record.offset());
        let headers = pending.header_refs();
        let rec = pending.record(&headers, record.timestamp());
        // The queue holds a million records; if it is full, the events broker has been away
        // for long, and waiting is the only way not to lose an event.
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let enqueued =
            enqueue_with_backpressure(self.sink, &rec, tag(partition, offset), far).await;
        if let Some(fatal) = self.sink.fatal_error() {
            return Err(MonitorError::Sink(fatal));
        }
        drop(headers);
        let topic = pending.topic.clone();
        self.ledger
            .with(partition, |p| p.processed(offset, Some(pending)));
        match enqueued {
            Ok(()) => {}
            Err(EnqueueError::Refused(error)) if refused_for_good(&error) => {
                let refused = self
                    .ledger
                    .with(partition, |p| p.refuse(offset))
                    .map(|out| Refused {
                        partition,
                        offset,
                        out,
                        error,
                    });
                self.refuse(refused);
            }
            Err(e) => {
                // A full queue for a whole day, or an unexpected refusal: the output stays
                // pending, and its record uncommitted.
                tracing::error!(error = %e, topic = %topic, partition, offset, "output not queued; its record is not committed");
            }
        }
        Ok(())
    }

    fn refuse(&mut self, refused: Option<Refused>) {
        let failure = refuse(refused, self.config, &self.ledger, &mut self.report);
        self.failure = self.failure.take().or(failure);
    }

    /// Stores the offsets of what is done, when due: storing costs a librdkafka call each, so
    /// they are batched, and the clock is read only every few records of a burst.
    fn store_if_due<St: StationStream>(
        &mut self,
        stream: &mut St,
        woken: bool,
    ) -> Result<(), MonitorError> {
        let due = woken
            || self.since_store >= 1000
            || (self.since_store > 0
                && self.burst.is_multiple_of(64)
                && self.last_store.elapsed() >= Duration::from_millis(100));
        if !due {
            return Ok(());
        }
        if let Some(fatal) = self.sink.fatal_error() {
            return Err(MonitorError::Sink(fatal));
        }
        // A stored offset must not cover a line still in the buffer.
        self.flush_lines();
        for refused in resend(self.sink, &self.ledger) {
            self.refuse(Some(refused));
        }
        for (p, offset) in self.ledger.take_stores() {
            if let Err(e) = stream.store(p, offset) {
                tracing::debug!(partition = p, error = %e, "offset not stored");
            }
        }
        meter(&self.report, &mut self.metered);
        self.since_store = 0;
        self.last_store = Instant::now();
        Ok(())
    }

    /// Shutdown: waits (bounded) for undelivered events, stores what is done, commits.
    async fn finish<St: StationStream>(
        mut self,
        mut stream: St,
    ) -> Result<(St, MonitorReport), MonitorError> {
        let _ = self.out.flush();
        let deadline = Instant::now() + self.config.flush_timeout;
        loop {
            for refused in resend(self.sink, &self.ledger) {
                self.refuse(Some(refused));
            }
            if !self.ledger.has_pending() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.report.undelivered_at_exit = self.ledger.has_pending();
        // What is still undelivered was waited for long enough: closing the consumer must not
        // wait for it again at the final revoke.
        self.ledger.stop_waiting();
        for (p, offset) in self.ledger.take_stores() {
            let _ = stream.store(p, offset);
        }
        // A failed commit here is not fatal: closing the consumer revokes its partitions, and
        // the revoke commits again; at worst the records since the last commit are read again.
        if let Err(e) = stream.commit() {
            tracing::warn!(error = %e, "commit at shutdown failed");
        }
        meter(&self.report, &mut self.metered);
        let _ = self.out.flush();
        match self.failure {
            Some(failure) => Err(failure),
            None => Ok((stream, self.report)),
        }
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

/// Applies delivery reports and re-sends the outputs whose delivery failed for now. Returns
/// the outputs Kafka refused for good (in a report, or when re-sent), for [`refuse`].
fn resend<K: RecordSink + ?Sized>(sink: &K, ledger: &Ledger) -> Vec<Refused> {
    let completions = ledger.apply_completions();
    let mut refused = completions.refused;
    for (t, out) in completions.retries {
        tracing::warn!(topic = %out.topic, "an event was not delivered; sending it again");
        let headers = out.header_refs();
        let rec = out.record(&headers, None);
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
