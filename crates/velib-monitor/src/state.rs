//! The exactly-once monitor's state changelog: what one of its records holds, and whose it is.
//!
//! One record per station and consumer group: the key names both, as a JSON array
//! (`["velib-monitor-stations","lyon:1001"]`), and the value is the station's remembered state
//! ([`value`]). Keying by group matters because every group of a cluster shares the default
//! state topic: keyed by station alone, compaction kept only the last group's state of each
//! station, and a restoring monitor took another group's newer state for its own — a restarted
//! group then judged its backlog against a future it had not seen and printed nothing for it,
//! and a brand-new group printed lines for its first records. A monitor restores only the
//! records its own group wrote ([`GroupKeys::owns`]); records keyed otherwise (another group's,
//! or a velib older than this format, whose keys named the station alone) are skipped, so a
//! group's stations start unknown rather than borrowed.
//!
//! The record is partitioned like its station's input partition (the producer names the
//! partition), so the key's form does not move anything between partitions.

use crate::detect::Remembered;
use velib_model::{StationId, StationView, Status, TrackedField};

/// Builds and recognises the changelog keys of one consumer group.
#[derive(Debug, Clone)]
pub(crate) struct GroupKeys {
    /// `["GROUP",`: the start every key of the group shares. JSON escaping makes it
    /// unambiguous: a group's quoted name ends at its closing quote, whatever it contains.
    prefix: Vec<u8>,
}

impl GroupKeys {
    /// The keys of `group`.
    pub(crate) fn new(group: &str) -> GroupKeys {
        let mut prefix = b"[".to_vec();
        prefix.extend_from_slice(
            &serde_json::to_vec(group).expect("a string always serialises to JSON"),
        );
        prefix.push(b',');
        GroupKeys { prefix }
    }

    /// The key of `station`'s state (a station key such as `lyon:1001`).
    pub(crate) fn key(&self, station: &str) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(
            &serde_json::to_vec(station).expect("a string always serialises to JSON"),
        );
        key.push(b']');
        key
    }

    /// Whether a changelog record with this key was written by this group.
    pub(crate) fn owns(&self, key: Option<&[u8]>) -> bool {
        key.is_some_and(|k| k.starts_with(&self.prefix))
    }
}

/// The record header that carries a station's statistics state (`--stats`), in the compact
/// binary form of [`velib_stats::Tracker::encode_state`]: beside the JSON value, so that the
/// value stays readable with any Kafka tool, and compacted with it (a header belongs to its
/// record).
pub(crate) const STATS_HEADER: &str = "velib-stats";

/// The changelog value of a station's state: JSON, readable with any Kafka tool.
/// `{"contract":"Lyon","number":1001,"field":"available_bike_stands","snapshot_at":…,
/// "tracked":5,"bikes":3,"open":true}`; the contract is spelled as the station's records spell
/// it, which is how the detector knows it. `tracked` is `null` when the record does not give
/// the tracked count (an e-bike count from a feed without per-type counts); `ebikes` and
/// `is_returning` (for the e-bike and returns lines) are `null` when the record does not say,
/// and read as `null` from records written before they were added.
///
/// With `--stats`, the station's statistics state rides in the record's [`STATS_HEADER`];
/// velib before that kept it as JSON under `"stats"` in the value, which is still read.
pub(crate) fn value(station: &StationView<'_>, field: TrackedField) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Id<'a> {
        Number(u64),
        Text(&'a str),
    }
    #[derive(serde::Serialize)]
    struct Out<'a> {
        contract: &'a str,
        number: Id<'a>,
        field: TrackedField,
        snapshot_at: Option<i64>,
        tracked: Option<u32>,
        bikes: u32,
        open: bool,
        ebikes: Option<u32>,
        is_returning: Option<bool>,
    }
    let out = Out {
        contract: &station.contract_name,
        number: match &station.number {
            StationId::Number(n) => Id::Number(*n),
            StationId::Text(s) => Id::Text(s),
        },
        field,
        snapshot_at: station.snapshot_at,
        tracked: field.of_view(station),
        bikes: station.available_bikes,
        open: station.status == Status::Open,
        ebikes: station.ebikes(),
        is_returning: station.is_returning,
    };
    let mut value = Vec::with_capacity(192);
    // Plain strings, numbers and booleans: serialising cannot fail.
    let _ = serde_json::to_writer(&mut value, &out);
    value
}

/// A station's statistics state as the changelog kept it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoredStats {
    /// The binary form, from the record's [`STATS_HEADER`].
    Binary(Vec<u8>),
    /// The JSON form velib wrote before, under `"stats"` in the value.
    Json(serde_json::Value),
}

impl StoredStats {
    /// Restores station `key` of `tracker` from this state.
    pub(crate) fn restore_into(
        &self,
        tracker: &mut velib_stats::Tracker,
        key: &str,
    ) -> Result<(), velib_stats::RestoreError> {
        match self {
            StoredStats::Binary(bytes) => tracker.restore_encoded(key, bytes),
            StoredStats::Json(value) => tracker.restore_json(key, value),
        }
    }
}

/// A station's state read back from the changelog.
pub(crate) struct StoredState {
    pub(crate) contract: String,
    pub(crate) number: StationId,
    pub(crate) field: TrackedField,
    pub(crate) state: Remembered,
    /// The statistics state, when the monitor that wrote it kept statistics.
    pub(crate) stats: Option<StoredStats>,
}

/// The changelog value as written by [`value`], read without building a JSON tree: a restore
/// reads one per station.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    contract: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    number: WireId<'a>,
    field: TrackedField,
    snapshot_at: Option<i64>,
    tracked: Option<u32>,
    bikes: u32,
    open: bool,
    #[serde(default)]
    ebikes: Option<u32>,
    #[serde(default)]
    is_returning: Option<bool>,
    #[serde(default)]
    stats: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum WireId<'a> {
    Number(u64),
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
}

impl StoredState {
    /// Parses a changelog value and its [`STATS_HEADER`], if any; `None` when it is not one.
    pub(crate) fn parse(value: &[u8], stats_header: Option<&[u8]>) -> Option<StoredState> {
        let wire: Wire<'_> = serde_json::from_slice(value).ok()?;
        let stats = match (stats_header, wire.stats) {
            (Some(bytes), _) => Some(StoredStats::Binary(bytes.to_vec())),
            (None, Some(json)) => Some(StoredStats::Json(json)),
            (None, None) => None,
        };
        Some(StoredState {
            contract: wire.contract.into_owned(),
            number: match wire.number {
                WireId::Number(n) => StationId::Number(n),
                WireId::Text(t) => StationId::Text(t.into_owned()),
            },
            field: wire.field,
            state: Remembered {
                snapshot_at: wire.snapshot_at,
                tracked: wire.tracked,
                bikes: wire.bikes,
                open: wire.open,
                ebikes: wire.ebikes,
                is_returning: wire.is_returning,
            },
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Detector;

    #[test]
    fn a_state_survives_the_changelog() {
        use velib_model::{Position, Station};
        let station = Station {
            number: StationId::Number(1001),
            contract_name: "Lyon".into(),
            name: "n".into(),
            address: "a".into(),
            position: Position {
                lat: 45.0,
                lng: 4.0,
            },
            banking: false,
            bonus: false,
            bike_stands: 20,
            available_bike_stands: 12,
            available_bikes: 0,
            status: Status::Open,
            last_update: None,
            snapshot_at: Some(1_751_414_400_000),
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        let value = value(&station.view(), TrackedField::AvailableBikeStands);
        let stored = StoredState::parse(&value, None).unwrap();
        assert_eq!(stored.contract, "Lyon");
        assert_eq!(stored.number, StationId::Number(1001));
        assert_eq!(stored.field, TrackedField::AvailableBikeStands);
        assert_eq!(
            stored.state,
            Remembered {
                snapshot_at: Some(1_751_414_400_000),
                tracked: Some(12),
                bikes: 0,
                open: true,
                ebikes: None,
                is_returning: None,
            }
        );
        // Restored, the station is known: its next record is judged against that state.
        let mut detector = Detector::new(TrackedField::AvailableBikeStands);
        detector.restore(&stored.contract, &stored.number, stored.state);
        let next = Station {
            available_bike_stands: 11,
            available_bikes: 1,
            snapshot_at: Some(1_751_414_401_000),
            ..station
        };
        assert_eq!(
            detector.observe(&next.view()),
            crate::Verdict::Updated {
                change: Some((12, 11)),
                crossed: crate::detect::Crossed::only(velib_model::EmptinessKind::NoLongerEmpty),
                known_changed: false
            }
        );
        // A count the record does not give is stored as unknown, not as 0.
        let unknown = StoredState::parse(
            &super::value(&next.view(), TrackedField::AvailableEbikes),
            None,
        )
        .unwrap();
        assert_eq!(unknown.field, TrackedField::AvailableEbikes);
        assert_eq!(unknown.state.tracked, None);
        assert!(StoredState::parse(b"not json", None).is_none());
        assert!(StoredState::parse(br#"{"contract":"Lyon"}"#, None).is_none());
    }

    #[test]
    fn statistics_ride_beside_the_changelog_value() {
        use velib_model::{Position, Station};
        let station = |at: i64, bikes: u32| Station {
            number: StationId::Number(7),
            contract_name: "lyon".into(),
            name: "n".into(),
            address: "a".into(),
            position: Position {
                lat: 45.0,
                lng: 4.0,
            },
            banking: false,
            bonus: false,
            bike_stands: 20,
            available_bike_stands: 20 - bikes,
            available_bikes: bikes,
            status: Status::Open,
            last_update: None,
            snapshot_at: Some(at),
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        let hour = 1_782_979_200_000;
        let mut tracker = velib_stats::Tracker::default();
        let mut out = velib_stats::Published::default();
        let first = station(hour + 600_000, 5);
        tracker.observe("lyon:7", &first.view(), &mut out);
        let written = value(&first.view(), TrackedField::AvailableBikeStands);
        let mut header = Vec::new();
        assert!(tracker.encode_state("lyon:7", &mut header));
        // Read back by a monitor that keeps statistics, the window goes on where it was.
        let stored = StoredState::parse(&written, Some(&header)).unwrap();
        let mut restored = velib_stats::Tracker::default();
        stored
            .stats
            .as_ref()
            .unwrap()
            .restore_into(&mut restored, "lyon:7")
            .unwrap();
        let next = station(hour + 3_700_000, 2);
        let (mut a, mut b) = (velib_stats::Published::default(), out);
        tracker.observe("lyon:7", &next.view(), &mut a);
        restored.observe("lyon:7", &next.view(), &mut b);
        assert_eq!(a.stats, b.stats);
        assert_eq!(a.stats.len(), 1);
        // The value itself is the detection state alone, whether statistics are kept or not.
        assert!(
            !String::from_utf8(written.clone())
                .unwrap()
                .contains("stats")
        );
        assert!(StoredState::parse(&written, None).unwrap().stats.is_none());
        // A value an earlier velib wrote, its statistics as JSON inside: still read as such.
        let mut old: serde_json::Value = serde_json::from_slice(&written).unwrap();
        old["stats"] = serde_json::json!({"last": 1});
        let old = StoredState::parse(&serde_json::to_vec(&old).unwrap(), None).unwrap();
        assert_eq!(
            old.stats,
            Some(StoredStats::Json(serde_json::json!({"last": 1})))
        );
    }

    #[test]
    fn each_group_restores_its_own_records_only() {
        let stands = GroupKeys::new("velib-monitor-stations");
        let bikes = GroupKeys::new("velib-monitor-bikes");
        let key = stands.key("lyon:1001");
        assert_eq!(key, br#"["velib-monitor-stations","lyon:1001"]"#);
        let parsed: (String, String) = serde_json::from_slice(&key).unwrap();
        assert_eq!(
            parsed,
            ("velib-monitor-stations".into(), "lyon:1001".into())
        );
        assert!(stands.owns(Some(&key)));
        assert!(!bikes.owns(Some(&key)));
        // Two groups never share a key, so compaction keeps both groups' states.
        assert_ne!(bikes.key("lyon:1001"), key);
        // A group whose name is another's followed by more text owns nothing of the other's.
        let longer = GroupKeys::new("velib-monitor-stations\",\"x");
        assert!(!longer.owns(Some(&key)));
        assert!(!stands.owns(Some(&longer.key("lyon:1001"))));
        // Keys of the earlier format (the station alone), tombstones without a key: not ours.
        assert!(!stands.owns(Some(b"lyon:1001")));
        assert!(!stands.owns(None));
    }
}
