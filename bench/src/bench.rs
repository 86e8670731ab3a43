//! `cargo xtask bench`: velib's speed, measured against the floors and the tutorial, in one run.
//!
//! Every benchmark runs on this machine in this process, so the ratios compare numbers taken
//! minutes apart under the same load: the machine is shared and noisy, and a ratio measured in
//! one run is worth more than two absolute numbers measured on different days. Each figure is
//! the median of several runs after a warm-up. Numbers are written to `bench/results/`
//! (`RESULTS.md`, `results.json`) and are never asserted: a target missed is a line in the
//! table, not a failure.
//!
//! What runs (sizes in `--quick` are smaller, and say so in the table):
//!
//! 1. `detect`: v1 JSON bytes → change events through `Station::from_json` and
//!    `Detector::observe`, one thread, no broker, with statistics (`--stats`) off and on; and
//!    the detector's memory per station, alone and with statistics.
//! 2. `kafka::monitor`: drain a pre-filled 10-partition topic with `velib_monitor::at_least_once::run`,
//!    a bare rdkafka consumer that only counts, and the tutorial's kafka-python loop.
//! 3. `kafka::producer`: publish the simulated city with `velib_producer::run`, a bare
//!    rdkafka producer of pre-serialised payloads, and the tutorial's kafka-python loop.
//! 4. `kafka::latency`: producer hand-off to the monitor's printed line at a steady rate.
//! 5. `poll`: one poll round over 1,500 GBFS systems served by a local HTTP server.
//! 6. `web`: the live map with 1,000 pages on its event stream: `/health`'s latency and
//!    the memory per page.
//!
//! 2 to 4 run on each broker available: librdkafka's in-process mock cluster and Apache Kafka.
//! `--only` runs some of them and writes their figures to a file of their own
//! (`--only web`: `WEB.md`, `web.json`), leaving `RESULTS.md` to whole runs.

mod detect;
mod http;
mod kafka;
mod poll;
mod python;
mod report;
mod web;

use anyhow::{Context, Result};
use report::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Flags of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Smaller sizes and fewer runs, about two minutes in all.
    #[arg(long, env = "VELIB_BENCH_QUICK")]
    quick: bool,

    /// Brokers for the Kafka benchmarks (comma-separated): `mock`, `kafka` (Apache Kafka).
    #[arg(long, default_value = "mock,kafka", value_delimiter = ',')]
    brokers: Vec<String>,

    /// Skip the tutorial's kafka-python scripts (no virtualenv, no network).
    #[arg(long, env = "VELIB_BENCH_NO_PYTHON")]
    no_python: bool,

    /// Where RESULTS.md and results.json are written.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,

    /// Run only these benchmarks (comma-separated): `detect`, `poll`, `kafka`, `web`, `stats`
    /// (the exactly-once drain with statistics on and off, part of `kafka`). Their figures go
    /// to `<NAMES>.md` and `<names>.json` in `--out`, not to RESULTS.md.
    #[arg(long, value_delimiter = ',', value_parser = ["detect", "poll", "kafka", "web", "stats"])]
    only: Vec<String>,

    /// Where Apache Kafka keeps its log: `memory` (a tmpfs, `/dev/shm`, when the machine has
    /// one) or `disk` (the temporary directory). On a shared machine's disk, the broker's
    /// first writes to a new partition's files stalled its appends for up to a second
    /// (bench/results/HISTORY.md): `memory` measures the clients, `disk` the whole machine.
    #[arg(long, value_enum, default_value = "memory")]
    broker_storage: BrokerStorage,
}

/// Where Apache Kafka keeps its log in a benchmark run (`--broker-storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerStorage {
    /// A memory file system (`/dev/shm`), if there is one; the disk otherwise.
    Memory,
    /// The system's temporary directory.
    Disk,
}

/// The tmpfs `--broker-storage memory` uses.
const MEMORY_ROOT: &str = "/dev/shm";

impl BrokerStorage {
    /// The directory the broker's directory goes in (`None`: the temporary directory).
    pub fn root(self) -> Option<&'static Path> {
        let shm = Path::new(MEMORY_ROOT);
        (self == BrokerStorage::Memory && shm.is_dir()).then_some(shm)
    }
}

impl Args {
    fn runs(&self, bench: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|b| b == bench)
    }
}

/// The sizes of one run of the benchmarks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub quick: bool,
    /// Stations in the simulated city of the detection and Kafka benchmarks.
    pub stations: usize,
    /// Snapshots of that city in the detection benchmark.
    pub detect_snapshots: usize,
    /// Snapshots in the Kafka throughput benchmarks (records = stations × snapshots).
    pub kafka_snapshots: usize,
    /// Timed runs of each Rust variant (after a warm-up).
    pub runs: usize,
    /// Timed runs of each kafka-python variant.
    pub python_runs: usize,
    /// How long each latency rate is held.
    pub latency_secs: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                stations: 10_000,
                detect_snapshots: 20,
                kafka_snapshots: 10,
                runs: 3,
                python_runs: 1,
                latency_secs: 4,
            }
        } else {
            Sizes {
                quick,
                stations: 10_000,
                detect_snapshots: 100,
                kafka_snapshots: 100,
                runs: 5,
                python_runs: 2,
                latency_secs: 20,
            }
        }
    }

    pub fn kafka_records(&self) -> u64 {
        (self.stations * self.kafka_snapshots) as u64
    }
}

/// What the benchmarks need besides Rust, asked for only when a benchmark that needs it runs.
///
/// The caller (`cargo xtask bench`) installs and starts these, as it does for its other tasks,
/// so that this crate measures and nothing else; a failure is noted in the results and the
/// benchmarks that needed it are skipped.
pub struct Setup<'a> {
    /// Starts one Apache Kafka node, fetching it first if needed (`--brokers kafka`).
    /// Starts one Apache Kafka node, its directory made in the given one (the temporary
    /// directory when `None`), fetching Kafka first if needed (`--brokers kafka`).
    pub apache_kafka: &'a dyn Fn(Option<&Path>) -> Result<velib_testkit::kafka::KafkaCluster>,
    /// The Python of a virtualenv holding the tutorial's kafka-python, made if needed (the
    /// comparisons with the tutorial's scripts).
    pub kafka_python: &'a dyn Fn() -> Result<PathBuf>,
}

impl std::fmt::Debug for Setup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").finish_non_exhaustive()
    }
}

/// Runs the benchmarks `args` names and writes their results to `args.out`.
///
/// Meant for an optimised build: a debug build runs, but its results say that they mean
/// nothing.
pub fn run(args: Args, setup: &Setup<'_>) -> Result<()> {
    velib_kafka::service::init_tracing_with("error");
    let started = Instant::now();
    let sizes = Sizes::new(args.quick);
    let root = crate::workspace_root();
    let out_dir = root.join(&args.out);
    let scratch = root.join("target").join("bench-scratch");
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let mut report = Report::new(&sizes);
    if cfg!(debug_assertions) {
        println!(
            "warning: this is a debug build; run `cargo xtask bench` (it builds with --release)"
        );
        report.note("built without optimisations: these numbers mean nothing");
    }

    let python = if args.no_python || !args.runs("kafka") {
        report.note("kafka-python comparisons skipped (--no-python)");
        None
    } else {
        match python::Python::ensure(&root, setup) {
            Ok(p) => {
                report.set_python(&p.versions);
                Some(p)
            }
            Err(e) => {
                println!("kafka-python unavailable, its comparisons are skipped: {e:#}");
                report.note(&format!("kafka-python unavailable: {e:#}"));
                None
            }
        }
    };

    if args.runs("detect") {
        println!("==> 1. detection core");
        detect::throughput(&sizes, &mut report)?;
        detect::memory(&sizes, &mut report)?;
        detect::stats_memory(&sizes, &mut report)?;
    }

    if args.runs("poll") {
        println!("==> 5. polling fan-out");
        if let Err(e) = rt.block_on(poll::fan_out(&mut report)) {
            println!("polling fan-out failed: {e:#}");
            report.note(&format!("polling fan-out failed: {e:#}"));
        }
    }

    if args.runs("web") {
        println!("==> 6. map viewers");
        if let Err(e) = web::run(&rt, sizes.quick, &mut report) {
            println!("map viewers benchmark failed: {e:#}");
            report.note(&format!("map viewers failed: {e:#}"));
        }
    }

    let brokers = if args.runs("kafka") || args.runs("stats") {
        &args.brokers[..]
    } else {
        &[]
    };
    for name in brokers {
        let broker = match kafka::Broker::start(name, setup, args.broker_storage.root()) {
            Ok(b) => b,
            Err(e) => {
                println!("broker {name} unavailable: {e:#}");
                report.note(&format!("broker {name} unavailable: {e:#}"));
                continue;
            }
        };
        report.set_broker(&broker.describe());
        let ctx = kafka::Ctx {
            rt: &rt,
            broker: &broker,
            sizes: &sizes,
            python: python.as_ref(),
            scratch: &scratch,
        };
        if args.runs("stats") {
            println!("==> 5. exactly once with statistics on {}", broker.name());
            if let Err(e) = kafka::exactly_once::run_stats(&ctx, &mut report) {
                println!("statistics benchmark on {} failed: {e:#}", broker.name());
                report.note(&format!("statistics on {}: {e:#}", broker.name()));
            }
        }
        if !args.runs("kafka") {
            continue;
        }
        println!("==> 3. producer on {}", broker.name());
        if let Err(e) = kafka::producer::run(&ctx, &mut report) {
            println!("producer benchmark on {} failed: {e:#}", broker.name());
            report.note(&format!("producer on {}: {e:#}", broker.name()));
        }
        println!("==> 2. monitor on {}", broker.name());
        if let Err(e) = kafka::monitor::run(&ctx, &mut report) {
            println!("monitor benchmark on {} failed: {e:#}", broker.name());
            report.note(&format!("monitor on {}: {e:#}", broker.name()));
        }
        println!("==> 4. latency on {}", broker.name());
        if let Err(e) = kafka::latency::run(&ctx, &mut report) {
            println!("latency benchmark on {} failed: {e:#}", broker.name());
            report.note(&format!("latency on {}: {e:#}", broker.name()));
        }
        println!("==> 5. exactly once on {}", broker.name());
        if let Err(e) = kafka::exactly_once::run(&ctx, &mut report) {
            println!("exactly-once benchmark on {} failed: {e:#}", broker.name());
            report.note(&format!("exactly once on {}: {e:#}", broker.name()));
        }
    }

    report.finish(started.elapsed());
    let name = if args.only.is_empty() {
        "RESULTS".to_owned()
    } else {
        args.only.join("-").to_uppercase()
    };
    report.write(&out_dir, &name)?;
    println!(
        "==> results in {} ({:.0} s)",
        out_dir.join(format!("{name}.md")).display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The median of `xs` (the mean of the two middle values for an even count).
pub(crate) fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Records per second.
pub(crate) fn rate(records: u64, took: Duration) -> f64 {
    records as f64 / took.as_secs_f64().max(1e-9)
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`).
pub(crate) fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak resident set size (`VmHWM`) to the current one (Linux 4.0 and later).
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
