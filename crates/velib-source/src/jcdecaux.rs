//! JCDecaux's v1 API, `GET {base}/vls/v1/stations?apiKey=…[&contract=…]`.
//!
//! JCDecaux retires v1 on 2026-12-31; its GBFS feeds (see [`GbfsSource`](crate::GbfsSource),
//! `gbfs:<contract>`) replace it and need no key.

use crate::http::{self, Hints, Limits};
use crate::options::parse_base_url;
use crate::placement::SetAside;
use crate::skips::PollSkips;
use crate::time::now_ms;
use crate::{SourceError, SourceOptions, StationSource};
use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};
use velib_model::{Snapshot, Station};

const HINTS: Hints = Hints {
    refused: "the JCDecaux API key was refused",
    refused_hint: "check --jcdecaux-api-key or JCDECAUX_API_KEY (keys are issued at \
                   https://developer.jcdecaux.com), or use gbfs:<contract>, which needs no key",
    not_found_hint: "check the contract name and --jcdecaux-base-url",
};

/// Stations from JCDecaux's v1 API, all contracts or one.
///
/// The key is held as a [`SecretString`]: it is sent in the query string (JCDecaux offers no
/// header) but never appears in [`describe`](StationSource::describe), `Debug`, errors or logs,
/// where URLs show `apiKey=REDACTED`.
///
/// A record that [`Station::from_value`] rejects is skipped and counted; a body that is not a
/// JSON array is a [`SourceError::Malformed`]. `taken_at` is the time the response arrived.
///
/// ```no_run
/// use velib_source::{JcDecauxSource, SourceOptions, StationSource};
///
/// # async fn run() -> Result<(), velib_source::SourceError> {
/// let options = SourceOptions {
///     jcdecaux_api_key: Some(std::env::var("JCDECAUX_API_KEY").unwrap_or_default().into()),
///     ..SourceOptions::default()
/// };
/// let mut lyon = JcDecauxSource::new(&options, Some("Lyon".into()))?;
/// println!("{}", lyon.describe()); // JCDecaux v1 at https://api.jcdecaux.com (contract Lyon)
/// let snapshot = lyon.fetch().await?;
/// println!("{} stations", snapshot.stations.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JcDecauxSource {
    client: Client,
    base_url: Url,
    /// The request URL without the key; the key is appended per request so the stored URL can
    /// be shown.
    stations_url: Url,
    api_key: SecretString,
    contract: Option<String>,
    limits: Limits,
    skipped: u64,
    set_aside: SetAside,
}

impl JcDecauxSource {
    /// A source for `contract` (all contracts when `None`) using the key, base URL, client and
    /// limits of `options`.
    ///
    /// # Errors
    ///
    /// [`SourceError::Config`] when there is no key or the base URL is not an http(s) URL.
    pub fn new(options: &SourceOptions, contract: Option<String>) -> Result<Self, SourceError> {
        let api_key = options
            .jcdecaux_api_key
            .clone()
            .filter(|k| !k.expose_secret().trim().is_empty())
            .ok_or_else(|| {
                SourceError::Config(
                    "the jcdecaux source needs an API key: pass --jcdecaux-api-key or set \
                     JCDECAUX_API_KEY, or use gbfs:<contract>, which needs none"
                        .to_owned(),
                )
            })?;
        let base_url = parse_base_url(&options.jcdecaux_base_url, "--jcdecaux-base-url")?;
        let mut stations_url = base_url
            .join("vls/v1/stations")
            .map_err(|err| SourceError::Config(format!("--jcdecaux-base-url: {err}")))?;
        let contract = contract
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if let Some(c) = &contract {
            stations_url.query_pairs_mut().append_pair("contract", c);
        }
        Ok(JcDecauxSource {
            client: options.http_client()?,
            base_url,
            stations_url,
            api_key,
            contract,
            limits: options.limits(),
            skipped: 0,
            set_aside: SetAside::default(),
        })
    }

    fn request_url(&self) -> Url {
        let mut url = self.stations_url.clone();
        url.query_pairs_mut()
            .append_pair("apiKey", self.api_key.expose_secret());
        url
    }
}

impl StationSource for JcDecauxSource {
    fn describe(&self) -> String {
        // The base URL never holds the key (it is added per request); the slash that
        // `parse_base_url` appends for joining is noise in a log line.
        let base = self.base_url.as_str().trim_end_matches('/');
        match &self.contract {
            Some(c) => format!("JCDecaux v1 at {base} (contract {c})"),
            None => format!("JCDecaux v1 at {base} (all contracts)"),
        }
    }

    async fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        let key = Some(&self.api_key);
        let body = http::get(&self.client, &self.request_url(), self.limits, key, HINTS).await?;
        let taken_at = now_ms();
        // Each station is read on its own (see `crate::split`): one that is not JSON is one
        // skipped record, not a lost poll.
        let split = crate::split::split(&body.bytes, &[]).map_err(|err| {
            body.malformed(format!("expected a JSON array of stations: {err}"), key)
        })?;
        if !split.document.is_array() {
            let value = &split.document;
            let what = match value {
                serde_json::Value::Object(map) => match map.get("error") {
                    Some(e) => format!("an error object ({e})"),
                    None => "a JSON object".to_owned(),
                },
                other => format!("JSON {}", json_kind(other)),
            };
            return Err(body.malformed(
                format!("expected a JSON array of stations, got {what}"),
                key,
            ));
        }
        let records = split.items;
        let describe = self.describe();
        let mut skips = PollSkips::new(&describe);
        let mut stations = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match record
                .as_ref()
                .map_err(|reason| reason.to_string())
                .and_then(|r| Station::from_value(r).map_err(|e| e.to_string()))
            {
                Ok(mut station) => {
                    station.contract_name = contract_key(&station.contract_name);
                    stations.push(station);
                }
                Err(err) => skips.skip(index, &err),
            }
        }
        self.skipped += skips.finish(stations.len());
        let stations = self.set_aside.filter(&describe, stations);
        Ok(Snapshot { taken_at, stations }.stamped())
    }

    fn skipped_records(&self) -> u64 {
        self.skipped
    }
}

/// The JSON type's name, for messages.
/// A v1 `contract_name` as velib keys it: lower-case, as the API has sent it since about 2020
/// (`"lyon"`) and as JCDecaux's GBFS contract slugs are, so a station keeps its Kafka key and
/// its printed contract whether it comes through v1 (today's spelling or the capitalised
/// `"Lyon"` of older payloads, such as the tutorial's 2017 sample) or through `gbfs:lyon`.
pub fn contract_key(contract_name: &str) -> String {
    contract_name.trim().to_lowercase()
}

pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
