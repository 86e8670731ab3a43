//! Kafka client properties files: the `key=value` format Kafka's own tools read with
//! `--command-config` (Java's `java.util.Properties` text format), plus `${env:NAME}` values.
//!
//! One file can then serve velib's binaries, `cargo xtask create-topics` and Kafka's tools.
//! Java client settings that librdkafka spells differently are translated (see
//! [`PropertiesFile::librdkafka_entries`]); the others pass through and librdkafka judges them.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a properties file or value cannot be used. Never holds a property's value, only its key,
/// since values may be secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    /// The file cannot be read.
    #[error("cannot read the Kafka properties file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line (1-based) where the entry starts.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value refers to an environment variable that is not set (or not UTF-8).
    #[error("`{key}` refers to the environment variable {var}, which is not set (or not UTF-8)")]
    MissingEnv {
        /// The property.
        key: String,
        /// The variable.
        var: String,
    },
    /// A `${…}` reference that velib cannot resolve.
    #[error(
        "`{key}` has an unterminated or unsupported `${{…}}` reference (velib resolves \
         `${{env:NAME}}` only)"
    )]
    BadReference {
        /// The property.
        key: String,
    },
    /// A Java client setting with no librdkafka equivalent.
    #[error("`{key}`: {reason}")]
    Unsupported {
        /// The property.
        key: String,
        /// What to use instead.
        reason: String,
    },
}

/// A parsed properties file. `Debug` shows the keys, and values only where they hold no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PropertiesFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its entries in file order, as written (references not resolved).
    pub entries: Vec<(String, String)>,
}

impl fmt::Debug for PropertiesFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropertiesFile")
            .field("path", &self.path)
            .field("entries", &redacted(&self.entries))
            .finish()
    }
}

/// `entries` with the values of secret-bearing keys replaced by `<redacted>`.
pub fn redacted(entries: &[(String, String)]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|(k, v)| {
            let v = if is_secret(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect()
}

/// Whether a property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `sasl.jaas.config`, a PEM private key…).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "ssl.key.pem",
        "private",
        "credential",
    ]
    .iter()
    .any(|w| key.contains(w))
}

impl PropertiesFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// [`PropertiesError::Read`] or [`PropertiesError::Syntax`].
    pub fn load(path: &Path) -> Result<PropertiesFile, PropertiesError> {
        let text = std::fs::read_to_string(path).map_err(|e| PropertiesError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let entries = parse(&text).map_err(|(line, reason)| PropertiesError::Syntax {
            path: path.to_owned(),
            line,
            reason,
        })?;
        Ok(PropertiesFile {
            path: path.to_owned(),
            entries,
        })
    }

    /// The entries as librdkafka properties, in file order: `${env:NAME}` references resolved,
    /// Java client settings translated (`sasl.jaas.config` with the PLAIN or SCRAM login module
    /// becomes `sasl.username`/`sasl.password`; a PEM `ssl.truststore.location` becomes
    /// `ssl.ca.location`), and Java-only settings with no effect on librdkafka dropped
    /// (`config.providers*`, `client.dns.lookup`, `ssl.truststore.type=PEM`).
    ///
    /// # Errors
    ///
    /// A missing environment variable, or a Java setting librdkafka cannot honour (a JKS
    /// trust store, a Kerberos or OAuth JAAS module), naming the key and what to use instead.
    pub fn librdkafka_entries(&self) -> Result<Vec<(String, String)>, PropertiesError> {
        let get = |k: &str| {
            self.entries
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut out = Vec::with_capacity(self.entries.len());
        for (key, value) in &self.entries {
            let value = resolve_env(key, value)?;
            match key.as_str() {
                "sasl.jaas.config" => {
                    let (username, password) = parse_jaas(&value)?;
                    out.push(("sasl.username".to_owned(), username));
                    out.push(("sasl.password".to_owned(), password));
                }
                "ssl.truststore.location" => {
                    let kind = get("ssl.truststore.type").unwrap_or("JKS");
                    if !kind.eq_ignore_ascii_case("PEM") {
                        return Err(PropertiesError::Unsupported {
                            key: key.clone(),
                            reason: format!(
                                "a {kind} trust store, which librdkafka cannot read: convert it \
                                 to PEM and set ssl.ca.location (or ssl.truststore.type=PEM)"
                            ),
                        });
                    }
                    out.push(("ssl.ca.location".to_owned(), value));
                }
                "ssl.truststore.type" | "ssl.truststore.password" | "client.dns.lookup" => {}
                k if k.starts_with("config.providers") => {}
                "ssl.endpoint.identification.algorithm" if value.is_empty() => {
                    // Java's way of turning host name verification off.
                    out.push((key.clone(), "none".to_owned()));
                }
                _ => out.push((key.clone(), value)),
            }
        }
        Ok(out)
    }
}

/// Replaces each `${env:NAME}` in `value` by the variable's value.
///
/// # Errors
///
/// An unset variable or a malformed reference; the error names `key` and the variable, never
/// the value.
pub fn resolve_env(key: &str, value: &str) -> Result<String, PropertiesError> {
    resolve_env_with(key, value, |var| std::env::var(var).ok())
}

/// [`resolve_env`] with the variables looked up by `lookup` (`None`: not set).
///
/// # Errors
///
/// As [`resolve_env`].
pub fn resolve_env_with(
    key: &str,
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, PropertiesError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(PropertiesError::BadReference {
                key: key.to_owned(),
            });
        };
        let reference = &after[..end];
        let Some(var) = reference.strip_prefix("env:") else {
            return Err(PropertiesError::BadReference {
                key: key.to_owned(),
            });
        };
        match lookup(var) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(PropertiesError::MissingEnv {
                    key: key.to_owned(),
                    var: var.to_owned(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `username` and `password` of a JAAS line using Kafka's PLAIN or SCRAM login module.
fn parse_jaas(value: &str) -> Result<(String, String), PropertiesError> {
    let unsupported = |reason: &str| PropertiesError::Unsupported {
        key: "sasl.jaas.config".to_owned(),
        reason: reason.to_owned(),
    };
    let value = value.trim();
    let module = value.split_whitespace().next().unwrap_or_default();
    if !module.ends_with(".PlainLoginModule") && !module.ends_with(".ScramLoginModule") {
        return Err(unsupported(
            "only the PlainLoginModule and ScramLoginModule are understood; for OAUTHBEARER or \
             GSSAPI set librdkafka's sasl.oauthbearer.* or sasl.kerberos.* properties instead",
        ));
    }
    let mut username = None;
    let mut password = None;
    let mut rest = &value[module.len()..];
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].split_whitespace().last().unwrap_or_default();
        let after = rest[eq + 1..].trim_start();
        let Some(quoted) = after.strip_prefix('"') else {
            return Err(unsupported("option values must be double-quoted"));
        };
        let mut text = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        text.push(n);
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => text.push(c),
            }
        }
        let Some(end) = end else {
            return Err(unsupported("an option value has no closing quote"));
        };
        match name {
            "username" => username = Some(text),
            "password" => password = Some(text),
            _ => {}
        }
        rest = &quoted[end + 1..];
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(unsupported(
            "the login module needs username=\"…\" and password=\"…\"",
        )),
    }
}

/// Parses the text format of `java.util.Properties`: `key=value`, `key: value` or
/// `key value`; `#` and `!` comment lines; a trailing backslash continues a line; `\t`, `\n`,
/// `\r`, `\f`, `\uXXXX` and `\<char>` escapes. On error: the 1-based line and the reason.
fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues.
        let mut logical = String::from(trimmed);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        let key = unescape(key).map_err(|r| (index + 1, r))?;
        let value = unescape(value).map_err(|r| (index + 1, r))?;
        if key.is_empty() {
            return Err((index + 1, "an entry with an empty key".to_owned()));
        }
        entries.push((key, value));
    }
    Ok(entries)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace.
fn split_entry(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .map_or(rest, str::trim_start);
                return (&line[..i], rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let high = hex4(&mut chars)?;
                // Java's `Properties.store` writes a character beyond U+FFFF as the two UTF-16
                // halves of a surrogate pair, `\uD83D\uDE00`: read them as one character.
                let code = if (0xD800..0xDC00).contains(&high) {
                    let low = match (chars.next(), chars.next()) {
                        (Some('\\'), Some('u')) => hex4(&mut chars)?,
                        _ => 0,
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(format!(
                            "malformed \\u escape \\u{high:04X}: a surrogate half without its pair"
                        ));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                out.push(char::from_u32(code).ok_or_else(|| {
                    format!("malformed \\u escape \\u{code:04X}: a surrogate half without its pair")
                })?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The four hex digits of a `\u` escape (Java's reader takes no sign).
fn hex4(chars: &mut std::str::Chars<'_>) -> Result<u32, String> {
    let hex: String = chars.by_ref().take(4).collect();
    u32::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("malformed \\u escape \\u{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn java_properties_syntax() {
        let text = "# a comment\n\
                    ! another\n\
                    \n\
                    bootstrap.servers=pkc-1.europe-west1.gcp.confluent.cloud:9092\n\
                    security.protocol : SASL_SSL\n\
                    sasl.mechanism PLAIN\n\
                    \x20\x20 client.id  =  velib \n\
                    long.value = one,\\\n\
                    \x20           two\n\
                    escaped\\=key=a\\tb\\u00e9\n\
                    empty=\n";
        assert_eq!(
            entries(text),
            vec![
                pair(
                    "bootstrap.servers",
                    "pkc-1.europe-west1.gcp.confluent.cloud:9092"
                ),
                pair("security.protocol", "SASL_SSL"),
                pair("sasl.mechanism", "PLAIN"),
                pair("client.id", "velib "),
                pair("long.value", "one,two"),
                pair("escaped=key", "a\tbé"),
                pair("empty", ""),
            ]
        );
        // An even number of trailing backslashes is an escaped backslash, not a continuation.
        assert_eq!(
            entries("a=x\\\\\nb=y"),
            vec![pair("a", "x\\"), pair("b", "y")]
        );
        assert_eq!(parse("=v").unwrap_err().0, 1);
        assert_eq!(parse("ok=1\nbad=\\u12").unwrap_err().0, 2);
    }

    /// Found by the `properties` fuzz target: Java's `Properties.store` (and so Kafka's tools)
    /// writes a character beyond U+FFFF as a surrogate pair of `\u` escapes, which was refused
    /// as a malformed escape.
    #[test]
    fn surrogate_pairs_written_by_java_are_one_character() {
        assert_eq!(
            entries("client.id=velib-\\uD83D\\uDE00\nb=s\\uD8D0\\uDD11{\n"),
            vec![
                pair("client.id", "velib-\u{1F600}"),
                pair("b", "s\u{44111}{")
            ]
        );
        // A half without its pair is no character: still an error, on its line.
        for lone in [
            "k=\\uD83D",
            "k=\\uD83Dx",
            "k=\\uDE00",
            "k=\\uD83D\\u0041",
            "k=\\u+FFF",
        ] {
            assert_eq!(parse(&format!("a=1\n{lone}")).unwrap_err().0, 2, "{lone}");
        }
    }

    #[test]
    fn env_references_resolve_and_errors_name_no_value() {
        let env = |var: &str| (var == "VELIB_TEST_PROPS_SECRET").then(|| "s3cr3t".to_owned());
        assert_eq!(
            resolve_env_with("sasl.password", "${env:VELIB_TEST_PROPS_SECRET}", env).unwrap(),
            "s3cr3t"
        );
        assert_eq!(
            resolve_env_with("k", "a-${env:VELIB_TEST_PROPS_SECRET}-b", env).unwrap(),
            "a-s3cr3t-b"
        );
        let err = resolve_env("sasl.password", "${env:VELIB_TEST_PROPS_UNSET}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sasl.password` refers to the environment variable VELIB_TEST_PROPS_UNSET, which \
             is not set (or not UTF-8)"
        );
        assert!(matches!(
            resolve_env("k", "${file:/etc/x:y}"),
            Err(PropertiesError::BadReference { .. })
        ));
        assert!(matches!(
            resolve_env("k", "${env:X"),
            Err(PropertiesError::BadReference { .. })
        ));
    }

    fn file(text: &str) -> PropertiesFile {
        PropertiesFile {
            path: PathBuf::from("client.properties"),
            entries: entries(text),
        }
    }

    #[test]
    fn java_client_settings_are_translated() {
        let f = file(
            "security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"velib\" password=\"p\\\\\"w=;d\";\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location=/etc/kafka/ca.pem\n\
             ssl.endpoint.identification.algorithm=\n\
             client.dns.lookup=use_all_dns_ips\n\
             config.providers=env\n",
        );
        assert_eq!(
            f.librdkafka_entries().unwrap(),
            vec![
                pair("security.protocol", "SASL_SSL"),
                pair("sasl.mechanism", "SCRAM-SHA-512"),
                pair("sasl.username", "velib"),
                pair("sasl.password", "p\"w=;d"),
                pair("ssl.ca.location", "/etc/kafka/ca.pem"),
                pair("ssl.endpoint.identification.algorithm", "none"),
            ]
        );
        let plain = file(
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username='x' password='y';",
        );
        assert!(matches!(
            plain.librdkafka_entries(),
            Err(PropertiesError::Unsupported { .. })
        ));
        let jks = file("ssl.truststore.location=/etc/kafka/truststore.jks\n");
        let err = jks.librdkafka_entries().unwrap_err().to_string();
        assert!(err.contains("ssl.ca.location"), "{err}");
        let oauth = file(
            "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule \
             required;",
        );
        let err = oauth.librdkafka_entries().unwrap_err().to_string();
        assert!(err.contains("sasl.oauthbearer"), "{err}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let f = file(
            "sasl.username=velib\nsasl.password=hunter2\n\
             sasl.jaas.config=x required username=\"u\" password=\"hunter3\";\n",
        );
        let debug = format!("{f:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(debug.contains("velib"), "{debug}");
    }

    #[test]
    fn load_reports_missing_files_and_bad_lines() {
        let err = PropertiesFile::load(Path::new("/nonexistent/velib.properties")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/velib.properties"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("velib-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.properties");
        std::fs::write(&path, "a=1\n\n=2\n").unwrap();
        let err = PropertiesFile::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("bad.properties:3: an entry with an empty key"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
