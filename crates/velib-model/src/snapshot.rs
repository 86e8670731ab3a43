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

impl Snapshot {
    /// Gives every station without a [`Station::snapshot_at`] this snapshot's `taken_at`: a
    /// poll is itself a newer snapshot. Sources whose feeds say when their data was made (GBFS
    /// `last_updated`) set `snapshot_at` themselves, and this keeps it.
    ///
    /// ```
    /// use velib_model::{Snapshot, Station};
    ///
    /// # let station = Station::from_json(br#"{"number": 1, "contract_name": "lyon",
    /// #     "position": {"lat": 45.7, "lng": 4.8}, "status": "OPEN", "bike_stands": 2,
    /// #     "available_bike_stands": 1, "available_bikes": 1}"#)?;
    /// let snapshot = Snapshot { taken_at: 1_000, stations: vec![station] }.stamped();
    /// assert_eq!(snapshot.stations[0].snapshot_at, Some(1_000));
    /// # Ok::<(), velib_model::StationError>(())
    /// ```
    pub fn stamped(mut self) -> Snapshot {
        for station in &mut self.stations {
            station.snapshot_at.get_or_insert(self.taken_at);
        }
        self
    }
}
