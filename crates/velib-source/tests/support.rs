//! Helpers shared by the test modules.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use velib_source::SourceOptions;

/// The API key the tests use; every error must be free of it.
pub const KEY: &str = "s3cret-K3Y+with/odd=chars";

/// Asserts that neither `Display` nor `Debug` of `value` reveals [`KEY`], raw or
/// percent-encoded.
pub fn assert_no_key(value: &(impl std::fmt::Display + std::fmt::Debug)) {
    for text in [value.to_string(), format!("{value:?}")] {
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains("s3cret"), "key leaked: {text}");
    }
}

/// Options pointing every web source at `base`, with short limits so failure tests are quick.
pub fn options(base: &str) -> SourceOptions {
    SourceOptions {
        jcdecaux_api_key: Some(KEY.into()),
        jcdecaux_base_url: base.to_owned(),
        cyclocity_base_url: base.to_owned(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        // Most GBFS tests follow each feed's own `ttl`; the floor has a test of its own.
        gbfs_refresh_floor: Duration::ZERO,
        ..SourceOptions::default()
    }
}

/// Serves `response` (raw HTTP/1.1 bytes) to every connection on 127.0.0.1, then closes the
/// connection: for responses wiremock will not produce (a body shorter than its
/// Content-Length, chunked bodies of unbounded size). Returns the base URL.
pub async fn raw_server(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            tokio::spawn(async move {
                // Read the request head; the tests only send GETs without bodies.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// `data` as a gzip member using stored (uncompressed) deflate blocks: enough to check that
/// the client decodes gzip, without a compression crate.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One JCDecaux v1 station record.
pub fn v1_station(contract: &str, number: u64, bikes: u32) -> serde_json::Value {
    serde_json::json!({
        "number": number,
        "contract_name": contract,
        "name": format!("{number} - PLACE BELLECOUR"),
        "address": "Place Bellecour",
        "position": {"lat": 45.757, "lng": 4.832},
        "banking": true,
        "bonus": false,
        "bike_stands": 20,
        "available_bike_stands": 20 - bikes,
        "available_bikes": bikes,
        "status": "OPEN",
        "last_update": 1_750_000_000_000i64,
    })
}

/// A file in the system temporary directory holding `contents`, removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        // Process id plus name: parallel tests and concurrent runs never share a file.
        let path = std::env::temp_dir().join(format!("velib-source-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
