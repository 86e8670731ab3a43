//! The Kafka side: one consumer reading both topics into the map's state, and the pusher that
//! sends what changed to the pages.
//!
//! Nothing is committed (see the crate docs): the consumer's group is its own and the state
//! lives in memory, so a restart reads the topics again from the earliest offset they hold.

use crate::viewers::frame;
use crate::{Shared, WebConfig, WebError, now_ms};
use metrics::{counter, gauge};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use velib_kafka::ConnectionGuard;
use velib_kafka::config::redact_config_error;
use velib_kafka::connection::ReportingContext;

/// The consumer's settings before `--kafka-config` and `-X`: start at the earliest offset held,
/// never commit, no end-of-partition events, only committed transactions.
pub(crate) const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    // Events of an exactly-once monitor's aborted transactions are never shown.
    ("isolation.level", "read_committed"),
];

/// The topics of the map's own consumer: stations, and the empty-station events if read.
pub(crate) fn map_topics(config: &WebConfig) -> Vec<&str> {
    let mut topics = vec![config.topic.as_str()];
    topics.extend(config.events_topic.as_deref());
    topics
}

/// What a side consumer's records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Hourly statistics, into the history index.
    Stats,
    /// Health changes, into the map's state.
    Health,
}

/// One consumer per optional topic of the monitor's (statistics, health), so a missing one is
/// known by name and never holds up the map.
pub(crate) fn side_consumers(
    config: &WebConfig,
) -> Result<Vec<(StreamConsumer<ReportingContext>, String, Side)>, WebError> {
    [
        (config.stats_topic.as_ref(), Side::Stats),
        (config.health_topic.as_ref(), Side::Health),
    ]
    .into_iter()
    .filter_map(|(topic, side)| topic.map(|t| (t.clone(), side)))
    .map(|(topic, side)| Ok((connect(config, vec![topic.as_str()])?, topic, side)))
    .collect()
}

pub(crate) fn connect(
    config: &WebConfig,
    topics: Vec<&str>,
) -> Result<StreamConsumer<ReportingContext>, WebError> {
    let mut client = config.kafka.client_config(CONSUMER_DEFAULTS);
    if client.get("group.id").is_none() {
        // A group of its own: every partition comes to this consumer, whatever others do.
        // Numbered too: the map's consumer and the side topics' ones are made in the same
        // millisecond, and in one group they would share the partitions out between them.
        static CONSUMERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CONSUMERS.fetch_add(1, Ordering::Relaxed);
        client.set(
            "group.id",
            format!("velib-web-{}-{}-{n}", std::process::id(), now_ms()),
        );
    }
    let consumer: StreamConsumer<ReportingContext> = client
        .create_with_context(ReportingContext::new(ConnectionGuard::new()))
        .map_err(|e| WebError::Config(redact_config_error(e)))?;
    consumer.subscribe(&topics).map_err(WebError::Config)?;
    Ok(consumer)
}

/// Reads records into the state until the stop token is cancelled.
pub(crate) async fn consume(
    consumer: StreamConsumer<ReportingContext>,
    config: WebConfig,
    shared: Arc<Shared>,
) -> Result<(), WebError> {
    let guard = consumer.context().guard().clone();
    let mut last_error: Option<String> = None;
    loop {
        let message = tokio::select! {
            () = shared.stop.cancelled() => return Ok(()),
            failure = guard.failed() => return Err(WebError::Connection(failure)),
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // A missing topic or a broker going away comes back on every poll: say it once.
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(error = %text, topic = %config.topic, "Kafka consumer error");
                    last_error = Some(text);
                }
                continue;
            }
        };
        last_error = None;
        let observed = message.timestamp().to_millis().unwrap_or_else(now_ms);
        let payload = message.payload().unwrap_or_default();
        let stations = message.topic() == config.topic;
        let result = {
            let mut state = shared.state.lock().unwrap();
            let result = if stations {
                state
                    .apply_record(payload, observed)
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                state.apply_event_record(payload, observed)
            };
            *shared.summary.lock().unwrap() = state.summary();
            result
        };
        counter!("velib_web_records_total", "topic" => message.topic().to_owned()).increment(1);
        if let Err(error) = result {
            counter!("velib_web_unreadable_records_total").increment(1);
            tracing::warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "unreadable record skipped"
            );
        }
    }
}

/// Reads a side topic into the history index or the state until the stop token is
/// cancelled. A missing topic is said once, naming it; the map goes on without it, and its
/// records are read if it is created later (at the consumer's next metadata refresh).
pub(crate) async fn follow(
    consumer: StreamConsumer<ReportingContext>,
    topic: String,
    side: Side,
    shared: Arc<Shared>,
) {
    let guard = consumer.context().guard().clone();
    let mut said_missing = false;
    let mut last_error: Option<String> = None;
    loop {
        let message = tokio::select! {
            () = shared.stop.cancelled() => return,
            failure = guard.failed() => {
                tracing::warn!(%topic, error = %failure, "no longer reading the topic");
                return;
            }
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) if is_missing_topic(&e) => {
                if !said_missing {
                    tracing::warn!(
                        %topic,
                        "the topic does not exist (velib-monitor --stats publishes it): \
                         the map goes on without it"
                    );
                    said_missing = true;
                }
                continue;
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(error = %text, %topic, "Kafka consumer error");
                    last_error = Some(text);
                }
                continue;
            }
        };
        last_error = None;
        let payload = message.payload().unwrap_or_default();
        let result = match side {
            Side::Stats => shared
                .history
                .lock()
                .unwrap()
                .apply_record(payload)
                .map_err(|e| format!("not station statistics: {e}")),
            Side::Health => {
                let observed = message.timestamp().to_millis().unwrap_or_else(now_ms);
                let mut state = shared.state.lock().unwrap();
                let result = state.apply_health_record(payload, observed);
                *shared.summary.lock().unwrap() = state.summary();
                result
            }
        };
        counter!("velib_web_records_total", "topic" => topic.clone()).increment(1);
        if let Err(error) = result {
            counter!("velib_web_unreadable_records_total").increment(1);
            tracing::warn!(
                %topic,
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "unreadable record skipped"
            );
        }
    }
}

fn is_missing_topic(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{UnknownTopic, UnknownTopicOrPartition};
    matches!(
        error.rdkafka_error_code(),
        Some(UnknownTopic | UnknownTopicOrPartition)
    )
}

/// Every `interval`, sends what changed to the pages; at least once a second, so the pages'
/// data age stays right when nothing changes. After each update, hangs up the pages too far
/// behind (see [`crate::viewers`]).
pub(crate) async fn push(shared: Arc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = Duration::from_secs(1);
    let mut last = tokio::time::Instant::now();
    loop {
        ticker.tick().await;
        let seq = {
            let mut state = shared.state.lock().unwrap();
            if !state.has_pending() && last.elapsed() < heartbeat {
                continue;
            }
            // One frame for every page: a batch is what changed in 200 ms, small next to a
            // snapshot, so building it under the lock costs the consumer little.
            let batch = frame("update", None, &state.take_batch(now_ms()));
            gauge!("velib_web_stations").set(state.len() as f64);
            gauge!("velib_web_stations_off_map").set(state.off_map() as f64);
            // Numbered and sent under the state's lock: a page subscribing takes the lock too,
            // so it gets each change either in its snapshot or in a later batch, never in
            // neither.
            let seq = shared.sent.load(Ordering::Relaxed) + 1;
            shared.sent.store(seq, Ordering::Relaxed);
            let _ = shared.updates.send((seq, batch));
            seq
        };
        shared.viewers.hang_up_behind(seq, shared.backlog);
        last = tokio::time::Instant::now();
    }
}
