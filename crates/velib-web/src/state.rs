//! What the map shows, kept from the records: each station's latest record and its recent
//! counts, the latest change lines, and what is waiting to be pushed to the pages.
//!
//! Pure: no I/O and no clock; times come in as arguments (epoch milliseconds), so every rule
//! here is tested with plain unit tests.
//!
//! # Which record wins
//!
//! Records of one station arrive in order (one key, one partition), but a producer restarted
//! on an older recording, or two producers, can deliver an older state after a newer one. As
//! in the monitor, records are ordered by the snapshot they come from
//! ([`Station::snapshot_at`](velib_model::Station::snapshot_at); a station's own `last_update` is a heartbeat in real feeds and
//! can go back in time while the counts move): a record from an older snapshot, or a different
//! record from the same snapshot, is *stale*: it is counted and ignored. A record without
//! `snapshot_at` always replaces the kept one.
//!
//! # Coordinates
//!
//! A station whose position is missing, `null`, not a number, out of range (|lat| > 90,
//! |lng| > 180) or exactly (0, 0) (a common placeholder for "unknown") is kept and counted in
//! the totals, but has no place on the map: it is sent without coordinates and counted in
//! [`MapState::off_map`].

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use velib_model::stats::{Health, StationHealthEvent};
use velib_model::{
    ChangeLine, EmptinessKind, EmptyStationEvent, Position, Station, StationError, Status,
};

/// How much history the state keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Counts of bikes kept per station for its sparkline.
    pub history: usize,
    /// Change lines kept for a page that opens (the live feed's backlog).
    pub feed: usize,
}

impl Default for Limits {
    /// 30 counts per station, 100 feed lines.
    fn default() -> Limits {
        Limits {
            history: 30,
            feed: 100,
        }
    }
}

/// Reads a station record, accepting one whose only fault is its position.
///
/// Returns the station and whether its position can be drawn. A record with a missing or
/// `null` position, or one that is not a pair of numbers, comes back with position (0, 0) and
/// `false`.
///
/// # Errors
///
/// Any other fault, as [`Station::from_json`] reports it.
pub fn read_station(bytes: &[u8]) -> Result<(Station, bool), StationError> {
    match Station::from_json(bytes) {
        Ok(station) => {
            let located = is_drawable(station.position);
            Ok((station, located))
        }
        Err(error)
            if error
                .field
                .as_deref()
                .is_some_and(|f| f.starts_with("position")) =>
        {
            // Read it again with the position replaced, so a station that says where it is not
            // is still counted; any other fault still rejects the record.
            let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(bytes) else {
                return Err(error);
            };
            object.insert("position".to_owned(), json!({"lat": 0.0, "lng": 0.0}));
            let station = Station::from_value(&Value::Object(object)).map_err(|_| error)?;
            Ok((station, false))
        }
        Err(error) => Err(error),
    }
}

/// Whether a position can be drawn: finite, within the WGS 84 ranges, and not the (0, 0)
/// placeholder.
pub fn is_drawable(p: Position) -> bool {
    p.lat.is_finite()
        && p.lng.is_finite()
        && p.lat.abs() <= 90.0
        && p.lng.abs() <= 180.0
        && !(p.lat == 0.0 && p.lng == 0.0)
}

/// What a station record did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The first record of this station.
    New,
    /// Its counts, status, text or position changed.
    Changed,
    /// The same as the kept record.
    Unchanged,
    /// From an older snapshot than the kept record (by `snapshot_at`): ignored.
    Stale,
}

/// A line of the live feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedLine {
    /// When it happened: the record's snapshot time, else its `last_update`, else when it was
    /// observed (epoch ms).
    pub at: i64,
    /// The station's key, `contract:id`.
    pub key: String,
    /// The station's contract, for the page's contract filter.
    pub contract: String,
    /// The line: the tutorial's `+1 ADDRESS (Contract)` for a change of free stands, or, for
    /// each transition of the monitor's events, `no bikes: ADDRESS (Contract)` / `bikes back:
    /// …`, `no e-bikes: …` / `e-bikes back: …`, `no returns: …` / `returns back: …`.
    pub text: String,
}

impl FeedLine {
    fn to_json(&self) -> Value {
        json!({"at": self.at, "key": self.key, "contract": self.contract, "text": self.text})
    }
}

#[derive(Debug)]
struct Entry {
    station: Station,
    located: bool,
    /// When its counts or status last changed (the record's time).
    changed_at: i64,
    /// (time, bikes) of its last changes, oldest first.
    history: VecDeque<(i64, u32)>,
    /// Whether the monitor's last event about it said "empty".
    reported_empty: bool,
}

/// The counts of a [`MapState`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Stations known.
    pub stations: usize,
    /// Known stations that cannot be drawn.
    pub off_map: usize,
    /// Records read, both topics.
    pub records: u64,
    /// Records that could not be read.
    pub unreadable: u64,
    /// The newest record timestamp seen (epoch ms), if any.
    pub newest: Option<i64>,
}

impl Summary {
    /// How old the newest record is at `now` (ms), if any arrived.
    pub fn data_age(&self, now: i64) -> Option<i64> {
        self.newest.map(|n| (now - n).max(0))
    }
}

/// Every station's latest state, the feed, and what the pages have not been sent yet.
#[derive(Debug, Default)]
pub struct MapState {
    limits: Limits,
    stations: HashMap<String, Entry>,
    feed: VecDeque<FeedLine>,
    /// Keys changed since the last batch.
    dirty: HashSet<String>,
    /// Feed lines since the last batch.
    fresh_feed: Vec<FeedLine>,
    off_map: usize,
    records: u64,
    unreadable: u64,
    stale: u64,
    /// The newest record timestamp seen (epoch ms): "data age" is measured from it.
    newest: Option<i64>,
    /// Each station's latest health change (by `decided_at`), kept for stations not seen yet
    /// too: the health topic may be read before the stations topic.
    health: HashMap<String, StationHealthEvent>,
}

impl MapState {
    /// An empty state keeping what `limits` says.
    pub fn new(limits: Limits) -> MapState {
        MapState {
            limits,
            ..MapState::default()
        }
    }

    /// Applies one record of the stations topic, read from `bytes`, observed at `observed`
    /// (the Kafka timestamp, epoch ms).
    ///
    /// # Errors
    ///
    /// An unreadable record (counted in [`MapState::unreadable`]).
    pub fn apply_record(&mut self, bytes: &[u8], observed: i64) -> Result<Applied, StationError> {
        self.records += 1;
        self.see_time(observed);
        match read_station(bytes) {
            Ok((station, located)) => Ok(self.apply_station(station, located, observed)),
            Err(e) => {
                self.unreadable += 1;
                Err(e)
            }
        }
    }

    /// Applies one station, whose position is drawable when `located`.
    pub fn apply_station(&mut self, station: Station, located: bool, observed: i64) -> Applied {
        self.see_time(observed);
        let at = station
            .snapshot_at
            .or(station.last_update)
            .unwrap_or(observed);
        let key = station.key().to_string();
        let Some(entry) = self.stations.get_mut(&key) else {
            if !located {
                self.off_map += 1;
            }
            self.stations.insert(
                key.clone(),
                Entry {
                    located,
                    changed_at: at,
                    history: VecDeque::from([(at, station.available_bikes)]),
                    reported_empty: false,
                    station,
                },
            );
            self.dirty.insert(key);
            return Applied::New;
        };
        if let (Some(new), Some(kept)) = (station.snapshot_at, entry.station.snapshot_at)
            && (new < kept || (new == kept && entry.station != station))
        {
            self.stale += 1;
            return Applied::Stale;
        }
        if entry.station == station && entry.located == located {
            return Applied::Unchanged;
        }
        let old = &entry.station;
        if old.available_bike_stands != station.available_bike_stands {
            let line = FeedLine {
                at,
                key: key.clone(),
                contract: station.contract_name.clone(),
                text: ChangeLine {
                    previous: old.available_bike_stands,
                    current: station.available_bike_stands,
                    address: &station.address,
                    contract: &station.contract_name,
                }
                .to_string(),
            };
            self.fresh_feed.push(line.clone());
            push_capped(&mut self.feed, line, self.limits.feed);
        }
        if old.available_bikes != station.available_bikes
            || old.available_bike_stands != station.available_bike_stands
            || old.bike_stands != station.bike_stands
            || old.status != station.status
        {
            entry.changed_at = at;
            push_capped(
                &mut entry.history,
                (at, station.available_bikes),
                self.limits.history,
            );
        }
        match (entry.located, located) {
            (true, false) => self.off_map += 1,
            (false, true) => self.off_map -= 1,
            _ => {}
        }
        entry.located = located;
        entry.station = station;
        self.dirty.insert(key);
        Applied::Changed
    }

    /// Applies one record of the monitor's empty-station events: a feed line, and the station
    /// marked as reported empty (or not) until the next event about it.
    ///
    /// # Errors
    ///
    /// An unreadable event (counted in [`MapState::unreadable`]).
    pub fn apply_event_record(&mut self, bytes: &[u8], observed: i64) -> Result<(), String> {
        self.records += 1;
        self.see_time(observed);
        let event = EmptyStationEvent::from_json(bytes).inspect_err(|_| self.unreadable += 1)?;
        self.apply_event(&event);
        Ok(())
    }

    /// Applies a monitor event: a feed line per transition it reports (no bikes, no e-bikes,
    /// no returns, or their end); the bikes' transition also marks the station as reported
    /// empty (or not) until the next one.
    pub fn apply_event(&mut self, event: &EmptyStationEvent) {
        let key = event.key.to_string();
        for kind in event.kinds() {
            let line = FeedLine {
                at: event.event_time(),
                key: key.clone(),
                contract: event.contract.clone(),
                text: format!("{}: {} ({})", label(kind), event.address, event.contract),
            };
            self.fresh_feed.push(line.clone());
            push_capped(&mut self.feed, line, self.limits.feed);
            let empty = match kind {
                EmptinessKind::BecameEmpty => true,
                EmptinessKind::NoLongerEmpty => false,
                _ => continue,
            };
            if let Some(entry) = self.stations.get_mut(&key)
                && entry.reported_empty != empty
            {
                entry.reported_empty = empty;
                self.dirty.insert(key.clone());
            }
        }
    }

    fn see_time(&mut self, observed: i64) {
        self.newest = Some(self.newest.map_or(observed, |n| n.max(observed)));
    }

    /// How many stations are known.
    pub fn len(&self) -> usize {
        self.stations.len()
    }

    /// Whether no station is known yet.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }

    /// How many known stations cannot be drawn (see the module docs).
    pub fn off_map(&self) -> usize {
        self.off_map
    }

    /// Records read, both topics.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records that could not be read.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// Station records ignored as older than the kept one.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// How old the newest record is at `now` (ms), if any arrived.
    pub fn data_age(&self, now: i64) -> Option<i64> {
        self.summary().data_age(now)
    }

    /// Whether anything changed since the last [`take_batch`](MapState::take_batch).
    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty() || !self.fresh_feed.is_empty()
    }

    /// The current feed lines, oldest first.
    pub fn feed(&self) -> impl Iterator<Item = &FeedLine> {
        self.feed.iter()
    }

    /// The counts `/health` reports, copied out so that it need not wait for the state.
    pub fn summary(&self) -> Summary {
        Summary {
            stations: self.stations.len(),
            off_map: self.off_map,
            records: self.records,
            unreadable: self.unreadable,
            newest: self.newest,
        }
    }

    /// Everything a page needs to start, as JSON: every station, the feed, the counts and the
    /// data age at `now`.
    ///
    /// The feed lines still waiting for the next [`take_batch`](MapState::take_batch) are left
    /// out, since that batch carries them: a page that starts from this snapshot and then
    /// applies every later batch shows each line once. Stations are sent as they are now;
    /// the next batch may send some of them again, which changes nothing.
    pub fn snapshot_json(&self, now: i64) -> String {
        let mut stations: Vec<(&String, &Entry)> = self.stations.iter().collect();
        stations.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let stations: Vec<Value> = stations
            .into_iter()
            .map(|(k, e)| self.station_json(k, e))
            .collect();
        // The pending lines are the newest of the feed (both got each line at once), unless
        // more are pending than the feed keeps.
        let sent = self.feed.len().saturating_sub(self.fresh_feed.len());
        let feed: Vec<Value> = self.feed.iter().take(sent).map(FeedLine::to_json).collect();
        self.message(stations, feed, now).to_string()
    }

    /// What changed since the last batch (stations and feed lines), as JSON with the counts
    /// and data age at `now`; clears the pending changes. Empty lists when nothing changed:
    /// the pages still learn the data age.
    pub fn take_batch(&mut self, now: i64) -> String {
        let mut keys: Vec<String> = self.dirty.drain().collect();
        keys.sort_unstable();
        let stations: Vec<Value> = keys
            .iter()
            .filter_map(|k| self.stations.get(k).map(|e| self.station_json(k, e)))
            .collect();
        let feed: Vec<Value> = self.fresh_feed.drain(..).map(|l| l.to_json()).collect();
        self.message(stations, feed, now).to_string()
    }

    /// Applies one record of the monitor's health topic (a [`StationHealthEvent`]): the
    /// station is then shown as its latest change says (locked, since when). An event decided
    /// before the kept one (a replay) changes nothing.
    ///
    /// # Errors
    ///
    /// An unreadable record (counted in [`MapState::unreadable`]).
    pub fn apply_health_record(&mut self, bytes: &[u8], observed: i64) -> Result<(), String> {
        self.records += 1;
        self.see_time(observed);
        let event = StationHealthEvent::from_json(bytes).map_err(|e| {
            self.unreadable += 1;
            format!("not a station health event: {e}")
        })?;
        let key = event.key.as_str().to_owned();
        if self
            .health
            .get(&key)
            .is_some_and(|kept| kept.decided_at > event.decided_at)
        {
            return Ok(());
        }
        if self.stations.contains_key(&key) {
            self.dirty.insert(key.clone());
        }
        self.health.insert(key, event);
        Ok(())
    }

    /// Whether a record of the station was read.
    pub fn knows(&self, key: &str) -> bool {
        self.stations.contains_key(key)
    }

    /// The station's latest health change, if any was read.
    pub fn health(&self, key: &str) -> Option<&StationHealthEvent> {
        self.health.get(key)
    }

    /// One station as the page reads it, with its health.
    fn station_json(&self, key: &str, e: &Entry) -> Value {
        let mut value = station_json(key, e);
        let health = self.health.get(key);
        value["health"] = json!(health.map_or(Health::Ok, |h| h.health));
        value["health_since"] = json!(health.filter(|h| h.health != Health::Ok).map(|h| h.since));
        value
    }

    fn message(&self, stations: Vec<Value>, feed: Vec<Value>, now: i64) -> Value {
        json!({
            "stations": stations,
            "feed": feed,
            "total": self.stations.len(),
            "off_map": self.off_map,
            "records": self.records,
            "unreadable": self.unreadable,
            "age_ms": self.data_age(now),
        })
    }

    /// The current state as a GeoJSON FeatureCollection: one Point feature per station
    /// (`[lng, lat]`), `"geometry": null` for those that cannot be drawn.
    pub fn geojson(&self) -> String {
        let mut stations: Vec<(&String, &Entry)> = self.stations.iter().collect();
        stations.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let features: Vec<Value> = stations
            .into_iter()
            .map(|(key, e)| {
                let s = &e.station;
                let geometry = if e.located {
                    json!({"type": "Point", "coordinates": [s.position.lng, s.position.lat]})
                } else {
                    Value::Null
                };
                json!({
                    "type": "Feature",
                    "id": key,
                    "geometry": geometry,
                    "properties": {
                        "key": key,
                        "contract": s.contract_name,
                        "number": s.number,
                        "name": s.name,
                        "address": s.address,
                        "status": s.status,
                        "bike_stands": s.bike_stands,
                        "available_bikes": s.available_bikes,
                        "available_bike_stands": s.available_bike_stands,
                        "available_ebikes": s.ebikes(),
                        "available_classic_bikes": s.classic_bikes(),
                        "bikes_out_of_service": s.bikes_out_of_service,
                        "docks_out_of_service": s.docks_out_of_service,
                        "is_returning": s.is_returning,
                        "last_update": s.last_update,
                        "changed_at": e.changed_at,
                        "reported_empty": e.reported_empty,
                    },
                })
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features}).to_string()
    }
}

/// The feed's words for a transition.
fn label(kind: EmptinessKind) -> &'static str {
    match kind {
        EmptinessKind::BecameEmpty => "no bikes",
        EmptinessKind::NoLongerEmpty => "bikes back",
        EmptinessKind::EbikesGone => "no e-bikes",
        EmptinessKind::EbikesBack => "e-bikes back",
        EmptinessKind::ReturnsStopped => "no returns",
        EmptinessKind::ReturnsResumed => "returns back",
    }
}

/// One station as the page reads it. The counts only some feeds give (e-bikes, classic bikes,
/// out of service, returns) are `null` when the record does not give them, so the page can
/// tell "not known" from 0.
fn station_json(key: &str, e: &Entry) -> Value {
    let s = &e.station;
    let history: Vec<[i64; 2]> = e.history.iter().map(|&(t, b)| [t, i64::from(b)]).collect();
    json!({
        "key": key,
        "contract": s.contract_name,
        "name": s.name,
        "address": s.address,
        "lat": e.located.then_some(s.position.lat),
        "lng": e.located.then_some(s.position.lng),
        "bikes": s.available_bikes,
        "stands": s.available_bike_stands,
        "capacity": s.bike_stands,
        "open": s.status == Status::Open,
        "ebikes": s.ebikes(),
        "classic": s.classic_bikes(),
        "bikes_out_of_service": s.bikes_out_of_service,
        "docks_out_of_service": s.docks_out_of_service,
        "returning": s.is_returning,
        "changed_at": e.changed_at,
        "reported_empty": e.reported_empty,
        "history": history,
    })
}

fn push_capped<T>(queue: &mut VecDeque<T>, item: T, cap: usize) {
    if cap == 0 {
        return;
    }
    while queue.len() >= cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Built from JSON, as the records are, so new optional fields of `Station` need no change
    // here.
    fn station(number: u64, bikes: u32, stands: u32, last_update: Option<i64>) -> Station {
        let record = json!({
            "number": number, "contract_name": "Lyon", "name": format!("{number} - NAME"),
            "address": format!("{number} RUE X"), "position": {"lat": 45.75, "lng": 4.85},
            "status": "OPEN", "bike_stands": bikes + stands, "available_bike_stands": stands,
            "available_bikes": bikes, "last_update": last_update, "snapshot_at": last_update,
        });
        Station::from_value(&record).unwrap()
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    /// The texts of a message's feed lines.
    fn feed_texts(message: &Value) -> Vec<&Value> {
        message["feed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["text"])
            .collect()
    }

    #[test]
    fn a_change_of_free_stands_makes_the_tutorial_line() {
        let mut state = MapState::new(Limits::default());
        assert_eq!(
            state.apply_station(station(1, 5, 5, Some(1000)), true, 1),
            Applied::New
        );
        assert_eq!(
            state.apply_station(station(1, 4, 6, Some(2000)), true, 2),
            Applied::Changed
        );
        let lines: Vec<&str> = state.feed().map(|l| l.text.as_str()).collect();
        assert_eq!(lines, ["+1 1 RUE X (Lyon)"]);
        let batch = parse(&state.take_batch(2500));
        assert_eq!(batch["feed"][0]["text"], "+1 1 RUE X (Lyon)");
        assert_eq!(batch["stations"][0]["bikes"], 4);
        assert_eq!(batch["stations"][0]["changed_at"], 2000);
        assert_eq!(
            batch["stations"][0]["history"],
            json!([[1000, 5], [2000, 4]])
        );
        assert_eq!(batch["age_ms"], 2498, "from the newest record's timestamp");
        assert!(!state.has_pending());
        let quiet = parse(&state.take_batch(3000));
        assert_eq!(quiet["stations"], json!([]));
        assert_eq!(quiet["feed"], json!([]));
    }

    #[test]
    fn an_older_record_is_stale_and_the_same_record_changes_nothing() {
        let mut state = MapState::new(Limits::default());
        state.apply_station(station(1, 5, 5, Some(2000)), true, 1);
        state.take_batch(0);
        assert_eq!(
            state.apply_station(station(1, 9, 1, Some(1000)), true, 2),
            Applied::Stale
        );
        assert_eq!(
            state.apply_station(station(1, 5, 5, Some(2000)), true, 3),
            Applied::Unchanged
        );
        assert_eq!(state.stale(), 1);
        assert!(!state.has_pending());
        assert_eq!(state.feed().count(), 0);
    }

    #[test]
    fn a_newer_snapshot_wins_whatever_its_last_update_says() {
        // Real GBFS: `last_reported` goes back in time while the counts move.
        let mut state = MapState::new(Limits::default());
        let mut first = station(1, 5, 5, Some(2000));
        first.last_update = Some(9000);
        state.apply_station(first, true, 1);
        let mut next = station(1, 4, 6, Some(3000));
        next.last_update = Some(100);
        assert_eq!(state.apply_station(next, true, 2), Applied::Changed);
        assert_eq!(state.feed().count(), 1);
    }

    #[test]
    fn history_and_feed_are_capped() {
        let mut state = MapState::new(Limits {
            history: 3,
            feed: 2,
        });
        for i in 0..10u32 {
            state.apply_station(station(1, i, 20 - i, Some(i64::from(i))), true, 0);
        }
        assert_eq!(state.feed().count(), 2);
        state.take_batch(0);
        let snap = parse(&state.snapshot_json(0));
        assert_eq!(
            snap["stations"][0]["history"],
            json!([[7, 7], [8, 8], [9, 9]])
        );
        assert_eq!(snap["feed"][1]["text"], "-1 1 RUE X (Lyon)");
    }

    #[test]
    fn a_snapshot_leaves_the_pending_feed_lines_to_the_next_batch() {
        let mut state = MapState::new(Limits::default());
        state.apply_station(station(1, 5, 5, Some(1000)), true, 0);
        state.apply_station(station(1, 4, 6, Some(2000)), true, 0);
        state.take_batch(0);
        state.apply_station(station(1, 2, 8, Some(3000)), true, 0);
        let snap = parse(&state.snapshot_json(0));
        let lines: Vec<&Value> = feed_texts(&snap);
        assert_eq!(
            lines,
            ["+1 1 RUE X (Lyon)"],
            "the pending line is not in it"
        );
        assert_eq!(
            snap["stations"][0]["bikes"], 2,
            "the station is as it is now"
        );
        let batch = parse(&state.take_batch(0));
        assert_eq!(batch["feed"][0]["text"], "+2 1 RUE X (Lyon)");
        assert_eq!(batch["feed"].as_array().unwrap().len(), 1);
        // More pending lines than the feed keeps: none of them is in a snapshot.
        let mut small = MapState::new(Limits {
            history: 3,
            feed: 2,
        });
        for i in 0..5u32 {
            small.apply_station(station(1, i, 20 - i, Some(i64::from(i))), true, 0);
        }
        assert_eq!(parse(&small.snapshot_json(0))["feed"], json!([]));
    }

    #[test]
    fn positions_that_cannot_be_drawn_are_counted_off_the_map() {
        let base = r#""number": 7, "contract_name": "Lyon", "status": "OPEN", "bike_stands": 2,
            "available_bike_stands": 1, "available_bikes": 1"#;
        let mut state = MapState::new(Limits::default());
        for position in [
            r#"null"#,
            r#"{"lat": null, "lng": 4.8}"#,
            r#"{"lat": 91, "lng": 4.8}"#,
            r#"{"lat": 45, "lng": -181}"#,
            r#"{"lat": 0, "lng": 0}"#,
        ] {
            let record = format!(r#"{{{base}, "position": {position}}}"#);
            let (_, located) = read_station(record.as_bytes()).unwrap();
            assert!(!located, "{position}");
        }
        let missing = format!("{{{base}}}");
        state.apply_record(missing.as_bytes(), 0).unwrap();
        assert_eq!(state.off_map(), 1);
        let snap = parse(&state.snapshot_json(0));
        assert_eq!(snap["stations"][0]["lat"], Value::Null);
        assert_eq!(snap["off_map"], 1);
        assert_eq!(
            parse(&state.geojson())["features"][0]["geometry"],
            Value::Null
        );
        // Located again: back on the map.
        let located = format!(r#"{{{base}, "position": {{"lat": 45.7, "lng": 4.8}}}}"#);
        state.apply_record(located.as_bytes(), 0).unwrap();
        assert_eq!(state.off_map(), 0);
        let geo = parse(&state.geojson());
        assert_eq!(
            geo["features"][0]["geometry"]["coordinates"],
            json!([4.8, 45.7])
        );
        // A fault elsewhere still rejects the record.
        let bad = format!(
            r#"{{{}, "position": null}}"#,
            base.replace(r#""available_bikes": 1"#, r#""available_bikes": "many""#)
        );
        assert!(state.apply_record(bad.as_bytes(), 0).is_err());
        assert_eq!(state.unreadable(), 1);
    }

    #[test]
    fn empty_station_events_reach_the_feed_and_mark_the_station() {
        let mut state = MapState::new(Limits::default());
        let s = station(3, 0, 10, Some(5000));
        state.apply_station(s.clone(), true, 0);
        state.take_batch(0);
        let event = EmptyStationEvent::new(EmptinessKind::BecameEmpty, &s, 6000);
        state.apply_event_record(&event.to_json(), 6000).unwrap();
        let batch = parse(&state.take_batch(6000));
        assert_eq!(batch["feed"][0]["text"], "no bikes: 3 RUE X (Lyon)");
        assert_eq!(batch["stations"][0]["reported_empty"], true);
        assert!(state.apply_event_record(b"{}", 0).is_err());
    }

    #[test]
    fn e_bike_and_returns_transitions_reach_the_feed_without_marking_the_station_empty() {
        let mut state = MapState::new(Limits::default());
        let record = json!({
            "number": 4, "contract_name": "Lyon", "name": "4 - NAME", "address": "4 RUE X",
            "position": {"lat": 45.75, "lng": 4.85}, "status": "OPEN", "bike_stands": 10,
            "available_bike_stands": 7, "available_bikes": 3, "snapshot_at": 5000,
            "bikes_by_type": [{"vehicle_type_id": "mechanical", "kind": "classic", "count": 3}],
            "bikes_out_of_service": 1, "is_returning": false,
        });
        let s = Station::from_value(&record).unwrap();
        state.apply_station(s.clone(), true, 0);
        let snap = parse(&state.snapshot_json(0));
        let page = &snap["stations"][0];
        assert_eq!(
            (
                &page["ebikes"],
                &page["classic"],
                &page["bikes_out_of_service"]
            ),
            (&json!(0), &json!(3), &json!(1))
        );
        // Not given by the record: null, not 0.
        assert_eq!(page["docks_out_of_service"], Value::Null);
        assert_eq!(page["returning"], false);
        state.take_batch(0);
        let event = EmptyStationEvent::of_kinds(
            &[EmptinessKind::EbikesGone, EmptinessKind::ReturnsStopped],
            &s,
            6000,
        )
        .unwrap();
        state.apply_event_record(&event.to_json(), 6000).unwrap();
        let batch = parse(&state.take_batch(6000));
        let lines: Vec<&Value> = feed_texts(&batch);
        assert_eq!(
            lines,
            ["no e-bikes: 4 RUE X (Lyon)", "no returns: 4 RUE X (Lyon)"]
        );
        assert_eq!(batch["stations"], json!([]), "not reported empty of bikes");
        // A station record without the newer fields has them null.
        let plain = parse(&{
            let mut state = MapState::new(Limits::default());
            state.apply_station(station(1, 5, 5, Some(1000)), true, 0);
            state.snapshot_json(0)
        });
        for field in ["ebikes", "classic", "bikes_out_of_service", "returning"] {
            assert_eq!(plain["stations"][0][field], Value::Null, "{field}");
        }
    }
}
