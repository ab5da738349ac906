//! Upgrades and the tunnels they open (SPEC §5.2), and `TRACE`.
//!
//! - Only `websocket` is ever upgraded: an h2c upgrade (or any other token) on a bypass
//!   path reaches the upstream as plain HTTP/1.1, and a `101` that does not complete
//!   the WebSocket handshake is a 502, never a splice. The upstream here is a raw TCP
//!   stand-in that answers `101` to anything carrying `Upgrade` (as hypercorn does for
//!   h2c) and records every request head it sees.
//! - An open WebSocket ends within 60 s of its session ending (logout, revoke, a
//!   disabled user, absolute expiry), after `upstream.websocket_idle_timeout` without
//!   traffic, and keeps its connection's place under `server.max_connections`.
//! - `TRACE` / `TRACK` get 405 and are never forwarded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::flows::*;
use crate::harness::*;

// ------------------------------------------------------------------ raw upstream

/// How the raw upstream answers a request that carries `Upgrade`.
#[derive(Clone, Copy)]
enum On101 {
    /// `101` switching to h2c, as an ASGI server that accepts h2c does.
    H2c,
    /// `101` switching to websocket with this `Sec-WebSocket-Accept` (None: without).
    WebSocket(Option<&'static str>),
}

/// A raw HTTP/1.1 upstream: `200 ok` to plain requests, `101` to anything carrying
/// `Upgrade`; records every request head and whatever arrives after a `101`.
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    after_101: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start(on_101: On101) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let after_101 = Arc::new(Mutex::new(Vec::new()));
        let (h, a) = (heads.clone(), after_101.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve_raw(tcp, on_101, h.clone(), a.clone()));
            }
        });
        RawUpstream {
            addr,
            heads,
            after_101,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Whether any request head carried header `name`.
    fn saw_header(&self, name: &str) -> bool {
        let prefix = format!("\r\n{}:", name.to_ascii_lowercase());
        self.heads()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains(&prefix))
    }
}

async fn serve_raw(
    mut tcp: TcpStream,
    on_101: On101,
    heads: Arc<Mutex<Vec<String>>>,
    after_101: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        heads.lock().unwrap().push(head.clone());
        if !head.to_ascii_lowercase().contains("\r\nupgrade:") {
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
            if tcp.write_all(ok).await.is_err() {
                return;
            }
            continue;
        }
        let answer = match on_101 {
            On101::H2c => {
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_string()
            }
            On101::WebSocket(accept) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{}\r\n",
                accept
                    .map(|a| format!("Sec-WebSocket-Accept: {a}\r\n"))
                    .unwrap_or_default()
            ),
        };
        if tcp.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        // Whatever comes now would be the client's own protocol, spliced through.
        after_101.lock().unwrap().extend_from_slice(&buf);
        let _ = tcp.write_all(b"SPLICED").await;
        while let Ok(n) = tcp.read(&mut chunk).await {
            if n == 0 {
                return;
            }
            after_101.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
        return;
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RIGHT_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ------------------------------------------------------------------ only websocket upgrades

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_unknown_upgrades_on_a_bypass_path_reach_the_upstream_as_plain_http() {
    let up = RawUpstream::start(On101::H2c).await;
    let gw = Gateway::builder_url(&up.url())
        .bypass("/static/")
        .start()
        .await;
    let host = gw.authority();
    let cases = [
        (
            "h2c with HTTP2-Settings named in Connection",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "h2c with HTTP2-Settings not named in Connection",
            "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "an unknown protocol",
            "Connection: upgrade\r\nUpgrade: vestibule-test/1\r\n",
        ),
        (
            "a list that names websocket too",
            &format!(
                "Connection: Upgrade\r\nUpgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
            ),
        ),
        (
            "websocket over a POST",
            &format!(
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nContent-Length: 0\r\n"
            ),
        ),
    ];
    for (i, (what, headers)) in cases.iter().enumerate() {
        let method = if what.contains("POST") { "POST" } else { "GET" };
        let req = format!(
            "{method} /static/x{i} HTTP/1.1\r\nHost: {host}\r\nRemote-User: admin\r\n{headers}\r\n"
        );
        let r = gw.raw(req.as_bytes()).await;
        assert_ne!(r.status, 101, "{what}: the client got a 101\n{}", r.raw);
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (200, "ok"),
            "{what}: forwarded as a plain request\n{}",
            r.raw
        );
    }
    assert_eq!(up.heads().len(), cases.len(), "{:#?}", up.heads());
    assert!(
        !up.saw_header("upgrade"),
        "an Upgrade reached the upstream: {:#?}",
        up.heads()
    );
    assert!(
        !up.saw_header("http2-settings"),
        "HTTP2-Settings reached the upstream: {:#?}",
        up.heads()
    );
    assert!(!up.saw_header("remote-user"));
    assert!(
        up.after_101.lock().unwrap().is_empty(),
        "bytes were spliced to the upstream"
    );
}

/// Sends a valid WebSocket handshake for `/static/ws` and returns the answer.
async fn websocket_handshake(gw: &Gateway) -> RawResponse {
    let req = format!(
        "GET /static/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n",
        gw.authority()
    );
    gw.raw(req.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_that_does_not_complete_the_websocket_handshake_is_a_502_and_never_spliced() {
    for (what, on_101) in [
        (
            "a wrong Sec-WebSocket-Accept",
            On101::WebSocket(Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        ),
        ("no Sec-WebSocket-Accept", On101::WebSocket(None)),
        ("a switch to h2c", On101::H2c),
    ] {
        let up = RawUpstream::start(on_101).await;
        let gw = Gateway::builder_url(&up.url())
            .bypass("/static/")
            .start()
            .await;
        let r = websocket_handshake(&gw).await;
        assert_eq!(r.status, 502, "{what}: {}", r.raw);
        assert!(!r.raw.contains("SPLICED"), "{what}: spliced\n{}", r.raw);
        assert_eq!(up.heads().len(), 1, "{what}");
        assert!(up.saw_header("sec-websocket-key"), "{what}: forwarded");
    }
    // The right accept is spliced (the stand-in's first bytes arrive).
    let up = RawUpstream::start(On101::WebSocket(Some(RIGHT_ACCEPT))).await;
    let gw = Gateway::builder_url(&up.url())
        .bypass("/static/")
        .start()
        .await;
    let r = websocket_handshake(&gw).await;
    assert_eq!(r.status, 101, "{}", r.raw);
    assert_eq!(r.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(
        r.header("sec-websocket-accept").as_deref(),
        Some(RIGHT_ACCEPT)
    );
}

// ------------------------------------------------------------------ websocket helpers

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Opens a WebSocket through the gateway (TLS when it serves TLS), with `cookie`;
/// the refusal's status otherwise.
async fn ws_open(gw: &Gateway, path: &str, cookie: Option<&str>) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let tcp = TcpStream::connect(gw.addr()).await.map_err(|_| 0u16)?;
    let (io, scheme): (Box<dyn Io>, &str) = if gw.p.tls {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(gw.tls_config(&["http/1.1"])));
        let tls = connector
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp,
            )
            .await
            .map_err(|_| 0u16)?;
        (Box::new(tls), "wss")
    } else {
        (Box::new(tcp), "ws")
    };
    let mut req = format!("{scheme}://{}{path}", gw.authority())
        .into_client_request()
        .unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(req, io),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        _ => Err(0),
    }
}

/// One message there and back.
async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo timed out")
        .expect("closed")
        .expect("echo");
    assert_eq!(back, Message::text(text));
}

/// Waits (at most `within`) for the tunnel to close; how long it took, or None if it
/// is still open.
async fn closed_within(ws: &mut Ws, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        match tokio::time::timeout_at((start + within).into(), ws.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                return Some(start.elapsed());
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

// ------------------------------------------------------------------ tunnels end with the session

fn pat() -> TestUser {
    TestUser::new("pat", &["patient"])
}

async fn session_gateway(up: &Upstream, extra: &str) -> Gateway {
    Gateway::builder(up)
        .users_toml(&users_toml(&[pat()]))
        .extra(extra)
        .start()
        .await
}

/// A signed-in browser and a WebSocket it opened on a protected path, proven open.
async fn signed_in_tunnel(gw: &Gateway) -> (Browser, Ws) {
    let b = Browser::new(gw);
    assert_eq!(b.login_ok(&pat(), "/").await, "/");
    let mut ws = ws_open(gw, "/live/ws", Some(&b.cookie_header()))
        .await
        .expect("a WebSocket with a complete session");
    echo(&mut ws, "before").await;
    (b, ws)
}

/// The bound SPEC §5.2 sets.
const SESSION_END_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_within_60_s_of_logout() {
    let up = Upstream::start().await;
    let gw = session_gateway(&up, "").await;
    let (b, mut ws) = signed_in_tunnel(&gw).await;
    assert_eq!(b.logout().await.status, 303);
    let took = closed_within(&mut ws, SESSION_END_BOUND).await;
    eprintln!("tunnel closed {took:?} after logout");
    assert!(took.is_some(), "the tunnel outlived logout by 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_survives_rechecks_and_is_closed_within_60_s_of_sessions_revoke() {
    let up = Upstream::start().await;
    let gw = session_gateway(&up, "").await;
    let (_b, mut ws) = signed_in_tunnel(&gw).await;
    // Longer than the gateway's recheck interval (10 s): a valid session keeps its
    // tunnel, with or without traffic.
    assert_eq!(
        closed_within(&mut ws, Duration::from_secs(12)).await,
        None,
        "a tunnel of a valid session was closed"
    );
    echo(&mut ws, "still here").await;
    let out = admin(&gw, &["sessions", "revoke", "pat"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    let took = closed_within(&mut ws, SESSION_END_BOUND).await;
    eprintln!("tunnel closed {took:?} after sessions revoke");
    assert!(
        took.is_some(),
        "the tunnel outlived sessions revoke by 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_within_60_s_of_users_disable() {
    let up = Upstream::start().await;
    let gw = session_gateway(&up, "").await;
    let (_b, mut ws) = signed_in_tunnel(&gw).await;
    let out = admin(&gw, &["users", "disable", "pat"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    let took = closed_within(&mut ws, SESSION_END_BOUND).await;
    eprintln!("tunnel closed {took:?} after users disable");
    assert!(took.is_some(), "the tunnel outlived users disable by 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_within_60_s_of_its_session_expiring() {
    let up = Upstream::start().await;
    let gw = session_gateway(&up, "[session]\nabsolute_timeout = \"8s\"\n").await;
    let signed_in_at = Instant::now();
    let (_b, mut ws) = signed_in_tunnel(&gw).await;
    let expires_in = Duration::from_secs(8).saturating_sub(signed_in_at.elapsed());
    let took = closed_within(&mut ws, expires_in + SESSION_END_BOUND).await;
    eprintln!("tunnel closed {took:?} after opening; the session expired after {expires_in:?}");
    let took = took.expect("the tunnel outlived its session's absolute timeout by 60 s");
    assert!(
        took + Duration::from_millis(500) >= expires_in,
        "closed before the session expired: {took:?} < {expires_in:?}"
    );
}

// ------------------------------------------------------------------ idle timeout and max_connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_closed_after_the_idle_timeout_and_a_busy_one_stays() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .upstream_extra("websocket_idle_timeout = \"2s\"\n")
        .start()
        .await;
    let mut idle = ws_open(&gw, "/static/ws", None).await.expect("idle ws");
    let mut busy = ws_open(&gw, "/static/ws", None).await.expect("busy ws");
    let busy_task = tokio::spawn(async move {
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(5) {
            echo(&mut busy, &format!("ping {i}")).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        echo(&mut busy, "after 5 s").await;
    });
    let took = closed_within(&mut idle, Duration::from_secs(10)).await;
    eprintln!("idle tunnel closed after {took:?} (timeout 2 s)");
    let took = took.expect("an idle tunnel stayed open 10 s with a 2 s idle timeout");
    assert!(
        took >= Duration::from_millis(1900),
        "closed too early: {took:?}"
    );
    busy_task
        .await
        .expect("a tunnel with traffic every 0.5 s was closed");
}

/// A plain HTTP/1.1 request on a new connection: its status, or 0 when the gateway
/// closed the connection unanswered.
async fn one_request(gw: &Gateway) -> u16 {
    let Ok(mut tcp) = TcpStream::connect(gw.addr()).await else {
        return 0;
    };
    let req = format!(
        "GET /static/plain HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        gw.authority()
    );
    let _ = tcp.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    parse_raw(&buf).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_websockets_count_against_max_connections() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .server_extra("max_connections = 3")
        .start()
        .await;
    // The start-up health check's connection may hold a slot for a moment.
    let mut tunnels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tunnels.len() < 3 {
        match ws_open(&gw, "/static/ws", None).await {
            Ok(mut ws) => {
                echo(&mut ws, "open").await;
                tunnels.push(ws);
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("WebSocket {} refused: {s}", tunnels.len() + 1),
        }
    }
    assert_eq!(
        one_request(&gw).await,
        0,
        "a 4th connection was served while 3 WebSockets were open"
    );
    for ws in tunnels.iter_mut() {
        echo(ws, "still open").await;
    }
    // Closing one tunnel gives its slot back.
    let mut first = tunnels.remove(0);
    let _ = first.close(None).await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if one_request(&gw).await == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed tunnel's slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ TRACE

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_and_track_get_405_and_are_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/static/").start().await;
    for (method, path) in [
        ("TRACE", "/static/x"),
        ("TRACK", "/static/x"),
        ("TRACE", "/app/x"),
        ("TRACE", &p("/login")),
    ] {
        let r = gw
            .raw(
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: {}\r\nCookie: secret=1\r\nConnection: close\r\n\r\n",
                    gw.authority()
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.raw);
        assert!(
            !r.raw.contains("secret=1"),
            "{method} {path} echoed the request"
        );
    }
    assert_eq!(up.count(), 0, "a TRACE reached the upstream");
    // Other methods still pass.
    let r = gw.raw_get("/static/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.raw);
}
