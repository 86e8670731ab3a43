//! `cargo xtask demo`: the whole pipeline in one process, on an embedded broker.
//!
//! Starts librdkafka's mock cluster on 127.0.0.1 (three brokers, a real Kafka-protocol broker
//! that needs no install), creates the topics with 10 partitions for stations, and runs the
//! producer, two monitors in one consumer group, the alerts consumer in dry-run mode and the
//! live map (velib-web) — the same library `run` functions the binaries call — until Ctrl-C.
//! Each output line is prefixed by who printed it, so the group's sharing of partitions is
//! visible.

use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use velib_alerts::AlertsConfig;
use velib_alerts::mail::DryRunMailer;
use velib_alerts::select::WatchList;
use velib_kafka::{KafkaArgs, KafkaSink, SINK_DEFAULTS};
use velib_monitor::{DEFAULT_GROUP, MonitorConfig};
use velib_producer::ProducerConfig;
use velib_source::{SourceOptions, SourceSpec, StationSource};
use velib_testkit::MockKafka;

/// Flags of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where stations come from (as `velib-producer --source`). Default: `jcdecaux` when
    /// JCDECAUX_API_KEY is set, else a simulated city.
    #[arg(long, env = "VELIB_SOURCE")]
    source: Option<String>,

    /// Stations in the simulated city.
    #[arg(long, default_value_t = 300)]
    stations: usize,

    /// Time between two polls.
    #[arg(long, default_value = "1s", value_parser = velib_kafka::duration::parse_positive_duration)]
    interval: Duration,

    /// The contract whose empty stations the alerts consumer "mails" (printed, not sent).
    /// Valmont is the simulated network's first city.
    #[arg(long, default_value = "Valmont")]
    alert_contract: String,

    /// Where the live map is served.
    #[arg(long, env = "VELIB_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,

    /// The map's tile URL template, or `none` (as `velib-web --tiles`).
    #[arg(long, env = "VELIB_TILES", default_value = velib_web::OSM_TILES)]
    tiles: String,
}

/// Writes whole lines to stdout, each prefixed with `[name]`.
struct Prefixed {
    prefix: String,
    line: Vec<u8>,
}

impl Prefixed {
    fn new(name: &str) -> Prefixed {
        Prefixed {
            prefix: format!("[{name:<9}] "),
            line: Vec::new(),
        }
    }
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                let mut out = std::io::stdout().lock();
                out.write_all(self.prefix.as_bytes())?;
                out.write_all(&self.line)?;
                out.write_all(b"\n")?;
                self.line.clear();
            } else {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Client settings for the embedded cluster: its group coordinator completes a rebalance when
/// every member has rejoined or the session timeout expired, so a short session keeps the
/// second monitor's arrival quick.
fn kafka_args(bootstrap: &str) -> KafkaArgs {
    KafkaArgs::new(bootstrap)
        .with("session.timeout.ms", "6000")
        .with("heartbeat.interval.ms", "500")
}

/// Runs the demo until Ctrl-C or SIGTERM, or until one of its parts stops with an error.
pub fn run(args: Args) -> Result<()> {
    velib_kafka::service::init_tracing_with("warn,velib_monitor::stream=info");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(demo(args))
}

async fn demo(args: Args) -> Result<()> {
    let kafka = MockKafka::start(3).context("start the embedded Kafka cluster")?;
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let stations = velib_producer::ProducerConfig::default().topic;
    let monitor_defaults = MonitorConfig::default();
    let events = monitor_defaults.events_topic.clone().unwrap_or_default();
    let dlq = monitor_defaults.dlq_topic.clone().unwrap_or_default();
    kafka.create_topic(&stations, 10)?;
    kafka.create_topic(&events, 3)?;
    kafka.create_topic(&dlq, 1)?;
    println!(
        "embedded Kafka cluster at {bootstrap}; topics {stations} (10 partitions), {events}, {dlq}"
    );

    let mut options = SourceOptions {
        jcdecaux_api_key: std::env::var("JCDECAUX_API_KEY").ok().map(Into::into),
        ..SourceOptions::default()
    };
    options.simulate.stations = args.stations;
    let spec = match &args.source {
        Some(s) => s.parse::<SourceSpec>().context("--source")?,
        None => SourceSpec::default_for(&options),
    };
    let source = spec.build(&options).context("--source")?;
    println!("source: {}", source.describe());
    println!(
        "two monitors in group {DEFAULT_GROUP}; alerts (dry run) for contract {}; Ctrl-C stops",
        args.alert_contract
    );

    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    for i in 1..=2 {
        let parts = velib_monitor::connect(
            &kafka_args(&bootstrap),
            DEFAULT_GROUP,
            &monitor_defaults,
            false,
        )?;
        let (config, cancel) = (monitor_defaults.clone(), cancel.clone());
        tasks.spawn(async move {
            let mut out = Prefixed::new(&format!("monitor-{i}"));
            let (stream, _) = velib_monitor::at_least_once::run(
                parts.stream,
                &parts.sink,
                parts.ledger,
                &config,
                &mut out,
                cancel.cancelled_owned(),
            )
            .await?;
            stream.close();
            anyhow::Ok(())
        });
    }

    let watch = WatchList::default().with_contract(&args.alert_contract);
    let mut alerts = AlertsConfig::new(
        kafka_args(&bootstrap),
        watch,
        "velib demo <alerts@velib.invalid>".parse()?,
        vec!["you@velib.invalid".parse()?],
    );
    // The simulated city has e-bikes: its mails show both alerts.
    alerts.shortages = [velib_model::Shortage::Bikes, velib_model::Shortage::Ebikes].into();
    let alerts_cancel = cancel.clone();
    tasks.spawn(async move {
        velib_alerts::run(
            alerts,
            DryRunMailer::new(Prefixed::new("alerts")),
            alerts_cancel.cancelled_owned(),
        )
        .await?;
        anyhow::Ok(())
    });

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot serve the map on --http-addr {} (choose another address)",
                args.http_addr
            )
        })?;
    let web = velib_web::WebConfig {
        tiles: velib_web::Tiles::from_flag(&args.tiles, velib_web::OSM_ATTRIBUTION)
            .map_err(anyhow::Error::msg)?,
        ..velib_web::WebConfig::new(kafka_args(&bootstrap))
    };
    println!("live map: http://{}/", listener.local_addr()?);
    let web_cancel = cancel.clone();
    tasks.spawn(async move {
        velib_web::run(web, listener, web_cancel.cancelled_owned()).await?;
        anyhow::Ok(())
    });

    let sink = KafkaSink::new(&kafka_args(&bootstrap).client_config(SINK_DEFAULTS), None)?;
    let producer_config = ProducerConfig {
        interval: args.interval,
        ..ProducerConfig::default()
    };
    let producer_cancel = cancel.clone();
    tasks.spawn(async move {
        let mut out = Prefixed::new("producer");
        velib_producer::run(
            source,
            &sink,
            &producer_config,
            &mut out,
            producer_cancel.cancelled_owned(),
        )
        .await?;
        anyhow::Ok(())
    });

    tokio::select! {
        () = velib_kafka::service::shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            // A part stopped on its own (a replay that ended, or an error): stop the others.
            done??;
        }
    }
    cancel.cancel();
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("demo stopped");
    Ok(())
}
