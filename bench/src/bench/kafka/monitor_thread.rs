//! What the latency and exactly-once benchmarks share: an exactly-once monitor on a thread of
//! its own, and its output kept line by line with the moment each line was written.

use anyhow::{Result, bail};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use velib_kafka::KafkaArgs;
use velib_monitor::{ExactlyOnceConfig, MonitorConfig, Progress};

/// Keeps each printed line with the moment its newline was written.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// The complete lines, each with the moment its newline was written.
    pub done: Vec<(Instant, Vec<u8>)>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.done
                    .push((Instant::now(), std::mem::take(&mut self.partial)));
            } else {
                self.partial.push(b);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer shared with the monitor's thread, keeping each line with the moment it was
/// written (after its transaction committed).
#[derive(Clone, Default)]
pub struct SharedLines(pub Arc<Mutex<Lines>>);

impl Write for SharedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An exactly-once monitor on its own thread, until [`Running::stop`].
pub struct Running {
    pub progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread:
        std::thread::JoinHandle<Result<velib_monitor::MonitorReport, velib_monitor::MonitorError>>,
}

impl Running {
    pub fn start(
        bootstrap: &str,
        config: MonitorConfig,
        state_topic: &str,
        out: Box<dyn Write + Send>,
    ) -> Running {
        let group = velib_testkit::unique_name("bench-eos");
        Running::start_in(&group, bootstrap, config, state_topic, out)
    }

    /// [`Running::start`] in consumer group `group` (whose state records the monitor restores).
    pub fn start_in(
        group: &str,
        bootstrap: &str,
        config: MonitorConfig,
        state_topic: &str,
        out: Box<dyn Write + Send>,
    ) -> Running {
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut eos = ExactlyOnceConfig::new(velib_testkit::unique_name("bench"));
        eos.state_topic = state_topic.to_owned();
        eos.progress = Some(Arc::clone(&progress));
        let kafka = KafkaArgs::new(bootstrap).with("auto.offset.reset", "earliest");
        let group = group.to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            // The binary's entry point, on a runtime of this thread's own; its shutdown is
            // the bench's stop flag, looked at every few milliseconds (the engine itself runs
            // on a blocking thread, so this costs the measurement nothing).
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| velib_monitor::MonitorError::Sink(e.to_string()))?;
                let shutdown = async {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                runtime.block_on(velib_monitor::run(
                    &kafka,
                    &group,
                    &config,
                    velib_monitor::Guarantee::ExactlyOnce(eos),
                    out,
                    shutdown,
                ))
            })
        };
        Running {
            progress,
            stop,
            thread,
        }
    }

    /// Waits (polling every millisecond, up to `limit`) until `done` holds; the moment it did.
    pub fn wait(&self, limit: Duration, done: impl Fn(&Progress) -> bool) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.progress) {
                return Ok(Instant::now());
            }
            if self.thread.is_finished() {
                bail!("the exactly-once monitor stopped early");
            }
            if Instant::now() > deadline {
                bail!("the exactly-once monitor did not get there within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn stop(self) -> Result<velib_monitor::MonitorReport> {
        self.stop.store(true, Ordering::Relaxed);
        let report = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the monitor thread panicked"))??;
        Ok(report)
    }
}
