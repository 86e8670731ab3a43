//! Installs and runs tansu, a Kafka-compatible broker, as a separate process.
//!
//! tansu is built from the Rust package registry with `cargo install` the first time (about ten
//! minutes on two cores) into a cache directory outside the work tree, and reused afterwards.
//! Its in-memory storage engine keeps nothing between runs, which is what tests want.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use velib_testkit::tansu::TansuOptions;

const VERSION: &str = "0.6.0";

/// Where tansu is installed: `$VELIB_CACHE_DIR`, else `$XDG_CACHE_HOME/velib`, else
/// `~/.cache/velib`, then `tansu-<version>`.
fn install_root() -> Result<PathBuf> {
    let base = match (
        std::env::var_os("VELIB_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    ) {
        (Some(dir), _, _) => PathBuf::from(dir),
        (None, Some(xdg), _) => PathBuf::from(xdg).join("velib"),
        (None, None, Some(home)) => PathBuf::from(home).join(".cache").join("velib"),
        (None, None, None) => bail!("set VELIB_CACHE_DIR (or HOME) to say where to install tansu"),
    };
    Ok(base.join(format!("tansu-{VERSION}")))
}

/// The path of the tansu binary, installing it first if it is not in the cache.
pub fn ensure_installed() -> Result<PathBuf> {
    let root = install_root()?;
    let bin = root.join("bin").join("tansu");
    if bin.is_file() {
        return Ok(bin);
    }
    println!(
        "==> installing tansu {VERSION} into {} (first time only; this builds it from source and \
         takes about ten minutes on two cores)",
        root.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "tansu",
            "--version",
            VERSION,
            "--features",
            "dynostore",
            "--locked",
        ])
        .arg("--root")
        .arg(&root)
        .status()
        .context("could not run cargo install tansu")?;
    if !status.success() || !bin.is_file() {
        bail!("cargo install tansu {VERSION} failed ({status}); see its output above");
    }
    Ok(bin)
}

/// A running tansu broker (the test support's child-process handling).
pub use velib_testkit::tansu::TansuProcess as Tansu;

/// Starts tansu on 127.0.0.1:`port` (a free one when `None`) and waits until it accepts
/// connections; see [`Tansu`].
pub fn start(bin: &Path, port: Option<u16>) -> Result<Tansu> {
    Tansu::start(
        bin,
        &TansuOptions {
            port,
            ..TansuOptions::default()
        },
    )
    .map_err(anyhow::Error::msg)
}
