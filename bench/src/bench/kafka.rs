//! Benchmarks 2 to 4: the benchmarks that need a broker, run on each broker in turn.

pub mod exactly_once;
pub mod latency;
mod load;
pub mod monitor;
mod monitor_thread;
pub mod producer;

use super::python::Python;
use super::report::{Report, Row};
use super::{Setup, Sizes, median};
use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::runtime::Runtime;
use velib_kafka::SINK_DEFAULTS;
use velib_testkit::MockKafka;

pub enum Broker {
    Mock(MockKafka),
    Kafka(velib_testkit::kafka::KafkaCluster),
}

impl Broker {
    /// Starts broker `name`; Apache Kafka with its directory in `root` (the temporary
    /// directory when `None`).
    pub fn start(name: &str, setup: &Setup<'_>, root: Option<&Path>) -> Result<Broker> {
        Ok(match name {
            "mock" => Broker::Mock(MockKafka::start(1).context("start the mock cluster")?),
            "kafka" => Broker::Kafka((setup.apache_kafka)(root)?),
            other => bail!("unknown broker {other:?} (--brokers takes mock, kafka)"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Kafka(_) => "kafka",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Broker::Mock(_) => format!(
                "mock = librdkafka {} mock cluster, in-process, 1 broker",
                rdkafka::util::get_rdkafka_version().1
            ),
            Broker::Kafka(k) => format!(
                "kafka = Apache Kafka {}, separate JVM process (256 MiB heap), 1 KRaft node, its log in {} ({})",
                velib_testkit::kafka::KAFKA_VERSION,
                k.dir().parent().unwrap_or(k.dir()).display(),
                if k.dir().starts_with(super::MEMORY_ROOT) {
                    "memory: `--broker-storage memory`"
                } else {
                    "disk: `--broker-storage disk`, or no tmpfs here"
                }
            ),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
            Broker::Kafka(k) => k.bootstrap(),
        }
    }

    pub fn create_topic(&self, rt: &Runtime, topic: &str, partitions: i32) -> Result<()> {
        match self {
            Broker::Mock(m) => m.create_topic(topic, partitions)?,
            Broker::Kafka(k) => rt.block_on(velib_testkit::admin_create_topic(
                &k.bootstrap(),
                topic,
                partitions,
            ))?,
        }
        Ok(())
    }
}

/// What every broker benchmark needs.
pub struct Ctx<'a> {
    pub rt: &'a Runtime,
    pub broker: &'a Broker,
    pub sizes: &'a Sizes,
    pub python: Option<&'a Python>,
    pub scratch: &'a Path,
}

impl Ctx<'_> {
    /// A fresh 10-partition topic.
    pub fn topic(&self, what: &str) -> Result<String> {
        let name = velib_testkit::unique_name(&format!("bench-{what}"));
        self.broker.create_topic(self.rt, &name, 10)?;
        Ok(name)
    }
}

/// A record as the producer sends it: key, v1 JSON, timestamp.
pub type Prepared = Vec<(String, Vec<u8>, i64)>;
/// A slice of [`Prepared`] records.
pub type Records = [(String, Vec<u8>, i64)];

/// The records of `snapshots` snapshots of the benchmark city, serialised before timing.
pub fn prepare(stations: usize, snapshots: usize) -> Prepared {
    let mut src = super::detect::city(stations);
    let mut out = Vec::with_capacity(stations * snapshots);
    for _ in 0..snapshots {
        let snap = src.advance();
        out.extend(
            snap.stations
                .iter()
                .map(|s| (s.key().as_str().to_owned(), s.to_json(), snap.taken_at)),
        );
    }
    out
}

/// Counts delivery reports; nothing else.
#[derive(Default)]
pub struct Counted {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

impl ClientContext for Counted {}

impl ProducerContext for Counted {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The bare producer: rdkafka's `ThreadedProducer` (its own polling thread, as velib's sink)
/// with velib's sink settings. Created before any timing starts, as velib's sink is.
pub fn bare_producer(bootstrap: &str) -> Result<ThreadedProducer<Counted>> {
    let mut config = ClientConfig::new();
    for (k, v) in SINK_DEFAULTS {
        config.set(*k, *v);
    }
    config.set("bootstrap.servers", bootstrap);
    Ok(config.create_with_context(Counted::default())?)
}

/// Starts `producer` before it is measured: one record to `topic` (not the measured topic),
/// acknowledged. A producer started this way is connected and, being idempotent, holds its
/// producer id.
///
/// Why it matters: an idempotent librdkafka producer handed records within about a millisecond
/// of its creation misses its first producer-id request and retries it only when its 500 ms
/// retry timer fires, so every record waits half a second. Timing from creation measured that
/// timer, not sending. velib's sink is started the same way (`producer::start_sink`).
pub fn bare_start(producer: &ThreadedProducer<Counted>, topic: &str) -> Result<()> {
    let (ok, failed) = bare_produce(
        producer,
        topic,
        &[("bench-start".into(), b"{}".to_vec(), 0)],
    )?;
    if ok != 1 {
        bail!("the bare producer could not start ({failed} failed)");
    }
    Ok(())
}

/// Sends `records` to `topic` through `producer` and waits for every acknowledgement.
/// Returns (delivered, failed) among these records.
pub fn bare_produce(
    producer: &ThreadedProducer<Counted>,
    topic: &str,
    records: &Records,
) -> Result<(u64, u64)> {
    let c = producer.context();
    let (ok0, failed0) = (
        c.ok.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
    );
    for (key, payload, ts) in records {
        let mut record = BaseRecord::to(topic)
            .key(key)
            .payload(payload)
            .timestamp(*ts);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => bail!("the bare producer refused a record: {e}"),
            }
        }
    }
    // Wait for the acknowledgements the way velib's sink does (its counters, checked every
    // millisecond): rdkafka's `flush` sleeps in coarse steps, which at these sizes is most of
    // the time measured.
    let done = || {
        (
            c.ok.load(Ordering::Relaxed) - ok0,
            c.failed.load(Ordering::Relaxed) - failed0,
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while {
        let (ok, failed) = done();
        ok + failed < records.len() as u64
    } {
        if std::time::Instant::now() > deadline {
            bail!("the bare producer's records were not acknowledged within 120 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(done())
}

/// The row comparing velib's `velib` rate (records/s) with the tutorial's kafka-python script
/// doing the same (`what`, e.g. `drain 500000 records`): `measure` runs the script once and
/// returns its rate, [`Sizes::python_runs`] times; the median is reported against a target of
/// 20×. Without kafka-python, the comparison is listed as not measured. Returns each run's
/// rate, for the raw figures.
pub fn versus_tutorial(
    ctx: &Ctx<'_>,
    report: &mut Report,
    bench: &'static str,
    what: &str,
    velib: f64,
    mut measure: impl FnMut(&Python) -> Result<f64>,
) -> Result<Vec<f64>> {
    let broker = ctx.broker.name();
    let Some(py) = ctx.python else {
        report.not_measured(
            &format!("{bench} vs tutorial ({broker})"),
            "kafka-python unavailable in this run",
        );
        return Ok(Vec::new());
    };
    let runs = ctx.sizes.python_runs;
    let tutorial = (0..runs)
        .map(|_| measure(py))
        .collect::<Result<Vec<f64>>>()?;
    let t = median(&tutorial);
    println!(
        "    tutorial (kafka-python) {:.1} k/s ({:.1}×)",
        t / 1e3,
        velib / t
    );
    report.row(Row {
        bench,
        case: format!(
            "{what}, vs the tutorial's loop ({runs} run{})",
            if runs > 1 { "s" } else { "" }
        ),
        broker: broker.to_owned(),
        value: velib,
        unit: "records/s",
        baseline: Some(("tutorial kafka-python".into(), t)),
        target: Some((">= 20× tutorial", velib / t >= 20.0)),
        note: String::new(),
    });
    Ok(tutorial)
}

/// [`prepare`] with every record stamped with its `snapshot_at`, as the producer writes them:
/// statistics place records in their windows by it and leave unstamped ones out.
pub fn prepare_stamped(stations: usize, snapshots: usize) -> Prepared {
    let mut src = super::detect::city(stations);
    let mut out = Vec::with_capacity(stations * snapshots);
    for _ in 0..snapshots {
        let snap = src.next_snapshot().stamped();
        out.extend(
            snap.stations
                .iter()
                .map(|s| (s.key().as_str().to_owned(), s.to_json(), snap.taken_at)),
        );
    }
    out
}

/// Fills `topic` with the benchmark's backlog ([`Sizes::kafka_records`] records of
/// [`prepare`]) through a bare producer; fails unless every record was delivered.
pub fn fill_backlog(ctx: &Ctx<'_>, topic: &str) -> Result<()> {
    fill_with(
        ctx,
        topic,
        prepare(ctx.sizes.stations, ctx.sizes.kafka_snapshots),
    )
}

/// Fills `topic` with `records` through a bare producer; fails unless every one of the
/// [`Sizes::kafka_records`] was delivered.
pub fn fill_with(ctx: &Ctx<'_>, topic: &str, records: Prepared) -> Result<()> {
    let n = ctx.sizes.kafka_records();
    let (ok, _) = bare_produce(&bare_producer(&ctx.broker.bootstrap())?, topic, &records)?;
    if ok != n {
        bail!("pre-filling the backlog delivered {ok} of {n} records");
    }
    Ok(())
}
