//! What velib-web's browser test needs besides Rust: Debian's `chromium` and the npm packages
//! of its driver (playwright-core, pinned by `crates/velib-web/tests/browser/package-lock.json`).
//! playwright's own browser download is not used: Debian's chromium is driven instead.

use crate::{run, workspace_root};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Installs chromium with apt-get when it is missing, and the driver's npm packages with
/// `npm ci`.
pub fn ensure_installed() -> Result<()> {
    let chromium = std::env::var_os("VELIB_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        if std::env::var_os("VELIB_CHROMIUM").is_some() {
            bail!("VELIB_CHROMIUM={} does not exist", chromium.display());
        }
        // apt-get needs root; as another user, sudo when there is one.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let apt = |args: &[&str]| {
            let mut cmd = Command::new(if root { "apt-get" } else { "sudo" });
            if !root {
                cmd.arg("apt-get");
            }
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        run("apt-get update (for chromium)", &mut apt(&["update"]))?;
        run(
            "apt-get install chromium (for velib-web's browser test)",
            &mut apt(&["install", "-y", "--no-install-recommends", "chromium"]),
        )?;
    }
    run(
        "npm ci (velib-web's browser test driver)",
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(workspace_root().join("crates/velib-web/tests/browser")),
    )
}
