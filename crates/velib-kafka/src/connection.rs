//! Kafka connection failures that retrying cannot fix.
//!
//! librdkafka treats every connection failure alike: it logs it and tries again, forever. For
//! a broker that is down that is right, and velib's clients ride out such outages. But a wrong
//! password, a certificate nobody trusts, or a plaintext client knocking on a TLS listener
//! fail the same way on every attempt; retrying only hides the cause under a stream of log
//! lines. [`classify`] picks those out of librdkafka's error callback, and every velib client
//! (producer, monitor, alerts, `create-topics`) stops on the first one with a single
//! [`ConnectionError`] that names the cause and the setting to check.
//!
//! The classification reads librdkafka's error code and the text it attaches; both come from
//! librdkafka itself (its handshake and SASL code), not from the broker's free text.
//!
//! An outage, on the other hand, is reported as a change of state, once for the whole process
//! ([`cluster_down`], [`cluster_reachable`]): librdkafka reports a cluster that went away once
//! per reconnection attempt and per client (a monitor has a consumer and a producer), which
//! would bury the one useful line under dozens a second.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// A connection failure that will not go away by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The broker refused the SASL credentials or mechanism.
    #[error(
        "Kafka authentication failed: {detail} (check sasl.mechanism, sasl.username and \
         sasl.password)"
    )]
    Authentication {
        /// librdkafka's description.
        detail: String,
    },
    /// The broker's certificate does not chain to a trusted CA, or does not name the host.
    #[error(
        "the Kafka broker's TLS certificate is not trusted: {detail} (set ssl.ca.location to \
         the PEM file of the CA that signed it; for a public CA the system's CA bundle is found \
         automatically)"
    )]
    UntrustedCertificate {
        /// librdkafka's description.
        detail: String,
    },
    /// The TLS handshake failed for another reason (for example a TLS client on a plaintext
    /// listener, or a broker asking for a client certificate).
    #[error(
        "the TLS handshake with the Kafka broker failed: {detail} (check that the listener \
         speaks TLS and security.protocol matches it: SSL or SASL_SSL for TLS, PLAINTEXT or \
         SASL_PLAINTEXT otherwise)"
    )]
    Tls {
        /// librdkafka's description.
        detail: String,
    },
    /// The broker hung up before answering the first request: a plaintext client on a TLS (or
    /// otherwise incompatible) listener.
    #[error(
        "the Kafka broker closed the connection before answering: {detail} (a plaintext client \
         on a TLS listener? set security.protocol to SSL or SASL_SSL to match the listener)"
    )]
    ProtocolMismatch {
        /// librdkafka's description.
        detail: String,
    },
    /// The broker hung up right after the connection was set up, before any request of the
    /// client's was answered: a client without SASL on a listener that requires it.
    #[error(
        "the Kafka broker closed the connection right after accepting it: {detail} (the \
         listener probably requires SASL: set security.protocol to SASL_SSL or SASL_PLAINTEXT \
         with sasl.mechanism, sasl.username and sasl.password)"
    )]
    SaslRequired {
        /// librdkafka's description.
        detail: String,
    },
}

/// How many times an ambiguous failure must be seen before it is judged a misconfiguration
/// rather than bad luck (a broker restarting at that very moment).
const SIGHTINGS_BEFORE_VERDICT: u32 = 2;

/// Picks out of librdkafka's connection-failure log lines (facility `FAIL`) the failures that
/// betray a misconfiguration, with whether one sighting is enough for a verdict.
///
/// Some of them librdkafka never reports as errors, only logs: a plaintext client hung up on
/// while asking for the API versions (a TLS listener), or a client without SASL hung up on
/// right after connecting (a SASL listener); those need two sightings, since a broker
/// restarting at that very moment looks the same once. The others (refused credentials, an
/// untrusted certificate) also reach the error callback, but only of clients that poll for
/// events, which an admin client does not; one sighting of those is enough.
pub fn classify_log(message: &str) -> Option<(ConnectionError, bool)> {
    let text = |from: usize| message[from..].trim().to_owned();
    if let Some(at) = message.find("SASL authentication error") {
        return Some((ConnectionError::Authentication { detail: text(at) }, true));
    }
    if let Some(at) = message.find("SSL handshake failed") {
        let detail = text(at);
        if detail.contains("certificate verify failed")
            || detail.contains("certificate could not be verified")
        {
            return Some((ConnectionError::UntrustedCertificate { detail }, true));
        }
        return Some((ConnectionError::Tls { detail }, false));
    }
    if let Some(at) = message.find("Connection setup timed out in state SSL_HANDSHAKE") {
        // A listener that stays silent when greeted with TLS: a plaintext listener that waits
        // for the rest of what it takes for a request.
        return Some((ConnectionError::Tls { detail: text(at) }, false));
    }
    let at = message.find(": Disconnected")?;
    let broker = message[..at].rsplit(' ').next().unwrap_or_default();
    let tls = broker.starts_with("ssl://") || broker.starts_with("sasl_ssl://");
    let sasl = broker.starts_with("sasl_");
    let after = message.rfind("(after ")?;
    let rest = &message[after + "(after ".len()..];
    let (ms, rest) = rest.split_once("ms in state ")?;
    let ms: u64 = ms.parse().ok()?;
    let state = rest.split([',', ')']).next().unwrap_or_default();
    let detail = text(at + 2);
    match state {
        "APIVERSION_QUERY" if !tls => Some((ConnectionError::ProtocolMismatch { detail }, false)),
        "UP" if !sasl && ms < 2000 => Some((ConnectionError::SaslRequired { detail }, false)),
        _ => None,
    }
}

/// Picks out of librdkafka's error callback the failures that retrying cannot fix.
pub fn classify(error: &KafkaError, reason: &str) -> Option<ConnectionError> {
    let detail = || reason.trim().to_owned();
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication => {
            Some(ConnectionError::Authentication { detail: detail() })
        }
        RDKafkaErrorCode::SSL => {
            if reason.contains("certificate verify failed")
                || reason.contains("certificate could not be verified")
            {
                Some(ConnectionError::UntrustedCertificate { detail: detail() })
            } else {
                Some(ConnectionError::Tls { detail: detail() })
            }
        }
        RDKafkaErrorCode::BrokerTransportFailure => {
            if reason.contains("incorrect security.protocol") {
                Some(ConnectionError::ProtocolMismatch { detail: detail() })
            } else if reason.contains("SSL handshake failed")
                && reason.contains("PLAINTEXT broker listener")
            {
                Some(ConnectionError::Tls { detail: detail() })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The first [`ConnectionError`] a client met, shared between its rdkafka context (which
/// records it) and the loop that uses the client (which stops on it).
#[derive(Debug, Clone, Default)]
pub struct ConnectionGuard(Arc<GuardInner>);

#[derive(Debug, Default)]
struct GuardInner {
    failure: OnceLock<ConnectionError>,
    notify: Notify,
    protocol_mismatches: AtomicU32,
    sasl_required: AtomicU32,
    tls_failures: AtomicU32,
    /// The client has been answered for real (records, an assignment): see
    /// [`ConnectionGuard::confirm_working`].
    working: AtomicBool,
}

impl ConnectionGuard {
    /// A guard with nothing recorded.
    pub fn new() -> ConnectionGuard {
        ConnectionGuard::default()
    }

    /// Feeds one librdkafka error to the guard. Returns `true` when it is an unfixable one
    /// (the first of which is recorded and logged once as an error): the caller need not
    /// report it again.
    pub fn observe(&self, error: &KafkaError, reason: &str) -> bool {
        let Some(failure) = classify(error, reason) else {
            return false;
        };
        self.record(failure);
        true
    }

    /// Records that the client's connection works: a record or an assignment came back, which
    /// a listener that wants TLS or SASL never gives a client without them. From then on, a
    /// disconnection is an outage (a broker stopping, a network cut), however soon it comes,
    /// and the verdicts that rest on two quick disconnections are no longer drawn. Cheap
    /// enough to call per record.
    pub fn confirm_working(&self) {
        if !self.0.working.load(Ordering::Relaxed) {
            self.0.working.store(true, Ordering::Release);
        }
    }

    /// Feeds one librdkafka log line to the guard; see [`classify_log`]. Returns `true` when
    /// it completed the first unfixable failure, which is then logged once as an error.
    pub fn observe_log(&self, fac: &str, message: &str) -> bool {
        if fac != "FAIL" || self.failure().is_some() {
            return false;
        }
        let Some((failure, certain)) = classify_log(message) else {
            return false;
        };
        if !certain && self.0.working.load(Ordering::Acquire) {
            return false;
        }
        if !certain {
            let seen = match failure {
                ConnectionError::SaslRequired { .. } => &self.0.sasl_required,
                ConnectionError::ProtocolMismatch { .. } => &self.0.protocol_mismatches,
                _ => &self.0.tls_failures,
            };
            if seen.fetch_add(1, Ordering::AcqRel) + 1 < SIGHTINGS_BEFORE_VERDICT {
                return false;
            }
        }
        self.record(failure)
    }

    fn record(&self, failure: ConnectionError) -> bool {
        let first = self.0.failure.set(failure.clone()).is_ok();
        if first {
            // A process's clients share their settings, so they fail alike (a monitor's
            // consumer and producer): one error line per kind of failure is enough.
            static LOGGED: Mutex<Vec<std::mem::Discriminant<ConnectionError>>> =
                Mutex::new(Vec::new());
            let kind = std::mem::discriminant(&failure);
            let mut logged = LOGGED.lock().unwrap();
            if logged.contains(&kind) {
                tracing::debug!("{failure}");
            } else {
                logged.push(kind);
                tracing::error!("{failure}");
            }
            drop(logged);
            self.0.notify.notify_waiters();
        }
        first
    }

    /// The recorded failure, if any.
    pub fn failure(&self) -> Option<&ConnectionError> {
        self.0.failure.get()
    }

    /// Resolves once a failure is recorded (for use in `select!`; cheap to create).
    pub async fn failed(&self) -> ConnectionError {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a failure recorded in between still wakes us.
            notified.as_mut().enable();
            if let Some(f) = self.failure() {
                return f.clone();
            }
            notified.await;
        }
    }
}

/// Whether every client of this process found the cluster unreachable (and said so).
static CLUSTER_DOWN: AtomicBool = AtomicBool::new(false);
/// The last connection failure librdkafka reported, named when the cluster is reported down.
static LAST_TRANSPORT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Whether `error` is about reaching brokers (a refused or reset connection, a name that does
/// not resolve, every broker down): librdkafka retries those by itself.
pub fn is_transport_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// Records one failed connection to a broker (librdkafka's `reason`), logged at debug level
/// only: librdkafka retries it, and if no broker is left, [`cluster_down`] names it.
pub fn transport_failure(reason: &str) {
    tracing::debug!(%reason, "Kafka connection failed; librdkafka retries");
    *LAST_TRANSPORT_FAILURE.lock().unwrap() = Some(reason.to_owned());
}

/// Reports that no broker can be reached (librdkafka's `AllBrokersDown`): one warning for the
/// whole process, naming the last connection failure, until [`cluster_reachable`] reports it
/// back.
pub fn cluster_down() {
    if CLUSTER_DOWN.swap(true, Ordering::AcqRel) {
        return;
    }
    let cause = LAST_TRANSPORT_FAILURE.lock().unwrap().clone();
    tracing::warn!(
        cause = cause
            .as_deref()
            .unwrap_or("all broker connections are down"),
        "no Kafka broker is reachable (check --bootstrap-servers, and that the cluster is up); \
         retrying: consumers resume where they stopped, and queued records are delivered when a \
         broker is back, within message.timeout.ms"
    );
}

/// Reports that a broker answered: one line, if the cluster had been reported down. Cheap
/// enough to call on every delivery or received record.
pub fn cluster_reachable() {
    if CLUSTER_DOWN.load(Ordering::Relaxed) && CLUSTER_DOWN.swap(false, Ordering::AcqRel) {
        tracing::info!("a Kafka broker is reachable again");
    }
}

/// Reports the cluster reachable when librdkafka's statistics show a broker up (for a client
/// that may receive nothing for a while, such as a consumer of a quiet topic).
pub fn observe_statistics(statistics: &Statistics) {
    if statistics
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP")
    {
        cluster_reachable();
    }
}

/// An rdkafka client context for clients with no callbacks of their own (the alerts consumer,
/// `create-topics`' admin client): librdkafka's log lines go to tracing, an unfixable
/// connection failure goes to its [`ConnectionGuard`], an outage to [`cluster_down`] (and,
/// through its statistics when `statistics.interval.ms` is set, [`cluster_reachable`]), and
/// other client errors are logged as one warning per distinct reason.
#[derive(Debug)]
pub struct ReportingContext {
    guard: ConnectionGuard,
    last_error: Mutex<Option<String>>,
}

impl ReportingContext {
    /// A context reporting to `guard`.
    pub fn new(guard: ConnectionGuard) -> ReportingContext {
        ReportingContext {
            guard,
            last_error: Mutex::new(None),
        }
    }

    /// Its guard.
    pub fn guard(&self) -> &ConnectionGuard {
        &self.guard
    }
}

impl ClientContext for ReportingContext {
    fn stats(&self, statistics: Statistics) {
        observe_statistics(&statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.guard.observe_log(fac, log_message);
        forward_librdkafka_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.guard.observe(&error, reason) {
            return;
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            cluster_down();
            return;
        }
        if is_transport_failure(&error) {
            transport_failure(reason);
            return;
        }
        let mut last = self.last_error.lock().unwrap();
        if last.as_deref() != Some(reason) {
            tracing::warn!(%error, %reason, "Kafka client error (check --bootstrap-servers)");
            *last = Some(reason.to_owned());
        }
    }
}

impl ConsumerContext for ReportingContext {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(_) = rebalance {
            self.guard.confirm_working();
            cluster_reachable();
        }
    }
}

/// Forwards a librdkafka log line to tracing (target `librdkafka`) at debug level, or error
/// for its critical levels. Connection problems reach velib's clients through their `error`
/// callbacks, which report each state change once; librdkafka's own lines, one per attempt,
/// stay available with `RUST_LOG=librdkafka=debug`.
pub fn forward_librdkafka_log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(target: "librdkafka", fac, "{log_message}")
        }
        _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    // The reasons below are the texts librdkafka 2.12 produces (rdkafka_ssl.c,
    // rdkafka_broker.c, rdkafka_sasl_scram.c).
    #[test]
    fn unfixable_failures_are_recognised() {
        let cases = [
            (
                RDKafkaErrorCode::Authentication,
                "sasl_ssl://b:9093/1: SASL authentication error: Authentication failed during \
                 authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
                "authentication failed",
            ),
            (
                RDKafkaErrorCode::SSL,
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
                 routines::certificate verify failed: broker certificate could not be verified, \
                 verify that ssl.ca.location is correctly configured",
                "not trusted",
            ),
            (
                RDKafkaErrorCode::SSL,
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A00010B:SSL \
                 routines::wrong version number",
                "TLS handshake",
            ),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "127.0.0.1:9093/bootstrap: Disconnected while requesting ApiVersion: might be \
                 caused by incorrect security.protocol configuration (connecting to a SSL \
                 listener?) or broker version is < 0.10 (see api.version.request)",
                "plaintext client on a TLS listener",
            ),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: connecting \
                 to a PLAINTEXT broker listener?",
                "TLS handshake",
            ),
        ];
        for (code, reason, says) in cases {
            let failure = classify(&err(code), reason).unwrap_or_else(|| panic!("{reason}"));
            assert!(failure.to_string().contains(says), "{failure}");
        }
    }

    #[test]
    fn outages_are_left_to_librdkafka() {
        let cases = [
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection \
                 refused (after 0ms in state CONNECT)",
            ),
            (RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
            (
                RDKafkaErrorCode::Resolve,
                "kafka.invalid:9092/bootstrap: Failed to resolve 'kafka.invalid:9092'",
            ),
        ];
        for (code, reason) in cases {
            assert_eq!(classify(&err(code), reason), None, "{reason}");
        }
    }

    #[test]
    fn guard_keeps_the_first_failure() {
        let guard = ConnectionGuard::new();
        assert!(!guard.observe(&err(RDKafkaErrorCode::AllBrokersDown), "down"));
        assert!(guard.failure().is_none());
        assert!(guard.observe(&err(RDKafkaErrorCode::Authentication), "first"));
        assert!(guard.observe(&err(RDKafkaErrorCode::Authentication), "second"));
        assert!(
            guard
                .clone()
                .failure()
                .unwrap()
                .to_string()
                .contains("first")
        );
    }

    // Log lines as librdkafka 2.12 writes them (rdkafka_broker.c, rd_kafka_broker_fail).
    const PLAIN_ON_TLS: &str = "[thrd:127.0.0.1:36533/bootstrap]: 127.0.0.1:36533/bootstrap: \
        Disconnected: connection closed by peer: receive 0 after POLLIN (after 0ms in state \
        APIVERSION_QUERY)";
    const NO_SASL: &str = "[thrd:127.0.0.1:35725/bootstrap]: 127.0.0.1:35725/bootstrap: \
        Disconnected: connection reset by peer (after 0ms in state UP, 1 identical error(s) \
        suppressed)";

    #[test]
    fn telling_log_lines_are_recognised() {
        let kind = classify_log;
        assert!(matches!(
            kind(PLAIN_ON_TLS),
            Some((ConnectionError::ProtocolMismatch { .. }, false))
        ));
        assert!(matches!(
            kind(NO_SASL),
            Some((ConnectionError::SaslRequired { .. }, false))
        ));
        assert!(matches!(
            kind(
                "[thrd:sasl_plaintext://127.0.0.1:41847/bootstrap]: \
                 sasl_plaintext://127.0.0.1:41847/bootstrap: SASL authentication error: SASL \
                 SCRAM authentication failed: broker responded with unknown-user (after 23ms in \
                 state AUTH_REQ)"
            ),
            Some((ConnectionError::Authentication { .. }, true))
        ));
        assert!(matches!(
            kind(
                "[thrd:ssl://127.0.0.1:42621/bootstrap]: ssl://127.0.0.1:42621/bootstrap: SSL \
                 handshake failed: error:0A000086:SSL routines::certificate verify failed: \
                 broker certificate could not be verified (after 2ms in state SSL_HANDSHAKE)"
            ),
            Some((ConnectionError::UntrustedCertificate { .. }, true))
        ));
        assert!(matches!(
            kind(
                "[thrd:ssl://b:9092/bootstrap]: ssl://b:9092/bootstrap: SSL handshake failed: \
                 Disconnected: connecting to a PLAINTEXT broker listener? (after 1ms in state \
                 SSL_HANDSHAKE)"
            ),
            Some((ConnectionError::Tls { .. }, false))
        ));
        assert!(matches!(
            kind(
                "[thrd:ssl://127.0.0.1:19193/bootstrap]: ssl://127.0.0.1:19193/bootstrap: \
                 Connection setup timed out in state SSL_HANDSHAKE (after 30035ms in state \
                 SSL_HANDSHAKE)"
            ),
            Some((ConnectionError::Tls { .. }, false))
        ));
        let ordinary = [
            // A broker going away after a while.
            "[thrd:b:9092/1]: b:9092/1: Disconnected: connection reset by peer (after 35012ms in \
             state UP)",
            // A TLS client asking for API versions is not a plaintext client.
            "[thrd:ssl://b:9093/bootstrap]: ssl://b:9093/bootstrap: Disconnected: SSL connection \
             closed by peer (after 3ms in state APIVERSION_QUERY)",
            // A SASL client is not "without SASL".
            "[thrd:sasl_ssl://b:9093/1]: sasl_ssl://b:9093/1: Disconnected (after 12ms in state \
             UP)",
            "[thrd:b:9092/bootstrap]: b:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
             Connection refused (after 0ms in state CONNECT)",
        ];
        for line in ordinary {
            assert_eq!(classify_log(line), None, "{line}");
        }
    }

    #[test]
    fn one_telling_disconnect_is_not_yet_a_verdict() {
        let guard = ConnectionGuard::new();
        assert!(!guard.observe_log("FAIL", PLAIN_ON_TLS));
        assert!(!guard.observe_log("CONNECT", PLAIN_ON_TLS));
        assert!(guard.failure().is_none());
        assert!(guard.observe_log("FAIL", PLAIN_ON_TLS));
        assert!(matches!(
            guard.failure(),
            Some(ConnectionError::ProtocolMismatch { .. })
        ));
    }

    #[test]
    fn quick_disconnections_of_a_working_client_are_an_outage() {
        let guard = ConnectionGuard::new();
        guard.confirm_working();
        assert!(!guard.observe_log("FAIL", NO_SASL));
        assert!(!guard.observe_log("FAIL", NO_SASL));
        assert!(!guard.observe_log("FAIL", PLAIN_ON_TLS));
        assert!(!guard.observe_log("FAIL", PLAIN_ON_TLS));
        assert!(guard.failure().is_none());
    }

    #[tokio::test]
    async fn waiters_wake_on_the_failure() {
        let guard = ConnectionGuard::new();
        let waiter = tokio::spawn({
            let guard = guard.clone();
            async move { guard.failed().await }
        });
        tokio::task::yield_now().await;
        guard.observe(&err(RDKafkaErrorCode::SSL), "certificate verify failed");
        let failure = waiter.await.unwrap();
        assert!(matches!(
            failure,
            ConnectionError::UntrustedCertificate { .. }
        ));
    }
}
