//! Service set-up: what every long-running velib binary does the same way around its `run`
//! call, first thing in `main`: the last word on a crash, logging, the metrics endpoint and the
//! shutdown signal. The duration flags they share are parsed by [`crate::duration`].

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;

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
