//! The results: a Markdown table for people, the raw numbers as JSON for scripts.

use super::Sizes;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One figure of the table.
#[derive(Debug)]
pub struct Row {
    pub bench: &'static str,
    pub case: String,
    pub broker: String,
    /// velib's figure (a median).
    pub value: f64,
    pub unit: &'static str,
    /// What it is compared with, measured in the same run: name and figure.
    pub baseline: Option<(String, f64)>,
    /// The target as written in the issue, and whether this run meets it.
    pub target: Option<(&'static str, bool)>,
    pub note: String,
}

#[derive(Debug)]
pub struct Report {
    rows: Vec<Row>,
    missing: Vec<(String, String)>,
    notes: Vec<String>,
    raw: serde_json::Map<String, Value>,
    meta: serde_json::Map<String, Value>,
}

impl Report {
    pub fn new(sizes: &Sizes) -> Report {
        let mut meta = serde_json::Map::new();
        meta.insert(
            "mode".into(),
            json!(if sizes.quick { "quick" } else { "full" }),
        );
        meta.insert(
            "sizes".into(),
            json!({
                "stations": sizes.stations, "detect_records": sizes.stations * sizes.detect_snapshots,
                "kafka_records": sizes.kafka_records(), "runs": sizes.runs,
                "python_runs": sizes.python_runs, "latency_secs_per_rate": sizes.latency_secs,
            }),
        );
        meta.insert("machine".into(), machine());
        Report {
            rows: Vec::new(),
            missing: Vec::new(),
            notes: Vec::new(),
            raw: serde_json::Map::new(),
            meta,
        }
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// A figure the issue asks for that this run could not produce.
    pub fn not_measured(&mut self, what: &str, why: &str) {
        self.missing.push((what.to_owned(), why.to_owned()));
    }

    pub fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }

    pub fn raw(&mut self, key: &str, value: Value) {
        self.raw.insert(key.to_owned(), value);
    }

    pub fn set_python(&mut self, versions: &str) {
        self.meta.insert("python".into(), json!(versions));
    }

    pub fn set_broker(&mut self, describe: &str) {
        let brokers = self
            .meta
            .entry("brokers")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .map(|a| a.push(json!(describe)));
        let _ = brokers;
    }

    pub fn finish(&mut self, took: Duration) {
        self.meta
            .insert("duration_s".into(), json!(took.as_secs_f64().round()));
    }

    /// Writes `<name>.md` and `<name>.json` (lower case) in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "bench": r.bench, "case": r.case, "broker": r.broker, "value": r.value,
                    "unit": r.unit,
                    "baseline": r.baseline.as_ref().map(|(n, v)| json!({"name": n, "value": v})),
                    "ratio": r.baseline.as_ref().map(|(_, v)| r.value / v),
                    "target": r.target.map(|(t, _)| t), "met": r.target.map(|(_, m)| m),
                    "note": r.note,
                })
            })
            .collect();
        let all = json!({
            "meta": self.meta, "rows": rows,
            "not_measured": self.missing.iter().map(|(w, y)| json!({"what": w, "why": y})).collect::<Vec<_>>(),
            "notes": self.notes, "raw": self.raw,
        });
        let json_path = dir.join(format!("{}.json", name.to_lowercase()));
        std::fs::write(&json_path, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("write {}", json_path.display()))?;
        let md_path = dir.join(format!("{name}.md"));
        std::fs::write(&md_path, self.markdown())
            .with_context(|| format!("write {}", md_path.display()))?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.meta;
        let _ = writeln!(s, "# velib benchmark results\n");
        let _ = writeln!(
            s,
            "Written by `cargo xtask bench{}`; do not edit by hand. Every figure is a median of \
             the runs below, after a warm-up; every ratio compares two figures measured in this \
             same run. Numbers are reported, never asserted.\n",
            if m["mode"] == "quick" { " --quick" } else { "" }
        );
        let _ = writeln!(
            s,
            "- mode: **{}**; sizes: `{}`",
            m["mode"].as_str().unwrap_or(""),
            m["sizes"]
        );
        let machine = &m["machine"];
        for key in [
            "cpu",
            "cores",
            "memory",
            "kernel",
            "rustc",
            "librdkafka",
            "velib commit",
        ] {
            if let Some(v) = machine.get(key).and_then(Value::as_str) {
                let _ = writeln!(s, "- {key}: {v}");
            }
        }
        if let Some(p) = m.get("python").and_then(Value::as_str) {
            let _ = writeln!(s, "- tutorial scripts: {p}");
        }
        if let Some(b) = m.get("brokers").and_then(Value::as_array) {
            for b in b {
                let _ = writeln!(s, "- broker: {}", b.as_str().unwrap_or(""));
            }
        }
        if let Some(d) = m.get("duration_s") {
            let _ = writeln!(s, "- whole run: {d} s");
        }
        let _ = writeln!(
            s,
            "\n| benchmark | case | broker | velib | compared with (same run) | ratio | target | met |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---|---:|---|:-:|");
        for r in &self.rows {
            let (base, ratio) = match &r.baseline {
                Some((name, v)) => (
                    format!("{name}: {}", fmt_value(*v, r.unit)),
                    format!("{:.2}×", r.value / v),
                ),
                None => ("—".into(), "—".into()),
            };
            let (target, met) = match r.target {
                Some((t, m)) => (t.to_owned(), if m { "yes" } else { "**no**" }.to_owned()),
                None => ("—".into(), "—".into()),
            };
            let case = if r.note.is_empty() {
                r.case.clone()
            } else {
                format!("{} ({})", r.case, r.note)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.bench,
                case,
                r.broker,
                fmt_value(r.value, r.unit),
                base,
                ratio,
                target,
                met
            );
        }
        for (what, why) in &self.missing {
            let _ = writeln!(s, "| {what} | not measured yet: {why} | | | | | | |");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes from this run\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s.push_str(METHOD);
        s
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "records/s" if v >= 1e6 => format!("{:.2} M records/s", v / 1e6),
        "records/s" => format!("{:.1} k records/s", v / 1e3),
        "ms" => format!("{v:.1} ms"),
        "s" => format!("{v:.2} s"),
        "MiB" => format!("{v:.0} MiB"),
        _ => format!("{v:.1} {unit}"),
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cmd = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dirty = !cmd("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0).to_string()
            + " (shared with other work: ratios are the figures to trust)",
        "memory": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": cmd("rustc", &["-V"]),
        "librdkafka": rdkafka::util::get_rdkafka_version().1,
        "velib commit": cmd("git", &["rev-parse", "--short", "HEAD"]) + if dirty { " (with uncommitted changes)" } else { "" },
    })
}

const METHOD: &str = r#"
## How each figure is measured

1. **Detection core**: records of the simulated city (10 contracts, 10 % of stations moving per
   snapshot), serialised to v1 JSON before timing; timed: what the monitor does with each
   record, `StationView::from_json`, `Detector::observe` and writing the change line of every
   change (to a reused buffer), on one thread.
   Memory: one snapshot of 100 k and 1 M stations observed by a fresh `Detector`;
   `Detector::heap_bytes()` per station (the table), and the process's RSS growth, read after
   `malloc_trim` so memory freed earlier and kept by the allocator neither hides nor inflates
   it (both must be under the target to meet it; the untrimmed growth, which also counts the
   tables outgrown on the way, is in the note).
2. **Monitor**: a 10-partition topic pre-filled (gzip level 1, as velib's producer writes)
   with the simulated city; each consumer joins a fresh group at the earliest offset. Rate = records
   from the first record received to the last one (group join excluded, for every variant).
   velib: `velib_monitor::at_least_once::run` with empty-station events published, text lines to a file.
   Bare: an rdkafka `BaseConsumer` with the same consumer settings that only counts.
   Tutorial: `bench/tutorial/monitor.py`.
   Busy machine (Apache Kafka, rows marked so): the same drains, velib and bare alternating,
   with one thread of this process spinning 8 ms of every 10 ms beside them; the at-least-once
   latencies (bench 4) and the exactly-once drains and latencies (bench 5) are measured again
   the same way.
3. **Producer**: velib: `velib_producer::run` on the simulated city (10 k stations, one
   snapshot per poll, 1 ms interval), `KafkaSink` with its defaults (idempotent, gzip
   level 1, linger 5 ms), timed from start to every record acknowledged. Bare: an rdkafka
   `ThreadedProducer` with the same settings sending the same records pre-serialised, waiting
   for acknowledgements as velib does. Both clients are started before their clock starts (one
   record delivered to another topic): an idempotent producer given records within a
   millisecond of its creation waits for librdkafka's 500 ms producer-id retry. Tutorial: `bench/tutorial/producer.py` fetching the same snapshots over HTTP from the
   bench, until `flush()` returns.
4. **Latency**: producer and monitor in one process on a fresh topic; the simulated city is
   sized so that one poll per 100 ms gives the rate. Latency = from just before the record is
   handed to `KafkaSink::enqueue` to the monitor writing the `\n` of its change line (JSON
   format, matched by key and `last_update`); the first second is left out. Exactly once, the
   note also says how many commits wrote lines and how far apart they were (lines written
   within a millisecond of each other count as one commit's).
5. **Polling fan-out**: 1,500 GBFS 2.3 systems on a local HTTP server in the same process
   (10 to 1,500 stations each, about 330 B per station in `station_information` and 300 B in
   `station_status`); `GbfsSource::fetch` once cold (discovery, system and station information,
   status: 4 requests per system) and once warm (status only). Peak memory = the process's
   peak RSS growth during the round (the server's pre-built responses excluded);
   concurrency = the most connections the server had open at once.
6. **Map viewers**: `velib_web::run` in this process on the mock cluster, reading a city of
   5,000 stations that is published whole every second with a tenth of it changed. 1,000
   pages open `/api/events` over TCP: 900 read and discard (2 kB buffer each), 100 send their
   request and never read (4 kB receive buffer). `/health` is asked every 50 ms on a new
   connection, timed from connecting to the last byte: while the pages connect, until every
   reading page has its snapshot; then for 10 s (30 s in a full run); then as long again with
   one thread per core spinning beside the server. Memory = the process's peak RSS growth from just before the pages connect,
   divided by the pages (the bench's readers included). The pages and the prober run on a
   tokio runtime of their own (two threads), the server on the bench's.

The mock cluster is librdkafka's, in this process (one broker): its threads compete with the
clients' for the same cores. Apache Kafka runs as a separate JVM process, one KRaft node
with a 256 MiB heap (all of it from the start), and its log in memory (`/dev/shm`, a tmpfs)
unless `--broker-storage disk` puts it in the temporary directory (the "broker" line above
says where it was). Each benchmark makes fresh topics, and on this shared machine's disk the
broker's first writes to a new partition's files stalled its appends for 0.1-1.1 s, the
exactly-once figures most (every commit appends markers to a dozen new partitions): in
memory, the figures are the clients'. HISTORY.md has both.
"#;
