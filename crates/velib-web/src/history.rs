//! Each station's hourly statistics, read from the monitor's `velib-station-stats` topic, and
//! the history endpoint's rows.
//!
//! Pure: no I/O and no clock; times come in as arguments (epoch milliseconds).
//!
//! # What is kept
//!
//! The topic is compacted and keyed by station and window, so reading it from the beginning
//! gives the latest record of every station-window it still holds; a window read twice
//! replaces the first. Memory is bounded: each station keeps its latest
//! [`HistoryIndex::windows_per_station`] windows (168 by default, the last 7 days of hourly
//! windows), the oldest being dropped first. Nothing is written back: a restarted velib-web
//! reads the topic again, so a restart loses nothing the topic holds.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use velib_model::stats::{StationStats, rfc3339_utc};

/// Hourly windows kept per station by default: 7 days.
pub const DEFAULT_WINDOWS_PER_STATION: usize = 7 * 24;

/// How far back the history endpoint looks when `from` is not given: 24 hours before `to`.
pub const DEFAULT_SPAN_MS: i64 = 24 * 3_600_000;

/// Every station's latest windows, by window start.
#[derive(Debug, Default)]
pub struct HistoryIndex {
    windows_per_station: usize,
    stations: HashMap<String, BTreeMap<i64, StationStats>>,
}

impl HistoryIndex {
    /// An empty index keeping at most `windows_per_station` windows per station.
    pub fn new(windows_per_station: usize) -> HistoryIndex {
        HistoryIndex {
            windows_per_station,
            stations: HashMap::new(),
        }
    }

    /// The most windows kept per station.
    pub fn windows_per_station(&self) -> usize {
        self.windows_per_station
    }

    /// Stations with at least one window.
    pub fn len(&self) -> usize {
        self.stations.len()
    }

    /// Windows held, all stations together.
    pub fn windows(&self) -> usize {
        self.stations.values().map(BTreeMap::len).sum()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.stations.is_empty()
    }

    /// Applies one record of the statistics topic. An empty payload (a compaction tombstone)
    /// is ignored.
    ///
    /// # Errors
    ///
    /// A payload that is not a [`StationStats`].
    pub fn apply_record(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.insert(StationStats::from_json(bytes)?);
        Ok(())
    }

    /// Keeps one window, replacing the same station-window, and drops the oldest windows past
    /// the limit.
    pub fn insert(&mut self, stats: StationStats) {
        if self.windows_per_station == 0 {
            return;
        }
        let windows = self
            .stations
            .entry(stats.key.as_str().to_owned())
            .or_default();
        windows.insert(stats.window_start, stats);
        while windows.len() > self.windows_per_station {
            windows.pop_first();
        }
    }

    /// Whether the station has a window.
    pub fn knows(&self, key: &str) -> bool {
        self.stations.contains_key(key)
    }

    /// The station's windows that start in `[from, to)`, oldest first.
    pub fn rows(&self, key: &str, from: i64, to: i64) -> Vec<&StationStats> {
        if from >= to {
            return Vec::new();
        }
        self.stations
            .get(key)
            .map(|w| w.range(from..to).map(|(_, s)| s).collect())
            .unwrap_or_default()
    }

    /// The end of the station's latest window with a rental or a return (epoch ms): the
    /// popup's "last activity".
    pub fn last_activity(&self, key: &str) -> Option<i64> {
        self.stations
            .get(key)?
            .values()
            .rev()
            .find_map(|s| (s.rentals > 0 || s.returns > 0).then_some(s.window_end))
    }
}

/// Reads the endpoint's `from` and `to` (RFC 3339, any offset) into epoch ms: `to` defaults to
/// `now`, `from` to [`DEFAULT_SPAN_MS`] before `to`.
///
/// # Errors
///
/// A message naming the parameter and what is wrong.
pub fn parse_range(from: Option<&str>, to: Option<&str>, now: i64) -> Result<(i64, i64), String> {
    let to = match to {
        Some(text) => parse_time("to", text)?,
        None => now,
    };
    let from = match from {
        Some(text) => parse_time("from", text)?,
        None => to - DEFAULT_SPAN_MS,
    };
    if from > to {
        return Err(format!(
            "from ({}) is after to ({})",
            rfc3339_utc(from),
            rfc3339_utc(to)
        ));
    }
    Ok((from, to))
}

fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("{name}={text:?} is not an RFC 3339 time such as 2026-07-02T08:00:00Z ({e})")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{name}={text:?} is out of range"))
}

/// The value of `name` in a URL query (`a=1&b=2`), percent-decoded; a `+` stays a `+`, so
/// an offset typed by hand (`from=2026-07-02T10:00:00+02:00`) reads as meant. The last one
/// wins when a name is given twice.
///
/// # Errors
///
/// A value that is not UTF-8 once decoded, naming the parameter.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            found = Some(
                percent_decode(value)
                    .ok_or_else(|| format!("{name}: not valid percent-encoded UTF-8"))?,
            );
        }
    }
    Ok(found)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The rows as the endpoint's JSON: the station, the range and the windows as the topic has
/// them.
pub fn rows_json(key: &str, from: i64, to: i64, rows: &[&StationStats]) -> Value {
    json!({
        "key": key,
        "from": rfc3339_utc(from),
        "to": rfc3339_utc(to),
        "windows": rows,
    })
}

/// The CSV header of [`rows_csv`].
const CSV_HEADER: &str = "key,window_start,window_end,records,rentals,returns,bikes_min,\
bikes_max,bikes_mean,free_docks_min,free_docks_max,free_docks_mean,minutes_known,\
minutes_empty,minutes_full,minutes_closed,minutes_docks_out_of_service";

/// The rows as CSV (RFC 4180, CRLF line ends), one line per window, times in RFC 3339.
pub fn rows_csv(rows: &[&StationStats]) -> String {
    let mut out = format!("{CSV_HEADER}\r\n");
    for s in rows {
        let cells = [
            csv_cell(s.key.as_str()),
            rfc3339_utc(s.window_start),
            rfc3339_utc(s.window_end),
            s.records.to_string(),
            s.rentals.to_string(),
            s.returns.to_string(),
            s.bikes.min.to_string(),
            s.bikes.max.to_string(),
            s.bikes.mean.to_string(),
            s.free_docks.min.to_string(),
            s.free_docks.max.to_string(),
            s.free_docks.mean.to_string(),
            s.minutes_known.to_string(),
            s.minutes_empty.to_string(),
            s.minutes_full.to_string(),
            s.minutes_closed.to_string(),
            s.minutes_docks_out_of_service.to_string(),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV cell of text from outside: quoted when it holds a comma, a quote or a line end,
/// and prefixed with `'` when it starts with `=`, `+`, `-`, `@`, a tab or a carriage return,
/// so a spreadsheet never reads it as a formula (OWASP's CSV injection advice).
pub fn csv_cell(text: &str) -> String {
    let mut cell = String::with_capacity(text.len() + 3);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(text);
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use velib_model::stats::Level;

    const HOUR: i64 = 3_600_000;

    fn window(key: &str, start: i64, rentals: u32, returns: u32) -> StationStats {
        let level = Level {
            min: 1,
            max: 3,
            mean: 2.0,
        };
        StationStats {
            version: StationStats::VERSION,
            key: key.parse().unwrap(),
            window_start: start,
            window_end: start + HOUR,
            records: 4,
            late_records: 0,
            rentals,
            returns,
            by_type: None,
            bikes: level,
            free_docks: level,
            minutes_known: 60.0,
            minutes_empty: 0.0,
            minutes_full: 0.0,
            minutes_docks_out_of_service: 0.0,
            minutes_closed: 0.0,
        }
    }

    #[test]
    fn windows_are_kept_per_station_up_to_the_limit_and_replaced_by_key() {
        let mut index = HistoryIndex::new(3);
        for h in 0..5 {
            index.insert(window("lyon:1", h * HOUR, 1, 0));
        }
        index.insert(window("lyon:1", 4 * HOUR, 7, 0));
        index
            .apply_record(&window("lyon:2", 0, 0, 0).to_json())
            .unwrap();
        index.apply_record(b"").unwrap();
        assert!(index.apply_record(b"{}").is_err());
        let rows = index.rows("lyon:1", 0, 10 * HOUR);
        let starts: Vec<i64> = rows.iter().map(|s| s.window_start).collect();
        assert_eq!(starts, [2 * HOUR, 3 * HOUR, 4 * HOUR]);
        assert_eq!(rows[2].rentals, 7, "the later record of a window wins");
        assert_eq!(
            index.rows("lyon:1", 3 * HOUR, 4 * HOUR).len(),
            1,
            "to is exclusive"
        );
        assert!(index.rows("lyon:9", 0, HOUR).is_empty());
        assert_eq!((index.len(), index.knows("lyon:2")), (2, true));
    }

    #[test]
    fn last_activity_is_the_end_of_the_latest_window_with_rentals_or_returns() {
        let mut index = HistoryIndex::new(10);
        index.insert(window("lyon:1", 0, 0, 2));
        index.insert(window("lyon:1", HOUR, 0, 0));
        assert_eq!(index.last_activity("lyon:1"), Some(HOUR));
        index.insert(window("lyon:2", 0, 0, 0));
        assert_eq!(index.last_activity("lyon:2"), None);
    }

    #[test]
    fn range_defaults_and_errors_name_the_parameter() {
        let now = 100 * HOUR;
        assert_eq!(parse_range(None, None, now), Ok((76 * HOUR, now)));
        assert_eq!(
            parse_range(
                Some("2026-07-02T10:00:00+02:00"),
                Some("2026-07-02T09:00:00Z"),
                now
            ),
            Ok((1_782_979_200_000, 1_782_982_800_000))
        );
        let err = parse_range(Some("yesterday"), None, now).unwrap_err();
        assert!(err.starts_with("from=\"yesterday\""), "{err}");
        let err = parse_range(None, Some("2026-07-02"), now).unwrap_err();
        assert!(err.starts_with("to="), "{err}");
        let err = parse_range(
            Some("2026-07-02T09:00:00Z"),
            Some("2026-07-02T08:00:00Z"),
            now,
        )
        .unwrap_err();
        assert!(err.contains("after"), "{err}");
    }

    #[test]
    fn query_parameters_are_percent_decoded_and_plus_is_kept() {
        let q = Some("from=2026-07-02T10%3A00%3A00%2B02%3A00&to=2026-07-02T10:00:00+02:00&x");
        assert_eq!(
            query_param(q, "from").unwrap().as_deref(),
            Some("2026-07-02T10:00:00+02:00")
        );
        assert_eq!(
            query_param(q, "to").unwrap().as_deref(),
            Some("2026-07-02T10:00:00+02:00")
        );
        assert_eq!(query_param(q, "x").unwrap().as_deref(), Some(""));
        assert_eq!(query_param(q, "format").unwrap(), None);
        assert_eq!(query_param(None, "from").unwrap(), None);
        let err = query_param(Some("from=%ZZ"), "from").unwrap_err();
        assert!(err.starts_with("from:"), "{err}");
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("lyon:1"), "lyon:1");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@x"), "'@x");
        assert_eq!(csv_cell("+a,b"), "\"'+a,b\"");
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
        let w = window("=evil:1", 1_782_979_200_000, 2, 3);
        let csv = rows_csv(&[&w]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "'=evil:1,2026-07-02T08:00:00Z,2026-07-02T09:00:00Z,4,2,3,1,3,2,1,3,2,60,0,0,0,0"
        );
    }
}
