//! The alert e-mail: composing it from an event, and the [`Mailer`]s that send it.
//!
//! # Untrusted text
//!
//! Station names and addresses come from the bike-share API, so they are untrusted. Two layers
//! keep them from breaking a message:
//!
//! 1. lettre's header encoding: a `Subject` (or any header) holding CR or LF is written as an
//!    RFC 2047 encoded word, so it can never end the header and start another one (a test in
//!    this module proves it on lettre itself, without layer 2);
//! 2. [`compose`] replaces control characters in station text with spaces and bounds its
//!    length, so a name cannot fake extra lines in the body either.
//!
//! # One message per recipient
//!
//! Each `--to` address gets its own message (and SMTP transaction). A recipient that the server
//! refuses for good (`550 no such user`) then costs only that recipient's mail, and a retry
//! after a temporary failure resends only to the recipients that did not get it yet.

use crate::health::Place;
use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;
use velib_model::{EmptinessKind, EmptyStationEvent, Health, Position, StationHealthEvent};

/// The longest station text (name, address, contract) put in a mail, in characters.
const MAX_TEXT: usize = 200;

/// An alert that could not be turned into a message.
#[derive(Debug, thiserror::Error)]
#[error("cannot compose the alert mail: {0}")]
pub struct ComposeError(#[from] lettre::error::Error);

/// Builds the mail for `event`, from `from` to `to`.
///
/// The subject names the transition ([`EmptinessKind`]: no bikes, no e-bikes, no returns, or
/// their end), the station and its contract; the body adds the address, the counts (e-bikes,
/// bikes and docks out of service and returns only when the station's record gave them: a count
/// that is not known is not written as 0), the status, the event time (UTC: events carry no time zone, and the contracts' zones are not
/// known here) and an OpenStreetMap link to the station's position. The `Message-ID` is derived
/// from the event's identity and the recipient, so a duplicate sent after a crash carries the
/// same id, which many mail clients use to show it once.
///
/// # Errors
///
/// When lettre refuses the message (it does not for valid mailboxes).
pub fn compose(
    event: &EmptyStationEvent,
    from: &Mailbox,
    to: &Mailbox,
) -> Result<Message, ComposeError> {
    let name = clean(&event.name);
    let name = if name.is_empty() {
        format!("station {}", clean(&event.number.to_string()))
    } else {
        name
    };
    let contract = clean(&event.contract);
    let address = clean(&event.address);
    let place = format!("{name} ({contract})");
    let (subject, headline) = match event.kind {
        EmptinessKind::BecameEmpty => (
            format!("No bikes left at {place}"),
            format!("{place} has no bikes left."),
        ),
        EmptinessKind::NoLongerEmpty => (
            format!("Bikes are back at {place}"),
            format!("Bikes are back at {place}."),
        ),
        EmptinessKind::EbikesGone => (
            format!("No e-bikes left at {place}"),
            format!("{place} has no e-bikes left."),
        ),
        EmptinessKind::EbikesBack => (
            format!("E-bikes are back at {place}"),
            format!("E-bikes are back at {place}."),
        ),
        EmptinessKind::ReturnsStopped => (
            format!("No returns at {place}"),
            format!("{place} takes no bikes back: return yours at another station."),
        ),
        EmptinessKind::ReturnsResumed => (
            format!("Returns are back at {place}"),
            format!("{place} takes bikes back again."),
        ),
    };
    let (lat, lng) = (event.position.lat, event.position.lng);
    // The map link sits on a line of its own: lines up to 76 characters keep an ASCII body in
    // readable 7bit instead of quoted-printable.
    let body = format!(
        "{headline}\n\
         \n\
         Station:   {name}\n\
         Address:   {address}\n\
         Contract:  {contract}\n\
         Key:       {key}\n\
         Bikes:     {bikes} available\n\
         {known}\
         Stands:    {stands} free of {total}\n\
         Status:    {status}\n\
         When:      {when}\n\
         Map:\n\
         https://www.openstreetmap.org/?mlat={lat:.5}&mlon={lng:.5}&zoom=18\n\
         \n\
         -- \n\
         Sent by velib-alerts because you watch this station.\n",
        key = clean(event.key.as_str()),
        bikes = event.available_bikes,
        known = known_counts(event),
        stands = event.available_bike_stands,
        total = event.bike_stands,
        status = event.status,
        when = format_utc(event.event_time()),
    );
    let message = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(subject)
        .message_id(Some(message_id(event, to)))
        .user_agent(concat!("velib-alerts/", env!("CARGO_PKG_VERSION")).to_owned())
        .header(ContentType::TEXT_PLAIN)
        .body(body)?;
    Ok(message)
}

/// The mail of one change of a station's health (see [`crate::health`]) to `to`. The subject
/// says what the station is now; the body says why (the monitor's reason, with its figures),
/// since when, and, when the events topic has named the station ([`Place`]), its name, address
/// and a map link. Text from the feed or the reason is made safe as for [`compose`]; the
/// `Message-ID` is stable per change and recipient.
///
/// # Errors
///
/// When lettre refuses the message (it does not for valid mailboxes).
pub fn compose_health(
    change: &StationHealthEvent,
    place: Option<&Place>,
    from: &Mailbox,
    to: &Mailbox,
) -> Result<Message, ComposeError> {
    let key = clean(change.key.as_str());
    let (name, contract) = match place {
        Some(p) if !clean(&p.name).is_empty() => (clean(&p.name), clean(&p.contract)),
        _ => (
            format!("station {}", clean(change.key.id())),
            clean(change.key.contract()),
        ),
    };
    let place_name = format!("{name} ({contract})");
    let since = format_utc(change.since);
    let (subject, headline) = match change.health {
        Health::Locked => (
            format!("{place_name} looks locked"),
            format!(
                "{place_name} is open, but no bike has been taken or returned there since \
                 {since}, though it is usually used at these hours: its docks may be locked."
            ),
        ),
        Health::Degraded => (
            format!("Many docks out of service at {place_name}"),
            format!("Many of the docks of {place_name} are out of service, since {since}."),
        ),
        Health::Ok => (
            format!("{place_name} works again"),
            format!(
                "{place_name} is no longer {}: it works normally again.",
                crate::health::health_name(change.previous)
            ),
        ),
    };
    let mut details = String::new();
    if let Some(p) = place {
        details += &format!("Address:   {}\n", clean(&p.address));
    }
    let map = match place.and_then(|p| p.position) {
        Some(Position { lat, lng }) => {
            format!("Map:\nhttps://www.openstreetmap.org/?mlat={lat:.5}&mlon={lng:.5}&zoom=18\n")
        }
        None => String::new(),
    };
    let body = format!(
        "{headline}\n\
         \n\
         Station:   {name}\n\
         {details}\
         Contract:  {contract}\n\
         Key:       {key}\n\
         Health:    {health} (was {previous})\n\
         Since:     {since}\n\
         Decided:   {decided}\n\
         Why:       {reason}\n\
         {map}\
         \n\
         -- \n\
         Sent by velib-alerts because you watch this station.\n",
        health = crate::health::health_name(change.health),
        previous = crate::health::health_name(change.previous),
        decided = format_utc(change.decided_at),
        reason = clean(&change.reason),
    );
    let id = stable_id(
        &[
            change.key.as_str(),
            crate::health::health_name(change.health),
            &change.decided_at.to_string(),
            to.email.as_ref(),
        ],
        change.decided_at,
    );
    let message = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(subject)
        .message_id(Some(id))
        .user_agent(concat!("velib-alerts/", env!("CARGO_PKG_VERSION")).to_owned())
        .header(ContentType::TEXT_PLAIN)
        .body(body)?;
    Ok(message)
}

/// The body lines of what only some feeds say (e-bikes, out of service, returns): one line per
/// field the event has, none for a field it does not.
fn known_counts(event: &EmptyStationEvent) -> String {
    let mut lines = String::new();
    if let Some(n) = event.available_ebikes {
        lines += &format!("E-bikes:   {n} available\n");
    }
    if let Some(n) = event.bikes_out_of_service {
        lines += &format!("Broken:    {n} bikes out of service\n");
    }
    if let Some(n) = event.docks_out_of_service {
        lines += &format!("Docks:     {n} out of service\n");
    }
    if let Some(returning) = event.is_returning {
        lines += if returning {
            "Returns:   taken\n"
        } else {
            "Returns:   not taken\n"
        };
    }
    lines
}

/// Station text made safe for one line: control characters (CR, LF, tab, NUL…) become spaces,
/// runs of spaces collapse, and the result is trimmed and at most [`MAX_TEXT`] characters.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    let mut count = 0;
    // The model's rule first (bidirectional overrides too), then any control left as a space.
    for c in velib_model::text::printable(text).chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if count == MAX_TEXT {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

/// `<hash.time@velib-alerts.invalid>`: stable for the same event and recipient.
fn message_id(event: &EmptyStationEvent, to: &Mailbox) -> String {
    // The bikes' kinds keep the words they had before the other kinds existed, so a mail sent
    // again after an upgrade keeps its id.
    let kind = match event.kind {
        EmptinessKind::BecameEmpty => "empty",
        EmptinessKind::NoLongerEmpty => "back",
        other => other.as_str(),
    };
    let parts = [
        event.key.as_str(),
        kind,
        &event.event_time().to_string(),
        to.email.as_ref(),
    ];
    stable_id(&parts, event.event_time())
}

/// `<hash.time@velib-alerts.invalid>`, the hash of `parts`.
fn stable_id(parts: &[&str], time: i64) -> String {
    // FNV-1a, not `DefaultHasher`: the id must stay the same across builds and restarts.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("<{hash:016x}.{time}@velib-alerts.invalid>")
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS UTC`, the calendar being the `time`
/// crate's. A time beyond the years ±9999 (a broken feed) is written as milliseconds.
///
/// ```
/// assert_eq!(velib_alerts::mail::format_utc(1493734764000), "2017-05-02 14:19:24 UTC");
/// ```
pub fn format_utc(epoch_ms: i64) -> String {
    match velib_model::stats::utc_date_time(epoch_ms, ' ') {
        Some(date) => format!("{date} UTC"),
        None => format!("{epoch_ms} ms after 1970-01-01 UTC"),
    }
}

/// A mail as a mail client shows it: `From`, `To`, `Subject` and `Message-ID` decoded, a blank
/// line, and the body text, with the transfer encodings (quoted-printable, base64, RFC 2047
/// encoded words) undone. What goes on the wire is for servers; a dry run is for a person, and
/// `=C3=89` is not how anyone writes `É`.
///
/// The message is read back with `mail-parser`, so what is shown is what a client would decode
/// from the bytes an SMTP server would get, not a second rendering of the same text.
pub fn readable(message: &Message) -> String {
    let raw = message.formatted();
    let Some(parsed) = mail_parser::MessageParser::default().parse(&raw) else {
        // Not reachable for a message lettre built; the wire form is better than nothing.
        return String::from_utf8_lossy(&raw).into_owned();
    };
    let mailboxes = |a: Option<&mail_parser::Address<'_>>| {
        a.map(|a| {
            a.iter()
                .map(|m| match (m.name(), m.address()) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (None, Some(address)) => address.to_owned(),
                    (name, None) => name.unwrap_or_default().to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut out = format!(
        "From: {}\nTo: {}\nSubject: {}\nMessage-ID: <{}>\n\n",
        mailboxes(parsed.from()),
        mailboxes(parsed.to()),
        parsed.subject().unwrap_or_default(),
        parsed.message_id().unwrap_or_default(),
    );
    out.push_str(
        &parsed
            .body_text(0)
            .unwrap_or_default()
            .replace("\r\n", "\n"),
    );
    out
}

/// How a failed send should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The server is unreachable, timed out, failed the TLS handshake or answered 4xx: retry
    /// the same mail later, and consume nothing further meanwhile.
    Transient,
    /// The server refused the credentials (530, 534, 535, 538). Nothing is wrong with the mail,
    /// so it is retried like a transient failure (no alert is lost) while the log says to fix
    /// `SMTP_USERNAME`/`SMTP_PASSWORD`.
    Authentication,
    /// The server refused this mail for good (another 5xx, e.g. 550 unknown recipient): log it
    /// and skip it; retrying would only be refused again.
    Permanent,
}

impl FailureClass {
    /// `transient`, `authentication` or `permanent`: the `class` label of the failure metric.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Authentication => "authentication",
            FailureClass::Permanent => "permanent",
        }
    }

    /// Whether the mail should be retried.
    pub fn is_retryable(self) -> bool {
        self != FailureClass::Permanent
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mail that was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class} failure: {message}")]
pub struct SendError {
    /// What to do about it.
    pub class: FailureClass,
    /// What happened, from the mail library or server; never contains credentials.
    pub message: String,
}

impl SendError {
    /// Classifies a lettre SMTP error. See [`FailureClass`] for the rules.
    pub fn from_smtp(err: &lettre::transport::smtp::Error) -> SendError {
        let code = err.status().map(u16::from);
        let class = match code {
            Some(530 | 534 | 535 | 538) => FailureClass::Authentication,
            _ if err.is_permanent() => FailureClass::Permanent,
            _ => FailureClass::Transient,
        };
        // lettre's Display stops at the outermost error ("Connection error"); the cause
        // ("Connection refused") is what a user needs.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        SendError { class, message }
    }
}

/// Something that delivers a composed mail: SMTP for real, stdout for `--dry-run`.
pub trait Mailer: Send + Sync {
    /// Sends `message` to the recipients of its envelope. `Ok` means the server accepted it
    /// (SMTP `250` after `DATA`); only then may the event's offset be stored.
    fn send(&self, message: &Message) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Sends through an SMTP server with lettre's async transport.
///
/// # Timeouts
///
/// lettre's async transport applies its timeout to the TCP connection only: a server that
/// accepts the connection and then says nothing (no greeting), or stops answering in the
/// middle of a transaction, would hold a send forever, and with it every alert behind it. So
/// each send as a whole (connection, greeting, TLS, authentication and every reply up to the
/// `250` after `DATA`) gets a deadline of its own; a send that misses it is a
/// [`FailureClass::Transient`] failure, retried like an outage.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    timeout: Duration,
}

impl SmtpMailer {
    /// A mailer sending through `transport`, giving up a mail after `timeout`; `server` is its
    /// redacted description, for logs and errors (see
    /// [`SmtpUrl::mailer`](crate::smtp_url::SmtpUrl::mailer), which builds all three).
    pub fn new(
        transport: AsyncSmtpTransport<Tokio1Executor>,
        server: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        SmtpMailer {
            transport,
            server: server.into(),
            timeout,
        }
    }

    /// The server, as given to [`SmtpMailer::new`] (no password).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Checks that the server answers (connection, greeting, `EHLO`, `NOOP`), within the
    /// timeout. A start-up check for the operator: a failure is not fatal, since alerts are
    /// held until the server accepts them.
    ///
    /// # Errors
    ///
    /// Why the server is not usable now.
    pub async fn check(&self) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(SendError {
                class: FailureClass::Transient,
                message: format!("the mail server {} did not accept NOOP", self.server),
            }),
            Ok(Err(e)) => Err(SendError::from_smtp(&e)),
            Err(_) => Err(self.silent()),
        }
    }

    /// The error for a server that did not finish within the timeout.
    fn silent(&self) -> SendError {
        SendError {
            class: FailureClass::Transient,
            message: format!(
                "the mail server {} did not answer within {:?} (--smtp-timeout / SMTP_TIMEOUT): \
                 it accepts connections but is silent or stuck",
                self.server, self.timeout
            ),
        }
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mailer for SmtpMailer {
    async fn send(&self, message: &Message) -> Result<(), SendError> {
        // Dropping lettre's future at the deadline drops its connection (no pool is enabled),
        // so a stuck server is left behind, not waited for.
        match tokio::time::timeout(self.timeout, self.transport.send(message.clone())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SendError::from_smtp(&e)),
            Err(_) => Err(self.silent()),
        }
    }
}

/// `--dry-run`: writes each mail as a person reads it ([`readable`]) to a writer (stdout by
/// default) and reports it accepted.
#[derive(Debug)]
pub struct DryRunMailer<W> {
    out: Mutex<W>,
}

impl DryRunMailer<std::io::Stdout> {
    /// Writes to stdout.
    pub fn stdout() -> Self {
        DryRunMailer::new(std::io::stdout())
    }
}

impl<W: Write + Send> DryRunMailer<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        DryRunMailer {
            out: Mutex::new(out),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<W: Write + Send> Mailer for DryRunMailer<W> {
    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let to: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        let result = writeln!(out, "----- dry run: mail to {} -----", to.join(", "))
            .and_then(|()| out.write_all(readable(message).as_bytes()))
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush());
        result.map_err(|e| SendError {
            class: FailureClass::Transient,
            message: format!("writing the dry-run mail: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::{Position, Station, StationId, Status};

    pub(crate) fn event(name: &str, address: &str) -> EmptyStationEvent {
        let station = Station {
            number: StationId::Number(1001),
            contract_name: "Lyon".into(),
            name: name.into(),
            address: address.into(),
            position: Position {
                lat: 45.764,
                lng: 4.8357,
            },
            banking: true,
            bonus: false,
            bike_stands: 20,
            available_bike_stands: 20,
            available_bikes: 0,
            status: Status::Open,
            last_update: Some(1_493_734_764_000),
            snapshot_at: None,
            bikes_by_type: None,
            bikes_out_of_service: None,
            docks_out_of_service: None,
            is_returning: None,
        };
        EmptyStationEvent::new(EmptinessKind::BecameEmpty, &station, 1_493_734_765_000)
    }

    fn mbox(s: &str) -> Mailbox {
        s.parse().unwrap()
    }

    /// The header section of a formatted message, one entry per header (continuation lines
    /// folded back in).
    fn header_names(raw: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\r\n\r\n").next().unwrap();
        head.split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(-1_000), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_utc(1_709_251_199_999), "2024-02-29 23:59:59 UTC");
        assert_eq!(format_utc(-62_135_596_800_000), "0001-01-01 00:00:00 UTC");
        assert_eq!(format_utc(253_402_300_799_999), "9999-12-31 23:59:59 UTC");
        assert_eq!(
            format_utc(i64::MAX),
            format!("{} ms after 1970-01-01 UTC", i64::MAX)
        );
    }

    #[test]
    fn clean_removes_control_characters_and_bounds_length() {
        assert_eq!(clean("  A\r\nBcc: x\t y  "), "A Bcc: x y");
        assert_eq!(
            clean("RUE\u{1b}[2J X\u{202E}Y\u{7}"),
            "RUE\u{FFFD}[2J X\u{FFFD}Y\u{FFFD}"
        );
        let long = "é".repeat(500);
        assert_eq!(clean(&long).chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn lettre_encodes_crlf_in_headers() {
        // Layer 1 on its own: a raw CR/LF in a subject handed straight to lettre.
        let message = Message::builder()
            .from(mbox("a@example.com"))
            .to(mbox("b@example.com"))
            .subject("Empty\r\nBcc: victim@example.com\r\nX-Injected: yes")
            .body(String::from("body"))
            .unwrap();
        let raw = message.formatted();
        let names = header_names(&raw);
        assert!(
            !names.iter().any(|n| n == "bcc" || n == "x-injected"),
            "{names:?}"
        );
        assert_eq!(names.iter().filter(|n| *n == "subject").count(), 1);
    }

    #[test]
    fn composed_mail_names_the_station() {
        let e = event("1001 - PLACE BELLECOUR", "Place Bellecour, 69002 Lyon");
        let message = compose(
            &e,
            &mbox("Velib <alerts@example.com>"),
            &mbox("me@example.com"),
        )
        .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(
            raw.contains("Subject: No bikes left at 1001 - PLACE BELLECOUR (Lyon)"),
            "{raw}"
        );
        assert!(raw.contains("Place Bellecour, 69002 Lyon"), "{raw}");
        assert!(raw.contains("2017-05-02 14:19:24 UTC"), "{raw}");
        assert!(
            raw.contains("?mlat=45.76400&mlon=4.83570&zoom=18\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Content-Transfer-Encoding: 7bit"), "{raw}");
        assert_eq!(message.envelope().to().len(), 1);
    }

    #[test]
    fn message_id_is_stable_per_event_and_recipient() {
        let e = event("x", "y");
        let (a, b) = (mbox("a@example.com"), mbox("b@example.com"));
        assert_eq!(message_id(&e, &a), message_id(&e, &a));
        assert_ne!(message_id(&e, &a), message_id(&e, &b));
    }

    #[test]
    fn dry_run_writes_the_mail() {
        let mailer = DryRunMailer::new(Vec::new());
        let message = compose(
            &event("Gare", "Rue"),
            &mbox("a@example.com"),
            &mbox("b@example.com"),
        )
        .unwrap();
        futures::executor::block_on(mailer.send(&message)).unwrap();
        let out = String::from_utf8(mailer.into_inner()).unwrap();
        assert!(out.contains("dry run: mail to b@example.com"), "{out}");
        assert!(
            out.contains("Subject: No bikes left at Gare (Lyon)"),
            "{out}"
        );
    }

    #[test]
    fn dry_run_shows_accents_as_written() {
        // On the wire, this subject is an RFC 2047 encoded word and this body
        // quoted-printable (`=C3=89`); a person reads the letters.
        let mut e = event("Gare Saint-Étienne", "Rue de l'Église, Nîmes");
        e.kind = EmptinessKind::EbikesGone;
        e.available_ebikes = Some(0);
        let message = compose(&e, &mbox("Vélo <a@example.com>"), &mbox("b@example.com")).unwrap();
        let wire = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(!wire.contains("Saint-Étienne"), "{wire}");
        let mailer = DryRunMailer::new(Vec::new());
        futures::executor::block_on(mailer.send(&message)).unwrap();
        let out = String::from_utf8(mailer.into_inner()).unwrap();
        assert!(
            out.contains("Subject: No e-bikes left at Gare Saint-Étienne (Lyon)\n"),
            "{out}"
        );
        assert!(out.contains("From: Vélo <a@example.com>\n"), "{out}");
        assert!(out.contains("Address:   Rue de l'Église, Nîmes\n"), "{out}");
        assert!(out.contains("E-bikes:   0 available\n"), "{out}");
        assert!(!out.contains("=C3") && !out.contains("=?utf-8"), "{out}");
        assert!(!out.contains('\r'), "{out}");
    }

    #[test]
    fn each_kind_says_what_happened_and_only_known_counts_are_shown() {
        let mut e = event("Gare", "Rue");
        let subjects: Vec<String> = [
            EmptinessKind::EbikesGone,
            EmptinessKind::EbikesBack,
            EmptinessKind::ReturnsStopped,
            EmptinessKind::ReturnsResumed,
        ]
        .into_iter()
        .map(|kind| {
            e.kind = kind;
            let m = compose(&e, &mbox("a@example.com"), &mbox("b@example.com")).unwrap();
            m.headers().get_raw("Subject").unwrap().to_owned()
        })
        .collect();
        assert_eq!(
            subjects,
            [
                "No e-bikes left at Gare (Lyon)",
                "E-bikes are back at Gare (Lyon)",
                "No returns at Gare (Lyon)",
                "Returns are back at Gare (Lyon)"
            ]
        );
        // The feed gave none of the newer fields: no line for them, and no 0.
        let body = readable(&compose(&e, &mbox("a@example.com"), &mbox("b@example.com")).unwrap());
        assert!(
            !body.contains("E-bikes:") && !body.contains("Returns:"),
            "{body}"
        );
        e.bikes_out_of_service = Some(2);
        e.docks_out_of_service = Some(0);
        e.is_returning = Some(false);
        let body = readable(&compose(&e, &mbox("a@example.com"), &mbox("b@example.com")).unwrap());
        assert!(
            body.contains("Broken:    2 bikes out of service\n"),
            "{body}"
        );
        assert!(body.contains("Docks:     0 out of service\n"), "{body}");
        assert!(body.contains("Returns:   not taken\n"), "{body}");
        // Each kind has an id of its own; the bikes' ids are what they were.
        let ids: std::collections::HashSet<String> = [
            EmptinessKind::BecameEmpty,
            EmptinessKind::EbikesGone,
            EmptinessKind::ReturnsStopped,
        ]
        .into_iter()
        .map(|kind| {
            e.kind = kind;
            message_id(&e, &mbox("b@example.com"))
        })
        .collect();
        assert_eq!(ids.len(), 3);
    }
}
