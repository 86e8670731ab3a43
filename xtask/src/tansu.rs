//! Installs and runs tansu, a Kafka-compatible broker, as a separate process.
//!
//! tansu is built from the Rust package registry with `cargo install` the first time (about ten
//! minutes on two cores) into a cache directory outside the work tree, and reused afterwards.
//! Its in-memory storage engine keeps nothing between runs, which is what tests want.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running tansu broker; stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Tansu {
    child: Child,
    bootstrap: String,
    log: PathBuf,
}

impl Tansu {
    /// Starts tansu on `port` (a free one when `None`) and waits until it accepts connections.
    pub fn start(bin: &Path, port: Option<u16>) -> Result<Tansu> {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let bootstrap = format!("127.0.0.1:{port}");
        let url = format!("tcp://{bootstrap}");
        let log = std::env::temp_dir().join(format!("velib-tansu-{port}.log"));
        let log_file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        let mut broker = Tansu {
            child,
            bootstrap,
            log,
        };
        broker.wait_ready(Duration::from_secs(30))?;
        Ok(broker)
    }

    /// The `bootstrap.servers` address.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let addr: SocketAddr = self.bootstrap.parse()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tansu exited at start ({status}); its log is {}",
                    self.log.display()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not accept connections on {} within {timeout:?}; its log is {}",
                    self.bootstrap,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // SIGTERM lets tansu close its listener; std's `kill` would send SIGKILL straight away.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the listener is closed before tansu binds).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}
