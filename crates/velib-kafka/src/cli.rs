//! What every velib binary does the same way around its `run` call: logging, the metrics
//! endpoint, the shutdown signal and duration flags.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

/// The flag every long-running binary has besides Kafka's, and what each does first.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9101).
    #[arg(long, env = "VELIB_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}

impl ServiceArgs {
    /// First thing in `main`, in this order: the last word on a fatal signal
    /// ([`crate::crash`]), the SIGINT/SIGTERM/SIGHUP handlers (a signal during
    /// start-up already ends the program gracefully), logging ([`init_tracing`]), and the
    /// metrics endpoint when asked. Returns the future that resolves on shutdown.
    ///
    /// # Errors
    ///
    /// When `--metrics-addr` cannot be served, naming the flag.
    pub fn start(&self) -> Result<impl Future<Output = ()> + Send + 'static, String> {
        crate::crash::install();
        let shutdown = shutdown_signal();
        init_tracing();
        if let Some(addr) = self.metrics_addr {
            serve_metrics(addr)?;
        }
        Ok(shutdown)
    }
}

/// Logs to stderr (results go to stdout), filtered by `RUST_LOG`, `info` by default; coloured
/// only when [`colour_logs`] says so.
pub fn init_tracing() {
    init_tracing_with("info");
}

/// [`init_tracing`] with another default filter than `info`, for tools that should stay quiet
/// unless something goes wrong (`warn`, `error`).
pub fn init_tracing_with(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .init();
}

/// Whether log lines may carry ANSI colour codes: only when stderr is a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>). A file, a pipe
/// or a log collector gets plain text, so `grep` and the demo's line prefixes see what a
/// person reads.
pub fn colour_logs() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// librdkafka's version and built-in features (`ssl`, `sasl_scram`, `zstd`…), for the
/// startup log line and `--version`-style reports.
pub fn librdkafka_description() -> String {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    format!("librdkafka {version} ({})", librdkafka_features())
}

/// librdkafka's `builtin.features`, comma-separated.
pub fn librdkafka_features() -> String {
    rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_default()
}

/// Serves the process's metrics as Prometheus text on `http://{addr}/metrics`.
///
/// # Errors
///
/// When the address cannot be bound or a recorder is already installed.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on --metrics-addr {addr}: {e}"))
}

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed, an SSH connection
/// dropped): each stops the program the same graceful way, flushing and committing what it
/// holds. SIGHUP is left alone when the process started with it ignored (`nohup`), which asks
/// to keep running when the terminal goes.
///
/// The handlers are installed when this function is *called*, not when the future is first
/// polled: call it first thing in `main`, so that a signal arriving during start-up (while a
/// broker or a mail server is being reached) is caught and ends the program gracefully,
/// instead of being lost to a handler that does not exist yet or ignored because the process
/// inherited SIGINT ignored (a program started in the background by a non-interactive shell).
///
/// # Panics
///
/// When the handlers cannot be installed (the process is out of file descriptors).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup_ignored = crate::crash::hangup_ignored();
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    let mut hup = (!hangup_ignored)
        .then(|| signal(SignalKind::hangup()).expect("install the SIGHUP handler"));
    async move {
        let hangup = async {
            match hup.as_mut() {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        let signal = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hangup => "SIGHUP",
        };
        tracing::info!(signal, "shutdown requested");
    }
}

/// The longest duration any flag accepts: a year. Longer is surely a typo, and bounding it
/// keeps every deadline computed from a flag (`now + duration`) far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration flag that may be `0`: a number with a unit, `ms`, `s`, `m`, `h` or `d`
/// (`500ms`, `1s`, `1.5h`, `15m`, `1d`); a bare number is seconds. What `0` means is the flag's
/// to say (no cooldown, no age limit, no wait).
///
/// This is velib's own parser rather than `humantime`'s: it keeps the forms velib documented
/// from the start (decimals such as `1.5h`, bare seconds in environment variables), which
/// humantime refuses, and it is short enough to bound and fuzz here.
///
/// # Errors
///
/// A message naming the accepted forms, or the limit ([`MAX_DURATION`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number and a unit, e.g. 500ms, 1s, 15m, 2h or 1d"
        )
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: use ms, s, m, h or d"
            ));
        }
    };
    // `number` holds only digits and dots, so `value` is finite and not negative; a long run of
    // digits can still be far beyond what `Duration` holds.
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&seconds) {
        return Err(format!("duration {s:?} is too long: at most 365d"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a duration flag that must be more than zero (a poll interval, a timeout): as
/// [`parse_duration`], refusing `0`.
///
/// # Errors
///
/// As [`parse_duration`], and for zero (or less than a nanosecond).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let duration = parse_duration(s)?;
    if duration.is_zero() {
        return Err(format!(
            "{:?} is not allowed here: the duration must be more than 0, e.g. 500ms or 1s",
            s.trim()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration(".").is_err());
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn durations_are_bounded_and_never_panic() {
        for huge in [
            "366d",
            "99999999999999999999999",
            "18446744073709551616s",
            &"9".repeat(400),
            "1000000000000h",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge}: {err}");
        }
    }

    #[test]
    fn positive_durations_refuse_zero_without_suggesting_it() {
        assert_eq!(
            parse_positive_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        for zero in ["0", "0s", "0.0ms", "0.0000000001s"] {
            let err = parse_positive_duration(zero).unwrap_err();
            assert!(err.contains("more than 0"), "{zero}: {err}");
        }
        let err = parse_positive_duration("soon").unwrap_err();
        assert!(!err.contains(" 0"), "{err}");
    }
}
