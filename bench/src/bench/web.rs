//! Benchmark 6: the live map under many viewers.
//!
//! `velib_web::run` in this process, on the mock cluster, with a city of 5,000 stations of
//! which a tenth change every second. 1,000 pages open `/api/events` over TCP: nine in ten
//! read and throw away what they get (a 2 kB buffer each, in this process), one in ten sends
//! its request and never reads. `/health` is asked every 50 ms on a connection of its own
//! while they connect and get their snapshots, then once they are all connected, first with
//! the machine as it is, then with two threads spinning beside the server (as many as there
//! are cores here). The pages and the prober run on a tokio runtime of their own, the server
//! on the bench's. Reported: `/health`'s latency (p50, p99, max), the time until every reading
//! page had its snapshot, the peak resident memory growth per page, and the pages the server
//! hung up (at one change a second, a page that never reads is 50 updates behind after 50 s).

use super::kafka::{Prepared, bare_produce, bare_producer, bare_start};
use super::report::{Report, Row};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::{Handle, Runtime};
use velib_testkit::MockKafka;

const BENCH: &str = "6. map viewers";
/// The target for `/health` with 1,000 viewers.
const HEALTH_TARGET_MS: f64 = 100.0;
/// The target for what a viewer costs, in kB.
const VIEWER_TARGET_KB: f64 = 1024.0;

/// The sizes of the run.
struct WebSizes {
    stations: usize,
    viewers: usize,
    /// One in this many pages never reads.
    silent_every: usize,
    /// How long `/health` is sampled in each phase.
    window: Duration,
}

pub fn run(rt: &Runtime, quick: bool, report: &mut Report) -> Result<()> {
    let sizes = WebSizes {
        stations: 5_000,
        viewers: 1_000,
        silent_every: 10,
        window: Duration::from_secs(if quick { 10 } else { 30 }),
    };
    let kafka = MockKafka::start(1).context("start the mock cluster")?;
    let topic = velib_testkit::unique_name("bench-web");
    kafka.create_topic(&topic, 4)?;
    // The first snapshot is the city; each later one moves a tenth of its stations, sent one a
    // second while the pages are connected, as a producer polling every second would.
    let mut city = super::detect::city(sizes.stations);
    let producer = bare_producer(kafka.bootstrap_servers())?;
    bare_start(&producer, &velib_testkit::unique_name("bench-web-start"))?;
    bare_produce(&producer, &topic, &records(city.advance()))?;
    let stop_changes = Arc::new(AtomicBool::new(false));
    let changes = {
        let stop = Arc::clone(&stop_changes);
        let topic = topic.clone();
        std::thread::spawn(move || -> Result<()> {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                bare_produce(&producer, &topic, &records(city.advance()))?;
                std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            }
            Ok(())
        })
    };
    // The pages and the prober run on a runtime of their own, as they would on other machines:
    // they share the cores with the server, not its runtime's threads.
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-pages")
        .enable_all()
        .build()?;
    let outcome = rt.block_on(measure(&kafka, &topic, &sizes, clients.handle(), report));
    clients.shutdown_background();
    stop_changes.store(true, Ordering::Relaxed);
    let _ = changes.join();
    outcome
}

/// A snapshot's records as the producer sends them.
fn records(snapshot: &velib_source::Snapshot) -> Prepared {
    snapshot
        .stations
        .iter()
        .map(|s| (s.key().as_str().to_owned(), s.to_json(), snapshot.taken_at))
        .collect()
}

/// What one phase of `/health` sampling saw.
struct Sampled {
    p50: f64,
    p99: f64,
    max: f64,
    count: usize,
}

async fn measure(
    kafka: &MockKafka,
    topic: &str,
    sizes: &WebSizes,
    clients: &Handle,
    report: &mut Report,
) -> Result<()> {
    let config = velib_web::WebConfig {
        topic: topic.to_owned(),
        events_topic: None,
        tiles: None,
        ..velib_web::WebConfig::new(velib_kafka::KafkaArgs::new(kafka.bootstrap_servers()))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(velib_web::run(config, listener, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = health(addr).await.map(|(_, h)| h);
        if health
            .as_ref()
            .is_ok_and(|h| h["stations"] == sizes.stations)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("velib-web did not read the city in 120 s: {health:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let base_kb = super::proc_status_kb("VmRSS").unwrap_or(0);
    let peak_ok = super::reset_peak_rss();
    let snapshots = Arc::new(AtomicU64::new(0));
    let mut silent = Vec::new();
    let mut readers = Vec::new();
    let connecting = Instant::now();
    // `/health` while the pages connect and get their snapshots: when each page costs the
    // server the most.
    let connected = Arc::new(AtomicBool::new(false));
    let during = {
        let connected = Arc::clone(&connected);
        clients.spawn(sample_health(addr, move || {
            connected.load(Ordering::Relaxed)
        }))
    };
    for i in 0..sizes.viewers {
        if i % sizes.silent_every == 0 {
            silent.push(clients.spawn(silent_page(addr)).await??);
        } else {
            let stream = clients.spawn(open_page(addr, None)).await??;
            readers.push(clients.spawn(read_page(stream, Arc::clone(&snapshots))));
        }
    }
    let reading = readers.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while snapshots.load(Ordering::Relaxed) < reading {
        if Instant::now() > deadline {
            bail!(
                "only {} of {reading} pages had their snapshot after 300 s",
                snapshots.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_connected = connecting.elapsed();
    connected.store(true, Ordering::Relaxed);
    let during = during.await??;
    println!(
        "web: {reading} reading pages had their snapshot {:.1} s after the first connected",
        all_connected.as_secs_f64()
    );

    let window = |end: Instant| move || Instant::now() >= end;
    let idle = clients
        .spawn(sample_health(addr, window(Instant::now() + sizes.window)))
        .await??;
    let spinning = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let spinning = Arc::clone(&spinning);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while spinning.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let loaded = clients
        .spawn(sample_health(addr, window(Instant::now() + sizes.window)))
        .await;
    spinning.store(false, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    let loaded = loaded??;
    let peak_kb = super::proc_status_kb(if peak_ok { "VmHWM" } else { "VmRSS" }).unwrap_or(0);
    let (_, last) = health(addr).await?;

    for r in &readers {
        r.abort();
    }
    drop(silent);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;

    let per_viewer_kb = peak_kb.saturating_sub(base_kb) as f64 / sizes.viewers as f64;
    let dropped = match &last["viewers_dropped"] {
        Value::Null => "not counted by this build".to_owned(),
        n => n.to_string(),
    };
    let case = |what: &str| {
        format!(
            "{what}, {} pages ({} never reading) on {} stations",
            sizes.viewers,
            sizes.viewers / sizes.silent_every,
            sizes.stations
        )
    };
    for (phase, s) in [
        ("while the pages connect", &during),
        ("idle", &idle),
        ("two threads spinning beside", &loaded),
    ] {
        for (what, value, target) in [
            ("p50", s.p50, None),
            ("p99", s.p99, Some(s.p99 <= HEALTH_TARGET_MS)),
            ("max", s.max, None),
        ] {
            report.row(Row {
                bench: BENCH,
                case: case(&format!("/health {what}, {phase}")),
                broker: "mock".into(),
                value,
                unit: "ms",
                baseline: None,
                target: target.map(|met| ("≤ 100 ms", met)),
                note: format!("{} requests", s.count),
            });
        }
    }
    report.row(Row {
        bench: BENCH,
        case: case("peak memory growth per page"),
        broker: "mock".into(),
        value: per_viewer_kb,
        unit: "kB",
        baseline: None,
        target: Some(("≤ 1 MB", per_viewer_kb <= VIEWER_TARGET_KB)),
        note: format!(
            "peak RSS +{:.0} MiB over {:.0} MiB, the bench's own readers included{}; pages hung \
             up: {dropped}",
            peak_kb.saturating_sub(base_kb) as f64 / 1024.0,
            base_kb as f64 / 1024.0,
            if peak_ok {
                ""
            } else {
                " (peak reset unavailable: RSS at the end)"
            }
        ),
    });
    report.row(Row {
        bench: BENCH,
        case: case("every reading page has its snapshot"),
        broker: "mock".into(),
        value: all_connected.as_secs_f64(),
        unit: "s",
        baseline: None,
        target: None,
        note: String::new(),
    });
    report.raw(
        "web",
        json!({
            "stations": sizes.stations, "viewers": sizes.viewers,
            "silent": sizes.viewers / sizes.silent_every,
            "health_connecting_ms": {"p50": during.p50, "p99": during.p99, "max": during.max, "n": during.count},
            "health_idle_ms": {"p50": idle.p50, "p99": idle.p99, "max": idle.max, "n": idle.count},
            "health_loaded_ms": {"p50": loaded.p50, "p99": loaded.p99, "max": loaded.max, "n": loaded.count},
            "rss_base_kb": base_kb, "rss_peak_kb": peak_kb, "per_viewer_kb": per_viewer_kb,
            "snapshots_s": all_connected.as_secs_f64(), "health_at_end": last,
        }),
    );
    Ok(())
}

/// Opens `/api/events`, with a receive buffer of `recv_buffer` bytes if given.
async fn open_page(addr: SocketAddr, recv_buffer: Option<u32>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let mut stream = socket.connect(addr).await?;
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: velib\r\n\r\n")
        .await?;
    Ok(stream)
}

/// A page that never reads: a small receive buffer, so the server sees it soon.
async fn silent_page(addr: SocketAddr) -> Result<TcpStream> {
    open_page(addr, Some(4096)).await
}

/// Reads a page's stream and throws it away; counts the page in `snapshots` once its first
/// event (the snapshot) has arrived.
async fn read_page(mut stream: TcpStream, snapshots: Arc<AtomicU64>) {
    let mut buf = [0u8; 2048];
    let mut previous = 0u8;
    let mut first = true;
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if first {
            // An event ends with a blank line; the response's headers end with "\r\n\r\n",
            // which is not one.
            let ended =
                (previous == b'\n' && buf[0] == b'\n') || buf[..n].windows(2).any(|w| w == b"\n\n");
            if ended {
                first = false;
                snapshots.fetch_add(1, Ordering::Relaxed);
            }
        }
        previous = buf[n - 1];
    }
}

/// `GET /health` on a connection of its own: (time to the whole answer, its JSON).
async fn health(addr: SocketAddr) -> Result<(Duration, Value)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: velib\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .with_context(|| format!("not an HTTP answer: {text:?}"))?;
    Ok((took, serde_json::from_str(body.trim())?))
}

/// Asks `/health` every 50 ms until `done` (at least once).
async fn sample_health(addr: SocketAddr, done: impl Fn() -> bool) -> Result<Sampled> {
    let mut ms = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while ms.is_empty() || !done() {
        ticker.tick().await;
        let (took, _) = health(addr).await?;
        ms.push(took.as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok(Sampled {
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
        count: ms.len(),
    })
}
