//! The state changelog read back: each assigned partition's stations restored before its first
//! record is judged, and the check that the state topic can hold them.

use super::contexts::{EosContext, RestoreContext};
use super::transaction::Core;
use super::{CALL_TIMEOUT, ExactlyOnceConfig, STATE_TOPIC_GRACE};
use crate::detect::Detector;
use crate::process::{MonitorConfig, MonitorError};
use crate::state::{STATS_HEADER, StoredState};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use velib_kafka::connection::is_transport_failure;

/// What a restore read from the changelog.
#[derive(Default)]
struct Restored {
    stations: usize,
    unreadable: usize,
    /// Records of other groups (they share the state topic) or of the earlier key format.
    foreign: usize,
}

impl Core {
    /// Restores the waiting partitions; on failure, the error names the likely cause (a
    /// missing or too small state topic) and the fix.
    pub(super) fn restore_or_say_why(
        &mut self,
        consumer: &BaseConsumer<EosContext>,
        restorer: &BaseConsumer<RestoreContext>,
    ) -> Result<(), MonitorError> {
        self.restore(consumer, restorer).map_err(|e| {
            match check_state_topic(consumer, &self.config, &self.eos) {
                Err(missing) => missing,
                Ok(()) => MonitorError::Transaction(format!(
                    "could not restore the state of the assigned partitions from the state \
                     topic {} ({e}); check that the cluster is reachable and that the monitor \
                     may read that topic",
                    self.eos.state_topic
                )),
            }
        })
    }

    /// Restores the state of the partitions waiting for it, from the changelog.
    fn restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        restorer: &BaseConsumer<RestoreContext>,
    ) -> Result<(), KafkaError> {
        let partitions: Vec<i32> = std::mem::take(&mut self.to_restore).into_iter().collect();
        let started = Instant::now();
        // First the committed offsets of these partitions: a read_committed consumer's offset
        // fetch waits until no transaction committing offsets for them is pending, so the
        // previous owner's last transaction (its state included) is settled before the state
        // is read.
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&self.config.topic, p);
        }
        let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT)?;
        let lost: Vec<i32> = committed
            .elements()
            .iter()
            .filter(|e| {
                !matches!(e.offset(), Offset::Offset(_))
                    && self.committed_once.contains(&e.partition())
            })
            .map(|e| e.partition())
            .collect();

        let mut detectors: HashMap<i32, Detector> = partitions
            .iter()
            .map(|&p| (p, crate::process::new_detector(&self.config)))
            .collect();
        let restored = self.read_changelog(restorer, &partitions, &mut detectors)?;
        restorer.unassign()?;
        if restored.unreadable > 0 {
            tracing::warn!(
                unreadable = restored.unreadable,
                state_topic = %self.eos.state_topic,
                "unreadable state records ignored; those stations start unknown"
            );
        }
        let took = started.elapsed();
        tracing::info!(partitions = ?partitions, stations = restored.stations,
            other_groups_records = restored.foreign, ?took, "state restored");
        self.detectors.extend(detectors);
        if !lost.is_empty() {
            self.read_from_beginning(consumer, lost)?;
        }
        if let Some(progress) = &self.eos.progress {
            *progress.last_restore.lock().unwrap() = Some((restored.stations, took));
            progress
                .partitions
                .store(self.detectors.len(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Partitions whose committed offsets are gone although this monitor committed some: the
    /// broker lost its data, or the topic was deleted and created again. Every record now in
    /// them came after what was committed, so they are read from their beginning; left to
    /// `auto.offset.reset` (`latest`), the records written before the group found its way
    /// back would be skipped.
    fn read_from_beginning<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        lost: Vec<i32>,
    ) -> Result<(), KafkaError> {
        tracing::warn!(partitions = ?lost, topic = %self.config.topic,
            "the group's committed offsets of these partitions are gone (the broker lost its \
             data, or the topic was created again): reading them from their beginning");
        let mut seek = TopicPartitionList::new();
        for &p in &lost {
            seek.add_partition_offset(&self.config.topic, p, Offset::Beginning)?;
            self.first_seen.remove(&p);
        }
        for e in consumer.seek_partitions(seek, CALL_TIMEOUT)?.elements() {
            if let Err(err) = e.error() {
                tracing::warn!(partition = e.partition(), error = %err, "seek failed");
            }
        }
        self.sought = lost;
        Ok(())
    }

    /// Reads the changelog partitions of `partitions` to their end (read_committed), into
    /// `detectors`.
    fn read_changelog(
        &self,
        restorer: &BaseConsumer<RestoreContext>,
        partitions: &[i32],
        detectors: &mut HashMap<i32, Detector>,
    ) -> Result<Restored, KafkaError> {
        let mut assign = TopicPartitionList::new();
        for &p in partitions {
            assign.add_partition_offset(&self.eos.state_topic, p, Offset::Beginning)?;
        }
        restorer.assign(&assign)?;
        let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut restored = Restored::default();
        let mut unknown_since: Option<Instant> = None;
        let deadline = Instant::now() + CALL_TIMEOUT + self.eos.transaction_timeout;
        let mut next_check = Instant::now() + STATE_TOPIC_GRACE;
        while !open.is_empty() {
            // librdkafka reports a state topic that is gone to the client's error callback,
            // not to this poll, and keeps waiting for it: look it up now and then, so that a
            // deleted topic is named within the grace rather than after the whole deadline.
            if Instant::now() >= next_check {
                next_check = Instant::now() + STATE_TOPIC_GRACE;
                if self.state_partitions_known(restorer, partitions) == Some(false) {
                    return Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::UnknownTopicOrPartition,
                    ));
                }
            }
            match restorer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => self.apply(&m, detectors, &mut restored),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) if is_transport_failure(&e) => {}
                // A state partition created a moment after its stations partition
                // (`velib-topics create` growing both): librdkafka finds it at its next
                // metadata refresh. But a state topic that stays unknown is missing: that is
                // said soon (the caller names the topic).
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownPartition
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                        )
                    ) && unknown_since.get_or_insert_with(Instant::now).elapsed()
                        < STATE_TOPIC_GRACE => {}
                Some(Err(e)) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
        }
        Ok(restored)
    }

    /// Whether the cluster knows the state topic with a partition for each of `partitions`;
    /// `None` if it did not answer. (A partition that does not exist never reaches its end,
    /// and librdkafka reports nothing to the poll: without this look, the restore would wait
    /// out its whole deadline.)
    fn state_partitions_known(
        &self,
        restorer: &BaseConsumer<RestoreContext>,
        partitions: &[i32],
    ) -> Option<bool> {
        let needed = partitions.iter().max().map_or(0, |&p| p as usize + 1);
        restorer
            .fetch_metadata(Some(&self.eos.state_topic), CALL_TIMEOUT)
            .ok()
            .and_then(|m| {
                m.topics()
                    .first()
                    .map(|t| t.error().is_none() && t.partitions().len() >= needed)
            })
    }

    /// One changelog record into its partition's detector, if it is this group's.
    fn apply<M: Message>(
        &self,
        m: &M,
        detectors: &mut HashMap<i32, Detector>,
        restored: &mut Restored,
    ) {
        let Some(detector) = detectors.get_mut(&m.partition()) else {
            return;
        };
        // Another group's state (groups share the state topic), or a record of the earlier
        // format keyed by station alone: never this group's.
        if !self.keys.owns(m.key()) {
            restored.foreign += 1;
            return;
        }
        let stats_header = m.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == STATS_HEADER)
                .and_then(|h| h.value)
        });
        match m.payload().map(|p| StoredState::parse(p, stats_header)) {
            Some(Some(r)) if r.field == self.config.field => {
                detector.restore(&r.contract, &r.number, r.state);
                restored.stations += 1;
                if let (Some(stats), Some(tracker)) = (&r.stats, detector.stats_mut()) {
                    let key = velib_model::StationKey::new(&r.contract, &r.number.to_string());
                    // An unreadable statistics state: the station's statistics start afresh
                    // (its detection state is restored all the same).
                    if let Err(e) = stats.restore_into(tracker, key.as_str()) {
                        let why = format!("{e}; the station's statistics start afresh");
                        self.unreadable(m, restored, &why);
                    }
                }
            }
            // Another field's state (a monitor run with another --field) or a tombstone: the
            // station starts unknown.
            Some(Some(_)) | None => {}
            Some(None) => self.unreadable(
                m,
                restored,
                &"not a station's state; the station starts unknown",
            ),
        }
    }

    /// Counts an unreadable changelog record and names it in the log (the first few of a
    /// restore: a topic full of them says so once, in the summary).
    fn unreadable<M: Message>(
        &self,
        m: &M,
        restored: &mut Restored,
        error: &dyn std::fmt::Display,
    ) {
        restored.unreadable += 1;
        if restored.unreadable <= NAMED_UNREADABLE {
            tracing::warn!(
                "{}",
                unreadable_record(
                    &self.eos.state_topic,
                    m.partition(),
                    m.offset(),
                    m.key(),
                    error
                )
            );
        }
    }
}

/// How many unreadable changelog records a restore names one by one.
const NAMED_UNREADABLE: usize = 10;

/// What the log says of an unreadable changelog record: where it is and its key (escaped: a
/// station key holds feed text), and why.
pub(super) fn unreadable_record(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    error: &dyn std::fmt::Display,
) -> String {
    let key = key.map_or_else(
        || "no key".to_owned(),
        |k| format!("key {:?}", String::from_utf8_lossy(k)),
    );
    format!(
        "state record {topic} partition {partition} offset {offset} ({key}) unreadable: {error}"
    )
}

/// The state topic must exist with a partition for every partition of the stations topic, and
/// the events and dead-letter topics must exist. A topic created a moment ago may not be in
/// the broker's metadata yet: what is missing is looked up again for [`STATE_TOPIC_GRACE`]
/// before it is reported.
pub(super) fn check_state_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &MonitorConfig,
    eos: &ExactlyOnceConfig,
) -> Result<(), MonitorError> {
    let deadline = Instant::now() + STATE_TOPIC_GRACE;
    loop {
        match check_topics_once(consumer, config, eos) {
            Err(MonitorError::Transaction(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

fn check_topics_once<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &MonitorConfig,
    eos: &ExactlyOnceConfig,
) -> Result<(), MonitorError> {
    let count = |topic: &str| -> Result<usize, MonitorError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|source| MonitorError::Kafka {
                what: "read the topics' metadata",
                source,
            })?;
        Ok(metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    };
    let (stations, state) = (count(&config.topic)?, count(&eos.state_topic)?);
    if state == 0 && stations > 0 {
        return Err(MonitorError::Transaction(format!(
            "the state topic {} does not exist: create it with `velib-topics create` (or `cargo \
             xtask create-topics`), or name another with --state-topic",
            eos.state_topic
        )));
    }
    if state < stations {
        return Err(MonitorError::Transaction(format!(
            "the state topic {} has {state} partitions, fewer than the {stations} of {}: create \
             or grow it with `velib-topics create` (or `cargo xtask create-topics`), or name \
             another with --state-topic",
            eos.state_topic, config.topic
        )));
    }
    // The outputs too: missing, the first empty station (or unreadable record) would stop the
    // monitor mid-run; its transactional producer creates no topic (see EOS_PRODUCER_DEFAULTS).
    for (topic, what, flag) in [
        (&config.events_topic, "events", "--no-events"),
        (&config.dlq_topic, "dead-letter", "--no-dlq"),
    ] {
        if let Some(topic) = topic
            && stations > 0
            && count(topic)? == 0
        {
            return Err(MonitorError::Transaction(format!(
                "the {what} topic {topic} does not exist: create it with `velib-topics create` \
                 (or `cargo xtask create-topics`), name another, or run with {flag}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_state_record_is_named() {
        let mut tracker = velib_stats::Tracker::default();
        let error = crate::state::StoredStats::Binary(vec![1, 0, 7])
            .restore_into(&mut tracker, "lyon:7")
            .unwrap_err();
        let line = unreadable_record(
            "velib-monitor-state",
            3,
            41,
            Some(b"[\"g\",\"lyon:7\x1b\"]"),
            &error,
        );
        assert!(
            line.starts_with("state record velib-monitor-state partition 3 offset 41 (key "),
            "{line}"
        );
        assert!(line.contains("ends early"), "{line}");
        assert!(!line.contains('\u{1b}'), "the key is escaped: {line}");
        assert!(tracker.is_empty(), "nothing restored from it");
        let line = unreadable_record("s", 0, 1, None, &"not a station's state");
        assert!(line.contains("(no key)"), "{line}");
    }
}
