//! A live map of the stations, fed by Kafka: what people would rather look at than read.
//!
//! [`run`] reads the stations topic and the monitor's empty-station events, keeps each
//! station's latest state and recent counts ([`state`]), and serves on one listener:
//!
//! | path | what |
//! |---|---|
//! | `/` | the page: a Leaflet map with one circle per station, per-contract totals, the live feed, a contract filter |
//! | `/api/events` | Server-Sent Events: a `snapshot` when a page connects, then an `update` with what changed every 200 ms (at least every second, for the data age) |
//! | `/api/stations` | the current state as a GeoJSON FeatureCollection |
//! | `/api/stations/{key}/history` | a station's hourly statistics from `from` to `to` (RFC 3339; the last 24 hours by default), JSON, or CSV with `?format=csv` or `Accept: text/csv` ([`history`]) |
//! | `/api/config` | the tile layer the page uses |
//! | `/health` | `200` with counts while the consumer runs, and the viewers open and hung up |
//! | `/assets/…` | the page's script and styles, and Leaflet, embedded at build time |
//!
//! # What it reads, and its limit
//!
//! Its consumer has a group of its own (`velib-web-<pid>-<time>-<n>`), so it gets every partition
//! whatever other consumers do, starts at the earliest offset the topics still hold, and never
//! commits: a page opened cold shows every station the topic holds as soon as it is read.
//! On a topic with a long `delete` retention that means reading all of it at start; a
//! compacted topic (`cargo xtask create-topics --cleanup-policy compact,delete`) keeps that
//! to about one record per station. Nothing is written back to Kafka.
//!
//! The monitor's statistics and health topics (`velib-monitor --stats`) are read the same way,
//! each by a consumer of its own: a restarted velib-web has the history again as soon as it
//! has read them, and a cluster without them (no monitor runs `--stats`) is said once in the
//! log while the live map goes on. Each station keeps its latest
//! [`WebConfig::history_windows`] windows (7 days of hourly windows by default).
//!
//! # Many viewers
//!
//! Each snapshot and update is serialised once and the same bytes go to every page
//! ([`viewers`]); a snapshot is built at most once per update sent, under the state's lock,
//! and `/health` never takes that lock. A page that falls more than
//! [`WebConfig::viewer_backlog`] updates behind, or never reads at all, is hung up; its
//! `EventSource` reconnects by itself and starts again from a fresh snapshot.
//!
//! # Station text is data
//!
//! Names and addresses reach the page as JSON strings and are put into the page with
//! `textContent` only; the page's Content-Security-Policy allows scripts from velib-web alone.

#![forbid(unsafe_code)]

pub mod assets;
mod consume;
pub mod history;
mod http;
pub mod state;
pub mod viewers;

pub use state::{Limits, MapState, Summary};
pub use viewers::DEFAULT_BACKLOG;

use rdkafka::error::KafkaError;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use velib_kafka::{ConnectionError, KafkaArgs};
use velib_model::topics;

/// OpenStreetMap's standard tile layer, the default base map.
pub const OSM_TILES: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
/// The attribution OpenStreetMap's tile usage policy asks for (HTML).
pub const OSM_ATTRIBUTION: &str =
    "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors";

/// The base map under the stations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiles {
    /// A Leaflet URL template, `https://…/{z}/{x}/{y}.png` (`{s}` for subdomains).
    pub url: String,
    /// The attribution shown in the map's corner: HTML, from the operator, not from the feed.
    pub attribution: String,
}

impl Tiles {
    /// Reads the `--tiles` flag: `none` for no base map, else a URL template with `{z}`, `{x}`
    /// and `{y}` on http or https.
    ///
    /// # Errors
    ///
    /// A message naming `--tiles` and what is wrong.
    pub fn from_flag(url: &str, attribution: &str) -> Result<Option<Tiles>, String> {
        if url.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "--tiles {url:?}: expected an http(s) URL template such as {OSM_TILES}, or none"
            ));
        }
        if let Some(missing) = ["{z}", "{x}", "{y}"].iter().find(|p| !url.contains(*p)) {
            return Err(format!(
                "--tiles {url:?}: the template has no {missing} (expected e.g. {OSM_TILES})"
            ));
        }
        Ok(Some(Tiles {
            url: url.to_owned(),
            attribution: attribution.to_owned(),
        }))
    }
}

impl Default for Tiles {
    /// OpenStreetMap's tiles.
    fn default() -> Tiles {
        Tiles {
            url: OSM_TILES.to_owned(),
            attribution: OSM_ATTRIBUTION.to_owned(),
        }
    }
}

/// Everything [`run`] needs besides the listener.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Kafka connection and `-X` properties.
    pub kafka: KafkaArgs,
    /// The topic of station records.
    pub topic: String,
    /// The monitor's empty-station events, or `None` to read none.
    pub events_topic: Option<String>,
    /// The base map, or `None` for none (the stations draw on a plain background).
    pub tiles: Option<Tiles>,
    /// How much history to keep.
    pub limits: Limits,
    /// The monitor's hourly statistics (`velib-monitor --stats`), read from the beginning for
    /// the history endpoint and the popup's chart, or `None` to read none.
    pub stats_topic: Option<String>,
    /// The monitor's health changes (locked, degraded), or `None` to read none.
    pub health_topic: Option<String>,
    /// Statistics windows kept per station, the oldest dropped first
    /// ([`history::DEFAULT_WINDOWS_PER_STATION`]: 7 days of hourly windows).
    pub history_windows: usize,
    /// How often changes are pushed to the pages.
    pub push_interval: Duration,
    /// How many updates a page may fall behind (not reading them, or reading them too
    /// slowly) before it is hung up; it then reconnects and starts from a fresh snapshot.
    /// At least 1 and at most 65,535: the updates are kept in a ring of that size.
    pub viewer_backlog: usize,
}

impl WebConfig {
    /// The defaults: `velib-stations`, `velib-empty-stations`, `velib-station-stats` (7 days
    /// kept per station), `velib-station-health`, OpenStreetMap tiles, pushes every 200 ms,
    /// pages hung up [`DEFAULT_BACKLOG`] updates behind.
    pub fn new(kafka: KafkaArgs) -> WebConfig {
        WebConfig {
            kafka,
            topic: topics::STATIONS.to_owned(),
            events_topic: Some(topics::EMPTY_STATIONS.to_owned()),
            tiles: Some(Tiles::default()),
            limits: Limits::default(),
            stats_topic: Some(topics::STATION_STATS.to_owned()),
            health_topic: Some(topics::STATION_HEALTH.to_owned()),
            history_windows: history::DEFAULT_WINDOWS_PER_STATION,
            push_interval: Duration::from_millis(200),
            viewer_backlog: usize::from(DEFAULT_BACKLOG),
        }
    }
}

/// Why [`run`] stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The Kafka client settings were refused.
    #[error("invalid Kafka settings (--kafka-config / --bootstrap-servers / -X): {0}")]
    Config(#[source] KafkaError),
    /// The cluster cannot be used with these settings (TLS, authentication…).
    #[error("{0}")]
    Connection(ConnectionError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// What [`run`] did, returned on shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebReport {
    /// Records read from both topics.
    pub records: u64,
    /// Records that could not be read.
    pub unreadable: u64,
    /// Stations known at the end.
    pub stations: usize,
}

/// What the consumer, the pusher and the HTTP handlers share.
///
/// Lock order: `state`, then `snapshot` or `summary`.
#[derive(Debug)]
struct Shared {
    state: Mutex<MapState>,
    /// Each station's hourly statistics; taken alone, never with `state`.
    history: Mutex<history::HistoryIndex>,
    /// The state's counts, copied after each record, for `/health`.
    summary: Mutex<Summary>,
    /// Each message is one `update` frame, built once for every page, with its sequence
    /// number. Sent under the state's lock.
    updates: broadcast::Sender<(u64, viewers::Frame)>,
    /// The sequence number of the last update sent; written under the state's lock.
    sent: AtomicU64,
    /// The last snapshot frame built, and the update it is current with: every page that
    /// connects before the next update gets these same bytes.
    snapshot: Mutex<Option<(u64, viewers::Frame)>>,
    /// The open event streams.
    viewers: Arc<viewers::Viewers>,
    /// Updates a page may fall behind before it is hung up.
    backlog: usize,
    /// The `/api/config` body.
    page_config: String,
    /// Cancelled on shutdown, so the endless event streams end and the server can stop.
    stop: CancellationToken,
}

/// How long open event streams get to end on shutdown before their connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Serves the map on `listener` from the topics of `config` until `shutdown` resolves.
///
/// Open event streams are ended on shutdown, so it returns promptly.
///
/// # Errors
///
/// Invalid Kafka settings, a cluster that cannot be used (named as
/// [`ConnectionError`]), or a failing listener.
pub async fn run(
    config: WebConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<WebReport, WebError> {
    let consumer = consume::connect(&config, consume::map_topics(&config))?;
    let side = consume::side_consumers(&config)?;
    viewers::deepen_backlog(&listener);
    // One more slot than the backlog: a page exactly `backlog` updates behind still has them.
    let ring = config.viewer_backlog.clamp(1, usize::from(u16::MAX));
    let (updates, _) = broadcast::channel(ring + 1);
    let page_config = serde_json::json!({
        "tiles": config.tiles.as_ref().map(|t| serde_json::json!({
            "url": t.url,
            "attribution": t.attribution,
        })),
    })
    .to_string();
    let shared = Arc::new(Shared {
        state: Mutex::new(MapState::new(config.limits)),
        history: Mutex::new(history::HistoryIndex::new(config.history_windows)),
        summary: Mutex::new(Summary::default()),
        updates,
        sent: AtomicU64::new(0),
        snapshot: Mutex::new(None),
        viewers: Arc::new(viewers::Viewers::default()),
        backlog: ring,
        page_config,
        stop: CancellationToken::new(),
    });

    let consumer_task = tokio::spawn(consume::consume(
        consumer,
        config.clone(),
        Arc::clone(&shared),
    ));
    let side_tasks: Vec<_> = side
        .into_iter()
        .map(|(consumer, topic, kind)| {
            tokio::spawn(consume::follow(consumer, topic, kind, Arc::clone(&shared)))
        })
        .collect();
    let pusher = tokio::spawn(consume::push(Arc::clone(&shared), config.push_interval));
    let server = axum::serve(
        viewers::HangupListener(listener),
        http::router(Arc::clone(&shared)).into_make_service_with_connect_info::<viewers::Peer>(),
    )
    .with_graceful_shutdown(shared.stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    let stop = shared.stop.clone();
    let mut consumer_task = consumer_task;
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        done = &mut consumer_task => match done {
            Ok(Err(e)) => Err(e),
            // The consumer returns only when stopped or on error; a panic is a bug to surface.
            Ok(Ok(())) => Ok(()),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        },
    };
    stop.cancel();
    // Pages that read get the end of their stream at once; one that reads nothing would hold
    // the graceful shutdown up for ever, so what is still open after a grace is cut.
    let mut server = server;
    let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(served) => served,
        Err(_) => {
            shared.viewers.close_all();
            server.await
        }
    }
    .map_err(|e| WebError::Http(std::io::Error::other(format!("server task failed: {e}"))))?;
    pusher.abort();
    for task in side_tasks {
        // Cancelled above; a side topic's failure never stops the map.
        let _ = task.await;
    }
    if !consumer_task.is_finished() {
        // Cancelled above: it stops at its next wake-up.
        let _ = consumer_task.await;
    }
    outcome?;
    served.map_err(WebError::Http)?;
    let state = shared.state.lock().unwrap();
    Ok(WebReport {
        records: state.records(),
        unreadable: state.unreadable(),
        stations: state.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_flag() {
        assert_eq!(Tiles::from_flag("none", "x"), Ok(None));
        assert_eq!(
            Tiles::from_flag(OSM_TILES, OSM_ATTRIBUTION),
            Ok(Some(Tiles::default()))
        );
        let err = Tiles::from_flag("tile.example/{z}/{x}/{y}.png", "").unwrap_err();
        assert!(err.contains("--tiles") && err.contains("http(s)"), "{err}");
        let err = Tiles::from_flag("https://tile.example/{z}/{x}.png", "").unwrap_err();
        assert!(err.contains("no {y}"), "{err}");
    }
}
