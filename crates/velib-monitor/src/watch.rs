//! A member that owns nothing in a group that left partitions without an owner rejoins it.
//!
//! librdkafka 2.12.1 (`cooperative-sticky`) can leave a stable group with partitions nobody
//! owns after the stations topic was deleted and created again: a member that rebalanced while
//! the topic was missing stays in the group with an empty assignment, and nothing prints those
//! partitions' changes (seen in the soak for minutes). The coordinator's own description of the
//! group shows it; a member that owns nothing looks, and rejoins when it sees the same
//! partitions unowned twice in a row.

use rdkafka::client::{Client, ClientContext};
use std::time::{Duration, Instant};
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
        if !owns_nothing {
            self.idle_since = None;
            self.unowned.clear();
            return false;
        }
        let now = Instant::now();
        let since = *self.idle_since.get_or_insert(now);
        let last = self.last_look.unwrap_or(since);
        if now.duration_since(last) < LOOK_EVERY {
            return false;
        }
        self.last_look = Some(now);
        let seen = unowned(client, &self.group, &self.topic, LOOK_TIMEOUT)
            .map(|u| u.partitions)
            .unwrap_or_default();
        let again = !seen.is_empty() && seen == self.unowned;
        self.unowned = seen;
        if again {
            tracing::warn!(topic = %self.topic, partitions = ?self.unowned,
                idle_for = ?since.elapsed(), "the group left partitions without an owner while \
                this monitor owns none (librdkafka can, after the topic was deleted and created \
                again): rejoining the group");
            metrics::counter!("velib_monitor_rejoins_total").increment(1);
            self.idle_since = None;
            self.unowned.clear();
        }
        again
    }
}
