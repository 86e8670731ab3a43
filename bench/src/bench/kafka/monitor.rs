//! Benchmark 2, draining a backlog: velib's monitor, a bare rdkafka consumer that only counts, and the
//! tutorial's kafka-python loop, on the same pre-filled topic.

use super::{Ctx, fill_backlog, versus_tutorial};
use crate::bench::report::{Report, Row};
use crate::bench::{median, rate};
use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::io::BufWriter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use velib_kafka::KafkaArgs;
use velib_monitor::stream::{InRecord, RebalanceNote, StreamError};
use velib_monitor::{MonitorConfig, StationStream};

/// Wraps the monitor's stream to see when the first and the last expected record arrive, and
/// to stop the monitor then.
struct Counting<S> {
    inner: S,
    seen: AtomicU64,
    target: u64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl<S: StationStream> StationStream for Counting<S> {
    async fn next(&self) -> Result<InRecord<'_>, StreamError> {
        let r = self.inner.next().await;
        if r.is_ok() {
            let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if seen == 1 {
                let _ = self.first.set(Instant::now());
            }
            if seen == self.target {
                let _ = self.last.set(Instant::now());
                if let Some(done) = self.done.lock().unwrap().take() {
                    let _ = done.send(());
                }
            }
        }
        r
    }

    fn take_rebalances(&self) -> Vec<RebalanceNote> {
        self.inner.take_rebalances()
    }

    fn store(&mut self, partition: i32, next_offset: i64) -> Result<(), StreamError> {
        self.inner.store(partition, next_offset)
    }

    fn commit(&mut self) -> Result<(), StreamError> {
        self.inner.commit()
    }
}

/// (records/s from first to last record, seconds from subscribing to the first record)
pub(super) type Drain = (f64, f64);

pub(super) fn velib_once(ctx: &Ctx<'_>, topic: &str, events: &str, n: u64) -> Result<(Drain, u64)> {
    let config = MonitorConfig {
        topic: topic.to_owned(),
        events_topic: Some(events.to_owned()),
        dlq_topic: None,
        ..MonitorConfig::default()
    };
    let kafka = KafkaArgs::new(ctx.broker.bootstrap()).with("auto.offset.reset", "earliest");
    let group = velib_testkit::unique_name("bench-monitor");
    // rdkafka's StreamConsumer spawns its waker task on the current tokio runtime.
    let parts = {
        let _runtime = ctx.rt.enter();
        velib_monitor::connect(&kafka, &group, &config, false)?
    };
    let (tx, rx) = oneshot::channel();
    let stream = Counting {
        inner: parts.stream,
        seen: AtomicU64::new(0),
        target: n,
        first: OnceLock::new(),
        last: OnceLock::new(),
        done: Mutex::new(Some(tx)),
    };
    let mut out = BufWriter::new(std::fs::File::create(
        ctx.scratch.join("velib-monitor.out"),
    )?);
    let started = Instant::now();
    let (stream, monitor_report) = ctx.rt.block_on(async {
        let stop = async {
            let timeout = tokio::time::sleep(Duration::from_secs(600));
            tokio::select! {
                _ = rx => {}
                () = timeout => {}
            }
        };
        velib_monitor::at_least_once::run(
            stream,
            &parts.sink,
            parts.ledger,
            &config,
            &mut out,
            stop,
        )
        .await
    })?;
    let (Some(&first), Some(&last)) = (stream.first.get(), stream.last.get()) else {
        bail!(
            "velib's monitor saw {} of {n} records",
            stream.seen.load(Ordering::Relaxed)
        );
    };
    stream.inner.close();
    Ok((
        (rate(n - 1, last - first), (first - started).as_secs_f64()),
        monitor_report.changes,
    ))
}

/// [`Sizes::runs`](crate::bench::Sizes) drains of velib and the bare consumer, alternating:
/// (velib's, the bare consumer's, velib's change lines).
fn compare(
    ctx: &Ctx<'_>,
    topic: &str,
    events: &str,
    n: u64,
) -> Result<(Vec<Drain>, Vec<Drain>, u64)> {
    let (mut velib, mut bare, mut changes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ctx.sizes.runs {
        let (d, c) = velib_once(ctx, topic, events, n)?;
        velib.push(d);
        changes = c;
        bare.push(bare_once(ctx, topic, n)?);
    }
    Ok((velib, bare, changes))
}

/// The row of velib's drain against the bare consumer's (`load`: the load beside them, if
/// any).
fn drain_row(
    ctx: &Ctx<'_>,
    report: &mut Report,
    (velib, bare): (&[Drain], &[Drain]),
    n: u64,
    changes: u64,
    kept: &str,
    load: &str,
) -> Result<()> {
    let v = median(&velib.iter().map(|d| d.0).collect::<Vec<_>>());
    let b = median(&bare.iter().map(|d| d.0).collect::<Vec<_>>());
    let join_v = median(&velib.iter().map(|d| d.1).collect::<Vec<_>>());
    let join_b = median(&bare.iter().map(|d| d.1).collect::<Vec<_>>());
    println!(
        "    velib {:.0} k/s ({changes} change lines), bare {:.0} k/s ({:.2}×); time to first record {join_v:.2} s / {join_b:.2} s{}",
        v / 1e3,
        b / 1e3,
        v / b,
        super::load::beside(load, false)
    );
    report.row(Row {
        bench: "2. monitor",
        case: format!(
            "drain {n} records from 10 partitions ({} snapshots of 10 k stations{kept}), {changes} lines to a file{}",
            ctx.sizes.kafka_snapshots,
            super::load::beside(load, true)
        ),
        broker: ctx.broker.name().to_owned(),
        value: v,
        unit: "records/s",
        baseline: Some(("bare rdkafka BaseConsumer".into(), b)),
        target: Some((">= 0.9× bare", v / b >= 0.9)),
        note: format!("time to first record: velib {join_v:.2} s, bare {join_b:.2} s"),
    });
    Ok(())
}

pub(super) fn bare_once(ctx: &Ctx<'_>, topic: &str, n: u64) -> Result<Drain> {
    // The same consumer settings as velib's stream (fetch wait, offset handling), so the
    // difference is what velib does per record.
    let mut config = ClientConfig::new();
    for (k, v) in velib_monitor::STREAM_DEFAULTS {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", ctx.broker.bootstrap())
        .set("group.id", velib_testkit::unique_name("bench-bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()?;
    let started = Instant::now();
    consumer.subscribe(&[topic])?;
    let deadline = started + Duration::from_secs(600);
    let (mut seen, mut first, mut bytes) = (0u64, None, 0usize);
    while seen < n {
        if Instant::now() > deadline {
            bail!("the bare consumer saw {seen} of {n} records");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
            Some(Err(e)) => bail!("bare consumer: {e}"),
            None => {}
        }
    }
    let last = Instant::now();
    std::hint::black_box(bytes);
    let first = first.context("no record")?;
    Ok((rate(n - 1, last - first), (first - started).as_secs_f64()))
}

/// How many of the `produced` records `topic` still holds: those below a partition's low
/// watermark were dropped by the broker. (Counted from the low watermark rather than the high
/// one, which some Kafka-compatible brokers report short of the records they still serve.)
fn retained(ctx: &Ctx<'_>, topic: &str, produced: u64) -> Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", ctx.broker.bootstrap())
        .create()?;
    let mut dropped = 0;
    for p in 0..10 {
        let (low, _) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        dropped += u64::try_from(low).unwrap_or(0);
    }
    Ok(produced.saturating_sub(dropped))
}

pub fn run(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let sizes = ctx.sizes;
    let produced = sizes.kafka_records();
    let topic = ctx.topic("backlog")?;
    let events = ctx.topic("events")?;
    fill_backlog(ctx, &topic)?;
    // librdkafka's mock cluster keeps at most 5 MB (or 100,000 batches) per partition and drops
    // the oldest beyond that, so a full-size backlog on it is shorter than what was produced:
    // every variant drains what is there, and the table says how much that is.
    let n = retained(ctx, &topic, produced)?;
    let kept = if n < produced {
        println!("    the broker kept {n} of the {produced} records produced");
        format!(" (the broker kept {n} of the {produced} produced)")
    } else {
        String::new()
    };

    // Warm-up: one drain each, not counted.
    velib_once(ctx, &topic, &events, n)?;
    bare_once(ctx, &topic, n)?;
    let (velib, bare, changes) = compare(ctx, &topic, &events, n)?;
    let v = median(&velib.iter().map(|d| d.0).collect::<Vec<_>>());
    let broker = ctx.broker.name().to_owned();
    drain_row(ctx, report, (&velib, &bare), n, changes, &kept, "")?;

    // The same on a busy machine, on Apache Kafka: what a monitor sharing its machine does.
    let busy = if matches!(ctx.broker, super::Broker::Kafka(_)) {
        let _load = super::load::Load::start();
        let (velib, bare, _) = compare(ctx, &topic, &events, n)?;
        drain_row(
            ctx,
            report,
            (&velib, &bare),
            n,
            changes,
            &kept,
            super::load::DESCRIBED,
        )?;
        Some((velib, bare))
    } else {
        None
    };

    let tutorial = versus_tutorial(
        ctx,
        report,
        "2. monitor",
        &format!("drain {n} records"),
        v,
        |py| {
            let numbers = py.run(
                "monitor.py",
                &[
                    ctx.broker.bootstrap(),
                    topic.clone(),
                    velib_testkit::unique_name("bench-tutorial"),
                    n.to_string(),
                ],
                &ctx.scratch.join("tutorial-monitor.out"),
            )?;
            let (seen, join, drain) = (numbers[0], numbers[1], numbers[2]);
            println!("    tutorial: {seen} records, first after {join:.2} s");
            Ok((seen - 1.0) / drain)
        },
    )?;
    report.raw(
        &format!("monitor_{broker}"),
        serde_json::json!({
            "records": n, "changes": changes,
            "velib_runs_records_per_s": velib.iter().map(|d| d.0).collect::<Vec<_>>(),
            "velib_runs_first_record_s": velib.iter().map(|d| d.1).collect::<Vec<_>>(),
            "bare_runs_records_per_s": bare.iter().map(|d| d.0).collect::<Vec<_>>(),
            "bare_runs_first_record_s": bare.iter().map(|d| d.1).collect::<Vec<_>>(),
            "tutorial_runs_records_per_s": tutorial,
            "busy": busy.map(|(velib, bare)| serde_json::json!({
                "load": super::load::DESCRIBED,
                "velib_runs_records_per_s": velib.iter().map(|d| d.0).collect::<Vec<_>>(),
                "bare_runs_records_per_s": bare.iter().map(|d| d.0).collect::<Vec<_>>(),
            })),
        }),
    );
    Ok(())
}
