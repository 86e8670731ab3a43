//! Installs the page's map library, Leaflet, from the npm registry as `web/package-lock.json`
//! pins it (`npm ci`, checked against the lock file's integrity hashes), into `OUT_DIR`, so the
//! binary embeds it and the page loads no script from anywhere but velib-web itself.
//!
//! Runs again only when `web/package.json` or `web/package-lock.json` changes. npm's cache
//! (`--prefer-offline`) makes a second target directory cost no download. `VELIB_NPM` names
//! another npm executable.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-env-changed=VELIB_NPM");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("npm");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/npm");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(manifest.join("web").join(file), out.join(file))
            .unwrap_or_else(|e| panic!("copy web/{file} to {}: {e}", out.display()));
    }
    let npm = std::env::var("VELIB_NPM").unwrap_or_else(|_| "npm".to_owned());
    let status = Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "velib-web embeds its map library (Leaflet), which `{npm} ci` installs from \
                 crates/velib-web/web/package-lock.json, but {npm} could not be started: {e}. \
                 Install Node.js and npm, or set VELIB_NPM to the npm executable"
            )
        });
    assert!(
        status.success(),
        "`{npm} ci` in {} failed ({status}): velib-web needs the npm registry (or npm's cache) \
         to install Leaflet as crates/velib-web/web/package-lock.json pins it",
        out.display()
    );
    let leaflet = out.join("node_modules/leaflet/dist/leaflet.js");
    assert!(
        leaflet.is_file(),
        "{} is missing after `npm ci`",
        leaflet.display()
    );
}
