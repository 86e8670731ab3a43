//! The tutorial's kafka-python scripts: the virtualenv the tests use, and a way to run a
//! script and read the timing line it prints.

use super::Setup;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug)]
pub struct Python {
    bin: PathBuf,
    scripts: PathBuf,
    pub versions: String,
}

impl Python {
    /// The tutorial's kafka-python, in the virtualenv the tests use too (see
    /// [`Setup::kafka_python`]), created the first time.
    pub fn ensure(root: &Path, setup: &Setup<'_>) -> Result<Python> {
        let bin = (setup.kafka_python)()?;
        let out = Command::new(&bin)
            .args([
                "-c",
                "import sys, kafka; print('Python %s, kafka-python %s' % (sys.version.split()[0], kafka.__version__))",
            ])
            .output()
            .context("run the virtualenv's python")?;
        if !out.status.success() {
            bail!(
                "kafka-python does not import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Python {
            bin,
            scripts: root.join("bench").join("tutorial"),
            versions: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        })
    }

    /// Runs `bench/tutorial/<script>` with `args`, its stdout going to `stdout_file`, and returns
    /// the numbers of the `BENCH …` line it prints on stderr.
    pub fn run(&self, script: &str, args: &[String], stdout_file: &Path) -> Result<Vec<f64>> {
        let out = std::fs::File::create(stdout_file)?;
        let child = Command::new(&self.bin)
            .arg(self.scripts.join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {script}"))?;
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let Some(line) = stderr.lines().rev().find(|l| l.starts_with("BENCH ")) else {
            bail!(
                "{script} printed no BENCH line ({}): {}",
                output.status,
                stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        };
        line.split_whitespace()
            .skip(1)
            .map(|x| x.parse::<f64>().context("BENCH line"))
            .collect()
    }
}
