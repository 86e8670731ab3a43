//! Why the exactly-once monitor stops, said so a user can act: outputs Kafka refuses for good,
//! a producer fenced or timed out, a state topic gone; and the producer failures a new producer
//! cures.

use super::producer::{Lost, Refusal};
use super::transaction::Core;
use super::{RENEWALS, STATE_TOPIC_GRACE};
use crate::process::{DLQ_ADVICE, DlqFailure, EVENTS_ADVICE, MonitorError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use std::time::{Duration, Instant};

impl Core {
    /// An output Kafka refused for good: the policy of [`DlqFailure`] for dead-letter copies,
    /// and a stop for events.
    pub(super) fn refused(&mut self, refusal: Refusal) {
        if refusal.topic == self.eos.state_topic {
            // A state partition created a moment after its stations partition (both grown by
            // `velib-topics create`) is refused until the next metadata refresh; a state topic
            // deleted under the monitor is refused for ever. Retried (abort, rewind) for a
            // while, then a stop that names the topic.
            let since = *self.state_refused_since.get_or_insert_with(|| {
                tracing::warn!(state_topic = %self.eos.state_topic, partition = refusal.partition,
                    error = %refusal.error, "Kafka refuses the monitor's state records; retrying \
                    for {STATE_TOPIC_GRACE:?} before stopping");
                Instant::now()
            });
            if since.elapsed() >= STATE_TOPIC_GRACE {
                let failure = self.state_topic_refused(refusal.partition, &refusal.error);
                self.failure.get_or_insert(failure);
            }
            return;
        }
        let dead_letter = self.config.dlq_topic.as_deref() == Some(refusal.topic.as_str());
        if dead_letter && self.config.on_dlq_failure == DlqFailure::Skip {
            self.skip_copies.insert((refusal.partition, refusal.offset));
            return;
        }
        let (what, advice) = if dead_letter {
            (
                format!("dead-letter copy (to {})", refusal.topic),
                DLQ_ADVICE,
            )
        } else {
            (
                format!("empty-station event (to {})", refusal.topic),
                EVENTS_ADVICE,
            )
        };
        tracing::error!(partition = refusal.partition, offset = refusal.offset, topic = %refusal.topic,
            error = %refusal.error, "output refused for good: stopping once the records before \
            it are committed");
        let error = MonitorError::Refused {
            what,
            source_topic: self.config.topic.clone(),
            partition: refusal.partition,
            offset: refusal.offset,
            error: refusal.error.to_string(),
            advice,
        };
        // The transaction that held the record is aborted (or about to be), and with it the
        // records before it: the rewind reads them again, they are committed, and the monitor
        // stops when it reaches this record (see `handle`).
        self.stop_before
            .get_or_insert(((refusal.partition, refusal.offset), error));
    }

    /// A fatal error of the producer. Fenced, the monitor stops with an error naming the cause
    /// and the setting to change: a newer producer with the same transactional id took over,
    /// which is also what a transaction the coordinator aborted at its timeout turns into (the
    /// epoch it bumped refuses this producer). Anything else (librdkafka reports the cause as
    /// the producer's fatal error: a coordinator that lost its broker answering
    /// INVALID_TXN_STATE, say) is cured by a new producer, which the loop makes.
    pub(super) fn fatal(&mut self, error: &KafkaError) {
        let (code, reason) = match self.producer.client().fatal_error() {
            Some((code, reason)) => (Some(code), reason),
            None => (error.rdkafka_error_code(), error.to_string()),
        };
        let fenced = matches!(
            code,
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::Fenced
            )
        );
        if !fenced {
            let if_final = MonitorError::Transaction(format!(
                "the transactional producer cannot go on ({reason}), nor could the {RENEWALS} \
                 made after it; nothing of their open transactions was printed or committed. \
                 Check the brokers, then restart the monitor"
            ));
            self.lose_producer(Lost {
                why: reason,
                if_final,
            });
            return;
        }
        let open_for = self.txn.as_ref().map(|t| t.opened.elapsed());
        let timed_out = open_for.is_some_and(|d| d >= self.eos.transaction_timeout);
        let instance = &self.eos.instance_id;
        let failure = MonitorError::Transaction(if timed_out {
            format!(
                "Kafka aborted this monitor's transaction: it stayed open {:.1} s, longer than \
                 --transaction-timeout ({:?}; the monitor was frozen or starved of CPU), and \
                 its producer was fenced ({reason}). Nothing of that transaction was printed \
                 or committed; restart the monitor (a supervisor does), or raise \
                 --transaction-timeout if such pauses are expected",
                open_for.unwrap_or_default().as_secs_f64(),
                self.eos.transaction_timeout
            )
        } else {
            format!(
                "this monitor was fenced by a newer monitor with the same --instance-id \
                 ({instance}) in its group: Kafka lets only the newest instance of an id \
                 commit ({reason}). Nothing of this monitor's open transaction was printed or \
                 committed, and the newer one goes on. Give each monitor its own \
                 --instance-id (VELIB_INSTANCE_ID), or leave it unset for HOST-N"
            )
        });
        self.failure.get_or_insert(failure);
        self.drop_txn();
    }

    /// `send_offsets_to_transaction` has not returned within `limit` (see [`bounded`](super::producer::bounded)): its
    /// thread keeps that producer, and a new one takes over.
    pub(super) fn offsets_stuck(&mut self, limit: Duration) {
        let why = format!(
            "sending the offsets to the transaction did not return within {limit:?} (librdkafka \
             waits for a group coordinator whose broker died: its issues #5456 and #5511)"
        );
        let if_final = MonitorError::Transaction(format!(
            "{why}, and the same happened to the {RENEWALS} producers made after it; nothing \
             of their open transactions was printed or committed. Check the brokers, then \
             restart the monitor"
        ));
        self.lose_producer(Lost { why, if_final });
    }

    /// The producer cannot go on but a new one may: the open transaction is forgotten (Kafka
    /// aborts it when the new producer registers the same transactional id, fencing the old
    /// one), and the loop makes the new producer, then rewinds and restores.
    pub(super) fn lose_producer(&mut self, lost: Lost) {
        self.producer_lost.get_or_insert(lost);
        self.drop_txn();
    }

    /// The error for a producer id the transaction coordinator no longer knows, refused
    /// commit after commit (see `PRODUCER_ID_REFUSALS`) by every producer made again.
    pub(super) fn producer_id_lost(&self, error: &KafkaError) -> MonitorError {
        MonitorError::Transaction(format!(
            "Kafka's transaction coordinator no longer knows this monitor's producer id for \
             --instance-id {} and refused its last commits ({error}), also after the \
             transactional id was registered again {RENEWALS} times: the broker lost its data, \
             or the id expired. Nothing of those transactions was printed or committed; check \
             the brokers, then restart the monitor",
            self.eos.instance_id
        ))
    }

    /// The error for a state record Kafka refused: the state topic is missing (deleted under
    /// the monitor), too small, or not writable.
    pub(super) fn state_topic_refused(&self, partition: i32, error: &KafkaError) -> MonitorError {
        MonitorError::Transaction(format!(
            "Kafka refused the monitor's state record for partition {partition} of the state \
             topic {} ({error}): the topic is missing, has fewer partitions than {}, or may \
             not be written (ACLs). Create or grow it with `velib-topics create` (or `cargo \
             xtask create-topics`), or name another with --state-topic",
            self.eos.state_topic, self.config.topic
        ))
    }
}
