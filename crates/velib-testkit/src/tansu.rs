//! tansu, a Kafka-compatible broker, as a child process with in-memory storage: started by
//! `cargo xtask test`, `broker` and `bench`, and by the tests that need a tansu of their own
//! (behind a TLS proxy, or with `--authentication`).

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start tansu.
#[derive(Debug, Clone, Copy, Default)]
pub struct TansuOptions<'a> {
    /// The port to listen on, on 127.0.0.1; a free one when `None`.
    pub port: Option<u16>,
    /// The address advertised to clients in metadata; the listener's own when `None`.
    pub advertised: Option<SocketAddr>,
    /// More `tansu broker` flags (for example `--authentication`).
    pub extra: &'a [&'a str],
}

/// A running tansu broker; stopped (SIGTERM, then SIGKILL after 5 s) when dropped. Its output
/// goes to a log file that is kept.
#[derive(Debug)]
pub struct TansuProcess {
    child: Child,
    bootstrap: String,
    log: PathBuf,
}

impl TansuProcess {
    /// Starts `bin` and waits (up to 30 s) until it accepts connections.
    ///
    /// # Errors
    ///
    /// When it cannot be started, exits, or does not listen in time; the message names its log.
    pub fn start(bin: &Path, options: &TansuOptions<'_>) -> Result<TansuProcess, String> {
        let port = match options.port {
            Some(p) => p,
            None => free_port()?,
        };
        let bootstrap = format!("127.0.0.1:{port}");
        let listen = format!("tcp://{bootstrap}");
        let advertise = options
            .advertised
            .map_or_else(|| listen.clone(), |a| format!("tcp://{a}"));
        let log = std::env::temp_dir().join(format!("velib-tansu-{port}.log"));
        let log_file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let stderr = log_file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &listen])
            .args(["--advertised-listener-url", &advertise])
            .args(["--storage-engine", "memory://tansu/"])
            .args(options.extra)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let mut broker = TansuProcess {
            child,
            bootstrap,
            log,
        };
        broker.wait_ready(Duration::from_secs(30))?;
        Ok(broker)
    }

    /// Its listener's address, `127.0.0.1:port`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr: SocketAddr = self.bootstrap.parse().map_err(|e| format!("{e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "tansu exited at start ({status}); its log is {}",
                    self.log.display()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not accept connections on {} within {timeout:?}; its log is {}",
                    self.bootstrap,
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TansuProcess {
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
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}
