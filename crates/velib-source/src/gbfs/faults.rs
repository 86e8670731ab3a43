//! Two faults of real `station_status` feeds, each warned about once per station and counted
//! in a metric on every poll:
//!
//! - a `station_id` listed twice in one snapshot: one copy is published, not both (two records
//!   of one station in one snapshot would print two changes for one poll);
//! - a station `station_information` does not list (yet): it is skipped, since velib has no
//!   name or place for it, until the next `station_information` lists it.
//!
//! A feed polled every second must not log the same fault every second: a station is warned
//! about when the fault starts, and again only once it has been seen without the fault and
//! then has it again.

use super::records::StatusRecord;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Counter of `station_status` records dropped because their `station_id` was already in the
/// snapshot, labelled by system (its contract name).
pub(crate) const DUPLICATE_RECORDS: &str = "velib_source_gbfs_duplicate_station_records_total";

/// Counter of `station_status` records skipped because `station_information` does not list the
/// station, labelled by system (its contract name).
pub(crate) const UNKNOWN_RECORDS: &str = "velib_source_gbfs_unknown_station_records_total";

/// The stations of one system currently warned about, per fault.
#[derive(Debug, Default)]
pub(super) struct Faults {
    duplicated: HashSet<String>,
    unknown: HashSet<String>,
}

impl Faults {
    /// Keeps one record per `station_id`, in document order. The copy with the later
    /// `last_reported` wins, as the station's more recent report; on a tie (or when neither
    /// has a time), the later in the document, the one a feed written in order wrote last.
    pub(super) fn dedupe(
        &mut self,
        records: Vec<StatusRecord>,
        system: &str,
        contract: &str,
    ) -> Vec<StatusRecord> {
        // Per station_id: the index of the copy kept so far, and how many copies there are.
        let mut seen: HashMap<&str, (usize, u64)> = HashMap::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match seen.entry(&record.station_id) {
                Entry::Vacant(e) => {
                    e.insert((i, 1));
                }
                Entry::Occupied(mut e) => {
                    let (kept, copies) = e.get_mut();
                    *copies += 1;
                    if record.last_reported >= records[*kept].last_reported {
                        *kept = i;
                    }
                }
            }
        }
        let dropped = records.len() - seen.len();
        if dropped == 0 {
            self.duplicated.clear();
            return records;
        }
        metrics::counter!(DUPLICATE_RECORDS, "system" => contract.to_owned())
            .increment(dropped as u64);
        let now: HashSet<String> = seen
            .iter()
            .filter(|(_, (_, copies))| *copies > 1)
            .map(|(id, _)| (*id).to_owned())
            .collect();
        for id in now.difference(&self.duplicated) {
            tracing::warn!(system, feed = "station_status", station_id = %id,
                "the feed lists this station_id more than once in one snapshot; publishing \
                 the copy with the latest last_reported (warned once until it is listed once)");
        }
        let kept: HashSet<usize> = seen.values().map(|(kept, _)| *kept).collect();
        self.duplicated = now;
        records
            .into_iter()
            .enumerate()
            .filter(|(i, _)| kept.contains(i))
            .map(|(_, r)| r)
            .collect()
    }

    /// Counts a record of a station `station_information` does not list, and warns when the
    /// station was not already warned about.
    pub(super) fn unknown(&mut self, station_id: &str, system: &str, contract: &str) {
        metrics::counter!(UNKNOWN_RECORDS, "system" => contract.to_owned()).increment(1);
        if self.unknown.insert(station_id.to_owned()) {
            tracing::warn!(
                system,
                feed = "station_status",
                station_id,
                "station_information does not list this station; its status is skipped until \
                 it does (warned once until it is listed)"
            );
        }
    }

    /// Notes that the station was read fine: a fault it has again is warned about again.
    pub(super) fn known(&mut self, station_id: &str) {
        if !self.unknown.is_empty() {
            self.unknown.remove(station_id);
        }
    }
}
