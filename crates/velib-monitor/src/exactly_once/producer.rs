//! The transactional producer's context: its delivery reports, the refusals no retry can fix,
//! which of its errors are fatal, and its calls bounded in time. (Below the transaction core
//! and the consumers' contexts, which both use it.)

use crate::ledger::{refused_for_good, untag};
use crate::process::MonitorError;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use velib_kafka::ReportingContext;

/// An output Kafka refused for good, seen in a delivery report.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) topic: String,
    pub(super) error: KafkaError,
}

/// The transactional producer's context: connection reporting, and the refusals no retry can
/// fix (which would otherwise abort the same transaction again after every rewind).
pub(super) struct OutputContext {
    pub(super) reporting: ReportingContext,
    pub(super) refusals: Arc<Mutex<Vec<Refusal>>>,
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
pub(super) const STATE_TAG: usize = usize::MAX;

/// Whether `error` leaves the transactional producer unusable (it must be made again).
pub(super) fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        e => e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal),
    }
}

/// Why the transactional producer cannot go on, and the error to stop with if new producers
/// keep failing the same way (see `RENEWALS` in `mod.rs`).
#[derive(Debug)]
pub(super) struct Lost {
    pub(super) why: String,
    pub(super) if_final: MonitorError,
}

/// How much longer than its own timeout a call of the transaction protocol may take before it
/// is given up: librdkafka checks its timeouts on its own thread, which a loaded machine may
/// starve for a while.
pub(super) const STUCK_GRACE: Duration = Duration::from_secs(10);

/// Runs `call` with the producer on a thread of its own and waits for it at most `limit`;
/// `None` if it has not returned by then. librdkafka 2.12.1 can block
/// `send_offsets_to_transaction` past its timeout, for ever, when the broker that coordinated
/// the group dies (its issues #5456 and #5511; seen here with one broker of three killed):
/// the call's thread is then left to it, holding that producer, which the caller replaces.
pub(super) fn bounded<T: Send + 'static>(
    producer: &Arc<ThreadedProducer<OutputContext>>,
    limit: Duration,
    call: impl FnOnce(&ThreadedProducer<OutputContext>) -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let producer = Arc::clone(producer);
    let spawned = std::thread::Builder::new()
        .name("velib-txn-call".to_owned())
        .spawn(move || {
            // The receiver is gone only if the caller gave up waiting.
            let _ = tx.send(call(&producer));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start a thread for a transaction call; it counts \
            as a call that did not return");
        return None;
    }
    rx.recv_timeout(limit).ok()
}
