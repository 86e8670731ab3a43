use crate::http::Limits;
use crate::{SimulateConfig, SourceError};
use secrecy::SecretString;
use std::time::Duration;

/// The settings a binary's flags give to the sources, whichever is chosen.
///
/// Every field has a default ([`SourceOptions::default`]); a binary sets the ones its flags
/// carry. `Debug` shows the API key as `[REDACTED]`.
///
/// ```
/// use std::time::Duration;
/// use velib_source::SourceOptions;
///
/// let options = SourceOptions {
///     jcdecaux_api_key: std::env::var("JCDECAUX_API_KEY").ok().map(Into::into),
///     request_timeout: Duration::from_secs(10),
///     ..SourceOptions::default()
/// };
/// assert!(!format!("{options:?}").contains("apiKey="));
/// ```
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The JCDecaux developer API key (`--jcdecaux-api-key` / `JCDECAUX_API_KEY`). Required by
    /// the `jcdecaux` source only; GBFS feeds are keyless.
    pub jcdecaux_api_key: Option<SecretString>,
    /// Where the JCDecaux v1 API lives, without the `/vls/v1` path. Default
    /// `https://api.jcdecaux.com`; tests point it at a local server.
    pub jcdecaux_base_url: String,
    /// Where JCDecaux's GBFS feeds live: `gbfs:<contract>` expands to
    /// `{cyclocity_base_url}/contracts/<contract>/gbfs/gbfs.json`. Default
    /// `https://api.cyclocity.fr`.
    pub cyclocity_base_url: String,
    /// How long to wait for a TCP (and TLS) connection. Default 5 s.
    pub connect_timeout: Duration,
    /// How long one request may take in all: connecting, sending, and reading the whole body.
    /// Default 15 s.
    pub request_timeout: Duration,
    /// The largest response body accepted, in bytes, counted after gzip decoding. Default
    /// 32 MiB: JCDecaux's all-contracts list is about 1.5 MiB and the largest GBFS
    /// station_information feeds a few MiB, so this only trips on something broken.
    pub max_body_bytes: usize,
    /// The `User-Agent` sent with every request. Default `velib/<version>`.
    pub user_agent: String,
    /// The preferred language for GBFS feeds that publish several (2.x feed lists per language,
    /// 3.0 localised names), e.g. `fr`. Default: none, which means `en` if published, else the
    /// first language in alphabetical order.
    pub gbfs_language: Option<String>,
    /// The shortest time a GBFS discovery file or `station_information` is cached, whatever
    /// its `ttl` says (real feeds say 0). Default 60 s. `station_status` is read on every poll
    /// regardless.
    pub gbfs_refresh_floor: Duration,
    /// The simulated city for `simulate`; the station count of `simulate:<N>` overrides
    /// `simulate.stations`.
    pub simulate: SimulateConfig,
    /// Replay pace: 1.0 plays a recording at the pace it was recorded, 10.0 ten times faster,
    /// 0.0 (or any non-positive or non-finite value) without pausing. Default 1.0.
    pub replay_speed: f64,
    /// Whether a replay starts over at the end of its recording instead of reporting
    /// [`SourceError::Exhausted`]. Default false.
    pub replay_loop: bool,
    /// A client to share with the rest of the program. When `None`, the sources build one
    /// with [`SourceOptions::http_client`]. Either way, a source keeps one client for its
    /// lifetime, so connections are pooled across polls. `request_timeout` and
    /// `max_body_bytes` apply to a shared client too; `connect_timeout` and `user_agent` are
    /// the shared client's own.
    pub http_client: Option<reqwest::Client>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            jcdecaux_api_key: None,
            jcdecaux_base_url: "https://api.jcdecaux.com".to_owned(),
            cyclocity_base_url: "https://api.cyclocity.fr".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_body_bytes: 32 * 1024 * 1024,
            user_agent: concat!("velib/", env!("CARGO_PKG_VERSION")).to_owned(),
            gbfs_language: None,
            gbfs_refresh_floor: Duration::from_secs(60),
            simulate: SimulateConfig::default(),
            replay_speed: 1.0,
            replay_loop: false,
            http_client: None,
        }
    }
}

impl SourceOptions {
    /// The HTTP client the web sources use: [`SourceOptions::http_client`] if set, else a new
    /// one with gzip, HTTP/2 when the server offers it, the connect and total timeouts and the
    /// user agent.
    ///
    /// # Errors
    ///
    /// [`SourceError::Config`] if the TLS backend cannot be initialised.
    pub fn http_client(&self) -> Result<reqwest::Client, SourceError> {
        if let Some(client) = &self.http_client {
            return Ok(client.clone());
        }
        reqwest::Client::builder()
            .gzip(true)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(|err| {
                SourceError::Config(format!(
                    "cannot build the HTTP client: {}",
                    err.without_url()
                ))
            })
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            refresh_floor: self.gbfs_refresh_floor,
        }
    }
}

/// Parses a base URL setting, naming the setting when it is not an http(s) URL.
pub(crate) fn parse_base_url(text: &str, setting: &str) -> Result<reqwest::Url, SourceError> {
    let mut url = reqwest::Url::parse(text.trim())
        .map_err(|err| SourceError::Config(format!("{setting} {text:?} is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::Config(format!(
            "{setting} {text:?} must be an http or https URL"
        )));
    }
    // Url::join replaces the last segment unless the path ends with '/': make a base with a
    // path prefix (a proxy, a test server) keep it.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}
