//! Plays back a recording made with `velib-producer --record FILE`.

use crate::skips::PollSkips;
use crate::{SourceError, StationSource};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use velib_model::{Snapshot, Station};

/// A recording played back: NDJSON, one [`Snapshot`] per line (`{"taken_at": …, "stations":
/// […]}`), the format `velib-producer --record FILE` writes.
///
/// # Pace
///
/// The first snapshot is returned at once. Each later one is returned no earlier than the
/// recorded gap between it and its predecessor, divided by `speed`, after the previous
/// `fetch` returned: `speed` 1.0 replays in real time, 60.0 plays an hour in a minute, and 0.0
/// returns every snapshot at once. A consumer slower than the recording is never made to
/// wait. Gaps are replayed as recorded, a producer restart's long one included.
///
/// # Looping
///
/// Without looping, the snapshot after the last is [`SourceError::Exhausted`], a permanent
/// error. With looping, the recording starts over, and every `taken_at`, `snapshot_at` and `last_update` of
/// the new pass is shifted by the recording's span plus one gap, so time keeps moving forward
/// and the monitor, which ignores records older than what it has seen, keeps reacting.
///
/// # Errors in the recording
///
/// A line that is not a snapshot (bad JSON, no `taken_at`) is skipped and counted as one
/// skipped record, with its line number in the log; a station that cannot be read is skipped
/// and counted with its index in the line. A recording with no readable snapshot at all is a
/// [`SourceError::Malformed`]. Lines are not size-capped: recordings are local files the
/// operator chose.
///
/// ```no_run
/// use velib_source::{ReplaySource, StationSource};
///
/// # async fn run() -> Result<(), velib_source::SourceError> {
/// // Ten times faster than recorded, forever.
/// let mut replay = ReplaySource::new("lyon-monday.ndjson", 10.0, true)?;
/// loop {
///     let snapshot = replay.fetch().await?;
///     println!("{} stations at {}", snapshot.stations.len(), snapshot.taken_at);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ReplaySource {
    path: PathBuf,
    speed: f64,
    looped: bool,
    reader: Option<BufReader<tokio::fs::File>>,
    /// 1-based number of the last line read in the current pass.
    line: u64,
    /// Snapshots returned in the current pass.
    served_this_pass: u64,
    /// Recorded `taken_at` of the first and of the latest snapshot of the current pass.
    pass_first: Option<i64>,
    previous: Option<i64>,
    /// The latest positive recorded gap, used to space one pass from the next.
    last_gap: i64,
    /// Added to every timestamp of the current pass.
    shift: i64,
    /// When the previous snapshot was handed out.
    last_emit: Option<Instant>,
    exhausted: bool,
    skipped: u64,
}

impl ReplaySource {
    /// Opens `path` for playback at `speed` (see [Pace](#pace)), looping if `looped`.
    ///
    /// # Errors
    ///
    /// [`SourceError::Config`] when the file cannot be opened.
    pub fn new(path: impl AsRef<Path>, speed: f64, looped: bool) -> Result<Self, SourceError> {
        let path = path.as_ref().to_path_buf();
        let reader = open(&path)?;
        Ok(ReplaySource {
            path,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
            looped,
            reader: Some(reader),
            line: 0,
            served_this_pass: 0,
            pass_first: None,
            previous: None,
            last_gap: 1000,
            shift: 0,
            last_emit: None,
            exhausted: false,
            skipped: 0,
        })
    }

    /// Reads lines until one holds a snapshot; `None` at the end of the file.
    async fn next_recorded(&mut self) -> Result<Option<Snapshot>, SourceError> {
        let shown = self.path.display().to_string();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|source| SourceError::Io {
                    path: shown.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let label = format!("replay {shown} line {}", self.line);
            match parse_line(&buf, &label) {
                Ok((snapshot, skipped)) => {
                    self.skipped += skipped;
                    return Ok(Some(snapshot));
                }
                Err(reason) => {
                    self.skipped += 1;
                    tracing::warn!(file = %shown, line = self.line, %reason,
                        "skipped a recording line that is not a snapshot");
                }
            }
        }
    }

    fn exhausted_error(&self) -> SourceError {
        SourceError::Exhausted {
            path: self.path.display().to_string(),
        }
    }

    fn start_over(&mut self) -> Result<(), SourceError> {
        if let (Some(first), Some(last)) = (self.pass_first, self.previous) {
            self.shift += last - first + self.last_gap.max(1);
        }
        self.reader = Some(open(&self.path)?);
        self.line = 0;
        self.served_this_pass = 0;
        self.pass_first = None;
        Ok(())
    }

    /// Waits until the recorded gap before `recorded` (scaled by the speed) has passed since
    /// the previous snapshot was handed out.
    async fn pace(&mut self, recorded: i64) {
        let gap = match self.previous {
            Some(prev) if self.served_this_pass > 0 => recorded - prev,
            // The first snapshot of a later pass follows the last of the previous one.
            Some(_) => self.last_gap,
            None => 0,
        };
        if gap > 0 && self.served_this_pass > 0 {
            self.last_gap = gap;
        }
        if let (Some(last), true, true) = (self.last_emit, gap > 0, self.speed > 0.0) {
            let wait = Duration::from_secs_f64(gap as f64 / 1000.0 / self.speed);
            tokio::time::sleep_until(last + wait).await;
        }
    }
}

fn open(path: &Path) -> Result<BufReader<tokio::fs::File>, SourceError> {
    let file = std::fs::File::open(path).map_err(|err| {
        SourceError::Config(format!(
            "cannot open the recording {} (replay:<file>): {err}",
            path.display()
        ))
    })?;
    // A recording line holds a whole snapshot (a few MiB for big systems): read in big pieces.
    Ok(BufReader::with_capacity(
        256 * 1024,
        tokio::fs::File::from_std(file),
    ))
}

/// Reads one recording line into a snapshot, skipping the stations that cannot be read.
fn parse_line(line: &[u8], label: &str) -> Result<(Snapshot, u64), String> {
    let value: Value = serde_json::from_slice(line).map_err(|err| format!("not JSON: {err}"))?;
    let taken_at = value
        .get("taken_at")
        .and_then(Value::as_i64)
        .ok_or("no integer taken_at")?;
    let records = value
        .get("stations")
        .and_then(Value::as_array)
        .ok_or("no stations array")?;
    let mut skips = PollSkips::new(label);
    let mut stations = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        match Station::from_value(record) {
            Ok(s) => stations.push(s),
            Err(err) => skips.skip(index, &err),
        }
    }
    let skipped = skips.finish(stations.len());
    Ok((Snapshot { taken_at, stations }, skipped))
}

impl StationSource for ReplaySource {
    fn describe(&self) -> String {
        let pace = if self.speed > 0.0 {
            format!("{}x", self.speed)
        } else {
            "as fast as possible".to_owned()
        };
        let looping = if self.looped { ", looping" } else { "" };
        format!("replay of {} ({pace}{looping})", self.path.display())
    }

    async fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        if self.exhausted {
            return Err(self.exhausted_error());
        }
        let snapshot = match self.next_recorded().await? {
            Some(s) => s,
            None if self.served_this_pass == 0 => {
                // An empty pass (an empty file, or nothing readable in it) would loop forever.
                self.exhausted = true;
                return Err(SourceError::Malformed {
                    url: self.path.display().to_string(),
                    reason: "the recording holds no readable snapshot".to_owned(),
                    content_type: "application/x-ndjson".to_owned(),
                    first_bytes: String::new(),
                });
            }
            None if !self.looped => {
                self.exhausted = true;
                self.reader = None;
                return Err(self.exhausted_error());
            }
            None => {
                self.start_over()?;
                match self.next_recorded().await? {
                    Some(s) => s,
                    None => {
                        self.exhausted = true;
                        return Err(self.exhausted_error());
                    }
                }
            }
        };
        let recorded = snapshot.taken_at;
        self.pace(recorded).await;
        self.previous = Some(recorded);
        self.pass_first.get_or_insert(recorded);
        self.served_this_pass += 1;
        self.last_emit = Some(Instant::now());
        // A recording made before `snapshot_at` existed gets the recorded poll time, as the
        // live poll would have; shifted with the rest on the next pass.
        let mut snapshot = snapshot.stamped();
        if self.shift != 0 {
            snapshot.taken_at += self.shift;
            for station in &mut snapshot.stations {
                if let Some(t) = station.last_update.as_mut() {
                    *t += self.shift;
                }
                if let Some(t) = station.snapshot_at.as_mut() {
                    *t += self.shift;
                }
            }
        }
        Ok(snapshot)
    }

    fn skipped_records(&self) -> u64 {
        self.skipped
    }
}
