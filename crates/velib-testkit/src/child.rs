//! A velib binary as a child process, for what only a process shows: its exit status, how it
//! takes a signal, and what it writes to stderr (the log) as well as stdout.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// A running binary whose stdout and stderr are collected line by line. Killed if dropped.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pid: u32,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Starts `command` with both output streams piped (stdin closed).
    ///
    /// # Panics
    ///
    /// When it cannot be started.
    pub fn spawn(command: &mut Command) -> Child {
        hangup_by_default(command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the binary");
        let pid = child.id().expect("a pid");
        let stdout = collect(child.stdout.take().expect("piped"));
        let stderr = collect(child.stderr.take().expect("piped"));
        Child {
            child,
            pid,
            stdout,
            stderr,
        }
    }

    /// The lines written to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The lines written to stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle` and returns it.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what stderr holds.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> String {
        let mut lines = self.wait_for_stderr_lines(needle, 1, timeout).await;
        lines.swap_remove(0)
    }

    /// Waits until at least `n` stderr lines contain `needle` and returns them all (at least
    /// `n`), in order.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what stderr holds.
    pub async fn wait_for_stderr_lines(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found: Vec<String> = self
                .stderr()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {n} stderr lines containing {needle:?}; \
                 stderr:\n{}",
                self.stderr().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`INT`, `TERM`…) with `kill`.
    ///
    /// # Panics
    ///
    /// When `kill` cannot be run.
    pub async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}: {status}", self.pid);
    }

    /// The exit status, if the process has exited.
    ///
    /// # Panics
    ///
    /// When its status cannot be read.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("read the process's status")
    }

    /// Waits for the process to exit, and for the rest of its output.
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout`, with its stderr.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => panic!(
                "the process is still running after {timeout:?}; stderr:\n{}",
                self.stderr().join("\n")
            ),
        };
        // The readers finish at the pipes' end of file, just after the exit.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while Arc::strong_count(&self.stdout) > 1 || Arc::strong_count(&self.stderr) > 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        status
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Makes `command`'s process start with SIGHUP at its default action, whatever this process
/// inherited. Under `nohup`, or a runner that ignores hang-ups, a child would otherwise inherit
/// "ignored", and a test of how a binary takes a hang-up would see it ignore one, as it rightly
/// does when started that way.
pub fn hangup_by_default(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed; signal(2) is one, and it touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
}
