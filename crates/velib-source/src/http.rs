//! The one HTTP GET every web source makes: status policy, size cap while streaming, timeouts,
//! and redaction of the URL and key in everything that can end up in a log.

use crate::SourceError;
use crate::time::parse_retry_after;
use reqwest::{Client, StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, SystemTime};

/// Query parameters whose values are credentials, compared case-insensitively.
const SECRET_PARAMS: &[&str] = &["apikey", "api_key", "key", "token", "access_token"];

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &str = "REDACTED";

/// How many bytes of an unexpected body an error quotes.
const QUOTED_BYTES: usize = 120;

/// The URL as it may be logged: credentials in the query and the userinfo replaced.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut clean = url.clone();
    if url
        .query_pairs()
        .any(|(k, _)| SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                (
                    k.into_owned(),
                    if secret {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        clean.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if clean.password().is_some() {
        // Cannot fail for a URL that already has a password, hence a host.
        let _ = clean.set_password(Some(REDACTED));
    }
    clean.to_string()
}

/// Replaces every occurrence of the secret in `text`. Belt and braces: errors are built from
/// redacted URLs already, but a server may echo the key in its body, and a transport error's
/// cause chain is not ours to audit.
pub(crate) fn scrub(text: &str, secret: Option<&SecretString>) -> String {
    match secret.map(ExposeSecret::expose_secret) {
        Some(key) if !key.is_empty() => {
            // The key may appear percent-encoded, exactly as our request URLs encode it, in
            // anything that quotes the URL.
            let mut probe = Url::parse("http://x/").expect("a constant URL parses");
            probe.query_pairs_mut().append_pair("k", key);
            let encoded = probe
                .query()
                .unwrap_or("k=")
                .trim_start_matches("k=")
                .to_owned();
            let text = text.replace(key, REDACTED);
            if encoded.is_empty() {
                text
            } else {
                text.replace(&encoded, REDACTED)
            }
        }
        _ => text.to_owned(),
    }
}

/// How to word a refusal or an unknown URL for this source, so the error names the setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hints {
    /// "the JCDecaux API key was refused", "the GBFS feed refused access".
    pub refused: &'static str,
    /// What to check on 401/403.
    pub refused_hint: &'static str,
    /// What to check on 404/410.
    pub not_found_hint: &'static str,
}

/// Limits and identity of requests, from [`SourceOptions`](crate::SourceOptions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// [`SourceOptions::gbfs_refresh_floor`](crate::SourceOptions::gbfs_refresh_floor).
    pub refresh_floor: Duration,
}

/// A successful response, read whole.
#[derive(Debug)]
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// The response's `ETag`, for the next request's `If-None-Match`.
    pub etag: Option<String>,
    /// The request URL, redacted.
    pub url: String,
}

impl Body {
    /// Parses the body as JSON, or says what was received instead.
    pub(crate) fn json(
        &self,
        expected: &str,
        secret: Option<&SecretString>,
    ) -> Result<serde_json::Value, SourceError> {
        serde_json::from_slice(&self.bytes)
            .map_err(|err| self.malformed(format!("expected {expected}: {err}"), secret))
    }

    /// An error about this body's content.
    pub(crate) fn malformed(&self, reason: String, secret: Option<&SecretString>) -> SourceError {
        let end = self.bytes.len().min(QUOTED_BYTES);
        SourceError::Malformed {
            url: self.url.clone(),
            reason: scrub(&reason, secret),
            content_type: self.content_type.clone(),
            first_bytes: scrub(&String::from_utf8_lossy(&self.bytes[..end]), secret),
        }
    }
}

/// GETs `url` and reads the body, applying the status policy:
///
/// - 2xx: the body, read chunk by chunk and abandoned as soon as it exceeds the cap (so a huge
///   or endless body costs at most `max_body_bytes` of memory; the cap applies after gzip
///   decoding, which also defuses compression bombs);
/// - 401, 403: [`SourceError::Refused`]; 404, 410: [`SourceError::NotFound`];
/// - 429: [`SourceError::RateLimited`] with `Retry-After`;
/// - anything else (5xx above all): [`SourceError::Http`], transient, with `Retry-After` if
///   sent (503 usually does).
pub(crate) async fn get(
    client: &Client,
    url: &Url,
    limits: Limits,
    secret: Option<&SecretString>,
    hints: Hints,
) -> Result<Body, SourceError> {
    match get_if_changed(client, url, limits, secret, hints, None).await? {
        Some(body) => Ok(body),
        // Only a conditional request can be answered 304; a server that does anyway has sent
        // no body to read.
        None => Err(SourceError::Http {
            url: redact_url(url),
            status: 304,
            retry_after: None,
        }),
    }
}

/// [`get`] with `If-None-Match: etag` when an ETag is given: `None` when the server answers
/// 304 Not Modified (the resource is what it was when it sent that ETag).
pub(crate) async fn get_if_changed(
    client: &Client,
    url: &Url,
    limits: Limits,
    secret: Option<&SecretString>,
    hints: Hints,
    etag: Option<&str>,
) -> Result<Option<Body>, SourceError> {
    let shown = redact_url(url);
    let transport = |err: reqwest::Error| transport_error(err, &shown, limits, secret);
    let mut request = client.get(url.clone()).timeout(limits.request_timeout);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let mut resp = request.send().await.map_err(transport)?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(None);
    }
    let etag = resp
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        return Err(status_error(status, resp.headers(), shown.clone(), hints));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let too_large = || SourceError::TooLarge {
        url: shown.clone(),
        limit: limits.max_body_bytes,
    };
    // A declared length over the cap fails before reading anything. (With gzip the length is
    // unknown here and the streaming check below does the work.)
    if resp
        .content_length()
        .is_some_and(|len| len > limits.max_body_bytes as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(
        resp.content_length()
            .map_or(64 * 1024, |len| len as usize)
            .min(limits.max_body_bytes),
    );
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if bytes.len() + chunk.len() > limits.max_body_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(Body {
        bytes,
        content_type,
        etag,
        url: shown,
    }))
}

fn status_error(
    status: StatusCode,
    headers: &header::HeaderMap,
    url: String,
    hints: Hints,
) -> SourceError {
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    match status.as_u16() {
        code @ (401 | 403) => SourceError::Refused {
            what: hints.refused.to_owned(),
            status: code,
            url,
            hint: hints.refused_hint.to_owned(),
        },
        code @ (404 | 410) => SourceError::NotFound {
            status: code,
            url,
            hint: hints.not_found_hint.to_owned(),
        },
        429 => SourceError::RateLimited { url, retry_after },
        code => SourceError::Http {
            status: code,
            url,
            retry_after,
        },
    }
}

fn transport_error(
    err: reqwest::Error,
    url: &str,
    limits: Limits,
    secret: Option<&SecretString>,
) -> SourceError {
    if err.is_timeout() {
        return SourceError::Timeout {
            url: url.to_owned(),
            connect: limits.connect_timeout,
            total: limits.request_timeout,
        };
    }
    // reqwest's Display and Debug include the full URL, query string and key included: drop
    // it, then walk the causes (hyper's "connection refused" is two levels down) and scrub.
    let err = err.without_url();
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    SourceError::Transport {
        url: url.to_owned(),
        message: scrub(&message, secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_in_query_and_userinfo() {
        let url = Url::parse(
            "https://user:pw@api.example.org/vls/v1/stations?contract=Lyon&apiKey=s3cr%2Bt&TOKEN=t",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("=t"), "{shown}");
        assert!(shown.contains("contract=Lyon"), "{shown}");
        assert!(shown.contains("apiKey=REDACTED"), "{shown}");
        let plain = Url::parse("https://example.org/gbfs.json").unwrap();
        assert_eq!(redact_url(&plain), "https://example.org/gbfs.json");
    }

    #[test]
    fn scrub_removes_raw_and_encoded_key() {
        let key = SecretString::from("a+b/c");
        let text = "echo a+b/c and a%2Bb%2Fc";
        assert_eq!(scrub(text, Some(&key)), "echo REDACTED and REDACTED");
        assert_eq!(scrub(text, None), text);
    }
}
