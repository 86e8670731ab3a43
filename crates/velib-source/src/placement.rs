//! Test, workshop and placeholder stations: set aside before they reach Kafka.
//!
//! Real feeds list stations that are not where riders can use them: JCDecaux's GBFS feeds of
//! 2026 hold a workshop at latitude and longitude 0,0 (Seville's `_TALLER SEVILLA`), a lab in
//! Madrid listed by both Seville and Valence, a workshop 27 km out of Toulouse, a test station
//! in Lillestrøm. Published, they would print changes nobody can act on, draw circles in the
//! sea, and could be picked as the "nearest station" of an alert while the real stations near
//! home have not been seen yet.
//!
//! A station is set aside when:
//!
//! - its position is not a real place: 0,0, a latitude outside ±90, a longitude outside ±180;
//! - or it is isolated: more than [`ISOLATED_M`] from every other station of its contract, in
//!   a contract of at least [`MIN_STATIONS`] stations where such stations are rare (at most one
//!   in twenty). A sparse or regional system, whose stations are far apart as a rule, is left
//!   alone.
//!
//! Set-aside stations are left out of the snapshot (the producer publishes only real
//! stations), logged at debug level on every poll, and announced at info level with their
//! count and keys whenever the set changes.
//!
//! Placeholder stations at a real place (Toulouse's capacity-0 stations at the city centre)
//! are kept: their counts are real, and they never change.

use std::collections::{BTreeSet, HashMap};
use velib_model::Station;

/// How far from every other station of its contract a station must be to count as isolated.
pub(crate) const ISOLATED_M: f64 = 10_000.0;

/// The smallest contract the isolation rule applies to.
pub(crate) const MIN_STATIONS: usize = 10;

/// Why a station is set aside, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misplaced {
    /// 0,0 or out of range.
    NoPosition,
    /// Far from every other station of its contract.
    Isolated,
}

impl Misplaced {
    fn reason(self) -> &'static str {
        match self {
            Misplaced::NoPosition => "its position is 0,0 or out of range",
            Misplaced::Isolated => "it is more than 10 km from every other station of its contract",
        }
    }
}

/// For each station, whether and why it is set aside. Contracts are judged separately.
pub(crate) fn judge(stations: &[Station]) -> Vec<Option<Misplaced>> {
    let mut verdicts: Vec<Option<Misplaced>> = stations
        .iter()
        .map(|s| (!s.position.is_real()).then_some(Misplaced::NoPosition))
        .collect();
    let mut by_contract: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in stations.iter().enumerate() {
        if verdicts[i].is_none() {
            by_contract.entry(&s.contract_name).or_default().push(i);
        }
    }
    // One degree of latitude is at least 110 km everywhere: a station more than this many
    // degrees of latitude away is further than ISOLATED_M, which bounds the sweep.
    let lat_window = ISOLATED_M / 110_000.0;
    for mut members in by_contract.into_values() {
        if members.len() < MIN_STATIONS {
            continue;
        }
        members.sort_by(|&a, &b| {
            stations[a]
                .position
                .lat
                .total_cmp(&stations[b].position.lat)
        });
        let has_neighbour = |k: usize| {
            let p = stations[members[k]].position;
            let near = |&j: &usize| p.distance_m(stations[j].position) <= ISOLATED_M;
            let above = members[k + 1..]
                .iter()
                .take_while(|&&j| stations[j].position.lat - p.lat <= lat_window);
            let below = members[..k]
                .iter()
                .rev()
                .take_while(|&&j| p.lat - stations[j].position.lat <= lat_window);
            above.chain(below).any(near)
        };
        let isolated: Vec<usize> = (0..members.len())
            .filter(|&k| !has_neighbour(k))
            .map(|k| members[k])
            .collect();
        if isolated.len() * 20 <= members.len() {
            for i in isolated {
                verdicts[i] = Some(Misplaced::Isolated);
            }
        }
    }
    verdicts
}

/// Remembers which stations were set aside, to announce changes once.
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    announced: BTreeSet<String>,
}

impl SetAside {
    /// `stations` without the misplaced ones (see the [module docs](self)), logging them.
    pub(crate) fn filter(&mut self, source: &str, stations: Vec<Station>) -> Vec<Station> {
        let verdicts = judge(&stations);
        if verdicts.iter().all(Option::is_none) {
            if !self.announced.is_empty() {
                tracing::info!(source, "no station is set aside any more");
                self.announced.clear();
            }
            return stations;
        }
        let mut now = BTreeSet::new();
        let mut kept = Vec::with_capacity(stations.len());
        for (station, verdict) in stations.into_iter().zip(verdicts) {
            match verdict {
                None => kept.push(station),
                Some(why) => {
                    let key = station.key().to_string();
                    tracing::debug!(source, station = %key, reason = why.reason(),
                        "station set aside (test, workshop or placeholder)");
                    now.insert(key);
                }
            }
        }
        if now != self.announced {
            let keys: Vec<&str> = now.iter().map(String::as_str).collect();
            tracing::info!(source, count = now.len(), stations = %keys.join(" "),
                "stations set aside as test, workshop or placeholder stations (position 0,0 or \
                 out of range, or more than 10 km from every other station of the contract); \
                 they are not published");
            self.announced = now;
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{Position, StationId, Status};

    fn at(contract: &str, id: u64, lat: f64, lng: f64) -> Station {
        Station {
            number: StationId::Number(id),
            contract_name: contract.into(),
            name: String::new(),
            address: String::new(),
            position: Position { lat, lng },
            banking: false,
            bonus: false,
            bike_stands: 10,
            available_bike_stands: 5,
            available_bikes: 5,
            status: Status::Open,
            last_update: None,
            snapshot_at: None,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        }
    }

    /// `n` stations on a 500 m grid around Lyon.
    fn city(contract: &str, n: u64) -> Vec<Station> {
        (0..n)
            .map(|i| {
                let (row, col) = (i / 10, i % 10);
                at(
                    contract,
                    i + 1,
                    45.75 + row as f64 * 0.0045,
                    4.83 + col as f64 * 0.0064,
                )
            })
            .collect()
    }

    #[test]
    fn zero_zero_and_out_of_range_are_set_aside_whatever_the_contract_size() {
        let mut stations = city("lyon", 3);
        stations.push(at("lyon", 300, 0.0, 0.0));
        stations.push(at("lyon", 301, 91.0, 4.0));
        stations.push(at("lyon", 302, 45.0, f64::NAN));
        let v = judge(&stations);
        assert_eq!(&v[..3], &[None, None, None]);
        assert!(v[3..].iter().all(|v| *v == Some(Misplaced::NoPosition)));
    }

    #[test]
    fn an_isolated_station_of_a_city_is_set_aside() {
        let mut stations = city("toulouse", 40);
        // 27 km out, as Toulouse's workshop; and one 400 km away, as the Madrid lab.
        stations.push(at("toulouse", 1031, 45.75, 4.83 + 0.35));
        stations.push(at("toulouse", 298, 40.448779, -3.584983));
        // The same far position in another, small contract: too few stations to judge.
        stations.push(at("lund", 1, 40.448779, -3.584983));
        let v = judge(&stations);
        assert!(v[..40].iter().all(Option::is_none));
        assert_eq!(v[40], Some(Misplaced::Isolated));
        assert_eq!(v[41], Some(Misplaced::Isolated));
        assert_eq!(v[42], None);
    }

    #[test]
    fn a_sparse_system_is_left_alone() {
        // Twelve villages 20 km apart: every station is isolated, so none is set aside.
        let stations: Vec<Station> = (0..12)
            .map(|i| at("rural", i, 45.0 + f64::from(i as u32) * 0.2, 4.0))
            .collect();
        assert!(judge(&stations).iter().all(Option::is_none));
    }

    #[test]
    fn filter_keeps_order_and_drops_only_the_misplaced() {
        let mut stations = city("seville", 20);
        stations.insert(5, at("seville", 300, 0.0, 0.0));
        let mut set_aside = SetAside::default();
        let kept = set_aside.filter("test", stations.clone());
        assert_eq!(kept.len(), 20);
        assert!(kept.iter().all(|s| s.number != StationId::Number(300)));
        assert_eq!(kept[5].number, StationId::Number(6));
        assert_eq!(set_aside.announced.len(), 1);
    }
}
