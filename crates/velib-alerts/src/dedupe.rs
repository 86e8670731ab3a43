//! Which events deserve a mail: duplicate suppression and the per-station cooldown. Pure: time
//! is the events' own time ([`EmptyStationEvent::event_time`]), never the wall clock, so a
//! replay decides exactly as the first pass did.
//!
//! # Rules
//!
//! Each line a station can cross ([`Shortage`]: no bike, no e-bike, no returns) is judged on
//! its own, by the same rules; "empty" below stands for the start of the shortage
//! (`became_empty`, `ebikes_gone`, `returns_stopped`) and "back" for its end. For each station
//! and line, remember the event time of the last "empty" mail and of the last "back" mail.
//! Then:
//!
//! - an event with the same identity (station, event time, kind) as the last mail of its kind
//!   is a [`Verdict::Duplicate`]: the monitor is at-least-once, so the same event can arrive
//!   twice;
//! - an event older than the last mail of its kind is [`Verdict::Outdated`] (a replay after a
//!   rebalance, for example);
//! - a "became empty" event less than the cooldown after the last "empty" mail is
//!   [`Verdict::CoolingDown`]: at most one "empty" mail per station per cooldown, however often
//!   the station flaps;
//! - a "bikes are back" event is only worth a mail if an "empty" mail was sent and not yet
//!   answered, otherwise it is [`Verdict::NothingToRecover`]. So recovery mails never outnumber
//!   "empty" mails, and flapping costs at most two mails per cooldown.
//!
//! # Memory
//!
//! One small entry per station that got a mail, at most `capacity` of them. Past that, entries
//! whose last mail is older than the cooldown (relative to the newest event seen) are dropped
//! first, then the least recently mailed. Forgetting a station only matters for a replay of an
//! event older than the cooldown, which the consumer's `--max-age` filter usually stops first.

use std::collections::HashMap;
use std::time::Duration;
use velib_model::{EmptyStationEvent, Shortage, StationKey};

/// What [`Dedupe::check`] decided about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Mail it.
    Send,
    /// The same event as the last mail of its kind for this station.
    Duplicate,
    /// Older than the last mail of its kind for this station.
    Outdated,
    /// An "empty" event within the cooldown of the previous "empty" mail of its line.
    CoolingDown,
    /// A "back" event with no unanswered "empty" mail of its line before it.
    NothingToRecover,
}

impl Verdict {
    /// A short name, used as the `reason` label of the suppression metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Send => "send",
            Verdict::Duplicate => "duplicate",
            Verdict::Outdated => "outdated",
            Verdict::CoolingDown => "cooldown",
            Verdict::NothingToRecover => "nothing_to_recover",
        }
    }
}

/// The mails of one station, per line ([`Shortage::ALL`]'s order).
#[derive(Debug, Clone, Copy, Default)]
struct Mailed([Line; 3]);

/// The mails of one line of one station.
#[derive(Debug, Clone, Copy, Default)]
struct Line {
    /// Event time of the last "empty" mail (the shortage started).
    empty: Option<i64>,
    /// Event time of the last "back" mail (it ended).
    recovery: Option<i64>,
}

impl Mailed {
    fn line(&self, shortage: Shortage) -> Line {
        self.0[shortage as usize]
    }

    fn last(&self) -> i64 {
        self.0
            .iter()
            .flat_map(|l| [l.empty, l.recovery])
            .flatten()
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// The cooldown and duplicate filter. See the [module docs](self) for its rules.
///
/// ```
/// use std::time::Duration;
/// use velib_alerts::dedupe::{Dedupe, Verdict};
/// # use velib_model::*;
/// # let station: Station = Station::from_json(br#"{"number": 1, "contract_name": "Lyon",
/// #   "position": {"lat": 45.7, "lng": 4.8}, "status": "OPEN", "bike_stands": 10,
/// #   "available_bike_stands": 10, "available_bikes": 0, "last_update": 1000}"#).unwrap();
/// let event = EmptyStationEvent::new(EmptinessKind::BecameEmpty, &station, 1_000);
///
/// let mut dedupe = Dedupe::new(Duration::from_secs(15 * 60), 10_000);
/// assert_eq!(dedupe.check(&event), Verdict::Send);
/// dedupe.record(&event); // once the mail server accepted the mail
/// assert_eq!(dedupe.check(&event), Verdict::Duplicate);
/// ```
#[derive(Debug, Clone)]
pub struct Dedupe {
    cooldown_ms: i64,
    capacity: usize,
    stations: HashMap<StationKey, Mailed>,
    newest: i64,
}

impl Dedupe {
    /// A filter with the given cooldown, remembering at most `capacity` stations (at least 1).
    pub fn new(cooldown: Duration, capacity: usize) -> Dedupe {
        Dedupe {
            cooldown_ms: i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX),
            capacity: capacity.max(1),
            stations: HashMap::new(),
            newest: i64::MIN,
        }
    }

    /// Whether `event` deserves a mail. Changes nothing: call [`record`](Dedupe::record) once
    /// the mail is handled.
    pub fn check(&self, event: &EmptyStationEvent) -> Verdict {
        let t = event.event_time();
        let mailed = self.stations.get(&event.key).copied().unwrap_or_default();
        let mailed = mailed.line(event.kind.shortage());
        match event.kind.is_recovery() {
            false => match mailed.empty {
                None => Verdict::Send,
                Some(last) if t == last => Verdict::Duplicate,
                Some(last) if t < last => Verdict::Outdated,
                Some(last) if t - last < self.cooldown_ms => Verdict::CoolingDown,
                Some(_) => Verdict::Send,
            },
            true => {
                if mailed.recovery == Some(t) {
                    return Verdict::Duplicate;
                }
                match (mailed.empty, mailed.recovery) {
                    (None, _) => Verdict::NothingToRecover,
                    (Some(empty), Some(recovery)) if recovery >= empty => {
                        if t < recovery {
                            Verdict::Outdated
                        } else {
                            Verdict::NothingToRecover
                        }
                    }
                    (Some(empty), _) if t < empty => Verdict::Outdated,
                    (Some(_), _) => Verdict::Send,
                }
            }
        }
    }

    /// Records that a mail for `event` was handled (accepted by the mail server, or refused
    /// for good), so its duplicates and the cooldown are judged against it.
    pub fn record(&mut self, event: &EmptyStationEvent) {
        let t = event.event_time();
        self.newest = self.newest.max(t);
        let mailed = self.stations.entry(event.key.clone()).or_default();
        let line = &mut mailed.0[event.kind.shortage() as usize];
        if event.kind.is_recovery() {
            line.recovery = Some(t);
        } else {
            line.empty = Some(t);
        }
        if self.stations.len() > self.capacity {
            self.evict();
        }
    }

    /// How many stations are remembered.
    pub fn len(&self) -> usize {
        self.stations.len()
    }

    /// Whether no station is remembered.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }

    fn evict(&mut self) {
        let (newest, cooldown) = (self.newest, self.cooldown_ms);
        self.stations
            .retain(|_, m| newest.saturating_sub(m.last()) < cooldown);
        while self.stations.len() > self.capacity {
            let oldest = self
                .stations
                .iter()
                .min_by_key(|(_, m)| m.last())
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.stations.remove(&k),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{EmptinessKind, Position, Station, StationId, Status};

    const MIN: i64 = 60_000;

    fn ev(key: &str, kind: EmptinessKind, t: i64) -> EmptyStationEvent {
        let key: StationKey = key.parse().unwrap();
        let station = Station {
            number: StationId::from_text(key.id()),
            contract_name: key.contract().to_owned(),
            name: String::new(),
            address: String::new(),
            position: Position { lat: 0.0, lng: 0.0 },
            banking: false,
            bonus: false,
            bike_stands: 1,
            available_bike_stands: 1,
            available_bikes: 0,
            status: Status::Open,
            last_update: Some(t),
            snapshot_at: None,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        EmptyStationEvent::new(kind, &station, t + 5)
    }

    fn empty(key: &str, t: i64) -> EmptyStationEvent {
        ev(key, EmptinessKind::BecameEmpty, t)
    }

    fn back(key: &str, t: i64) -> EmptyStationEvent {
        ev(key, EmptinessKind::NoLongerEmpty, t)
    }

    /// Feeds `events` through a 15-minute filter, recording what it lets through, and returns
    /// the verdicts.
    fn run(events: &[EmptyStationEvent]) -> Vec<Verdict> {
        let mut dedupe = Dedupe::new(Duration::from_secs(15 * 60), 100);
        events
            .iter()
            .map(|e| {
                let v = dedupe.check(e);
                if v == Verdict::Send {
                    dedupe.record(e);
                }
                v
            })
            .collect()
    }

    #[test]
    fn duplicates_and_cooldown() {
        use Verdict::*;
        let verdicts = run(&[
            empty("Lyon:1", 0),
            empty("Lyon:1", 0),
            empty("Lyon:2", 0),
            empty("Lyon:1", 5 * MIN),
            empty("Lyon:1", 0),
            empty("Lyon:1", 15 * MIN - 1),
            empty("Lyon:1", 15 * MIN),
            empty("Lyon:1", 15 * MIN),
            empty("Lyon:1", 10 * MIN),
        ]);
        assert_eq!(
            verdicts,
            [
                Send,
                Duplicate,
                Send,
                CoolingDown,
                Duplicate,
                CoolingDown,
                Send,
                Duplicate,
                Outdated
            ]
        );
    }

    #[test]
    fn recovery_only_answers_an_empty_mail() {
        use Verdict::*;
        let verdicts = run(&[
            back("Lyon:1", 0),
            empty("Lyon:1", MIN),
            back("Lyon:1", 2 * MIN),
            back("Lyon:1", 2 * MIN),
            // Flapping inside the cooldown: neither mail again.
            empty("Lyon:1", 3 * MIN),
            back("Lyon:1", 4 * MIN),
            // After the cooldown, one more pair.
            empty("Lyon:1", 20 * MIN),
            back("Lyon:1", 10 * MIN),
            back("Lyon:1", 21 * MIN),
        ]);
        assert_eq!(
            verdicts,
            [
                NothingToRecover,
                Send,
                Send,
                Duplicate,
                CoolingDown,
                NothingToRecover,
                Send,
                Outdated,
                Send
            ]
        );
    }

    #[test]
    fn each_line_has_its_own_cooldown_and_recovery() {
        use Verdict::*;
        let ebikes_gone = |t| ev("Lyon:1", EmptinessKind::EbikesGone, t);
        let ebikes_back = |t| ev("Lyon:1", EmptinessKind::EbikesBack, t);
        let verdicts = run(&[
            ebikes_back(0),
            empty("Lyon:1", MIN),
            // The bikes' mail neither cools down nor answers the e-bikes' line.
            ebikes_gone(MIN),
            ebikes_gone(MIN),
            back("Lyon:1", 2 * MIN),
            ebikes_back(2 * MIN),
            ebikes_gone(3 * MIN),
            ev("Lyon:1", EmptinessKind::ReturnsStopped, 3 * MIN),
            ev("Lyon:1", EmptinessKind::ReturnsResumed, 4 * MIN),
            ebikes_gone(17 * MIN),
        ]);
        assert_eq!(
            verdicts,
            [
                NothingToRecover,
                Send,
                Send,
                Duplicate,
                Send,
                Send,
                CoolingDown,
                Send,
                Send,
                Send
            ]
        );
    }

    #[test]
    fn zero_cooldown_still_drops_duplicates() {
        let mut dedupe = Dedupe::new(Duration::ZERO, 10);
        let e = empty("Lyon:1", 0);
        assert_eq!(dedupe.check(&e), Verdict::Send);
        dedupe.record(&e);
        assert_eq!(dedupe.check(&e), Verdict::Duplicate);
        assert_eq!(dedupe.check(&empty("Lyon:1", 1)), Verdict::Send);
    }

    #[test]
    fn check_does_not_record() {
        let dedupe = Dedupe::new(Duration::from_secs(60), 10);
        let e = empty("Lyon:1", 0);
        assert_eq!(dedupe.check(&e), Verdict::Send);
        assert_eq!(dedupe.check(&e), Verdict::Send);
        assert!(dedupe.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut dedupe = Dedupe::new(Duration::from_secs(15 * 60), 3);
        for i in 0..10 {
            dedupe.record(&empty(&format!("Lyon:{i}"), i * MIN));
        }
        assert_eq!(dedupe.len(), 3);
        // The most recent stations are the ones remembered.
        assert_eq!(dedupe.check(&empty("Lyon:9", 9 * MIN)), Verdict::Duplicate);
        assert_eq!(dedupe.check(&empty("Lyon:0", 0)), Verdict::Send);
    }
}
