//! Benchmark 1, the detection core, without a broker: v1 JSON bytes → `StationView` → `Detector` →
//! change lines, on one thread; and what the detector keeps per station.

use super::report::{Report, Row};
use super::{Sizes, median, proc_status_kb, rate};
use anyhow::{Result, bail};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;
use velib_model::{ChangeLine, Station, StationView, TrackedField};
use velib_monitor::{Detector, Verdict};
use velib_source::{SimulateConfig, SimulateSource};

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

/// The records of `snapshots` snapshots of a `stations` city, serialised as the producer does.
pub fn payloads(stations: usize, snapshots: usize) -> Vec<Vec<u8>> {
    let mut src = city(stations);
    let mut out = Vec::with_capacity(stations * snapshots);
    for _ in 0..snapshots {
        out.extend(src.advance().stations.iter().map(Station::to_json));
    }
    out
}

/// What the monitor does with one record, minus the I/O: parse (the borrowed view the
/// monitor reads), judge, and write the change line (to a reused buffer).
fn detect_all(payloads: &[Vec<u8>]) -> Result<u64> {
    let mut detector = Detector::new(TrackedField::AvailableBikeStands);
    let mut changes = 0u64;
    let mut line = Vec::with_capacity(256);
    for p in payloads {
        let station = StationView::from_json(p)?;
        if let Verdict::Updated {
            change: Some((previous, current)),
            crossed,
            ..
        } = detector.observe(&station)
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

pub fn throughput(sizes: &Sizes, report: &mut Report) -> Result<()> {
    let payloads = payloads(sizes.stations, sizes.detect_snapshots);
    let n = payloads.len() as u64;
    let bytes: usize = payloads.iter().map(Vec::len).sum();

    // Warm-up, then timed runs of the whole path, and of its two halves to say where time goes.
    detect_all(&payloads[..payloads.len() / 5])?;
    let (mut whole, mut parse, mut observe) = (Vec::new(), Vec::new(), Vec::new());
    let mut changes = 0;
    for _ in 0..sizes.runs.max(3) {
        let t = Instant::now();
        changes = detect_all(&payloads)?;
        whole.push(rate(n, t.elapsed()));

        let t = Instant::now();
        let stations: Vec<StationView<'_>> = payloads
            .iter()
            .map(|p| StationView::from_json(p))
            .collect::<Result<_, _>>()?;
        parse.push(rate(n, t.elapsed()));

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
        target: Some((">= 1.5 M records/s", whole_m >= 1.5e6)),
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
        let snapshot = src.advance();
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
