//! One entry point for a monitor with either delivery guarantee: [`run`].
//!
//! The guarantee is a value passed down this one path, not a second program: the binary, the
//! demo and the benchmarks all call [`run`]. The at-least-once engine is asynchronous; the
//! exactly-once engine makes blocking Kafka calls (the transaction protocol) and runs on a
//! thread of its own, stopped through a flag when `shutdown` resolves.

use crate::exactly_once::{ExactlyOnceConfig, run_exactly_once};
use crate::process::{MonitorConfig, MonitorError, MonitorReport};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use velib_kafka::KafkaArgs;

/// How a monitor makes its output and its progress durable.
#[derive(Debug, Clone)]
pub enum Guarantee {
    /// Kafka transactions: every change printed once across the group, none missed (see
    /// [`crate::exactly_once`]).
    ExactlyOnce(ExactlyOnceConfig),
    /// No transactions, for brokers without them (see [`crate::at_least_once`]); with
    /// `lag_metrics`, the consumer's statistics also feed the `velib_monitor_consumer_lag`
    /// gauges.
    AtLeastOnce {
        /// Whether to export the consumer lag per partition.
        lag_metrics: bool,
    },
}

/// How long a stop may take beyond the flush timeout before the exactly-once engine is left
/// behind: a Kafka call stuck on a broker that does not answer must not keep the process alive
/// for ever.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Runs one monitor of consumer group `group` until `shutdown` resolves, printing change lines
/// to `out` (a buffered writer: it is flushed after each burst, and for exactly once after
/// each commit).
///
/// # Errors
///
/// Whatever stops the engine ([`MonitorError`]); [`MonitorError::Stuck`] when the exactly-once
/// engine did not stop within `config.flush_timeout` plus ten seconds of the signal (its open
/// transaction, if any, is Kafka's to abort: the caller should exit).
pub async fn run(
    kafka: &KafkaArgs,
    group: &str,
    config: &MonitorConfig,
    guarantee: Guarantee,
    mut out: Box<dyn Write + Send>,
    shutdown: impl Future<Output = ()>,
) -> Result<MonitorReport, MonitorError> {
    match guarantee {
        Guarantee::AtLeastOnce { .. } if config.stats.is_some() => {
            Err(MonitorError::Settings(STATS_NEED_TRANSACTIONS.to_owned()))
        }
        Guarantee::AtLeastOnce { lag_metrics } => {
            let parts = crate::connect(kafka, group, config, lag_metrics).map_err(|source| {
                MonitorError::Kafka {
                    what: "set up the Kafka clients (--kafka-config / --bootstrap-servers / -X)",
                    source: velib_kafka::config::redact_config_error(source),
                }
            })?;
            let (stream, report) = crate::at_least_once::run(
                parts.stream,
                &parts.sink,
                parts.ledger,
                config,
                &mut out,
                shutdown,
            )
            .await?;
            stream.close();
            if report.undelivered_at_exit {
                return Err(MonitorError::Sink(
                    "some events were not delivered; their records were not committed and will \
                     be read again"
                        .to_owned(),
                ));
            }
            Ok(report)
        }
        Guarantee::ExactlyOnce(eos) => exactly_once(kafka, group, config, eos, out, shutdown).await,
    }
}

/// Why `--stats` is refused at least once: a window lives in the state changelog, which only
/// transactions keep in step with the offsets. At least once, a restarted monitor would open
/// its windows afresh in the middle of an hour and publish a second, partial record of it (or,
/// keyed the same, replace the whole one with it on a compacted topic): wrong figures, not
/// mere duplicates.
pub(crate) const STATS_NEED_TRANSACTIONS: &str = "--stats needs --guarantee exactly-once: the     open windows are kept in the state changelog, in the transactions that commit the offsets;     at least once, a restart would publish partial windows over whole ones";

/// The exactly-once engine on a thread of its own, until `shutdown`.
async fn exactly_once(
    kafka: &KafkaArgs,
    group: &str,
    config: &MonitorConfig,
    eos: ExactlyOnceConfig,
    out: Box<dyn Write + Send>,
    shutdown: impl Future<Output = ()>,
) -> Result<MonitorReport, MonitorError> {
    let stop_within = config.flush_timeout + STOP_MARGIN;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (kafka, group, config, stop) = (
            kafka.clone(),
            group.to_owned(),
            config.clone(),
            Arc::clone(&stop),
        );
        tokio::task::spawn_blocking(move || {
            run_exactly_once(&kafka, &group, &config, &eos, out, &stop)
        })
    };
    tokio::pin!(worker);
    let done = tokio::select! {
        done = &mut worker => done,
        () = shutdown => {
            stop.store(true, Ordering::Relaxed);
            // Stopping commits what is open and leaves the group. Leaving without it is safe:
            // an open transaction is aborted by its coordinator (or fenced when this instance
            // starts again), so nothing it holds is printed or lost.
            match tokio::time::timeout(stop_within, &mut worker).await {
                Ok(done) => done,
                Err(_) => return Err(MonitorError::Stuck { waited: stop_within }),
            }
        }
    };
    done.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}
