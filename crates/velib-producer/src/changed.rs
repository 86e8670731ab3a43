//! `--changed-only`: which stations of a snapshot differ from the previous one.

use std::collections::HashMap;
use velib_model::{Station, StationKey, Status};

/// What makes a station "changed": its counts (e-bikes and out of service included), its
/// status, whether it takes returns, or its `last_update`. An e-bike taken and a classic bike
/// returned leave the v1 counts as they were: the per-kind counts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    bike_stands: u32,
    available_bike_stands: u32,
    available_bikes: u32,
    ebikes: Option<u32>,
    classic_bikes: Option<u32>,
    bikes_out_of_service: Option<u32>,
    docks_out_of_service: Option<u32>,
    is_returning: Option<bool>,
    status: Status,
    last_update: Option<i64>,
}

impl From<&Station> for Fingerprint {
    fn from(s: &Station) -> Self {
        Fingerprint {
            bike_stands: s.bike_stands,
            available_bike_stands: s.available_bike_stands,
            available_bikes: s.available_bikes,
            ebikes: s.ebikes(),
            classic_bikes: s.classic_bikes(),
            bikes_out_of_service: s.bikes_out_of_service,
            docks_out_of_service: s.docks_out_of_service,
            is_returning: s.is_returning,
            status: s.status,
            last_update: s.last_update,
        }
    }
}

/// Remembers the last published state of every station and tells which stations of a new
/// snapshot differ from it. A station seen for the first time counts as changed, so the first
/// snapshot is published whole.
#[derive(Debug, Default)]
pub struct ChangeFilter {
    last: HashMap<StationKey, Fingerprint>,
}

impl ChangeFilter {
    /// An empty filter: everything is new.
    pub fn new() -> ChangeFilter {
        ChangeFilter::default()
    }

    /// Whether `station` differs from the last state recorded for it, recording its state.
    pub fn changed(&mut self, station: &Station) -> bool {
        let fp = Fingerprint::from(station);
        match self.last.insert(station.key(), fp) {
            Some(previous) => previous != fp,
            None => true,
        }
    }

    /// Number of stations remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no station has been seen yet.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{Position, StationId};

    fn station(contract: &str, n: u64, bikes: u32, ts: i64) -> Station {
        Station {
            number: StationId::Number(n),
            contract_name: contract.into(),
            name: format!("{n}"),
            address: "somewhere".into(),
            position: Position { lat: 1.0, lng: 2.0 },
            banking: false,
            bonus: false,
            bike_stands: 20,
            available_bike_stands: 20 - bikes,
            available_bikes: bikes,
            status: Status::Open,
            last_update: Some(ts),
            snapshot_at: None,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        }
    }

    #[test]
    fn first_sighting_then_only_changes() {
        let mut f = ChangeFilter::new();
        assert!(f.changed(&station("Lyon", 1, 5, 100)));
        assert!(!f.changed(&station("Lyon", 1, 5, 100)));
        // Same number in another contract is another station.
        assert!(f.changed(&station("Toulouse", 1, 5, 100)));
        // Counts, status and last_update each count as a change.
        assert!(f.changed(&station("Lyon", 1, 4, 100)));
        assert!(f.changed(&station("Lyon", 1, 4, 101)));
        let mut closed = station("Lyon", 1, 4, 101);
        closed.status = Status::Closed;
        assert!(f.changed(&closed));
        assert!(!f.changed(&closed));
        assert_eq!(f.len(), 2);
        // A change of the mix alone is a change; so is a dock going out of service.
        let typed = |ebikes| Station {
            bikes_by_type: Some(vec![velib_model::VehicleCount {
                vehicle_type_id: "electrical".into(),
                kind: velib_model::VehicleKind::Electric,
                count: ebikes,
            }]),
            ..closed.clone()
        };
        assert!(f.changed(&typed(1)));
        assert!(!f.changed(&typed(1)));
        assert!(f.changed(&typed(2)));
        let broken_dock = Station {
            docks_out_of_service: Some(1),
            ..typed(2)
        };
        assert!(f.changed(&broken_dock));
    }
}
