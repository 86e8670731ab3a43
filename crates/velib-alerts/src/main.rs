//! `velib-alerts`: e-mails you when a station you watch runs out of bikes.
//!
//! Flags and environment are parsed here; everything else is in the library (`velib_alerts`).
//! Logs go to stderr (`RUST_LOG`, default `info`); `--dry-run` mails go to stdout.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeSet;
use std::time::Duration;
use velib_alerts::consumer::{DEFAULT_GROUP, DEFAULT_TOPIC};
use velib_alerts::health::AlertOn;
use velib_alerts::mail::DryRunMailer;
use velib_alerts::select::{Near, WatchList};
use velib_alerts::smtp_url::SmtpUrl;
use velib_alerts::{AlertsConfig, run};
use velib_kafka::KafkaArgs;
use velib_kafka::duration::{parse_duration, parse_positive_duration};
use velib_kafka::service::ServiceArgs;
use velib_model::{Position, StationKey};

/// E-mails you when a bike-share station you watch runs out of bikes or e-bikes, or stops
/// taking bikes back.
///
/// Reads the monitor's events from Kafka (group `velib-alerts`) and mails each watched station
/// going empty at most once per --cooldown. Mail is sent at least once: an event is committed
/// only after the mail server accepted its mail; while the server is down, alerts are held.
#[derive(Debug, Parser)]
#[command(name = "velib-alerts", version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// The topic the monitor publishes emptiness events to (its `--events-topic`, the same
    /// variable).
    #[arg(long, env = "VELIB_EVENTS_TOPIC", default_value = DEFAULT_TOPIC)]
    topic: String,

    /// The Kafka consumer group.
    #[arg(long, env = "ALERTS_GROUP", default_value = DEFAULT_GROUP)]
    group: String,

    /// Watch this station, `CONTRACT:ID` (repeatable; the variable is comma-separated).
    #[arg(
        long = "station",
        env = "ALERT_STATIONS",
        value_delimiter = ',',
        value_name = "CONTRACT:ID"
    )]
    stations: Vec<StationKey>,

    /// Watch every station of this contract, e.g. `Lyon` (repeatable).
    #[arg(
        long = "contract",
        env = "ALERT_CONTRACTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    contracts: Vec<String>,

    /// Your home, `LAT,LNG` in decimal degrees: watch stations near it (with --radius-m and/or
    /// --nearest; alone, it means --nearest 1).
    #[arg(long, env = "ALERT_NEAR", value_name = "LAT,LNG", value_parser = parse_position, allow_hyphen_values = true)]
    near: Option<Position>,

    /// With --near: only stations at most this many metres from home.
    #[arg(long, env = "ALERT_RADIUS_M", value_name = "METRES", requires = "near")]
    radius_m: Option<f64>,

    /// With --near: only the N stations nearest to home, among those seen in events so far.
    #[arg(long, env = "ALERT_NEAREST", value_name = "N", requires = "near")]
    nearest: Option<usize>,

    /// Recipient (repeatable; the variable is comma-separated). Each gets their own mail.
    #[arg(
        long,
        env = "ALERT_TO",
        value_delimiter = ',',
        required = true,
        value_name = "ADDRESS"
    )]
    to: Vec<Mailbox>,

    /// Sender, e.g. `"Velib alerts <alerts@example.com>"`.
    #[arg(long, env = "ALERT_FROM", value_name = "ADDRESS")]
    from: Mailbox,

    /// The mail server: `smtps://USER@HOST:465` (implicit TLS), `smtp://HOST:587` (STARTTLS,
    /// required) or `smtp://127.0.0.1:1025` (plaintext, loopback only). The password comes from
    /// SMTP_PASSWORD, or percent-encoded in the URL.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_name = "URL",
          value_parser = parse_secret, required_unless_present = "dry_run")]
    smtp_url: Option<SecretString>,

    /// SMTP user name, when SMTP_URL has none. (The password is read from SMTP_PASSWORD only,
    /// never from a flag, so it never shows in the process list.)
    #[arg(long, env = "SMTP_USERNAME", value_name = "USER")]
    smtp_username: Option<String>,

    /// Give up a mail the server has not accepted after this long (connection, greeting and
    /// every reply; then retry later, as for an outage): `30s`, `1m`.
    #[arg(long, env = "SMTP_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    smtp_timeout: Duration,

    /// What to mail about (repeatable; the variable is comma-separated): `bikes` (the station
    /// has no bike left), `ebikes` (no e-bike left; from feeds that count bikes by type),
    /// `returns` (the open station takes no bikes back), `locked` (open, but unused for longer
    /// than its usual activity makes likely) and `degraded` (many docks out of service); the
    /// last two are read from --health-topic, written by `velib-monitor --stats`.
    #[arg(
        long = "alert-on",
        env = "ALERT_ON",
        value_delimiter = ',',
        default_value = "bikes",
        value_name = "bikes|ebikes|returns|locked|degraded"
    )]
    alert_on: Vec<AlertOn>,

    /// The health changes of `velib-monitor --stats` (read when --alert-on names `locked` or
    /// `degraded`).
    #[arg(long, env = "VELIB_HEALTH_TOPIC", default_value = velib_model::topics::STATION_HEALTH)]
    health_topic: String,

    /// At most one "empty" mail per station and shortage per cooldown: `15m`, `1h`, `0` for
    /// none.
    #[arg(long, env = "ALERT_COOLDOWN", default_value = "15m", value_parser = parse_duration)]
    cooldown: Duration,

    /// Also mail when a shortage ends: bikes (or e-bikes) back, returns taken again, at a
    /// station reported short.
    #[arg(long, env = "ALERT_NOTIFY_RECOVERY")]
    notify_recovery: bool,

    /// Do not mail events older than this (a late "no bikes" mail is noise); `0` mails events
    /// of any age.
    #[arg(long, env = "ALERT_MAX_AGE", default_value = "2h", value_parser = parse_duration)]
    max_age: Duration,

    /// Print the mails to stdout instead of sending them.
    #[arg(long, env = "ALERT_DRY_RUN")]
    dry_run: bool,

    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // First: Ctrl-C or SIGTERM during start-up (a mail server that does not answer) must
    // already stop the program gracefully.
    let mut shutdown = std::pin::pin!(cli.service.start().map_err(anyhow::Error::msg)?);

    let mut watch = WatchList::default();
    for key in cli.stations {
        watch = watch.with_station(key);
    }
    for contract in &cli.contracts {
        watch = watch.with_contract(contract);
    }
    if let Some(home) = cli.near {
        let nearest = match (cli.radius_m, cli.nearest) {
            (None, None) => Some(1),
            (_, n) => n,
        };
        watch = watch.with_near(Near {
            home,
            radius_m: cli.radius_m,
            nearest,
        });
    }

    let mut config = AlertsConfig::new(cli.kafka, watch, cli.from, cli.to);
    config.topic = cli.topic;
    config.group = cli.group;
    config.shortages = BTreeSet::new();
    for on in cli.alert_on {
        match on {
            AlertOn::Shortage(s) => {
                config.shortages.insert(s);
            }
            AlertOn::Health(h) if !config.health.contains(&h) => config.health.push(h),
            AlertOn::Health(_) => {}
        }
    }
    config.health_topic = cli.health_topic;
    config.cooldown = cli.cooldown;
    config.notify_recovery = cli.notify_recovery;
    config.max_age = (!cli.max_age.is_zero()).then_some(cli.max_age);

    let stats = if cli.dry_run {
        tracing::info!("dry run: mails are printed to stdout, not sent");
        run(config, DryRunMailer::stdout(), shutdown).await?
    } else {
        let url = cli
            .smtp_url
            .context("SMTP_URL is required without --dry-run")?;
        let url: SmtpUrl = url.expose_secret().parse()?;
        let password = std::env::var("SMTP_PASSWORD").ok().map(SecretString::from);
        let url = url.with_credentials(cli.smtp_username, password);
        let mailer = url.mailer(cli.smtp_timeout)?;
        // A check for the operator only: an unreachable server is not fatal, since alerts are
        // held until it is back.
        tracing::info!(server = %url, timeout = ?cli.smtp_timeout, "checking the mail server");
        let checked = tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("stopped before the mail server answered");
                return Ok(());
            }
            checked = mailer.check() => checked,
        };
        match checked {
            Ok(()) => tracing::info!(server = %url, "mail server reachable"),
            Err(e) => {
                tracing::warn!(server = %url, error = %e, "mail server not usable now; alerts will be held until it is")
            }
        }
        run(config, mailer, shutdown).await?
    };
    tracing::info!(?stats, "stopped");
    Ok(())
}

fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

fn parse_position(s: &str) -> Result<Position, String> {
    let error = || format!("expected LAT,LNG in decimal degrees, e.g. 45.7640,4.8357; got {s:?}");
    let (lat, lng) = s.split_once(',').ok_or_else(error)?;
    let lat: f64 = lat.trim().parse().map_err(|_| error())?;
    let lng: f64 = lng.trim().parse().map_err(|_| error())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err(error());
    }
    Ok(Position { lat, lng })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let p = parse_position("45.7640,4.8357").unwrap();
        assert_eq!((p.lat, p.lng), (45.764, 4.8357));
        assert!(parse_position("-33.86,151.2").is_ok());
        assert!(parse_position("91,0").is_err());
        assert!(parse_position("45.7").is_err());
    }

    #[test]
    fn bad_durations_are_usage_errors() {
        for (flag, value, says) in [
            ("--smtp-timeout", "0", "more than 0"),
            ("--smtp-timeout", "99999999999999999999999", "at most 365d"),
            ("--cooldown", "1000000000000h", "at most 365d"),
            ("--max-age", "366d", "at most 365d"),
        ] {
            let err = Cli::try_parse_from([
                "velib-alerts",
                "--to",
                "a@example.com",
                "--from",
                "b@example.com",
                "--dry-run",
                flag,
                value,
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(flag) && err.contains(says),
                "{flag} {value}: {err}"
            );
        }
    }

    /// [`Cli`] from `args` alone, with no flag read from an environment variable.
    fn parse_ignoring_env(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        let ids: Vec<_> = command
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect();
        for id in ids {
            command = command.mut_arg(id, |a| a.env(None::<&str>));
        }
        Cli::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    #[test]
    fn cli_reads_lists_and_hides_the_smtp_url() {
        let cli = Cli::try_parse_from([
            "velib-alerts",
            "--station",
            "Lyon:1001",
            "--station",
            "Lyon:1002",
            "--to",
            "a@example.com",
            "--from",
            "b@example.com",
            "--smtp-url",
            "smtps://u:hunter2@mail.example.com",
        ])
        .unwrap();
        assert_eq!(cli.stations.len(), 2);
        assert!(!format!("{cli:?}").contains("hunter2"));
        // Without SMTP_URL, only a dry run may start (whatever this process's environment
        // holds: the flags' variables are not read here).
        let err = parse_ignoring_env(&[
            "velib-alerts",
            "--to",
            "a@example.com",
            "--from",
            "b@example.com",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--smtp-url"), "{err}");
        assert!(
            Cli::try_parse_from([
                "velib-alerts",
                "--to",
                "a@example.com",
                "--from",
                "b@example.com",
                "--dry-run"
            ])
            .is_ok()
        );
        assert!(
            Cli::try_parse_from([
                "velib-alerts",
                "--radius-m",
                "300",
                "--to",
                "a@example.com",
                "--from",
                "b@example.com",
                "--dry-run"
            ])
            .is_err()
        );
    }
}
