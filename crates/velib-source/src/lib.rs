//! Where velib's station snapshots come from.
//!
//! A [`StationSource`] returns one [`Snapshot`] per call to [`StationSource::fetch`]: every
//! station of one poll, and when the poll was taken. The implementations:
//!
//! | source | argument | what it reads |
//! |---|---|---|
//! | [`JcDecauxSource`] | `jcdecaux`, `jcdecaux:<contract>` | JCDecaux's v1 API (needs a key; retired 2026-12-31) |
//! | [`GbfsSource`] | `gbfs:<url or contract>[,…]` | any GBFS 1.x–3.0 system, JCDecaux's keyless feeds included |
//! | [`ReplaySource`] | `replay:<file>` | a recording made with `velib-producer --record FILE` |
//! | [`SimulateSource`] | `simulate`, `simulate:<N>` | a seeded synthetic city (the default, and the benchmark load) |
//!
//! # Errors and retries
//!
//! A record that cannot be read is skipped, counted ([`StationSource::skipped_records`]) and
//! logged; the snapshot goes on without it. Only a poll that yields nothing is a
//! [`SourceError`], whose [`class`](SourceError::class) labels metrics and whose
//! [`is_permanent`](SourceError::is_permanent) says whether to give up. Pause between failed
//! polls with a [`Backoff`].
//!
//! ```
//! use std::time::Duration;
//! use velib_source::{Backoff, SimulateConfig, SimulateSource, StationSource};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
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

mod backoff;
mod error;
mod gbfs;
mod http;
mod jcdecaux;
mod options;
mod replay;
mod rng;
mod simulate;
mod skips;
mod spec;
mod time;

pub use backoff::Backoff;
pub use error::SourceError;
pub use gbfs::{GbfsSource, GbfsTarget};
pub use jcdecaux::JcDecauxSource;
pub use options::SourceOptions;
pub use replay::ReplaySource;
pub use simulate::{SimulateConfig, SimulateSource};
pub use spec::{AnySource, SourceSpec};
pub use velib_model::Snapshot;

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
