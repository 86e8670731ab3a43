//! A seeded synthetic city: the embedded default source and the benchmark load generator.

use crate::time::now_ms;
use crate::{SourceError, StationSource};
use std::time::Duration;
use velib_model::rng::SplitMix64;
use velib_model::{Position, Snapshot, Station, StationId, Status, VehicleCount, VehicleKind};

/// Settings of a [`SimulateSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateConfig {
    /// The seed: the same seed, station count, contract count and start time give the same
    /// sequence of snapshots, on every machine and every velib version that keeps this
    /// generator (see the crate's `rng` module for why the generator is written in-crate).
    pub seed: u64,
    /// How many stations in total, spread evenly over the contracts (1 to 1,000,000 is the
    /// supported range; more works if memory allows).
    pub stations: usize,
    /// How many contracts (cities). Each numbers its stations from 1, as JCDecaux contracts
    /// do, so station numbers collide across contracts and only the `contract:number` key is
    /// unique. Zero is treated as one.
    pub contracts: usize,
    /// The fraction of stations that see an event (a rental, a return, a closure or a
    /// reopening) per snapshot, between 0 and 1. Default 0.1. A station may be drawn twice in one
    /// snapshot, so slightly fewer distinct stations change than the fraction says.
    pub change_ratio: f64,
    /// The `taken_at` of the first snapshot, in epoch milliseconds. `None` (the default) means
    /// the wall clock when the source is built; set it to make runs fully reproducible.
    pub start_ms: Option<i64>,
    /// How far the simulated clock moves per snapshot (default 1 s). The clock is simulated, not
    /// read: snapshot *k* is taken at `start_ms + k * step`, however fast it is fetched, so a
    /// benchmark can pull snapshots as fast as it likes and still get advancing timestamps.
    /// Values below 1 ms are raised to 1 ms so that timestamps strictly increase.
    pub step: Duration,
    /// The share of returned bikes that are e-bikes, between 0 and 1 (default 0.3), which is
    /// also about their share of each station's bikes at the start. Stations count their
    /// bikes by type with JCDecaux's ids, `mechanical` and `electrical`.
    pub ebike_share: f64,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            seed: 42,
            stations: 100,
            contracts: 2,
            change_ratio: 0.1,
            start_ms: None,
            step: Duration::from_secs(1),
            ebike_share: 0.3,
        }
    }
}

/// Simulated station state that the [`Station`] record does not hold.
#[derive(Debug, Clone, Copy)]
struct Dynamics {
    /// Which contract the station belongs to (an index into the per-contract pools).
    contract: u32,
    /// Between -1 and 1: how strongly the station drains (positive) or fills (negative) during
    /// the "morning" half of the tide, and the reverse in the "evening" half. This is what makes
    /// some stations run empty and others full instead of hovering around half.
    bias: f32,
}

/// A deterministic synthetic bike-share network.
///
/// Each snapshot moves about `change_ratio × stations` stations: a rental takes 1 to 3 bikes
/// from a station into its contract's pool of bikes in transit, a return docks 1 to 3 bikes from
/// that pool into free stands, and now and then an open station closes (about 1% of events) or
/// a closed one reopens (30% of the events that hit it). Bikes are conserved: docked bikes plus
/// bikes in transit stay constant per contract ([`SimulateSource::total_bikes`]). Every station
/// keeps `available_bikes + available_bike_stands == bike_stands`. A slow "tide" (one cycle per
/// 600 snapshots) makes stations with a strong bias run empty or full, as hilltop and
/// station-side docks do in real cities.
///
/// A station that changes gets `last_update` equal to the snapshot's `taken_at`; one that does
/// not keeps its previous `last_update`. The first snapshot is the initial city, whose
/// stations last reported up to ten minutes before `start_ms`.
///
/// Work per snapshot is O(changed stations) for [`SimulateSource::advance`] and
/// O(stations) for [`SimulateSource::next_snapshot`] and [`StationSource::fetch`], which
/// return an owned copy.
///
/// ```
/// use velib_source::{SimulateConfig, SimulateSource};
///
/// let cfg = SimulateConfig { seed: 7, stations: 1_000, contracts: 3, start_ms: Some(0), ..Default::default() };
/// let mut city = SimulateSource::new(cfg.clone());
/// let first = city.next_snapshot();
/// let second = city.next_snapshot();
/// assert_eq!(first.stations.len(), 1_000);
/// assert_eq!(second.taken_at, first.taken_at + 1_000);
/// // Same seed, same city.
/// assert_eq!(SimulateSource::new(cfg).next_snapshot(), first);
/// ```
#[derive(Debug, Clone)]
pub struct SimulateSource {
    cfg: SimulateConfig,
    rng: SplitMix64,
    current: Snapshot,
    dynamics: Vec<Dynamics>,
    /// Bikes ridden away from a station and not yet returned, per contract.
    in_transit: Vec<u64>,
    /// Snapshots handed out so far; the first call returns the initial city unchanged.
    served: u64,
    step_ms: i64,
    /// Draws the bike types and what is out of service. A generator of its own, so the v1
    /// counts of a seed are the same as before velib counted e-bikes.
    extras: SplitMix64,
}

/// The seed of [`SimulateSource::extras`], from the city's seed: any fixed change of it gives a
/// stream unrelated to the city's.
const EXTRAS_SEED: u64 = 0xE_B1CE_5EED;

/// Fictional city names, so simulated data cannot be mistaken for a real contract's.
const CITIES: &[&str] = &[
    "Valmont",
    "Port-Aubry",
    "Saint-Clair",
    "Belrive",
    "Montferrand-les-Bains",
    "Lavergne",
    "Castelroux",
    "Aiguebelle",
    "Fontcombe",
    "Roquemaure",
    "Villeneuve-sur-Orne",
    "Beaumarchais",
];

const STREET_TYPES: &[&str] = &[
    "Rue",
    "Avenue",
    "Boulevard",
    "Place",
    "Quai",
    "Cours",
    "Allée",
    "Impasse",
];

const STREET_NAMES: &[&str] = &[
    "Victor Hugo",
    "de la République",
    "Jean Jaurès",
    "du Marché",
    "des Tanneurs",
    "Pasteur",
    "de la Gare",
    "Gambetta",
    "des Lilas",
    "Émile Zola",
    "du Port",
    "Sainte-Catherine",
    "de l'Hôtel de Ville",
    "Voltaire",
    "des Carmes",
    "du 8 Mai 1945",
    "Louise Michel",
    "de la Liberté",
    "des Écoles",
    "Saint-Martin",
];

/// Snapshots per full tide cycle (600 one-second snapshots: a ten-minute "day").
const TIDE_PERIOD: f64 = 600.0;

impl SimulateSource {
    /// Builds the initial city. This allocates every station once (about 250 bytes each).
    pub fn new(cfg: SimulateConfig) -> Self {
        let mut rng = SplitMix64::new(cfg.seed);
        let start_ms = cfg.start_ms.unwrap_or_else(now_ms);
        let step_ms = i64::try_from(cfg.step.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let contracts = cfg.contracts.max(1);
        let mut stations = Vec::with_capacity(cfg.stations);
        let mut dynamics = Vec::with_capacity(cfg.stations);
        let mut in_transit = vec![0u64; contracts];

        for (c, pool) in in_transit.iter_mut().enumerate() {
            let name = CITIES[c % CITIES.len()];
            let contract_name = match c / CITIES.len() {
                0 => name.to_owned(),
                round => format!("{name} {}", round + 1),
            };
            // A city centre somewhere in western Europe.
            let centre_lat = 43.0 + rng.unit() * 8.0;
            let centre_lng = -1.5 + rng.unit() * 9.0;
            let count = cfg.stations / contracts + usize::from(c < cfg.stations % contracts);
            let mut docked = 0u64;
            for i in 0..count {
                let number = i as u64 + 1;
                let street = format!("{} {}", rng.pick(STREET_TYPES), rng.pick(STREET_NAMES));
                let bike_stands = rng.range(10, 40);
                let available_bikes = rng.range(0, bike_stands);
                docked += u64::from(available_bikes);
                let status = if rng.chance(0.02) {
                    Status::Closed
                } else {
                    Status::Open
                };
                stations.push(Station {
                    number: StationId::Number(number),
                    contract_name: contract_name.clone(),
                    name: format!("{number:05} - {}", street.to_uppercase()),
                    address: format!("{} {street}", rng.range(1, 120)),
                    position: Position {
                        lat: micro_degrees(centre_lat + (rng.unit() - 0.5) * 0.1),
                        lng: micro_degrees(centre_lng + (rng.unit() - 0.5) * 0.14),
                    },
                    banking: rng.chance(0.6),
                    bonus: rng.chance(0.05),
                    bike_stands,
                    available_bike_stands: bike_stands - available_bikes,
                    available_bikes,
                    status,
                    last_update: Some(start_ms - rng.below(600_000) as i64),
                    snapshot_at: None,
                    bikes_by_type: None,
                    bikes_out_of_service: None,
                    docks_out_of_service: None,
                    is_returning: None,
                });
                dynamics.push(Dynamics {
                    contract: c as u32,
                    bias: (rng.unit() * 2.0 - 1.0) as f32,
                });
            }
            // A tenth of the fleet starts out being ridden, so returns can happen at once.
            *pool = docked / 10;
        }

        let mut extras = SplitMix64::new(cfg.seed ^ EXTRAS_SEED);
        let share = cfg.ebike_share.clamp(0.0, 1.0);
        for station in &mut stations {
            let ebikes = (0..station.available_bikes)
                .filter(|_| extras.chance(share))
                .count() as u32;
            set_ebikes(station, ebikes);
            station.bikes_out_of_service = Some(out_of_service(&mut extras));
            station.docks_out_of_service = Some(out_of_service(&mut extras));
            station.is_returning = Some(true);
        }

        SimulateSource {
            cfg,
            rng,
            extras,
            current: Snapshot {
                taken_at: start_ms,
                stations,
            },
            dynamics,
            in_transit,
            served: 0,
            step_ms,
        }
    }

    /// The next snapshot, as an owned copy (O(stations) clone).
    pub fn next_snapshot(&mut self) -> Snapshot {
        self.advance().clone()
    }

    /// Moves the city to its next snapshot and lends it out, without copying: O(changed
    /// stations), no allocation. For benchmarks that serialise straight from the borrowed
    /// snapshot. The first call returns the initial city.
    pub fn advance(&mut self) -> &Snapshot {
        if self.served > 0 {
            self.step();
        }
        self.served += 1;
        &self.current
    }

    /// Bikes in the system, docked or in transit. Constant for the life of the source.
    pub fn total_bikes(&self) -> u64 {
        let docked: u64 = self
            .current
            .stations
            .iter()
            .map(|s| u64::from(s.available_bikes))
            .sum();
        docked + self.bikes_in_transit()
    }

    /// Bikes currently ridden (taken from one station, not yet returned to another).
    pub fn bikes_in_transit(&self) -> u64 {
        self.in_transit.iter().sum()
    }

    fn step(&mut self) {
        let now = self.current.taken_at.saturating_add(self.step_ms);
        self.current.taken_at = now;
        let n = self.current.stations.len();
        if n == 0 {
            return;
        }
        let tide = (std::f64::consts::TAU * self.served as f64 / TIDE_PERIOD).sin();
        let events = (self.cfg.change_ratio.clamp(0.0, 1.0) * n as f64).round() as usize;
        for _ in 0..events {
            let idx = self.rng.below(n as u64) as usize;
            let dyn_ = self.dynamics[idx];
            let pool = &mut self.in_transit[dyn_.contract as usize];
            let station = &mut self.current.stations[idx];
            let changed = match station.status {
                Status::Closed => {
                    let reopen = self.rng.chance(0.3);
                    if reopen {
                        station.status = Status::Open;
                    }
                    reopen
                }
                Status::Open if self.rng.chance(0.01) => {
                    station.status = Status::Closed;
                    true
                }
                Status::Open => {
                    let p_rent = 0.5 + 0.4 * f64::from(dyn_.bias) * tide;
                    let rent_first = self.rng.chance(p_rent);
                    let amount = self.rng.range(1, 3);
                    let before = station.available_bikes;
                    let moved = move_bikes(station, pool, amount, rent_first);
                    let share = self.cfg.ebike_share.clamp(0.0, 1.0);
                    split_moved(station, before, share, &mut self.extras);
                    moved
                }
            };
            // Now and then a bike or a dock breaks down or is repaired.
            if self.extras.chance(0.02) {
                if self.extras.chance(0.5) {
                    station.bikes_out_of_service = Some(out_of_service(&mut self.extras));
                } else {
                    station.docks_out_of_service = Some(out_of_service(&mut self.extras));
                }
            }
            if changed {
                station.last_update = Some(now);
            }
        }
    }
}

/// Bikes or docks out of service at a station: none at most stations, one or two at some.
fn out_of_service(extras: &mut SplitMix64) -> u32 {
    if extras.chance(0.1) {
        extras.range(1, 2)
    } else {
        0
    }
}

/// The station's e-bike count, the rest of its bikes being classic. Updates the counts in
/// place, so a snapshot step allocates nothing.
fn set_ebikes(station: &mut Station, ebikes: u32) {
    let ebikes = ebikes.min(station.available_bikes);
    let classic = station.available_bikes - ebikes;
    if let Some([c, e]) = station.bikes_by_type.as_deref_mut() {
        (c.count, e.count) = (classic, ebikes);
        return;
    }
    let count = |id: &'static str, kind, count| VehicleCount {
        vehicle_type_id: id.into(),
        kind,
        count,
    };
    station.bikes_by_type = Some(vec![
        count("mechanical", VehicleKind::Classic, classic),
        count("electrical", VehicleKind::Electric, ebikes),
    ]);
}

/// Splits the bikes that just left or came to `station` (it had `before`) into e-bikes and
/// classic bikes: a bike rented is an e-bike as often as the station's bikes were; a bike
/// returned is one with probability `share`. The pool of ridden bikes is not split by type,
/// so the count of e-bikes is drawn, not conserved.
fn split_moved(station: &mut Station, before: u32, share: f64, extras: &mut SplitMix64) {
    let mut ebikes = station.ebikes().unwrap_or(0);
    if station.available_bikes < before {
        let mut left = before;
        for _ in station.available_bikes..before {
            if extras.below(u64::from(left)) < u64::from(ebikes) {
                ebikes -= 1;
            }
            left -= 1;
        }
    } else {
        for _ in before..station.available_bikes {
            if extras.chance(share) {
                ebikes += 1;
            }
        }
    }
    set_ebikes(station, ebikes);
}

/// Rents (bikes leave the station for the pool) or returns (bikes come from the pool into free
/// stands), falling back to the other when the preferred one is impossible. Returns whether
/// anything moved.
fn move_bikes(station: &mut Station, pool: &mut u64, amount: u32, rent_first: bool) -> bool {
    type Move = fn(&mut Station, &mut u64, u32) -> bool;
    let (first, second): (Move, Move) = if rent_first {
        (rent, give_back)
    } else {
        (give_back, rent)
    };
    first(station, pool, amount) || second(station, pool, amount)
}

/// Up to `amount` bikes leave the station for the pool.
fn rent(station: &mut Station, pool: &mut u64, amount: u32) -> bool {
    let n = amount.min(station.available_bikes);
    station.available_bikes -= n;
    station.available_bike_stands += n;
    *pool += u64::from(n);
    n > 0
}

/// Up to `amount` bikes come from the pool into free stands.
fn give_back(station: &mut Station, pool: &mut u64, amount: u32) -> bool {
    let n = u64::from(amount.min(station.available_bike_stands)).min(*pool) as u32;
    station.available_bikes += n;
    station.available_bike_stands -= n;
    *pool -= u64::from(n);
    n > 0
}

/// Rounds to six decimals (about 10 cm), the precision real feeds publish. It also makes the
/// coordinates survive a JSON round trip exactly: serde_json parses short decimals exactly, but
/// not every 17-digit one, and a recording replayed must compare equal to what was recorded.
fn micro_degrees(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

impl StationSource for SimulateSource {
    fn describe(&self) -> String {
        format!(
            "simulated city: {} stations in {} contracts (seed {}, {} changing per snapshot, \
             {} of returned bikes electric)",
            self.current.stations.len(),
            self.cfg.contracts.max(1),
            self.cfg.seed,
            self.cfg.change_ratio,
            self.cfg.ebike_share
        )
    }

    /// Returns the next snapshot at once: the simulated clock does not wait for the wall clock.
    /// The next snapshot, every station stamped with its time (a poll is a newer snapshot).
    async fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        Ok(self.next_snapshot().stamped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn cfg(seed: u64, stations: usize, contracts: usize) -> SimulateConfig {
        SimulateConfig {
            seed,
            stations,
            contracts,
            start_ms: Some(1_700_000_000_000),
            ..SimulateConfig::default()
        }
    }

    #[test]
    fn same_seed_same_snapshots_different_seed_different_city() {
        let mut a = SimulateSource::new(cfg(9, 500, 3));
        let mut b = SimulateSource::new(cfg(9, 500, 3));
        for _ in 0..50 {
            assert_eq!(a.next_snapshot(), b.next_snapshot());
        }
        let mut c = SimulateSource::new(cfg(10, 500, 3));
        let mut a = SimulateSource::new(cfg(9, 500, 3));
        assert_ne!(a.next_snapshot(), c.next_snapshot());
    }

    #[test]
    fn conserves_bikes_and_stand_counts() {
        let mut sim = SimulateSource::new(cfg(1, 2_000, 4));
        let total = sim.total_bikes();
        assert!(total > 0);
        for _ in 0..300 {
            let snap = sim.advance();
            for s in &snap.stations {
                assert_eq!(s.available_bikes + s.available_bike_stands, s.bike_stands);
            }
            assert_eq!(sim.total_bikes(), total);
        }
    }

    #[test]
    fn time_advances_and_only_changed_stations_get_a_new_last_update() {
        let mut sim = SimulateSource::new(cfg(3, 1_000, 2));
        let mut prev = sim.next_snapshot();
        assert_eq!(prev.taken_at, 1_700_000_000_000);
        let mut changed_total = 0;
        for _ in 0..20 {
            let next = sim.next_snapshot();
            assert_eq!(next.taken_at, prev.taken_at + 1_000);
            for (old, new) in prev.stations.iter().zip(&next.stations) {
                assert_eq!(old.key(), new.key());
                let moved = old.available_bikes != new.available_bikes
                    || old.available_bike_stands != new.available_bike_stands
                    || old.status != new.status;
                if moved {
                    changed_total += 1;
                    assert_eq!(new.last_update, Some(next.taken_at), "{}", new.key());
                } else if new.last_update != old.last_update {
                    // A station drawn twice may change and change back within one snapshot;
                    // it still reported, so only the current time is acceptable.
                    assert_eq!(new.last_update, Some(next.taken_at), "{}", new.key());
                }
            }
            prev = next;
        }
        // About 10% of 1,000 stations per snapshot, minus no-op draws.
        assert!(changed_total > 20 * 50, "only {changed_total} changes");
    }

    #[test]
    fn numbers_collide_across_contracts_but_keys_are_unique() {
        let mut sim = SimulateSource::new(cfg(5, 300, 3));
        let snap = sim.next_snapshot();
        let keys: HashSet<_> = snap.stations.iter().map(Station::key).collect();
        assert_eq!(keys.len(), 300);
        let mut per_contract: HashMap<&str, usize> = HashMap::new();
        for s in &snap.stations {
            *per_contract.entry(&s.contract_name).or_default() += 1;
        }
        assert_eq!(per_contract.len(), 3);
        assert!(per_contract.values().all(|&n| n == 100));
        let ones = snap
            .stations
            .iter()
            .filter(|s| s.number == StationId::Number(1))
            .count();
        assert_eq!(ones, 3);
    }

    #[test]
    fn stations_go_empty_full_and_closed() {
        let mut sim = SimulateSource::new(cfg(11, 2_000, 2));
        let (mut empty, mut full, mut closed) = (false, false, false);
        for _ in 0..400 {
            let snap = sim.advance();
            empty |= snap.stations.iter().any(|s| s.is_empty());
            full |= snap
                .stations
                .iter()
                .any(|s| s.status == Status::Open && s.available_bike_stands == 0);
            closed |= snap.stations.iter().any(|s| s.status == Status::Closed);
        }
        assert!(
            empty && full && closed,
            "empty {empty} full {full} closed {closed}"
        );
    }

    /// The v1 fields with the record's own extras cleared: what a seed gave before velib
    /// counted e-bikes.
    fn v1(snapshot: &Snapshot) -> Vec<Station> {
        snapshot
            .stations
            .iter()
            .map(|s| Station {
                bikes_by_type: None,
                bikes_out_of_service: None,
                docks_out_of_service: None,
                is_returning: None,
                ..s.clone()
            })
            .collect()
    }

    #[test]
    fn e_bikes_follow_the_share_without_changing_the_v1_counts() {
        let with_share = |share| {
            SimulateSource::new(SimulateConfig {
                ebike_share: share,
                ..cfg(4, 1_000, 2)
            })
        };
        let (mut none, mut most) = (with_share(0.0), with_share(0.8));
        let (mut ebike_changes, mut out_of_service) = (0, 0);
        let mut previous = most.next_snapshot();
        none.next_snapshot();
        for _ in 0..100 {
            let (a, b) = (none.next_snapshot(), most.next_snapshot());
            assert_eq!(v1(&a), v1(&b), "the share changes only the split by type");
            assert!(a.stations.iter().all(|s| s.ebikes() == Some(0)));
            for (old, s) in previous.stations.iter().zip(&b.stations) {
                let (e, c) = (s.ebikes().unwrap(), s.classic_bikes().unwrap());
                assert_eq!(e + c, s.available_bikes, "{}", s.key());
                ebike_changes += usize::from(old.ebikes() != s.ebikes());
                out_of_service += usize::from(
                    s.bikes_out_of_service != Some(0) || s.docks_out_of_service != Some(0),
                );
            }
            previous = b;
        }
        let (bikes, ebikes) = previous.stations.iter().fold((0, 0), |(b, e), s| {
            (b + s.available_bikes, e + s.ebikes().unwrap())
        });
        // About 80 % of returned bikes are electric: well over half of the docked ones by now.
        assert!(ebikes * 2 > bikes, "{ebikes} e-bikes of {bikes}");
        assert!(ebike_changes > 1_000, "{ebike_changes} e-bike changes");
        assert!(out_of_service > 0);
    }

    #[test]
    fn records_serialise_as_valid_v1_stations() {
        let mut sim = SimulateSource::new(cfg(2, 50, 2));
        for s in &sim.next_snapshot().stations {
            assert_eq!(&Station::from_json(&s.to_json()).unwrap(), s);
            assert!(!s.address.is_empty() && !s.name.is_empty());
        }
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let mut none = SimulateSource::new(SimulateConfig {
            stations: 0,
            contracts: 0,
            change_ratio: 5.0,
            ..cfg(1, 0, 0)
        });
        assert!(none.next_snapshot().stations.is_empty());
        assert!(none.next_snapshot().stations.is_empty());
        let mut many_contracts = SimulateSource::new(cfg(1, 3, 30));
        assert_eq!(many_contracts.next_snapshot().stations.len(), 3);
    }
}
