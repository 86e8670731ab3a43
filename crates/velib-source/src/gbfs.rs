//! GBFS (General Bikeshare Feed Specification) systems, 1.x to 3.0, docked stations only.
//!
//! JCDecaux publishes GBFS at `https://api.cyclocity.fr/contracts/{contract}/gbfs/gbfs.json`
//! (keyless) and retires its v1 API on 2026-12-31; about 1,500 other systems publish GBFS too.
//!
//! See [`GbfsSource`] for the field mapping, contract naming and caching.

use crate::http::{self, Body, Hints, Limits};
use crate::jcdecaux::{contract_key, json_kind};
use crate::placement::SetAside;
use crate::skips::PollSkips;
use crate::time::{now_ms, parse_rfc3339_ms};
use crate::{SourceError, SourceOptions, StationSource};
use reqwest::{Client, Url};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use velib_model::{Position, Snapshot, Station, StationId, Status};

mod vehicles;

pub use vehicles::{VehicleTypes, parse_vehicle_types};

const HINTS: Hints = Hints {
    refused: "the GBFS feed refused access",
    refused_hint: "velib sends no credentials to GBFS feeds; check that the gbfs: URL is the \
                   public auto-discovery URL",
    not_found_hint: "check the gbfs: URL or JCDecaux contract slug (slugs are lowercase, e.g. \
                     gbfs:lyon)",
};

/// The longest a cached discovery file or station list is trusted, whatever its `ttl`.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// Where the cyclocity host serves JCDecaux's feeds.
const CYCLOCITY_HOST: &str = "api.cyclocity.fr";

/// Vélib' Métropole (Paris), GBFS 1.0: what `gbfs:paris` polls.
pub const PARIS_GBFS_URL: &str =
    "https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole/gbfs.json";

/// One GBFS system to poll, as written after `gbfs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GbfsTarget {
    /// A `gbfs.json` auto-discovery URL.
    Url(String),
    /// A JCDecaux contract slug such as `lyon`, expanded to
    /// `{cyclocity_base_url}/contracts/lyon/gbfs/gbfs.json`.
    JcDecauxContract(String),
    /// A system under a contract name of the user's choice, written `NAME=URL`
    /// (`paris=https://…/gbfs.json`); `gbfs:paris` is short for `paris=`[`PARIS_GBFS_URL`].
    Named {
        /// The contract name its stations are keyed by.
        contract: String,
        /// Its `gbfs.json` auto-discovery URL.
        url: String,
    },
}

fn parse_feed_url(s: &str) -> Result<String, SourceError> {
    let url = Url::parse(s).map_err(|err| SourceError::Config(format!("gbfs URL {s:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::Config(format!(
            "gbfs URL {s:?} must be http or https"
        )));
    }
    Ok(s.to_owned())
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl FromStr for GbfsTarget {
    type Err = SourceError;

    /// `NAME=URL` names a system; `http://…` or `https://…` is a URL; `paris` is Vélib'
    /// Métropole; anything else must be a JCDecaux contract slug (letters, digits, `-` and
    /// `_`), lower-cased because cyclocity slugs are.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some((name, url)) = s.split_once('=')
            && !name.contains("://")
        {
            let name = name.trim();
            if !is_slug(name) {
                return Err(SourceError::Config(format!(
                    "gbfs:{s}: the contract name {name:?} before `=` may hold only letters, \
                     digits, `-` and `_`"
                )));
            }
            return Ok(GbfsTarget::Named {
                contract: name.to_ascii_lowercase(),
                url: parse_feed_url(url.trim())?,
            });
        }
        if s.contains("://") {
            return Ok(GbfsTarget::Url(parse_feed_url(s)?));
        }
        if !is_slug(s) {
            return Err(SourceError::Config(format!(
                "{s:?} is neither a gbfs.json URL nor a JCDecaux contract slug (e.g. lyon)"
            )));
        }
        let slug = s.to_ascii_lowercase();
        if slug == "paris" {
            return Ok(GbfsTarget::Named {
                contract: slug,
                url: PARIS_GBFS_URL.to_owned(),
            });
        }
        Ok(GbfsTarget::JcDecauxContract(slug))
    }
}

impl fmt::Display for GbfsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GbfsTarget::Url(u) => f.write_str(u),
            GbfsTarget::JcDecauxContract(c) => f.write_str(c),
            GbfsTarget::Named { contract, url } => write!(f, "{contract}={url}"),
        }
    }
}

/// Stations of one or more GBFS systems, polled concurrently and merged into one snapshot.
///
/// A record that cannot be read (no `station_id`, a count that is not a number, a status for a
/// station `station_information` does not know) is skipped and counted. When several systems
/// are polled and some fail, the poll returns the others' stations and logs a warning per
/// failed system; it fails only when every system fails, with the first system's error.
///
/// ```no_run
/// use velib_source::{GbfsSource, GbfsTarget, SourceOptions, StationSource};
///
/// # async fn run() -> Result<(), velib_source::SourceError> {
/// let targets = [
///     "lyon".parse::<GbfsTarget>()?, // JCDecaux, keyless
///     "https://gbfs.citibikenyc.com/gbfs/2.3/gbfs.json".parse()?,
/// ];
/// let mut source = GbfsSource::new(&SourceOptions::default(), &targets)?;
/// let snapshot = source.fetch().await?;
/// for station in &snapshot.stations {
///     println!("{} {} bikes", station.key(), station.available_bikes);
/// }
/// # Ok(()) }
/// ```
///
/// # Field mapping
///
/// Which GBFS fields become which [`Station`] fields, and what is lost:
///
/// | `Station` field | GBFS source | notes |
/// |---|---|---|
/// | `number` | `station_id` (Vélib' Métropole: `stationCode`) | [`StationId::from_text`]: canonical numbers stay numbers, so `"1001"` keys like v1's `1001` |
/// | `contract_name` | see [Contract names](#contract-names) | stable per system |
/// | `name` | `station_information.name` | 3.0 localised array: the preferred language, else the first non-empty text; the id when there is none |
/// | `address` | `station_information.address` | falls back to `name` when absent |
/// | `position` | `lat`, `lon` | required |
/// | `banking` | `rental_methods` contains `creditcard` | case-insensitive; false when absent |
/// | `bonus` | — | always false: GBFS has no bonus stations |
/// | `bike_stands` | `capacity` | `num_bikes_available + num_docks_available` when absent |
/// | `available_bikes` | `num_bikes_available` (≤ 2.3) / `num_vehicles_available` (3.0) | required |
/// | `available_bike_stands` | `num_docks_available` | `capacity − bikes` when absent (virtual stations) |
/// | `status` | `is_installed && is_renting` | OPEN when both hold; each defaults to true when absent |
/// | `last_update` | `last_reported` | seconds (≤ 2.3; values above 10¹¹ are taken as milliseconds, a common publisher bug) or RFC 3339 (3.0, 0 to 9 fraction digits) → epoch ms; null when absent or a placeholder before 2000 (`0001-01-01T00:00:00Z`) |
/// | `snapshot_at` | the `station_status` feed's `last_updated` (1.0 Vélib' Métropole: `lastUpdatedOther`) | what orders a station's records (see [`Station::snapshot_at`]); the poll time when the feed has none |
/// | `bikes_by_type` | `vehicle_types_available` (2.1–3.0) / `num_bikes_available_types` (1.0 Vélib' Métropole) | each type's id and count, and its kind (classic, electric, other) from `vehicle_types.json`'s `form_factor` and `propulsion_type`; without that feed, JCDecaux's `mechanical`/`electrical` and Vélib' Métropole's `mechanical`/`ebike` are understood, other ids are `other`; absent when the record has no per-type counts |
/// | `bikes_out_of_service` | `num_bikes_disabled` (≤ 2.3) / `num_vehicles_disabled` (3.0) | absent when the record does not say |
/// | `docks_out_of_service` | `num_docks_disabled` | absent when the record does not say |
/// | `is_returning` | `is_returning` | absent when the record does not say; `status` still follows renting only, as v1's did |
///
/// A field the feed does not give is left out of the record, never written as 0: "not known"
/// and "none" are different answers for a rider. One the feed gives but velib cannot read is
/// left out too, and the station still published: these fields never cost a station its v1
/// counts. A negative per-type count (JCDecaux's `mechanical`, now and then) is read as 0.
///
/// Still lost in the mapping: `short_name`, `region_id`, `post_code`, `cross_street`,
/// `is_virtual_station`, opening hours, rental URIs, all languages but one, and every dockless
/// feed (`free_bike_status`, `vehicle_status`): the v1 record has no place for them and no
/// velib consumer uses them. Per-type dock counts (`vehicle_docks_available`) are dropped too:
/// JCDecaux's docks take every type.
///
/// # Contract names
///
/// The contract is the first half of every station's Kafka key, so it must never change for a
/// system:
///
/// - a JCDecaux feed (`gbfs:<contract>`, or a URL of the form
///   `…/contracts/<contract>/gbfs/gbfs.json` under `api.cyclocity.fr` or
///   [`SourceOptions::cyclocity_base_url`]) uses the slug as it is, lower-case: `lyon`. That is
///   how the v1 API has spelled `contract_name` since about 2020, and the v1 source lower-cases
///   what it reads ([`contract_key`](crate::contract_key)), so `lyon:1001` stays `lyon:1001`
///   across the v1 → GBFS switch, and the monitor prints `(lyon)` before and after;
/// - `NAME=URL` uses `NAME`, lower-cased; `gbfs:paris` is `paris=` Vélib' Métropole
///   ([`PARIS_GBFS_URL`]), whose stations are keyed by their `stationCode`, the number riders
///   know (`paris:16107`), not the opaque `station_id` that joins the two feeds;
/// - any other system uses `system_id` from `system_information` (which the spec says is
///   stable for the life of the system), read once on the first poll;
/// - a system that publishes no `system_information` uses its discovery URL's host name
///   (without port), e.g. `gbfs.citibikenyc.com`.
///
/// # Test, workshop and placeholder stations
///
/// Stations at 0,0 (or out of range), and stations more than 10 km from every other station of
/// a system where that is rare, are set aside and not published (see the README's "JCDecaux
/// after 2026-12-31").
///
/// # Caching
///
/// The discovery file and `station_information` are cached for their `ttl`, kept between
/// [`SourceOptions::gbfs_refresh_floor`] (60 s: real feeds say `ttl: 0`) and one hour (so new
/// stations appear within the hour whatever the feed says). `station_status` is fetched on
/// every poll, however large its `ttl` (Vélib' Métropole says 3600 s), with `If-None-Match`
/// when the server sent an `ETag`: a 304 answer is the same snapshot again, with the same
/// `snapshot_at`, so nothing is printed for it. If refreshing `station_information` fails while
/// a cached copy exists, the cached copy is used and a warning logged.
#[derive(Debug)]
pub struct GbfsSource {
    client: Client,
    limits: Limits,
    language: Option<String>,
    systems: Vec<System>,
    skipped: u64,
}

/// One system's state between polls.
#[derive(Debug)]
struct System {
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

/// The feeds a discovery file lists that velib reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Feeds {
    station_information: Url,
    station_status: Url,
    system_information: Option<Url>,
    vehicle_types: Option<Url>,
}

/// What `station_information` says about one station.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// Vélib' Métropole's `stationCode`, the station number riders know, when the feed has
    /// one: it becomes the key's id instead of the opaque `station_id`.
    code: Option<String>,
    name: String,
    address: String,
    position: Position,
    capacity: Option<u32>,
    banking: bool,
}

/// What `station_status` says about one station.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    station_id: String,
    bikes: u32,
    docks: Option<u32>,
    open: bool,
    last_reported: Option<i64>,
    /// Per-type counts (type id, count), when the record has them.
    by_type: Option<Vec<(String, u32)>>,
    bikes_disabled: Option<u32>,
    docks_disabled: Option<u32>,
    returning: Option<bool>,
}

impl GbfsSource {
    /// A source polling every target with the client, limits, language and cyclocity base
    /// URL of `options`.
    ///
    /// # Errors
    ///
    /// [`SourceError::Config`] when there is no target or a URL is invalid.
    pub fn new(options: &SourceOptions, targets: &[GbfsTarget]) -> Result<Self, SourceError> {
        if targets.is_empty() {
            return Err(SourceError::Config(
                "gbfs needs at least one gbfs.json URL or JCDecaux contract".to_owned(),
            ));
        }
        let cyclocity =
            crate::options::parse_base_url(&options.cyclocity_base_url, "--cyclocity-base-url")?;
        let systems = targets
            .iter()
            .map(|t| System::new(t, &cyclocity))
            .collect::<Result<_, _>>()?;
        Ok(GbfsSource {
            client: options.http_client()?,
            limits: options.limits(),
            language: options.gbfs_language.clone(),
            systems,
            skipped: 0,
        })
    }
}

impl System {
    fn new(target: &GbfsTarget, cyclocity: &Url) -> Result<Self, SourceError> {
        let (discovery, contract) = match target {
            GbfsTarget::JcDecauxContract(slug) => {
                let url = cyclocity
                    .join(&format!("contracts/{slug}/gbfs/gbfs.json"))
                    .map_err(|err| SourceError::Config(format!("gbfs:{slug}: {err}")))?;
                (url, Some(contract_key(slug)))
            }
            GbfsTarget::Url(text) => {
                let url = Url::parse(text)
                    .map_err(|err| SourceError::Config(format!("gbfs URL {text:?}: {err}")))?;
                let contract = cyclocity_slug(&url, cyclocity).map(contract_key);
                (url, contract)
            }
            GbfsTarget::Named { contract, url } => {
                let url = Url::parse(url)
                    .map_err(|err| SourceError::Config(format!("gbfs URL {url:?}: {err}")))?;
                (url, Some(contract.clone()))
            }
        };
        Ok(System {
            discovery,
            contract,
            feeds: None,
            info: None,
            types: None,
            status: None,
            set_aside: SetAside::default(),
        })
    }

    fn label(&self) -> String {
        match &self.contract {
            Some(c) => format!("{c} ({})", http::redact_url(&self.discovery)),
            None => http::redact_url(&self.discovery),
        }
    }

    /// One poll of this system: refresh what has expired, then read the status feed.
    async fn poll(
        &mut self,
        client: &Client,
        limits: Limits,
        language: Option<&str>,
    ) -> Result<(Vec<Station>, u64), SourceError> {
        let label = self.label();
        if !self.feeds.as_ref().is_some_and(Cached::fresh) {
            let body = http::get(client, &self.discovery, limits, None, HINTS).await?;
            let value = body.json("a GBFS gbfs.json discovery file", None)?;
            let feeds = parse_discovery(&value, &self.discovery, language)
                .map_err(|reason| body.malformed(reason, None))?;
            self.feeds = Some(Cached {
                value: feeds,
                expires: expiry(&value, limits.refresh_floor),
            });
        }
        let feeds = self
            .feeds
            .as_ref()
            .map(|c| c.value.clone())
            .ok_or_else(|| {
                SourceError::Config("internal: GBFS feeds missing after discovery".to_owned())
            })?;

        if self.contract.is_none() {
            self.contract = Some(match &feeds.system_information {
                Some(url) => {
                    let body = http::get(client, url, limits, None, HINTS).await?;
                    let value = body.json("a GBFS system_information feed", None)?;
                    match value.pointer("/data/system_id").and_then(id_text) {
                        Some(id) => id,
                        None => {
                            return Err(body.malformed(
                                "system_information has no data.system_id".to_owned(),
                                None,
                            ));
                        }
                    }
                }
                None => host_name(&self.discovery),
            });
        }
        let contract = self.contract.clone().unwrap_or_default();

        let mut skips = PollSkips::new(&label);
        if !self.info.as_ref().is_some_and(Cached::fresh) {
            match fetch_information(client, limits, &feeds, language, &mut skips).await {
                Ok(fresh) => self.info = Some(fresh),
                Err(err) if self.info.is_some() => {
                    tracing::warn!(system = %label, error = %err,
                        "cannot refresh station_information; using the cached copy");
                }
                Err(err) => return Err(err),
            }
        }
        self.refresh_types(client, limits, &feeds, &label).await;
        let info = self.info.as_ref().map(|c| &c.value);
        let types = self.types.as_ref().map(|c| &c.value);
        let no_types = VehicleTypes::default();
        let types = types.unwrap_or(&no_types);

        let etag = self.status.as_ref().map(|(etag, _)| etag.as_str());
        let Some(body) =
            http::get_if_changed(client, &feeds.station_status, limits, None, HINTS, etag).await?
        else {
            // 304 Not Modified: the same snapshot as last time, with the same `snapshot_at`,
            // so the monitor prints nothing for it.
            let stations = self
                .status
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            return Ok((stations, 0));
        };
        let (value, records) = station_records(&body, "station_status")?;
        let snapshot_at = feed_time(&value).unwrap_or_else(now_ms);
        let mut stations = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let mapped = record
                .as_ref()
                .map_err(String::clone)
                .and_then(parse_status)
                .and_then(|status| {
                    let info = info
                        .and_then(|m| m.get(&status.station_id))
                        .ok_or_else(|| {
                            format!(
                                "station {} is not in station_information",
                                status.station_id
                            )
                        })?;
                    Ok(to_station(&contract, info, &status, types, snapshot_at))
                });
            match mapped {
                Ok(station) => stations.push(station),
                Err(reason) => skips.skip(index, &format!("station_status: {reason}")),
            }
        }
        let skipped = skips.finish(stations.len());
        let stations = self.set_aside.filter(&label, stations);
        self.status = body.etag.clone().map(|etag| (etag, stations.clone()));
        Ok((stations, skipped))
    }

    /// Refreshes what kind each vehicle type is, when the system lists `vehicle_types.json`
    /// and the cached copy has expired. A failure only loses the feed's words: a warning is
    /// logged, the cached copy (else the known ids) is kept until the next refresh, and the
    /// stations are still published.
    async fn refresh_types(&mut self, client: &Client, limits: Limits, feeds: &Feeds, label: &str) {
        let Some(url) = &feeds.vehicle_types else {
            return;
        };
        if self.types.as_ref().is_some_and(Cached::fresh) {
            return;
        }
        let fetched = match http::get(client, url, limits, None, HINTS).await {
            Ok(body) => body
                .json("a GBFS vehicle_types feed", None)
                .and_then(|value| {
                    let types = parse_vehicle_types(&value)
                        .map_err(|reason| body.malformed(reason, None))?;
                    Ok((types, expiry(&value, limits.refresh_floor)))
                }),
            Err(err) => Err(err),
        };
        match fetched {
            Ok((value, expires)) => self.types = Some(Cached { value, expires }),
            Err(err) => {
                tracing::warn!(system = %label, error = %err,
                    "cannot read vehicle_types; e-bikes are told apart by the known type ids only");
                let value = self.types.take().map(|c| c.value).unwrap_or_default();
                let expires = Instant::now() + limits.refresh_floor;
                self.types = Some(Cached { value, expires });
            }
        }
    }
}

async fn fetch_information(
    client: &Client,
    limits: Limits,
    feeds: &Feeds,
    language: Option<&str>,
    skips: &mut PollSkips<'_>,
) -> Result<Cached<HashMap<String, Info>>, SourceError> {
    let body = http::get(client, &feeds.station_information, limits, None, HINTS).await?;
    let (value, records) = station_records(&body, "station_information")?;
    let mut map = HashMap::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        match record
            .as_ref()
            .map_err(String::clone)
            .and_then(|r| parse_info(r, language))
        {
            Ok((id, info)) => {
                map.insert(id, info);
            }
            Err(reason) => skips.skip(index, &format!("station_information: {reason}")),
        }
    }
    Ok(Cached {
        value: map,
        expires: expiry(&value, limits.refresh_floor),
    })
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
    stations_array(&split.document, body, feed)?;
    Ok((split.document, split.items))
}

fn stations_array<'a>(
    value: &'a Value,
    body: &Body,
    feed: &str,
) -> Result<&'a Vec<Value>, SourceError> {
    match value.pointer("/data/stations") {
        Some(Value::Array(a)) => Ok(a),
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
fn expiry(feed: &Value, floor: Duration) -> Instant {
    let ttl = feed
        .get("ttl")
        .and_then(Value::as_u64)
        .map_or(Duration::ZERO, Duration::from_secs);
    Instant::now() + ttl.max(floor).min(MAX_TTL)
}

/// Reads a discovery file: 3.0's flat `data.feeds`, or 1.x/2.x's `data.<language>.feeds`
/// (the preferred language, else `en`, else the first language in alphabetical order).
pub fn parse_discovery(value: &Value, base: &Url, language: Option<&str>) -> Result<Feeds, String> {
    let data = value
        .get("data")
        .and_then(Value::as_object)
        .ok_or("gbfs.json has no data object")?;
    let feeds = match data.get("feeds") {
        Some(feeds) => feeds,
        None => {
            let by_lang = language
                .and_then(|l| data.get(l))
                .or_else(|| data.get("en"))
                .or_else(|| data.values().next())
                .ok_or("gbfs.json lists no feeds (neither data.feeds nor data.<language>.feeds)")?;
            by_lang
                .get("feeds")
                .ok_or("gbfs.json: data.<language> has no feeds list")?
        }
    };
    let feeds = feeds.as_array().ok_or("gbfs.json: feeds is not an array")?;
    let find = |name: &str| -> Result<Option<Url>, String> {
        let Some(feed) = feeds
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
        else {
            return Ok(None);
        };
        let url = feed
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("gbfs.json: feed {name} has no url"))?;
        base.join(url)
            .map(Some)
            .map_err(|err| format!("gbfs.json: feed {name} url {url:?}: {err}"))
    };
    let required = |name: &str| -> Result<Url, String> {
        find(name)?.ok_or_else(|| {
            format!(
                "gbfs.json lists no {name} feed: velib reads docked stations only, and this \
                 system may be dockless (free_bike_status / vehicle_status)"
            )
        })
    };
    Ok(Feeds {
        station_information: required("station_information")?,
        station_status: required("station_status")?,
        system_information: find("system_information")?,
        vehicle_types: find("vehicle_types")?,
    })
}

/// A `station_id` (or `system_id`): a non-empty string, or a number some feeds publish
/// instead.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_id(record: &Value) -> Result<String, String> {
    match record.get("station_id") {
        None => Err("missing station_id".to_owned()),
        Some(v) => id_text(v).ok_or_else(|| format!("station_id {v} is not a non-empty string")),
    }
}

/// An optional count: a non-negative integer, also written as `3.0` or `"3"`.
fn count(record: &Value, field: &str) -> Result<Option<u32>, String> {
    let bad = |v: &Value| format!("field `{field}`: {v} is not a non-negative integer");
    match record.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                u32::try_from(u).map(Some).map_err(|_| bad(v))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
                        Ok(Some(f as u32))
                    }
                    _ => Err(bad(v)),
                }
            }
        }
        Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// An optional flag: a boolean, or 0/1 as GBFS 1.0 wrote them.
fn flag(record: &Value, field: &str) -> Result<Option<bool>, String> {
    match record.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(v) => Err(format!("field `{field}`: {v} is not a boolean")),
    }
}

fn coordinate(record: &Value, field: &str) -> Result<f64, String> {
    let value = record
        .get(field)
        .ok_or_else(|| format!("missing field `{field}`"))?;
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    number
        .filter(|f: &f64| f.is_finite())
        .ok_or_else(|| format!("field `{field}`: {value} is not a number"))
}

/// A 2.x plain string, or a 3.0 array of `{text, language}`: the preferred language's text,
/// else the first. Empty texts (real feeds have them) count as absent.
fn localized(value: Option<&Value>, language: Option<&str>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(items) => {
            let text = |item: &Value| {
                item.get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
                    .map(str::to_owned)
            };
            language
                .and_then(|l| {
                    items.iter().find(|i| {
                        i.get("language")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case(l))
                    })
                })
                .and_then(text)
                .or_else(|| items.iter().find_map(text))
        }
        _ => None,
    }
}

/// Reads one `station_information` record.
pub fn parse_info(record: &Value, language: Option<&str>) -> Result<(String, Info), String> {
    if !record.is_object() {
        return Err(format!(
            "expected a station object, got JSON {}",
            json_kind(record)
        ));
    }
    let id = field_id(record)?;
    let position = Position {
        lat: coordinate(record, "lat")?,
        lng: coordinate(record, "lon")?,
    };
    let name = localized(record.get("name"), language).unwrap_or_else(|| id.clone());
    let address = record
        .get("address")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .map_or_else(|| name.clone(), str::to_owned);
    let banking = record
        .get("rental_methods")
        .and_then(Value::as_array)
        .is_some_and(|methods| {
            methods
                .iter()
                .filter_map(Value::as_str)
                .any(|m| m.eq_ignore_ascii_case("creditcard"))
        });
    let code = record.get("stationCode").and_then(id_text);
    Ok((
        id,
        Info {
            code,
            name,
            address,
            position,
            capacity: count(record, "capacity")?,
            banking,
        },
    ))
}

/// Reads one `station_status` record.
pub fn parse_status(record: &Value) -> Result<StatusRecord, String> {
    if !record.is_object() {
        return Err(format!(
            "expected a station object, got JSON {}",
            json_kind(record)
        ));
    }
    let station_id = field_id(record)?;
    let bikes = match count(record, "num_vehicles_available")? {
        Some(n) => n,
        None => count(record, "num_bikes_available")?.ok_or_else(|| {
            "missing field `num_bikes_available` (or 3.0's `num_vehicles_available`)".to_owned()
        })?,
    };
    let installed = flag(record, "is_installed")?.unwrap_or(true);
    let renting = flag(record, "is_renting")?.unwrap_or(true);
    let last_reported = match record.get("last_reported") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let secs = n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .ok_or_else(|| format!("field `last_reported`: {n} is not a timestamp"))?;
            Some(seconds_to_ms(secs))
        }
        Some(Value::String(s)) => Some(
            parse_rfc3339_ms(s)
                .or_else(|| s.trim().parse::<i64>().ok().map(seconds_to_ms))
                .ok_or_else(|| {
                    format!("field `last_reported`: {s:?} is neither RFC 3339 nor seconds")
                })?,
        ),
        Some(v) => return Err(format!("field `last_reported`: {v} is not a timestamp")),
    };
    Ok(StatusRecord {
        station_id,
        bikes,
        // Fields velib did not read before: one that cannot be read is left out, and the
        // station still published with its v1 counts.
        by_type: vehicles::type_counts(record).unwrap_or(None),
        bikes_disabled: count(record, "num_vehicles_disabled")
            .ok()
            .flatten()
            .or_else(|| count(record, "num_bikes_disabled").ok().flatten()),
        docks_disabled: count(record, "num_docks_disabled").ok().flatten(),
        returning: flag(record, "is_returning").ok().flatten(),
        docks: count(record, "num_docks_available")?,
        open: installed && renting,
        // Placeholders seen on real feeds (`0001-01-01T00:00:00Z`, 0) say "never": no time.
        last_reported: last_reported.filter(|&ms| ms >= PLACEHOLDER_BEFORE_MS),
    })
}

/// Times before 2000-01-01 are placeholders, not reports: no bike-share feed predates GBFS by
/// that much.
const PLACEHOLDER_BEFORE_MS: i64 = 946_684_800_000;

/// A feed's `last_updated` (seconds in 1.x/2.x, RFC 3339 in 3.0; Vélib' Métropole's 1.0 feed
/// calls it `lastUpdatedOther`), in epoch milliseconds; `None` when absent or unreadable.
pub fn feed_time(feed: &Value) -> Option<i64> {
    let value = feed
        .get("last_updated")
        .or_else(|| feed.get("lastUpdatedOther"))?;
    let ms = match value {
        Value::Number(n) => seconds_to_ms(
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?,
        ),
        Value::String(s) => {
            parse_rfc3339_ms(s).or_else(|| s.trim().parse().ok().map(seconds_to_ms))?
        }
        _ => return None,
    };
    (ms >= PLACEHOLDER_BEFORE_MS).then_some(ms)
}

/// POSIX seconds to milliseconds; values too large to be seconds (after the year 5138) are
/// taken as milliseconds already, which some publishers send by mistake.
fn seconds_to_ms(value: i64) -> i64 {
    // `unsigned_abs`: `i64::MIN` (what `-1e19` saturates to) has no `abs`.
    if value.unsigned_abs() > 100_000_000_000 {
        value
    } else {
        value * 1000
    }
}

/// Joins a station's information and status into a v1 `Station`, from the snapshot made at
/// `snapshot_at` (epoch ms), telling e-bikes from classic bikes by `types`.
pub fn to_station(
    contract: &str,
    info: &Info,
    status: &StatusRecord,
    types: &VehicleTypes,
    snapshot_at: i64,
) -> Station {
    let bike_stands = info
        .capacity
        .unwrap_or_else(|| status.bikes.saturating_add(status.docks.unwrap_or(0)));
    Station {
        number: StationId::from_text(info.code.as_deref().unwrap_or(&status.station_id)),
        contract_name: contract.to_owned(),
        name: info.name.clone(),
        address: info.address.clone(),
        position: info.position,
        banking: info.banking,
        bonus: false,
        bike_stands,
        available_bike_stands: status
            .docks
            .unwrap_or_else(|| bike_stands.saturating_sub(status.bikes)),
        available_bikes: status.bikes,
        status: if status.open {
            Status::Open
        } else {
            Status::Closed
        },
        last_update: status.last_reported,
        snapshot_at: Some(snapshot_at),
        bikes_by_type: status.by_type.as_deref().map(|c| types.resolve(c)),
        bikes_out_of_service: status.bikes_disabled,
        docks_out_of_service: status.docks_disabled,
        is_returning: status.returning,
    }
}

/// The contract slug of a JCDecaux GBFS URL (`…/contracts/<slug>/gbfs/…` on cyclocity or under
/// the configured cyclocity base), if it is one.
fn cyclocity_slug<'a>(url: &'a Url, cyclocity: &Url) -> Option<&'a str> {
    let rest = if url.host_str() == Some(CYCLOCITY_HOST) {
        url.path()
    } else if url.as_str().starts_with(cyclocity.as_str()) {
        &url.path()[cyclocity.path().len().saturating_sub(1)..]
    } else {
        return None;
    };
    let mut segments = rest.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("contracts"), Some(slug), Some("gbfs")) if !slug.is_empty() => Some(slug),
        _ => None,
    }
}

/// The host of a URL, without port: the contract name of last resort.
fn host_name(url: &Url) -> String {
    url.host_str().unwrap_or("gbfs").to_owned()
}

/// How many systems one poll fetches at the same time.
const MAX_CONCURRENT_SYSTEMS: usize = 32;

impl StationSource for GbfsSource {
    fn describe(&self) -> String {
        let systems: Vec<_> = self.systems.iter().map(System::label).collect();
        match systems.as_slice() {
            [one] => format!("GBFS {one}"),
            many => format!("GBFS, {} systems: {}", many.len(), many.join(", ")),
        }
    }

    async fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        let (client, limits, language) = (&self.client, self.limits, self.language.as_deref());
        // Bounded: a poll over hundreds of systems must not open a connection (and hold a body)
        // per system at once, so systems are fetched a batch at a time, in order.
        let mut results = Vec::with_capacity(self.systems.len());
        for batch in self.systems.chunks_mut(MAX_CONCURRENT_SYSTEMS) {
            results.extend(
                futures::future::join_all(
                    batch
                        .iter_mut()
                        .map(|system| system.poll(client, limits, language)),
                )
                .await,
            );
        }
        let taken_at = now_ms();
        let mut stations = Vec::new();
        let mut first_error = None;
        let mut succeeded = 0;
        for (system, result) in self.systems.iter().zip(results) {
            match result {
                Ok((mut s, skipped)) => {
                    succeeded += 1;
                    self.skipped += skipped;
                    stations.append(&mut s);
                }
                Err(err) => {
                    if self.systems.len() > 1 {
                        tracing::warn!(system = %system.label(), error = %err, class = err.class(),
                            "GBFS system failed; its stations are missing from this snapshot");
                    }
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) if succeeded == 0 => Err(err),
            _ => Ok(Snapshot { taken_at, stations }),
        }
    }

    fn skipped_records(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(record: Value) -> Info {
        parse_info(&record, None).unwrap().1
    }

    fn station(info_json: Value, status_json: Value) -> Result<Station, String> {
        let (_, i) = parse_info(&info_json, Some("fr"))?;
        let s = parse_status(&status_json)?;
        Ok(to_station(
            "lyon",
            &i,
            &s,
            &VehicleTypes::default(),
            1_751_470_000_000,
        ))
    }

    fn base_info() -> Value {
        json!({"station_id": "1001", "name": "Bellecour", "lat": 45.757, "lon": 4.832,
               "address": "Place Bellecour", "capacity": 20, "rental_methods": ["KEY", "CREDITCARD"]})
    }

    fn base_status() -> Value {
        json!({"station_id": "1001", "num_bikes_available": 3, "num_docks_available": 16,
               "is_installed": true, "is_renting": true, "is_returning": true,
               "last_reported": 1_750_000_000})
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = value;
        }
        v
    }

    #[test]
    fn maps_a_2_3_station() {
        let s = station(base_info(), base_status()).unwrap();
        assert_eq!(s.number, StationId::Number(1001));
        assert_eq!(s.key().as_str(), "lyon:1001");
        assert_eq!(s.snapshot_at, Some(1_751_470_000_000));
        assert_eq!(
            (s.name.as_str(), s.address.as_str()),
            ("Bellecour", "Place Bellecour")
        );
        assert_eq!((s.position.lat, s.position.lng), (45.757, 4.832));
        assert!(s.banking);
        assert!(!s.bonus);
        assert_eq!(
            (s.bike_stands, s.available_bikes, s.available_bike_stands),
            (20, 3, 16)
        );
        assert_eq!(s.status, Status::Open);
        assert_eq!(s.last_update, Some(1_750_000_000_000));
    }

    #[test]
    fn maps_types_out_of_service_and_returns_in_3_0_and_2_3() {
        // A real 3.0 record from JCDecaux (lyon, 2026-07-02), then the same in 2.3 words.
        let v3 = json!({"station_id": "1001", "num_vehicles_available": 9,
            "vehicle_types_available": [{"vehicle_type_id": "mechanical", "count": 2},
                                        {"vehicle_type_id": "electrical", "count": 7}],
            "num_vehicles_disabled": 1, "num_docks_available": 8, "num_docks_disabled": 2,
            "is_installed": true, "is_renting": true, "is_returning": false,
            "last_reported": "2026-07-02T01:16:37Z"});
        let mut v2 = with(v3.clone(), "num_vehicles_available", Value::Null);
        v2 = with(v2, "num_bikes_available", json!(9));
        v2 = with(v2, "num_vehicles_disabled", Value::Null);
        v2 = with(v2, "num_bikes_disabled", json!(1));
        for record in [v3, v2] {
            let s = station(base_info(), record.clone()).unwrap();
            assert_eq!(
                (s.ebikes(), s.classic_bikes()),
                (Some(7), Some(2)),
                "{record}"
            );
            assert_eq!(s.bikes_out_of_service, Some(1), "{record}");
            assert_eq!(s.docks_out_of_service, Some(2), "{record}");
            assert_eq!(s.is_returning, Some(false), "{record}");
            // Renting but not taking returns: still OPEN, as v1 said.
            assert_eq!(s.status, Status::Open);
            let ids: Vec<&str> = s
                .bikes_by_type
                .iter()
                .flatten()
                .map(|c| c.vehicle_type_id.as_ref())
                .collect();
            assert_eq!(ids, ["mechanical", "electrical"]);
        }
        // A record that says none of it has none of it: absent, not 0.
        let bare = json!({"station_id": "1001", "num_bikes_available": 3});
        let s = station(base_info(), bare).unwrap();
        assert_eq!(
            (
                s.ebikes(),
                s.bikes_out_of_service,
                s.docks_out_of_service,
                s.is_returning
            ),
            (None, None, None, None)
        );
        let json = String::from_utf8(s.to_json()).unwrap();
        for field in ["bikes_by_type", "out_of_service", "is_returning"] {
            assert!(!json.contains(field), "{json}");
        }
    }

    #[test]
    fn an_unreadable_extra_field_is_left_out_not_the_station() {
        for (field, value) in [
            ("vehicle_types_available", json!("many")),
            ("num_docks_disabled", json!(-1)),
            ("num_bikes_disabled", json!("x")),
            ("is_returning", json!("perhaps")),
        ] {
            let s = station(base_info(), with(base_status(), field, value)).unwrap();
            assert_eq!(s.available_bikes, 3, "{field}");
            let json = String::from_utf8(s.to_json()).unwrap();
            let name = match field {
                "vehicle_types_available" => "bikes_by_type",
                "num_docks_disabled" => "docks_out_of_service",
                "num_bikes_disabled" => "bikes_out_of_service",
                _ => "is_returning",
            };
            assert!(!json.contains(name), "{field}: {json}");
        }
    }

    #[test]
    fn status_mapping_table() {
        // (is_installed, is_renting) → status; Null means absent.
        let cases = [
            (json!(true), json!(true), Status::Open),
            (json!(true), json!(false), Status::Closed),
            (json!(false), json!(true), Status::Closed),
            (json!(false), json!(false), Status::Closed),
            (Value::Null, Value::Null, Status::Open),
            (json!(1), json!(0), Status::Closed),
            (json!(1), json!(1), Status::Open),
        ];
        for (installed, renting, want) in cases {
            let st = with(
                with(base_status(), "is_installed", installed.clone()),
                "is_renting",
                renting.clone(),
            );
            assert_eq!(
                station(base_info(), st).unwrap().status,
                want,
                "{installed} {renting}"
            );
        }
    }

    #[test]
    fn count_and_capacity_table() {
        // (capacity, bikes field, bikes, docks) → (bike_stands, available_bikes, free stands)
        let cases = [
            (
                json!(20),
                "num_bikes_available",
                json!(3),
                json!(16),
                (20, 3, 16),
            ),
            (
                json!(20),
                "num_vehicles_available",
                json!(5),
                json!(15),
                (20, 5, 15),
            ),
            (
                Value::Null,
                "num_bikes_available",
                json!(4),
                json!(6),
                (10, 4, 6),
            ),
            (
                json!(12),
                "num_bikes_available",
                json!(4),
                Value::Null,
                (12, 4, 8),
            ),
            (
                Value::Null,
                "num_bikes_available",
                json!(4),
                Value::Null,
                (4, 4, 0),
            ),
            (
                json!("20"),
                "num_bikes_available",
                json!("3"),
                json!(16.0),
                (20, 3, 16),
            ),
            (
                json!(2),
                "num_bikes_available",
                json!(5),
                Value::Null,
                (2, 5, 0),
            ),
        ];
        for (capacity, field, bikes, docks, want) in cases {
            let inf = with(base_info(), "capacity", capacity.clone());
            let mut st = with(base_status(), "num_bikes_available", Value::Null);
            st = with(
                with(st, field, bikes.clone()),
                "num_docks_available",
                docks.clone(),
            );
            let s = station(inf, st).unwrap();
            assert_eq!(
                (s.bike_stands, s.available_bikes, s.available_bike_stands),
                want,
                "{capacity} {field}={bikes} docks={docks}"
            );
        }
    }

    #[test]
    fn placeholder_times_are_no_time() {
        for placeholder in [
            json!("0001-01-01T00:00:00Z"),
            json!(0),
            json!("1970-01-01T00:00:00Z"),
        ] {
            let st = with(base_status(), "last_reported", placeholder.clone());
            assert_eq!(
                station(base_info(), st).unwrap().last_update,
                None,
                "{placeholder}"
            );
        }
        // Fraction digits from 0 to 9, as in JCDecaux's feeds.
        for (text, ms) in [
            ("2026-07-02T15:27:31Z", 1_783_006_051_000),
            ("2026-07-02T15:27:31.7Z", 1_783_006_051_700),
            ("2026-07-02T15:27:31.774Z", 1_783_006_051_774),
            ("2026-03-16T16:56:29.351594185Z", 1_773_680_189_351),
        ] {
            assert_eq!(
                feed_time(&json!({"last_updated": text})),
                Some(ms),
                "{text}"
            );
        }
        assert_eq!(
            feed_time(&json!({"lastUpdatedOther": 1_623_414_797})),
            Some(1_623_414_797_000)
        );
        assert_eq!(
            feed_time(&json!({"last_updated": 1_623_414_797})),
            Some(1_623_414_797_000)
        );
        assert_eq!(feed_time(&json!({"ttl": 1})), None);
        assert_eq!(
            feed_time(&json!({"last_updated": "0001-01-01T00:00:00Z"})),
            None
        );
    }

    #[test]
    fn paris_station_code_is_the_id() {
        // Vélib' Métropole (GBFS 1.0): an opaque integer station_id joins the two feeds; the
        // familiar number is `stationCode`.
        let info_json = json!({"station_id": 213_688_169, "name": "Benjamin Godard - Victor Hugo",
            "lat": 48.865983, "lon": 2.275725, "capacity": 35, "stationCode": "16107"});
        let status_json = json!({"station_id": 213_688_169, "stationCode": "16107",
            "num_bikes_available": 4, "numBikesAvailable": 4,
            "num_bikes_available_types": [{"mechanical": 3}, {"ebike": 1}],
            "num_docks_available": 31, "numDocksAvailable": 31,
            "is_installed": 1, "is_renting": 1, "is_returning": 1, "last_reported": 1_623_414_700});
        let (id, i) = parse_info(&info_json, None).unwrap();
        let st = parse_status(&status_json).unwrap();
        assert_eq!(id, st.station_id, "the feeds join on station_id");
        let s = to_station(
            "paris",
            &i,
            &st,
            &VehicleTypes::default(),
            1_623_414_797_000,
        );
        assert_eq!(s.key().as_str(), "paris:16107");
        assert_eq!((s.ebikes(), s.classic_bikes()), (Some(1), Some(3)));
        assert_eq!(s.is_returning, Some(true));
        assert_eq!(
            (s.bikes_out_of_service, s.docks_out_of_service),
            (None, None)
        );
        assert_eq!(
            (s.available_bikes, s.available_bike_stands, s.bike_stands),
            (4, 31, 35)
        );
        assert_eq!(s.status, Status::Open);
        assert_eq!(s.address, "Benjamin Godard - Victor Hugo");
    }

    #[test]
    fn last_reported_table() {
        let cases = [
            (json!(1_750_000_000), Some(1_750_000_000_000)),
            (json!(1_750_000_000_123i64), Some(1_750_000_000_123)),
            (json!("2025-06-15T15:06:40Z"), Some(1_750_000_000_000)),
            (json!("2025-06-15T17:06:40+02:00"), Some(1_750_000_000_000)),
            (json!("1750000000"), Some(1_750_000_000_000)),
            (json!(1_750_000_000.0), Some(1_750_000_000_000)),
            (Value::Null, None),
        ];
        for (value, want) in cases {
            let st = with(base_status(), "last_reported", value.clone());
            assert_eq!(
                station(base_info(), st).unwrap().last_update,
                want,
                "{value}"
            );
        }
        let st = with(base_status(), "last_reported", json!("yesterday"));
        assert!(
            station(base_info(), st)
                .unwrap_err()
                .contains("last_reported")
        );
    }

    #[test]
    fn names_addresses_and_banking() {
        let localized = json!([{"text": "Bellecour", "language": "en"}, {"text": "Place Bellecour FR", "language": "fr"}]);
        let i = with(
            with(base_info(), "name", localized.clone()),
            "address",
            Value::Null,
        );
        let (_, got) = parse_info(&i, Some("fr")).unwrap();
        assert_eq!(got.name, "Place Bellecour FR");
        assert_eq!(
            got.address, "Place Bellecour FR",
            "address falls back to the name"
        );
        let (_, got) = parse_info(&i, Some("de")).unwrap();
        assert_eq!(got.name, "Bellecour", "unknown language: the first entry");
        let (_, got) = parse_info(&i, None).unwrap();
        assert_eq!(got.name, "Bellecour");

        assert!(!info(with(base_info(), "rental_methods", json!(["key", "phone"]))).banking);
        assert!(info(with(base_info(), "rental_methods", json!(["creditcard"]))).banking);
        assert!(!info(with(base_info(), "rental_methods", Value::Null)).banking);
        assert_eq!(info(with(base_info(), "name", Value::Null)).name, "1001");
        let empty_first =
            json!([{"text": "", "language": "fr"}, {"text": "Bellecour", "language": "en"}]);
        assert_eq!(
            info(with(base_info(), "name", empty_first)).name,
            "Bellecour"
        );
        assert_eq!(
            info(with(
                base_info(),
                "name",
                json!([{"text": " ", "language": "fr"}])
            ))
            .name,
            "1001"
        );
        assert_eq!(info(with(base_info(), "name", json!(""))).name, "1001");
    }

    #[test]
    fn station_ids_keep_text_when_not_canonical_numbers() {
        for (id, want) in [
            (json!("1001"), StationId::Number(1001)),
            (json!(42), StationId::Number(42)),
            (json!("0042"), StationId::Text("0042".into())),
            (json!("a1b2-c3"), StationId::Text("a1b2-c3".into())),
        ] {
            let st = with(base_status(), "station_id", id.clone());
            assert_eq!(station(base_info(), st).unwrap().number, want, "{id}");
        }
    }

    #[test]
    fn bad_records_say_which_field() {
        let cases = [
            (with(base_status(), "station_id", Value::Null), "station_id"),
            (with(base_status(), "station_id", json!("")), "station_id"),
            (
                with(base_status(), "num_bikes_available", json!("many")),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_bikes_available", json!(-1)),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_bikes_available", Value::Null),
                "num_bikes_available",
            ),
            (
                with(base_status(), "num_docks_available", json!(1.5)),
                "num_docks_available",
            ),
            (
                with(base_status(), "is_renting", json!("yes")),
                "is_renting",
            ),
            (json!([1, 2]), "station object"),
        ];
        for (record, field) in cases {
            let err = parse_status(&record).unwrap_err();
            assert!(err.contains(field), "{record}: {err}");
        }
        for (record, field) in [
            (with(base_info(), "lat", Value::Null), "lat"),
            (with(base_info(), "lon", json!("east")), "lon"),
            (with(base_info(), "capacity", json!(true)), "capacity"),
        ] {
            let err = parse_info(&record, None).unwrap_err();
            assert!(err.contains(field), "{record}: {err}");
        }
    }

    #[test]
    fn every_mapped_station_survives_the_v1_json_round_trip() {
        // A small property test: whatever combination of optional fields, the mapped station
        // is a valid v1 record and keeps bikes + free stands consistent with what was given.
        let mut rng = velib_model::rng::SplitMix64::new(99);
        for _ in 0..500 {
            let capacity = rng.range(0, 60);
            let bikes = rng.range(0, 60);
            let docks = rng.range(0, 60);
            let mut inf = base_info();
            let mut st = base_status();
            inf = with(
                inf,
                "capacity",
                if rng.chance(0.3) {
                    Value::Null
                } else {
                    json!(capacity)
                },
            );
            st = with(st, "num_bikes_available", json!(bikes));
            st = with(
                st,
                "num_docks_available",
                if rng.chance(0.3) {
                    Value::Null
                } else {
                    json!(docks)
                },
            );
            st = with(st, "is_renting", json!(rng.chance(0.8)));
            let s = station(inf.clone(), st.clone()).unwrap();
            assert_eq!(s.available_bikes, bikes);
            if st.get("num_docks_available").is_some() {
                assert_eq!(s.available_bike_stands, docks);
            } else {
                assert!(s.available_bike_stands <= s.bike_stands);
            }
            if inf.get("capacity").is_none() {
                assert!(s.bike_stands >= s.available_bikes);
            }
            assert_eq!(Station::from_json(&s.to_json()).unwrap(), s);
        }
    }

    #[test]
    fn discovery_2_x_and_3_0() {
        let base = Url::parse("https://example.org/gbfs/gbfs.json").unwrap();
        let feeds = |lang: &str| {
            json!({"feeds": [
                {"name": "system_information", "url": format!("https://example.org/{lang}/system_information.json")},
                {"name": "station_information", "url": format!("https://example.org/{lang}/station_information.json")},
                {"name": "station_status", "url": "station_status.json"},
            ]})
        };
        let v2 = json!({"data": {"fr": feeds("fr"), "en": feeds("en")}});
        let got = parse_discovery(&v2, &base, None).unwrap();
        assert_eq!(
            got.station_information.as_str(),
            "https://example.org/en/station_information.json"
        );
        assert_eq!(
            got.station_status.as_str(),
            "https://example.org/gbfs/station_status.json"
        );
        let got = parse_discovery(&v2, &base, Some("fr")).unwrap();
        assert_eq!(
            got.station_information.as_str(),
            "https://example.org/fr/station_information.json"
        );
        let only_de = json!({"data": {"de": feeds("de")}});
        assert!(
            parse_discovery(&only_de, &base, Some("fr"))
                .unwrap()
                .station_information
                .as_str()
                .contains("/de/")
        );

        let v3 = json!({"version": "3.0", "data": feeds("xx")});
        let got = parse_discovery(&v3, &base, Some("fr")).unwrap();
        assert!(got.system_information.unwrap().as_str().contains("/xx/"));

        let dockless = json!({"data": {"feeds": [{"name": "vehicle_status", "url": "v.json"}]}});
        assert!(
            parse_discovery(&dockless, &base, None)
                .unwrap_err()
                .contains("dockless")
        );
        assert!(parse_discovery(&json!({"data": {}}), &base, None).is_err());
        assert!(parse_discovery(&json!([]), &base, None).is_err());
    }

    #[test]
    fn contract_names() {
        assert_eq!(contract_key("lyon"), "lyon");
        assert_eq!(contract_key("Cergy-Pontoise"), "cergy-pontoise");
        let cyclocity = Url::parse("https://api.cyclocity.fr/").unwrap();
        let local = Url::parse("http://127.0.0.1:8080/cyc/").unwrap();
        let u = Url::parse("https://api.cyclocity.fr/contracts/lyon/gbfs/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &local), Some("lyon"));
        let u = Url::parse("http://127.0.0.1:8080/cyc/contracts/nantes/gbfs/v3/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &local), Some("nantes"));
        assert_eq!(cyclocity_slug(&u, &cyclocity), None);
        let u = Url::parse("https://gbfs.citibikenyc.com:443/gbfs/2.3/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &cyclocity), None);
        assert_eq!(host_name(&u), "gbfs.citibikenyc.com");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "Lyon".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::JcDecauxContract("lyon".into())
        );
        assert!(matches!(
            "https://x.org/gbfs.json".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::Url(_)
        ));
        assert!("ftp://x.org/gbfs.json".parse::<GbfsTarget>().is_err());
        assert_eq!(
            "paris".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::Named {
                contract: "paris".into(),
                url: PARIS_GBFS_URL.into()
            }
        );
        assert_eq!(
            "Velo=http://127.0.0.1:1/gbfs.json?a=b"
                .parse::<GbfsTarget>()
                .unwrap(),
            GbfsTarget::Named {
                contract: "velo".into(),
                url: "http://127.0.0.1:1/gbfs.json?a=b".into()
            }
        );
        assert!(
            "bad name=http://x.org/gbfs.json"
                .parse::<GbfsTarget>()
                .is_err()
        );
        assert!("x=ftp://x.org/gbfs.json".parse::<GbfsTarget>().is_err());
        assert!("lyon/../x".parse::<GbfsTarget>().is_err());
        assert!("".parse::<GbfsTarget>().is_err());
    }

    /// A time of `-1e19` or `i64::MIN` seconds (a hostile or broken feed) is a placeholder,
    /// not a panic: the seconds-or-milliseconds guess took `abs()` of `i64::MIN`, which
    /// overflows (a panic wherever overflow checks are on, as in debug builds).
    #[test]
    fn extreme_times_are_placeholders_not_overflows() {
        for value in [
            json!(-1e19),
            json!(i64::MIN),
            json!(-1e300),
            json!("-9223372036854775808"),
        ] {
            let record =
                json!({"station_id": "1", "num_bikes_available": 1, "last_reported": value});
            assert_eq!(
                parse_status(&record).unwrap().last_reported,
                None,
                "{value}"
            );
            assert_eq!(feed_time(&json!({"last_updated": value})), None, "{value}");
        }
        let record = json!({"station_id": "1", "num_bikes_available": 1, "last_reported": 1e19});
        assert_eq!(parse_status(&record).unwrap().last_reported, Some(i64::MAX));
    }
}
