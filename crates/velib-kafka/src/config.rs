//! Kafka client settings shared by every velib binary and `cargo xtask create-topics`.
//!
//! # Who wins
//!
//! Settings are applied in this order, a later one replacing an earlier one with the same key:
//!
//! 1. velib's own defaults for the client at hand (for example `enable.idempotence=true` for the
//!    producer, `enable.auto.offset.store=false` for the monitor);
//! 2. the properties file of `--kafka-config` (or `VELIB_KAFKA_CONFIG`), in file order;
//! 3. `--bootstrap-servers` (or `KAFKA_BOOTSTRAP_SERVERS`), as `bootstrap.servers`;
//! 4. each `-X key=value`, in the order given.
//!
//! Without a `bootstrap.servers` from any of them, `localhost:9092` is used.
//!
//! So `-X` is the escape hatch: it can change anything, including settings velib relies on for
//! its delivery guarantees. Each binary logs a warning when `-X` or the file overrides one of
//! those.
//!
//! # Secrets
//!
//! A value may be `${env:NAME}` (Kafka's `EnvVarConfigProvider` syntax), replaced by the
//! environment variable `NAME` when the flags are read, so a password need not sit in a file or
//! on a command line. `Debug` redacts secret-bearing properties, errors name keys but never
//! values, and no secret has a `--help` default.
//!
//! # TLS trust
//!
//! velib's librdkafka uses its own OpenSSL build (see the README), whose compiled-in CA path
//! does not match the system's; when TLS is on and no CA is configured, velib sets
//! `ssl.ca.location=probe`, which makes librdkafka look for the system CA bundle in the usual
//! places, so brokers with publicly signed certificates are trusted as with any other client.

use crate::properties::{PropertiesError, PropertiesFile, is_secret, redacted, resolve_env};
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use std::fmt;
use std::path::PathBuf;

/// The Kafka flags of every velib binary.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port…]` [default: `bootstrap.servers` of
    /// --kafka-config, else localhost:9092].
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "HOST:PORT,…")]
    pub bootstrap_servers: Option<String>,

    /// A Kafka client properties file (`key=value` lines, as Kafka's tools take with
    /// --command-config): librdkafka properties such as security.protocol, sasl.mechanism,
    /// sasl.username, sasl.password, ssl.ca.location. Values may be `${env:NAME}`. Java's
    /// sasl.jaas.config (PLAIN or SCRAM) and PEM ssl.truststore.location are translated.
    #[arg(
        long,
        env = "VELIB_KAFKA_CONFIG",
        value_name = "FILE",
        value_parser = load_properties_file
    )]
    pub kafka_config: Option<PropertiesFile>,

    /// A librdkafka property, `-X key=value`, repeatable (for example
    /// `-X security.protocol=SASL_SSL -X compression.type=zstd`); the value may be
    /// `${env:NAME}`. Applied last: it overrides velib's defaults, --kafka-config and
    /// --bootstrap-servers.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl KafkaArgs {
    /// Settings for `bootstrap` and no `-X`: what tests and the demo use.
    pub fn new(bootstrap: impl Into<String>) -> KafkaArgs {
        KafkaArgs {
            bootstrap_servers: Some(bootstrap.into()),
            kafka_config: None,
            properties: Vec::new(),
        }
    }

    /// Adds a `-X` property (builder style). The value is used as given (no `${env:…}`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaArgs {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Uses the properties file at `path` (builder style), as `--kafka-config` does.
    ///
    /// # Errors
    ///
    /// An unreadable or malformed file, an unset `${env:…}` variable, or a Java setting
    /// librdkafka cannot honour.
    pub fn with_properties_file(
        mut self,
        path: impl Into<PathBuf>,
    ) -> Result<KafkaArgs, PropertiesError> {
        self.kafka_config = Some(read_properties_file(path.into())?);
        Ok(self)
    }

    /// The bootstrap servers these settings lead to.
    pub fn bootstrap(&self) -> String {
        self.client_config(&[])
            .get("bootstrap.servers")
            .unwrap_or("localhost:9092")
            .to_owned()
    }

    /// The client configuration: `defaults`, then the properties file, the bootstrap servers
    /// and the `-X` properties (see the module docs for the order). A file or `-X` property
    /// that replaces one of `defaults` with a different value is logged as a warning, since
    /// the defaults carry velib's delivery guarantees.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        let warn_override = |k: &str, v: &str, from: &str| {
            if let Some((_, default)) = defaults.iter().find(|(dk, _)| *dk == k)
                && *default != v
            {
                tracing::warn!(
                    property = %k,
                    default = %default,
                    "{from} overrides a setting velib relies on; its guarantees may no longer hold"
                );
            }
        };
        if let Some(file) = &self.kafka_config {
            for (k, v) in &file.entries {
                warn_override(k, v, "--kafka-config");
                config.set(k, v);
            }
        }
        if let Some(servers) = &self.bootstrap_servers {
            config.set("bootstrap.servers", servers);
        } else if config.get("bootstrap.servers").is_none() {
            config.set("bootstrap.servers", "localhost:9092");
        }
        for (k, v) in &self.properties {
            warn_override(k, v, "-X");
            config.set(k, v);
        }
        let tls = config
            .get("security.protocol")
            .is_some_and(|p| p.to_ascii_uppercase().contains("SSL"));
        let ca_given = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
            .iter()
            .any(|k| config.get(k).is_some());
        if tls && !ca_given {
            config.set("ssl.ca.location", "probe");
        }
        // librdkafka reports some misconfigurations only as info-level log lines (a listener
        // hanging up on a plaintext or SASL-less client); the clients' contexts read them
        // (see `connection`) whatever RUST_LOG says, and forward them at debug level.
        if !matches!(
            config.log_level,
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        ) {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        config
    }
}

/// Redacts the values of properties that hold secrets (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`…), so `{:?}` is safe to log.
impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("kafka_config", &self.kafka_config)
            .field("properties", &redacted(&self.properties))
            .finish()
    }
}

/// A configuration error of librdkafka with the offending value removed when the key holds a
/// secret (librdkafka's own message quotes the value).
pub fn redact_config_error(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(res, _, key, _) if is_secret(&key) => KafkaError::ClientConfig(
            res,
            format!("invalid value for configuration property \"{key}\""),
            key,
            "<redacted>".to_owned(),
        ),
        other => other,
    }
}

/// Reads a properties file into librdkafka properties: references resolved, Java settings
/// translated.
fn read_properties_file(path: PathBuf) -> Result<PropertiesFile, PropertiesError> {
    let file = PropertiesFile::load(&path)?;
    let entries = file.librdkafka_entries()?;
    Ok(PropertiesFile { path, entries })
}

fn load_properties_file(s: &str) -> Result<PropertiesFile, PropertiesError> {
    read_properties_file(PathBuf::from(s))
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = key_value(s, "a librdkafka property such as compression.type=zstd")?;
    let v = resolve_env(k, v).map_err(|e| e.to_string())?;
    Ok((k.to_owned(), v.to_owned()))
}

/// Splits a `KEY=VALUE` flag at its first `=`, the key trimmed and not empty; `example` says
/// in the error what was expected. A flag that names a secret is not repeated in the error.
pub fn key_value<'a>(s: &'a str, example: &str) -> Result<(&'a str, &'a str), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => Err(format!(
            "expected KEY=VALUE ({example}), got {:?}",
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

    fn write_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("velib-kafka-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_sits_between_defaults_and_flags() {
        let path = write_file(
            "precedence.properties",
            "bootstrap.servers=managed:9093\nacks=1\nclient.id=from-file\nlinger.ms=50\n",
        );
        let arg = path.to_str().unwrap();
        let cli = Cli::try_parse_from(["x", "--kafka-config", arg, "-X", "linger.ms=7"]).unwrap();
        let config = cli
            .kafka
            .client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(config.get("bootstrap.servers"), Some("managed:9093"));
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("client.id"), Some("from-file"));
        assert_eq!(config.get("linger.ms"), Some("7"));
        assert_eq!(cli.kafka.bootstrap(), "managed:9093");
        let cli = Cli::try_parse_from(["x", "--kafka-config", arg, "--bootstrap-servers", "b:1"])
            .unwrap();
        assert_eq!(cli.kafka.bootstrap(), "b:1");
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.kafka.bootstrap(), "localhost:9092");
    }

    #[test]
    fn file_and_flag_errors_name_the_key_not_the_secret() {
        let path = write_file(
            "missing-env.properties",
            "sasl.password=${env:VELIB_TEST_KAFKA_CONFIG_UNSET}\n",
        );
        let err = Cli::try_parse_from(["x", "--kafka-config", path.to_str().unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("VELIB_TEST_KAFKA_CONFIG_UNSET"), "{err}");
        assert!(err.contains("sasl.password"), "{err}");
        let err = Cli::try_parse_from(["x", "--kafka-config", "/nonexistent/c.properties"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/c.properties"), "{err}");
        // A variable every process has, standing in for a password.
        let path = std::env::var("PATH").unwrap();
        let cli = Cli::try_parse_from(["x", "-X", "sasl.password=${env:PATH}"]).unwrap();
        assert_eq!(
            cli.kafka.client_config(&[]).get("sasl.password"),
            Some(path.as_str())
        );
        assert!(!format!("{:?}", cli.kafka).contains(&path));
    }

    #[test]
    fn tls_without_a_ca_probes_the_system_bundle() {
        let tls = KafkaArgs::new("b:9093").with("security.protocol", "sasl_ssl");
        assert_eq!(tls.client_config(&[]).get("ssl.ca.location"), Some("probe"));
        let own = tls.clone().with("ssl.ca.location", "/etc/ca.pem");
        assert_eq!(
            own.client_config(&[]).get("ssl.ca.location"),
            Some("/etc/ca.pem")
        );
        let pem = tls.with("ssl.ca.pem", "-----BEGIN CERTIFICATE-----");
        assert_eq!(pem.client_config(&[]).get("ssl.ca.location"), None);
        let plain = KafkaArgs::new("b:9092");
        assert_eq!(plain.client_config(&[]).get("ssl.ca.location"), None);
    }

    #[test]
    fn librdkafka_has_tls_sasl_and_zstd() {
        let features = crate::service::librdkafka_features();
        for needed in ["ssl", "sasl_plain", "sasl_scram", "zstd", "lz4"] {
            assert!(
                features.split(',').any(|f| f == needed),
                "{needed} missing from {features}"
            );
        }
    }

    #[test]
    fn config_errors_on_secrets_drop_the_value() {
        let config = KafkaArgs::new("b:1")
            .with("sasl.password.typo", "hunter2")
            .client_config(&[]);
        let err = config
            .create::<rdkafka::producer::BaseProducer>()
            .map(|_| ())
            .unwrap_err();
        let err = redact_config_error(err).to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("sasl.password.typo"), "{err}");
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
