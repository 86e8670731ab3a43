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

/// What an open station can run out of: the lines the monitor's events report crossings of.
///
/// ```
/// # use velib_model::{EmptinessKind, Shortage};
/// assert_eq!("ebikes".parse::<Shortage>(), Ok(Shortage::Ebikes));
/// assert_eq!(Shortage::Ebikes.began(), EmptinessKind::EbikesGone);
/// assert_eq!(EmptinessKind::EbikesBack.shortage(), Shortage::Ebikes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortage {
    /// No bike to rent (`available_bikes` 0).
    Bikes,
    /// No e-bike to rent, in a record that counts bikes by type ([`Station::ebikes`] 0).
    Ebikes,
    /// No bike taken back ([`Station::is_returning`] false).
    Returns,
}

impl Shortage {
    /// Every shortage, in the order an event lists the transitions of one record.
    pub const ALL: [Shortage; 3] = [Shortage::Bikes, Shortage::Ebikes, Shortage::Returns];

    /// `bikes`, `ebikes` or `returns`: the name flags and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Shortage::Bikes => "bikes",
            Shortage::Ebikes => "ebikes",
            Shortage::Returns => "returns",
        }
    }

    /// The event kind of an open station starting to lack this.
    pub fn began(self) -> EmptinessKind {
        match self {
            Shortage::Bikes => EmptinessKind::BecameEmpty,
            Shortage::Ebikes => EmptinessKind::EbikesGone,
            Shortage::Returns => EmptinessKind::ReturnsStopped,
        }
    }

    /// The event kind of the shortage ending (or the station closing).
    pub fn ended(self) -> EmptinessKind {
        match self {
            Shortage::Bikes => EmptinessKind::NoLongerEmpty,
            Shortage::Ebikes => EmptinessKind::EbikesBack,
            Shortage::Returns => EmptinessKind::ReturnsResumed,
        }
    }

    /// Whether `station` is open and short of this; `None` when its record does not say (no
    /// per-type counts, no `is_returning`): a count that is not known is not 0.
    pub fn of(self, station: &Station) -> Option<bool> {
        self.judge(
            station.status,
            station.available_bikes,
            station.ebikes(),
            station.is_returning,
        )
    }

    /// [`Shortage::of`] for a borrowed station.
    pub fn of_view(self, station: &StationView<'_>) -> Option<bool> {
        self.judge(
            station.status,
            station.available_bikes,
            station.ebikes(),
            station.is_returning,
        )
    }

    fn judge(
        self,
        status: Status,
        bikes: u32,
        ebikes: Option<u32>,
        returning: Option<bool>,
    ) -> Option<bool> {
        let open = status == Status::Open;
        match self {
            Shortage::Bikes => Some(open && bikes == 0),
            Shortage::Ebikes => ebikes.map(|n| open && n == 0),
            Shortage::Returns => returning.map(|r| open && !r),
        }
    }
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Shortage {
    type Err = String;

    fn from_str(s: &str) -> Result<Shortage, String> {
        Shortage::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not one of bikes, ebikes, returns"))
    }
}

/// Which way a station crossed one of the lines of [`Shortage`].
///
/// The names keep the first two kinds' meaning (bikes) from before e-bikes and returns were
/// reported; a reader written then refuses the others as unknown, and skips their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptinessKind {
    /// An open station's available bikes reached 0.
    BecameEmpty,
    /// Bikes are back at a station that was empty (or it is no longer open-and-empty).
    NoLongerEmpty,
    /// An open station whose record counts bikes by type has no e-bike left.
    EbikesGone,
    /// E-bikes are back at a station that had none (or it closed).
    EbikesBack,
    /// An open station stopped taking bikes back (`is_returning` false).
    ReturnsStopped,
    /// The station takes bikes back again (or it closed).
    ReturnsResumed,
}

impl EmptinessKind {
    /// What the station ran out of, or has again.
    pub fn shortage(self) -> Shortage {
        match self {
            EmptinessKind::BecameEmpty | EmptinessKind::NoLongerEmpty => Shortage::Bikes,
            EmptinessKind::EbikesGone | EmptinessKind::EbikesBack => Shortage::Ebikes,
            EmptinessKind::ReturnsStopped | EmptinessKind::ReturnsResumed => Shortage::Returns,
        }
    }

    /// Whether the shortage ended (`no_longer_empty`, `ebikes_back`, `returns_resumed`).
    pub fn is_recovery(self) -> bool {
        self == self.shortage().ended()
    }

    /// The JSON name, e.g. `ebikes_gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            EmptinessKind::BecameEmpty => "became_empty",
            EmptinessKind::NoLongerEmpty => "no_longer_empty",
            EmptinessKind::EbikesGone => "ebikes_gone",
            EmptinessKind::EbikesBack => "ebikes_back",
            EmptinessKind::ReturnsStopped => "returns_stopped",
            EmptinessKind::ReturnsResumed => "returns_resumed",
        }
    }
}

/// The record the monitor publishes to `velib-empty-stations`, keyed by [`StationKey`]: the
/// lines ([`Shortage`]) one station record crossed.
///
/// It carries everything an e-mail needs (name, address, contract, position, counts, time), so
/// the alerts consumer never has to look a station up. The JSON schema is versioned by
/// `version`; fields are only ever added:
///
/// - 1: bikes only (`became_empty`, `no_longer_empty`);
/// - 2: the e-bike and returns kinds, [`also`](EmptyStationEvent::also) for a record that
///   crossed several lines at once (the monitor publishes one event per station record), and
///   the e-bike, out-of-service and returns fields, each left out when the record did not give
///   it. A version-1 event reads as a version-2 one without them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmptyStationEvent {
    /// Schema version, currently 2.
    pub version: u32,
    /// Which transition this is (the first, when the record made several).
    pub kind: EmptinessKind,
    /// The transitions the same record made after `kind`, in [`Shortage::ALL`]'s order; empty
    /// (and left out of the JSON) when there is only one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<EmptinessKind>,
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
    /// E-bikes to rent ([`Station::ebikes`]), when the record counts bikes by type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_ebikes: Option<u32>,
    /// Bikes docked but out of service, when the record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bikes_out_of_service: Option<u32>,
    /// Docks out of service, when the record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docks_out_of_service: Option<u32>,
    /// Whether the station takes bikes back, when the record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_returning: Option<bool>,
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
    pub const VERSION: u32 = 2;

    /// The event for `station` crossing the empty line in direction `kind`.
    pub fn new(kind: EmptinessKind, station: &Station, observed_at: i64) -> EmptyStationEvent {
        EmptyStationEvent {
            version: Self::VERSION,
            kind,
            also: Vec::new(),
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
            available_ebikes: station.ebikes(),
            bikes_out_of_service: station.bikes_out_of_service,
            docks_out_of_service: station.docks_out_of_service,
            is_returning: station.is_returning,
            last_update: station.last_update,
            snapshot_at: station.snapshot_at,
            observed_at,
        }
    }

    /// The event for `station` crossing the lines of `kinds`, in order; `None` when `kinds` is
    /// empty.
    pub fn of_kinds(
        kinds: &[EmptinessKind],
        station: &Station,
        observed_at: i64,
    ) -> Option<EmptyStationEvent> {
        let (&first, rest) = kinds.split_first()?;
        let mut event = EmptyStationEvent::new(first, station, observed_at);
        event.also = rest.to_vec();
        Some(event)
    }

    /// Every transition the event reports: `kind`, then `also`.
    pub fn kinds(&self) -> impl Iterator<Item = EmptinessKind> + '_ {
        std::iter::once(self.kind).chain(self.also.iter().copied())
    }

    /// One event per transition, each with its own `kind` and no `also`: what the alerts
    /// consumer judges, dedupes and mails one by one.
    pub fn split(&self) -> Vec<EmptyStationEvent> {
        self.kinds()
            .map(|kind| EmptyStationEvent {
                kind,
                also: Vec::new(),
                ..self.clone()
            })
            .collect()
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
