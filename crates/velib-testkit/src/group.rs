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
            partitions: m.assignment().map(parse_assignment).unwrap_or_default(),
        })
        .collect();
    Some(GroupView {
        state: info.state().to_owned(),
        members,
    })
}

/// The partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment`: a version,
/// then an array of topics, each a string and an array of partitions; user data after that is
/// not read). An assignment that cannot be read gives what was read before the fault.
fn parse_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut r = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (r.get(..n)?, r.get(n..)?);
        r = tail;
        Some(head)
    };
    let _version = take(2);
    let Some(topics) = take(4).map(|b| i32::from_be_bytes(b.try_into().unwrap())) else {
        return out;
    };
    for _ in 0..topics.max(0) {
        let Some(len) = take(2).map(|b| i16::from_be_bytes(b.try_into().unwrap())) else {
            return out;
        };
        let Some(name) = take(len.max(0) as usize) else {
            return out;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(count) = take(4).map(|b| i32::from_be_bytes(b.try_into().unwrap())) else {
            return out;
        };
        let mut partitions = Vec::new();
        for _ in 0..count.max(0) {
            let Some(p) = take(4).map(|b| i32::from_be_bytes(b.try_into().unwrap())) else {
                break;
            };
            partitions.push(p);
        }
        partitions.sort_unstable();
        out.insert(name, partitions);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_consumer_protocol_assignment() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 3];
        b.extend(b"abc");
        b.extend([0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 2]);
        b.extend([0xff, 0xff, 0xff, 0xff]);
        let got = parse_assignment(&b);
        assert_eq!(got, BTreeMap::from([("abc".to_owned(), vec![2, 7])]));
        assert!(parse_assignment(&[0, 1]).is_empty());
    }
}
