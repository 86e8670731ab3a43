use std::time::Duration;

/// Why a whole poll failed.
///
/// Problems with single records never become a `SourceError`: the sources skip the record,
/// count it (see [`StationSource::skipped_records`](crate::StationSource::skipped_records)) and
/// log it. A `SourceError` means the poll produced no snapshot at all.
///
/// Every URL held by an error has its `apiKey` query value replaced by `REDACTED`, and every
/// message taken from elsewhere (a transport error, the start of a body) is scrubbed of the
/// key, so `Display` and `Debug` are safe to log.
///
/// Use [`SourceError::class`] as a metric label, [`SourceError::is_permanent`] to decide whether
/// retrying can help, and [`SourceError::retry_after`] (through [`Backoff`](crate::Backoff)) to
/// decide when.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source is misconfigured: a bad source argument, a missing API key, a URL that is
    /// not a URL. Retrying cannot help.
    #[error("invalid source configuration: {0}")]
    Config(String),

    /// The server refused our credentials (HTTP 401 or 403). Retrying cannot help.
    #[error("{what} (HTTP {status} from {url}): {hint}")]
    Refused {
        /// What was refused, e.g. "the JCDecaux API key was refused".
        what: String,
        /// The HTTP status, 401 or 403.
        status: u16,
        /// The request URL, redacted.
        url: String,
        /// Which setting to check.
        hint: String,
    },

    /// The URL does not exist on the server (HTTP 404 or 410): a wrong contract or feed URL.
    /// Retrying cannot help.
    #[error("{url} does not exist (HTTP {status}): {hint}")]
    NotFound {
        /// The HTTP status, 404 or 410.
        status: u16,
        /// The request URL, redacted.
        url: String,
        /// Which setting to check.
        hint: String,
    },

    /// The server asked us to slow down (HTTP 429).
    #[error("rate limited by {url} (HTTP 429){}", fmt_retry_after(*.retry_after))]
    RateLimited {
        /// The request URL, redacted.
        url: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// A server-side failure (HTTP 5xx, or another status we do not expect) that may go away.
    #[error("HTTP {status} from {url}{}", fmt_retry_after(*.retry_after))]
    Http {
        /// The HTTP status.
        status: u16,
        /// The request URL, redacted.
        url: String,
        /// The server's `Retry-After` (sent with 503), when it sent one.
        retry_after: Option<Duration>,
    },

    /// The request could not be sent or the response not read: DNS, connection refused or
    /// reset, TLS, a body cut short.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// The request URL, redacted.
        url: String,
        /// The transport error and its causes, scrubbed of the URL and key.
        message: String,
    },

    /// No complete response within the configured connect or total timeout.
    #[error(
        "request to {url} timed out (connect timeout {connect:?}, total timeout {total:?}; \
         see SourceOptions::connect_timeout and request_timeout)"
    )]
    Timeout {
        /// The request URL, redacted.
        url: String,
        /// The connect timeout in force.
        connect: Duration,
        /// The total (connect, send, and read the whole body) timeout in force.
        total: Duration,
    },

    /// The response body is larger than the configured cap.
    #[error(
        "response from {url} is larger than {limit} bytes (SourceOptions::max_body_bytes); \
         raise the cap if this feed is really that big"
    )]
    TooLarge {
        /// The request URL, redacted.
        url: String,
        /// The cap, in bytes.
        limit: usize,
    },

    /// The response is not the JSON the source expects.
    #[error(
        "unexpected response from {url}: {reason}; received content type {content_type:?}, \
         starting with {first_bytes:?}"
    )]
    Malformed {
        /// The request URL (redacted) or the file the data came from.
        url: String,
        /// What is wrong, e.g. "expected a JSON array of stations: expected value at line 1".
        reason: String,
        /// The `Content-Type` header, or `""` when there was none.
        content_type: String,
        /// The first bytes of the body (lossily decoded, scrubbed of the key).
        first_bytes: String,
    },

    /// A replay reached the end of its recording and was not asked to loop.
    #[error("replay of {path} is exhausted: no more snapshots (use --replay-loop to start over)")]
    Exhausted {
        /// The recording.
        path: String,
    },

    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl SourceError {
    /// A stable, low-cardinality label for metrics and logs.
    ///
    /// One of `config` (bad settings, refused credentials, unknown URL), `rate_limited`,
    /// `transient` (5xx and transport failures), `timeout`, `too_large`, `malformed`,
    /// `exhausted`, `io`.
    pub fn class(&self) -> &'static str {
        match self {
            SourceError::Config(_) | SourceError::Refused { .. } | SourceError::NotFound { .. } => {
                "config"
            }
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::Http { .. } | SourceError::Transport { .. } => "transient",
            SourceError::Timeout { .. } => "timeout",
            SourceError::TooLarge { .. } => "too_large",
            SourceError::Malformed { .. } => "malformed",
            SourceError::Exhausted { .. } => "exhausted",
            SourceError::Io { .. } => "io",
        }
    }

    /// How long the server asked us to wait (`Retry-After` on a 429 or 503), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after, .. }
            | SourceError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether retrying the same poll cannot succeed without a change of settings: a
    /// configuration error (bad argument, refused key, unknown URL) or an exhausted replay.
    ///
    /// A too-large body is not permanent: feeds grow and shrink, and the cap is a safety net.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SourceError::Config(_)
                | SourceError::Refused { .. }
                | SourceError::NotFound { .. }
                | SourceError::Exhausted { .. }
        )
    }
}
