//! The HTTP side: the page, its assets, the event stream, the GeoJSON and the health check.

use crate::viewers::{Frame, Peer, Registered, frame};
use crate::{Shared, assets, history, now_ms};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Scripts and styles from velib-web only (Leaflet included); images from anywhere, since the
/// tile server is the operator's choice; data (the event stream, the API) from velib-web only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: https: http:; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/api/config", get(config))
        .route("/api/stations", get(stations))
        .route("/api/stations/{key}/history", get(station_history))
        .route("/api/events", get(events))
        .route("/health", get(health))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn serve_asset(asset: &assets::Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response()
}

async fn index() -> Response {
    serve_asset(assets::find("").expect("the page is embedded"))
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::find(&format!("assets/{file}")) {
        Some(asset) => serve_asset(asset),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn json(body: String, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn config(State(shared): State<Arc<Shared>>) -> Response {
    json(shared.page_config.clone(), "application/json")
}

async fn stations(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.state.lock().unwrap().geojson();
    json(body, "application/geo+json")
}

/// Why a history request is refused.
enum Refusal {
    /// 400, with a message naming the parameter.
    BadRequest(String),
    /// 404: neither the map nor the statistics know the station.
    UnknownStation,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
            Refusal::UnknownStation => (StatusCode::NOT_FOUND, "no such station\n").into_response(),
        }
    }
}

/// A station's hourly statistics: JSON (with its last activity and health), or CSV when asked
/// by `?format=csv` or `Accept: text/csv`. 400 names the parameter at fault; 404 is a station
/// neither the map nor the statistics know.
async fn station_history(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    history_response(&shared, &key, uri.query(), &headers).unwrap_or_else(|r| r.into_response())
}

fn history_response(
    shared: &Shared,
    key: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    if key.parse::<velib_model::StationKey>().is_err() {
        return Err(Refusal::BadRequest(format!(
            "key {key:?}: expected a station key contract:id, such as lyon:1001"
        )));
    }
    let param = |name| history::query_param(query, name).map_err(Refusal::BadRequest);
    let csv = match param("format")?.as_deref() {
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(Refusal::BadRequest(format!(
                "format={other:?}: expected json or csv"
            )));
        }
    };
    let (from, to) =
        history::parse_range(param("from")?.as_deref(), param("to")?.as_deref(), now_ms())
            .map_err(Refusal::BadRequest)?;
    // The state's lock and the history's are never held together.
    let (on_map, health) = {
        let state = shared.state.lock().unwrap();
        (state.knows(key), state.health(key).cloned())
    };
    let index = shared.history.lock().unwrap();
    if !on_map && !index.knows(key) {
        return Err(Refusal::UnknownStation);
    }
    let rows = index.rows(key, from, to);
    if csv {
        let body = history::rows_csv(&rows);
        return Ok(json(body, "text/csv; charset=utf-8"));
    }
    let mut body = history::rows_json(key, from, to, &rows);
    body["last_activity"] = serde_json::json!(index.last_activity(key));
    body["health"] = serde_json::json!(health);
    Ok(json(body.to_string(), "application/json"))
}

/// Never takes the state's lock: it answers while snapshots are built and records applied.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let summary = *shared.summary.lock().unwrap();
    // The state's lock and the history's are never held together.
    let (history_stations, history_windows) = {
        let index = shared.history.lock().unwrap();
        (index.len(), index.windows())
    };
    let body = serde_json::json!({
        "status": "ok",
        "stations": summary.stations,
        "off_map": summary.off_map,
        "records": summary.records,
        "unreadable": summary.unreadable,
        "data_age_ms": summary.data_age(now_ms()),
        "viewers": shared.viewers.count(),
        "viewers_dropped": shared.viewers.dropped(),
        "viewer_lag_max": shared.viewers.lag_max(),
        "history_stations": history_stations,
        "history_windows": history_windows,
    });
    json(body.to_string(), "application/json")
}

/// EventSource reconnects by itself after this delay (ms): soon enough for a page that was
/// hung up or a server restarted, and kind to a server that is down.
const RETRY_MS: u64 = 1000;

/// One page's event stream: its snapshot, then every update, until the server stops or hangs
/// the page up.
struct Subscription {
    shared: Arc<Shared>,
    updates: broadcast::Receiver<(u64, Frame)>,
    first: Option<Frame>,
    registered: Registered,
}

impl Subscription {
    fn new(shared: Arc<Shared>, hangup: CancellationToken) -> Subscription {
        // Under the state's lock, as the pusher sends: nothing falls between the snapshot and
        // the first update received.
        let (seq, first, updates) = {
            let state = shared.state.lock().unwrap();
            let seq = shared.sent.load(Ordering::Relaxed);
            let mut cached = shared.snapshot.lock().unwrap();
            let first = match &*cached {
                Some((at, frame)) if *at == seq => frame.clone(),
                // The first page since the last update builds the snapshot for every page
                // until the next one. Its data age is the age when built, at most a heartbeat
                // (1 s) old; the next update sets it right.
                _ => {
                    let frame = frame("snapshot", Some(RETRY_MS), &state.snapshot_json(now_ms()));
                    *cached = Some((seq, frame.clone()));
                    frame
                }
            };
            (seq, first, shared.updates.subscribe())
        };
        let registered = shared.viewers.open(seq, hangup);
        Subscription {
            shared,
            updates,
            first: Some(first),
            registered,
        }
    }

    async fn next(&mut self) -> Option<Frame> {
        if let Some(snapshot) = self.first.take() {
            return Some(snapshot);
        }
        let received = tokio::select! {
            () = self.shared.stop.cancelled() => return None,
            () = self.registered.viewer().hangup().cancelled() => return None,
            r = self.updates.recv() => r,
        };
        match received {
            Ok((seq, update)) => {
                self.registered.viewer().delivered(seq);
                Some(update)
            }
            // Further behind than the ring holds (so than the backlog): hung up like the
            // pusher hangs up those that do not read at all, rather than catching up here.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.registered.hang_up();
                None
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The event stream: the same frames for every page, as bytes, without a copy per page.
async fn events(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Response {
    let stream = futures::stream::unfold(
        Subscription::new(shared, peer.hangup),
        |mut sub| async move {
            let frame = sub.next().await?;
            Some((Ok::<_, Infallible>(frame), sub))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
