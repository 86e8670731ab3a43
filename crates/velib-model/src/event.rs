use crate::text::Printable;
use crate::{Position, Station, StationId, StationKey, StationView, Status};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which count of a station the monitor follows.
///
/// The first two are v1 fields that every record has. The others come from richer feeds
/// (GBFS): a record whose source does not give the count has none ([`TrackedField::of`] is
/// `None`), and the monitor then does not follow that station for this field rather than take
/// the count for 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackedField {
    /// Free stands (`available_bike_stands`), as in the tutorial.
    #[default]
    AvailableBikeStands,
    /// Bikes to rent (`available_bikes`).
    AvailableBikes,
    /// E-bikes to rent ([`Station::ebikes`]).
    AvailableEbikes,
    /// Classic bikes to rent ([`Station::classic_bikes`]).
    AvailableClassicBikes,
    /// Docks out of service ([`Station::docks_out_of_service`]).
    DocksOutOfService,
}

impl TrackedField {
    /// The tracked count of `station`; `None` when its record does not give it.
    pub fn of(self, station: &Station) -> Option<u32> {
        match self {
            TrackedField::AvailableBikeStands => Some(station.available_bike_stands),
            TrackedField::AvailableBikes => Some(station.available_bikes),
            TrackedField::AvailableEbikes => station.ebikes(),
            TrackedField::AvailableClassicBikes => station.classic_bikes(),
            TrackedField::DocksOutOfService => station.docks_out_of_service,
        }
    }

    /// The tracked count of a borrowed `station`; `None` when its record does not give it.
    pub fn of_view(self, station: &StationView<'_>) -> Option<u32> {
        match self {
            TrackedField::AvailableBikeStands => Some(station.available_bike_stands),
            TrackedField::AvailableBikes => Some(station.available_bikes),
            TrackedField::AvailableEbikes => station.ebikes(),
            TrackedField::AvailableClassicBikes => station.classic_bikes(),
            TrackedField::DocksOutOfService => station.docks_out_of_service,
        }
    }
}

/// A change of a station's tracked count between two records: the monitor's output.
///
/// Its [`Display`](fmt::Display) is the tutorial's line, `+1 ADDRESS (Contract)`:
///
/// ```
/// # use velib_model::*;
/// let change = StationChange {
///     key: "Marseille:9087".parse().unwrap(),
///     contract: "Marseille".into(),
///     address: "MAZARGUES - ROND POINT DE MAZARGUES (OBELISQUE)".into(),
///     name: "9087-MAZARGUES".into(),
///     field: TrackedField::AvailableBikeStands,
///     previous: 19,
///     current: 20,
///     last_update: Some(1493734764000),
/// };
/// assert_eq!(change.to_string(), "+1 MAZARGUES - ROND POINT DE MAZARGUES (OBELISQUE) (Marseille)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationChange {
    /// The station.
    pub key: StationKey,
    /// Its contract, as the station record spells it.
    pub contract: String,
    /// Its street address.
    pub address: String,
    /// Its display name.
    pub name: String,
    /// Which count changed.
    pub field: TrackedField,
    /// The count before.
    pub previous: u32,
    /// The count now.
    pub current: u32,
    /// The `last_update` of the record that carried the new count.
    pub last_update: Option<i64>,
}

impl StationChange {
    /// `current - previous`.
    pub fn delta(&self) -> i64 {
        i64::from(self.current) - i64::from(self.previous)
    }
}

impl fmt::Display for StationChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ChangeLine {
            previous: self.previous,
            current: self.current,
            address: &self.address,
            contract: &self.contract,
        }
        .fmt(f)
    }
}

/// The tutorial's line for a change, `+1 ADDRESS (Contract)`, from borrowed parts: what a
/// [`StationChange`] displays, without building one.
///
/// ```
/// # use velib_model::ChangeLine;
/// let line = ChangeLine { previous: 3, current: 1, address: "RUE X", contract: "Lyon" };
/// assert_eq!(line.to_string(), "-2 RUE X (Lyon)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeLine<'a> {
    /// The count before.
    pub previous: u32,
    /// The count now.
    pub current: u32,
    /// The station's address.
    pub address: &'a str,
    /// The station's contract.
    pub contract: &'a str,
}

impl fmt::Display for ChangeLine<'_> {
    /// The address and contract come from the feed: control characters in them are
    /// neutralised ([`Printable`]), so a change is always one line and carries no terminal
    /// escape sequence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delta = i64::from(self.current) - i64::from(self.previous);
        write!(
            f,
            "{delta:+} {} ({})",
            Printable(self.address),
            Printable(self.contract)
        )
    }
}

/// Which way a station crossed the empty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptinessKind {
    /// An open station's available bikes reached 0.
    BecameEmpty,
    /// Bikes are back at a station that was empty (or it is no longer open-and-empty).
    NoLongerEmpty,
}

/// The record the monitor publishes to `velib-empty-stations`, keyed by [`StationKey`].
///
/// It carries everything an e-mail needs (name, address, contract, position, counts, time), so
/// the alerts consumer never has to look a station up. The JSON schema is versioned by
/// `version`; fields are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmptyStationEvent {
    /// Schema version, currently 1.
    pub version: u32,
    /// Which transition this is.
    pub kind: EmptinessKind,
    /// The station.
    pub key: StationKey,
    /// Its contract.
    pub contract: String,
    /// Its id within the contract.
    pub number: StationId,
    /// Its display name.
    pub name: String,
    /// Its street address.
    pub address: String,
    /// Its position.
    pub position: Position,
    /// Its status in the record that caused the event.
    pub status: Status,
    /// Total stands.
    pub bike_stands: u32,
    /// Bikes to rent.
    pub available_bikes: u32,
    /// Free stands.
    pub available_bike_stands: u32,
    /// The station's own `last_update` (epoch ms), when it has one.
    pub last_update: Option<i64>,
    /// The station record's [`Station::snapshot_at`] (epoch ms), when it has one. Absent from
    /// events written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<i64>,
    /// When the record was observed: the Kafka timestamp of the station record (epoch ms).
    pub observed_at: i64,
}

impl EmptyStationEvent {
    /// The current schema version.
    pub const VERSION: u32 = 1;

    /// The event for `station` crossing the empty line in direction `kind`.
    pub fn new(kind: EmptinessKind, station: &Station, observed_at: i64) -> EmptyStationEvent {
        EmptyStationEvent {
            version: Self::VERSION,
            kind,
            key: station.key(),
            contract: station.contract_name.clone(),
            number: station.number.clone(),
            name: station.name.clone(),
            address: station.address.clone(),
            position: station.position,
            status: station.status,
            bike_stands: station.bike_stands,
            available_bikes: station.available_bikes,
            available_bike_stands: station.available_bike_stands,
            last_update: station.last_update,
            snapshot_at: station.snapshot_at,
            observed_at,
        }
    }

    /// When the transition happened: the snapshot that showed it
    /// ([`Station::snapshot_at`]), else the station's `last_update`, else the observation time.
    ///
    /// The snapshot comes first because a station's `last_update` can stay the same through
    /// several transitions (a heartbeat, in JCDecaux's GBFS feeds), which would make two
    /// different events look like one.
    pub fn event_time(&self) -> i64 {
        self.snapshot_at
            .or(self.last_update)
            .unwrap_or(self.observed_at)
    }

    /// What makes two events the same event, however many times it was delivered: station,
    /// event time and kind.
    pub fn identity(&self) -> (StationKey, i64, EmptinessKind) {
        (self.key.clone(), self.event_time(), self.kind)
    }

    /// Reads an event from its JSON.
    ///
    /// # Errors
    ///
    /// The serde error, with the path of the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<EmptyStationEvent, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("field `{path}`: {}", e.into_inner())
            }
        })
    }

    /// The event's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an EmptyStationEvent always serialises")
    }
}
