//! The alerts consumer: reads `velib-empty-stations`, mails the watched stations.
//!
//! # What is mailed
//!
//! An event lists the lines one station record crossed (no bike, no e-bike, no returns: see
//! [`EmptyStationEvent`]); each transition is judged on its own, as if it were an event of its
//! own: the lines asked for ([`AlertsConfig::shortages`], bikes alone by default), the end of a
//! shortage only with [`AlertsConfig::notify_recovery`], the age, then the duplicate filter and
//! cooldown ([`crate::dedupe`]), per station and line. Each transition that passes gets its own
//! mail per recipient. Events of the first schema (bikes only) read as before.
//!
//! With `locked` or `degraded` asked for ([`AlertsConfig::health`]), the consumer also reads
//! the health topic of an exactly-once monitor with `--stats` ([`AlertsConfig::health_topic`])
//! and mails its changes by the rules of [`crate::health`], under the same guarantee.
//!
//! # Delivery guarantee: at least once
//!
//! An event's offset is stored (and later committed, by librdkafka's auto-commit of *stored*
//! offsets, and synchronously on shutdown) only once the event is *handled*: every recipient's
//! mail was accepted by the mail server (`250` after `DATA`), or refused for good (5xx, logged
//! and counted), or the event was deliberately left out (not watched, a duplicate, within the
//! cooldown, too old, malformed). So a crash, a restart or a rebalance never skips an alert:
//! the next owner of the partition starts at the first unhandled event.
//!
//! **The limit:** a crash after the server accepted a mail and before the offset was committed
//! sends that mail again on restart (the in-memory duplicate filter does not survive the
//! crash). So does a rebalance that hands the partition to another instance in that window.
//! The duplicate carries the same `Message-ID`, which many mail clients use to show it once.
//!
//! # While the mail server is down
//!
//! A transient failure (connection refused, timeout, TLS handshake, SMTP 4xx, or refused
//! credentials) holds the consumer on that event: it retries the same mail with exponential
//! backoff ([`Retry`]) and consumes nothing further, so alerts are neither lost nor reordered.
//! It logs "mail server unavailable, holding alerts" once when the hold starts and "mail server
//! back" once when it ends. Shutdown interrupts the wait; the held event is not stored and is
//! mailed after the restart.
//!
//! During a hold the consumer does not call `recv`, so after `max.poll.interval.ms` (librdkafka's
//! default: 5 minutes; raise it with `-X max.poll.interval.ms=…` for long outages) librdkafka
//! leaves the group and its partitions go to other members, if any. That is safe: the held
//! event's offset was never stored. When the server is back this consumer mails the held event,
//! fails to store its offset (the partition is no longer assigned; logged at debug level),
//! rejoins on its next `recv`, receives the event again from the committed offset, and the
//! duplicate filter drops it. With several instances, the member that took the partition may
//! also mail it: the duplicate of the guarantee's limit.
//!
//! A permanent refusal (5xx other than authentication, e.g. `550 no such user`) is logged and
//! skipped for that recipient: it would be refused again forever.
//!
//! # Where a new consumer group starts
//!
//! `auto.offset.reset=earliest`: a group with no committed offset (the first deployment, or
//! offsets expired) starts at the oldest retained event, so events the monitor published before
//! alerts first joined are not lost. The flood of stale alerts that could cause is stopped by
//! [`AlertsConfig::max_age`]: older events are handled as filtered, not mailed.

use crate::dedupe::{Dedupe, Verdict};
use crate::health::{HealthAlerts, HealthVerdict, Places};
use crate::mail::{self, FailureClass, Mailer};
use crate::select::WatchList;
use futures::FutureExt;
use lettre::Message;
use lettre::message::Mailbox;
use metrics::{counter, gauge};
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use velib_kafka::config::redact_config_error;
use velib_kafka::connection::{ReportingContext, cluster_reachable, is_transport_failure};
use velib_kafka::{ConnectionError, ConnectionGuard, KafkaArgs};
use velib_model::{EmptyStationEvent, Health, Shortage, StationHealthEvent, StationKey};

/// The topic the monitor publishes emptiness events to.
pub const DEFAULT_TOPIC: &str = velib_model::topics::EMPTY_STATIONS;
/// The consumer group of the alerts consumer.
pub const DEFAULT_GROUP: &str = "velib-alerts";

/// Backoff between retries of a mail the server could not take: velib's
/// [`Backoff`](velib_model::Backoff), exponential with jitter, so alerts consumers that lost
/// one mail server together do not retry in lock-step.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The first wait (between half and all of it, with jitter).
    pub initial: Duration,
    /// The longest wait; each wait doubles up to it.
    pub max: Duration,
}

impl Default for Retry {
    /// 1 s, doubling up to 60 s.
    fn default() -> Retry {
        Retry {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Everything [`run`] needs besides the mailer.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Kafka connection and `-X` properties.
    pub kafka: KafkaArgs,
    /// The topic to read, [`DEFAULT_TOPIC`] by default.
    pub topic: String,
    /// The consumer group, [`DEFAULT_GROUP`] by default.
    pub group: String,
    /// Which stations to mail about.
    pub watch: WatchList,
    /// Which shortages to mail about: no bike ([`Shortage::Bikes`], the default alone), no
    /// e-bike, no returns. Empty: the events topic is read only for the names and places of
    /// health mails.
    pub shortages: BTreeSet<Shortage>,
    /// Which changes of health to mail about ([`Health::Locked`], [`Health::Degraded`]; none by
    /// default). Empty: the health topic is not read.
    pub health: Vec<Health>,
    /// The topic of health changes, [`velib_model::topics::STATION_HEALTH`] by default.
    pub health_topic: String,
    /// The sender.
    pub from: Mailbox,
    /// The recipients; each gets their own message.
    pub to: Vec<Mailbox>,
    /// At most one "empty" mail per station and shortage per cooldown (15 minutes by default).
    pub cooldown: Duration,
    /// Also mail when a shortage ends (bikes, e-bikes back, returns taken again) at a station
    /// that was reported short.
    pub notify_recovery: bool,
    /// Events whose time is older than this (by the wall clock) are not mailed: a "no bikes"
    /// mail hours late is noise. `None` mails events of any age. Two hours by default.
    pub max_age: Option<Duration>,
    /// Backoff for transient mail failures.
    pub retry: Retry,
    /// How many stations the duplicate filter remembers.
    pub dedupe_capacity: usize,
}

impl AlertsConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(kafka: KafkaArgs, watch: WatchList, from: Mailbox, to: Vec<Mailbox>) -> Self {
        AlertsConfig {
            kafka,
            topic: DEFAULT_TOPIC.to_owned(),
            group: DEFAULT_GROUP.to_owned(),
            watch,
            shortages: BTreeSet::from([Shortage::Bikes]),
            health: Vec::new(),
            health_topic: velib_model::topics::STATION_HEALTH.to_owned(),
            from,
            to,
            cooldown: Duration::from_secs(15 * 60),
            notify_recovery: false,
            max_age: Some(Duration::from_secs(2 * 60 * 60)),
            retry: Retry::default(),
            dedupe_capacity: 100_000,
        }
    }
}

/// What [`run`] did, returned on shutdown. The same numbers are exported as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records read.
    pub events: u64,
    /// Records that were not a valid event (skipped).
    pub malformed: u64,
    /// Events for a watched station.
    pub matched: u64,
    /// Transitions of watched events left out: a shortage not asked for, recovery not
    /// requested, or too old.
    pub filtered: u64,
    /// Transitions of watched events dropped by the duplicate filter or the cooldown.
    pub suppressed: u64,
    /// Mails the server accepted (one per recipient).
    pub mails_sent: u64,
    /// Send attempts that failed and were retried.
    pub retried_failures: u64,
    /// Mails refused for good and skipped.
    pub permanent_failures: u64,
}

/// Why [`run`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// No recipient was configured.
    #[error("no recipient: give at least one --to address (or ALERT_TO)")]
    NoRecipients,
    /// Nothing would ever match.
    #[error(
        "no station is watched: give --station, --contract or --near (with --radius-m and/or --nearest)"
    )]
    NothingWatched,
    /// No shortage asked for.
    #[error(
        "no alert asked for: give --alert-on bikes, ebikes, returns, locked and/or degraded \
         (or ALERT_ON)"
    )]
    NoShortage,
    /// The brokers cannot be reached in a way retrying cannot fix (refused credentials, an
    /// untrusted certificate, a security protocol mismatch).
    #[error("{0}")]
    Connection(ConnectionError),
    /// The Kafka client could not be set up.
    #[error(
        "cannot {what} (check --kafka-config, --bootstrap-servers and the -X properties): {source}"
    )]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
}

/// Consumes `config.topic` as group `config.group` and mails the watched stations through
/// `mailer`, until `shutdown` completes. Then it commits the stored offsets, leaves the group
/// and returns what it did. See the [module docs](self) for the delivery guarantee.
///
/// # Errors
///
/// A configuration that cannot work (no recipient, nothing watched) or a Kafka client that
/// cannot be created. Once running, failures (broker unreachable, mail server down, malformed
/// events) are logged and handled, never returned.
pub async fn run<M: Mailer>(
    config: AlertsConfig,
    mailer: M,
    shutdown: impl Future,
) -> Result<Stats, AlertsError> {
    if config.to.is_empty() {
        return Err(AlertsError::NoRecipients);
    }
    if config.watch.is_empty() {
        return Err(AlertsError::NothingWatched);
    }
    if config.shortages.is_empty() && config.health.is_empty() {
        return Err(AlertsError::NoShortage);
    }
    let guard = ConnectionGuard::new();
    let consumer = subscribe(&config, &guard)?;
    let mut alerts = Alerts {
        dedupe: Dedupe::new(config.cooldown, config.dedupe_capacity),
        health: HealthAlerts::new(
            config.health.iter().copied(),
            config.notify_recovery,
            config.dedupe_capacity,
        ),
        places: Places::new(config.dedupe_capacity),
        config,
        mailer,
        stats: Stats::default(),
        holding: false,
    };
    let shutdown = shutdown.fuse();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut errors = ConsumerErrors::default();
    loop {
        let received = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            failure = guard.failed() => return Err(AlertsError::Connection(failure)),
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => {
                errors.records_flow();
                message
            }
            Err(e) => {
                errors.report(&e);
                continue;
            }
        };
        match alerts.handle(&message, shutdown.as_mut()).await {
            Handled::Done => {
                if let Err(e) = consumer.store_offset_from_message(&message) {
                    // The partition was revoked meanwhile (e.g. a hold longer than
                    // max.poll.interval.ms): its next owner starts at this event again.
                    tracing::debug!(error = %e, partition = message.partition(), offset = message.offset(), "offset not stored");
                }
            }
            Handled::Interrupted => break,
        }
    }
    leave(consumer);
    Ok(alerts.stats)
}

/// The consumer of `config.topic`, subscribed, with the at-least-once settings of the
/// [module docs](self).
fn subscribe(
    config: &AlertsConfig,
    guard: &ConnectionGuard,
) -> Result<StreamConsumer<ReportingContext>, AlertsError> {
    let mut client = config.kafka.client_config(&[
        // The at-least-once contract: store an offset only after the event is handled, and
        // let auto-commit commit only what was stored.
        ("enable.auto.offset.store", "false"),
        ("enable.auto.commit", "true"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
        // Events of an exactly-once monitor's aborted transactions are never read, so each
        // event arrives once (the dedupe stays, for at-least-once monitors and replays).
        ("isolation.level", "read_committed"),
        // Statistics every few seconds tell when the cluster is reachable again after an
        // outage, though a quiet topic delivers no record to say so.
        ("statistics.interval.ms", "5000"),
    ]);
    client.set("group.id", &config.group);
    if client.get("client.id").is_none() {
        client.set("client.id", "velib-alerts");
    }
    let consumer: StreamConsumer<ReportingContext> = client
        .create_with_context(ReportingContext::new(guard.clone()))
        .map_err(|source| AlertsError::Kafka {
            what: "create the Kafka consumer",
            source: redact_config_error(source),
        })?;
    // The events topic also names the stations of health mails: it is read whenever the
    // health topic is.
    let mut topics = vec![config.topic.as_str()];
    if !config.health.is_empty() {
        topics.push(config.health_topic.as_str());
    }
    consumer
        .subscribe(&topics)
        .map_err(|source| AlertsError::Kafka {
            what: "subscribe to the topics",
            source,
        })?;
    tracing::info!(topics = ?topics, group = %config.group, recipients = config.to.len(), "alerts consumer started");
    Ok(consumer)
}

/// Commits the stored offsets and leaves the group.
fn leave(consumer: StreamConsumer<ReportingContext>) {
    tracing::info!("shutting down: committing stored offsets and leaving the group");
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "final commit failed; the next start may mail the last alerts again")
        }
    }
    // Dropping the consumer closes it: librdkafka leaves the group, so the partitions move to
    // another member at once instead of after the session timeout.
    drop(consumer);
    gauge!("velib_alerts_holding").set(0.0);
}

/// The consumer errors seen since records last flowed: librdkafka hands out the same error on
/// every poll while it lasts, so each kind is logged once.
#[derive(Debug, Default)]
struct ConsumerErrors {
    /// The last error kind logged.
    last: Option<String>,
    /// Whether errors came since the last record.
    trouble: bool,
}

impl ConsumerErrors {
    /// A record arrived: an outage is over.
    fn records_flow(&mut self) {
        if self.trouble {
            self.trouble = false;
            self.last = None;
            cluster_reachable();
        }
    }

    /// Broker and topic trouble surfaces here; librdkafka retries by itself. An outage is
    /// reported once by the client context (`cluster_down`); other errors once per kind,
    /// until records flow again.
    fn report(&mut self, e: &KafkaError) {
        counter!("velib_alerts_consumer_errors_total").increment(1);
        let kind = (!is_transport_failure(e)).then(|| format!("{:?}", e.rdkafka_error_code()));
        if kind.is_some() && kind != self.last {
            tracing::warn!(error = %e, "Kafka consumer error; retrying");
        } else {
            tracing::debug!(error = %e, "Kafka consumer error; retrying");
        }
        self.last = kind.or(self.last.take());
        self.trouble = true;
    }
}

/// What became of a record.
enum Handled {
    /// Handled: its offset may be stored.
    Done,
    /// Shutdown came while the record was held: do not store its offset.
    Interrupted,
}

struct Alerts<M> {
    config: AlertsConfig,
    mailer: M,
    dedupe: Dedupe,
    health: HealthAlerts,
    places: Places,
    stats: Stats,
    /// Whether a transient failure is holding the consumer (for logging the change once).
    holding: bool,
}

impl<M: Mailer> Alerts<M> {
    async fn handle<S: Future>(
        &mut self,
        message: &BorrowedMessage<'_>,
        shutdown: Pin<&mut S>,
    ) -> Handled {
        self.stats.events += 1;
        counter!("velib_alerts_events_total").increment(1);
        if !self.config.health.is_empty() && message.topic() == self.config.health_topic {
            return self.handle_health(message, shutdown).await;
        }
        let parsed = match message.payload() {
            Some(payload) => EmptyStationEvent::from_json(payload),
            None => Err("empty record (no payload)".to_owned()),
        };
        let Some(event) = self.readable(message, parsed) else {
            return Handled::Done;
        };
        self.places.learn(&event);

        if !self.config.watch.matches(&event) {
            return Handled::Done;
        }
        self.stats.matched += 1;
        counter!("velib_alerts_events_matched_total").increment(1);

        // Each transition of the record on its own: filtered, deduped, then mailed together,
        // so the event's offset is stored once all its mails are handled.
        let due: Vec<EmptyStationEvent> = event
            .split()
            .into_iter()
            .filter(|part| self.is_due(part))
            .collect();
        let mut messages = Vec::with_capacity(due.len() * self.config.to.len());
        for part in &due {
            self.compose(part, &mut messages);
        }
        let handled = self.deliver(&event.key, messages, shutdown).await;
        if let Handled::Done = handled {
            for part in &due {
                self.dedupe.record(part);
            }
        }
        handled
    }

    /// The record's event, or `None` (counted and logged) when it is not one.
    fn readable<T>(
        &mut self,
        message: &BorrowedMessage<'_>,
        parsed: Result<T, String>,
    ) -> Option<T> {
        match parsed {
            Ok(event) => Some(event),
            Err(error) => {
                self.stats.malformed += 1;
                counter!("velib_alerts_events_malformed_total").increment(1);
                let key = message.key().map(String::from_utf8_lossy);
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    key = key.as_deref().unwrap_or(""),
                    %error,
                    "skipping a malformed event"
                );
                None
            }
        }
    }

    /// One record of the health topic: see [`crate::health`].
    async fn handle_health<S: Future>(
        &mut self,
        message: &BorrowedMessage<'_>,
        shutdown: Pin<&mut S>,
    ) -> Handled {
        let parsed = match message.payload() {
            Some(payload) => StationHealthEvent::from_json(payload).map_err(|e| e.to_string()),
            None => Err("empty record (no payload)".to_owned()),
        };
        let Some(change) = self.readable(message, parsed) else {
            return Handled::Done;
        };
        let place = self.places.get(&change.key);
        if !self.config.watch.matches_known(
            &change.key,
            place.map(|p| p.contract.as_str()),
            place.and_then(|p| p.position),
        ) {
            return Handled::Done;
        }
        self.stats.matched += 1;
        counter!("velib_alerts_events_matched_total").increment(1);
        let verdict = match self.health.check(&change) {
            HealthVerdict::Send if self.too_old(change.decided_at) => Some("stale"),
            HealthVerdict::Send => None,
            other => Some(other.as_str()),
        };
        if let Some(reason) = verdict {
            self.stats.filtered += 1;
            counter!("velib_alerts_events_filtered_total", "reason" => reason).increment(1);
            tracing::debug!(station = %change.key, health = crate::health::health_name(change.health), reason, "health change not mailed");
            return Handled::Done;
        }
        let mut messages = Vec::with_capacity(self.config.to.len());
        for to in &self.config.to {
            match mail::compose_health(&change, self.places.get(&change.key), &self.config.from, to)
            {
                Ok(m) => messages.push(m),
                Err(e) => {
                    self.stats.permanent_failures += 1;
                    counter!("velib_alerts_send_failures_total", "class" => "compose").increment(1);
                    tracing::error!(station = %change.key, %to, error = %e, "skipping an alert that cannot be composed");
                }
            }
        }
        let handled = self.deliver(&change.key, messages, shutdown).await;
        if let Handled::Done = handled {
            self.health.record(&change);
        }
        handled
    }

    /// Whether an event of `time` (epoch ms) is older than `--max-age` by the wall clock.
    fn too_old(&self, time: i64) -> bool {
        let Some(max_age) = self.config.max_age else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        now.saturating_sub(time) > i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether one transition passes the filters and the dedupe; counts and logs it if not.
    fn is_due(&mut self, part: &EmptyStationEvent) -> bool {
        if let Some(reason) = self.filter(part) {
            self.stats.filtered += 1;
            counter!("velib_alerts_events_filtered_total", "reason" => reason).increment(1);
            tracing::debug!(station = %part.key, kind = part.kind.as_str(), reason, "event not mailed");
            return false;
        }
        let verdict = self.dedupe.check(part);
        if verdict != Verdict::Send {
            self.stats.suppressed += 1;
            counter!("velib_alerts_events_suppressed_total", "reason" => verdict.as_str())
                .increment(1);
            tracing::debug!(station = %part.key, kind = part.kind.as_str(), reason = verdict.as_str(), "event not mailed");
            return false;
        }
        true
    }

    /// Adds the mail of `part` for each recipient to `messages`.
    fn compose(&mut self, part: &EmptyStationEvent, messages: &mut Vec<Message>) {
        for to in &self.config.to {
            match mail::compose(part, &self.config.from, to) {
                Ok(m) => messages.push(m),
                Err(e) => {
                    self.stats.permanent_failures += 1;
                    counter!("velib_alerts_send_failures_total", "class" => "compose").increment(1);
                    tracing::error!(station = %part.key, %to, error = %e, "skipping an alert that cannot be composed");
                }
            }
        }
    }

    /// Why a watched transition is not mailed, if it is not.
    fn filter(&self, event: &EmptyStationEvent) -> Option<&'static str> {
        if !self.config.shortages.contains(&event.kind.shortage()) {
            return Some("shortage_not_requested");
        }
        if event.kind.is_recovery() && !self.config.notify_recovery {
            return Some("recovery_not_requested");
        }
        self.too_old(event.event_time()).then_some("stale")
    }

    /// Sends every message, retrying the transient failures until they succeed or shutdown.
    async fn deliver<S: Future>(
        &mut self,
        station: &StationKey,
        mut pending: Vec<Message>,
        mut shutdown: Pin<&mut S>,
    ) -> Handled {
        let mut backoff =
            velib_model::Backoff::new(self.config.retry.initial, self.config.retry.max);
        loop {
            let mut failed = Vec::new();
            let mut last_error = None;
            for message in pending {
                let to = message
                    .envelope()
                    .to()
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                match self.mailer.send(&message).await {
                    Ok(()) => {
                        self.stats.mails_sent += 1;
                        counter!("velib_alerts_mails_sent_total").increment(1);
                        let subject = message.headers().get_raw("Subject").unwrap_or_default();
                        tracing::info!(station = %station, subject, %to, "alert mailed");
                    }
                    Err(e) if e.class.is_retryable() => {
                        self.stats.retried_failures += 1;
                        counter!("velib_alerts_send_failures_total", "class" => e.class.as_str())
                            .increment(1);
                        tracing::debug!(station = %station, %to, error = %e, "send failed; will retry");
                        failed.push(message);
                        last_error = Some(e);
                    }
                    Err(e) => {
                        self.stats.permanent_failures += 1;
                        counter!("velib_alerts_send_failures_total", "class" => e.class.as_str())
                            .increment(1);
                        tracing::error!(station = %station, %to, error = %e, "the mail server refused this alert for good; skipping it");
                    }
                }
            }
            let Some(error) = last_error else {
                if self.holding {
                    self.holding = false;
                    gauge!("velib_alerts_holding").set(0.0);
                    tracing::info!("mail server back: alerts flowing again");
                }
                return Handled::Done;
            };
            if !self.holding {
                self.holding = true;
                gauge!("velib_alerts_holding").set(1.0);
                let hint = match error.class {
                    FailureClass::Authentication => {
                        "the server refused the credentials: check SMTP_USERNAME and SMTP_PASSWORD"
                    }
                    _ => {
                        "retrying with backoff; no further event is consumed until it accepts this one"
                    }
                };
                tracing::warn!(station = %station, error = %error, hint, "mail server unavailable, holding alerts");
            }
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return Handled::Interrupted,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
            pending = failed;
        }
    }
}
