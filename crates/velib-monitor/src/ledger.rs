//! Which consumed offsets are safe to commit.
//!
//! A record is done when it has been processed *and* every record it caused the monitor to
//! publish (an empty-station event, a dead-letter copy) has been acknowledged by Kafka.
//! Publishing is asynchronous, so records finish out of order; the offset stored for commit is
//! always the first record that is not done yet, so a crash never commits past an event that
//! was not delivered.
//!
//! An output Kafka refuses for good (see [`refused_for_good`]: a record over `message.max.bytes`,
//! a topic that does not exist) is not retried: it moves from *pending* to *refused*, where it
//! still holds its record's commit point but no longer keeps shutdown or a revoke waiting. The
//! monitor loop then decides (stop, or skip it with a counted loss); see
//! [`crate::at_least_once`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use velib_kafka::{DeliveryCallback, Landed, OutRecord};

/// A record the monitor publishes on behalf of an input record, kept until it is delivered so
/// that a failed delivery can be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOut {
    /// Destination topic.
    pub topic: String,
    /// Message key.
    pub key: Vec<u8>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Record headers.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl PendingOut {
    /// The headers as [`OutRecord`] takes them.
    pub fn header_refs(&self) -> Vec<(&'static str, &[u8])> {
        self.headers
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .collect()
    }

    /// The output as a record to queue, with `headers` from [`PendingOut::header_refs`].
    pub fn record<'a>(
        &'a self,
        headers: &'a [(&'a str, &'a [u8])],
        timestamp_ms: Option<i64>,
    ) -> OutRecord<'a> {
        OutRecord {
            topic: &self.topic,
            key: &self.key,
            payload: &self.payload,
            timestamp_ms,
            headers,
        }
    }
}

/// Whether Kafka refused a record for good: retrying the same record cannot succeed until a
/// setting changes (its size, the topic's existence, an ACL).
pub fn refused_for_good(error: &KafkaError) -> bool {
    let Some(code) = error.rdkafka_error_code() else {
        return false;
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidArgument
    )
}

/// An output Kafka refused for good, with the input record it was published for.
#[derive(Debug)]
pub struct Refused {
    /// The input record's partition.
    pub partition: i32,
    /// The input record's offset.
    pub offset: i64,
    /// The output.
    pub out: PendingOut,
    /// Kafka's refusal.
    pub error: KafkaError,
}

/// What the delivery reports received so far call for.
#[derive(Debug, Default)]
pub struct Completions {
    /// Outputs whose delivery failed in a way that may pass (a broker away, a timeout): send
    /// them again with the same tag.
    pub retries: Vec<(usize, PendingOut)>,
    /// Outputs refused for good, now held by [`PartitionProgress::refuse`].
    pub refused: Vec<Refused>,
}

/// Progress of one input partition.
#[derive(Debug, Default)]
pub struct PartitionProgress {
    pending: BTreeMap<i64, PendingOut>,
    refused: BTreeMap<i64, PendingOut>,
    processed_through: Option<i64>,
    stored: Option<i64>,
}

impl PartitionProgress {
    /// Records that `offset` was processed, with the output that must be delivered before it
    /// counts as done.
    pub fn processed(&mut self, offset: i64, out: Option<PendingOut>) {
        self.processed_through = Some(self.processed_through.map_or(offset, |p| p.max(offset)));
        if let Some(out) = out {
            self.pending.insert(offset, out);
        }
    }

    /// The output of `offset` was delivered.
    pub fn delivered(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The output of `offset`, to send again after a failed delivery.
    pub fn retry(&self, offset: i64) -> Option<&PendingOut> {
        self.pending.get(&offset)
    }

    /// The output of `offset` was refused for good: it is not waited for any more, but its
    /// record stays not done (the commit point cannot pass it) until [`skip`](Self::skip).
    /// Returns the output, if `offset` had one pending.
    pub fn refuse(&mut self, offset: i64) -> Option<PendingOut> {
        let out = self.pending.remove(&offset)?;
        self.refused.insert(offset, out.clone());
        Some(out)
    }

    /// Gives up the refused output of `offset`: its record counts as done without it.
    pub fn skip(&mut self, offset: i64) {
        self.refused.remove(&offset);
    }

    /// Whether some output is still on its way (not delivered, not refused).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The offset to commit: the first record not done (the next one to read when nothing is
    /// pending or refused).
    pub fn commit_point(&self) -> Option<i64> {
        let first_pending = self.pending.keys().next();
        let first_refused = self.refused.keys().next();
        match first_pending.into_iter().chain(first_refused).min() {
            Some(&first) => Some(first),
            None => self.processed_through.map(|p| p + 1),
        }
    }

    /// The commit point, if it moved since it was last taken.
    pub fn take_store(&mut self) -> Option<i64> {
        let point = self.commit_point()?;
        if self.stored.is_some_and(|s| s >= point) {
            return None;
        }
        self.stored = Some(point);
        Some(point)
    }
}

/// One delivery report: the tag of the output (its input partition and offset) and the outcome.
pub type Completion = (usize, Result<Landed, KafkaError>);

/// Packs an input partition and offset into a delivery tag.
pub fn tag(partition: i32, offset: i64) -> usize {
    ((partition as usize) << 48) | (offset as usize & ((1 << 48) - 1))
}

/// Unpacks a delivery tag.
pub fn untag(tag: usize) -> (i32, i64) {
    ((tag >> 48) as i32, (tag & ((1 << 48) - 1)) as i64)
}

/// A map keyed by partition number, looked up once per record: partition numbers are small
/// integers the broker assigns, so they need no collision-resistant hash.
pub type PartitionMap<V> = HashMap<i32, V, BuildHasherDefault<PartitionHasher>>;

/// The hasher of [`PartitionMap`]: one multiplication (Fibonacci hashing) of the partition
/// number, which spreads consecutive numbers over the table.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionHasher(u64);

impl Hasher for PartitionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Progress of every assigned partition, fed by the consumer loop and by delivery reports,
/// which arrive on the producer's thread.
#[derive(Debug)]
pub struct Ledger {
    partitions: Mutex<PartitionMap<PartitionProgress>>,
    completions: Mutex<Receiver<Completion>>,
    sender: Mutex<Sender<Completion>>,
    /// Woken on every delivery report, so the loop can store offsets while no record arrives.
    pub notify: Notify,
    revoke_timeout: Duration,
    /// Set once the monitor stops: a revoke then gives up what is undelivered at once.
    stopping: AtomicBool,
}

impl Ledger {
    /// A ledger that waits up to `revoke_timeout` for pending deliveries of partitions being
    /// revoked.
    pub fn new(revoke_timeout: Duration) -> Arc<Ledger> {
        let (sender, receiver) = channel();
        Arc::new(Ledger {
            partitions: Mutex::new(PartitionMap::default()),
            completions: Mutex::new(receiver),
            sender: Mutex::new(sender),
            notify: Notify::new(),
            revoke_timeout,
            stopping: AtomicBool::new(false),
        })
    }

    /// The callback to give the events producer.
    pub fn callback(self: &Arc<Self>) -> DeliveryCallback {
        let ledger = Arc::clone(self);
        let sender = self.sender.lock().unwrap().clone();
        let sender = Mutex::new(sender);
        Arc::new(move |tag, result| {
            let _ = sender.lock().unwrap().send((tag, result));
            ledger.notify.notify_one();
        })
    }

    /// Runs `f` on the progress of `partition`.
    pub fn with<R>(&self, partition: i32, f: impl FnOnce(&mut PartitionProgress) -> R) -> R {
        f(self
            .partitions
            .lock()
            .unwrap()
            .entry(partition)
            .or_default())
    }

    /// Applies every delivery report received so far: delivered outputs are done, outputs
    /// refused for good move to *refused*, and the others come back to be sent again.
    pub fn apply_completions(&self) -> Completions {
        let receiver = self.completions.lock().unwrap();
        let mut partitions = self.partitions.lock().unwrap();
        let mut completions = Completions::default();
        while let Ok((tag, result)) = receiver.try_recv() {
            let (partition, offset) = untag(tag);
            // A report for a partition no longer assigned is for state already given up.
            let Some(p) = partitions.get_mut(&partition) else {
                continue;
            };
            match result {
                Ok(_) => p.delivered(offset),
                Err(error) if refused_for_good(&error) => {
                    if let Some(out) = p.refuse(offset) {
                        completions.refused.push(Refused {
                            partition,
                            offset,
                            out,
                            error,
                        });
                    }
                }
                Err(_) => {
                    if let Some(out) = p.retry(offset) {
                        completions.retries.push((tag, out.clone()));
                    }
                }
            }
        }
        completions
    }

    /// The commit points that moved, per partition.
    pub fn take_stores(&self) -> Vec<(i32, i64)> {
        let mut partitions = self.partitions.lock().unwrap();
        partitions
            .iter_mut()
            .filter_map(|(&p, prog)| prog.take_store().map(|o| (p, o)))
            .collect()
    }

    /// Whether any output is still undelivered.
    pub fn has_pending(&self) -> bool {
        self.partitions
            .lock()
            .unwrap()
            .values()
            .any(PartitionProgress::has_pending)
    }

    /// Tells the ledger the monitor has already waited (its flush timeout) for what is still
    /// undelivered: the revoke that closing the consumer runs must not wait for it again.
    pub fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Called before `partitions` are revoked: waits (bounded by the revoke timeout, not at all
    /// after [`stop_waiting`](Self::stop_waiting)) for their outputs to be delivered, forgets
    /// them, and returns their final commit points.
    pub fn before_revoke(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let wait = if self.stopping.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            self.revoke_timeout
        };
        let deadline = Instant::now() + wait;
        loop {
            self.apply_completions();
            let pending = {
                let map = self.partitions.lock().unwrap();
                partitions
                    .iter()
                    .any(|p| map.get(p).is_some_and(PartitionProgress::has_pending))
            };
            if !pending {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    ?partitions,
                    "events for revoked partitions are still undelivered; their records will be \
                     read again by the next owner"
                );
                break;
            }
            // This runs inside the rebalance callback, on the consumer's poll: a short blocking
            // wait is what lets the revoke commit cover the events just published.
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut map = self.partitions.lock().unwrap();
        partitions
            .iter()
            .filter_map(|p| {
                map.remove(p)
                    .and_then(|prog| prog.commit_point().map(|o| (*p, o)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> PendingOut {
        PendingOut {
            topic: "t".into(),
            key: b"k".to_vec(),
            payload: b"v".to_vec(),
            headers: vec![],
        }
    }

    #[test]
    fn commit_point_waits_for_the_first_pending_output() {
        let mut p = PartitionProgress::default();
        assert_eq!(p.commit_point(), None);
        p.processed(10, None);
        assert_eq!(p.take_store(), Some(11));
        assert_eq!(p.take_store(), None, "unchanged");
        p.processed(11, Some(out()));
        p.processed(12, None);
        p.processed(13, Some(out()));
        assert_eq!(p.commit_point(), Some(11));
        p.delivered(13);
        assert_eq!(p.commit_point(), Some(11), "13 delivered, but 11 is not");
        p.delivered(11);
        assert_eq!(p.commit_point(), Some(14));
        assert_eq!(p.take_store(), Some(14));
    }

    #[test]
    fn a_refused_output_holds_the_commit_point_but_not_the_wait() {
        let ledger = Ledger::new(Duration::from_secs(3600));
        ledger.with(0, |p| {
            p.processed(7, Some(out()));
            p.processed(8, None);
        });
        ledger.callback()(
            tag(0, 7),
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        );
        let completions = ledger.apply_completions();
        assert!(completions.retries.is_empty());
        let [refused] = &completions.refused[..] else {
            panic!("{completions:?}")
        };
        assert_eq!((refused.partition, refused.offset), (0, 7));
        assert!(!ledger.has_pending(), "nothing to wait for");
        assert_eq!(ledger.take_stores(), vec![(0, 7)], "but nothing past it");
        ledger.with(0, |p| p.skip(7));
        assert_eq!(ledger.take_stores(), vec![(0, 9)]);
        // A revoke does not wait an hour for it either.
        ledger.with(1, |p| p.processed(3, Some(out())));
        ledger.with(1, |p| p.refuse(3));
        assert_eq!(ledger.before_revoke(&[1]), vec![(1, 3)]);
    }

    #[test]
    fn only_refusals_that_retrying_cannot_fix_are_for_good() {
        use RDKafkaErrorCode::*;
        for code in [MessageSizeTooLarge, UnknownTopicOrPartition, UnknownTopic] {
            assert!(
                refused_for_good(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            MessageTimedOut,
            AllBrokersDown,
            NotEnoughReplicas,
            QueueFull,
        ] {
            assert!(
                !refused_for_good(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn tags_round_trip() {
        for (p, o) in [(0, 0), (9, 123_456_789), (65_000, (1 << 47) + 5)] {
            assert_eq!(untag(tag(p, o)), (p, o));
        }
    }

    #[test]
    fn completions_apply_and_failures_come_back_for_retry() {
        let ledger = Ledger::new(Duration::from_millis(50));
        ledger.with(3, |p| {
            p.processed(5, Some(out()));
            p.processed(6, Some(out()));
        });
        let cb = ledger.callback();
        cb(
            tag(3, 5),
            Ok(Landed {
                partition: 0,
                offset: 0,
            }),
        );
        cb(
            tag(3, 6),
            Err(KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
            )),
        );
        let completions = ledger.apply_completions();
        assert_eq!(completions.retries, vec![(tag(3, 6), out())]);
        assert!(completions.refused.is_empty());
        assert_eq!(ledger.take_stores(), vec![(3, 6)]);
        // Revoking gives up after the timeout and hands back the commit point.
        assert_eq!(ledger.before_revoke(&[3]), vec![(3, 6)]);
        assert!(!ledger.has_pending());
    }
}
