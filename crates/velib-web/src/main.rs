//! `velib-web`: a live map of the stations, fed by Kafka.
//!
//! Parses flags, binds the listener and calls [`velib_web::run`].

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use velib_kafka::KafkaArgs;
use velib_kafka::service::ServiceArgs;
use velib_model::topics;
use velib_web::{DEFAULT_BACKLOG, Limits, OSM_ATTRIBUTION, OSM_TILES, Tiles, WebConfig};

/// Serves a map of the stations, one circle per station, updated live from the stations topic
/// and the monitor's empty-station events.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Where the page is served.
    #[arg(long, env = "VELIB_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,

    /// The topic of station records.
    #[arg(long, env = "VELIB_STATIONS_TOPIC", default_value = topics::STATIONS)]
    topic: String,

    /// The monitor's "became empty" / "no longer empty" events, shown in the feed.
    #[arg(long, env = "VELIB_EVENTS_TOPIC", default_value = topics::EMPTY_STATIONS)]
    events_topic: String,

    /// Read no empty-station events.
    #[arg(long, env = "VELIB_NO_EVENTS")]
    no_events: bool,

    /// The monitor's hourly statistics (`velib-monitor --stats`), read from the beginning for
    /// the history endpoint and the popup's chart.
    #[arg(long, env = "VELIB_STATS_TOPIC", default_value = topics::STATION_STATS)]
    stats_topic: String,

    /// The monitor's health changes (locked, degraded), for the locked badge and filter.
    #[arg(long, env = "VELIB_HEALTH_TOPIC", default_value = topics::STATION_HEALTH)]
    health_topic: String,

    /// Read neither statistics nor health changes.
    #[arg(long, env = "VELIB_NO_STATS")]
    no_stats: bool,

    /// Hourly statistics windows kept per station in memory, the oldest dropped first
    /// (168: the last 7 days).
    #[arg(long, env = "VELIB_HISTORY_WINDOWS",
          default_value_t = velib_web::history::DEFAULT_WINDOWS_PER_STATION)]
    history_windows: usize,

    /// The base map's tile URL template (`{z}`, `{x}`, `{y}`, optionally `{s}`), or `none` for
    /// no base map. Tiles are the only thing the page loads from elsewhere.
    #[arg(long, env = "VELIB_TILES", default_value = OSM_TILES)]
    tiles: String,

    /// The tile layer's attribution (HTML), shown in the map's corner.
    #[arg(long, env = "VELIB_TILES_ATTRIBUTION", default_value = OSM_ATTRIBUTION)]
    tiles_attribution: String,

    /// Counts of bikes kept per station for the popup's sparkline.
    #[arg(long, env = "VELIB_HISTORY", default_value_t = Limits::default().history)]
    history: usize,

    /// Updates a page may fall behind (reading slowly, or not at all) before the server hangs
    /// it up; the page then reconnects by itself and starts again from a fresh snapshot.
    #[arg(long, env = "VELIB_VIEWER_BACKLOG", default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u16).range(1..))]
    viewer_backlog: u16,

    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let shutdown = cli.service.start().map_err(anyhow::Error::msg)?;
    let tiles = Tiles::from_flag(&cli.tiles, &cli.tiles_attribution).map_err(anyhow::Error::msg)?;
    let config = WebConfig {
        topic: cli.topic,
        events_topic: (!cli.no_events).then_some(cli.events_topic),
        stats_topic: (!cli.no_stats).then_some(cli.stats_topic),
        health_topic: (!cli.no_stats).then_some(cli.health_topic),
        history_windows: cli.history_windows,
        tiles,
        limits: Limits {
            history: cli.history,
            ..Limits::default()
        },
        viewer_backlog: usize::from(cli.viewer_backlog),
        ..WebConfig::new(cli.kafka)
    };
    let listener = tokio::net::TcpListener::bind(cli.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", cli.http_addr))?;
    tracing::info!(topic = %config.topic, kafka = ?config.kafka, "starting");
    println!("velib-web: http://{}/", listener.local_addr()?);
    let report = velib_web::run(config, listener, shutdown).await?;
    tracing::info!(
        records = report.records,
        unreadable = report.unreadable,
        stations = report.stations,
        "stopped"
    );
    Ok(())
}
