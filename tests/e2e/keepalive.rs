//! Keep-alive connections that go idle (src/accept/http1.rs): 100–200 ms without a
//! request the gateway drops hyper's per-connection buffers and keeps only
//! the socket ("parks" it); the client's next request on the same connection must be
//! served exactly as if nothing happened — also when part of it had already arrived,
//! with a body, over TLS, and while the gateway shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::*;

/// Long enough for an idle connection to park (it parks one to two 100 ms ticks after
/// its last exchange), with room for a slow machine.
const PARK_WAIT: Duration = Duration::from_millis(1500);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(gw: &Gateway) -> Box<dyn Io> {
    let tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    if gw.scheme() == "https" {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(gw.tls_config(&["http/1.1"])));
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        Box::new(tls)
    } else {
        Box::new(tcp)
    }
}

async fn parked_total(gw: &Gateway) -> f64 {
    let text = gw
        .client()
        .get(gw.url("/_vestibule/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("vestibule_connections_parked_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no vestibule_connections_parked_total in\n{text}"))
}

async fn parked_connection_serves_the_next_request(gw: Gateway, up: Upstream) {
    let host = gw.authority();
    let mut io = connect(&gw).await;
    io.write_all(format!("GET /static/one HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, body) = read_raw_response(&mut io, false).await;
    assert_eq!(status, 200);
    assert_eq!(echo_of(&body)["uri"], "/static/one");

    tokio::time::sleep(PARK_WAIT).await;
    // The scrape uses a new connection, which has not served a request yet: only
    // the idle connection above can have parked.
    assert!(
        parked_total(&gw).await >= 1.0,
        "the idle connection was not parked"
    );

    let body = b"name=value&more=1";
    io.write_all(
        format!(
            "POST /static/two HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    io.write_all(body).await.unwrap();
    let (status, answer) = read_raw_response(&mut io, false).await;
    assert_eq!(status, 200, "the parked connection's next request failed");
    assert_eq!(echo_of(&answer)["uri"], "/static/two");
    let last = up.last();
    assert_eq!(last.path(), "/static/two");
    assert_eq!(last.body_len, body.len() as u64);
    assert_eq!(
        last.body_sha256,
        sha256_hex(body),
        "the body after the park was altered"
    );
    health_ok(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plain_connection_parks_and_serves_its_next_request() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .start()
        .await;
    parked_connection_serves_the_next_request(gw, up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_parks_and_serves_its_next_request() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/static/").start().await;
    parked_connection_serves_the_next_request(gw, up).await;
}

/// A pipelined second request that has only partly arrived when the connection parks
/// is kept and completed by the bytes that follow; nothing else is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_next_request_survives_the_park() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .start()
        .await;
    let host = gw.authority();
    let mut io = connect(&gw).await;
    io.write_all(
        format!("GET /static/first HTTP/1.1\r\nHost: {host}\r\n\r\nGET /static/sec").as_bytes(),
    )
    .await
    .unwrap();
    let (status, body) = read_raw_response(&mut io, false).await;
    assert_eq!(status, 200);
    assert_eq!(echo_of(&body)["uri"], "/static/first");
    tokio::time::sleep(PARK_WAIT).await;
    assert!(
        parked_total(&gw).await >= 1.0,
        "the connection did not park"
    );
    io.write_all(format!("ond HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, body) = read_raw_response(&mut io, false).await;
    assert_eq!(status, 200);
    assert_eq!(echo_of(&body)["uri"], "/static/second");
    let paths: Vec<String> = up.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, ["/static/first", "/static/second"]);
}

/// SIGTERM closes parked connections at once: the process exits without waiting for
/// their keep-alive time to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_parked_connections() {
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .start()
        .await;
    let host = gw.authority();
    let mut io = connect(&gw).await;
    io.write_all(format!("GET /static/one HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_raw_response(&mut io, false).await.0, 200);
    tokio::time::sleep(PARK_WAIT).await;
    assert!(
        parked_total(&gw).await >= 1.0,
        "the connection did not park"
    );
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM\n{}", gw.log_tail()));
    assert_eq!(exit.code(), Some(0), "{}", gw.log_tail());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t.elapsed()
    );
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), io.read(&mut rest))
        .await
        .expect("the parked connection stayed open after exit")
        .unwrap_or(0);
    assert_eq!(n, 0, "bytes after shutdown: {:?}", &rest[..n]);
}

async fn health_ok(gw: &Gateway) {
    let r = gw
        .client()
        .get(gw.url("/_vestibule/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
}
