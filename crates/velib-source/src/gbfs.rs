//! GBFS (General Bikeshare Feed Specification) systems, 1.x to 3.0, docked stations only.
//!
//! JCDecaux publishes GBFS at `https://api.cyclocity.fr/contracts/{contract}/gbfs/gbfs.json`
//! (keyless) and retires its v1 API on 2026-12-31; about 1,500 other systems publish GBFS too.
//!
//! See [`GbfsSource`] for the field mapping, contract naming and caching.

use crate::time::now_ms;
use crate::{SourceError, SourceOptions, StationSource};
use poll::{Polling, System};
use reqwest::Client;
use velib_model::Snapshot;
#[cfg(doc)]
use velib_model::{Station, StationId};

mod faults;
mod poll;
mod read;
mod records;
mod targets;
mod vehicles;

pub use read::{Feeds, feed_time, id_text, parse_discovery};
pub use records::{Info, StatusRecord, parse_info, parse_status, to_station};
pub use targets::{GbfsTarget, PARIS_GBFS_URL};
pub use vehicles::{VehicleTypes, parse_vehicle_types};

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
/// # Faults of real feeds
///
/// A `station_id` listed twice in one `station_status` snapshot is published once: the copy
/// with the later `last_reported` (on a tie, the later in the document). A station that
/// `station_information` does not list is skipped (and counted in
/// [`skipped_records`](StationSource::skipped_records)). Each is warned about once per station,
/// naming the system and the `station_id`, until the station is seen without the fault, and
/// counted on every poll in `velib_source_gbfs_duplicate_station_records_total` and
/// `velib_source_gbfs_unknown_station_records_total` (label `system`: the contract name).
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
    limits: crate::http::Limits,
    language: Option<String>,
    systems: Vec<System>,
    skipped: u64,
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
        let polling = Polling {
            client: &self.client,
            limits: self.limits,
            language: self.language.as_deref(),
        };
        // Bounded: a poll over hundreds of systems must not open a connection (and hold a body)
        // per system at once, so systems are fetched a batch at a time, in order.
        let mut results = Vec::with_capacity(self.systems.len());
        for batch in self.systems.chunks_mut(MAX_CONCURRENT_SYSTEMS) {
            results.extend(
                futures::future::join_all(batch.iter_mut().map(|system| system.poll(polling)))
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
