//! One system's polls: the discovery file, `station_information` and `vehicle_types` cached
//! for their `ttl` (see [`GbfsSource`](super::GbfsSource)'s "Caching"), the contract name read
//! once, and `station_status` read on every poll, with `If-None-Match` when the feed sends
//! ETags.

use super::faults::Faults;
use super::read::{self, Feeds, Header, feed_time, parse_discovery};
use super::records::{Info, parse_info, parse_status, to_station};
use super::targets::{self, GbfsTarget, host_name};
use super::vehicles::{VehicleTypes, parse_vehicle_types};
use crate::SourceError;
use crate::http::{self, Body, Hints, Limits};
use crate::jcdecaux::json_kind;
use crate::placement::SetAside;
use crate::skips::PollSkips;
use crate::time::now_ms;
use reqwest::{Client, Url};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use velib_model::Station;

const HINTS: Hints = Hints {
    refused: "the GBFS feed refused access",
    refused_hint: "velib sends no credentials to GBFS feeds; check that the gbfs: URL is the \
                   public auto-discovery URL",
    not_found_hint: "check the gbfs: URL or JCDecaux contract slug (slugs are lowercase, e.g. \
                     gbfs:lyon)",
};

/// The longest a cached discovery file or station list is trusted, whatever its `ttl`.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// One system's state between polls.
#[derive(Debug)]
pub(super) struct System {
    discovery: Url,
    /// Known from the URL (JCDecaux) or, after the first poll, from `system_information`.
    contract: Option<String>,
    feeds: Option<Cached<Feeds>>,
    info: Option<Cached<HashMap<String, Info>>>,
    /// What kind each vehicle type is, when the system publishes `vehicle_types.json`.
    types: Option<Cached<VehicleTypes>>,
    /// The last `station_status` read and its `ETag`: a 304 answer means the same snapshot.
    status: Option<(String, Vec<Station>)>,
    set_aside: SetAside,
    faults: Faults,
}

#[derive(Debug)]
struct Cached<T> {
    value: T,
    expires: Instant,
}

impl<T> Cached<T> {
    fn fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

/// What one poll reads with: the client and the settings every system shares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Polling<'a> {
    pub(super) client: &'a Client,
    pub(super) limits: Limits,
    pub(super) language: Option<&'a str>,
}

impl Polling<'_> {
    async fn get(&self, url: &Url) -> Result<Body, SourceError> {
        http::get(self.client, url, self.limits, None, HINTS).await
    }
}

impl System {
    pub(super) fn new(target: &GbfsTarget, cyclocity: &Url) -> Result<Self, SourceError> {
        let (discovery, contract) = targets::resolve(target, cyclocity)?;
        Ok(System {
            discovery,
            contract,
            feeds: None,
            info: None,
            types: None,
            status: None,
            set_aside: SetAside::default(),
            faults: Faults::default(),
        })
    }

    /// The system in logs: its contract, when known, and its redacted discovery URL.
    pub(super) fn label(&self) -> String {
        match &self.contract {
            Some(c) => format!("{c} ({})", http::redact_url(&self.discovery)),
            None => http::redact_url(&self.discovery),
        }
    }

    /// One poll of this system: refresh what has expired, then read the status feed. Returns
    /// the stations and how many records were skipped.
    pub(super) async fn poll(
        &mut self,
        p: Polling<'_>,
    ) -> Result<(Vec<Station>, u64), SourceError> {
        let feeds = self.refresh_feeds(p).await?;
        let contract = self.contract(p, &feeds).await?;
        let label = self.label();
        let mut skips = PollSkips::new(&label);
        self.refresh_information(p, &feeds, &mut skips, &label)
            .await?;
        self.refresh_types(p, &feeds, &label).await;

        let etag = self.status.as_ref().map(|(etag, _)| etag.as_str());
        let status =
            http::get_if_changed(p.client, &feeds.station_status, p.limits, None, HINTS, etag)
                .await?;
        let Some(body) = status else {
            // 304 Not Modified: the same snapshot as last time, with the same `snapshot_at`,
            // so the monitor prints nothing for it.
            let stations = self.status.as_ref().map(|(_, s)| s.clone());
            return Ok((stations.unwrap_or_default(), 0));
        };
        let (stations, skipped) = self.read_status(&body, &contract, &label, skips)?;
        let stations = self.set_aside.filter(&label, stations);
        self.status = body.etag.clone().map(|etag| (etag, stations.clone()));
        Ok((stations, skipped))
    }

    /// The feeds of the discovery file, read again once the cached copy has expired.
    async fn refresh_feeds(&mut self, p: Polling<'_>) -> Result<Feeds, SourceError> {
        if let Some(cached) = self.feeds.as_ref().filter(|c| c.fresh()) {
            return Ok(cached.value.clone());
        }
        let body = p.get(&self.discovery).await?;
        let value = body.json("a GBFS gbfs.json discovery file", None)?;
        let feeds = parse_discovery(&value, &self.discovery, p.language)
            .map_err(|reason| body.malformed(reason, None))?;
        self.feeds = Some(Cached {
            value: feeds.clone(),
            expires: expiry(&value, p.limits.refresh_floor),
        });
        Ok(feeds)
    }

    /// The contract name: known from the target, else `system_id` (read once), else the host.
    async fn contract(&mut self, p: Polling<'_>, feeds: &Feeds) -> Result<String, SourceError> {
        if let Some(contract) = &self.contract {
            return Ok(contract.clone());
        }
        let contract = match &feeds.system_information {
            Some(url) => {
                let body = p.get(url).await?;
                let value = body.json("a GBFS system_information feed", None)?;
                read::system_id(&value).map_err(|reason| body.malformed(reason, None))?
            }
            None => host_name(&self.discovery),
        };
        self.contract = Some(contract.clone());
        Ok(contract)
    }

    /// Reads `station_information` again once the cached copy has expired. When that fails
    /// and a cached copy exists, the cached copy is used and a warning logged.
    async fn refresh_information(
        &mut self,
        p: Polling<'_>,
        feeds: &Feeds,
        skips: &mut PollSkips<'_>,
        label: &str,
    ) -> Result<(), SourceError> {
        if self.info.as_ref().is_some_and(Cached::fresh) {
            return Ok(());
        }
        match fetch_information(p, feeds, skips).await {
            Ok(fresh) => self.info = Some(fresh),
            Err(err) if self.info.is_some() => {
                tracing::warn!(system = %label, error = %err,
                    "cannot refresh station_information; using the cached copy");
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Refreshes what kind each vehicle type is, when the system lists `vehicle_types.json`
    /// and the cached copy has expired. A failure only loses the feed's words: a warning is
    /// logged, the cached copy (else the known ids) is kept until the next refresh, and the
    /// stations are still published.
    async fn refresh_types(&mut self, p: Polling<'_>, feeds: &Feeds, label: &str) {
        let Some(url) = &feeds.vehicle_types else {
            return;
        };
        if self.types.as_ref().is_some_and(Cached::fresh) {
            return;
        }
        let fetched = match p.get(url).await {
            Ok(body) => body
                .json("a GBFS vehicle_types feed", None)
                .and_then(|value| {
                    let types = parse_vehicle_types(&value)
                        .map_err(|reason| body.malformed(reason, None))?;
                    Ok((types, expiry(&value, p.limits.refresh_floor)))
                }),
            Err(err) => Err(err),
        };
        match fetched {
            Ok((value, expires)) => self.types = Some(Cached { value, expires }),
            Err(err) => {
                tracing::warn!(system = %label, error = %err,
                    "cannot read vehicle_types; e-bikes are told apart by the known type ids only");
                let value = self.types.take().map(|c| c.value).unwrap_or_default();
                let expires = Instant::now() + p.limits.refresh_floor;
                self.types = Some(Cached { value, expires });
            }
        }
    }

    /// The stations of a `station_status` body: each record read, one per `station_id`, joined
    /// with its `station_information`. Returns them and how many records were skipped.
    fn read_status(
        &mut self,
        body: &Body,
        contract: &str,
        label: &str,
        mut skips: PollSkips<'_>,
    ) -> Result<(Vec<Station>, u64), SourceError> {
        let (value, records) = station_records(body, "station_status")?;
        let snapshot_at = feed_time(&value).unwrap_or_else(now_ms);
        let mut statuses = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match record
                .as_ref()
                .map_err(String::clone)
                .and_then(parse_status)
            {
                Ok(status) => statuses.push(status),
                Err(reason) => skips.skip(index, &unreadable("station_status", record, &reason)),
            }
        }
        let statuses = self.faults.dedupe(statuses, label, contract);
        let info = self.info.as_ref().map(|c| &c.value);
        let no_types = VehicleTypes::default();
        let types = self.types.as_ref().map_or(&no_types, |c| &c.value);
        let mut stations = Vec::with_capacity(statuses.len());
        let mut unknown = 0;
        for status in &statuses {
            match info.and_then(|m| m.get(&status.station_id)) {
                Some(info) => {
                    self.faults.known(&status.station_id);
                    stations.push(to_station(contract, info, status, types, snapshot_at));
                }
                None => {
                    unknown += 1;
                    self.faults.unknown(&status.station_id, label, contract);
                }
            }
        }
        let kept = stations.len();
        Ok((stations, skips.finish(kept) + unknown))
    }
}

async fn fetch_information(
    p: Polling<'_>,
    feeds: &Feeds,
    skips: &mut PollSkips<'_>,
) -> Result<Cached<HashMap<String, Info>>, SourceError> {
    let body = p.get(&feeds.station_information).await?;
    let (value, records) = station_records(&body, "station_information")?;
    let mut map = HashMap::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        match record
            .as_ref()
            .map_err(String::clone)
            .and_then(|r| parse_info(r, p.language))
        {
            Ok((id, info)) => {
                map.insert(id, info);
            }
            Err(reason) => skips.skip(index, &unreadable("station_information", record, &reason)),
        }
    }
    Ok(Cached {
        value: map,
        expires: expiry(&value, p.limits.refresh_floor),
    })
}

/// Why a record of `feed` was skipped, naming its station when its `station_id` can be read.
fn unreadable(feed: &str, record: &Result<Value, String>, reason: &str) -> String {
    let id = record
        .as_ref()
        .ok()
        .and_then(|r| r.get("station_id"))
        .and_then(read::id_text);
    match id {
        Some(id) => format!("{feed}: station {id}: {reason}"),
        None => format!("{feed}: {reason}"),
    }
}

/// A feed's document and its `data.stations` records, each read on its own (see
/// [`crate::split`]): a station that is not JSON is one skipped record, not a lost feed.
#[allow(clippy::type_complexity)]
fn station_records(
    body: &Body,
    feed: &str,
) -> Result<(Value, Vec<Result<Value, String>>), SourceError> {
    let split = crate::split::split(&body.bytes, &["data", "stations"])
        .map_err(|err| body.malformed(format!("expected a GBFS {feed} feed: {err}"), None))?;
    // Says what is wrong when there is no array to read (the split leaves it empty).
    match split.document.pointer("/data/stations") {
        Some(Value::Array(_)) => Ok((split.document, split.items)),
        Some(other) => Err(body.malformed(
            format!(
                "{feed}: data.stations is a JSON {}, not an array",
                json_kind(other)
            ),
            None,
        )),
        None => Err(body.malformed(format!("{feed}: no data.stations array"), None)),
    }
}

/// When a cached feed (discovery, `station_information`) fetched now stops being fresh: now +
/// its `ttl`, kept between `floor` ([`SourceOptions::gbfs_refresh_floor`]: real feeds say
/// `ttl: 0`) and [`MAX_TTL`]. (`station_status` is read on every poll whatever its `ttl`:
/// Vélib' Métropole gives 3600 s.)
///
/// [`SourceOptions::gbfs_refresh_floor`]: crate::SourceOptions::gbfs_refresh_floor
fn expiry(feed: &Value, floor: Duration) -> Instant {
    let ttl = Header::of(feed)
        .ttl
        .map_or(Duration::ZERO, Duration::from_secs);
    Instant::now() + ttl.max(floor).min(MAX_TTL)
}
