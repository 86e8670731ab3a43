//! The "busy machine" variants: a bounded CPU load beside the measured clients.
//!
//! A monitor shares its machine with other work, and that is when it falls behind and needs its
//! speed. So the Apache Kafka monitor and exactly-once figures are also measured with this load
//! running, the same load for every variant of a comparison (velib, the bare consumer, the other
//! guarantee), and reported as rows of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long each of the load's periods lasts.
const PERIOD: Duration = Duration::from_millis(10);
/// How much of each period the load spins; it sleeps the rest.
const BUSY: Duration = Duration::from_millis(8);

/// What the table says about the load.
pub const DESCRIBED: &str = "busy machine: one thread beside it spinning 8 ms of every 10 ms";

/// What a figure's text adds for the `load` beside it: nothing when there was none; in the
/// table (`bold`), marked so.
pub fn beside(load: &str, bold: bool) -> String {
    match (load.is_empty(), bold) {
        (true, _) => String::new(),
        (false, true) => format!("; **{load}**"),
        (false, false) => format!("; {load}"),
    }
}

/// A thread spinning [`BUSY`] of every [`PERIOD`], until dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Load {
    /// Starts the load.
    pub fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("bench-load".into())
                .spawn(move || spin(&stop))
                .expect("a thread for the load")
        };
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            std::hint::black_box(thread.join().unwrap_or_default());
        }
    }
}

/// Spins (integer work the compiler cannot remove) for [`BUSY`], sleeps until the end of the
/// period, and again, until `stop`.
fn spin(stop: &AtomicBool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut period = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while period.elapsed() < BUSY {
            for _ in 0..1000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            x = std::hint::black_box(x);
        }
        period += PERIOD;
        if let Some(rest) = period.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        } else {
            period = Instant::now();
        }
    }
    x
}
