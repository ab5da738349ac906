//! The gateway's keep-alive connections to the upstream (src/proxy/client.rs), seen
//! from an upstream that counts its TCP connections: one client connection's requests
//! reuse one upstream connection (bodiless answers included), and a connection the
//! upstream closed — announced or silently while idle — is never used for a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// How the raw upstream treats its connections.
#[derive(Clone, Copy)]
enum Behaviour {
    /// HTTP/1.1 keep-alive, as long as the gateway wants.
    KeepAlive,
    /// Closes a connection without a word once it has been idle this long.
    CloseWhenIdle(Duration),
    /// Answers with `Connection: close` and closes.
    CloseAfterEach,
}

/// A minimal HTTP/1.1 upstream on raw sockets (request heads only, no bodies) that
/// counts the connections it accepted. `/204` answers 204; HEAD gets a head only.
struct RawUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start(behaviour: Behaviour) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, behaviour));
            }
        });
        RawUpstream {
            addr,
            accepted,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut sock: TcpStream, behaviour: Behaviour) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let read = match behaviour {
                Behaviour::CloseWhenIdle(idle) => {
                    match tokio::time::timeout(idle, sock.read(&mut chunk)).await {
                        Ok(r) => r,
                        Err(_) => return, // idle too long: close silently
                    }
                }
                _ => sock.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("");
        let path = words.next().unwrap_or("");
        let close = matches!(behaviour, Behaviour::CloseAfterEach);
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = if path.ends_with("/204") {
            format!("HTTP/1.1 204 No Content\r\n{connection}\r\n")
        } else if method == "HEAD" {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{connection}\r\n")
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{connection}\r\nok")
        };
        if sock.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Sends one request on `sock` and reads the answer's status (and body, if any).
async fn exchange(sock: &mut TcpStream, method: &str, path: &str) -> (u16, Vec<u8>) {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    read_raw_response(sock, method == "HEAD").await
}

async fn gateway(up: &RawUpstream) -> Gateway {
    Gateway::builder_url(&up.url())
        .plain_http()
        .bypass("/open/")
        .start()
        .await
}

#[tokio::test]
async fn one_client_connection_reuses_one_upstream_connection_bodiless_answers_included() {
    let up = RawUpstream::start(Behaviour::KeepAlive).await;
    let gw = gateway(&up).await;
    let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
    for i in 0..30 {
        let (method, path, want) = match i % 3 {
            0 => ("GET", "/open/x", 200),
            1 => ("HEAD", "/open/x", 200),
            _ => ("GET", "/open/204", 204),
        };
        let (status, body) = exchange(&mut sock, method, path).await;
        assert_eq!(status, want, "request {i}: {method} {path}");
        if want == 200 && method == "GET" {
            assert_eq!(body, b"ok");
        }
    }
    assert_eq!(
        up.connections(),
        1,
        "every request should have reused the first upstream connection"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    let up = RawUpstream::start(Behaviour::CloseWhenIdle(Duration::from_millis(100))).await;
    let gw = gateway(&up).await;
    let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
    for i in 0..5 {
        let (status, body) = exchange(&mut sock, "GET", "/open/x").await;
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]), "request {i}");
        // Past the upstream's idle limit: the pooled connection is gone by the next one.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        up.connections(),
        5,
        "a closed connection cannot serve a request"
    );
}

#[tokio::test]
async fn an_upstream_that_closes_after_every_answer_gets_a_new_connection_each_time() {
    let up = RawUpstream::start(Behaviour::CloseAfterEach).await;
    let gw = gateway(&up).await;
    let mut sock = TcpStream::connect(gw.addr()).await.unwrap();
    for i in 0..10 {
        let (status, body) = exchange(&mut sock, "GET", "/open/x").await;
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]), "request {i}");
    }
    assert_eq!(up.connections(), 10);
    drop(gw);
}
