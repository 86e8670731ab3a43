//! What velib publishes about how a station lives: hourly statistics ([`StationStats`]) and
//! changes of its health ([`StationHealthEvent`]). Both are computed by `velib-stats` and
//! published by the exactly-once monitor (`velib-monitor --stats`).

use crate::{StationKey, VehicleKind};
use serde::{Deserialize, Serialize};

/// The statistics of one station over one closed window of snapshot time (an hour by default),
/// the record of the `velib-station-stats` topic.
///
/// Its Kafka key is [`StationStats::kafka_key`], `["lyon:1001","2026-07-02T08:00:00Z"]`: one
/// record per station and window, so the topic can be compacted and a window published twice
/// (which the exactly-once monitor does not do) would still be one record. The JSON schema is
/// versioned by `version`; fields are only ever added.
///
/// Times are epoch milliseconds of the records' `snapshot_at` (when the feed made the
/// snapshot), never of their arrival. Durations are given in minutes, from whole milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationStats {
    /// Schema version, currently 1.
    pub version: u32,
    /// The station.
    pub key: StationKey,
    /// Start of the window (inclusive), epoch ms, a multiple of the window's size.
    pub window_start: i64,
    /// End of the window (exclusive), epoch ms.
    pub window_end: i64,
    /// Records whose snapshot falls in the window and that were applied: one per snapshot
    /// (the same snapshot polled twice counts once).
    pub records: u32,
    /// Records that arrived while this window was the station's open one but came from an
    /// older snapshot than one already applied (a second producer, a replay): counted, never
    /// applied.
    pub late_records: u32,
    /// Bikes taken: the sum over consecutive records of every decrease of a vehicle type's
    /// count (of the total when a record has no per-type counts).
    pub rentals: u32,
    /// Bikes brought back: the sum of the increases.
    pub returns: u32,
    /// Rentals and returns per vehicle type, over the transitions where both records counted
    /// bikes by type; absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_type: Option<Vec<TypeActivity>>,
    /// Bikes to rent (`available_bikes`) over the window.
    pub bikes: Level,
    /// Free docks (`available_bike_stands`) over the window.
    pub free_docks: Level,
    /// How much of the window a state of the station was known: all of it, but for the first
    /// window of a station, known from its first record on.
    pub minutes_known: f64,
    /// Minutes open with no bike to rent.
    pub minutes_empty: f64,
    /// Minutes open with no free dock.
    pub minutes_full: f64,
    /// Minutes with at least one dock out of service (0 when the feed does not say).
    pub minutes_docks_out_of_service: f64,
    /// Minutes closed (not renting).
    pub minutes_closed: f64,
}

/// A count over a window: its least and greatest value, and its mean weighted by how long each
/// value held. Only values that held for some time in the window count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// The least value that held in the window.
    pub min: u32,
    /// The greatest value that held in the window.
    pub max: u32,
    /// The time-weighted mean over [`StationStats::minutes_known`].
    pub mean: f64,
}

/// Rentals and returns of one vehicle type over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeActivity {
    /// The feed's id of the type, e.g. `electrical`.
    pub vehicle_type_id: String,
    /// What kind of bike it is.
    pub kind: VehicleKind,
    /// Decreases of the type's count.
    pub rentals: u32,
    /// Increases of the type's count.
    pub returns: u32,
}

impl StationStats {
    /// The current schema version.
    pub const VERSION: u32 = 1;

    /// The Kafka key: station and window start as a JSON array,
    /// `["lyon:1001","2026-07-02T08:00:00Z"]`.
    ///
    /// ```
    /// # use velib_model::*;
    /// let key: StationKey = "lyon:1001".parse()?;
    /// assert_eq!(
    ///     StationStats::key_for(&key, 1_782_979_200_000),
    ///     br#"["lyon:1001","2026-07-02T08:00:00Z"]"#
    /// );
    /// # Ok::<(), StationKeyError>(())
    /// ```
    pub fn key_for(station: &StationKey, window_start: i64) -> Vec<u8> {
        serde_json::to_vec(&(station.as_str(), rfc3339_utc(window_start)))
            .expect("two strings always serialise")
    }

    /// This record's Kafka key ([`StationStats::key_for`]).
    pub fn kafka_key(&self) -> Vec<u8> {
        StationStats::key_for(&self.key, self.window_start)
    }

    /// The record's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Every float is finite (means and minutes of finite integers), so this cannot fail.
        serde_json::to_vec(self).expect("a StationStats always serialises")
    }

    /// Reads a record from its JSON.
    ///
    /// # Errors
    ///
    /// The serde error.
    pub fn from_json(bytes: &[u8]) -> Result<StationStats, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A station's health as `velib-stats` judges it from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Nothing wrong seen.
    #[default]
    Ok,
    /// Open and renting, but its counts have not moved for longer than its usual activity at
    /// those hours makes likely (or for very long).
    Locked,
    /// Too many of its docks are out of service.
    Degraded,
}

/// A change of a station's [`Health`]: the record of the `velib-station-health` topic, keyed by
/// station ([`StationKey`]), one per transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationHealthEvent {
    /// Schema version, currently 1.
    pub version: u32,
    /// The station.
    pub key: StationKey,
    /// Its health from now on.
    pub health: Health,
    /// Its health before.
    pub previous: Health,
    /// Since when (epoch ms of snapshot time) the new health holds: for
    /// [`Health::Locked`] the snapshot where its counts last moved, for
    /// [`Health::Degraded`] the first snapshot with too many docks out of service, for
    /// [`Health::Ok`] the snapshot that showed it.
    pub since: i64,
    /// The snapshot (epoch ms) whose record decided the change.
    pub decided_at: i64,
    /// Why, in words, with the figures that decided it.
    pub reason: String,
}

impl StationHealthEvent {
    /// The current schema version.
    pub const VERSION: u32 = 1;

    /// The event's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StationHealthEvent always serialises")
    }

    /// Reads an event from its JSON.
    ///
    /// # Errors
    ///
    /// The serde error.
    pub fn from_json(bytes: &[u8]) -> Result<StationHealthEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Epoch milliseconds as an RFC 3339 UTC time, `2026-07-02T08:00:00Z` (with `.mmm` when the
/// milliseconds are not 0).
///
/// ```
/// use velib_model::stats::rfc3339_utc;
///
/// assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
/// assert_eq!(rfc3339_utc(1_782_979_200_250), "2026-07-02T08:00:00.250Z");
/// assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59.999Z");
/// ```
pub fn rfc3339_utc(ms: i64) -> String {
    let Some(date) = utc_date_time(ms, 'T') else {
        return format!("{ms} ms after 1970-01-01T00:00:00Z");
    };
    match ms.rem_euclid(1000) {
        0 => format!("{date}Z"),
        frac => format!("{date}.{frac:03}Z"),
    }
}

/// `YYYY-MM-DD{sep}HH:MM:SS` of epoch milliseconds, in UTC, to the second, the calendar being
/// the `time` crate's; `None` beyond the years ±9999 (a broken feed's time).
///
/// ```
/// assert_eq!(
///     velib_model::stats::utc_date_time(1_493_734_764_000, ' ').as_deref(),
///     Some("2017-05-02 14:19:24")
/// );
/// ```
pub fn utc_date_time(ms: i64, sep: char) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_agrees_with_known_dates() {
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_782_979_200_000), "2026-07-02T08:00:00Z");
        assert_eq!(rfc3339_utc(4_107_542_399_000), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn a_stats_record_survives_json() {
        let stats = StationStats {
            version: StationStats::VERSION,
            key: "lyon:1001".parse().unwrap(),
            window_start: 1_782_979_200_000,
            window_end: 1_782_982_800_000,
            records: 4,
            late_records: 0,
            rentals: 3,
            returns: 2,
            by_type: Some(vec![TypeActivity {
                vehicle_type_id: "electrical".into(),
                kind: VehicleKind::Electric,
                rentals: 3,
                returns: 2,
            }]),
            bikes: Level {
                min: 1,
                max: 4,
                mean: 2.3333333333333335,
            },
            free_docks: Level {
                min: 10,
                max: 13,
                mean: 11.1,
            },
            minutes_known: 60.0,
            minutes_empty: 0.0,
            minutes_full: 0.0,
            minutes_docks_out_of_service: 15.0,
            minutes_closed: 0.0,
        };
        assert_eq!(StationStats::from_json(&stats.to_json()).unwrap(), stats);
        assert_eq!(
            stats.kafka_key(),
            br#"["lyon:1001","2026-07-02T08:00:00Z"]"#
        );
    }
}
