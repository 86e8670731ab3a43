//! A member that owns nothing in a group that left partitions without an owner rejoins it.
//!
//! librdkafka 2.12.1 (`cooperative-sticky`) can leave a stable group with partitions nobody
//! owns after the stations topic was deleted and created again: a member that rebalanced while
//! the topic was missing stays in the group with an empty assignment, and nothing prints those
//! partitions' changes (seen in the soak for minutes). The coordinator's own description of the
//! group shows it; a member that owns nothing looks, and rejoins when it sees the same
//! partitions unowned twice in a row. The exactly-once loop looks between polls; the
//! at-least-once stream, polled asynchronously, has a [`WatchThread`] look for it.

use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use velib_kafka::group::unowned;

/// How often a member that owns nothing looks at its group (a DescribeGroups and a Metadata
/// request), and how long it owns nothing before the first look.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How long one look may wait for the coordinator or the metadata.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a member owning nothing has seen of its group.
#[derive(Debug)]
pub(crate) struct OwnerWatch {
    group: String,
    topic: String,
    /// Since when this member owns nothing.
    idle_since: Option<Instant>,
    last_look: Option<Instant>,
    /// The partitions the last look found without an owner.
    unowned: Vec<i32>,
}

impl OwnerWatch {
    pub(crate) fn new(group: &str, topic: &str) -> OwnerWatch {
        OwnerWatch {
            group: group.to_owned(),
            topic: topic.to_owned(),
            idle_since: None,
            last_look: None,
            unowned: Vec::new(),
        }
    }

    /// The topic watched, as subscribed.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Called as the loop turns, with whether this member owns no partition; `true` when it
    /// should rejoin its group (said in the log). Owning something costs a comparison.
    pub(crate) fn should_rejoin<C: ClientContext>(
        &mut self,
        owns_nothing: bool,
        client: &Client<C>,
    ) -> bool {
        self.step(Instant::now(), owns_nothing, |group, topic| {
            unowned(client, group, topic, LOOK_TIMEOUT)
                .map(|u| u.partitions)
                .unwrap_or_default()
        })
    }

    /// [`should_rejoin`](OwnerWatch::should_rejoin) at `now`, with `look` the partitions the
    /// group (first argument) leaves without an owner in the topic (second), called at most
    /// every [`LOOK_EVERY`], only while this member owns nothing.
    fn step(
        &mut self,
        now: Instant,
        owns_nothing: bool,
        look: impl FnOnce(&str, &str) -> Vec<i32>,
    ) -> bool {
        if !owns_nothing {
            self.idle_since = None;
            self.last_look = None;
            self.unowned.clear();
            return false;
        }
        let since = *self.idle_since.get_or_insert(now);
        let last = self.last_look.unwrap_or(since);
        if now.duration_since(last) < LOOK_EVERY {
            return false;
        }
        self.last_look = Some(now);
        let seen = look(&self.group, &self.topic);
        let again = !seen.is_empty() && seen == self.unowned;
        self.unowned = seen;
        if again {
            tracing::warn!(topic = %self.topic, partitions = ?self.unowned,
                idle_for = ?now.duration_since(since), "the group left partitions without an \
                owner while this monitor owns none (librdkafka can, after the topic was deleted \
                and created again): rejoining the group");
            metrics::counter!("velib_monitor_rejoins_total").increment(1);
            self.idle_since = None;
            self.last_look = None;
            self.unowned.clear();
        }
        again
    }
}

/// An [`OwnerWatch`] on a thread of its own, with a client of its own, for a consumer polled
/// asynchronously (the at-least-once stream): it looks while `owns_nothing` says so, and wakes
/// [`rejoin`](WatchThread::rejoin) when the consumer should rejoin its group. It stops when
/// dropped (within a second, or a look).
#[derive(Debug)]
pub(crate) struct WatchThread {
    pub(crate) rejoin: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

impl WatchThread {
    /// Starts watching `group`'s hold on `topic`, through a client made from `config` (which
    /// never joins the group: it only describes it).
    pub(crate) fn start(
        config: &ClientConfig,
        group: &str,
        topic: &str,
        owns_nothing: impl Fn() -> bool + Send + 'static,
    ) -> Result<WatchThread, KafkaError> {
        let client: BaseConsumer<Quiet> = config.create_with_context(Quiet)?;
        let rejoin = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut watch = OwnerWatch::new(group, topic);
        let (wake, stopped) = (Arc::clone(&rejoin), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("velib-group-watch".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    if watch.should_rejoin(owns_nothing(), client.client()) {
                        wake.notify_one();
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread to watch the group's partitions; going on without");
        }
        Ok(WatchThread { rejoin, stop })
    }
}

/// The watch client's context: what it meets (a broker down) the consumer beside it reports.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::trace!(fac, message, "group watch client");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::trace!(%error, reason, "group watch client");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

impl Drop for WatchThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a watch through `turns` of (seconds since start, owns nothing, what a look finds);
    /// the turns at which it looked and those at which it asked to rejoin.
    fn play(turns: &[(u64, bool, &[i32])]) -> (Vec<u64>, Vec<u64>) {
        let start = Instant::now();
        let mut watch = OwnerWatch::new("g", "t");
        let (mut looked, mut rejoined) = (Vec::new(), Vec::new());
        for &(at, idle, found) in turns {
            let now = start + Duration::from_secs(at);
            let rejoin = watch.step(now, idle, |group, topic| {
                assert_eq!((group, topic), ("g", "t"));
                looked.push(at);
                found.to_vec()
            });
            if rejoin {
                rejoined.push(at);
            }
        }
        (looked, rejoined)
    }

    #[test]
    fn a_member_that_owns_something_never_looks() {
        let turns: Vec<(u64, bool, &[i32])> = (0..60).map(|s| (s, false, &[1, 2][..])).collect();
        assert_eq!(play(&turns), (vec![], vec![]));
    }

    #[test]
    fn the_same_partitions_unowned_at_two_looks_in_a_row_make_it_rejoin() {
        let turns: Vec<(u64, bool, &[i32])> = (0..=12).map(|s| (s, true, &[3, 4][..])).collect();
        assert_eq!(play(&turns), (vec![5, 10], vec![10]));
    }

    #[test]
    fn a_group_that_owns_everything_or_moves_on_is_left_alone() {
        // Nothing unowned (more members than partitions), then a set that changes between looks
        // (a rebalance under way), then ownership again.
        let turns = [
            (5, true, &[][..]),
            (10, true, &[][..]),
            (15, true, &[1][..]),
            (20, true, &[2][..]),
            (21, false, &[2][..]),
            (25, true, &[2][..]),
            (30, true, &[2][..]),
        ];
        assert_eq!(play(&turns), (vec![10, 15, 20, 30], vec![]));
    }
}
