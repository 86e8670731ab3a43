//! A consumer group as its coordinator describes it (DescribeGroups): which partitions its
//! members own. The monitors use it to find partitions a stable group left without an owner.

use rdkafka::client::{Client, ClientContext};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Partitions of a topic that no member of a stable group owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    /// The group's members.
    pub members: usize,
    /// The topic's partitions no member owns, in order.
    pub partitions: Vec<i32>,
}

/// The partitions of `topic` (as its metadata lists them) that no member of `group` owns while
/// the coordinator calls the group `Stable`; `None` when the group is rebalancing, or when the
/// coordinator or the topic's metadata cannot be read within `timeout` (each).
pub fn unowned<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Option<Unowned> {
    let metadata = client.fetch_metadata(Some(topic), timeout).ok()?;
    let listed = metadata.topics().first().filter(|t| t.error().is_none())?;
    let groups = client.fetch_group_list(Some(group), timeout).ok()?;
    let info = groups.groups().iter().find(|g| g.name() == group)?;
    if info.state() != "Stable" {
        return None;
    }
    let owned: BTreeSet<i32> = info
        .members()
        .iter()
        .filter_map(|m| m.assignment())
        .filter_map(|a| assigned_partitions(a).remove(topic))
        .flatten()
        .collect();
    Some(Unowned {
        members: info.members().len(),
        partitions: listed
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|p| !owned.contains(p))
            .collect(),
    })
}

/// The partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment`: a version,
/// then an array of topics, each a string and an array of partitions; user data after that is
/// not read). An assignment that cannot be read gives what was read before the fault.
pub fn assigned_partitions(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_consumer_protocol_assignment() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 3];
        b.extend(b"abc");
        b.extend([0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 2]);
        b.extend([0xff, 0xff, 0xff, 0xff]);
        let got = assigned_partitions(&b);
        assert_eq!(got, BTreeMap::from([("abc".to_owned(), vec![2, 7])]));
        assert!(assigned_partitions(&[0, 1]).is_empty());
    }
}
