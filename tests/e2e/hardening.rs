//! Hardening: what a hostile client can do at the socket level. Raw HTTP/1.1 bytes and
//! hand-built HTTP/2 frames against the real binary: request smuggling, malformed
//! heads, oversized URIs and header sections, slow clients, abusive h2 header blocks,
//! hop-by-hop tricks against the identity headers, and the gateway's own limits
//! (`[limits]`, `server.max_connections`).
//!
//! The invariant behind every assertion: the upstream never receives a request the
//! gateway did not decide on (no smuggled second request) and never an identity it
//! did not set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::flows::*;
use crate::harness::*;

// ------------------------------------------------------------------ raw helpers

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Writes `bytes` and reads everything until the server closes, or until nothing
/// arrives for `idle`. Unlike `Gateway::raw`, does not stop at the first response,
/// so a pipelined (smuggled) second response is seen.
async fn raw_all(addr: std::net::SocketAddr, bytes: &[u8], idle: Duration) -> (Vec<u8>, bool) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(bytes).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(15);
    let closed = loop {
        match tokio::time::timeout(idle, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    (buf, closed)
}

/// Status codes of every response in a raw HTTP/1.1 byte stream.
fn statuses(buf: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(buf);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text[i + 9..].get(..3).and_then(|s| s.parse().ok()))
        .collect()
}

async fn static_gateway(up: &Upstream) -> Gateway {
    Gateway::builder(up)
        .plain_http()
        .bypass("/static/")
        .start()
        .await
}

async fn health_ok(gw: &Gateway) {
    let r = gw
        .client()
        .get(gw.url("/_vestibule/health"))
        .send()
        .await
        .expect("health after abuse");
    assert_eq!(r.status(), 200, "the gateway must keep serving");
}

// ------------------------------------------------------------------ smuggling

/// Each attack is refused (400, nothing forwarded), or read by one framing only:
/// then exactly one request reaches the upstream, with the body that framing gives,
/// and nothing after it on the connection is ever forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_are_refused_or_framed_once() {
    let up = Upstream::start().await;
    let gw = static_gateway(&up).await;
    let host = gw.authority();
    let smuggled = format!("GET /static/SMUGGLED HTTP/1.1\r\nHost: {host}\r\n\r\n");
    // (name, request bytes, the body the upstream may see if the request is accepted)
    let cases: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        (
            "CL.TE",
            format!(
                "POST /static/clte HTTP/1.1\r\nHost: {host}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            Some(vec![]),
        ),
        (
            "TE.CL",
            format!(
                "POST /static/tecl HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            ),
            Some(smuggled.clone().into_bytes()),
        ),
        (
            "duplicate differing Content-Length",
            format!(
                "POST /static/dupcl HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\nhello{smuggled}",
                5 + smuggled.len()
            ),
            None,
        ),
        (
            "Content-Length list",
            format!(
                "POST /static/cllist HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5, {}\r\n\r\nhello{smuggled}",
                5 + smuggled.len()
            ),
            None,
        ),
        (
            "obs-fold continuation",
            format!(
                "POST /static/fold HTTP/1.1\r\nHost: {host}\r\nX-Note: a\r\n b\r\nContent-Length: 0\r\n\r\n{smuggled}"
            ),
            None,
        ),
        (
            "obs-fold of Transfer-Encoding",
            format!(
                "POST /static/foldte HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\nhello{smuggled}"
            ),
            None,
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!(
                "POST /static/teid HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            None,
        ),
        (
            "Transfer-Encoding: xchunked",
            format!(
                "POST /static/tex HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\nhello{smuggled}"
            ),
            None,
        ),
        (
            "two Transfer-Encoding headers",
            format!(
                "POST /static/te2 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            None,
        ),
        (
            "space before colon in Transfer-Encoding",
            format!(
                "POST /static/tesp HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello{smuggled}"
            ),
            None,
        ),
        (
            "chunk size with junk",
            format!(
                "POST /static/chunkjunk HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n{smuggled}"
            ),
            None,
        ),
    ];
    let mut findings = vec![];
    for (name, req, accepted_body) in &cases {
        let before = up.count();
        let (buf, _closed) = raw_all(gw.addr(), req.as_bytes(), Duration::from_millis(1500)).await;
        let got = statuses(&buf);
        let recs = up.wait_records(up.count(), Duration::from_secs(2)).await;
        let new: Vec<Recorded> = recs.into_iter().skip(before).collect();
        let smuggled_in = new.iter().any(|r| r.uri.contains("SMUGGLED"));
        let ok = match (got.first(), accepted_body) {
            (Some(400), _) | (None, _) if new.is_empty() => true,
            // A body that breaks after the head was accepted: the gateway gives up on
            // the request before the upstream has a complete one. (Safe; the 502 is a
            // misclassification tracked by the ignored test at the end of this file.)
            (Some(502), _) if new.iter().all(|r| r.body_error) => true,
            (Some(200), Some(body)) => {
                new.len() == 1
                    && new[0].body_len == body.len() as u64
                    && new[0].body_sha256 == sha256_hex(body)
            }
            _ => false,
        };
        eprintln!("{name}: responses {got:?}, upstream records {}", new.len());
        if !ok || smuggled_in || got.len() > 1 {
            findings.push(format!(
                "{name}: responses {got:?}, upstream got {:?}",
                new.iter()
                    .map(|r| format!("{} {} ({} bytes)", r.method, r.uri, r.body_len))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        up.requests().iter().all(|r| !r.uri.contains("SMUGGLED")),
        "a smuggled request reached the upstream"
    );
    assert!(
        findings.is_empty(),
        "smuggling attempts not handled safely:\n{}",
        findings.join("\n")
    );
    health_ok(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_header_bytes_are_refused_with_400_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = static_gateway(&up).await;
    let host = gw.authority();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "NUL in a value",
            format!("GET /static/nul HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n").into_bytes(),
        ),
        (
            "bare CR in a value",
            format!(
                "GET /static/cr HTTP/1.1\r\nHost: {host}\r\nX-A: a\rRemote-User: mallory\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "space before colon",
            format!("GET /static/sp HTTP/1.1\r\nHost: {host}\r\nRemote-User : mallory\r\n\r\n")
                .into_bytes(),
        ),
        (
            "separator in a name",
            format!("GET /static/sep HTTP/1.1\r\nHost: {host}\r\nX(A): b\r\n\r\n").into_bytes(),
        ),
        (
            "no colon",
            format!("GET /static/nocolon HTTP/1.1\r\nHost: {host}\r\nRemote-User mallory\r\n\r\n")
                .into_bytes(),
        ),
        (
            "DEL in a value",
            format!("GET /static/del HTTP/1.1\r\nHost: {host}\r\nX-A: a\x7fb\r\n\r\n").into_bytes(),
        ),
        (
            "control in the target",
            format!("GET /static/a\x01b HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "space in the target",
            format!("GET /static/a b HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        ("HTTP/0.9-style line", b"GET /static/old\r\n\r\n".to_vec()),
        (
            "unknown version",
            format!("GET /static/v HTTP/1.7\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
    ];
    let mut findings = vec![];
    for (name, req) in &cases {
        let before = up.count();
        let (buf, _) = raw_all(gw.addr(), req, Duration::from_millis(1500)).await;
        let got = statuses(&buf);
        let forwarded = up.count() - before;
        if !(got.first().is_none_or(|s| *s == 400 || *s == 505) && forwarded == 0) {
            findings.push(format!("{name}: responses {got:?}, forwarded {forwarded}"));
        }
    }
    assert!(
        findings.is_empty(),
        "malformed heads not refused:\n{}",
        findings.join("\n")
    );
    health_ok(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_uri_and_too_many_headers_are_refused_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = static_gateway(&up).await;
    let host = gw.authority();
    let long = format!(
        "GET /static/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (buf, _) = raw_all(gw.addr(), long.as_bytes(), Duration::from_secs(3)).await;
    let got = statuses(&buf);
    eprintln!("100 KiB URI: {got:?}");
    assert!(
        matches!(got.first(), Some(414 | 431 | 400)),
        "100 KiB URI got {got:?}"
    );

    let mut many = format!("GET /static/many HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (buf, _) = raw_all(gw.addr(), many.as_bytes(), Duration::from_secs(3)).await;
    let got = statuses(&buf);
    eprintln!("500 headers: {got:?}");
    assert!(
        matches!(got.first(), Some(431 | 400)),
        "500 headers got {got:?}"
    );
    assert_eq!(up.count(), 0, "an oversized request reached the upstream");
    health_ok(&gw).await;
}

/// A client that sends its head one byte a second is cut off by the header-read
/// timeout (30 s), and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_disconnected_and_others_are_served() {
    let up = Upstream::start().await;
    let gw = static_gateway(&up).await;
    let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /static/slow HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let client = gw.client();
    let mut closed_after = None;
    let mut served_meanwhile = 0;
    let mut buf = [0u8; 1024];
    for (i, b) in drip.iter().cycle().enumerate() {
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
        if tcp.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Anything the server sends (a 408, or EOF) ends the slow request.
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
        if i % 10 == 5 {
            let r = client
                .get(gw.url("/static/meanwhile"))
                .send()
                .await
                .expect("normal client");
            assert_eq!(r.status(), 200);
            served_meanwhile += 1;
        }
    }
    let after = closed_after.expect("the slow client was never disconnected within 45 s");
    eprintln!(
        "slow client disconnected after {after:?}; {served_meanwhile} other requests served meanwhile"
    );
    assert!(
        after <= Duration::from_secs(40),
        "slow client disconnected only after {after:?}"
    );
    assert!(
        served_meanwhile >= 2,
        "other clients were not served meanwhile"
    );
    assert!(
        up.requests().iter().all(|r| r.path() != "/static/slow"),
        "the slow request was forwarded"
    );
}

// ------------------------------------------------------------------ HTTP/2

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name", no Huffman coding: lets
/// a test send what an h2 library refuses to (uppercase names, connection headers,
/// duplicate or missing pseudo-headers).
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    fn len(block: &mut Vec<u8>, n: usize) {
        if n < 127 {
            block.push(n as u8);
        } else {
            block.push(127);
            let mut rest = n - 127;
            while rest >= 128 {
                block.push((rest % 128 + 128) as u8);
                rest /= 128;
            }
            block.push(rest as u8);
        }
    }
    block.push(0x00);
    len(block, name.len());
    block.extend_from_slice(name.as_bytes());
    len(block, value.len());
    block.extend_from_slice(value.as_bytes());
}

#[derive(Debug, PartialEq)]
enum H2Answer {
    /// A response HEADERS frame; the status when it is one of HPACK's static entries.
    Status(Option<u16>),
    Reset(u32),
    GoAway(u32),
    Closed,
    Nothing,
}

/// Opens a TLS connection with ALPN h2, sends one HEADERS frame (stream 1, end of
/// stream) with `headers` literally, and reports how the server answered stream 1.
async fn h2_exchange(gw: &Gateway, headers: &[(&str, &str)]) -> H2Answer {
    let cfg = gw.tls_config(&["h2"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 not negotiated"
    );
    let mut io: Box<dyn Io> = Box::new(tls);
    let mut block = vec![];
    for (k, v) in headers {
        hpack_literal(&mut block, k, v);
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    io.write_all(&out).await.unwrap();
    let mut buf: Vec<u8> = vec![];
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut chunk = [0u8; 16384];
    loop {
        // Parse whole frames from the front of the buffer.
        while buf.len() >= 9 {
            let len = ((buf[0] as usize) << 16) | ((buf[1] as usize) << 8) | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (ty, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match ty {
                0x4 if flags & 0x1 == 0 => {
                    let _ = io.write_all(&frame(0x4, 0x1, 0, &[])).await; // SETTINGS ACK
                }
                0x1 if stream == 1 => {
                    let mut p = &payload[..];
                    if flags & 0x8 != 0 {
                        let pad = p[0] as usize;
                        p = &p[1..p.len() - pad];
                    }
                    if flags & 0x20 != 0 {
                        p = &p[5..];
                    }
                    let status = match p.first() {
                        Some(0x88) => Some(200),
                        Some(0x89) => Some(204),
                        Some(0x8a) => Some(206),
                        Some(0x8b) => Some(304),
                        Some(0x8c) => Some(400),
                        Some(0x8d) => Some(404),
                        Some(0x8e) => Some(500),
                        _ => None,
                    };
                    return H2Answer::Status(status);
                }
                0x3 if stream == 1 => {
                    return H2Answer::Reset(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
                0x7 => {
                    return H2Answer::GoAway(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return H2Answer::Nothing;
        }
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return H2Answer::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return H2Answer::Nothing,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_abusive_header_blocks_are_reset_or_refused_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/static/").start().await;
    let auth = gw.authority();
    let base = |path: &'static str| {
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", auth.as_str()),
            (":path", path),
        ]
    };

    // Control: the hand-made encoding is right, so refusals below are real.
    let ok = h2_exchange(&gw, &base("/static/h2-control")).await;
    assert_eq!(
        ok,
        H2Answer::Status(Some(200)),
        "a well-formed raw h2 request must pass"
    );
    assert_eq!(up.count(), 1);

    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = vec![];
    cases.push((
        "missing :path",
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", auth.as_str()),
        ],
    ));
    cases.push((":path without '/'", base("static/no-slash")));
    let mut c = base("/static/dup-method");
    c.push((":method", "POST"));
    cases.push(("duplicate :method", c));
    let mut c = base("/static/dup-path");
    c.push((":path", "/static/other"));
    cases.push(("duplicate :path", c));
    let mut c = base("/static/upper");
    c.push(("X-Upper", "1"));
    cases.push(("uppercase header name", c));
    let mut c = base("/static/upper-id");
    c.push(("Remote-User", "mallory"));
    cases.push(("uppercase identity header", c));
    let mut c = base("/static/conn");
    c.push(("connection", "keep-alive"));
    cases.push(("connection: keep-alive", c));
    let mut c = base("/static/te");
    c.push(("transfer-encoding", "chunked"));
    cases.push(("transfer-encoding", c));
    let mut c = base("/static/tegzip");
    c.push(("te", "gzip"));
    cases.push(("te other than trailers", c));
    let mut c = base("/static/ka");
    c.push(("keep-alive", "timeout=5"));
    cases.push(("keep-alive header", c));
    let mut c = vec![("x-first", "1")];
    c.extend(base("/static/late-pseudo"));
    cases.push(("pseudo-header after a regular header", c));
    let mut c = base("/static/unknown-pseudo");
    c.push((":foo", "bar"));
    cases.push(("unknown pseudo-header", c));
    let mut c = base("/static/resp-pseudo");
    c.push((":status", "200"));
    cases.push((":status in a request", c));

    let mut findings = vec![];
    for (name, headers) in &cases {
        let before = up.count();
        let answer = h2_exchange(&gw, headers).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let forwarded = up.count() - before;
        eprintln!("{name}: {answer:?}, forwarded {forwarded}");
        let refused = matches!(
            answer,
            H2Answer::Reset(_)
                | H2Answer::GoAway(_)
                | H2Answer::Closed
                | H2Answer::Status(Some(400))
        );
        if !refused || forwarded != 0 {
            findings.push(format!("{name}: answer {answer:?}, forwarded {forwarded}"));
        }
    }
    assert!(
        findings.is_empty(),
        "abusive h2 header blocks:\n{}",
        findings.join("\n")
    );
    assert!(
        up.requests()
            .iter()
            .all(|r| !r.has_header_like("remote-user")),
        "a client identity reached the upstream"
    );
    health_ok(&gw).await;
}

// ------------------------------------------------------------------ hop-by-hop abuse

/// `Connection: Remote-User` asks a proxy to drop that header before forwarding. A
/// gateway that removed hop-by-hop headers after setting its own would let a client
/// delete (or, combined with a spoofed header, replace) its identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_or_replace_the_gateways_identity() {
    let up = Upstream::start().await;
    let patient = TestUser::new("pat.hop", &["patient"]);
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(std::slice::from_ref(&patient)))
        .start()
        .await;
    let b = Browser::new(&gw);
    b.login_ok(&patient, "/chart").await;
    let cookie = b.cookie_header();
    let host = gw.authority();

    let baseline = gw.raw_get("/chart/base", &[("Cookie", &cookie)]).await;
    assert_eq!(baseline.status, 200, "{}", baseline.raw);
    let base = up.last();
    let ids = [
        "remote-user",
        "remote-email",
        "remote-name",
        "remote-groups",
        "remote-mfa",
    ];
    assert_eq!(base.header_all("remote-user"), vec![patient.name.clone()]);

    let attacks: Vec<Vec<(&str, &str)>> = vec![
        vec![("Connection", "Remote-User")],
        vec![(
            "Connection",
            "close, Remote-User, Remote-Email, Remote-Name, Remote-Groups, Remote-MFA",
        )],
        vec![("Connection", "Remote-User"), ("Remote-User", "mallory")],
        vec![("Remote-User", "mallory"), ("Connection", "remote_user")],
        vec![
            ("Connection", "keep-alive"),
            ("Connection", "Remote-Groups"),
            ("Remote-Groups", "doctor"),
        ],
        vec![
            ("Connection", "X-Forwarded-For, Host"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
        vec![
            ("Remote_User", "mallory"),
            ("REMOTE-USER", "mallory"),
            ("Connection", "Remote_User"),
        ],
        vec![("Connection", "Cookie")],
        vec![
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "Remote-User"),
            ("TE", "trailers, Remote-User"),
        ],
    ];
    let mut findings = vec![];
    for (i, extra) in attacks.iter().enumerate() {
        let before = up.count();
        let mut req = format!("GET /chart/hop{i} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
        let r = gw.raw(req.as_bytes()).await;
        if r.status != 200 || up.count() != before + 1 {
            findings.push(format!(
                "{extra:?}: status {} forwarded {}",
                r.status,
                up.count() - before
            ));
            continue;
        }
        let rec = up.last();
        for id in ids {
            if rec.header_all(id) != base.header_all(id) {
                findings.push(format!(
                    "{extra:?}: upstream {id} = {:?}, want {:?}",
                    rec.header_all(id),
                    base.header_all(id)
                ));
            }
        }
        if rec.headers.iter().any(|(_, v)| v.contains("mallory"))
            || rec.has_header_like("remote_user") && rec.header_all("remote-user").len() != 1
        {
            findings.push(format!(
                "{extra:?}: a client identity reached the upstream: {:?}",
                rec.headers
            ));
        }
        if rec.header_all("x-forwarded-for") != vec!["127.0.0.1".to_string()] {
            findings.push(format!(
                "{extra:?}: x-forwarded-for {:?}",
                rec.header_all("x-forwarded-for")
            ));
        }
        if rec.headers.iter().any(|(k, _)| {
            ["connection", "keep-alive", "proxy-connection", "te"].contains(&k.as_str())
        }) {
            findings.push(format!(
                "{extra:?}: hop-by-hop header forwarded: {:?}",
                rec.headers
            ));
        }
    }
    assert!(
        findings.is_empty(),
        "hop-by-hop abuse:\n{}",
        findings.join("\n")
    );
}

// ------------------------------------------------------------------ own limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_page_posts_are_rate_limited_per_client_with_retry_after() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .extra("[limits]\nown_pages_per_minute = 20\n")
        .start()
        .await;
    let client = gw.client();
    let url = gw.url("/_vestibule/login");
    let mut statuses = vec![];
    let mut last = None;
    for _ in 0..21 {
        let r = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=a&password=b")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert!(
        statuses[..20].iter().all(|s| *s != 429),
        "limited before the 21st POST: {statuses:?}"
    );
    let last = last.unwrap();
    assert_eq!(last.status(), 429, "21st POST: {statuses:?}");
    let retry: u64 = last
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("429 without a numeric Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The limit is on form posts: pages still load, health still answers.
    let r = client
        .get(&url)
        .header("accept", NAV_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    health_ok(&gw).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.logs().contains("own-page request limit reached") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.logs().contains("own-page request limit reached"),
        "no log line for the limit:\n{}",
        gw.log_tail()
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_larger_than_max_form_bytes_get_413() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .extra("[limits]\nmax_form_bytes = 2048\n")
        .start()
        .await;
    let client = gw.client();
    let url = gw.url("/_vestibule/login");
    let small = format!("username=a&password={}", "p".repeat(1000));
    let r = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a small form without CSRF token is refused by CSRF, not by size"
    );
    let big = format!("username=a&password={}", "p".repeat(4096));
    let r = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "form over max_form_bytes (Content-Length)");
    // The same without a length: chunked, counted while read.
    let mut raw = format!(
        "POST /_vestibule/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        gw.authority()
    );
    for chunk in big.as_bytes().chunks(500) {
        raw.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        ));
    }
    raw.push_str("0\r\n\r\n");
    let r = gw.raw(raw.as_bytes()).await;
    assert_eq!(
        r.status, 413,
        "chunked form over max_form_bytes: {:.300}",
        r.raw
    );
    health_ok(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_sixth_while_the_first_five_work() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .plain_http()
        .bypass("/static/")
        .server_extra("max_connections = 5")
        .start()
        .await;
    // Let the health-check connection of the start-up close on the server side.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let req = |i: usize| {
        format!(
            "GET /static/conn{i} HTTP/1.1\r\nHost: {}\r\n\r\n",
            gw.authority()
        )
    };
    async fn one(tcp: &mut TcpStream, req: &str) -> u16 {
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![];
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
            let r = parse_raw(&buf);
            if r.status != 0
                && r.header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|l| r.body.len() >= l)
            {
                return r.status;
            }
        }
        parse_raw(&buf).status
    }
    let mut conns = vec![];
    for i in 0..5 {
        let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
        assert_eq!(one(&mut tcp, &req(i)).await, 200, "connection {i} of 5");
        conns.push(tcp);
    }
    // The sixth is accepted by the kernel, then closed by the gateway unanswered.
    let mut sixth = TcpStream::connect(gw.addr()).await.unwrap();
    let s = one(&mut sixth, &req(6)).await;
    assert_eq!(s, 0, "the 6th concurrent connection was served");
    for (i, tcp) in conns.iter_mut().enumerate() {
        assert_eq!(
            one(tcp, &req(10 + i)).await,
            200,
            "kept-alive connection {i} after the refusal"
        );
    }
    assert_eq!(up.count(), 10);
    // A freed slot is usable again.
    drop(conns.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(gw.addr()).await.unwrap();
    assert_eq!(
        one(&mut again, &req(20)).await,
        200,
        "a slot freed by a closed connection"
    );
    assert!(
        gw.logs().contains("max_connections"),
        "no log line for the refused connection"
    );
}

/// A chunked body that turns out malformed after the head was forwarded is the
/// client's fault: 400, not a 502 "upstream unreachable" (which also counts as an
/// upstream failure in the metrics and pages an operator for nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_body_is_a_client_error_not_a_bad_gateway() {
    let up = Upstream::start().await;
    let gw = static_gateway(&up).await;
    let req = format!(
        "POST /static/badchunk HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
        gw.authority()
    );
    let (buf, _) = raw_all(gw.addr(), req.as_bytes(), Duration::from_millis(1500)).await;
    let got = statuses(&buf);
    let recs = up.wait_records(1, Duration::from_secs(2)).await;
    eprintln!(
        "statuses {got:?}; upstream count {} records {:?}",
        up.count(),
        recs.iter()
            .map(|r| (&r.uri, r.body_len, r.body_error))
            .collect::<Vec<_>>()
    );
    eprintln!("{}", gw.log_tail());
    assert_eq!(got.first(), Some(&400), "malformed chunked body: {got:?}");
}

/// A client that connects and never sends a byte (the "silent slowloris") is closed
/// by the first-byte deadline (30 s) instead of holding a connection slot for ever —
/// over plain TCP and after a TLS handshake alike. A keep-alive connection that went
/// idle after a request (and was parked) is closed by the same 30 s idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_first_byte_deadline() {
    let up = Upstream::start().await;
    let plain = static_gateway(&up).await;
    let tls = Gateway::builder(&up).bypass("/static/").start().await;
    let started = Instant::now();
    let mut silent_plain = TcpStream::connect(plain.addr()).await.unwrap();
    let tcp = TcpStream::connect(tls.addr()).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(tls.p.ca.client_config(&["http/1.1"])));
    let mut silent_tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake completes");
    // A client that negotiated HTTP/2 by ALPN and never sends its preface.
    let h2_connector = tokio_rustls::TlsConnector::from(Arc::new(tls.p.ca.client_config(&["h2"])));
    let mut silent_h2 = h2_connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(tls.addr()).await.unwrap(),
        )
        .await
        .expect("TLS handshake completes");
    assert_eq!(silent_h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut idle = TcpStream::connect(plain.addr()).await.unwrap();
    idle.write_all(
        format!(
            "GET /static/then-idle HTTP/1.1\r\nHost: {}\r\n\r\n",
            plain.authority()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let idle_closed = async {
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        let mut answered = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(45), idle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break (got, answered, Instant::now()),
                Ok(Ok(n)) => {
                    got.extend_from_slice(&buf[..n]);
                    answered.get_or_insert_with(Instant::now);
                }
                Err(_) => panic!("the idle keep-alive connection was still open after 45 s"),
            }
        }
    };
    let mut buf = [0u8; 64];
    let (a, b, h2_got, (idle_got, answered, idle_closed_at)) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(45), silent_plain.read(&mut buf)),
        async {
            let mut buf = [0u8; 64];
            tokio::time::timeout(Duration::from_secs(45), silent_tls.read(&mut buf)).await
        },
        async {
            // Everything the gateway sends until it closes (or 45 s pass).
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(45), silent_h2.read_to_end(&mut got))
                .await
                .map(|_| got)
        },
        idle_closed
    );
    assert!(
        a.is_ok(),
        "the silent plain connection was still open after 45 s"
    );
    assert!(
        b.is_ok(),
        "the silent TLS connection was still open after 45 s"
    );
    let h2_got = h2_got.expect("the silent HTTP/2 connection was still open after 45 s");
    assert!(
        h2_got.is_empty(),
        "the gateway sent {} bytes of HTTP/2 before the client's preface",
        h2_got.len()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "closed too early ({:?}): the deadline is 30 s",
        started.elapsed()
    );
    assert_eq!(statuses(&idle_got), [200], "the idle connection's request");
    let idle_for = idle_closed_at - answered.expect("the request was answered");
    assert!(
        idle_for >= Duration::from_secs(25) && idle_for <= Duration::from_secs(40),
        "an idle keep-alive connection was closed {idle_for:?} after its response (timeout 30 s)"
    );
    health_ok(&plain).await;
}
