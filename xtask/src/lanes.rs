//! The test binaries of the workspace, run side by side instead of one after another.
//!
//! `cargo test` runs each test binary in turn; velib's spend most of their time waiting (on
//! Apache Kafka's group protocol, transaction timeouts, processes killed and restarted), so
//! two binaries at a time take about the time of the longest one instead of the sum. Each
//! binary is run as cargo would run it (from its package's directory, with
//! `CARGO_MANIFEST_DIR` set), its output kept in a log file and printed whole when it ends,
//! so that lines of two binaries never interleave.
//!
//! Jobs start longest first, by the durations of the last run (kept beside the binaries in
//! the target directory; a job never timed starts first, since it may be long).

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many jobs run at once unless `VELIB_TEST_LANES` says otherwise.
const DEFAULT_LANES: usize = 2;
/// The environment variable that sets how many jobs run at once (1: one after another).
pub const LANES_ENV: &str = "VELIB_TEST_LANES";

/// One command of the test run: a test binary, or the doc-tests.
pub struct Job {
    /// Says which binary: `velib-monitor test main`, `velib-model lib`…
    pub name: String,
    command: Command,
}

impl Job {
    /// A job that runs `command` as it is.
    pub fn new(name: impl Into<String>, command: Command) -> Job {
        Job {
            name: name.into(),
            command,
        }
    }
}

/// Test binaries run as two jobs, one the tests of a module, the other the rest: the monitor's
/// takes as long as all the others together (its Apache Kafka fault scenarios alone take half
/// of it), so whole it would keep one lane busy while the other has nothing left to run.
/// (Each half keeps the binary's own rule of which tests run beside others: see the gate in
/// `crates/velib-monitor/tests/main.rs`.)
const SPLIT: &[(&str, &str)] = &[("velib-monitor test main", "exactly_once::")];

/// The test binaries `cargo test --no-run` (given as `build`, with its other arguments) builds,
/// each as a job that runs it with `--include-ignored` (the tests that need Apache Kafka are
/// `#[ignore]`d under plain `cargo test`) and `test_args`; and the file that keeps their durations, in
/// the profile's directory of the target directory.
pub fn test_binaries(build: &mut Command, test_args: &[String]) -> Result<(Vec<Job>, PathBuf)> {
    let output = build
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo test --no-run")?;
    if !output.status.success() {
        bail!("cargo test --no-run failed ({})", output.status);
    }
    let mut jobs = Vec::new();
    let mut times = None;
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Artifact>(line) else {
            continue;
        };
        let (Some(executable), true) = (message.executable, message.profile.test) else {
            continue;
        };
        let package_dir = message
            .manifest_path
            .parent()
            .context("a manifest path without a directory")?
            .to_path_buf();
        let package = package_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = message.target.kind.join(",");
        let name = if kind == "lib" {
            format!("{package} lib")
        } else {
            format!("{package} {kind} {}", message.target.name)
        };
        if times.is_none() {
            // `target/debug/deps/main-…` → `target/debug/velib-test-times.tsv`
            times = executable
                .parent()
                .and_then(Path::parent)
                .map(|dir| dir.join("velib-test-times.tsv"));
        }
        let halves = SPLIT
            .iter()
            .find(|(n, _)| *n == name && test_args.is_empty());
        let parts: Vec<(String, Vec<&str>)> = match halves {
            Some((_, module)) => vec![
                (format!("{name} ({module})"), vec![*module]),
                (format!("{name} (all but {module})"), vec!["--skip", module]),
            ],
            None => vec![(name, Vec::new())],
        };
        for (name, filter) in parts {
            let mut command = Command::new(&executable);
            command
                .arg("--include-ignored")
                .args(filter)
                .args(test_args)
                .current_dir(&package_dir)
                .env("CARGO_MANIFEST_DIR", &package_dir);
            jobs.push(Job::new(name, command));
        }
    }
    match times {
        Some(times) => Ok((jobs, times)),
        None => bail!("cargo test --no-run listed no test binary"),
    }
}

/// The part of cargo's `compiler-artifact` message read here.
#[derive(serde::Deserialize)]
struct Artifact {
    executable: Option<PathBuf>,
    manifest_path: PathBuf,
    target: ArtifactTarget,
    profile: ArtifactProfile,
}

#[derive(serde::Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ArtifactProfile {
    test: bool,
}

/// What one job did.
struct Done {
    name: String,
    took: Duration,
    passed: bool,
}

/// Runs `jobs` with `env` added, `VELIB_TEST_LANES` (default 2) at a time, longest first by the
/// durations in `times` (which this run then updates); every job runs even after one failed.
pub fn run(mut jobs: Vec<Job>, env: &[(String, OsString)], times: &Path) -> Result<()> {
    let lanes = lanes()?;
    let known = read_times(times);
    // Never timed first, then longest first.
    jobs.sort_by_key(|j| std::cmp::Reverse(known.get(&j.name).copied().unwrap_or(u64::MAX)));
    let logs = times.with_file_name("velib-test-logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("could not create {}", logs.display()))?;
    println!(
        "==> {} test jobs, {lanes} at a time (set {LANES_ENV} to change), longest first",
        jobs.len()
    );
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..lanes {
            s.spawn(|| {
                while let Some(job) = next(&queue) {
                    let outcome = run_one(job, env, &logs, start);
                    done.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
                }
            });
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    write_times(times, &known, &done);
    summary(&done, start.elapsed())
}

fn next(queue: &Mutex<VecDeque<Job>>) -> Option<Job> {
    queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
}

fn lanes() -> Result<usize> {
    match std::env::var(LANES_ENV) {
        Err(_) => Ok(DEFAULT_LANES),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("{LANES_ENV}={v:?}: expected a number of jobs at once, at least 1"),
        },
    }
}

/// Runs one job with its output in a log file, then prints that output whole.
fn run_one(mut job: Job, env: &[(String, OsString)], logs: &Path, start: Instant) -> Done {
    let file_name: String = job
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let log_path = logs.join(format!("{file_name}.log"));
    println!("--> {} starts at {} s", job.name, start.elapsed().as_secs());
    let began = Instant::now();
    let status = std::fs::File::create(&log_path).and_then(|log| {
        job.command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
    });
    let took = began.elapsed();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (passed, verdict) = match &status {
        Ok(s) if s.success() => (true, "ok".to_string()),
        Ok(s) => (false, format!("FAILED ({s})")),
        Err(e) => (false, format!("could not run: {e}")),
    };
    // One print, so that two jobs ending together do not interleave.
    let mut text = format!(
        "==> {}: {verdict} in {} s (log: {})\n",
        job.name,
        took.as_secs(),
        log_path.display()
    );
    text.push_str(&output);
    print!("{text}");
    Done {
        name: job.name,
        took,
        passed,
    }
}

fn summary(done: &[Done], total: Duration) -> Result<()> {
    let mut table = String::new();
    let mut longest_first: Vec<&Done> = done.iter().collect();
    longest_first.sort_by_key(|d| std::cmp::Reverse(d.took));
    for d in longest_first {
        let verdict = if d.passed { "ok" } else { "FAILED" };
        let _ = writeln!(
            table,
            "  {:>5} s  {verdict:<6}  {}",
            d.took.as_secs(),
            d.name
        );
    }
    println!("==> test jobs done in {} s:\n{table}", total.as_secs());
    let failed: Vec<&str> = done
        .iter()
        .filter(|d| !d.passed)
        .map(|d| d.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("tests failed in: {}", failed.join(", "));
    }
    Ok(())
}

/// The durations of the last run, in seconds, by job name (nothing if never run or unreadable:
/// they only order the jobs).
fn read_times(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (secs, name) = l.split_once('\t')?;
            Some((name.to_string(), secs.parse().ok()?))
        })
        .collect()
}

fn write_times(path: &Path, known: &HashMap<String, u64>, done: &[Done]) {
    let mut times = known.clone();
    for d in done {
        times.insert(d.name.clone(), d.took.as_secs());
    }
    let mut text = String::new();
    for (name, secs) in &times {
        let _ = writeln!(text, "{secs}\t{name}");
    }
    if let Err(e) = std::fs::write(path, text) {
        println!(
            "could not keep the jobs' durations in {}: {e}",
            path.display()
        );
    }
}
