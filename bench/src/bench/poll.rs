//! Benchmark 5, one poll round over 1,500 GBFS systems served by a local HTTP server.

use super::http::{Routes, Server};
use super::report::{Report, Row};
use super::{proc_status_kb, reset_peak_rss};
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use velib_source::{GbfsSource, GbfsTarget, SourceOptions, StationSource};

const SYSTEMS: usize = 1_500;

/// Stations of system `i`: most systems are small, a few are city-sized, as in the public
/// GBFS catalogue (Citi Bike and Vélib' have about 1,500 stations, most systems under 200).
fn stations_of(i: usize) -> usize {
    match i % 100 {
        0 => 1_500,
        1..=4 => 600,
        _ => 10 + (i * 37) % 150,
    }
}

fn system_files(i: usize) -> [(String, Vec<u8>); 4] {
    let n = stations_of(i);
    let base = format!("/sys{i}");
    let discovery = r#"{"last_updated":1700000000,"ttl":60,"version":"2.3","data":{"en":{"feeds":[{"name":"system_information","url":"system_information.json"},{"name":"station_information","url":"station_information.json"},{"name":"station_status","url":"station_status.json"}]}}}"#.to_owned();
    let system = format!(
        r#"{{"last_updated":1700000000,"ttl":60,"version":"2.3","data":{{"system_id":"bench_{i}","language":"en","name":"Bench system {i}","timezone":"Europe/Paris","operator":"velib bench"}}}}"#
    );
    let mut info =
        String::from(r#"{"last_updated":1700000000,"ttl":60,"version":"2.3","data":{"stations":["#);
    let mut status = info.clone();
    for s in 0..n {
        let sep = if s == 0 { "" } else { "," };
        let _ = write!(
            info,
            r#"{sep}{{"station_id":"{s}","name":"{s:04} - Place de la République Nord","short_name":"{s}","lat":48.8{s:05},"lon":2.3{s:05},"address":"{s} Avenue de la République","post_code":"75011","capacity":{},"rental_methods":["KEY","CREDITCARD","TRANSITCARD"],"region_id":"r{}","is_virtual_station":false,"rental_uris":{{"android":"https://example.invalid/app?s={s}","ios":"https://example.invalid/app?s={s}"}}}}"#,
            20 + s % 20,
            s % 7
        );
        let _ = write!(
            status,
            r#"{sep}{{"station_id":"{s}","num_bikes_available":{},"num_bikes_disabled":1,"num_docks_available":{},"num_docks_disabled":0,"is_installed":true,"is_renting":true,"is_returning":true,"last_reported":{},"vehicle_types_available":[{{"vehicle_type_id":"classic","count":{}}},{{"vehicle_type_id":"ebike","count":1}}]}}"#,
            s % 11,
            10 + s % 9,
            1_700_000_000 + s,
            s % 11
        );
    }
    info.push_str("]}}");
    status.push_str("]}}");
    [
        (format!("{base}/gbfs.json"), discovery.into_bytes()),
        (
            format!("{base}/system_information.json"),
            system.into_bytes(),
        ),
        (
            format!("{base}/station_information.json"),
            info.into_bytes(),
        ),
        (format!("{base}/station_status.json"), status.into_bytes()),
    ]
}

pub async fn fan_out(report: &mut Report) -> Result<()> {
    let mut files: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
    let mut stations = 0usize;
    for i in 0..SYSTEMS {
        stations += stations_of(i);
        for (path, body) in system_files(i) {
            files.insert(path, Arc::new(body));
        }
    }
    let bytes: usize = files.values().map(|b| b.len()).sum();
    let files = Arc::new(files);
    let routes: Routes = Arc::new(move |path: &str| files.get(path).cloned());
    let server = Server::start(routes).await?;

    let targets: Vec<GbfsTarget> = (0..SYSTEMS)
        .map(|i| server.url(&format!("/sys{i}/gbfs.json")).parse())
        .collect::<Result<_, _>>()?;
    let mut source = GbfsSource::new(&SourceOptions::default(), &targets)?;

    let mut rounds = Vec::new();
    for label in ["cold", "warm"] {
        let rss_before = proc_status_kb("VmRSS").unwrap_or(0);
        let peak_ok = reset_peak_rss();
        server.counters.max_open.store(0, Ordering::Relaxed);
        server.counters.requests.store(0, Ordering::Relaxed);
        let t = Instant::now();
        let snapshot = source.fetch().await?;
        let took = t.elapsed();
        let peak = proc_status_kb("VmHWM").unwrap_or(0);
        let peak_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
        let open = server.counters.max_open.load(Ordering::Relaxed);
        let requests = server.counters.requests.load(Ordering::Relaxed);
        if snapshot.stations.len() != stations {
            bail!(
                "the {label} poll round returned {} stations of {stations}",
                snapshot.stations.len()
            );
        }
        println!(
            "    {label}: {:.2} s, peak +{peak_mib:.0} MiB, {requests} requests, up to {open} connections at once",
            took.as_secs_f64()
        );
        let what = if label == "cold" {
            "discovery, system and station information, status"
        } else {
            "status only"
        };
        report.row(Row {
            bench: "5. polling fan-out",
            case: format!(
                "one {label} round, {SYSTEMS} GBFS systems, {stations} stations ({what}, {requests} requests)"
            ),
            broker: "none".into(),
            value: took.as_secs_f64(),
            unit: "s",
            baseline: None,
            target: Some(("< 2 s, bounded concurrency", took.as_secs_f64() < 2.0 && open <= 64)),
            note: format!(
                "peak RSS +{peak_mib:.0} MiB{}; up to {open} connections open at once",
                if peak_ok { "" } else { " (peak reset unavailable)" }
            ),
        });
        rounds.push(serde_json::json!({
            "round": label, "seconds": took.as_secs_f64(), "peak_rss_growth_mib": peak_mib,
            "max_open_connections": open, "requests": requests,
        }));
        drop(snapshot);
    }
    report.raw(
        "poll_fan_out",
        serde_json::json!({"systems": SYSTEMS, "stations": stations, "bytes_served_cold": bytes, "rounds": rounds}),
    );
    Ok(())
}
