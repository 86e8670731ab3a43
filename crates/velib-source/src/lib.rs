//! Where velib's station snapshots come from.
//!
//! A [`StationSource`] returns one [`Snapshot`] per call to [`StationSource::fetch`]: every
//! station of one poll, and when the poll was taken. The implementations:
//!
//! | source | argument ([`SourceSpec`]) | what it reads |
//! |---|---|---|
//! | [`JcDecauxSource`] | `jcdecaux`, `jcdecaux:<contract>` | JCDecaux's v1 API (needs a key; retired 2026-12-31) |
//! | [`GbfsSource`] | `gbfs:<url or contract>[,…]` | any GBFS 1.x–3.0 system, JCDecaux's keyless feeds included |
//! | [`ReplaySource`] | `replay:<file>` | a recording made with `velib-producer --record FILE` |
//! | [`SimulateSource`] | `simulate`, `simulate:<N>` | a seeded synthetic city (the default without a key, and the benchmark load) |
//!
//! # Choosing a source at run time
//!
//! A binary parses its `--source` argument into a [`SourceSpec`] and builds an [`AnySource`]
//! with the [`SourceOptions`] its other flags fill in:
//!
//! ```
//! use velib_source::{SourceOptions, SourceSpec, StationSource};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let options = SourceOptions::default();
//! let spec: SourceSpec = match std::env::var("VELIB_SOURCE") {
//!     Ok(arg) => arg.parse()?,
//!     Err(_) => SourceSpec::default_for(&options), // jcdecaux with a key, else simulate
//! };
//! let mut source = spec.build(&options)?;
//! tracing::info!(source = %source.describe(), "polling");
//! let snapshot = source.fetch().await?;
//! assert!(!snapshot.stations.is_empty());
//! # Ok::<(), velib_source::SourceError>(())
//! # }).unwrap();
//! ```
//!
//! # One example per source
//!
//! JCDecaux v1 (the key comes from `--jcdecaux-api-key` or `JCDECAUX_API_KEY`):
//!
//! ```no_run
//! # async fn run() -> Result<(), velib_source::SourceError> {
//! use velib_source::{JcDecauxSource, SourceOptions, StationSource};
//! let options = SourceOptions {
//!     jcdecaux_api_key: std::env::var("JCDECAUX_API_KEY").ok().map(Into::into),
//!     ..SourceOptions::default()
//! };
//! let mut lyon = JcDecauxSource::new(&options, Some("Lyon".to_owned()))?;
//! let snapshot = lyon.fetch().await?;
//! # Ok(()) }
//! ```
//!
//! GBFS, JCDecaux's keyless successor and any other system (field mapping: [`GbfsSource`]):
//!
//! ```no_run
//! # async fn run() -> Result<(), velib_source::SourceError> {
//! use velib_source::{SourceOptions, SourceSpec, StationSource};
//! let spec: SourceSpec = "gbfs:lyon,https://gbfs.citibikenyc.com/gbfs/2.3/gbfs.json".parse()?;
//! let mut both = spec.build(&SourceOptions::default())?;
//! let snapshot = both.fetch().await?; // Lyon:… and system_id:… stations together
//! # Ok(()) }
//! ```
//!
//! Replay, ten times faster than recorded, looping:
//!
//! ```no_run
//! # async fn run() -> Result<(), velib_source::SourceError> {
//! use velib_source::{ReplaySource, StationSource};
//! let mut replay = ReplaySource::new("monday.ndjson", 10.0, true)?;
//! let snapshot = replay.fetch().await?;
//! # Ok(()) }
//! ```
//!
//! Simulation, with pausing between failed polls by a [`Backoff`]:
//!
//! ```
//! use std::time::Duration;
//! use velib_source::{Backoff, SimulateConfig, SimulateSource, StationSource};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut source = SimulateSource::new(SimulateConfig { stations: 10, ..Default::default() });
//! let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
//! match source.fetch().await {
//!     Ok(snapshot) => {
//!         backoff.reset();
//!         assert_eq!(snapshot.stations.len(), 10);
//!     }
//!     Err(err) if err.is_permanent() => panic!("{err}"),
//!     Err(err) => tokio::time::sleep(backoff.next_delay(&err)).await,
//! }
//! # });
//! ```
//!
//! # Errors, retries and what a poll guarantees
//!
//! A record that cannot be read is skipped, counted ([`StationSource::skipped_records`]) and
//! logged (debug per record with its index, one warning per poll); the snapshot goes on
//! without it. So a snapshot holds every *readable* station of the poll, and no more: a
//! consumer must not infer that a station missing from one snapshot was removed. Only a poll
//! that yields nothing is a [`SourceError`], whose [`class`](SourceError::class) labels
//! metrics and whose [`is_permanent`](SourceError::is_permanent) says whether to give up.
//!
//! HTTP policy, shared by the web sources: connect and total timeouts, a body cap enforced
//! while streaming, 401/403 and 404/410 are configuration errors, 429 and 503 carry
//! `Retry-After`, other statuses (5xx) and transport failures are transient. One client per
//! source, reused across polls (connection pooling, gzip).
//!
//! # Secrets
//!
//! The JCDecaux key is a [`secrecy::SecretString`]. URLs in errors and logs show
//! `apiKey=REDACTED`; reqwest errors are stripped of their URL, and any text quoted from
//! elsewhere (a transport error's causes, the start of an unexpected body) is scrubbed of the
//! key, raw or percent-encoded. `Debug` of the options and sources shows `[REDACTED]`.

#![forbid(unsafe_code)]

mod backoff;
mod error;
mod gbfs;
mod http;
mod jcdecaux;
mod options;
mod placement;
mod replay;
mod simulate;
mod skips;
mod spec;
mod split;
mod time;

pub use backoff::Backoff;
pub use error::SourceError;
pub use gbfs::{GbfsSource, GbfsTarget, PARIS_GBFS_URL};
pub use jcdecaux::{JcDecauxSource, contract_key};
pub use options::SourceOptions;
pub use replay::ReplaySource;
pub use simulate::{SimulateConfig, SimulateSource};
pub use spec::{AnySource, SourceSpec};
pub use velib_model::Snapshot;

/// The pure readers behind the GBFS and JCDecaux v1 sources: each document and record as a
/// poll reads it, without HTTP. Public for the fuzz targets in `fuzz/`, which must exercise the
/// very code the sources run; not a stable API.
#[doc(hidden)]
pub mod readers {
    pub use crate::gbfs::{
        Feeds, Info, StatusRecord, VehicleTypes, feed_time, id_text, parse_discovery, parse_info,
        parse_status, parse_vehicle_types, to_station,
    };
    pub use crate::split::{Split, split};
}

use std::future::Future;

/// Something that produces station snapshots on demand.
///
/// Implementations own their HTTP client (if any) and reuse it across polls. `fetch` takes
/// `&mut self` because sources keep state between polls (GBFS caches `station_information`, a
/// replay remembers its position, the simulator its city). The futures are `Send`, so a
/// producer can poll from a multi-threaded tokio runtime.
pub trait StationSource: Send {
    /// A human-readable description for logs, with secrets redacted, e.g.
    /// `JCDecaux v1 at https://api.jcdecaux.com (contract Lyon)`.
    fn describe(&self) -> String;

    /// One snapshot.
    ///
    /// Per-record problems are skipped, counted and logged inside; only whole-poll failures
    /// are errors.
    fn fetch(&mut self) -> impl Future<Output = Result<Snapshot, SourceError>> + Send;

    /// How many records this source has skipped because they could not be read, since it was
    /// built. Monotonic, so a producer can export it as a counter.
    fn skipped_records(&self) -> u64 {
        0
    }
}
