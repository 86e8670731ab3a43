//! velib's topic plan: what `velib-topics create` (and `cargo xtask create-topics`, which calls
//! this library) does. The tutorial's `kafka-topics.sh --create`/`--alter` and
//! `kafka-configs.sh --alter` as one command that can be run again at any time.
//!
//! It brings velib's topics to what was asked: the stations topic (`velib-stations`), the
//! monitor's empty-station events (`velib-empty-stations`), its dead-letter topic
//! (`velib-stations-dlq`) and its state changelog (`velib-monitor-state`), and with `--stats`
//! the statistics (`velib-station-stats`) and health (`velib-station-health`) topics. A topic that does not exist is created (CreateTopics); one with fewer
//! partitions than asked gets more (CreatePartitions); configs that differ from the request are
//! set. Configs that were not asked for are left as they are. Nothing is ever taken away: a
//! request for fewer partitions is refused (Kafka cannot remove partitions), and so is a
//! different replication factor (that needs a partition reassignment, which this does not do).
//!
//! Adding partitions moves some stations to another partition (the partition is the key's
//! hash modulo the count). Nothing is printed twice or wrongly for them, since a monitor only
//! records the first state it sees of a station; but the first change after the move is not
//! printed, and a consumer replaying the topic sees such a station's older records in another
//! partition than its newer ones.
//!
//! # How configs are altered
//!
//! With IncrementalAlterConfigs (KIP-339): each asked config is SET on its own, and every other
//! config of the topic stays as it is. rdkafka 0.39 wraps only the older AlterConfigs, which
//! replaces a topic's whole set of configs (everything left out returns to the broker default,
//! so a read-merge-write would revert whatever someone changes in between). So the call goes
//! through rdkafka-sys to the same librdkafka handle, in the `ffi` module. Configs
//! are read first (DescribeConfigs) only to skip the request when they already have the asked
//! values; a SET is idempotent, so when they cannot be read the request is sent anyway.
//!
//! # Layout
//!
//! [`plan`] decides, from the described state of one topic and the request, what to do; it is
//! pure and unit-tested. `Admin` is the thin layer of Admin API calls, one method per
//! operation, each reporting per topic and naming the operation when the broker lacks it.
//! [`run`] ties them together, checks each topic's result on its own, prints a table of the
//! topics as they are afterwards (Metadata and DescribeConfigs) and fails when any topic is not
//! as asked.
//!
//! All the `unsafe` code of this crate is in the private `ffi` module, for the two Admin API
//! calls rdkafka does not make; the rest of the crate denies it.

#![deny(unsafe_code)]

use anyhow::{Context, Result, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use velib_kafka::KafkaArgs;
use velib_kafka::config::{key_value, redact_config_error};
use velib_kafka::connection::{ConnectionGuard, ReportingContext};
use velib_model::topics;

/// The tutorial's short retention: records are deleted after about 4 s, segments roll every 2 s.
const SHORT_RETENTION: [(&str, &str); 2] = [("retention.ms", "4000"), ("segment.ms", "2000")];

/// Configs always shown in the table, whether set on the topic or inherited.
const SHOWN_CONFIGS: [&str; 3] = ["cleanup.policy", "retention.ms", "segment.ms"];

/// Flags of `velib-topics create` and `cargo xtask create-topics`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// The topic of station records (the producer's and the monitor's `--topic`).
    #[arg(long, env = "VELIB_STATIONS_TOPIC", default_value = topics::STATIONS)]
    stations_topic: String,

    /// The topic of empty-station events (the monitor's `--events-topic`, the alerts' `--topic`).
    #[arg(long, env = "VELIB_EVENTS_TOPIC", default_value = topics::EMPTY_STATIONS)]
    events_topic: String,

    /// The monitor's dead-letter topic for unreadable station records (its `--dlq-topic`).
    #[arg(long, env = "VELIB_DLQ_TOPIC", default_value = topics::DEAD_LETTERS)]
    dlq_topic: String,

    /// Leave the dead-letter topic out (for monitors run with `--no-dlq`).
    #[arg(long, env = "VELIB_NO_DLQ")]
    no_dlq: bool,

    /// The exactly-once monitor's state changelog (its `--state-topic`): compacted, with as
    /// many partitions as the stations topic, partition for partition.
    #[arg(long, env = "VELIB_STATE_TOPIC", default_value = topics::MONITOR_STATE)]
    state_topic: String,

    /// Leave the state topic out (for monitors run with `--guarantee at-least-once`).
    #[arg(long, env = "VELIB_NO_STATE")]
    no_state: bool,

    /// Also the topics of monitors run with `--stats`: the hourly statistics (compacted, keyed
    /// by station and window) and the health changes (locked, degraded).
    #[arg(long, env = "VELIB_STATS")]
    stats: bool,

    /// The statistics topic (the monitor's `--stats-topic`).
    #[arg(long, env = "VELIB_STATS_TOPIC", default_value = topics::STATION_STATS)]
    stats_topic: String,

    /// The health topic (the monitor's `--health-topic`).
    #[arg(long, env = "VELIB_HEALTH_TOPIC", default_value = topics::STATION_HEALTH)]
    health_topic: String,

    /// Partitions of the statistics and health topics: one record per station and hour, and
    /// a few health changes; three leave room for a few readers.
    #[arg(long, env = "VELIB_STATS_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..))]
    stats_partitions: i32,

    /// Partitions of the stations topic: at most this many monitors of one group share the work.
    #[arg(long, env = "VELIB_STATIONS_PARTITIONS", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,

    /// Partitions of the events topic. Events are few (one per station going empty or
    /// recovering); three leave room for a few alerts consumers.
    #[arg(long, env = "VELIB_EVENTS_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..))]
    events_partitions: i32,

    /// Partitions of the dead-letter topic. It is read by people, rarely; one partition keeps
    /// its records in the order they were found.
    #[arg(long, env = "VELIB_DLQ_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..))]
    dlq_partitions: i32,

    /// Replicas of every partition of the three topics (at most the number of brokers).
    #[arg(long, env = "VELIB_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..))]
    replication_factor: i32,

    /// `retention.ms` of the stations topic: how long records are kept.
    #[arg(long, env = "VELIB_RETENTION_MS", value_name = "MS")]
    retention_ms: Option<u64>,

    /// `segment.ms` of the stations topic: how often a log segment is closed (only closed
    /// segments are deleted or compacted).
    #[arg(long, env = "VELIB_SEGMENT_MS", value_name = "MS")]
    segment_ms: Option<u64>,

    /// The tutorial's preset for the stations topic: `retention.ms=4000` and `segment.ms=2000`,
    /// so the topic holds only the last few seconds of stations.
    #[arg(long, env = "VELIB_SHORT_RETENTION", conflicts_with_all = ["retention_ms", "segment_ms"])]
    short_retention: bool,

    /// `cleanup.policy` of the stations topic. `compact` keeps at least the latest record of
    /// every station, so a monitor starting cold with `-X auto.offset.reset=earliest` learns
    /// every station's state at once; `compact,delete` also drops records older than
    /// `retention.ms`.
    #[arg(long, env = "VELIB_CLEANUP_POLICY", value_enum)]
    cleanup_policy: Option<CleanupPolicy>,

    /// Any topic config of the stations topic, `--config key=value`, repeatable; applied after
    /// the flags above.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
    configs: Vec<(String, String)>,

    /// Any topic config of the events topic, `key=value`, repeatable.
    #[arg(long = "events-config", value_name = "KEY=VALUE", value_parser = parse_config)]
    events_configs: Vec<(String, String)>,

    /// Any topic config of the dead-letter topic, `key=value`, repeatable.
    #[arg(long = "dlq-config", value_name = "KEY=VALUE", value_parser = parse_config)]
    dlq_configs: Vec<(String, String)>,

    /// How long to wait for the cluster's answer to each request: `30s`, `1m`.
    #[arg(long, env = "VELIB_ADMIN_TIMEOUT", default_value = "30s",
          value_parser = velib_kafka::duration::parse_positive_duration)]
    timeout: Duration,
}

/// `cleanup.policy`: what happens to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CleanupPolicy {
    /// Records older than `retention.ms` are deleted (Kafka's default).
    Delete,
    /// Only the latest record of each key is kept.
    Compact,
    /// Both: the latest record of each key, and nothing older than `retention.ms`.
    #[value(name = "compact,delete", alias = "delete,compact")]
    CompactDelete,
}

impl CleanupPolicy {
    fn as_config(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    const EXAMPLE: &str = "a topic config such as max.message.bytes=2000000";
    match key_value(s, EXAMPLE)? {
        (_, "") => Err(format!(
            "expected KEY=VALUE ({EXAMPLE}), got {s:?} (no value)"
        )),
        (k, v) => Ok((k.to_owned(), v.to_owned())),
    }
}

/// What is asked of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs that must have these values; others are left alone.
    pub configs: BTreeMap<String, String>,
}

impl Args {
    /// The requests for the four topics (fewer with `--no-dlq`, `--no-state`; two more with
    /// `--stats`), from the flags.
    pub fn requests(&self) -> Vec<TopicRequest> {
        let mut stations = BTreeMap::new();
        if self.short_retention {
            for (k, v) in SHORT_RETENTION {
                stations.insert(k.to_owned(), v.to_owned());
            }
        }
        if let Some(ms) = self.retention_ms {
            stations.insert("retention.ms".to_owned(), ms.to_string());
        }
        if let Some(ms) = self.segment_ms {
            stations.insert("segment.ms".to_owned(), ms.to_string());
        }
        if let Some(policy) = self.cleanup_policy {
            stations.insert("cleanup.policy".to_owned(), policy.as_config().to_owned());
        }
        stations.extend(self.configs.iter().cloned());
        let request = |name: &str, partitions, configs: &[(String, String)]| TopicRequest {
            name: name.to_owned(),
            partitions,
            replication_factor: self.replication_factor,
            configs: configs.iter().cloned().collect(),
        };
        let mut requests = vec![
            TopicRequest {
                configs: stations,
                ..request(&self.stations_topic, self.partitions, &[])
            },
            request(
                &self.events_topic,
                self.events_partitions,
                &self.events_configs,
            ),
        ];
        if !self.no_dlq {
            requests.push(request(
                &self.dlq_topic,
                self.dlq_partitions,
                &self.dlq_configs,
            ));
        }
        if !self.no_state {
            // Compacted: the latest state of every station is kept, whatever its age. Hourly
            // segments let the cleaner compact within the hour (only closed segments are
            // compacted), so a restore reads about one record per station.
            requests.push(TopicRequest {
                configs: [
                    ("cleanup.policy".to_owned(), "compact".to_owned()),
                    ("segment.ms".to_owned(), "3600000".to_owned()),
                ]
                .into(),
                ..request(&self.state_topic, self.partitions, &[])
            });
        }
        if self.stats {
            // Compacted: a window is one key, so whatever is published twice (nothing, from
            // the exactly-once monitor) is one record; every window is kept, whatever its age.
            requests.push(TopicRequest {
                configs: [("cleanup.policy".to_owned(), "compact".to_owned())].into(),
                ..request(&self.stats_topic, self.stats_partitions, &[])
            });
            requests.push(request(&self.health_topic, self.stats_partitions, &[]));
        }
        requests
    }
}

/// A topic's configs as DescribeConfigs reports them, name to value (`None`: hidden by the
/// broker, a sensitive config), or why they could not be read.
pub type Configs = Result<BTreeMap<String, Option<String>>, String>;

/// What the cluster has for one existing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: Configs,
}

/// What to do to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It is as asked.
    Nothing,
    /// It does not exist: create it with the asked partitions, replicas and configs.
    Create,
    /// It exists; bring it to what was asked. At least one of the two is set.
    Update {
        /// Increase the partition count from `.0` to `.1` (CreatePartitions).
        add_partitions: Option<(i32, i32)>,
        /// SET these configs (IncrementalAlterConfigs); the topic's other configs stay.
        set_configs: BTreeMap<String, String>,
    },
    /// It cannot be brought to what was asked; nothing is done to it.
    Refuse(String),
}

/// Decides what to do to one topic, given its state (`None`: it does not exist) and the
/// request.
pub fn plan(request: &TopicRequest, observed: Option<&Observed>) -> Plan {
    let Some(observed) = observed else {
        return Plan::Create;
    };
    let name = &request.name;
    if request.partitions < observed.partitions {
        return Plan::Refuse(format!(
            "{name} has {} partitions and {} were asked: Kafka cannot remove partitions, and \
             changing their number would move stations to other partitions. Ask for {} or \
             more, or delete and recreate the topic (losing its records)",
            observed.partitions, request.partitions, observed.partitions
        ));
    }
    if request.replication_factor != observed.replication_factor {
        return Plan::Refuse(format!(
            "{name} has {} replicas per partition and {} were asked: changing it needs a \
             partition reassignment (kafka-reassign-partitions.sh), which this command does not do",
            observed.replication_factor, request.replication_factor
        ));
    }
    let add_partitions = (request.partitions > observed.partitions)
        .then_some((observed.partitions, request.partitions));
    let set_configs: BTreeMap<String, String> = match &observed.configs {
        // An inherited value equal to the asked one counts as done: pinning it on the topic
        // would only hide later changes of the broker's default.
        Ok(current) => request
            .configs
            .iter()
            .filter(|(key, wanted)| {
                current.get(*key).and_then(Option::as_deref) != Some(wanted.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // Unknown: SET them all, which changes nothing where they already hold.
        Err(_) => request.configs.clone(),
    };
    if add_partitions.is_none() && set_configs.is_empty() {
        Plan::Nothing
    } else {
        Plan::Update {
            add_partitions,
            set_configs,
        }
    }
}

/// How one topic ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Failed(String),
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub topic: String,
    /// Partitions and replication factor afterwards; `None` if the topic is not there.
    pub shape: Option<(i32, i32)>,
    pub outcome: Outcome,
    /// `key=value` of the shown configs, or why they could not be read.
    pub configs: Result<Vec<(String, String)>, String>,
}

/// The table printed at the end, then one line per failed topic saying why.
pub fn render(rows: &[Row]) -> String {
    let headers = ["TOPIC", "PARTITIONS", "REPLICAS", "RESULT", "CONFIGS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let (partitions, replicas) = match row.shape {
                Some((p, r)) => (p.to_string(), r.to_string()),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let result = match &row.outcome {
                Outcome::Ok(what) => what.clone(),
                Outcome::Failed(_) => "FAILED".to_owned(),
            };
            let configs = match &row.configs {
                Ok(configs) => configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(why) => format!("(unknown: {why})"),
            };
            [row.topic.clone(), partitions, replicas, result, configs]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    for row in rows {
        if let Outcome::Failed(why) = &row.outcome {
            let _ = writeln!(out, "{}: {why}", row.topic);
        }
    }
    out
}

/// Describes an Admin API failure, naming the operation and what the broker (or librdkafka
/// on its behalf) answered, with a hint when the broker does not implement the operation.
fn failure(operation: &str, code: RDKafkaErrorCode) -> String {
    failure_with(operation, code, None)
}

/// As [`failure`], with librdkafka's or the broker's own explanation when there is one.
fn failure_with(operation: &str, code: RDKafkaErrorCode, detail: Option<&str>) -> String {
    let answer = match detail.map(str::trim).filter(|d| !d.is_empty()) {
        Some(detail) => format!("{code}: {detail}"),
        None => code.to_string(),
    };
    match code {
        RDKafkaErrorCode::UnsupportedVersion
        | RDKafkaErrorCode::UnsupportedFeature
        | RDKafkaErrorCode::InvalidRequest => format!(
            "the broker does not support {operation} (answer: {answer}); do it with the \
             broker's own tools, or use a broker that implements it, such as Apache Kafka"
        ),
        RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut => format!(
            "{operation}: no answer in time ({answer}); the broker may not implement it, or \
             --timeout is too short"
        ),
        RDKafkaErrorCode::TopicAlreadyExists => format!(
            "{operation}: the topic was created by someone else meanwhile ({answer}); run the \
             command again to bring it to what was asked"
        ),
        _ => format!("{operation} failed: {answer}"),
    }
}

fn kafka_failure(operation: &str, error: &KafkaError) -> String {
    match error {
        // rdkafka reports a whole request's failure as `AdminOp`, whose code
        // `rdkafka_error_code()` does not return.
        KafkaError::AdminOp(code) => failure(operation, *code),
        error => match error.rdkafka_error_code() {
            Some(code) => failure(operation, code),
            None => format!("{operation} failed: {error}"),
        },
    }
}

/// The Admin API calls, one method per operation; every method reports per topic.
struct Admin {
    client: AdminClient<ReportingContext>,
    timeout: Duration,
}

impl Admin {
    fn new(kafka: &KafkaArgs, timeout: Duration) -> Result<Admin> {
        // An admin client is a producer-type client to librdkafka, and producers ask brokers
        // to auto-create the topics they look up; this one must never do that.
        let client = kafka
            .client_config(&[("allow.auto.create.topics", "false")])
            .create_with_context(ReportingContext::new(ConnectionGuard::new()))
            .map_err(redact_config_error)
            .context("invalid Kafka settings (--kafka-config / --bootstrap-servers / -X)")?;
        Ok(Admin { client, timeout })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Partitions and replication factor of every existing topic, from the cluster's metadata.
    /// All topics are asked for, not ours by name: a lookup by name can make a broker with
    /// `auto.create.topics.enable` create the topic with its default partitions.
    fn shapes(&self, bootstrap: &str) -> Result<BTreeMap<String, (i32, i32)>> {
        // Asked in short slices so that an unfixable connection failure (refused
        // credentials, an untrusted certificate) ends the wait as soon as librdkafka meets it.
        let deadline = Instant::now() + self.timeout;
        let guard = self.client.inner().context().guard();
        let metadata = loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            let answer = self.client.inner().fetch_metadata(None, slice);
            main_queue::serve(&self.client);
            match answer {
                Ok(m) => break Ok(m),
                Err(_) if guard.failure().is_some() => {}
                Err(e) if Instant::now() >= deadline => break Err(e),
                Err(_) => {}
            }
            if let Some(failure) = guard.failure() {
                return Err(anyhow::anyhow!("{failure}"));
            }
        };
        let metadata = metadata.map_err(|e| match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve,
            ) => {
                anyhow::anyhow!(
                    "no Kafka broker answered at {bootstrap} within {:?}: check \
                         --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS and that the cluster is up",
                    self.timeout
                )
            }
            _ => anyhow::anyhow!("{}", kafka_failure("Metadata", &e)),
        })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| {
                let replicas = t
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len() as i32)
                    .max()
                    .unwrap_or(0);
                (t.name().to_owned(), (t.partitions().len() as i32, replicas))
            })
            .collect())
    }

    /// The configs of `topics`, each read on its own terms.
    async fn configs(&self, topics: &[&str]) -> BTreeMap<String, Configs> {
        let specifiers: Vec<ResourceSpecifier<'_>> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let answer = self
            .client
            .describe_configs(&specifiers, &self.options())
            .await;
        let mut out = BTreeMap::new();
        match answer {
            Err(e) => {
                let why = kafka_failure("DescribeConfigs", &e);
                for topic in topics {
                    out.insert((*topic).to_owned(), Err(why.clone()));
                }
            }
            Ok(results) => {
                for (topic, result) in topics.iter().zip(results) {
                    let configs = result
                        .map(|resource| {
                            resource
                                .entries
                                .into_iter()
                                .map(|e| (e.name, e.value))
                                .collect()
                        })
                        .map_err(|code| failure("DescribeConfigs", code));
                    out.insert((*topic).to_owned(), configs);
                }
            }
        }
        out
    }

    /// The configs of those of `requests`' topics that `shapes` lists (asked in one request;
    /// none when there is none).
    async fn configs_of(
        &self,
        requests: &[TopicRequest],
        shapes: &BTreeMap<String, (i32, i32)>,
    ) -> BTreeMap<String, Configs> {
        let present: Vec<&str> = requests
            .iter()
            .map(|r| r.name.as_str())
            .filter(|name| shapes.contains_key(*name))
            .collect();
        if present.is_empty() {
            BTreeMap::new()
        } else {
            self.configs(&present).await
        }
    }

    /// Creates `requests`' topics; each topic's result on its own.
    async fn create(&self, requests: &[&TopicRequest]) -> BTreeMap<String, Result<(), String>> {
        let new_topics: Vec<NewTopic<'_>> = requests
            .iter()
            .map(|r| {
                r.configs.iter().fold(
                    NewTopic::new(
                        &r.name,
                        r.partitions,
                        TopicReplication::Fixed(r.replication_factor),
                    ),
                    |topic, (k, v)| topic.set(k, v),
                )
            })
            .collect();
        let mut out = BTreeMap::new();
        match self
            .client
            .create_topics(&new_topics, &self.options())
            .await
        {
            Err(e) => {
                let why = kafka_failure("CreateTopics", &e);
                for r in requests {
                    out.insert(r.name.clone(), Err(why.clone()));
                }
            }
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(name) => out.insert(name, Ok(())),
                        Err((name, code)) => out.insert(name, Err(failure("CreateTopics", code))),
                    };
                }
            }
        }
        out
    }

    async fn add_partitions(&self, topic: &str, total: i32) -> Result<(), String> {
        let request = NewPartitions::new(topic, total as usize);
        let results = self
            .client
            .create_partitions([&request], &self.options())
            .await
            .map_err(|e| kafka_failure("CreatePartitions", &e))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(failure("CreatePartitions", code)),
            None => Err("CreatePartitions: the broker answered about no topic".to_owned()),
        }
    }

    /// SETs `configs` on `topic` (IncrementalAlterConfigs). It blocks the calling thread until
    /// the broker answers: this command does one thing at a time, so nothing else waits.
    fn set_configs(&self, topic: &str, configs: &BTreeMap<String, String>) -> Result<(), String> {
        incremental::set_topic_configs(&self.client, topic, configs, self.timeout)
    }
}

/// Runs the command: prints the table to stdout and fails when any topic is not as asked.
///
/// Callers set up logging first (the binaries log at `warn` by default, so the table is what
/// a user reads).
pub fn run(args: Args) -> Result<()> {
    let requests = args.requests();
    let admin = Admin::new(&args.kafka, args.timeout)?;
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(apply(&admin, &args.kafka.bootstrap(), &requests))?;
    print!("{}", render(&rows));
    let failed = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if failed > 0 {
        bail!(
            "{failed} of {} topics are not as asked (see above)",
            rows.len()
        );
    }
    Ok(())
}

/// Brings `requests`' topics to what was asked and reads back what they are now.
async fn apply(admin: &Admin, bootstrap: &str, requests: &[TopicRequest]) -> Result<Vec<Row>> {
    let plans = plans(admin, bootstrap, requests).await?;
    let outcomes = carry_out(admin, requests, &plans).await;
    rows(admin, bootstrap, requests, outcomes).await
}

/// What to do to each topic, given what the cluster holds.
async fn plans(admin: &Admin, bootstrap: &str, requests: &[TopicRequest]) -> Result<Vec<Plan>> {
    let shapes = admin.shapes(bootstrap)?;
    let mut configs = admin.configs_of(requests, &shapes).await;
    Ok(requests
        .iter()
        .map(|r| {
            let observed = shapes
                .get(&r.name)
                .map(|&(partitions, replication_factor)| Observed {
                    partitions,
                    replication_factor,
                    configs: configs
                        .remove(&r.name)
                        .unwrap_or_else(|| Err("not described".to_owned())),
                });
            plan(r, observed.as_ref())
        })
        .collect())
}

/// Carries out each topic's plan and says how it went, in the order of `requests`.
async fn carry_out(admin: &Admin, requests: &[TopicRequest], plans: &[Plan]) -> Vec<Outcome> {
    // Creations go in one request; the broker answers for each topic separately.
    let to_create: Vec<&TopicRequest> = requests
        .iter()
        .zip(plans)
        .filter(|(_, p)| **p == Plan::Create)
        .map(|(r, _)| r)
        .collect();
    let mut created = if to_create.is_empty() {
        BTreeMap::new()
    } else {
        admin.create(&to_create).await
    };

    let mut outcomes = Vec::with_capacity(requests.len());
    for (request, plan) in requests.iter().zip(plans) {
        let outcome = match plan {
            Plan::Nothing => Outcome::Ok("unchanged".to_owned()),
            Plan::Refuse(why) => Outcome::Failed(format!("refused: {why}")),
            Plan::Create => match created.remove(&request.name) {
                Some(Ok(())) => Outcome::Ok("created".to_owned()),
                Some(Err(why)) => Outcome::Failed(why),
                None => {
                    Outcome::Failed("CreateTopics: the broker did not answer for it".to_owned())
                }
            },
            Plan::Update {
                add_partitions,
                set_configs,
            } => update(admin, &request.name, *add_partitions, set_configs).await,
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Adds partitions to `topic` and sets its configs, as planned; what was done is named in a
/// failure too.
async fn update(
    admin: &Admin,
    topic: &str,
    add_partitions: Option<(i32, i32)>,
    set_configs: &BTreeMap<String, String>,
) -> Outcome {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    if let Some((from, to)) = add_partitions {
        match admin.add_partitions(topic, to).await {
            Ok(()) => done.push(format!("partitions {from}->{to}")),
            Err(why) => failed.push(why),
        }
    }
    if !set_configs.is_empty() {
        match admin.set_configs(topic, set_configs) {
            Ok(()) => done.push(format!(
                "set {}",
                set_configs.keys().cloned().collect::<Vec<_>>().join(",")
            )),
            Err(why) => failed.push(why),
        }
    }
    if failed.is_empty() {
        Outcome::Ok(done.join("; "))
    } else {
        if !done.is_empty() {
            failed.push(format!("(done: {})", done.join("; ")));
        }
        Outcome::Failed(failed.join("; "))
    }
}

/// The table's rows: each topic as the cluster shows it now, with its outcome.
async fn rows(
    admin: &Admin,
    bootstrap: &str,
    requests: &[TopicRequest],
    outcomes: Vec<Outcome>,
) -> Result<Vec<Row>> {
    // The table shows the cluster as it is now. A new topic or new partitions can take a
    // moment to appear in every broker's metadata, so wait (with a deadline) until they do.
    let deadline = Instant::now() + admin.timeout;
    let shapes = loop {
        let shapes = admin.shapes(bootstrap)?;
        let settled = requests.iter().zip(&outcomes).all(|(r, o)| {
            matches!(o, Outcome::Failed(_))
                || shapes
                    .get(&r.name)
                    .is_some_and(|&(partitions, _)| partitions >= r.partitions)
        });
        if settled || Instant::now() > deadline {
            break shapes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut configs = admin.configs_of(requests, &shapes).await;
    Ok(requests
        .iter()
        .zip(outcomes)
        .map(|(request, outcome)| {
            let shape = shapes.get(&request.name).copied();
            let configs = match configs.remove(&request.name) {
                None => Ok(Vec::new()),
                Some(Err(why)) => Err(why),
                Some(Ok(all)) => Ok(shown_configs(request, &all)),
            };
            // A topic reported done but absent afterwards is not done.
            let outcome = match (outcome, shape) {
                (Outcome::Ok(_), None) => Outcome::Failed(
                    "the broker accepted the request but the topic is not in its metadata"
                        .to_owned(),
                ),
                (outcome, _) => outcome,
            };
            Row {
                topic: request.name.clone(),
                shape,
                outcome,
                configs,
            }
        })
        .collect())
}

/// The configs shown for a topic: the usual three, then any other asked for.
fn shown_configs(
    request: &TopicRequest,
    all: &BTreeMap<String, Option<String>>,
) -> Vec<(String, String)> {
    let mut keys: Vec<&str> = SHOWN_CONFIGS.to_vec();
    for key in request.configs.keys() {
        if !keys.contains(&key.as_str()) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .filter_map(|key| {
            let value = all
                .get(key)?
                .clone()
                .unwrap_or_else(|| "(hidden)".to_owned());
            Some((key.to_owned(), value))
        })
        .collect()
}

mod ffi;

use ffi::{incremental, main_queue};

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(flags: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("create-topics").chain(flags.iter().copied()))
            .unwrap()
            .args
    }

    fn request(partitions: i32, configs: &[(&str, &str)]) -> TopicRequest {
        TopicRequest {
            name: "t".to_owned(),
            partitions,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A topic with `partitions` partitions, one replica, and these configs.
    fn observed(partitions: i32, configs: &[(&str, Option<&str>)]) -> Observed {
        Observed {
            partitions,
            replication_factor: 1,
            configs: Ok(configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect()),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_four_topics() {
        let requests = args(&[]).requests();
        let shapes: Vec<(&str, i32, i32)> = requests
            .iter()
            .map(|r| (r.name.as_str(), r.partitions, r.replication_factor))
            .collect();
        // The environment may rename topics (VELIB_*_TOPIC); the shapes are what matter here.
        assert_eq!(shapes.len(), 4);
        assert_eq!(
            shapes.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(),
            [(10, 1), (3, 1), (1, 1), (10, 1)]
        );
        assert!(requests[..3].iter().all(|r| r.configs.is_empty()));
        assert_eq!(
            requests[3].configs,
            map(&[("cleanup.policy", "compact"), ("segment.ms", "3600000")])
        );
        assert_eq!(args(&["--no-dlq"]).requests().len(), 3);
        assert_eq!(args(&["--no-dlq", "--no-state"]).requests().len(), 2);
    }

    #[test]
    fn stats_adds_the_statistics_and_health_topics() {
        let requests = args(&["--stats", "--stats-partitions", "2"]).requests();
        assert_eq!(requests.len(), 6);
        assert_eq!((requests[4].partitions, requests[5].partitions), (2, 2));
        assert_eq!(requests[4].configs, map(&[("cleanup.policy", "compact")]));
        assert!(requests[5].configs.is_empty());
    }

    #[test]
    fn flags_become_stations_configs() {
        let requests = args(&[
            "--stations-topic",
            "s",
            "--short-retention",
            "--cleanup-policy",
            "compact,delete",
            "--config",
            "max.message.bytes=2000000",
            "--events-config",
            "retention.ms=86400000",
            "--partitions",
            "12",
            "--replication-factor",
            "3",
        ])
        .requests();
        assert_eq!(requests[0].name, "s");
        assert_eq!(requests[0].partitions, 12);
        assert_eq!(
            requests[0].configs,
            map(&[
                ("cleanup.policy", "compact,delete"),
                ("max.message.bytes", "2000000"),
                ("retention.ms", "4000"),
                ("segment.ms", "2000"),
            ])
        );
        assert_eq!(requests[1].configs, map(&[("retention.ms", "86400000")]));
        assert!(requests[2].configs.is_empty());
        // The state topic follows the stations topic's partitions.
        assert_eq!(requests[3].partitions, 12);
        assert!(requests.iter().all(|r| r.replication_factor == 3));

        // `--config` comes last, so it wins over the named flags.
        let requests = args(&["--retention-ms", "1000", "--config", "retention.ms=5"]).requests();
        assert_eq!(requests[0].configs, map(&[("retention.ms", "5")]));
    }

    #[test]
    fn bad_flags_are_refused() {
        let parse = |flags: &[&str]| {
            Cli::try_parse_from(std::iter::once("create-topics").chain(flags.iter().copied()))
        };
        assert!(parse(&["--short-retention", "--retention-ms", "5"]).is_err());
        assert!(parse(&["--partitions", "0"]).is_err());
        assert!(parse(&["--config", "retention.ms"]).is_err());
        assert!(parse(&["--cleanup-policy", "forever"]).is_err());
        assert!(parse(&["--cleanup-policy", "delete,compact"]).is_ok());
    }

    #[test]
    fn a_missing_topic_is_created() {
        assert_eq!(
            plan(&request(10, &[("retention.ms", "4000")]), None),
            Plan::Create
        );
    }

    #[test]
    fn a_topic_as_asked_is_left_alone() {
        let now = observed(
            10,
            &[
                ("retention.ms", Some("4000")),
                ("cleanup.policy", Some("delete")),
            ],
        );
        assert_eq!(
            plan(&request(10, &[("retention.ms", "4000")]), Some(&now)),
            Plan::Nothing
        );
        // A value inherited from the broker counts as well (Kafka reports those too).
        assert_eq!(
            plan(&request(10, &[("cleanup.policy", "delete")]), Some(&now)),
            Plan::Nothing
        );
        assert_eq!(plan(&request(10, &[]), Some(&now)), Plan::Nothing);
    }

    #[test]
    fn fewer_partitions_than_asked_are_increased() {
        assert_eq!(
            plan(&request(10, &[]), Some(&observed(4, &[]))),
            Plan::Update {
                add_partitions: Some((4, 10)),
                set_configs: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn shrinking_is_refused_with_why() {
        let Plan::Refuse(why) = plan(
            &request(3, &[("retention.ms", "1")]),
            Some(&observed(10, &[])),
        ) else {
            panic!("a shrink must be refused");
        };
        assert!(why.contains("cannot remove partitions"), "{why}");
        assert!(why.contains("10 partitions and 3 were asked"), "{why}");
    }

    #[test]
    fn another_replication_factor_is_refused() {
        let mut req = request(10, &[]);
        req.replication_factor = 3;
        assert!(matches!(
            plan(&req, Some(&observed(10, &[]))),
            Plan::Refuse(why) if why.contains("reassignment")
        ));
    }

    #[test]
    fn only_configs_that_differ_are_set() {
        // Some Kafka-compatible brokers report only the configs set on the topic; Kafka reports
        // all of them.
        let now = observed(
            10,
            &[
                ("retention.ms", Some("604800000")),
                ("segment.ms", Some("2000")),
                ("max.message.bytes", Some("2000000")),
            ],
        );
        assert_eq!(
            plan(
                &request(
                    10,
                    &[
                        ("retention.ms", "4000"),
                        ("segment.ms", "2000"),
                        ("cleanup.policy", "compact")
                    ]
                ),
                Some(&now),
            ),
            Plan::Update {
                add_partitions: None,
                set_configs: map(&[("cleanup.policy", "compact"), ("retention.ms", "4000")]),
            }
        );
    }

    #[test]
    fn partitions_and_configs_together() {
        assert_eq!(
            plan(
                &request(10, &[("cleanup.policy", "compact")]),
                Some(&observed(5, &[("cleanup.policy", Some("delete"))])),
            ),
            Plan::Update {
                add_partitions: Some((5, 10)),
                set_configs: map(&[("cleanup.policy", "compact")]),
            }
        );
    }

    #[test]
    fn unreadable_configs_are_all_set() {
        let mut now = observed(10, &[]);
        now.configs = Err("the broker does not support DescribeConfigs".to_owned());
        assert_eq!(plan(&request(10, &[]), Some(&now)), Plan::Nothing);
        assert_eq!(
            plan(&request(10, &[("retention.ms", "4000")]), Some(&now)),
            Plan::Update {
                add_partitions: None,
                set_configs: map(&[("retention.ms", "4000")]),
            }
        );
    }

    #[test]
    fn a_hidden_value_is_set_again() {
        let now = observed(10, &[("some.secret", None)]);
        assert_eq!(
            plan(&request(10, &[("some.secret", "x")]), Some(&now)),
            Plan::Update {
                add_partitions: None,
                set_configs: map(&[("some.secret", "x")]),
            }
        );
    }

    #[test]
    fn the_table_lines_up_and_explains_failures() {
        let rows = [
            Row {
                topic: "velib-stations".to_owned(),
                shape: Some((10, 1)),
                outcome: Outcome::Ok("created".to_owned()),
                configs: Ok(vec![("retention.ms".to_owned(), "4000".to_owned())]),
            },
            Row {
                topic: "dlq".to_owned(),
                shape: None,
                outcome: Outcome::Failed("CreateTopics failed: boom".to_owned()),
                configs: Err("no".to_owned()),
            },
        ];
        assert_eq!(
            render(&rows),
            "TOPIC           PARTITIONS  REPLICAS  RESULT   CONFIGS\n\
             velib-stations  10          1         created  retention.ms=4000\n\
             dlq             -           -         FAILED   (unknown: no)\n\
             dlq: CreateTopics failed: boom\n"
        );
    }

    #[test]
    fn unsupported_operations_are_named() {
        let why = failure("CreatePartitions", RDKafkaErrorCode::UnsupportedFeature);
        assert!(why.contains("does not support CreatePartitions"), "{why}");
        let why = kafka_failure(
            "CreatePartitions",
            &KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature),
        );
        assert!(why.contains("does not support CreatePartitions"), "{why}");
        let why = failure_with(
            "IncrementalAlterConfigs",
            RDKafkaErrorCode::InvalidConfig,
            Some("retention.ms must be a number"),
        );
        assert!(why.contains("must be a number"), "{why}");
    }
}
