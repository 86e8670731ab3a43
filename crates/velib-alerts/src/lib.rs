//! E-mails the people watching a bike-share station when it runs out of bikes.
//!
//! The Rust counterpart of the tutorial's `velib-monitor-empty-stations.py`: a consumer of
//! `velib-empty-stations`, separate from the monitor so a slow mail server never slows the
//! monitor down.
//!
//! - [`select`]: which stations a user watches (keys, contracts, near home, nearest N);
//! - [`dedupe`]: duplicate events and the per-station cooldown;
//! - [`health`]: mails about a station's health (locked, degraded), from the monitor's
//!   `--stats`;
//! - [`mail`]: the message, and the [`Mailer`](mail::Mailer)s that send it (SMTP, dry run);
//! - [`smtp_url`]: `SMTP_URL`, with the password kept secret;
//! - [`consumer`]: the Kafka loop and its delivery guarantee, behind [`run`].

#![forbid(unsafe_code)]

pub mod consumer;
pub mod dedupe;
pub mod health;
pub mod mail;
pub mod select;
pub mod smtp_url;

pub use consumer::{AlertsConfig, AlertsError, Retry, Stats, run};
