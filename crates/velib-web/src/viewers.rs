//! The pages watching the map ("viewers"), and what keeps a slow one from costing the others.
//!
//! Every event goes on the wire as a *frame* built once and shared by reference between the
//! viewers, so a thousand viewers cost one copy of each update, not a thousand. Each viewer
//! reads the shared frames from a broadcast ring of `backlog` frames and records which frame
//! it last handed to the HTTP server; a viewer further behind than `backlog` frames is *hung
//! up*: its TCP connection is closed by the server and counted (`viewers_dropped` in
//! `/health`, `velib_web_viewers_dropped_total` in the metrics). The page's `EventSource` then
//! reconnects by itself and starts again from a fresh snapshot.
//!
//! A viewer that never reads cannot be noticed from its own event stream: once the socket's
//! send buffer (bounded, see `SEND_BUFFER`) and hyper's write buffer (about 400 kB of frames,
//! shared with the other viewers) are full, hyper stops asking the stream for frames. So the pusher checks every viewer after
//! each frame it sends, and the hang-up reaches the connection through its socket, which
//! fails hyper's next read or write and wakes it to see so.
//!
//! What a viewer holds of its own is therefore small (its connection's buffers and a few
//! counters); what it holds of the shared frames is bounded by the ring and by hyper's
//! buffer, and released when it is hung up.

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One server-sent event as it goes on the wire (`event: …`, `data: …`, a blank line), built
/// once and shared by every viewer: cloning it only counts a reference.
pub(crate) type Frame = Bytes;

/// Frames a viewer may fall behind before it is hung up, by default: ten seconds of changes
/// at the default 200 ms push interval, fifty seconds of a quiet map's heartbeats.
pub const DEFAULT_BACKLOG: u16 = 50;

/// A server-sent event, framed for the wire: `event: <name>`, an optional reconnection delay,
/// then `data` on one line. `data` is compact JSON, which has no line breaks.
pub(crate) fn frame(name: &str, retry_ms: Option<u64>, data: &str) -> Frame {
    let mut out = String::with_capacity(data.len() + name.len() + 32);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    if let Some(ms) = retry_ms {
        out.push_str(&format!("retry: {ms}\n"));
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Every open event stream, by id, and the count of viewers hung up.
#[derive(Debug, Default)]
pub(crate) struct Viewers {
    open: Mutex<HashMap<u64, Arc<Viewer>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    /// How far behind the furthest viewer was after the last frame was sent, in frames.
    lag_max: AtomicU64,
}

/// One viewer's progress, shared between its event stream and the pusher.
#[derive(Debug)]
pub(crate) struct Viewer {
    id: u64,
    /// The sequence number of the last frame its stream handed to the HTTP server.
    delivered: AtomicU64,
    hung_up: AtomicBool,
    hangup: CancellationToken,
}

impl Viewer {
    /// Records that the frame numbered `seq` was handed to the HTTP server.
    pub(crate) fn delivered(&self, seq: u64) {
        self.delivered.store(seq, Ordering::Relaxed);
    }

    /// Cancelled when the viewer is hung up.
    pub(crate) fn hangup(&self) -> &CancellationToken {
        &self.hangup
    }
}

impl Viewers {
    /// Registers a viewer on the connection `hangup` closes, up to date with frame `seq`.
    pub(crate) fn open(self: &Arc<Viewers>, seq: u64, hangup: CancellationToken) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let viewer = Arc::new(Viewer {
            id,
            delivered: AtomicU64::new(seq),
            hung_up: AtomicBool::new(false),
            hangup,
        });
        self.open.lock().unwrap().insert(id, Arc::clone(&viewer));
        metrics::gauge!("velib_web_event_streams").increment(1);
        Registered {
            viewers: Arc::downgrade(self),
            viewer,
        }
    }

    /// Hangs up `viewer`, once, and counts it.
    pub(crate) fn hang_up(&self, viewer: &Viewer) {
        if !viewer.hung_up.swap(true, Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("velib_web_viewers_dropped_total").increment(1);
            tracing::debug!(viewer = viewer.id, "a viewer fell too far behind: hung up");
            viewer.hangup.cancel();
        }
    }

    /// After frame `seq` was sent: hangs up every viewer more than `backlog` frames behind
    /// it, and records how far behind the furthest of the others is.
    pub(crate) fn hang_up_behind(&self, seq: u64, backlog: usize) {
        let backlog = backlog as u64;
        let mut lag_max = 0;
        let behind: Vec<Arc<Viewer>> = {
            let open = self.open.lock().unwrap();
            open.values()
                .filter(|v| {
                    let lag = seq.saturating_sub(v.delivered.load(Ordering::Relaxed));
                    if lag > backlog {
                        return true;
                    }
                    lag_max = lag_max.max(lag);
                    false
                })
                .cloned()
                .collect()
        };
        for viewer in &behind {
            self.hang_up(viewer);
        }
        self.lag_max.store(lag_max, Ordering::Relaxed);
    }

    /// Closes every viewer's connection, uncounted: on shutdown, for the pages that do not
    /// read the end of their stream.
    pub(crate) fn close_all(&self) {
        for viewer in self.open.lock().unwrap().values() {
            viewer.hangup.cancel();
        }
    }

    /// Event streams open now.
    pub(crate) fn count(&self) -> usize {
        self.open.lock().unwrap().len()
    }

    /// Viewers hung up since the start for falling too far behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many frames the furthest viewer still open was behind after the last frame was
    /// sent: never more than the backlog.
    pub(crate) fn lag_max(&self) -> u64 {
        self.lag_max.load(Ordering::Relaxed)
    }
}

/// A viewer's registration, removed when its event stream is dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    viewers: Weak<Viewers>,
    viewer: Arc<Viewer>,
}

impl Registered {
    pub(crate) fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    /// Hangs this viewer up (it fell behind by more than the ring holds).
    pub(crate) fn hang_up(&self) {
        if let Some(viewers) = self.viewers.upgrade() {
            viewers.hang_up(&self.viewer);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(viewers) = self.viewers.upgrade() {
            viewers.open.lock().unwrap().remove(&self.viewer.id);
        }
        metrics::gauge!("velib_web_event_streams").decrement(1);
    }
}

/// The kernel's send buffer of each connection, in bytes (Linux doubles it for its own
/// bookkeeping). Left to itself, Linux grows it up to `tcp_wmem`'s maximum, 4 MB by default,
/// for a peer that does not read: memory each slow viewer would cost the machine, and frames
/// the server would take as delivered. 128 kB still carries a snapshot of thousands of
/// stations in well under a second on a local network.
const SEND_BUFFER: usize = 128 * 1024;

/// Connections the kernel queues for the server to accept. Every page reconnects a second
/// after the server comes back (or hangs many up), so a thousand pages arrive at once; with
/// tokio's 1,024 the queue overflowed in the benchmark and a new connection (a `/health`
/// probe) waited for the client's SYN retries, one second and more. Linux caps it at
/// `net.core.somaxconn`, 4,096 by default.
const LISTEN_BACKLOG: i32 = 4096;

/// Deepens the accept queue of a listener already listening: on Linux (and the BSDs) a second
/// `listen` only changes its length.
pub(crate) fn deepen_backlog(listener: &TcpListener) {
    if let Err(error) = socket2::SockRef::from(listener).listen(LISTEN_BACKLOG) {
        tracing::debug!(%error, "could not deepen the listener's accept queue");
    }
}

/// The listener of [`run`](crate::run): plain TCP, with each connection able to be closed by
/// the server whatever hyper is waiting for.
#[derive(Debug)]
pub(crate) struct HangupListener(pub(crate) TcpListener);

impl axum::serve::Listener for HangupListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!(%error, "could not bound a connection's send buffer");
        }
        let hangup = CancellationToken::new();
        let connection = Connection {
            stream,
            hung_up: Box::pin(hangup.clone().cancelled_owned()),
            hangup,
        };
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// What a handler knows of its connection: the token that closes it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) hangup: CancellationToken,
}

impl Connected<IncomingStream<'_, HangupListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HangupListener>) -> Peer {
        Peer {
            hangup: stream.io().hangup.clone(),
        }
    }
}

/// A TCP connection that fails every read and write once its hang-up token is cancelled, and
/// wakes hyper when that happens, so the connection and everything queued on it are dropped
/// even when the peer reads nothing.
pub(crate) struct Connection {
    stream: TcpStream,
    hangup: CancellationToken,
    hung_up: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("hung_up", &self.hangup.is_cancelled())
            .finish()
    }
}

impl Connection {
    /// Whether the server hung up; otherwise registers the task to be woken when it does.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.hung_up.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "hung up: the viewer fell too far behind",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    // Vectored writes let hyper queue the shared frames as they are instead of copying them
    // into a buffer of each connection's own.
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_server_sent_event() {
        let f = frame("snapshot", Some(1000), r#"{"a":1}"#);
        assert_eq!(&f[..], b"event: snapshot\nretry: 1000\ndata: {\"a\":1}\n\n");
        assert_eq!(
            &frame("update", None, "{}")[..],
            b"event: update\ndata: {}\n\n"
        );
    }

    #[test]
    fn viewers_further_behind_than_the_backlog_are_hung_up_once() {
        let viewers = Arc::new(Viewers::default());
        let quick = viewers.open(10, CancellationToken::new());
        let slow = viewers.open(10, CancellationToken::new());
        quick.viewer().delivered(13);
        viewers.hang_up_behind(13, 3);
        assert_eq!(
            viewers.dropped(),
            0,
            "three behind is within a backlog of three"
        );
        assert_eq!(viewers.lag_max(), 3);
        viewers.hang_up_behind(14, 3);
        assert!(slow.viewer().hangup().is_cancelled());
        assert!(!quick.viewer().hangup().is_cancelled());
        assert_eq!(viewers.lag_max(), 1, "the quick one, one behind");
        // Seen behind again, and hung up by its own stream: still counted once.
        viewers.hang_up_behind(15, 3);
        slow.hang_up();
        assert_eq!(viewers.dropped(), 1);
        assert_eq!(viewers.count(), 2, "open until its stream ends");
        drop(slow);
        assert_eq!(viewers.count(), 1);
    }
}
