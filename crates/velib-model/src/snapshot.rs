use crate::Station;
use serde::{Deserialize, Serialize};

/// Every station of one poll, and when the poll was taken.
///
/// This is also one line of a recording (`velib-producer --record FILE`, NDJSON): a replay reads
/// the same type back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the snapshot was taken, in epoch milliseconds.
    pub taken_at: i64,
    /// The stations, in the order the source returned them.
    pub stations: Vec<Station>,
}
