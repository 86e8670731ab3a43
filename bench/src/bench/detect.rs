//! Benchmark 1, the detection core, without a broker: v1 JSON bytes → `StationView` → `Detector` →
//! change lines, on one thread; and what the detector keeps per station.

use super::report::{Report, Row};
use super::{Sizes, median, proc_status_kb, rate};
use anyhow::{Result, bail};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;
use velib_model::{ChangeLine, Snapshot, Station, StationView, TrackedField};
use velib_monitor::{Detector, Verdict};
use velib_source::{SimulateConfig, SimulateSource};
use velib_stats::{Applied, HealthConfig, Published, StatsConfig, Tracker};

/// The simulated city every benchmark uses: seeded, ten contracts, 10 % of stations moving per
/// snapshot, a fixed start time so two runs see the same records.
pub fn city(stations: usize) -> SimulateSource {
    SimulateSource::new(city_config(stations))
}

pub fn city_config(stations: usize) -> SimulateConfig {
    SimulateConfig {
        seed: 2024,
        stations,
        contracts: 10,
        change_ratio: 0.1,
        // Now, to the second: Apache Kafka deletes records by their timestamps
        // (`retention.ms`, 7 days by default), so a city stamped years ago would be gone from
        // the topic before the monitor benchmark reads it. The seed alone decides the city.
        start_ms: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1_700_000_000_000, |d| d.as_secs() as i64 * 1000),
        ),
        ..SimulateConfig::default()
    }
}

/// The city's next snapshot with every station stamped with its `snapshot_at`, as the
/// producer publishes it: the detector orders records by it, and statistics place them in
/// their windows by it (an unstamped record is never counted).
fn stamped(src: &mut SimulateSource) -> Snapshot {
    src.next_snapshot().stamped()
}

/// The records of `snapshots` snapshots of a `stations` city, serialised as the producer does:
/// v1 fields, per-type counts, bikes and docks out of service, `is_returning` and `snapshot_at`.
pub fn payloads(stations: usize, snapshots: usize) -> Vec<Vec<u8>> {
    let mut src = city(stations);
    let mut out = Vec::with_capacity(stations * snapshots);
    for _ in 0..snapshots {
        out.extend(stamped(&mut src).stations.iter().map(Station::to_json));
    }
    out
}

/// Whether the records carry the fields real feeds give beyond v1, as the memory and
/// throughput figures assume; a city that lost them would make the figures flattering.
fn real_feed_shaped(payload: &[u8]) -> Result<()> {
    let station = StationView::from_json(payload)?;
    let shaped = station.snapshot_at.is_some()
        && station.bikes_by_type.as_ref().is_some_and(|t| t.len() >= 2)
        && station.bikes_out_of_service.is_some()
        && station.docks_out_of_service.is_some()
        && station.is_returning.is_some();
    if !shaped {
        bail!("the simulated records lack fields real feeds give: {station:?}");
    }
    Ok(())
}

/// A detector following free stands, keeping statistics and health (`--stats`, default
/// windows and health settings) when `stats` is set, as the monitor makes one per partition.
fn detector(stats: bool) -> Detector {
    let detector = Detector::new(TrackedField::AvailableBikeStands);
    if stats {
        detector.with_stats(Tracker::with_health(
            StatsConfig::default(),
            HealthConfig::default(),
        ))
    } else {
        detector
    }
}

/// What the monitor does with one record, minus the I/O: parse (the borrowed view the
/// monitor reads), judge, and write the change line (to a reused buffer). With statistics,
/// also what `--stats` adds: apply the record to the station's window and health, serialise
/// the windows and health changes it closes, and encode the station's statistics state for
/// the state changelog whenever the record was applied (every newer snapshot; the monitor
/// sends only the last of a transaction, but encodes each).
fn detect_all(payloads: &[Vec<u8>], stats: Stats) -> Result<u64> {
    let mut detector = detector(stats != Stats::Off);
    let mut changes = 0u64;
    let mut line = Vec::with_capacity(256);
    let mut published = Published::default();
    for p in payloads {
        let station = StationView::from_json(p)?;
        let verdict = detector.observe(&station);
        if let Some(tracker) = detector.stats_mut() {
            observe_stats(tracker, &station, &mut published, stats == Stats::On)?;
        }
        if let Verdict::Updated {
            change: Some((previous, current)),
            crossed,
            ..
        } = verdict
        {
            changes += 1;
            line.clear();
            writeln!(
                line,
                "{}",
                ChangeLine {
                    previous,
                    current,
                    address: &station.address,
                    contract: &station.contract_name,
                }
            )?;
            black_box(&line);
            black_box(crossed);
        }
    }
    Ok(changes)
}

/// Whether the detection core keeps statistics, and whether it also serialises their state
/// for the changelog (leaving it out says where the time goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stats {
    Off,
    On,
    WithoutChangelog,
}

/// The statistics' share of one record's work in the exactly-once monitor with `--stats`.
fn observe_stats(
    tracker: &mut Tracker,
    station: &StationView<'_>,
    published: &mut Published,
    changelog: bool,
) -> Result<()> {
    let key = station.key();
    let applied = tracker.observe(key.as_str(), station, published);
    for window in &published.stats {
        black_box((window.kafka_key(), window.to_json()));
    }
    for event in &published.health {
        black_box(event.to_json());
    }
    published.clear();
    if changelog && matches!(applied, Applied::First | Applied::Applied | Applied::Late) {
        // As the monitor does: a new buffer per state, in the changelog's binary form.
        let mut state = Vec::with_capacity(160);
        tracker.encode_state(key.as_str(), &mut state);
        black_box(state);
    }
    Ok(())
}

pub fn throughput(sizes: &Sizes, report: &mut Report) -> Result<()> {
    let payloads = payloads(sizes.stations, sizes.detect_snapshots);
    let n = payloads.len() as u64;
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    real_feed_shaped(&payloads[0])?;

    // Warm-up, then timed runs of the whole path, and of its two halves to say where time goes.
    detect_all(&payloads[..payloads.len() / 5], Stats::Off)?;
    let (mut whole, mut parse, mut observe) = (Vec::new(), Vec::new(), Vec::new());
    let mut changes = 0;
    for _ in 0..sizes.runs.max(3) {
        let t = Instant::now();
        changes = detect_all(&payloads, Stats::Off)?;
        whole.push(rate(n, t.elapsed()));

        // Parsing alone, each view dropped as the monitor drops it (collecting them would time
        // the growth of a vector of 200 k views as well), then kept for observing alone.
        let t = Instant::now();
        for p in &payloads {
            black_box(StationView::from_json(black_box(p))?);
        }
        parse.push(rate(n, t.elapsed()));
        let stations: Vec<StationView<'_>> = payloads
            .iter()
            .map(|p| StationView::from_json(p))
            .collect::<Result<_, _>>()?;

        let mut d = Detector::new(TrackedField::AvailableBikeStands);
        let t = Instant::now();
        for s in &stations {
            black_box(d.observe(s));
        }
        observe.push(rate(n, t.elapsed()));
    }
    if changes == 0 {
        bail!("the detection benchmark saw no change: the simulated data is wrong");
    }
    let whole_m = median(&whole);
    println!(
        "    {:.2} M records/s (parse alone {:.2} M/s, observe alone {:.2} M/s), {changes} changes",
        whole_m / 1e6,
        median(&parse) / 1e6,
        median(&observe) / 1e6
    );
    report.row(Row {
        bench: "1. detection core",
        case: format!(
            "JSON → change events, 1 thread ({n} records, {} B avg, {changes} changes)",
            bytes / payloads.len().max(1)
        ),
        broker: "none".into(),
        value: whole_m,
        unit: "records/s",
        baseline: None,
        target: Some((">= 3.5 M records/s", whole_m >= 3.5e6)),
        note: format!(
            "parse alone {:.2} M/s, observe alone {:.2} M/s",
            median(&parse) / 1e6,
            median(&observe) / 1e6
        ),
    });
    report.raw(
        "detect_throughput",
        serde_json::json!({
            "records": n, "payload_bytes": bytes, "changes": changes,
            "records_per_s_runs": whole, "parse_only_runs": parse, "observe_only_runs": observe,
        }),
    );
    stats_ratio(&payloads, sizes, report)
}

/// The detection core with statistics on against off, on the same records: runs alternate,
/// so that both see the same load on a shared machine.
fn stats_ratio(payloads: &[Vec<u8>], sizes: &Sizes, report: &mut Report) -> Result<()> {
    let n = payloads.len() as u64;
    detect_all(&payloads[..payloads.len() / 5], Stats::On)?;
    let (mut off, mut on, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.runs.max(3) {
        let t = Instant::now();
        let plain = detect_all(payloads, Stats::Off)?;
        off.push(rate(n, t.elapsed()));
        let t = Instant::now();
        let with_stats = detect_all(payloads, Stats::On)?;
        on.push(rate(n, t.elapsed()));
        let t = Instant::now();
        detect_all(payloads, Stats::WithoutChangelog)?;
        bare.push(rate(n, t.elapsed()));
        if plain != with_stats {
            bail!("statistics changed the changes seen: {plain} without, {with_stats} with");
        }
    }
    let (off_m, on_m, bare_m) = (median(&off), median(&on), median(&bare));
    let ratio = on_m / off_m;
    println!(
        "    statistics on {:.2} M records/s ({:.2} M/s without the changelog state), off {:.2} M records/s: {ratio:.2}×",
        on_m / 1e6,
        bare_m / 1e6,
        off_m / 1e6
    );
    report.row(Row {
        bench: "1. detection core",
        case: format!(
            "JSON → change events with statistics on (`--stats`) vs off, 1 thread, same {n} records"
        ),
        broker: "none".into(),
        value: on_m,
        unit: "records/s",
        baseline: Some(("statistics off".into(), off_m)),
        target: Some((">= 0.8× statistics off", ratio >= 0.8)),
        note: format!(
            "on: windows, health and the statistics state encoded for the changelog (binary) on \
             every newer snapshot, as the exactly-once monitor does; without that state {:.2} M/s \
             ({:.2}×); no broker",
            bare_m / 1e6,
            bare_m / off_m
        ),
    });
    report.raw(
        "detect_stats_throughput",
        serde_json::json!({
            "records": n, "stats_off_runs": off, "stats_on_runs": on, "ratio": ratio,
            "stats_without_changelog_runs": bare,
        }),
    );
    Ok(())
}

/// The resident set size in kB after giving the heap's free memory back to the system, so
/// that what earlier benchmarks freed (and the allocator kept) does not hide or inflate growth.
#[allow(unsafe_code)]
fn trimmed_rss_kb() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc: returns free heap memory to the system.
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory; it has no precondition.
        unsafe {
            malloc_trim(0);
        }
    }
    proc_status_kb("VmRSS").unwrap_or(0)
}

pub fn memory(_sizes: &Sizes, report: &mut Report) -> Result<()> {
    for stations in [100_000usize, 1_000_000] {
        let mut src = city(stations);
        let snapshot = stamped(&mut src);
        real_feed_shaped(&snapshot.stations[0].to_json())?;
        let before = trimmed_rss_kb();
        // The simulated stations count their bikes by type: following e-bikes measures the
        // state with the fields that came with them (a station's state is the same 16 bytes
        // whichever count is followed).
        let mut d = Detector::new(TrackedField::AvailableEbikes);
        for s in &snapshot.stations {
            d.observe(&s.view());
        }
        // Untrimmed, the growth also counts the smaller tables the detector outgrew on the
        // way, freed but kept by the allocator.
        let untrimmed = proc_status_kb("VmRSS").unwrap_or(0);
        let after = trimmed_rss_kb();
        let per_station = |kb: u64| (kb.saturating_sub(before) * 1024) as f64 / d.len() as f64;
        let heap = d.heap_bytes() as f64 / d.len() as f64;
        let (rss, rss_untrimmed) = (per_station(after), per_station(untrimmed));
        println!(
            "    {stations} stations: {heap:.1} B/station (tables), {rss:.1} B/station (RSS delta; {rss_untrimmed:.1} before trimming the heap)"
        );
        report.row(Row {
            bench: "1. detection memory",
            case: format!("bytes per tracked station, {stations} stations"),
            broker: "none".into(),
            value: heap,
            unit: "B/station",
            baseline: None,
            target: Some(("<= 64 B/station", heap <= 64.0 && rss <= 64.0)),
            note: format!(
                "`Detector::heap_bytes`; RSS delta {rss:.1} B/station, {rss_untrimmed:.1} with the outgrown tables the allocator keeps"
            ),
        });
        report.raw(
            &format!("detect_memory_{stations}"),
            serde_json::json!({
                "stations": d.len(), "heap_bytes": d.heap_bytes(),
                "rss_delta_bytes": after.saturating_sub(before) * 1024,
                "rss_delta_untrimmed_bytes": untrimmed.saturating_sub(before) * 1024,
            }),
        );
        black_box(&d);
    }
    Ok(())
}

/// What a monitor with `--stats` keeps per station: the detector's state and the statistics'
/// open window, health and profile, after two snapshots of the city (every station known, a
/// tenth of them moved within the window). Measured as [`memory`] measures the detector alone:
/// the process's RSS growth after `malloc_trim`, and the tables' own estimates beside it.
pub fn stats_memory(_sizes: &Sizes, report: &mut Report) -> Result<()> {
    for stations in [100_000usize, 1_000_000] {
        let mut src = city(stations);
        let snapshots = [stamped(&mut src), stamped(&mut src)];
        let before = trimmed_rss_kb();
        let mut d = detector(true);
        let mut published = Published::default();
        for snapshot in &snapshots {
            for s in &snapshot.stations {
                let view = s.view();
                d.observe(&view);
                if let Some(tracker) = d.stats_mut() {
                    tracker.observe(view.key().as_str(), &view, &mut published);
                    published.clear();
                }
            }
        }
        let untrimmed = proc_status_kb("VmRSS").unwrap_or(0);
        let after = trimmed_rss_kb();
        let tracker = d.stats().map_or(0, Tracker::heap_bytes);
        if d.stats().map_or(0, Tracker::len) != d.len() {
            bail!("the statistics do not know every station the detector knows");
        }
        let per_station = |kb: u64| (kb.saturating_sub(before) * 1024) as f64 / d.len() as f64;
        let (rss, rss_untrimmed) = (per_station(after), per_station(untrimmed));
        let (detector_b, tracker_b) = (
            d.heap_bytes() as f64 / d.len() as f64,
            tracker as f64 / d.len() as f64,
        );
        println!(
            "    {stations} stations with statistics: {rss:.1} B/station (RSS delta; {rss_untrimmed:.1} before trimming the heap); tables: detector {detector_b:.1} + statistics {tracker_b:.1} B/station"
        );
        report.row(Row {
            bench: "1. detection memory",
            case: format!(
                "bytes per tracked station with statistics (`--stats`, an open window each), {stations} stations"
            ),
            broker: "none".into(),
            value: rss,
            unit: "B/station",
            baseline: None,
            target: Some(("<= 256 B/station", rss <= 256.0)),
            note: format!(
                "RSS delta after `malloc_trim`, detector and statistics together; {rss_untrimmed:.1} with the outgrown tables the allocator keeps; estimates: `Detector::heap_bytes` {detector_b:.1} + `Tracker::heap_bytes` {tracker_b:.1}"
            ),
        });
        report.raw(
            &format!("detect_stats_memory_{stations}"),
            serde_json::json!({
                "stations": d.len(), "detector_heap_bytes": d.heap_bytes(),
                "tracker_heap_bytes": tracker,
                "rss_delta_bytes": after.saturating_sub(before) * 1024,
                "rss_delta_untrimmed_bytes": untrimmed.saturating_sub(before) * 1024,
            }),
        );
        black_box(&d);
    }
    Ok(())
}
