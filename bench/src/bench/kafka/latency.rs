//! Benchmark 4, latency at a steady rate: from the producer handing a record to Kafka to the monitor
//! printing its change line.

use super::Ctx;
use super::monitor_thread::{Lines, Running, SharedLines};
use crate::bench::report::{Report, Row};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use velib_kafka::{
    EnqueueError, KafkaArgs, KafkaSink, OutRecord, RecordSink, SINK_DEFAULTS, SinkCounts,
};
use velib_monitor::{MonitorConfig, OutputFormat};
use velib_producer::ProducerConfig;

/// A sink that notes when each record is handed to the real one, by (key, timestamp): the
/// producer stamps records with their snapshot's time, which is the `last_update` of every
/// station that changed in that snapshot, and so of every change line.
struct Stamping<'a> {
    inner: &'a KafkaSink,
    handed: Mutex<HashMap<(Vec<u8>, i64), Instant>>,
}

impl RecordSink for Stamping<'_> {
    fn enqueue(&self, record: &OutRecord<'_>, tag: usize) -> Result<(), EnqueueError> {
        let now = Instant::now();
        self.inner.enqueue(record, tag)?;
        self.handed
            .lock()
            .unwrap()
            .insert((record.key.to_vec(), record.timestamp_ms.unwrap_or(0)), now);
        Ok(())
    }
    fn flush(&self, timeout: Duration) -> u64 {
        self.inner.flush(timeout)
    }
    fn counts(&self) -> SinkCounts {
        self.inner.counts()
    }
    fn fatal_error(&self) -> Option<String> {
        self.inner.fatal_error()
    }
}

pub struct Measured {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
    pub achieved: f64,
    /// How many times lines were written (a commit each, exactly once), and the median and
    /// longest time between two of them, in ms: how the output is paced.
    pub writes: usize,
    pub write_gap_p50: f64,
    pub write_gap_max: f64,
}

impl Measured {
    /// Prints the figures on one line of the run's output: `what` says which monitor, `load`
    /// what ran beside it (empty: nothing).
    pub fn print(&self, what: &str, per_second: usize, load: &str) {
        println!(
            "    {what}{per_second}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} lines){}",
            self.p50,
            self.p99,
            self.max,
            self.samples,
            super::load::beside(load, false)
        );
    }
}

/// The latency of the exactly-once monitor: its lines are printed when their transaction
/// commits (every 100 ms).
pub fn once_exactly_once(ctx: &Ctx<'_>, per_second: usize) -> Result<Measured> {
    once(ctx, per_second, true)
}

fn once(ctx: &Ctx<'_>, per_second: usize, exactly_once: bool) -> Result<Measured> {
    let secs = ctx.sizes.latency_secs;
    let stations = per_second / 10; // one poll every 100 ms
    let topic = ctx.topic("latency")?;
    let events = ctx.topic("latency-events")?;
    let bootstrap = ctx.broker.bootstrap();

    let config = MonitorConfig {
        topic: topic.clone(),
        format: OutputFormat::Json,
        events_topic: Some(events),
        dlq_topic: None,
        ..MonitorConfig::default()
    };
    let _runtime = ctx.rt.enter();
    let sink = KafkaSink::new(
        &KafkaArgs::new(&bootstrap).client_config(SINK_DEFAULTS),
        None,
    )?;
    let stamping = Stamping {
        inner: &sink,
        handed: Mutex::new(HashMap::new()),
    };
    let source = crate::bench::detect::city(stations);
    let producer_config = ProducerConfig {
        topic: topic.clone(),
        interval: Duration::from_millis(100),
        max_polls: Some(secs * 10),
        ..ProducerConfig::default()
    };
    let mut produce_started = None;
    let mut discard = std::io::sink();
    let produce = |started: &mut Option<Instant>| {
        *started = Some(Instant::now());
        velib_producer::run(
            source,
            &stamping,
            &producer_config,
            &mut discard,
            std::future::pending(),
        )
    };
    let (lines, producer) = if exactly_once {
        let state = ctx.topic("latency-state")?;
        let shared = SharedLines::default();
        let monitor = Running::start(&bootstrap, config, &state, Box::new(shared.clone()));
        // Start producing once the monitor owns the partitions, so nothing waits for the
        // group to form.
        monitor.wait(Duration::from_secs(60), |p| {
            p.partitions.load(std::sync::atomic::Ordering::Relaxed) == 10
        })?;
        let producer = ctx.rt.block_on(async {
            let r = produce(&mut produce_started).await;
            // Give the last records time to be printed.
            tokio::time::sleep(Duration::from_millis(500)).await;
            r
        });
        monitor.stop()?;
        let lines = std::mem::take(&mut *shared.0.lock().unwrap());
        (lines, producer)
    } else {
        let parts = velib_monitor::connect(
            &KafkaArgs::new(&bootstrap).with("auto.offset.reset", "earliest"),
            &velib_testkit::unique_name("bench-latency"),
            &config,
            false,
        )?;
        let view = parts.stream.assignment_view();
        let stop = tokio_util::sync::CancellationToken::new();
        let mut lines = Lines::default();
        let (monitor, producer) = ctx.rt.block_on(async {
            let monitor = velib_monitor::at_least_once::run(
                parts.stream,
                &parts.sink,
                parts.ledger,
                &config,
                &mut lines,
                stop.clone().cancelled_owned(),
            );
            let producer = async {
                // Start producing once the monitor owns the partitions, so nothing waits for
                // the group to form.
                let deadline = Instant::now() + Duration::from_secs(60);
                while view.partitions().is_empty() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let r = produce(&mut produce_started).await;
                // Give the last records time to be printed.
                tokio::time::sleep(Duration::from_millis(500)).await;
                stop.cancel();
                r
            };
            tokio::join!(monitor, producer)
        });
        let (stream, _) = monitor?;
        stream.close();
        (lines, producer)
    };
    let producer = producer?;
    let produced = producer.records_delivered;
    let start = produce_started.context("never started")?;
    let handed = stamping.handed.into_inner().unwrap();
    measured(&lines, &handed, start, produced as f64 / secs as f64)
}

/// The latency of each printed line whose record was handed over after the first second
/// (the warm-up): from the moment its record was handed to the sink to the moment its line was
/// written.
fn measured(
    lines: &Lines,
    handed: &HashMap<(Vec<u8>, i64), Instant>,
    start: Instant,
    achieved: f64,
) -> Result<Measured> {
    let mut lat = Vec::new();
    for (at, line) in &lines.done {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        let key = v["key"].as_str().unwrap_or_default().as_bytes().to_vec();
        let ts = v["last_update"].as_i64().unwrap_or_default();
        if let Some(h) = handed.get(&(key, ts))
            && *h > start + Duration::from_secs(1)
        {
            lat.push(at.duration_since(*h).as_secs_f64() * 1e3);
        }
    }
    if lat.is_empty() {
        bail!("no change line could be matched to its record");
    }
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    let (writes, mut gaps) = write_gaps(lines);
    gaps.sort_by(f64::total_cmp);
    Ok(Measured {
        writes,
        write_gap_p50: gaps.get(gaps.len() / 2).copied().unwrap_or(0.0),
        write_gap_max: gaps.last().copied().unwrap_or(0.0),
        p50: pick(0.5),
        p99: pick(0.99),
        max: *lat.last().unwrap_or(&0.0),
        samples: lat.len(),
        achieved,
    })
}

/// How many times lines were written (lines written within a millisecond of each other count
/// as one write: one commit's, or one burst's), and the time between consecutive writes, in ms.
fn write_gaps(lines: &Lines) -> (usize, Vec<f64>) {
    let mut writes: Vec<Instant> = Vec::new();
    for (at, _) in &lines.done {
        if writes
            .last()
            .is_none_or(|last| at.duration_since(*last) > Duration::from_millis(1))
        {
            writes.push(*at);
        }
    }
    let gaps = writes
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    (writes.len(), gaps)
}

pub fn run(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let broker = ctx.broker.name().to_owned();
    let mut raw = serde_json::Map::new();
    rows(ctx, report, &mut raw, "")?;
    if broker == "kafka" {
        // The same with the load beside producer and monitor, as for the exactly-once
        // latencies (bench 5): what the transactions add on a busy machine shows against this.
        let _load = super::load::Load::start();
        let mut busy = serde_json::Map::new();
        rows(ctx, report, &mut busy, super::load::DESCRIBED)?;
        raw.insert("busy".into(), serde_json::Value::Object(busy));
    }
    report.raw(&format!("latency_{broker}"), serde_json::Value::Object(raw));
    Ok(())
}

/// The at-least-once monitor's latency at 5 k and 50 k records/s, with `load` (its
/// description) beside it or none: a p50, p99 and max row each.
fn rows(
    ctx: &Ctx<'_>,
    report: &mut Report,
    raw: &mut serde_json::Map<String, serde_json::Value>,
    load: &str,
) -> Result<()> {
    let broker = ctx.broker.name().to_owned();
    for per_second in [5_000usize, 50_000] {
        let m = once(ctx, per_second, false)?;
        m.print("", per_second, load);
        let target = (per_second == 5_000 && broker == "mock" && load.is_empty())
            .then_some(("p99 <= 25 ms at 5 k/s (in-process cluster)", m.p99 <= 25.0));
        for (stat, value) in [("p50", m.p50), ("p99", m.p99), ("max", m.max)] {
            report.row(Row {
                bench: "4. latency",
                case: format!(
                    "{stat}, {} k records/s for {} s{}",
                    per_second / 1000,
                    ctx.sizes.latency_secs,
                    super::load::beside(load, true)
                ),
                broker: broker.clone(),
                value,
                unit: "ms",
                baseline: None,
                target: if stat == "p99" { target } else { None },
                note: if stat == "p50" {
                    format!(
                        "{} change lines, {:.0} records/s achieved",
                        m.samples, m.achieved
                    )
                } else {
                    String::new()
                },
            });
        }
        raw.insert(
            per_second.to_string(),
            serde_json::json!({"p50_ms": m.p50, "p99_ms": m.p99, "max_ms": m.max, "lines": m.samples, "achieved_per_s": m.achieved}),
        );
    }
    Ok(())
}
