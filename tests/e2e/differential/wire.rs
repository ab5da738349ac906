//! The test's own wire client: raw HTTP/1.1 exchanges that hand a switched connection
//! back, and just enough HTTP/2 framing to use an h2c tunnel as an attacker would.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::*;
/// Sends `request` verbatim and reads one response. A `101` hands the connection
/// back (with the bytes read past the response head) for whatever was switched to.
pub(super) async fn exchange(
    addr: SocketAddr,
    request: &[u8],
) -> (RawResponse, Option<(TcpStream, Vec<u8>)>) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before it has read everything.
    let _ = io.write_all(request).await;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let resp = parse_raw(&buf);
            if resp.status == 101 {
                let rest = buf[end + 4..].to_vec();
                return (parse_raw(&buf[..end + 4]), Some((io, rest)));
            }
            if response_complete(&buf) {
                return (resp, None);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (parse_raw(&buf), None),
        }
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2),
/// plain strings shorter than 127 bytes: enough for a few request headers.
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// After an h2c `101`: what an attacker does with the tunnel. Sends the client
/// preface and asks (streams 3 and 5; stream 1 is the upgraded request) for
/// `/internal/x` and `/admin/x` with a forged identity, then reads frames until both
/// are answered or refused, the server goes away, or 5 s pass. Returns what happened.
pub(super) async fn use_h2c_tunnel(
    mut io: TcpStream,
    mut buf: Vec<u8>,
    authority: &str,
    marker: &str,
) -> String {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    for (sid, path) in [(3u32, "/internal/x"), (5, "/admin/x")] {
        let mut block = Vec::new();
        let target = format!("{path}?vt={marker}.tunnel");
        for (k, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", target.as_str()),
            (":authority", authority),
            ("remote-user", "dr.forged"),
            ("remote-groups", "doctor"),
        ] {
            hpack_literal(&mut block, k, v);
        }
        out.extend(h2_frame(1, 0x4 | 0x1, sid, &block)); // END_HEADERS | END_STREAM
    }
    if io.write_all(&out).await.is_err() {
        return "tunnel closed before the HTTP/2 requests were sent".into();
    }
    let mut answered: HashSet<u32> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = vec![0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let sid = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            buf.drain(..9 + len);
            match kind {
                // SETTINGS without ACK: acknowledge, as a client must.
                4 if flags & 1 == 0 => {
                    let _ = io.write_all(&h2_frame(4, 1, 0, &[])).await;
                }
                // HEADERS or RST_STREAM on one of ours: that stream is decided.
                1 | 3 if sid == 3 || sid == 5 => {
                    answered.insert(sid);
                }
                7 => return format!("server sent GOAWAY; answered streams {answered:?}"),
                _ => {}
            }
        }
        if answered.len() == 2 {
            return "both tunnelled HTTP/2 requests were answered".into();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return format!("tunnel closed; answered streams {answered:?}"),
            Err(_) => return format!("no more answers within 5 s; answered streams {answered:?}"),
        }
    }
}
