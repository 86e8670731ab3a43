//! A consumer group seen from outside, as the broker describes it: who is a member, which
//! partitions each one owns, and how far the group has committed. Tests wait on these instead
//! of guessing how long a rebalance or a catch-up takes.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

/// One member of a group: its `client.id` (tests give each process its own) and the
/// partitions of each topic it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's `client.id`.
    pub client_id: String,
    /// Assigned partitions, by topic.
    pub partitions: BTreeMap<String, Vec<i32>>,
}

/// A group as the coordinator describes it (DescribeGroups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`.
    pub state: String,
    /// The members, in the coordinator's order.
    pub members: Vec<Member>,
}

impl GroupView {
    /// Whether the group is stable with exactly the members `client_ids`, each owning at least
    /// one partition of `topic`, and all of `0..partitions` owned once between them.
    pub fn settled(&self, client_ids: &[&str], topic: &str, partitions: i32) -> bool {
        let mut ids: Vec<&str> = self.members.iter().map(|m| m.client_id.as_str()).collect();
        ids.sort_unstable();
        let mut wanted = client_ids.to_vec();
        wanted.sort_unstable();
        let mut owned: Vec<i32> = Vec::new();
        for m in &self.members {
            let mine = m.partitions.get(topic).map(Vec::as_slice).unwrap_or(&[]);
            if mine.is_empty() {
                return false;
            }
            owned.extend(mine);
        }
        owned.sort_unstable();
        self.state == "Stable" && ids == wanted && owned == (0..partitions).collect::<Vec<_>>()
    }
}

/// Describes `group` through the broker at `bootstrap`; `None` while the coordinator cannot
/// answer (a broker restarting, a coordinator moving).
pub fn describe_group(bootstrap: &str, group: &str) -> Option<GroupView> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // A broker being restarted by the test is expected; keep its refusals out of the logs.
        .set("log_level", "0")
        .create()
        .ok()?;
    let list = client
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()?;
    let info = list.groups().iter().find(|g| g.name() == group)?;
    let members = info
        .members()
        .iter()
        .map(|m| Member {
            client_id: m.client_id().to_owned(),
            partitions: m
                .assignment()
                .map(velib_kafka::group::assigned_partitions)
                .unwrap_or_default(),
        })
        .collect();
    Some(GroupView {
        state: info.state().to_owned(),
        members,
    })
}

/// How many records of `topic` the group has not committed yet, summed over its partitions
/// (the high watermark minus the committed offset, the whole partition when nothing is
/// committed); `None` while the broker cannot answer.
///
/// For a topic written without transactions the high watermark is one past the last record, so
/// 0 means every record was committed. (Transaction markers would count as records here.)
pub fn uncommitted(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("log_level", "0")
        .create()
        .ok()?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().first()?.partitions() {
        tpl.add_partition(topic, p.id());
    }
    if tpl.count() == 0 {
        return None;
    }
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let mut behind = 0;
    for e in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, e.partition(), timeout)
            .ok()?;
        if low < 0 || high < 0 {
            return None;
        }
        behind += match e.offset() {
            Offset::Offset(o) => (high - o).max(0),
            _ => high - low,
        };
    }
    Some(behind)
}

/// How many records `topic` holds, summed over its partitions (high minus low watermark);
/// `None` while the broker cannot answer.
pub fn records_in(bootstrap: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .ok()?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let mut total = 0;
    for p in metadata.topics().first()?.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).ok()?;
        if low < 0 || high < 0 {
            return None;
        }
        total += high - low;
    }
    Some(total)
}
