//! Mails about a station's health: the changes an exactly-once monitor with `--stats` publishes
//! on `velib-station-health` (a station **locked**: open, but its counts have not moved for
//! longer than its usual activity makes likely; **degraded**: too many docks out of service;
//! and back to **ok**). Pure: what to mail, and where the station is.
//!
//! # Rules
//!
//! - A change to a health asked for (`--alert-on locked`, `degraded`) is mailed. One change is
//!   one record: the monitor publishes each once (exactly once, read here `read_committed`),
//!   and a station changes health over hours, not seconds, so there is no cooldown. The same
//!   change read again (a replay after this consumer's crash) is a duplicate, not mailed again.
//! - A change back to ok is mailed only with `--notify-recovery`, and only when the change it
//!   ends was mailed (as for shortages: recovery mails never outnumber the others).
//! - A change older than `--max-age` (by the snapshot that decided it) is not mailed.
//!
//! # Names and places
//!
//! A health change names its station by key alone. [`Places`] remembers the name, address and
//! position the events topic gave for each station, so a mail can say `12 - PLACE BELLECOUR
//! (lyon)` and link to a map; a station no event has named yet is called by its key. The
//! `--near` selector uses the same positions: a station whose position is not known yet is not
//! near anything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use velib_model::{EmptyStationEvent, Health, Position, Shortage, StationHealthEvent, StationKey};

/// One thing `--alert-on` names: a shortage of the events topic, or a health of the health
/// topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertOn {
    /// `bikes`, `ebikes`, `returns`.
    Shortage(Shortage),
    /// `locked`, `degraded`.
    Health(Health),
}

/// The health names `--alert-on` takes.
const HEALTHS: [Health; 2] = [Health::Locked, Health::Degraded];

/// `locked` or `degraded` (`ok` for a recovery).
pub fn health_name(health: Health) -> &'static str {
    match health {
        Health::Ok => "ok",
        Health::Locked => "locked",
        Health::Degraded => "degraded",
    }
}

impl FromStr for AlertOn {
    type Err = String;

    fn from_str(s: &str) -> Result<AlertOn, String> {
        if let Ok(shortage) = s.parse::<Shortage>() {
            return Ok(AlertOn::Shortage(shortage));
        }
        HEALTHS
            .into_iter()
            .find(|h| health_name(*h).eq_ignore_ascii_case(s.trim()))
            .map(AlertOn::Health)
            .ok_or_else(|| format!("`{s}` is not one of bikes, ebikes, returns, locked, degraded"))
    }
}

impl fmt::Display for AlertOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertOn::Shortage(s) => f.write_str(s.as_str()),
            AlertOn::Health(h) => f.write_str(health_name(*h)),
        }
    }
}

/// What the events topic said of a station: how a mail names it and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Its name, as the feed wrote it.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its contract, as the feed spells it.
    pub contract: String,
    /// Where it is (a placeholder position is not kept).
    pub position: Option<Position>,
}

/// The [`Place`] of every station the events topic named, the latest for each; at most
/// `capacity` stations (past that, stations not yet known are not learnt).
#[derive(Debug, Clone)]
pub struct Places {
    capacity: usize,
    places: HashMap<StationKey, Place>,
}

impl Places {
    /// An empty memory of at most `capacity` stations.
    pub fn new(capacity: usize) -> Places {
        Places {
            capacity,
            places: HashMap::new(),
        }
    }

    /// Remembers what `event` says of its station.
    pub fn learn(&mut self, event: &EmptyStationEvent) {
        if self.places.len() >= self.capacity && !self.places.contains_key(&event.key) {
            return;
        }
        let place = Place {
            name: event.name.clone(),
            address: event.address.clone(),
            contract: event.contract.clone(),
            position: event.position.is_real().then_some(event.position),
        };
        self.places.insert(event.key.clone(), place);
    }

    /// What is known of `key`'s station.
    pub fn get(&self, key: &StationKey) -> Option<&Place> {
        self.places.get(key)
    }
}

/// Why a health change is not mailed, or that it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Mail it.
    Send,
    /// A health not asked for with `--alert-on`.
    NotRequested,
    /// Back to ok, without `--notify-recovery`.
    RecoveryNotRequested,
    /// Back to ok from a change that was not mailed.
    NothingToRecover,
    /// The same change as one already mailed.
    Duplicate,
}

impl HealthVerdict {
    /// A short name, used as the `reason` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthVerdict::Send => "send",
            HealthVerdict::NotRequested => "health_not_requested",
            HealthVerdict::RecoveryNotRequested => "recovery_not_requested",
            HealthVerdict::NothingToRecover => "nothing_to_recover",
            HealthVerdict::Duplicate => "duplicate",
        }
    }
}

/// The rules of the [module docs](self), with the memory they need: the changes mailed
/// (identity: station, decision time, new health), at most `capacity`, oldest forgotten first;
/// and the stations whose last mailed change was not ok.
#[derive(Debug, Clone)]
pub struct HealthAlerts {
    wanted: Vec<Health>,
    notify_recovery: bool,
    capacity: usize,
    mailed: HashSet<(StationKey, i64, Health)>,
    order: VecDeque<(StationKey, i64, Health)>,
    unwell: HashSet<StationKey>,
}

impl HealthAlerts {
    /// Mails changes to the `wanted` healths (and back to ok with `notify_recovery`),
    /// remembering at most `capacity` mailed changes.
    pub fn new(
        wanted: impl IntoIterator<Item = Health>,
        notify_recovery: bool,
        capacity: usize,
    ) -> HealthAlerts {
        HealthAlerts {
            wanted: wanted.into_iter().collect(),
            notify_recovery,
            capacity: capacity.max(1),
            mailed: HashSet::new(),
            order: VecDeque::new(),
            unwell: HashSet::new(),
        }
    }

    /// Whether any health is asked for.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Whether `change` deserves a mail. Changes nothing: call [`record`](Self::record) once
    /// the mail is handled.
    pub fn check(&self, change: &StationHealthEvent) -> HealthVerdict {
        if self.mailed.contains(&identity(change)) {
            return HealthVerdict::Duplicate;
        }
        match change.health {
            Health::Ok if !self.notify_recovery => HealthVerdict::RecoveryNotRequested,
            Health::Ok if !self.unwell.contains(&change.key) => HealthVerdict::NothingToRecover,
            Health::Ok => HealthVerdict::Send,
            h if self.wanted.contains(&h) => HealthVerdict::Send,
            _ => HealthVerdict::NotRequested,
        }
    }

    /// Remembers that `change` was mailed.
    pub fn record(&mut self, change: &StationHealthEvent) {
        if change.health == Health::Ok {
            self.unwell.remove(&change.key);
        } else {
            self.unwell.insert(change.key.clone());
        }
        let id = identity(change);
        if self.mailed.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.mailed.remove(&old);
            }
        }
    }
}

fn identity(change: &StationHealthEvent) -> (StationKey, i64, Health) {
    (change.key.clone(), change.decided_at, change.health)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, health: Health, previous: Health, at: i64) -> StationHealthEvent {
        StationHealthEvent {
            version: StationHealthEvent::VERSION,
            key: key.parse().unwrap(),
            health,
            previous,
            since: at - 3_600_000,
            decided_at: at,
            reason: "no movement".into(),
        }
    }

    #[test]
    fn alert_on_reads_shortages_and_healths() {
        assert_eq!("ebikes".parse(), Ok(AlertOn::Shortage(Shortage::Ebikes)));
        assert_eq!(" Locked".parse(), Ok(AlertOn::Health(Health::Locked)));
        assert_eq!("degraded".parse(), Ok(AlertOn::Health(Health::Degraded)));
        let refused = "ok".parse::<AlertOn>().unwrap_err();
        assert!(refused.contains("locked, degraded"), "{refused}");
        assert_eq!(AlertOn::Health(Health::Locked).to_string(), "locked");
    }

    #[test]
    fn only_asked_healths_and_answered_recoveries_are_mailed() {
        let mut alerts = HealthAlerts::new([Health::Locked], true, 10);
        let locked = change("lyon:1", Health::Locked, Health::Ok, 1_000);
        let degraded = change("lyon:2", Health::Degraded, Health::Ok, 1_000);
        let back_unmailed = change("lyon:2", Health::Ok, Health::Degraded, 2_000);
        let back = change("lyon:1", Health::Ok, Health::Locked, 2_000);
        assert_eq!(alerts.check(&degraded), HealthVerdict::NotRequested);
        assert_eq!(alerts.check(&back), HealthVerdict::NothingToRecover);
        assert_eq!(alerts.check(&locked), HealthVerdict::Send);
        alerts.record(&locked);
        assert_eq!(alerts.check(&locked), HealthVerdict::Duplicate);
        assert_eq!(
            alerts.check(&back_unmailed),
            HealthVerdict::NothingToRecover
        );
        assert_eq!(alerts.check(&back), HealthVerdict::Send);
        alerts.record(&back);
        // Locked again later: a new change, mailed.
        let again = change("lyon:1", Health::Locked, Health::Ok, 9_000);
        assert_eq!(alerts.check(&again), HealthVerdict::Send);

        let quiet = HealthAlerts::new([Health::Locked], false, 10);
        assert_eq!(quiet.check(&back), HealthVerdict::RecoveryNotRequested);
    }

    #[test]
    fn the_memory_of_mailed_changes_is_bounded() {
        let mut alerts = HealthAlerts::new([Health::Locked], false, 2);
        let changes: Vec<_> = (0..3)
            .map(|i| change(&format!("lyon:{i}"), Health::Locked, Health::Ok, 1_000))
            .collect();
        for c in &changes {
            alerts.record(c);
        }
        assert_eq!(alerts.mailed.len(), 2);
        // The oldest is forgotten first.
        assert_eq!(alerts.check(&changes[0]), HealthVerdict::Send);
        assert_eq!(alerts.check(&changes[2]), HealthVerdict::Duplicate);
    }
}
