//! The HTTP side: the page, its assets, the event stream, the GeoJSON and the health check.

use crate::{Shared, assets, now_ms};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use metrics::gauge;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

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

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.state.lock().unwrap();
    let body = serde_json::json!({
        "status": "ok",
        "stations": state.len(),
        "off_map": state.off_map(),
        "records": state.records(),
        "unreadable": state.unreadable(),
        "data_age_ms": state.data_age(now_ms()),
    });
    json(body.to_string(), "application/json")
}

/// One page's event stream: its snapshot, then every batch; a fresh snapshot when it fell so
/// far behind that batches were dropped for it.
struct Subscription {
    shared: Arc<Shared>,
    updates: broadcast::Receiver<Arc<str>>,
    first: Option<String>,
}

impl Subscription {
    fn new(shared: Arc<Shared>) -> Subscription {
        // Under the state's lock, as the pusher sends: nothing falls between the snapshot and
        // the first batch received.
        let (first, updates) = {
            let state = shared.state.lock().unwrap();
            (state.snapshot_json(now_ms()), shared.updates.subscribe())
        };
        gauge!("velib_web_event_streams").increment(1);
        Subscription {
            shared,
            updates,
            first: Some(first),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        if let Some(snapshot) = self.first.take() {
            // EventSource reconnects by itself; one second is soon enough and kind to the
            // server when it is down.
            return Some(
                Event::default()
                    .event("snapshot")
                    .retry(Duration::from_secs(1))
                    .data(snapshot),
            );
        }
        let received = tokio::select! {
            () = self.shared.stop.cancelled() => return None,
            r = self.updates.recv() => r,
        };
        match received {
            Ok(batch) => Some(Event::default().event("update").data(&*batch)),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let state = self.shared.state.lock().unwrap();
                self.updates = self.shared.updates.subscribe();
                Some(
                    Event::default()
                        .event("snapshot")
                        .data(state.snapshot_json(now_ms())),
                )
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        gauge!("velib_web_event_streams").decrement(1);
    }
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold(Subscription::new(shared), |mut sub| async move {
        let event = sub.next().await?;
        Some((Ok(event), sub))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
