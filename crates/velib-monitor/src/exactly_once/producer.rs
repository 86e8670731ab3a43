//! The transactional producer's context: its delivery reports, the refusals no retry can fix,
//! and which of its errors are fatal. (Below the transaction core and the consumers' contexts,
//! which both use it.)

use crate::ledger::{refused_for_good, untag};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use std::sync::{Arc, Mutex};
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
