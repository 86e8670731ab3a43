//! A minimal HTTP/1.1 server on 127.0.0.1 for the benchmarks: GET only, keep-alive, bodies
//! from a routing function. It counts the connections it has open, so a benchmark can tell
//! how many requests a client had in flight at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Maps a request path to a body; `None` is a 404.
pub type Routes = Arc<dyn Fn(&str) -> Option<Arc<Vec<u8>>> + Send + Sync>;

#[derive(Debug, Default)]
pub struct Counters {
    open: AtomicUsize,
    pub max_open: AtomicUsize,
    pub requests: AtomicUsize,
}

pub struct Server {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(routes: Routes) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (routes, c) = (Arc::clone(&routes), Arc::clone(&c));
                tokio::spawn(async move {
                    let now = c.open.fetch_add(1, Ordering::Relaxed) + 1;
                    c.max_open.fetch_max(now, Ordering::Relaxed);
                    let _ = serve(sock, &routes, &c).await;
                    c.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(Server {
            addr,
            counters,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(mut sock: TcpStream, routes: &Routes, c: &Counters) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        c.requests.fetch_add(1, Ordering::Relaxed);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let close = head.to_ascii_lowercase().contains("connection: close");
        match routes(path) {
            Some(body) => {
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                sock.write_all(header.as_bytes()).await?;
                sock.write_all(&body).await?;
            }
            None => {
                sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .await?;
            }
        }
        if close {
            return Ok(());
        }
    }
}
