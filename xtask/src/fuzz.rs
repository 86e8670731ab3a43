//! `cargo xtask fuzz [--time SECS] [TARGET…]`: the coverage-guided fuzz targets of `fuzz/`
//! (cargo-fuzz, libFuzzer), seeded with the real day in `shared/data`.
//!
//! It installs what is missing (the nightly toolchain, `cargo-fuzz`), builds the seeds
//! (`fuzz/seeds.py`, from the real day, at run time), builds the targets once, runs each for
//! the given time, and prints per target the executions, the coverage reached and the
//! findings (inputs libFuzzer saved under `fuzz/artifacts/<target>/`). It fails when a target
//! found something.
//!
//! Targets are built without a sanitizer (`-s none`): the parsers are safe Rust, so AddressSanitizer
//! would find nothing more there and makes each execution several times slower; overflow checks
//! and debug assertions stay on (cargo-fuzz's default).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every fuzz target, one per parser of outside input (see `fuzz/fuzz_targets/`).
pub const TARGETS: [&str; 7] = [
    "station_json",
    "station_key",
    "gbfs",
    "jcdecaux_v1",
    "properties",
    "smtp_url",
    "duration",
];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// How many targets run at the same time (each uses one core).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Targets to run; all of them when none is named.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    targets: Vec<String>,
}

/// What one target's run gave.
struct Outcome {
    target: String,
    executions: Option<u64>,
    per_second: Option<u64>,
    coverage: Option<String>,
    findings: Vec<PathBuf>,
    log: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        args.targets
    };
    fuzz(&targets, args.time, args.jobs.max(1))
}

fn fuzz(targets: &[String], secs: u64, jobs: usize) -> Result<()> {
    ensure_installed()?;
    let root = crate::workspace_root();
    let fuzz_dir = root.join("fuzz");
    crate::run(
        "fuzz seeds from the real day",
        Command::new("python3")
            .arg(fuzz_dir.join("seeds.py"))
            .arg(fuzz_dir.join("seeds")),
    )?;
    crate::run("cargo fuzz build", &mut cargo_fuzz(&root, "build"))?;

    let logs = target_dir(&root).join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for group in targets.chunks(jobs) {
        println!("==> fuzzing {} for {secs} s", group.join(", "));
        let mut running = Vec::new();
        for target in group {
            let corpus = fuzz_dir.join("corpus").join(target);
            std::fs::create_dir_all(&corpus)?;
            let artifacts = fuzz_dir.join("artifacts").join(target);
            std::fs::create_dir_all(&artifacts)?;
            let before = files(&artifacts);
            let log = logs.join(format!("{target}.log"));
            let out =
                std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
            let child = cargo_fuzz(&root, "run")
                .arg(target)
                .arg(&corpus)
                .arg(fuzz_dir.join("seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"])
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .with_context(|| format!("could not start the fuzz target {target}"))?;
            running.push((target.clone(), child, artifacts, before, log));
        }
        for (target, mut child, artifacts, before, log) in running {
            let status = child.wait()?;
            let findings: Vec<PathBuf> = files(&artifacts)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            let outcome = read_log(&target, &log, findings)?;
            if !status.success() && outcome.findings.is_empty() {
                bail!(
                    "the fuzz target {target} stopped ({status}) without saving an input; see {}",
                    log.display()
                );
            }
            outcomes.push(outcome);
        }
    }

    println!(
        "{:<14} {:>12} {:>9}  {:<34} findings",
        "target", "executions", "exec/s", "coverage (edges, features)"
    );
    let show = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    for o in &outcomes {
        println!(
            "{:<14} {:>12} {:>9}  {:<34} {}",
            o.target,
            show(o.executions),
            show(o.per_second),
            o.coverage.as_deref().unwrap_or("?"),
            o.findings.len()
        );
    }
    let found: Vec<&Outcome> = outcomes.iter().filter(|o| !o.findings.is_empty()).collect();
    if !found.is_empty() {
        for o in &found {
            println!("{}: see {}", o.target, o.log.display());
            for f in &o.findings {
                println!(
                    "  {} (replay: cargo +nightly fuzz run -s none {} {})",
                    f.display(),
                    o.target,
                    f.display()
                );
            }
        }
        bail!("{} fuzz target(s) found a failing input", found.len());
    }
    Ok(())
}

/// Where the fuzz builds go: they use other compiler flags than the workspace's own builds, so
/// they cannot share those. `VELIB_FUZZ_TARGET_DIR` if set, else velib's cache
/// (`~/.cache/velib/fuzz-target`, beside the Kafka jars): their first build compiles
/// librdkafka, OpenSSL and aws-lc again with the fuzzing flags (about eleven CPU-minutes), and
/// later clones on the same machine reuse it.
fn target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("VELIB_FUZZ_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    match velib_testkit::kafka::cache_dir() {
        Ok(cache) => cache.join("fuzz-target"),
        Err(_) => root.join("fuzz").join("target"),
    }
}

/// `cargo +nightly fuzz <command>` with velib's build options.
fn cargo_fuzz(root: &Path, command: &str) -> Command {
    // The rustup proxy, not `$CARGO` (this toolchain's cargo, which knows no `+nightly`).
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "fuzz", command, "-s", "none"])
        // One codegen unit (cargo-fuzz's default) makes the first build of the dependencies,
        // librdkafka's Rust side among them, several minutes longer for little speed.
        .args(["--codegen-units", "16"])
        .arg("--target-dir")
        .arg(target_dir(root));
    cmd
}

/// The nightly toolchain (libFuzzer's instrumentation flags need it) and cargo-fuzz.
fn ensure_installed() -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        crate::run(
            "rustup toolchain install nightly",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
        )?;
    }
    let cargo_fuzz = Command::new("cargo")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !cargo_fuzz {
        crate::run(
            "cargo install cargo-fuzz",
            Command::new("cargo").env_remove("RUSTUP_TOOLCHAIN").args([
                "+nightly",
                "install",
                "cargo-fuzz",
                "--locked",
            ]),
        )?;
    }
    Ok(())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The executions (`stat::number_of_executed_units`), the speed and the last coverage line
/// (`cov:` edges, `ft:` features) of a libFuzzer log.
fn read_log(target: &str, log: &Path, findings: Vec<PathBuf>) -> Result<Outcome> {
    let text = std::fs::read_to_string(log).with_context(|| format!("read {}", log.display()))?;
    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let field = |line: &str, name: &str| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next().map(str::to_owned)
    };
    let coverage = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "))
        .and_then(|l| {
            Some(format!(
                "cov {} ft {} corpus {}",
                field(l, "cov:")?,
                field(l, "ft:")?,
                field(l, "corp:").unwrap_or_default()
            ))
        });
    Ok(Outcome {
        target: target.to_owned(),
        executions: stat("stat::number_of_executed_units:"),
        per_second: stat("stat::average_exec_per_sec:"),
        coverage,
        findings,
        log: log.to_owned(),
    })
}
