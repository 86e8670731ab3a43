//! Benchmark 3, publishing the simulated city: velib's producer loop, a bare rdkafka producer, and the
//! tutorial's kafka-python loop.

use super::{Ctx, bare_produce, bare_producer, bare_start, prepare, versus_tutorial};
use crate::bench::http::{Routes, Server};
use crate::bench::report::{Report, Row};
use crate::bench::{median, rate};
use anyhow::{Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use velib_kafka::{KafkaArgs, KafkaSink, OutRecord, RecordSink, SINK_DEFAULTS};
use velib_model::Station;
use velib_producer::ProducerConfig;

/// Starts `sink` as [`bare_start`] starts the bare producer: one record to `topic`,
/// acknowledged, before the clock starts.
fn start_sink(sink: &KafkaSink, topic: &str) -> Result<()> {
    let record = OutRecord {
        topic,
        key: b"bench-start",
        payload: b"{}",
        timestamp_ms: None,
        headers: &[],
    };
    sink.enqueue(&record, 0)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.counts().pending() > 0 {
        if Instant::now() > deadline {
            bail!("velib's sink could not start within 120 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if sink.counts().delivered != 1 {
        bail!("velib's sink could not start: {:?}", sink.counts());
    }
    Ok(())
}

/// One run of `velib_producer::run` over `snapshots` snapshots, with `codec` instead of the
/// default compression when given; returns records/s.
fn velib_once(
    ctx: &Ctx<'_>,
    start_topic: &str,
    snapshots: usize,
    codec: Option<&str>,
) -> Result<f64> {
    let topic = ctx.topic("produce-velib")?;
    let source = crate::bench::detect::city(ctx.sizes.stations);
    let mut args = KafkaArgs::new(ctx.broker.bootstrap());
    if let Some(codec) = codec {
        args = args.with("compression.type", codec);
    }
    let sink = KafkaSink::new(&args.client_config(SINK_DEFAULTS), None)?;
    start_sink(&sink, start_topic)?;
    let config = ProducerConfig {
        topic,
        interval: Duration::from_millis(1),
        max_polls: Some(snapshots as u64),
        flush_timeout: Duration::from_secs(120),
        ..ProducerConfig::default()
    };
    let t = Instant::now();
    let report = ctx.rt.block_on(velib_producer::run(
        source,
        &sink,
        &config,
        &mut std::io::sink(),
        std::future::pending(),
    ))?;
    let took = t.elapsed();
    let expected = (ctx.sizes.stations * snapshots) as u64;
    // The sink's counts include the start record.
    if report.records_delivered != expected + 1 {
        bail!(
            "velib's producer delivered {} of {expected} records ({report:?})",
            report.records_delivered
        );
    }
    Ok(rate(expected, took))
}

fn bare_once(ctx: &Ctx<'_>, start_topic: &str, records: &super::Records) -> Result<f64> {
    let topic = ctx.topic("produce-bare")?;
    let producer = bare_producer(&ctx.broker.bootstrap())?;
    bare_start(&producer, start_topic)?;
    let t = Instant::now();
    let (ok, failed) = bare_produce(&producer, &topic, records)?;
    let took = t.elapsed();
    if ok != records.len() as u64 {
        bail!(
            "the bare producer delivered {ok} of {} ({failed} failed)",
            records.len()
        );
    }
    Ok(rate(ok, took))
}

pub fn run(ctx: &Ctx<'_>, report: &mut Report) -> Result<()> {
    let sizes = ctx.sizes;
    let n = sizes.kafka_records();
    let records = prepare(sizes.stations, sizes.kafka_snapshots);

    // Both producers are started (connected, producer id acquired) on this topic before
    // their clock starts: the figures are publishing rates, not client start-up.
    let start_topic = ctx.topic("produce-start")?;
    // Warm-up: a tenth of the load through each.
    velib_once(ctx, &start_topic, (sizes.kafka_snapshots / 10).max(1), None)?;
    bare_once(ctx, &start_topic, &records[..records.len() / 10])?;
    let (mut velib, mut bare, mut lz4) = (Vec::new(), Vec::new(), Vec::new());
    // Alternated, so a burst of load from elsewhere hits them alike.
    for _ in 0..sizes.runs {
        velib.push(velib_once(ctx, &start_topic, sizes.kafka_snapshots, None)?);
        bare.push(bare_once(ctx, &start_topic, &records)?);
        lz4.push(velib_once(
            ctx,
            &start_topic,
            sizes.kafka_snapshots,
            Some("lz4"),
        )?);
    }
    let (v, b) = (median(&velib), median(&bare));
    println!(
        "    velib {:.0} k/s, bare {:.0} k/s ({:.2}×)",
        v / 1e3,
        b / 1e3,
        v / b
    );
    let broker = ctx.broker.name().to_owned();
    report.row(Row {
        bench: "3. producer",
        case: format!(
            "publish {n} records (10 k stations × {} polls)",
            sizes.kafka_snapshots
        ),
        broker: broker.clone(),
        value: v,
        unit: "records/s",
        baseline: Some(("bare rdkafka ThreadedProducer".into(), b)),
        target: Some((">= 0.9× bare", v / b >= 0.9)),
        note: String::new(),
    });

    // What the default compression costs: gzip (level 1), which the tutorial's kafka-python
    // reads without an extra library, against lz4, which it cannot.
    let l = median(&lz4);
    println!(
        "    velib with lz4 {:.0} k/s (gzip/lz4 {:.2}×)",
        l / 1e3,
        v / l
    );
    report.row(Row {
        bench: "3. producer",
        case: format!("publish {n} records, default gzip (level 1) vs -X compression.type=lz4"),
        broker: broker.clone(),
        value: v,
        unit: "records/s",
        baseline: Some(("velib with lz4".into(), l)),
        target: None,
        note: "the cost of a default every Kafka client reads".into(),
    });

    // The tutorial fetches the API once per poll: serve it the same snapshots, in order (made
    // on the first run, when kafka-python is there to run).
    let mut snapshots = None;
    let tutorial = versus_tutorial(
        ctx,
        report,
        "3. producer",
        &format!("publish {n} records"),
        v,
        |py| {
            let next = Arc::new(AtomicUsize::new(0));
            let snaps = snapshots
                .get_or_insert_with(|| tutorial_snapshots(&records, sizes.stations))
                .clone();
            let counter = Arc::clone(&next);
            let routes: Routes = Arc::new(move |_path: &str| {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                Some(Arc::clone(&snaps[i % snaps.len()]))
            });
            let server = ctx.rt.block_on(Server::start(routes))?;
            let topic = ctx.topic("produce-tutorial")?;
            let numbers = py.run(
                "producer.py",
                &[
                    server.url("/vls/v1/stations"),
                    ctx.broker.bootstrap(),
                    topic,
                    sizes.kafka_snapshots.to_string(),
                ],
                &ctx.scratch.join("tutorial-producer.out"),
            )?;
            drop(server);
            let (sent, secs) = (numbers[0], numbers[1]);
            Ok(sent / secs)
        },
    )?;
    report.raw(
        &format!("producer_{broker}"),
        serde_json::json!({"records": n, "velib_runs": velib, "bare_runs": bare, "lz4_runs": lz4, "tutorial_runs": tutorial}),
    );
    Ok(())
}

/// The prepared records as the v1 API would serve them, one JSON array per snapshot.
fn tutorial_snapshots(records: &super::Records, stations: usize) -> Vec<Arc<Vec<u8>>> {
    records
        .chunks(stations)
        .map(|chunk| {
            let stations: Vec<Station> = chunk
                .iter()
                .map(|(_, p, _)| Station::from_json(p))
                .collect::<Result<_, _>>()
                .expect("the bench's own records parse");
            Arc::new(serde_json::to_vec(&stations).expect("serialise"))
        })
        .collect()
}
