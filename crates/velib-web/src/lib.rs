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
//! | `/api/config` | the tile layer the page uses |
//! | `/health` | `200` with counts while the consumer runs |
//! | `/assets/…` | the page's script and styles, and Leaflet, embedded at build time |
//!
//! # What it reads, and its limit
//!
//! Its consumer has a group of its own (`velib-web-<pid>-<time>`), so it gets every partition
//! whatever other consumers do, starts at the earliest offset the topics still hold, and never
//! commits: a page opened cold shows every station the topic holds as soon as it is read.
//! On a topic with a long `delete` retention that means reading all of it at start; a
//! compacted topic (`cargo xtask create-topics --cleanup-policy compact,delete`) keeps that
//! to about one record per station. Nothing is written back to Kafka.
//!
//! # Station text is data
//!
//! Names and addresses reach the page as JSON strings and are put into the page with
//! `textContent` only; the page's Content-Security-Policy allows scripts from velib-web alone.

#![forbid(unsafe_code)]

pub mod assets;
mod consume;
mod http;
pub mod state;

pub use state::{Limits, MapState};

use rdkafka::error::KafkaError;
use std::future::Future;
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
    /// How often changes are pushed to the pages.
    pub push_interval: Duration,
}

impl WebConfig {
    /// The defaults: `velib-stations`, `velib-empty-stations`, OpenStreetMap tiles, pushes
    /// every 200 ms.
    pub fn new(kafka: KafkaArgs) -> WebConfig {
        WebConfig {
            kafka,
            topic: topics::STATIONS.to_owned(),
            events_topic: Some(topics::EMPTY_STATIONS.to_owned()),
            tiles: Some(Tiles::default()),
            limits: Limits::default(),
            push_interval: Duration::from_millis(200),
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
#[derive(Debug)]
struct Shared {
    state: Mutex<MapState>,
    /// Each message is one `update` payload, serialised once for every page.
    updates: broadcast::Sender<Arc<str>>,
    /// The `/api/config` body.
    page_config: String,
    /// Cancelled on shutdown, so the endless event streams end and the server can stop.
    stop: CancellationToken,
}

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
    let consumer = consume::connect(&config)?;
    let (updates, _) = broadcast::channel(64);
    let page_config = serde_json::json!({
        "tiles": config.tiles.as_ref().map(|t| serde_json::json!({
            "url": t.url,
            "attribution": t.attribution,
        })),
    })
    .to_string();
    let shared = Arc::new(Shared {
        state: Mutex::new(MapState::new(config.limits)),
        updates,
        page_config,
        stop: CancellationToken::new(),
    });

    let consumer_task = tokio::spawn(consume::consume(
        consumer,
        config.clone(),
        Arc::clone(&shared),
    ));
    let pusher = tokio::spawn(consume::push(Arc::clone(&shared), config.push_interval));
    let server = axum::serve(listener, http::router(Arc::clone(&shared)))
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
    let served = server
        .await
        .map_err(|e| WebError::Http(std::io::Error::other(format!("server task failed: {e}"))))?;
    pusher.abort();
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
