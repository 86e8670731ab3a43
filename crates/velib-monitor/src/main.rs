//! `velib-monitor`: print every change of a station's free stands (or bikes, e-bikes, classic
//! bikes, docks out of service), once across the consumer group, and publish stations that
//! become empty.
//!
//! Parses flags, wires the library's objects together and calls [`velib_monitor::run`].

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::time::Duration;
use velib_kafka::KafkaArgs;
use velib_kafka::duration::parse_duration;
use velib_kafka::service::ServiceArgs;
use velib_model::{TrackedField, topics};
use velib_monitor::{
    DEFAULT_GROUP, DlqFailure, ExactlyOnceConfig, InstanceSlot, MonitorConfig, MonitorError,
    OutputFormat, StatsSettings,
};

/// Consumes station records and prints `+1 ADDRESS (Contract)` for every change, once across
/// all monitors of the consumer group.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// The consumer group: monitors in one group share the topic's partitions.
    #[arg(long, env = "VELIB_GROUP_ID", default_value = DEFAULT_GROUP)]
    group_id: String,

    /// The topic of station records.
    #[arg(long, env = "VELIB_STATIONS_TOPIC", default_value = topics::STATIONS)]
    topic: String,

    /// Which count to follow.
    #[arg(long, env = "VELIB_FIELD", value_enum, default_value_t = Field::Stands)]
    field: Field,

    /// How to print changes: the tutorial's text line, or one JSON object per line.
    #[arg(long, env = "VELIB_FORMAT", value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Where "became empty" / "no longer empty" events go.
    #[arg(long, env = "VELIB_EVENTS_TOPIC", default_value = topics::EMPTY_STATIONS)]
    events_topic: String,

    /// Publish no empty-station events.
    #[arg(long, env = "VELIB_NO_EVENTS")]
    no_events: bool,

    /// Where unreadable station records are copied, with an error header.
    #[arg(long, env = "VELIB_DLQ_TOPIC", default_value = topics::DEAD_LETTERS)]
    dlq_topic: String,

    /// Only count and log unreadable records; copy them nowhere.
    #[arg(long, env = "VELIB_NO_DLQ")]
    no_dlq: bool,

    /// When Kafka refuses an unreadable record's dead-letter copy for good (larger than
    /// message.max.bytes, a missing topic): `stop` with an error naming the record, or `skip`
    /// the record without its copy (logged and counted as lost).
    #[arg(long, env = "VELIB_ON_DLQ_FAILURE", value_enum, default_value_t = OnDlqFailure::Stop)]
    on_dlq_failure: OnDlqFailure,

    /// How long shutdown waits for undelivered events before committing what is done (`0`:
    /// not at all).
    #[arg(long, env = "VELIB_FLUSH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    flush_timeout: Duration,

    /// `exactly-once`: each change printed once across the group, none missed, through
    /// rebalances, crashes and zombies (Kafka transactions; the state in --state-topic).
    /// `at-least-once`: for brokers without transactions; a change straddling a rebalance or a
    /// crash is not printed, and a rebalance under load can print a change twice.
    #[arg(long, env = "VELIB_GUARANTEE", value_enum, default_value_t = Guarantee::ExactlyOnce)]
    guarantee: Guarantee,

    /// This monitor's stable identity in its group (exactly-once): its transactional id is
    /// `velib-monitor.GROUP.ID`. Give each monitor its own, the same across its restarts (a
    /// pod name in a StatefulSet). By default `HOST-N`, N the lowest slot of the group free on
    /// this host.
    #[arg(long, env = "VELIB_INSTANCE_ID")]
    instance_id: Option<String>,

    /// The monitor's state changelog (exactly-once): compacted, with as many partitions as
    /// --topic; `velib-topics create` makes it.
    #[arg(long, env = "VELIB_STATE_TOPIC", default_value = velib_monitor::DEFAULT_STATE_TOPIC)]
    state_topic: String,

    /// How long a transaction stays open under load (exactly-once), or four times as long as
    /// the last commit took if that is longer; it is committed as soon as the input pauses
    /// (after a producer's snapshot). Lines wait for their commit.
    #[arg(long, env = "VELIB_COMMIT_INTERVAL", default_value = "100ms",
          value_parser = velib_kafka::duration::parse_positive_duration)]
    commit_interval: Duration,

    /// `transaction.timeout.ms` (exactly-once): a transaction left open longer by a frozen or
    /// dead monitor is aborted by Kafka; a new owner of its partitions may wait this long.
    #[arg(long, env = "VELIB_TRANSACTION_TIMEOUT", default_value = "10s",
          value_parser = velib_kafka::duration::parse_positive_duration)]
    transaction_timeout: Duration,

    /// Keep statistics per station and hour (rentals, returns, bikes and docks over time,
    /// minutes empty or full) and judge its health (locked, degraded); publish each closed
    /// window to --stats-topic and each change of health to --health-topic, in the
    /// transactions (exactly-once only).
    #[arg(long, env = "VELIB_STATS")]
    stats: bool,

    /// Where closed statistics windows go, keyed by station and window start.
    #[arg(long, env = "VELIB_STATS_TOPIC", default_value = topics::STATION_STATS)]
    stats_topic: String,

    /// Where changes of a station's health (locked, degraded, ok) go.
    #[arg(long, env = "VELIB_HEALTH_TOPIC", default_value = topics::STATION_HEALTH)]
    health_topic: String,

    /// Publish no health changes (statistics only).
    #[arg(long, env = "VELIB_NO_HEALTH")]
    no_health: bool,

    /// The statistics window: tumbling, by snapshot time, aligned on the epoch (1h: on the
    /// hour, UTC). Between 1s and 24h.
    #[arg(long, env = "VELIB_WINDOW", default_value = "1h",
          value_parser = velib_kafka::duration::parse_positive_duration)]
    window: Duration,

    /// How long past its end (in the station's snapshot time) a window waits before it
    /// closes; shorter than --window. Records reach a station's partition in snapshot order, so
    /// 0 loses nothing; a later record is counted as late.
    #[arg(long, env = "VELIB_GRACE", default_value = "0s", value_parser = parse_duration)]
    grace: Duration,

    /// The least time without movement before an open station can be called locked.
    #[arg(long, env = "VELIB_LOCKED_AFTER", default_value = "2h",
          value_parser = velib_kafka::duration::parse_positive_duration)]
    locked_after: Duration,

    /// The share of its capacity out of service that makes a station degraded.
    #[arg(long, env = "VELIB_DEGRADED_SHARE", default_value_t = 0.5)]
    degraded_share: f64,

    #[command(flatten)]
    service: ServiceArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Guarantee {
    /// Kafka transactions: every change printed once.
    ExactlyOnce,
    /// No transactions: for brokers without them.
    AtLeastOnce,
}

#[derive(Clone, Copy, ValueEnum)]
enum Field {
    /// `available_bike_stands`, as in the tutorial.
    Stands,
    /// `available_bikes`.
    Bikes,
    /// E-bikes: the record's per-type counts of electric bikes. A station whose feed does not
    /// count bikes by type prints nothing (the count is unknown, not 0).
    Ebikes,
    /// Classic bikes, likewise from the per-type counts.
    ClassicBikes,
    /// Docks out of service; a station whose feed does not say prints nothing.
    DocksOutOfService,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnDlqFailure {
    /// Stop; the record stays uncommitted.
    Stop,
    /// Skip the record without its copy.
    Skip,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// `+1 ADDRESS (Contract)`.
    Text,
    /// One JSON change event per line.
    Json,
}

/// The `--stats` settings, or none without `--stats`.
fn stats_settings(cli: &Cli) -> anyhow::Result<Option<StatsSettings>> {
    if !cli.stats {
        return Ok(None);
    }
    let windows = velib_stats::StatsConfig::new(cli.window, cli.grace)?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.degraded_share) && cli.degraded_share > 0.0,
        "--degraded-share must be a share of the capacity, above 0 and at most 1, not {}",
        cli.degraded_share
    );
    Ok(Some(StatsSettings {
        topic: cli.stats_topic.clone(),
        health_topic: (!cli.no_health).then(|| cli.health_topic.clone()),
        windows,
        health: velib_stats::HealthConfig {
            locked_after: cli.locked_after,
            degraded_share: cli.degraded_share,
            ..velib_stats::HealthConfig::default()
        },
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // First: a signal during start-up must already stop the program gracefully.
    let shutdown = cli.service.start().map_err(anyhow::Error::msg)?;
    let stats = stats_settings(&cli)?;
    let config = MonitorConfig {
        topic: cli.topic,
        field: match cli.field {
            Field::Stands => TrackedField::AvailableBikeStands,
            Field::Bikes => TrackedField::AvailableBikes,
            Field::Ebikes => TrackedField::AvailableEbikes,
            Field::ClassicBikes => TrackedField::AvailableClassicBikes,
            Field::DocksOutOfService => TrackedField::DocksOutOfService,
        },
        format: match cli.format {
            Format::Text => OutputFormat::Text,
            Format::Json => OutputFormat::Json,
        },
        events_topic: (!cli.no_events).then_some(cli.events_topic),
        dlq_topic: (!cli.no_dlq).then_some(cli.dlq_topic),
        on_dlq_failure: match cli.on_dlq_failure {
            OnDlqFailure::Stop => DlqFailure::Stop,
            OnDlqFailure::Skip => DlqFailure::Skip,
        },
        flush_timeout: cli.flush_timeout,
        stats,
    };
    tracing::info!(group = %cli.group_id, topic = %config.topic, kafka = ?cli.kafka, "starting");
    // Held for the process's life: the slot's lock is what keeps the default id this process's.
    let mut slot = None;
    let guarantee = match cli.guarantee {
        Guarantee::AtLeastOnce => velib_monitor::Guarantee::AtLeastOnce {
            lag_metrics: cli.service.metrics_addr.is_some(),
        },
        Guarantee::ExactlyOnce => {
            let instance =
                match cli.instance_id {
                    Some(id) => id,
                    None => slot
                        .insert(InstanceSlot::claim(&cli.group_id).context(
                            "could not claim an instance slot; name one with --instance-id",
                        )?)
                        .id()
                        .to_owned(),
                };
            let mut eos = ExactlyOnceConfig::new(instance);
            eos.state_topic = cli.state_topic;
            eos.commit_interval = cli.commit_interval;
            eos.transaction_timeout = cli.transaction_timeout;
            velib_monitor::Guarantee::ExactlyOnce(eos)
        }
    };
    // Flushed after each burst (and each commit), so lines are prompt without a write per line.
    let out = Box::new(std::io::BufWriter::new(std::io::stdout()));
    match velib_monitor::run(&cli.kafka, &cli.group_id, &config, guarantee, out, shutdown).await {
        Ok(report) => {
            log_stopped(&report);
            drop(slot);
            Ok(())
        }
        Err(stuck @ MonitorError::Stuck { .. }) => {
            // The engine's thread is stuck in a Kafka call: returning would wait for it.
            tracing::error!("{stuck}");
            std::process::exit(1);
        }
        Err(e) => Err(e.into()),
    }
}

/// The last line of a run: what it did.
fn log_stopped(report: &velib_monitor::MonitorReport) {
    tracing::info!(
        records = report.records,
        changes = report.changes,
        poison = report.poison,
        dead_letters_lost = report.dead_letters_lost,
        events = report.events,
        "stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_durations_and_policies_are_usage_errors() {
        for (args, says) in [
            (
                &["--flush-timeout", "99999999999999999999999"][..],
                "at most 365d",
            ),
            (&["--flush-timeout", "soon"], "e.g. 500ms"),
            (&["--on-dlq-failure", "ignore"], "stop"),
        ] {
            let err =
                Cli::try_parse_from(std::iter::once("velib-monitor").chain(args.iter().copied()))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
            assert!(
                err.contains(args[0]) && err.contains(says),
                "{args:?}: {err}"
            );
        }
        let cli = Cli::try_parse_from(["velib-monitor", "--on-dlq-failure", "skip"]).unwrap();
        assert!(matches!(cli.on_dlq_failure, OnDlqFailure::Skip));
    }
}
