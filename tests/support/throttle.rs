//! A loopback proxy in front of moto that answers the first N requests with EC2's throttling
//! error (`RequestLimitExceeded`, HTTP 503) and passes everything else through untouched.
//!
//! Only what the retry test needs: the general fault injector (rates, resets, slowness, per
//! operation) is [`super::faults`], which reuses this module's request reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(super) const THROTTLED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors>\
<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>";

pub struct ThrottleProxy {
    pub endpoint: String,
    left: Arc<AtomicU32>,
    served: Arc<AtomicU32>,
}

impl ThrottleProxy {
    /// Listens on a free loopback port; throttles the first `throttle_first` requests.
    pub async fn start(upstream: &str, throttle_first: u32) -> ThrottleProxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let left = Arc::new(AtomicU32::new(throttle_first));
        let served = Arc::new(AtomicU32::new(0));
        let (l, s) = (Arc::clone(&left), Arc::clone(&served));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (l, s, up) = (Arc::clone(&l), Arc::clone(&s), upstream.clone());
                tokio::spawn(async move {
                    let _ = handle(conn, &up, &l, &s).await;
                });
            }
        });
        ThrottleProxy { endpoint: format!("http://127.0.0.1:{port}"), left, served }
    }

    /// Throttling answers sent so far.
    pub fn throttled(&self) -> u32 {
        self.served.load(Ordering::SeqCst)
    }

    /// Throttling answers still to send.
    pub fn remaining(&self) -> u32 {
        self.left.load(Ordering::SeqCst)
    }
}

/// Reads one request (headers and a Content-Length body).
pub(super) async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(buf);
            }
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(mut conn: TcpStream, upstream: &str, left: &AtomicU32, served: &AtomicU32) -> std::io::Result<()> {
    let request = read_request(&mut conn).await?;
    let throttle = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if throttle {
        served.fetch_add(1, Ordering::SeqCst);
        let resp = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{THROTTLED}",
            THROTTLED.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&request).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut up).await?;
    Ok(())
}
