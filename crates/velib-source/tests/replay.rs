//! Replay of NDJSON recordings: order, pace on tokio's virtual clock, looping, bad lines.

use crate::support::{TempFile, v1_station};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use velib_model::Snapshot;
use velib_source::{ReplaySource, SimulateConfig, SimulateSource, StationSource};

fn line(taken_at: i64, bikes: u32) -> String {
    let mut station = v1_station("Lyon", 1001, bikes);
    station["last_update"] = json!(taken_at - 500);
    json!({"taken_at": taken_at, "stations": [station]}).to_string()
}

fn recording(name: &str, times: &[i64]) -> TempFile {
    let text: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| line(*t, i as u32))
        .collect();
    TempFile::new(name, &(text.join("\n") + "\n"))
}

#[tokio::test]
async fn replays_what_the_simulator_recorded() {
    // The producer records `Snapshot`s with serde; any of them must come back identical.
    let mut sim = SimulateSource::new(SimulateConfig {
        stations: 200,
        start_ms: Some(1_750_000_000_000),
        ..SimulateConfig::default()
    });
    let recorded: Vec<Snapshot> = (0..5).map(|_| sim.next_snapshot()).collect();
    let text: String = recorded
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    let file = TempFile::new("sim.ndjson", &text);
    let mut replay = ReplaySource::new(&file.0, 0.0, false).unwrap();
    assert!(
        replay.describe().contains("as fast as possible"),
        "{}",
        replay.describe()
    );
    for want in &recorded {
        // A recording made without `snapshot_at` plays back stamped with its poll times.
        assert_eq!(replay.fetch().await.unwrap(), want.clone().stamped());
    }
    let err = replay.fetch().await.unwrap_err();
    assert_eq!(err.class(), "exhausted");
    assert!(err.is_permanent());
    assert_eq!(
        replay.fetch().await.unwrap_err().class(),
        "exhausted",
        "stays exhausted"
    );
    assert_eq!(replay.skipped_records(), 0);
}

#[tokio::test(start_paused = true)]
async fn keeps_the_recorded_pace_scaled_by_speed() {
    let file = recording("pace.ndjson", &[0, 10_000, 30_000, 30_000]);
    let mut replay = ReplaySource::new(&file.0, 2.0, false).unwrap();
    let mut at = Vec::new();
    for _ in 0..4 {
        replay.fetch().await.unwrap();
        at.push(Instant::now());
    }
    let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Virtual time: exact, and independent of how loaded the machine is.
    assert_eq!(
        gaps,
        [
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::ZERO
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn speed_zero_does_not_wait() {
    let file = recording("fast.ndjson", &[0, 3_600_000, 7_200_000]);
    let mut replay = ReplaySource::new(&file.0, 0.0, false).unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        replay.fetch().await.unwrap();
    }
    assert_eq!(Instant::now() - start, Duration::ZERO);
}

#[tokio::test]
async fn looping_shifts_time_forward() {
    let file = recording("loop.ndjson", &[1_000, 2_000, 4_000]);
    let mut replay = ReplaySource::new(&file.0, 0.0, true).unwrap();
    let taken: Vec<i64> = {
        let mut v = Vec::new();
        for _ in 0..7 {
            let s = replay.fetch().await.unwrap();
            assert_eq!(s.stations[0].last_update, Some(s.taken_at - 500));
            v.push(s.taken_at);
        }
        v
    };
    // Span 3 s plus the last gap (2 s): each pass is 5 s later than the previous one.
    assert_eq!(taken, [1_000, 2_000, 4_000, 6_000, 7_000, 9_000, 11_000]);
}

#[tokio::test]
async fn bad_lines_and_stations_are_skipped_and_counted() {
    let mut bad_station = v1_station("Lyon", 2, 1);
    bad_station["position"] = json!("here");
    let text = [
        line(1_000, 1),
        "{not json".to_owned(),
        String::new(),
        json!({"stations": []}).to_string(),
        json!({"taken_at": 2_000, "stations": [v1_station("Lyon", 1, 1), bad_station]}).to_string(),
    ]
    .join("\n");
    let file = TempFile::new("bad.ndjson", &text);
    let mut replay = ReplaySource::new(&file.0, 0.0, false).unwrap();
    assert_eq!(replay.fetch().await.unwrap().taken_at, 1_000);
    let second = replay.fetch().await.unwrap();
    assert_eq!(second.taken_at, 2_000);
    assert_eq!(second.stations.len(), 1);
    // Two lines that are not snapshots, one unreadable station.
    assert_eq!(replay.skipped_records(), 3);
    assert_eq!(replay.fetch().await.unwrap_err().class(), "exhausted");
}

#[tokio::test]
async fn a_recording_without_snapshots_is_malformed_even_when_looping() {
    let file = TempFile::new("empty.ndjson", "\n\ngarbage\n");
    let mut replay = ReplaySource::new(&file.0, 0.0, true).unwrap();
    let err = replay.fetch().await.unwrap_err();
    assert_eq!(err.class(), "malformed");
    assert!(err.to_string().contains("no readable snapshot"), "{err}");
}

#[tokio::test]
async fn a_missing_recording_is_a_config_error() {
    let err = ReplaySource::new("/nonexistent/velib/recording.ndjson", 1.0, false).unwrap_err();
    assert_eq!(err.class(), "config");
    assert!(err.to_string().contains("replay:<file>"), "{err}");
}
