//! `velib-producer`: poll a bike-share source and publish every station to Kafka.
//!
//! Parses flags, wires the library's objects together and calls [`velib_producer::run`].

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;
use velib_kafka::duration::{parse_duration, parse_positive_duration};
use velib_kafka::service::ServiceArgs;
use velib_kafka::{KafkaArgs, KafkaSink, NO_AUTO_CREATE, SINK_DEFAULTS};
use velib_model::topics;
use velib_producer::ProducerConfig;
use velib_source::{SourceOptions, SourceSpec, StationSource};

/// Polls a bike-share API (JCDecaux, GBFS, a recording or a simulated city) and publishes
/// every station, as JCDecaux v1 JSON keyed by `contract:id`, to a Kafka topic.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Where stations come from: `jcdecaux[:CONTRACT]`, `gbfs:CONTRACT|URL|NAME=URL[,…]`
    /// (`gbfs:paris` is Vélib' Métropole), `replay:FILE`, `simulate[:STATIONS]`. Default: `jcdecaux` when an API key is set,
    /// else `simulate`.
    #[arg(long, env = "VELIB_SOURCE", value_name = "SOURCE")]
    source: Option<String>,

    /// The JCDecaux API key (for the `jcdecaux` source).
    #[arg(
        long,
        env = "JCDECAUX_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    jcdecaux_api_key: Option<SecretString>,

    /// The JCDecaux API base URL.
    #[arg(
        long,
        env = "JCDECAUX_BASE_URL",
        default_value = "https://api.jcdecaux.com"
    )]
    jcdecaux_base_url: String,

    /// Where JCDecaux's keyless GBFS feeds live: `gbfs:lyon` reads
    /// `{URL}/contracts/lyon/gbfs/gbfs.json`. Point it at a mirror or a local server.
    #[arg(
        long,
        env = "VELIB_CYCLOCITY_BASE_URL",
        default_value = "https://api.cyclocity.fr",
        value_name = "URL"
    )]
    cyclocity_base_url: String,

    /// The preferred language of GBFS feeds that publish several (names, 2.x feed lists),
    /// for example `fr`. Default: `en` when published, else the first.
    #[arg(long, env = "VELIB_GBFS_LANGUAGE", value_name = "LANG")]
    gbfs_language: Option<String>,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// The topic station records go to.
    #[arg(long, env = "VELIB_STATIONS_TOPIC", default_value = topics::STATIONS)]
    topic: String,

    /// Time between two polls.
    #[arg(long, env = "VELIB_POLL_INTERVAL", default_value = "1s", value_parser = parse_positive_duration)]
    interval: Duration,

    /// Publish only stations whose counts, status or last_update changed since the previous
    /// poll (the first poll is published whole).
    #[arg(long, env = "VELIB_CHANGED_ONLY")]
    changed_only: bool,

    /// Also append every snapshot as one JSON line to FILE (replay it with
    /// `--source replay:FILE`).
    #[arg(long, env = "VELIB_RECORD", value_name = "FILE")]
    record: Option<PathBuf>,

    /// Stop after this many polls.
    #[arg(long, value_name = "N")]
    max_polls: Option<u64>,

    /// How long shutdown waits for queued records to be delivered (`0`: not at all).
    #[arg(long, env = "VELIB_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    flush_timeout: Duration,

    /// Stations of the simulated city (`simulate`).
    #[arg(long, env = "VELIB_SIMULATE_STATIONS", default_value_t = 300)]
    simulate_stations: usize,

    /// Cities of the simulated network (`simulate`).
    #[arg(long, env = "VELIB_SIMULATE_CONTRACTS", default_value_t = 3)]
    simulate_contracts: usize,

    /// The share of returned bikes that are e-bikes in the simulated city (`simulate`), from 0
    /// to 1.
    #[arg(long, env = "VELIB_SIMULATE_EBIKE_SHARE", default_value_t = 0.3)]
    simulate_ebike_share: f64,

    /// Seed of the simulated city (`simulate`): the same seed gives the same city.
    #[arg(long, env = "VELIB_SIMULATE_SEED", default_value_t = 42)]
    seed: u64,

    /// Replay pace (`replay`): 1 is as recorded, 10 ten times faster, 0 without pauses.
    #[arg(long, env = "VELIB_REPLAY_SPEED", default_value_t = 1.0)]
    replay_speed: f64,

    /// Start a replay over at the end of the recording.
    #[arg(long, env = "VELIB_REPLAY_LOOP")]
    replay_loop: bool,

    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // First: a signal during start-up must already stop the program gracefully.
    let shutdown = cli.service.start().map_err(anyhow::Error::msg)?;

    let mut options = SourceOptions {
        jcdecaux_api_key: cli.jcdecaux_api_key,
        jcdecaux_base_url: cli.jcdecaux_base_url,
        cyclocity_base_url: cli.cyclocity_base_url,
        gbfs_language: cli.gbfs_language,
        replay_speed: cli.replay_speed,
        replay_loop: cli.replay_loop,
        ..SourceOptions::default()
    };
    options.simulate.seed = cli.seed;
    options.simulate.stations = cli.simulate_stations;
    options.simulate.contracts = cli.simulate_contracts;
    options.simulate.ebike_share = cli.simulate_ebike_share;
    let spec = match &cli.source {
        Some(s) => s.parse::<SourceSpec>().context("--source")?,
        None => SourceSpec::default_for(&options),
    };
    let source = spec.build(&options).context("--source")?;
    tracing::info!(source = %source.describe(), kafka = ?cli.kafka, "starting");

    // The stations topic is velib-topics' to create, with its partitions: see NO_AUTO_CREATE.
    let settings = [SINK_DEFAULTS, &[NO_AUTO_CREATE]].concat();
    let sink = KafkaSink::new(&cli.kafka.client_config(&settings), None)
        .context("invalid Kafka settings (--kafka-config / --bootstrap-servers / -X)")?;
    let config = ProducerConfig {
        topic: cli.topic,
        interval: cli.interval,
        changed_only: cli.changed_only,
        record: cli.record,
        flush_timeout: cli.flush_timeout,
        max_polls: cli.max_polls,
    };
    let mut stdout = std::io::stdout();
    let report = velib_producer::run(source, &sink, &config, &mut stdout, shutdown).await?;
    tracing::info!(
        polls = report.polls,
        delivered = report.records_delivered,
        failed = report.records_failed,
        undelivered = report.undelivered_at_exit,
        "stopped"
    );
    if report.undelivered_at_exit > 0 || report.records_failed > 0 {
        anyhow::bail!(
            "{} station records were not delivered ({} failed, {} still queued at exit)",
            report.records_failed + report.undelivered_at_exit,
            report.records_failed,
            report.undelivered_at_exit
        );
    }
    Ok(())
}
