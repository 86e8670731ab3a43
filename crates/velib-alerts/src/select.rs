//! Which stations a user watches: the pure part of "is this event for me?".
//!
//! A [`WatchList`] is the union of three selectors, any of which may be empty:
//!
//! - explicit station keys (`--station Lyon:1001`);
//! - whole contracts (`--contract Lyon`);
//! - a home position (`--near LAT,LNG`) with a radius (`--radius-m`), a count (`--nearest N`),
//!   or both.
//!
//! # "The N nearest stations" without a station list
//!
//! The alerts consumer only reads `velib-empty-stations`, so it learns where stations are from
//! the positions carried by the events themselves. "Nearest N" therefore means *the N nearest
//! stations among those seen in events so far*: [`WatchList::matches`] records every event's
//! position (whether or not it matches) and keeps the N nearest in a bounded set.
//!
//! Before every station near home has appeared in an event, that set holds stations that are
//! not really among the N nearest, and their events match: early on, "nearest N" errs on the
//! side of sending a mail too many, never of missing the station closest to home. It converges
//! as events arrive and never grows beyond N entries. Combine it with `--radius-m` to bound how
//! far such a false positive can be: with both, an event matches when its station is within the
//! radius *and* among the N nearest seen within it.

use std::collections::HashSet;
use velib_model::{EmptyStationEvent, Position, StationKey};

/// The great-circle distance between two positions, in metres (haversine formula).
///
/// ```
/// use velib_alerts::select::distance_m;
/// use velib_model::Position;
///
/// let bellecour = Position { lat: 45.7578, lng: 4.8320 };
/// let hotel_de_ville = Position { lat: 45.7673, lng: 4.8357 };
/// let d = distance_m(bellecour, hotel_de_ville);
/// assert!((1_000.0..1_150.0).contains(&d), "{d}");
/// ```
pub fn distance_m(a: Position, b: Position) -> f64 {
    a.distance_m(b)
}

/// A home position and how to pick stations around it.
#[derive(Debug, Clone)]
pub struct Near {
    /// The user's home.
    pub home: Position,
    /// Only stations at most this far from home, in metres.
    pub radius_m: Option<f64>,
    /// Only the N stations nearest to home among those seen so far (see the module docs).
    pub nearest: Option<usize>,
}

/// The stations a user watches. See the [module docs](self) for how the selectors combine.
///
/// ```
/// use velib_alerts::select::{Near, WatchList};
/// use velib_model::Position;
///
/// let watch = WatchList::default()
///     .with_station("Lyon:1001".parse()?)
///     .with_contract("Toulouse")
///     .with_near(Near {
///         home: Position { lat: 45.7640, lng: 4.8357 },
///         radius_m: Some(500.0),
///         nearest: Some(1),
///     });
/// assert!(!watch.is_empty());
/// # Ok::<(), velib_model::StationKeyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WatchList {
    stations: HashSet<StationKey>,
    contracts: HashSet<String>,
    near: Option<NearTracker>,
}

#[derive(Debug, Clone)]
struct NearTracker {
    near: Near,
    /// The nearest stations seen so far (within the radius, if any), closest first; at most
    /// `near.nearest` entries. Unused when `nearest` is `None`.
    closest: Vec<(f64, StationKey)>,
}

impl WatchList {
    /// Adds one station.
    pub fn with_station(mut self, key: StationKey) -> WatchList {
        self.stations.insert(folded(&key));
        self
    }

    /// Adds every station of `contract` (compared case-insensitively, as JCDecaux spells
    /// contract names inconsistently: `Lyon`, `lyon`).
    pub fn with_contract(mut self, contract: &str) -> WatchList {
        self.contracts.insert(contract.to_lowercase());
        self
    }

    /// Sets the home-position selector, replacing any previous one.
    pub fn with_near(mut self, near: Near) -> WatchList {
        self.near = Some(NearTracker {
            closest: Vec::with_capacity(near.nearest.unwrap_or(0).min(1024)),
            near,
        });
        self
    }

    /// Whether no selector is set, so that nothing would ever match.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
            && self.contracts.is_empty()
            && self.near.as_ref().is_none_or(|t| t.near.nearest == Some(0))
    }

    /// Whether `event`'s station is watched. Also records the station's position for the
    /// "nearest N" selector, which is why this takes `&mut self`: call it for every event, in
    /// order, including the ones that will be filtered out for other reasons.
    pub fn matches(&mut self, event: &EmptyStationEvent) -> bool {
        // The tracker must see every event, so it runs before the cheap checks can
        // short-circuit.
        let near = self
            .near
            .as_mut()
            .is_some_and(|t| t.observe(&event.key, event.position));
        near || self.stations.contains(&folded(&event.key))
            || self.contracts.contains(&event.contract.to_lowercase())
            || self
                .contracts
                .contains(&event.key.contract().to_lowercase())
    }
}

impl WatchList {
    /// Whether a station known only by `key` (and, if the events topic named it, its
    /// `contract` spelling and `position`) is watched: for a health change, which carries no
    /// more. Records nothing: "nearest N" picks among the stations the events placed, and a
    /// station never placed is near nothing.
    pub fn matches_known(
        &self,
        key: &StationKey,
        contract: Option<&str>,
        position: Option<Position>,
    ) -> bool {
        let near = self
            .near
            .as_ref()
            .is_some_and(|t| match (t.near.nearest, position) {
                (Some(_), _) => t.closest.iter().any(|(_, k)| k == key),
                (None, Some(p)) => t
                    .near
                    .radius_m
                    .is_none_or(|r| distance_m(t.near.home, p) <= r),
                (None, None) => false,
            });
        near || self.stations.contains(&folded(key))
            || self.contracts.contains(&key.contract().to_lowercase())
            || contract.is_some_and(|c| self.contracts.contains(&c.to_lowercase()))
    }
}

/// The key with its contract lower-cased: `--station Lyon:1001` watches `lyon:1001`, the key
/// JCDecaux stations have had since the API spells contracts in lower case.
fn folded(key: &StationKey) -> StationKey {
    if key.contract().chars().any(char::is_uppercase) {
        StationKey::new(&key.contract().to_lowercase(), key.id())
    } else {
        key.clone()
    }
}

impl NearTracker {
    /// Records `key` at `position` and says whether it is selected.
    fn observe(&mut self, key: &StationKey, position: Position) -> bool {
        // A placeholder position (0,0, out of range) says nothing about where the station
        // is: it must never take a place among the nearest.
        if !position.is_real() {
            self.closest.retain(|(_, k)| k != key);
            return false;
        }
        let d = distance_m(self.near.home, position);
        let within = self.near.radius_m.is_none_or(|r| d <= r);
        let Some(n) = self.near.nearest else {
            return within;
        };
        // A station that moved (or left the radius) gives up its old place first.
        self.closest.retain(|(_, k)| k != key);
        if !within || n == 0 {
            return false;
        }
        let at = self.closest.partition_point(|(other, _)| *other <= d);
        if at >= n {
            return false;
        }
        self.closest.insert(at, (d, key.clone()));
        self.closest.truncate(n);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{EmptinessKind, Station, Status};

    const HOME: Position = Position {
        lat: 45.7640,
        lng: 4.8357,
    };

    fn event(key: &str, lat: f64, lng: f64) -> EmptyStationEvent {
        let key: StationKey = key.parse().unwrap();
        let station = Station {
            number: velib_model::StationId::from_text(key.id()),
            contract_name: key.contract().to_owned(),
            name: format!("{} name", key.id()),
            address: "somewhere".into(),
            position: Position { lat, lng },
            banking: false,
            bonus: false,
            bike_stands: 10,
            available_bike_stands: 10,
            available_bikes: 0,
            status: Status::Open,
            last_update: Some(1_000),
            snapshot_at: None,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        EmptyStationEvent::new(EmptinessKind::BecameEmpty, &station, 1_000)
    }

    /// A point `metres` north of home (one degree of latitude is about 111.2 km).
    fn north(metres: f64) -> (f64, f64) {
        (HOME.lat + metres / 111_195.0, HOME.lng)
    }

    fn at(key: &str, metres: f64) -> EmptyStationEvent {
        let (lat, lng) = north(metres);
        event(key, lat, lng)
    }

    #[test]
    fn haversine_matches_known_distances() {
        // Paris Notre-Dame to Lyon Bellecour is about 392 km as the crow flies.
        let paris = Position {
            lat: 48.8530,
            lng: 2.3499,
        };
        let lyon = Position {
            lat: 45.7578,
            lng: 4.8320,
        };
        let d = distance_m(paris, lyon);
        assert!((390_000.0..394_000.0).contains(&d), "{d}");
        assert_eq!(distance_m(lyon, lyon), 0.0);
        let (lat, lng) = north(1_000.0);
        let d = distance_m(HOME, Position { lat, lng });
        assert!((999.0..1_001.0).contains(&d), "{d}");
    }

    #[test]
    fn explicit_keys_and_contracts() {
        let mut watch = WatchList::default()
            .with_station("Lyon:1001".parse().unwrap())
            .with_contract("toulouse");
        assert!(watch.matches(&event("Lyon:1001", 0.0, 0.0)));
        assert!(!watch.matches(&event("Lyon:1002", 0.0, 0.0)));
        assert!(!watch.matches(&event("Marseille:1001", 0.0, 0.0)));
        assert!(watch.matches(&event("Toulouse:7", 0.0, 0.0)));
        // JCDecaux keys are lower-case; a station given as in the tutorial's days matches.
        assert!(watch.matches(&event("lyon:1001", 45.76, 4.83)));
        let mut lower = WatchList::default().with_station("lyon:1001".parse().unwrap());
        assert!(lower.matches(&event("Lyon:1001", 45.76, 4.83)));
    }

    #[test]
    fn a_placeholder_position_is_never_the_nearest() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: None,
            nearest: Some(1),
        });
        // A workshop at 0,0 seen first would be "the nearest seen so far": it is not taken.
        assert!(!watch.matches(&event("seville:300", 0.0, 0.0)));
        assert!(!watch.matches(&event("lyon:x", 91.0, 4.8)));
        assert!(!watch.matches(&event("lyon:y", f64::NAN, 4.8)));
        assert!(watch.matches(&at("lyon:real", 3_000.0)));
        assert!(!watch.matches(&event("seville:300", 0.0, 0.0)));
        assert!(watch.matches(&at("lyon:real", 3_000.0)));
    }

    #[test]
    fn empty_watch_list_matches_nothing() {
        let mut watch = WatchList::default();
        assert!(watch.is_empty());
        assert!(!watch.matches(&at("Lyon:1", 0.0)));
        let nothing = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: None,
            nearest: Some(0),
        });
        assert!(nothing.is_empty());
    }

    #[test]
    fn radius_alone() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: Some(500.0),
            nearest: None,
        });
        assert!(watch.matches(&at("Lyon:1", 100.0)));
        assert!(watch.matches(&at("Lyon:2", 499.0)));
        assert!(!watch.matches(&at("Lyon:3", 501.0)));
        assert!(watch.matches(&at("Lyon:4", 300.0)));
    }

    #[test]
    fn nearest_is_decided_from_stations_seen_so_far() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: None,
            nearest: Some(1),
        });
        // The first station seen is the nearest seen so far, however far it is: the documented
        // early false positive.
        assert!(watch.matches(&at("Lyon:far", 3_000.0)));
        // A closer one takes its place...
        assert!(watch.matches(&at("Lyon:close", 200.0)));
        // ...so the far one no longer matches,
        assert!(!watch.matches(&at("Lyon:far", 3_000.0)));
        // nor does anything farther than the closest seen,
        assert!(!watch.matches(&at("Lyon:mid", 1_000.0)));
        // while the closest keeps matching, event after event.
        assert!(watch.matches(&at("Lyon:close", 200.0)));
        assert!(watch.matches(&at("Lyon:close", 200.0)));
    }

    #[test]
    fn nearest_two_keeps_a_bounded_ranking() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: None,
            nearest: Some(2),
        });
        for (i, m) in [900.0, 800.0, 700.0, 600.0, 100.0, 50.0]
            .into_iter()
            .enumerate()
        {
            assert!(watch.matches(&at(&format!("Lyon:{i}"), m)), "{i}");
        }
        let tracker = watch.near.as_ref().unwrap();
        assert_eq!(tracker.closest.len(), 2);
        assert!(watch.matches(&at("Lyon:5", 50.0)));
        assert!(watch.matches(&at("Lyon:4", 100.0)));
        assert!(!watch.matches(&at("Lyon:3", 600.0)));
        // A station that moves away keeps a place only until a closer one reports: the set
        // remembers no more than two stations.
        assert!(watch.matches(&at("Lyon:5", 5_000.0)));
        assert!(watch.matches(&at("Lyon:3", 600.0)));
        assert!(!watch.matches(&at("Lyon:5", 5_000.0)));
    }

    #[test]
    fn radius_and_nearest_together() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: Some(1_000.0),
            nearest: Some(1),
        });
        // Outside the radius never matches, even as the first station seen.
        assert!(!watch.matches(&at("Lyon:out", 2_000.0)));
        assert!(watch.matches(&at("Lyon:in", 800.0)));
        assert!(watch.matches(&at("Lyon:closer", 300.0)));
        assert!(!watch.matches(&at("Lyon:in", 800.0)));
    }

    #[test]
    fn selectors_are_a_union() {
        let mut watch = WatchList::default()
            .with_station("Paris:42".parse().unwrap())
            .with_near(Near {
                home: HOME,
                radius_m: None,
                nearest: Some(1),
            });
        assert!(watch.matches(&at("Lyon:close", 10.0)));
        // Paris:42 is far and not the nearest, but it is listed explicitly.
        assert!(watch.matches(&event("Paris:42", 48.85, 2.35)));
        assert!(!watch.matches(&event("Paris:43", 48.85, 2.35)));
    }

    #[test]
    fn nonsense_positions_never_match_near() {
        let mut watch = WatchList::default().with_near(Near {
            home: HOME,
            radius_m: None,
            nearest: Some(3),
        });
        assert!(!watch.matches(&event("Lyon:nan", f64::NAN, 4.0)));
    }
}
