//! Kafka client settings shared by every velib binary.
//!
//! # Who wins
//!
//! Settings are applied in this order, a later one replacing an earlier one with the same key:
//!
//! 1. velib's own defaults for the client at hand (for example `enable.idempotence=true` for the
//!    producer, `enable.auto.offset.store=false` for the monitor);
//! 2. `--bootstrap-servers` (or `KAFKA_BOOTSTRAP_SERVERS`), as `bootstrap.servers`;
//! 3. each `-X key=value`, in the order given.
//!
//! So `-X` is the escape hatch: it can change anything, including settings velib relies on for
//! its delivery guarantees. Each binary logs a warning when `-X` overrides one of those.

use clap::Args;
use rdkafka::ClientConfig;
use std::fmt;

/// The Kafka flags of every velib binary.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092",
        value_name = "HOST:PORT,…"
    )]
    pub bootstrap_servers: String,

    /// A librdkafka property, `-X key=value`, repeatable (for example
    /// `-X security.protocol=SASL_SSL -X compression.type=zstd`). Applied last: it overrides
    /// velib's defaults and `--bootstrap-servers`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl KafkaArgs {
    /// Settings for `bootstrap` and no `-X`: what tests and the demo use.
    pub fn new(bootstrap: impl Into<String>) -> KafkaArgs {
        KafkaArgs {
            bootstrap_servers: bootstrap.into(),
            properties: Vec::new(),
        }
    }

    /// Adds a `-X` property (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaArgs {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The client configuration: `defaults`, then the bootstrap servers, then the `-X`
    /// properties (see the module docs for the order). A `-X` property that replaces one of
    /// `defaults` with a different value is logged as a warning, since the defaults carry
    /// velib's delivery guarantees.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            if let Some((_, default)) = defaults.iter().find(|(dk, _)| dk == k)
                && default != v
            {
                tracing::warn!(
                    property = %k,
                    default = %default,
                    "-X overrides a setting velib relies on; its guarantees may no longer hold"
                );
            }
            config.set(k, v);
        }
        config
    }
}

/// Redacts the values of properties that hold secrets (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`…), so `{:?}` is safe to log.
impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaArgs")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &props)
            .finish()
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "ssl.key.pem",
        "private",
    ]
    .iter()
    .any(|w| key.contains(w))
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE (a librdkafka property such as compression.type=zstd), got {:?}",
            if is_secret(s) { "<redacted>" } else { s }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn later_settings_win() {
        let cli = Cli::try_parse_from([
            "x",
            "--bootstrap-servers",
            "a:1",
            "-X",
            "acks=1",
            "-X",
            "compression.type=zstd",
        ])
        .unwrap();
        let config = cli
            .kafka
            .client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("compression.type"), Some("zstd"));
        assert_eq!(config.get("bootstrap.servers"), Some("a:1"));
        let config = KafkaArgs::new("a:1")
            .with("bootstrap.servers", "b:2")
            .client_config(&[]);
        assert_eq!(config.get("bootstrap.servers"), Some("b:2"));
    }

    #[test]
    fn malformed_property_is_refused() {
        assert!(Cli::try_parse_from(["x", "-X", "novalue"]).is_err());
        let err = Cli::try_parse_from(["x", "-X", "sasl.password"])
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("sasl.password\""), "{err}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let args = KafkaArgs::new("a:1")
            .with("sasl.password", "hunter2")
            .with("sasl.username", "bob");
        let debug = format!("{args:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("bob"));
    }
}
