//! The consumers' contexts of the exactly-once monitor: the input consumer's rebalance
//! protocol (which drives the transaction [`Core`]), the state reader's quiet end-of-partition.

use super::transaction::Core;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use velib_kafka::ReportingContext;
use velib_kafka::connection::cluster_reachable;

/// The consumer's context: connection reporting and the rebalance protocol of this mode.
pub(super) struct EosContext {
    pub(super) reporting: ReportingContext,
    pub(super) core: Mutex<Option<Core>>,
}

impl EosContext {
    pub(super) fn core(&self) -> MutexGuard<'_, Option<Core>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for EosContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.reporting.stats(statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporting.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason);
    }
}

impl ConsumerContext for EosContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let mut guard = self.core();
        let Some(core) = guard.as_mut() else {
            return;
        };
        let revoked = partitions_of(tpl);
        if revoked.is_empty() {
            return;
        }
        if core.txn.is_some() {
            if consumer.assignment_lost() {
                core.abort("the group took the partitions away (the assignment was lost)");
            } else {
                // Hand the partitions over settled: their offsets, state and lines committed.
                core.commit(consumer);
            }
        }
        if let Some(((p, _), _)) = &core.stop_before
            && revoked.contains(p)
        {
            // The record will not come back here: its new owner meets the refusal itself.
            let (_, error) = core.stop_before.take().expect("checked above");
            core.failure.get_or_insert(error);
        }
        for p in &revoked {
            core.detectors.remove(p);
            core.to_restore.remove(p);
            core.first_seen.remove(p);
        }
        if let Some(progress) = &core.eos.progress {
            progress
                .partitions
                .store(core.detectors.len(), Ordering::Relaxed);
        }
        tracing::info!(partitions = ?revoked, "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.reporting.guard().confirm_working();
            cluster_reachable();
            let assigned = partitions_of(tpl);
            if assigned.is_empty() {
                return;
            }
            if let Some(core) = self.core().as_mut() {
                core.to_restore.extend(assigned.iter().copied());
            }
            tracing::info!(partitions = ?assigned, "partitions assigned");
        }
    }
}

/// The state reader's context: connection reporting, without the end-of-partition notices
/// that are the restore's own signal.
pub(super) struct RestoreContext(pub(super) ReportingContext);

impl ClientContext for RestoreContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is the restore's signal, and a state topic or partition that
        // is unknown is the restore's to judge (it names the topic); neither is a connection
        // problem to report as one.
        let restore_own = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::PartitionEOF
                        | RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                )
            );
        if !restore_own {
            self.0.error(error, reason);
        }
    }
}

impl ConsumerContext for RestoreContext {}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}
