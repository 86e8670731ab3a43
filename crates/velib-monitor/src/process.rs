//! What both engines do with one record, and what they share: the monitor's settings
//! ([`MonitorConfig`]), what a run did ([`MonitorReport`]), why it stopped ([`MonitorError`]).
//!
//! `process` reads a station record, judges it against its partition's [`Detector`], writes
//! its change line and returns the event or dead-letter copy it calls for; the engines
//! ([`crate::at_least_once`], [`crate::exactly_once`]) differ only in how they make that
//! output and the record's offset durable. This module imports neither engine.

use crate::detect::{Detector, Verdict};
use crate::ledger::PendingOut;
use crate::stream::InRecord;
use std::io::Write;
use std::time::Duration;
use velib_kafka::RateLimited;
use velib_model::{
    ChangeLine, EmptinessKind, EmptyStationEvent, StationChange, StationView, TrackedField, topics,
};

/// How change lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The tutorial's line: `+1 ADDRESS (Contract)`.
    #[default]
    Text,
    /// One [`StationChange`] JSON object per line.
    Json,
}

/// What to do with an unreadable record whose dead-letter copy Kafka refuses for good (see
/// the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DlqFailure {
    /// Stop with an error naming the record and the settings to change.
    #[default]
    Stop,
    /// Skip the record without its copy: a loss, logged and counted.
    Skip,
}

/// Statistics and health of each station (`--stats`), published by the exactly-once monitor.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// Where closed windows go ([`velib_model::StationStats`], keyed by station and window).
    pub topic: String,
    /// Where health changes go ([`velib_model::StationHealthEvent`]); `None` publishes none.
    pub health_topic: Option<String>,
    /// The windows: their size and grace period.
    pub windows: velib_stats::StatsConfig,
    /// When a station is locked or degraded.
    pub health: velib_stats::HealthConfig,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            topic: topics::STATION_STATS.into(),
            health_topic: Some(topics::STATION_HEALTH.into()),
            windows: velib_stats::StatsConfig::default(),
            health: velib_stats::HealthConfig::default(),
        }
    }
}

/// What the monitor does, apart from where it reads and writes.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The topic of station records (for logs and dead-letter headers).
    pub topic: String,
    /// Which count to follow.
    pub field: TrackedField,
    /// How to print changes.
    pub format: OutputFormat,
    /// Where empty-station events go; `None` publishes none.
    pub events_topic: Option<String>,
    /// Where unreadable records are copied; `None` only counts and logs them.
    pub dlq_topic: Option<String>,
    /// What to do when Kafka refuses a dead-letter copy for good.
    pub on_dlq_failure: DlqFailure,
    /// How long shutdown waits for undelivered events before committing what is done.
    pub flush_timeout: Duration,
    /// Statistics and health per station (exactly-once only); `None` keeps none.
    pub stats: Option<StatsSettings>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            topic: topics::STATIONS.into(),
            field: TrackedField::AvailableBikeStands,
            format: OutputFormat::Text,
            events_topic: Some(topics::EMPTY_STATIONS.into()),
            dlq_topic: Some(topics::DEAD_LETTERS.into()),
            on_dlq_failure: DlqFailure::Stop,
            flush_timeout: Duration::from_secs(30),
            stats: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorReport {
    /// Records consumed.
    pub records: u64,
    /// Change lines printed.
    pub changes: u64,
    /// Records ignored as stale (not newer than the known state).
    pub stale: u64,
    /// Unreadable records.
    pub poison: u64,
    /// Unreadable records skipped without their dead-letter copy, which Kafka refused for good
    /// ([`DlqFailure::Skip`]).
    pub dead_letters_lost: u64,
    /// Events queued (one per record that crossed a line: no bike, no e-bike, no returns).
    pub events: u64,
    /// Closed statistics windows queued (`--stats`).
    pub windows: u64,
    /// Health changes queued (`--stats`).
    pub health_events: u64,
    /// Whether outputs were still undelivered at exit (their records are not committed).
    pub undelivered_at_exit: bool,
}

/// Why the monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The consumer cannot go on.
    #[error("the Kafka consumer failed")]
    Stream(#[from] crate::stream::StreamError),
    /// A Kafka client could not be set up or used (exactly-once mode).
    #[error("could not {what}: {source}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// Kafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The transactions of the exactly-once mode cannot go on; the message says why and what
    /// to change.
    #[error("{0}")]
    Transaction(String),
    /// Settings that cannot work together; the message names them.
    #[error("{0}")]
    Settings(String),
    /// The events producer cannot go on.
    #[error("the events producer failed: {0}")]
    Sink(String),
    /// The exactly-once engine did not stop in time after the shutdown signal (a Kafka call is
    /// stuck on a broker that does not answer); its open transaction, if any, is aborted by
    /// Kafka, so leaving without it loses nothing.
    #[error(
        "the monitor did not stop within {waited:?} of the signal (a Kafka call is stuck); \
         leaving without it: its open transaction, if any, is aborted by Kafka"
    )]
    Stuck {
        /// How long the stop was waited for.
        waited: Duration,
    },
    /// Kafka refused for good the event or dead-letter copy of a record, which therefore cannot
    /// be committed. The records before it were committed.
    #[error(
        "Kafka refused the {what} of {source_topic} partition {partition} offset {offset} for \
         good ({error}); the record is not committed, and a restart stops on it again. {advice}"
    )]
    Refused {
        /// "dead-letter copy (to velib-stations-dlq)" or "empty-station event (to …)".
        what: String,
        /// The input topic.
        source_topic: String,
        /// The input record's partition.
        partition: i32,
        /// The input record's offset.
        offset: i64,
        /// Kafka's refusal.
        error: String,
        /// Which settings to change.
        advice: &'static str,
    },
}

/// What to change when a dead-letter copy is refused for good.
pub(crate) const DLQ_ADVICE: &str = "Fix the cause (a record over message.max.bytes: raise it with \
    -X message.max.bytes=… here and max.message.bytes on the topic; a missing topic: create it, \
    or name another with --dlq-topic), or skip such records with --on-dlq-failure=skip (each one \
    logged and counted as lost), or only count unreadable records with --no-dlq";

/// What to change when an event is refused for good.
pub(crate) const EVENTS_ADVICE: &str = "Create the events topic (cargo xtask create-topics) or name \
    another with --events-topic, check the ACLs, or publish no events with --no-events";

/// Adds what `report` counted since `metered` to the metrics: counters are updated in batches,
/// not per record.
pub(crate) fn meter(report: &MonitorReport, metered: &mut MonitorReport) {
    let add = |name: &'static str, now: u64, before: &mut u64| {
        if now > *before {
            metrics::counter!(name).increment(now - *before);
            *before = now;
        }
    };
    add(
        "velib_monitor_records_total",
        report.records,
        &mut metered.records,
    );
    add(
        "velib_monitor_changes_total",
        report.changes,
        &mut metered.changes,
    );
    add(
        "velib_monitor_poison_records_total",
        report.poison,
        &mut metered.poison,
    );
    add(
        "velib_monitor_events_total",
        report.events,
        &mut metered.events,
    );
}

/// A changelog record of the exactly-once mode: the station's key and its state.
pub(crate) struct StateOut {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    /// The statistics state (`--stats`), for the record's [`crate::state::STATS_HEADER`].
    pub(crate) stats: Option<Vec<u8>>,
}

/// What the exactly-once mode also makes of a record: its station's new state, and the
/// statistics windows and health changes it closed (`--stats`), all for the record's
/// transaction.
#[derive(Default)]
pub(crate) struct EosOut {
    pub(crate) state: Option<StateOut>,
    pub(crate) published: Vec<PendingOut>,
}

/// A detector for one partition, keeping statistics when `config` asks for them.
pub(crate) fn new_detector(config: &MonitorConfig) -> Detector {
    let detector = Detector::new(config.field);
    match &config.stats {
        Some(stats) => detector.with_stats(velib_stats::Tracker::with_health(
            stats.windows,
            stats.health,
        )),
        None => detector,
    }
}

/// Handles one record; returns what must be published (and delivered) before it is done.
/// With `eos`, also the station's new state when it changed in a way detection or statistics
/// depend on (its first record, a change of the tracked count, a line crossed, a count or
/// `is_returning` starting or ceasing to be given, any newer snapshot when statistics are
/// kept), and the windows and health changes it closed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    record: &InRecord<'_>,
    detector: &mut Detector,
    config: &MonitorConfig,
    out: &mut (dyn Write + Send),
    report: &mut MonitorReport,
    poison_log: &mut RateLimited,
    unflushed: &mut bool,
    eos: Option<&mut EosOut>,
) -> Option<PendingOut> {
    let payload = record.payload().unwrap_or_default();
    let station = match StationView::from_json(payload) {
        Ok(s) => s,
        Err(e) => return unreadable(record, &e, config, report, poison_log),
    };
    let verdict = detector.observe(&station);
    if let Some(eos) = eos {
        // The key once for both, and only when statistics need it on every record.
        let key = config.stats.as_ref().map(|_| station.key());
        let stats_moved = key.as_ref().is_some_and(|key| {
            observe_stats(detector, key, &station, config, report, &mut eos.published)
        });
        eos.state = state_to_remember(&verdict, stats_moved, &station, key, detector, config);
    }
    match verdict {
        Verdict::First => None,
        Verdict::Stale => {
            report.stale += 1;
            None
        }
        Verdict::Updated {
            change, crossed, ..
        } => {
            if let Some((previous, current)) = change {
                report.changes += 1;
                let _ = write_change(out, config, &station, previous, current);
                *unflushed = true;
            }
            // One event per record, whatever lines it crossed: the engines deliver one output
            // per input record.
            let topic = config.events_topic.as_ref()?;
            let kinds: Vec<EmptinessKind> = crossed.kinds().collect();
            let event = EmptyStationEvent::of_kinds(
                &kinds,
                &station.to_station(),
                record.timestamp().unwrap_or_default(),
            )?;
            report.events += 1;
            Some(PendingOut {
                topic: topic.clone(),
                key: event.key.as_str().as_bytes().to_vec(),
                payload: event.to_json(),
                headers: Vec::new(),
            })
        }
    }
}

/// An unreadable record: counted, logged (rate-limited), and its dead-letter copy, headed
/// with the error and where the record came from.
fn unreadable(
    record: &InRecord<'_>,
    error: &dyn std::fmt::Display,
    config: &MonitorConfig,
    report: &mut MonitorReport,
    poison_log: &mut RateLimited,
) -> Option<PendingOut> {
    report.poison += 1;
    if let Some(suppressed) = poison_log.allow() {
        tracing::warn!(
            topic = %config.topic,
            partition = record.partition(),
            offset = record.offset(),
            error = %error,
            suppressed_since_last = suppressed,
            "unreadable station record skipped{}",
            if config.dlq_topic.is_some() { "; sending a copy to the dead-letter topic" } else { "" }
        );
    }
    config.dlq_topic.as_ref().map(|dlq| PendingOut {
        topic: dlq.clone(),
        key: record.key().unwrap_or_default().to_vec(),
        payload: record.payload().unwrap_or_default().to_vec(),
        headers: vec![
            ("velib-error", error.to_string().into_bytes()),
            ("velib-source-topic", config.topic.clone().into_bytes()),
            (
                "velib-source-partition",
                record.partition().to_string().into_bytes(),
            ),
            (
                "velib-source-offset",
                record.offset().to_string().into_bytes(),
            ),
        ],
    })
}

/// Applies the record to its partition's statistics, if kept, queueing the windows and
/// health changes it closed; whether the statistics state changed.
fn observe_stats(
    detector: &mut Detector,
    key: &velib_model::StationKey,
    station: &StationView<'_>,
    config: &MonitorConfig,
    report: &mut MonitorReport,
    published: &mut Vec<PendingOut>,
) -> bool {
    let (Some(tracker), Some(settings)) = (detector.stats_mut(), config.stats.as_ref()) else {
        return false;
    };
    let mut out = velib_stats::Published::default();
    let applied = tracker.observe(key.as_str(), station, &mut out);
    report.windows += out.stats.len() as u64;
    published.extend(out.stats.iter().map(|window| PendingOut {
        topic: settings.topic.clone(),
        key: window.kafka_key(),
        payload: window.to_json(),
        headers: Vec::new(),
    }));
    if let Some(topic) = &settings.health_topic {
        report.health_events += out.health.len() as u64;
        published.extend(out.health.iter().map(|event| PendingOut {
            topic: topic.clone(),
            key: event.key.as_str().as_bytes().to_vec(),
            payload: event.to_json(),
            headers: Vec::new(),
        }));
    }
    use velib_stats::Applied;
    matches!(applied, Applied::First | Applied::Applied | Applied::Late)
}

/// The station's state for the changelog, when what detection or statistics depend on
/// changed.
fn state_to_remember(
    verdict: &Verdict,
    stats_moved: bool,
    station: &StationView<'_>,
    key: Option<velib_model::StationKey>,
    detector: &Detector,
    config: &MonitorConfig,
) -> Option<StateOut> {
    let remember = stats_moved
        || match verdict {
            Verdict::First => true,
            Verdict::Updated {
                change,
                crossed,
                known_changed,
            } => change.is_some() || !crossed.is_empty() || *known_changed,
            Verdict::Stale => false,
        };
    remember.then(|| {
        let key = key.unwrap_or_else(|| station.key());
        let stats = detector.stats().and_then(|t| {
            let mut bytes = Vec::with_capacity(160);
            t.encode_state(key.as_str(), &mut bytes).then_some(bytes)
        });
        StateOut {
            value: crate::state::value(station, config.field),
            key: key.as_str().to_owned(),
            stats,
        }
    })
}

/// Prints a change: the tutorial's line, or a [`StationChange`] JSON object.
fn write_change(
    out: &mut (dyn Write + Send),
    config: &MonitorConfig,
    station: &StationView<'_>,
    previous: u32,
    current: u32,
) -> std::io::Result<()> {
    match config.format {
        OutputFormat::Text => writeln!(
            out,
            "{}",
            ChangeLine {
                previous,
                current,
                address: &station.address,
                contract: &station.contract_name,
            }
        ),
        OutputFormat::Json => {
            let change = StationChange {
                key: station.key(),
                contract: station.contract_name.as_ref().to_owned(),
                address: station.address.as_ref().to_owned(),
                name: station.name.as_ref().to_owned(),
                field: config.field,
                previous,
                current,
                last_update: station.last_update,
            };
            serde_json::to_writer(&mut *out, &change).map_err(std::io::Error::from)?;
            writeln!(out)
        }
    }
}
