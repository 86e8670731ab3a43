//! The default names of velib's Kafka topics, written once for every program that reads or
//! writes them: the producer, the monitor, the alerts consumer, the live map, `velib-topics
//! create` and the demo. Each program can be pointed at other names with its flags (the same
//! environment variables everywhere, named below); these are what they use when none is given.
//!
//! This crate only names the topics; it never connects to Kafka.

/// Station records, keyed by station (`contract:id`): written by the producer, read by the
/// monitors and the live map (`--topic`, `VELIB_STATIONS_TOPIC`).
pub const STATIONS: &str = "velib-stations";

/// The monitor's events ([`EmptyStationEvent`]): a station running out of bikes, e-bikes or
/// returns, and back ("became empty" / "no longer empty" and their e-bike and returns
/// counterparts); read by the alerts consumer and the live map (`--events-topic`,
/// `VELIB_EVENTS_TOPIC`).
///
/// [`EmptyStationEvent`]: crate::EmptyStationEvent
pub const EMPTY_STATIONS: &str = "velib-empty-stations";

/// The monitor's dead-letter topic: copies of the station records it could not read, with an
/// error header (`--dlq-topic`, `VELIB_DLQ_TOPIC`).
pub const DEAD_LETTERS: &str = "velib-stations-dlq";

/// The exactly-once monitor's state changelog: compacted, partition for partition with the
/// stations topic (`--state-topic`, `VELIB_STATE_TOPIC`).
pub const MONITOR_STATE: &str = "velib-monitor-state";

/// Hourly statistics per station ([`StationStats`]), keyed by station and window start:
/// compacted, written by the exactly-once monitor with `--stats` (`--stats-topic`,
/// `VELIB_STATS_TOPIC`).
///
/// [`StationStats`]: crate::StationStats
pub const STATION_STATS: &str = "velib-station-stats";

/// Changes of a station's health, locked or degraded ([`StationHealthEvent`]), keyed by
/// station: written by the exactly-once monitor with `--stats` (`--health-topic`,
/// `VELIB_HEALTH_TOPIC`).
///
/// [`StationHealthEvent`]: crate::StationHealthEvent
pub const STATION_HEALTH: &str = "velib-station-health";
