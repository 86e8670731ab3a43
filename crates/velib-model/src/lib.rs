//! The data velib moves through Kafka: the station schema, the key that identifies a station
//! across bike-share systems, the events the monitor sends to the alerts consumer, and the
//! statistics and health changes it publishes with `--stats` ([`stats`]).
//!
//! This crate is pure: no I/O, no clock, no Kafka. Every other velib crate speaks its types.
//!
//! # Wire format
//!
//! A [`Station`] serialises to exactly the JCDecaux v1 station JSON (`/vls/v1/stations`), so any
//! consumer written for that API, the original Python tutorial's among them, can read what velib
//! publishes:
//!
//! ```
//! use velib_model::Station;
//!
//! let json = br#"{"number": 9087, "contract_name": "Marseille", "name": "9087-MAZARGUES",
//!     "address": "MAZARGUES - ROND POINT DE MAZARGUES (OBELISQUE)",
//!     "position": {"lat": 43.250903869637334, "lng": 5.403244616491982},
//!     "banking": true, "bonus": false, "status": "OPEN", "bike_stands": 21,
//!     "available_bike_stands": 20, "available_bikes": 1, "last_update": 1493734764000}"#;
//! let station = Station::from_json(json)?;
//! assert_eq!(station.key().to_string(), "Marseille:9087");
//! assert_eq!(Station::from_json(&station.to_json())?, station);
//! # Ok::<(), velib_model::StationError>(())
//! ```

#![forbid(unsafe_code)]

mod backoff;
mod event;
mod key;
pub mod lenient;
pub mod rng;
mod scan;
mod snapshot;
mod station;
pub mod stats;
pub mod text;
pub mod topics;
mod vehicles;
mod write;

pub use backoff::Backoff;
pub use event::{
    ChangeLine, EmptinessKind, EmptyStationEvent, Shortage, StationChange, TrackedField,
};
pub use key::{StationKey, StationKeyError};
pub use snapshot::Snapshot;
pub use station::{Position, Station, StationError, StationId, StationView, Status};
pub use stats::{Health, Level, StationHealthEvent, StationStats, TypeActivity};
pub use vehicles::{VehicleCount, VehicleKind};

#[cfg(test)]
mod tests;
