//! A real SMTP server for the tests, on 127.0.0.1.
//!
//! The SMTP protocol (command parsing, the RFC 5321 state machine, dot-unstuffing of `DATA`)
//! is the `mailin` crate's; this module only owns the socket, so a test can stop the server,
//! start it again on the same port, make it answer `451` to every `MAIL FROM` (a temporary
//! refusal) or `550` to chosen recipients (a permanent one), make it accept connections and
//! then say nothing ([`Stall`]), and read what it received.

use mailin::{Action, Handler, Response, SessionBuilder, response};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as received after `DATA` (dot-unstuffed, CRLF line ends).
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parsable message")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }
}

/// Where a stalled server stops answering, keeping the connection open: what a frozen process
/// (SIGSTOP, a full disk, a wedged milter) looks like from the client's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stall {
    /// Answer everything.
    #[default]
    No,
    /// Accept the connection and never send the greeting.
    Greeting,
    /// Greet and answer `EHLO`, then never answer `MAIL FROM`.
    Mail,
}

#[derive(Default)]
struct State {
    inbox: Vec<Received>,
    stall: Stall,
    connections: usize,
    temp_fail: bool,
    temp_refusals: usize,
    reject: HashSet<String>,
}

/// The server. Dropping it stops it.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> SmtpSink {
        let mut sink = SmtpSink {
            addr: "127.0.0.1:0".parse().unwrap(),
            state: Arc::default(),
            accept: None,
        };
        sink.listen().await;
        sink
    }

    /// `smtp://127.0.0.1:PORT`: plaintext, as the URL names a loopback host.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Closes the listener and every open connection: clients get "connection refused".
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// Listens again, on the same port.
    pub async fn restart(&mut self) {
        assert!(self.accept.is_none(), "restart a stopped server only");
        self.listen().await;
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        // The port was just ours: rebinding it must not wait for TIME_WAIT connections.
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let state = self.state.clone();
        self.accept = Some(tokio::spawn(async move {
            // Owned by this task, so aborting it closes every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(serve(stream, state.clone()));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        }));
    }

    /// Makes new connections stall (see [`Stall`]); `Stall::No` answers again. Connections
    /// already stalled stay so until the client hangs up.
    pub fn set_stall(&self, stall: Stall) {
        self.state.lock().unwrap().stall = stall;
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Answer `451` to `MAIL FROM` (on) or accept mail again (off).
    pub fn set_temp_fail(&self, on: bool) {
        self.state.lock().unwrap().temp_fail = on;
    }

    /// How many `MAIL FROM` were refused with `451`.
    pub fn temp_refusals(&self) -> usize {
        self.state.lock().unwrap().temp_refusals
    }

    /// Answer `550` to `RCPT TO:<address>`.
    pub fn reject_recipient(&self, address: &str) {
        self.state
            .lock()
            .unwrap()
            .reject
            .insert(address.to_ascii_lowercase());
    }

    /// Everything accepted so far.
    pub fn inbox(&self) -> Vec<Received> {
        self.state.lock().unwrap().inbox.clone()
    }

    /// Waits until at least `n` messages were accepted, and returns them all.
    pub async fn wait_for_mails(&self, n: usize) -> Vec<Received> {
        velib_testkit::wait_for(
            &format!("{n} mails at the SMTP server"),
            Duration::from_secs(30),
            || async {
                let inbox = self.inbox();
                (inbox.len() >= n).then_some(inbox)
            },
        )
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let stall = {
        let mut state = state.lock().unwrap();
        state.connections += 1;
        state.stall
    };
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if stall == Stall::Greeting {
        return hold(read).await;
    }
    let handler = Session {
        state,
        data: Vec::new(),
        from: String::new(),
        to: Vec::new(),
    };
    let mut session = SessionBuilder::new("velib-test-smtp").build(peer, handler);
    if reply(&mut write, &session.greeting()).await.is_err() {
        return;
    }
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if stall == Stall::Mail && line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MAIL") {
            return hold(read).await;
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => {
                if reply(&mut write, &response).await.is_err() {
                    return;
                }
            }
            // No TLS here: the client asked for what this server never offers.
            Action::Close | Action::UpgradeTls => {
                let _ = reply(&mut write, &response).await;
                return;
            }
        }
    }
}

/// Reads and ignores whatever the client sends until it hangs up: the connection stays open,
/// unanswered.
async fn hold(mut read: BufReader<tokio::net::tcp::OwnedReadHalf>) {
    let mut sink = Vec::new();
    loop {
        sink.clear();
        match read.read_until(b'\n', &mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn reply(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    response.write_to(&mut buf)?;
    write.write_all(&buf).await
}

/// One SMTP session's decisions.
struct Session {
    state: Arc<Mutex<State>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        let mut state = self.state.lock().unwrap();
        if state.temp_fail {
            state.temp_refusals += 1;
            return Response::custom(451, "4.3.0 Try again later".to_owned());
        }
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let address = to.trim_matches(['<', '>']).to_ascii_lowercase();
        if self.state.lock().unwrap().reject.contains(&address) {
            return response::NO_MAILBOX;
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.state.lock().unwrap().inbox.push(Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        });
        response::OK
    }
}
