//! A last word when the process dies of a fault in native code.
//!
//! librdkafka 2.12.1 (the newest that rdkafka-sys ships) can crash with SIGSEGV when a topic a
//! client uses is deleted and created again (a new topic id under the same name: its metadata
//! cache frees an entry it still reads, librdkafka issue #4964). No velib code runs on that
//! path, so the crash cannot be caught; what can be done is not to die silently. [`install`]
//! makes a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE) write one line to stderr, naming the
//! likely cause and what to do, before the process dies of it as it would have (same signal,
//! same exit status, a core dump where enabled). A supervisor (systemd, Docker's restart
//! policy, Kubernetes) then starts it again; with exactly-once monitoring nothing is printed
//! twice or missed across that restart.
//!
//! The handler only writes a constant with `write(2)` and re-raises the signal with its
//! default action, both async-signal-safe.

#![allow(unsafe_code)]

use std::sync::Once;

/// What is written to stderr when the process receives a fatal signal.
const LAST_WORD: &[u8] =
    b"\nvelib: fatal signal (a fault in native code, most likely librdkafka's: \
librdkafka 2.12.1 crashes when a topic in use is deleted and created again, issue #4964). The \
process stops here; restart it (a restart policy does), and if the stations or state topics were \
re-created on purpose, restart every client after they were. Exit status: 128 + the signal.\n";

const FATAL: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

extern "C" fn last_word(signal: libc::c_int) {
    // SAFETY: write(2), signal(2) and raise(3) are async-signal-safe; LAST_WORD is static.
    unsafe {
        libc::write(2, LAST_WORD.as_ptr().cast(), LAST_WORD.len());
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Installs the last word for the fatal signals, once per process. Rust's own stack-overflow
/// report (on SIGSEGV) is replaced by it; the line says a fault in native code, which a stack
/// overflow also is.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in FATAL {
            // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn that only
            // makes async-signal-safe calls. SA_ONSTACK runs it on the alternate stack Rust's
            // threads have, so a stack overflow can still report.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = last_word as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_ONSTACK | libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

/// Whether SIGHUP was set to be ignored when the process started: `nohup velib-… &` asks for
/// exactly that (keep running when the terminal closes), and a handler installed for SIGHUP
/// would override the request. Call it before any SIGHUP handler is installed.
pub fn hangup_ignored() -> bool {
    // SAFETY: sigaction(2) with a null new action only reads the current disposition into
    // `current`, a zeroed plain C struct owned here.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}
